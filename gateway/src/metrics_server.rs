//! The metrics listener (`[telemetry] metrics_listen_opt`): `/metrics`, `/debug/actors` and
//! `/health` in any `flk serve` process, whatever its roles, so Prometheus can scrape a process
//! that runs only shards, projectors or a singleton. The same Basic Auth as the gateway's
//! `/metrics` (`[gateway] metrics_basic_auth_opt`) guards the first two.

use actix_web::{HttpRequest, HttpResponse, web};
use actors::contract::StatusBoard;
use infra::metrics::Metrics;

use crate::http::ops::{health, refuse_without, render_actors, render_metrics};

/// What the listener serves.
#[derive(Debug, Clone)]
pub struct MetricsState {
    /// The process's metrics.
    pub metrics: Metrics,
    /// Its actors' statuses.
    pub board: StatusBoard,
    /// `user:password` required on `/metrics` and `/debug/actors`, when set.
    pub basic_auth_opt: Option<String>,
}

/// Registers the listener's routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(metrics))
        .route("/debug/actors", web::get().to(actors))
        .route("/health", web::get().to(health));
}

async fn metrics(state: web::Data<MetricsState>, request: HttpRequest) -> HttpResponse {
    if let Some(refusal) = refuse_without(state.basic_auth_opt.as_deref(), &request) {
        return refusal;
    }
    render_metrics(&state.metrics, &state.board)
}

async fn actors(state: web::Data<MetricsState>, request: HttpRequest) -> HttpResponse {
    if let Some(refusal) = refuse_without(state.basic_auth_opt.as_deref(), &request) {
        return refusal;
    }
    render_actors(&state.board)
}
