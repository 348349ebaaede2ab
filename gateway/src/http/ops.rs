//! Operational routes: liveness, readiness (log and stores reachable), Prometheus metrics, and
//! the actors' status board (`/debug/actors`).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use rdkafka::producer::Producer as _;
use serde_json::json;

use super::status::{ApiError, ok};
use super::{AppState, header};

/// `GET /health`: `OK` while the process runs.
pub async fn health() -> HttpResponse {
    ok().content_type("text/plain").body("OK")
}

/// `GET /ready`: 200 when Kafka and Postgres answer, 503 naming what does not.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let producer = state.producer.clone();
    let topic = state.submissions_topic.clone();
    let kafka_ok = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(2))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    let postgres_ok = state.store.lookup("", "").await.is_ok();
    let body = json!({"kafka": kafka_ok, "postgres": postgres_ok});
    if kafka_ok && postgres_ok {
        ok().json(body)
    } else {
        ApiError::NotReady {
            checks: body,
            retry_after_secs: state.config.retry_after_secs,
        }
        .to_response()
    }
}

/// `GET /metrics`: Prometheus text, behind Basic Auth when configured.
pub async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&state, &request) {
        return refusal;
    }
    render_metrics(&state.metrics, &state.board)
}

/// The Prometheus text of `metrics`, with every actor's progress age brought up to date.
pub fn render_metrics(
    metrics: &infra::metrics::Metrics,
    board: &actors::contract::StatusBoard,
) -> HttpResponse {
    board.observe_progress_age(metrics, infra::clock::now_ms());
    ok().content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

/// `GET /debug/actors`: every actor of this process with its partitions, positions, lag,
/// in-flight work, last progress and restarts (JSON), behind the metrics' Basic Auth.
pub async fn actors(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Some(refusal) = refuse_unauthorized(&state, &request) {
        return refusal;
    }
    render_actors(&state.board)
}

/// The `/debug/actors` body of `board` (the gateway's and the metrics listener's).
pub fn render_actors(board: &actors::contract::StatusBoard) -> HttpResponse {
    ok().json(json!({"actors": board.snapshot()}))
}

/// The 401 to answer when Basic Auth is configured and the request does not carry it.
fn refuse_unauthorized(state: &AppState, request: &HttpRequest) -> Option<HttpResponse> {
    refuse_without(state.config.metrics_basic_auth_opt.as_deref(), request)
}

/// The 401 to answer when `basic_auth_opt` (`user:password`) is set and the request does not
/// carry it (see [`flk_http_head::basic_auth::authorized`]).
pub fn refuse_without(basic_auth_opt: Option<&str>, request: &HttpRequest) -> Option<HttpResponse> {
    let authorization_opt = header(request, "Authorization");
    (!flk_http_head::basic_auth::authorized(basic_auth_opt, authorization_opt))
        .then(|| ApiError::MetricsUnauthorized.to_response())
}
