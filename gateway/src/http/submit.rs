//! `POST /v1/pcs/submit` and `GET /v1/pcs/{pcs_id}`.
//!
//! Submit: size and rate checks, then the body goes to the write-ahead log (idempotent producer,
//! acks=all) before anything else is said (I1); then the request waits, with a deadline, for the
//! committed decision of its own record and answers with it. Past the deadline it answers 503:
//! the record is logged and will be decided, so retrying is safe (the retry is a duplicate).

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actors::decision_bus::Wakeup;
use events::SourceCoordinates;
use futures::StreamExt as _;
use infra::kafka::headers;
use infra::tracing_context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument as _;

use super::AppState;
use super::respond::{applied_response, error_response};

/// Just enough of a PCS to build the record key; everything else is the shard's business.
#[derive(Deserialize)]
struct KeyProbe {
    #[serde(default)]
    pcs_id: Option<serde_json::Value>,
}

/// The tenant named by `X-Tenant-Id` (`default` when absent). Never refused here: whatever the
/// header says, the body is logged first (I1) and the shard answers 403 for a tenant it does not
/// know, so a malformed header gets the same answer as an unknown name.
fn tenant_of(request: &HttpRequest) -> String {
    match request.headers().get("X-Tenant-Id") {
        None => "default".to_owned(),
        Some(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

/// Reads the body up to the limit; `Err` is the 413 (or 400 on a broken stream) to answer.
async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        let mut response = error_response(
            413,
            "payload_too_large",
            &format!("body is larger than {limit} bytes"),
            None,
        );
        // The rest of the body is never read, so the connection cannot be reused.
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        response
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            if matches!(error, actix_web::error::PayloadError::Overflow) {
                too_large()
            } else {
                error_response(400, "bad_body", "the request body could not be read", None)
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `POST /v1/pcs/submit`.
pub async fn submit(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let span = submit_span(&request);
    let response = submit_inner(&state, &request, &mut payload)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .http_responses
        .with_label_values(&[&status])
        .inc();
    state
        .metrics
        .submit_latency
        .with_label_values(&[&status])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// One span per request; it continues the caller's W3C trace, or starts one.
fn submit_span(request: &HttpRequest) -> tracing::Span {
    let span = tracing::info_span!(
        "gateway.submit",
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    );
    tracing_context::continue_trace(&span, incoming_traceparent(request));
    span
}

/// The caller's `traceparent` header, when it is text (validated by the trace context helpers).
fn incoming_traceparent(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(headers::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
}

async fn submit_inner(
    state: &AppState,
    request: &HttpRequest,
    payload: &mut web::Payload,
) -> HttpResponse {
    let tenant = tenant_of(request);
    let declared = request
        .headers()
        .get("Content-Length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.config.max_body_bytes) {
        // The body stays unread, so the connection cannot be reused: say so.
        let mut response = error_response(
            413,
            "payload_too_large",
            &format!("body is larger than {} bytes", state.config.max_body_bytes),
            None,
        );
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return response;
    }
    let rate_limited = state.limiter.try_acquire(&tenant).err();
    // Read (and for a 429, discard) the body either way, so a keep-alive connection stays usable.
    let body = match read_body(payload, state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(retry_after) = rate_limited {
        return error_response(
            429,
            "rate_limited",
            &format!("tenant rate limit reached; retry in {retry_after} s"),
            Some(retry_after),
        );
    }
    let label = state.tenant_label(&tenant);
    state.metrics.ingest_total.with_label_values(&[label]).inc();

    let deadline = Instant::now() + state.config.decision_timeout();
    let source = match log_submission(state, &tenant, &body, request, deadline).await {
        Ok(source) => source,
        Err(message) => {
            tracing::warn!(tenant = label, error = %message, "submission not logged");
            return unavailable(
                state,
                "log_unavailable",
                "the write-ahead log is unavailable; retry",
            );
        }
    };
    let waiter = state.bus.wait_for(source.clone());
    let remaining = deadline.saturating_duration_since(Instant::now());
    let applied = match tokio::time::timeout(remaining, waiter).await {
        Ok(Ok(Wakeup::Applied(applied))) => *applied,
        Ok(Ok(Wakeup::Committed)) => match state.store.result_for_source(&source).await {
            Ok(Some(applied)) => applied,
            Ok(None) | Err(_) => {
                return unavailable(
                    state,
                    "decision_unavailable",
                    "the decision could not be read; retry",
                );
            }
        },
        Ok(Err(_)) | Err(_) => {
            state.bus.cancel(&source);
            return unavailable(
                state,
                "decision_timeout",
                "the record is logged but its decision is not visible yet; retrying is safe",
            );
        }
    };
    record_outcome_metrics(state, label, &applied);
    applied_response(&applied)
}

fn unavailable(state: &AppState, code: &str, message: &str) -> HttpResponse {
    error_response(503, code, message, Some(state.config.retry_after_secs))
}

fn record_outcome_metrics(state: &AppState, label: &str, applied: &projections::Applied) {
    let metrics = &state.metrics;
    if applied.replayed {
        metrics.dedup_hits.with_label_values(&[label]).inc();
    }
    match applied.status {
        200 => metrics.accepted.with_label_values(&[label]).inc(),
        202 => {
            let accepted = applied
                .body
                .get("accepted")
                .and_then(|value| value.as_bool());
            if accepted == Some(true) {
                metrics.accepted.with_label_values(&[label]).inc();
            }
            metrics.escalated.with_label_values(&[label]).inc();
        }
        401 => metrics.signature_errors.with_label_values(&[label]).inc(),
        _ => {}
    }
}

/// Produces the body to `flk.submissions` and returns where it landed.
async fn log_submission(
    state: &AppState,
    tenant: &str,
    body: &[u8],
    request: &HttpRequest,
    deadline: Instant,
) -> Result<SourceCoordinates, String> {
    let pcs_id_opt = serde_json::from_slice::<KeyProbe>(body)
        .ok()
        .and_then(|probe| probe.pcs_id)
        .and_then(|value| value.as_str().map(str::to_owned));
    let key_opt = pcs_id_opt.map(|pcs_id| format!("{tenant}/{pcs_id}"));
    let received_at = infra::clock::now_ms().to_string();
    let record_headers = OwnedHeaders::new()
        .insert(Header {
            key: headers::TENANT,
            value: Some(tenant),
        })
        .insert(Header {
            key: headers::RECEIVED_AT,
            value: Some(&received_at),
        })
        .insert(Header {
            key: headers::SOURCE,
            value: Some("gateway"),
        });
    // The request span's context (or, without trace export, the caller's) goes to the shard.
    let outgoing =
        tracing_context::outgoing_context(&tracing::Span::current(), incoming_traceparent(request));
    let record_headers = tracing_context::inject_headers(&outgoing, record_headers);
    let mut record = FutureRecord::to(&state.submissions_topic)
        .payload(body)
        .headers(record_headers);
    if let Some(key) = &key_opt {
        record = record.key(key);
    }
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    // The delivery itself may take up to the producer's message timeout when Kafka is down; the
    // request gives up at its deadline (a late delivery is decided anyway; a retry is a duplicate).
    match tokio::time::timeout(timeout, state.producer.send(record, timeout)).await {
        Ok(Ok(delivery)) => Ok(SourceCoordinates {
            topic: state.submissions_topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((error, _))) => Err(error.to_string()),
        Err(_) => Err("no acknowledgement from Kafka before the deadline".to_owned()),
    }
}

/// `GET /v1/pcs/{pcs_id}`: the stored first outcome, scoped by `X-Tenant-Id` (I7).
pub async fn lookup(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let tenant = tenant_of(&request);
    let pcs_id = path.into_inner();
    match state.hot_cache.get(&tenant, &pcs_id).await {
        Ok(Some(cached)) => {
            return HttpResponse::Ok().json(json!({
                "pcs_id": pcs_id,
                "tenant": tenant,
                "status": cached.status,
                "outcome": cached.body,
                "tier": "hot",
                "source": "cache",
            }));
        }
        Ok(None) => {}
        Err(error) => tracing::debug!(error = %error, "hot cache miss by error"),
    }
    match state.store.lookup(&tenant, &pcs_id).await {
        Ok(Some(stored)) => {
            let refill = [projections::CacheEntry::from_stored(&stored)];
            if let Err(error) = state.hot_cache.put_many(&refill).await {
                tracing::debug!(error = %error, "hot cache not refilled");
            }
            HttpResponse::Ok().json(json!({
                "pcs_id": stored.pcs_id,
                "tenant": stored.tenant,
                "status": stored.status,
                "outcome": stored.body,
                "first_seen_at_ms": stored.received_at_ms,
                "decided_at_ms": stored.decided_at_ms,
                "expires_at_ms": stored.expires_at_ms,
                "tier": stored.tier,
                "source": "postgres",
            }))
        }
        Ok(None) => error_response(
            404,
            "not_found",
            "no decision for this pcs_id and tenant",
            None,
        ),
        Err(error) => {
            tracing::warn!(error = %error, "lookup failed");
            unavailable(
                &state,
                "store_unavailable",
                "the store is unavailable; retry",
            )
        }
    }
}
