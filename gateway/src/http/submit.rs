//! `POST /v1/pcs/submit` and `GET /v1/pcs/{pcs_id}`.
//!
//! Submit: size and rate checks, then the body goes to the write-ahead log (idempotent producer,
//! acks=all) before anything else is said (I1); then the request waits, with a deadline, for the
//! committed decision of its own record and answers with it. Past the deadline it answers 503:
//! the record is logged and will be decided, so retrying is safe (the retry is a duplicate).
//!
//! Handlers never pick a status: they hand decisions and [`ApiError`]s to [`super::status`].

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actors::decision_bus::Wakeup;
use events::{OutcomeClass, SourceCoordinates};
use flk_http_head::submit as head;
use futures::StreamExt as _;
use infra::kafka::headers;
use infra::tracing_context;
use projections::DedupResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument as _;

use super::status::{ApiError, RateScope, applied_response, lookup_response};
use super::{AppState, header};

/// Just enough of a PCS to build the record key; everything else is the shard's business.
#[derive(Deserialize)]
struct KeyProbe {
    #[serde(default)]
    pcs_id: Option<serde_json::Value>,
}

/// The tenant named by `X-Tenant-Id` (`default` when absent; see [`head::tenant`]).
pub(crate) fn tenant_of(request: &HttpRequest) -> String {
    head::tenant(header(request, "X-Tenant-Id"))
}

/// Reads the body up to the limit; a body over it or a broken stream is the error to answer.
async fn read_body(payload: &mut web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit_bytes: limit };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            if matches!(error, actix_web::error::PayloadError::Overflow) {
                too_large()
            } else {
                ApiError::UnreadableBody
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
    let response = match submit_inner(&state, &request, &mut payload)
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(error) => error.to_response(),
    };
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
        tenant = tracing::field::Empty,
        pcs_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    tracing_context::continue_trace(&span, incoming_traceparent(request));
    span
}

/// The caller's `traceparent` header, when it is text (validated by the trace context helpers).
fn incoming_traceparent(request: &HttpRequest) -> Option<&str> {
    head::traceparent(header(request, headers::TRACEPARENT))
}

async fn submit_inner(
    state: &AppState,
    request: &HttpRequest,
    payload: &mut web::Payload,
) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(request);
    let declared = head::declared_length(header(request, "Content-Length"));
    if declared.is_some_and(|length| length > state.config.max_body_bytes) {
        return Err(ApiError::PayloadTooLarge {
            limit_bytes: state.config.max_body_bytes,
        });
    }
    // The door, before the log (I1): the client address's rate, then the tenant's existence,
    // then its rate. Strangers cannot grow the log of record.
    let refused =
        unsupported_encoding(request).or_else(|| admission(state, request, &tenant).err());
    // Read (and when refused, discard) the body either way, so a keep-alive connection stays
    // usable; a body that trickles in slower than the deadline is cut off.
    let body = tokio::time::timeout(
        state.config.body_timeout(),
        read_body(payload, state.config.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout {
        timeout_ms: state.config.body_timeout_ms,
    })??;
    if let Some(error) = refused {
        return Err(error);
    }
    let label = state.tenant_label(&tenant);
    tracing::Span::current().record("tenant", label);
    state.metrics.ingest_total.with_label_values(&[label]).inc();

    let retry_after_secs = state.config.retry_after_secs;
    let deadline = Instant::now() + state.config.decision_timeout();
    let source = match log_submission(state, &tenant, &body, request, deadline).await {
        Ok(source) => source,
        Err(message) => {
            tracing::warn!(tenant = label, error = %message, "submission not logged");
            return Err(ApiError::LogUnavailable { retry_after_secs });
        }
    };
    let waiter = state.bus.wait_for(source.clone());
    let remaining = deadline.saturating_duration_since(Instant::now());
    let applied = match tokio::time::timeout(remaining, waiter).await {
        Ok(Ok(Wakeup::Applied(applied))) => *applied,
        Ok(Ok(Wakeup::Committed)) => match state.store.result_for_source(&source).await {
            Ok(Some(applied)) => applied,
            Ok(None) => {
                tracing::warn!(tenant = label, "committed decision not found by its source");
                return Err(ApiError::DecisionUnavailable { retry_after_secs });
            }
            Err(error) => {
                tracing::warn!(tenant = label, error = %error, "committed decision not readable");
                return Err(ApiError::DecisionUnavailable { retry_after_secs });
            }
        },
        Ok(Err(_)) | Err(_) => {
            state.bus.cancel(&source);
            return Err(ApiError::DecisionTimeout { retry_after_secs });
        }
    };
    record_outcome_metrics(state, label, &applied);
    Ok(applied_response(&applied))
}

/// A `Content-Encoding` other than `identity`: bodies are logged as sent, never inflated.
fn unsupported_encoding(request: &HttpRequest) -> Option<ApiError> {
    head::unsupported_encoding(header(request, "Content-Encoding"))
        .map(|encoding| ApiError::UnsupportedEncoding { encoding })
}

/// The checks before the log; each refusal is counted.
fn admission(state: &AppState, request: &HttpRequest, tenant: &str) -> Result<(), ApiError> {
    let metrics = &state.metrics;
    let address_opt = request.peer_addr().map(|peer| peer.ip());
    let limited = |scope: RateScope, retry_after_secs| {
        metrics
            .rate_limited
            .with_label_values(&[scope.label()])
            .inc();
        ApiError::RateLimited {
            scope,
            retry_after_secs,
        }
    };
    state
        .address_limiter
        .try_acquire(address_opt)
        .map_err(|seconds| limited(RateScope::Address, seconds))?;
    state.admit(tenant).map_err(|refusal| {
        metrics
            .tenant_refused
            .with_label_values(&[refusal.label()])
            .inc();
        ApiError::TenantRefused(refusal)
    })?;
    state
        .limiter
        .try_acquire(tenant)
        .map_err(|seconds| limited(RateScope::Tenant, seconds))
}

fn record_outcome_metrics(state: &AppState, label: &str, applied: &projections::Applied) {
    let metrics = &state.metrics;
    if applied.replayed {
        metrics.dedup_hits.with_label_values(&[label]).inc();
    }
    // A conflict is counted by neither: its body is the first record's outcome, not this one's.
    if applied.dedup_result == DedupResult::Conflict {
        return;
    }
    match applied.outcome_class {
        OutcomeClass::Accepted => metrics.accepted.with_label_values(&[label]).inc(),
        OutcomeClass::Escalated => {
            metrics.accepted.with_label_values(&[label]).inc();
            metrics.escalated.with_label_values(&[label]).inc();
        }
        OutcomeClass::Rejected => metrics.escalated.with_label_values(&[label]).inc(),
        OutcomeClass::SignatureRejected => {
            metrics.signature_errors.with_label_values(&[label]).inc();
        }
        OutcomeClass::Malformed | OutcomeClass::TenantRefused => {}
    }
}

/// Produces the body to `flk.submissions` and returns where it landed. The record carries the
/// produce span's context (`traceparent`), so the shard's span follows it in the trace.
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
    let pcs_id_attribute = pcs_id_opt
        .as_deref()
        .map_or("", tracing_context::displayable_id);
    tracing::Span::current().record("pcs_id", pcs_id_attribute);
    let key_opt = pcs_id_opt
        .as_ref()
        .map(|pcs_id| format!("{tenant}/{pcs_id}"));
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
    let produce_span = tracing::info_span!(
        "gateway.produce",
        otel.kind = "producer",
        tenant = state.tenant_label(tenant),
        pcs_id = pcs_id_attribute,
        messaging.system = "kafka",
        messaging.destination.name = state.submissions_topic.as_str(),
        messaging.kafka.partition = tracing::field::Empty,
        messaging.kafka.offset = tracing::field::Empty,
    );
    // The produce span's context (or, without trace export, the caller's) goes to the shard.
    let outgoing = tracing_context::outgoing_context(&produce_span, incoming_traceparent(request));
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
    let delivered = tokio::time::timeout(timeout, state.producer.send(record, timeout))
        .instrument(produce_span.clone())
        .await;
    match delivered {
        Ok(Ok(delivery)) => {
            produce_span.record("messaging.kafka.partition", delivery.partition);
            produce_span.record("messaging.kafka.offset", delivery.offset);
            Ok(SourceCoordinates {
                topic: state.submissions_topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            })
        }
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
            return lookup_response(
                cached.outcome_class,
                json!({
                    "pcs_id": pcs_id,
                    "tenant": tenant,
                    "outcome": cached.body,
                    "tier": "hot",
                    "source": "cache",
                }),
            );
        }
        Ok(None) => {}
        Err(error) => {
            state
                .metrics
                .hot_cache_read_errors
                .with_label_values(&[] as &[&str])
                .inc();
            tracing::debug!(error = %error, "hot cache miss by error");
        }
    }
    match state.store.lookup(&tenant, &pcs_id).await {
        Ok(Some(stored)) => {
            refill_hot(&state, &stored).await;
            stored_response(&stored, "warm", "postgres")
        }
        Ok(None) => match super::cold_read::lookup(&state, &tenant, &pcs_id).await {
            Ok(Some(stored)) => stored_response(&stored, "cold", "object_store"),
            Ok(None) => ApiError::NotFound.to_response(),
            Err(error) => error.to_response(),
        },
        Err(error) => {
            if error.is_retryable() {
                tracing::warn!(error = %error, "lookup failed");
            } else {
                tracing::error!(error = %error, "lookup failed and a retry will not fix it");
            }
            ApiError::Store {
                error,
                retry_after_secs: state.config.retry_after_secs,
            }
            .to_response()
        }
    }
}

/// Puts a stored entry back in the hot cache after a lookup missed it. Best effort: a failure only
/// means the next lookup reads Postgres (or the cold tier) again.
pub(super) async fn refill_hot(state: &AppState, stored: &projections::StoredOutcome) {
    let refill = [projections::CacheEntry::from_stored(stored)];
    if let Err(error) = state.hot_cache.put_many(&refill).await {
        tracing::debug!(error = %error, "hot cache not refilled");
    }
}

/// A lookup answered from a stored entry (warm or cold), naming the tier it came from.
fn stored_response(stored: &projections::StoredOutcome, tier: &str, source: &str) -> HttpResponse {
    lookup_response(
        stored.outcome_class,
        json!({
            "pcs_id": stored.pcs_id,
            "tenant": stored.tenant,
            "outcome": stored.body,
            "first_seen_at_ms": stored.received_at_ms,
            "decided_at_ms": stored.decided_at_ms,
            "expires_at_ms": stored.expires_at_ms,
            "tier": tier,
            "source": source,
        }),
    )
}
