//! The one mapping from outcomes and errors to HTTP statuses and JSON bodies (CONTRACT section 4).
//!
//! Nothing else in the gateway picks a status: handlers return an [`Applied`] decision or an
//! [`ApiError`], and the functions here turn them into responses. The core (`events`) returns
//! [`OutcomeClass`]es and the store (`projections`) keeps them; neither knows HTTP.
//!
//! | outcome or error | status | `error` code | headers |
//! |---|---|---|---|
//! | [`OutcomeClass::Accepted`] (first or duplicate) | 200 | (outcome body) | `Idempotent-Replayed: true` on a duplicate |
//! | [`OutcomeClass::Escalated`], [`OutcomeClass::Rejected`] | 202 | (outcome body) | same |
//! | [`OutcomeClass::Malformed`] | 400 | `malformed` | |
//! | [`OutcomeClass::SignatureRejected`] | 401 | `signature_invalid` | |
//! | [`OutcomeClass::TenantRefused`] | 403 | `tenant_refused` | |
//! | [`DedupResult::Conflict`] (any class) | 409 | `conflict`, with the first outcome | |
//! | [`ApiError::PayloadTooLarge`] | 413 | `payload_too_large` | `Connection: close` |
//! | [`ApiError::UnreadableBody`] | 400 | `bad_body` | |
//! | [`ApiError::BodyTimeout`] | 408 | `body_timeout` | `Connection: close` |
//! | [`ApiError::UnsupportedEncoding`] (a `Content-Encoding` other than `identity`) | 415 | `unsupported_encoding` | |
//! | [`ApiError::RateLimited`] (tenant or client address) | 429 | `rate_limited` | `Retry-After` |
//! | [`ApiError::TenantRefused`] (unknown or disabled tenant, refused before the log) | 403 | `tenant_refused` | |
//! | [`ApiError::LogUnavailable`] | 503 | `log_unavailable` | `Retry-After` |
//! | [`ApiError::DecisionTimeout`] | 503 | `decision_timeout` | `Retry-After` |
//! | [`ApiError::DecisionUnavailable`] | 503 | `decision_unavailable` | `Retry-After` |
//! | [`ApiError::NotFound`] (lookups) | 404 | `not_found` | |
//! | [`ApiError::NoSuch`] (audit: no such checkpoint, leaf or record in the log) | 404 | `not_found` | |
//! | [`ApiError::BadQuery`] (audit: a missing or malformed parameter, an impossible size; shards: an unknown parameter, a sample size out of range, a missing key part) | 400 | `bad_query` | |
//! | [`ApiError::Store`]: [`StoreError::Unavailable`] or [`StoreError::Fenced`] | 503 | `store_unavailable` | `Retry-After` |
//! | [`ApiError::Store`]: [`StoreError::InvalidInput`], [`StoreError::Corrupt`], [`StoreError::Fatal`] | 503 | `store_error` | `Retry-After` |
//! | [`ApiError::NotReady`] (`/ready`) | 503 | (readiness body) | `Retry-After` |
//! | [`ApiError::MetricsUnauthorized`] (`/metrics`, `/debug/actors`, `/api/shards/*`) | 401 | (empty body) | `WWW-Authenticate` |
//!
//! Store errors: the contract has no 5xx besides 503, so every [`StoreError`] a request meets is a
//! 503. For `Unavailable` that is the whole truth; `Fenced` cannot reach a request (only the
//! projector's `apply_batch` is fenced) and is mapped like `Unavailable` for completeness; for
//! `InvalidInput`, `Corrupt` and `Fatal` a retry only helps once an operator has acted, so they
//! carry their own code (`store_error`) and are logged as errors by the handler, but the answer
//! stays a 503: the submission is already in the log (I1), so "retry later" is still safe.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use events::OutcomeClass;
use projections::{Applied, DedupResult, StoreError};
use serde_json::{Value, json};
use thiserror::Error;

/// Whose rate limit a 429 is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// The tenant's configured rate.
    Tenant,
    /// The client address's rate (`gateway.address_rate_per_second`).
    Address,
}

impl RateScope {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RateScope::Tenant => "tenant",
            RateScope::Address => "address",
        }
    }
}

impl std::fmt::Display for RateScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateScope::Tenant => "tenant",
            RateScope::Address => "client address",
        })
    }
}

/// Why a tenant is refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not configured (the name is not echoed back: it is whatever the caller sent).
    Unknown,
    /// Configured with `enabled = false`.
    Disabled,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "unknown tenant: X-Tenant-Id names no configured tenant",
            Refusal::Disabled => "tenant is disabled",
        })
    }
}

/// Header that marks a duplicate answered from the stored first outcome.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Everything a route can answer other than a decision.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is over the configured limit (declared or streamed); it is not logged.
    #[error("body is larger than {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit that was passed.
        limit_bytes: usize,
    },
    /// The body stream broke before it was complete (or its content encoding does not decode).
    #[error("the request body could not be read")]
    UnreadableBody,
    /// The body is compressed (`Content-Encoding`); bodies are taken as sent, never
    /// decompressed, so a compressed one is refused rather than mistaken for JSON. Not logged.
    #[error("Content-Encoding {encoding} is not supported; send the PCS JSON as it is")]
    UnsupportedEncoding {
        /// The encoding named (cut short).
        encoding: String,
    },
    /// The body did not arrive within `gateway.body_timeout_ms`; it is not logged.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The tenant's or the client address's rate limit is spent; the body is not logged.
    #[error("{scope} rate limit reached; retry in {retry_after_secs} s")]
    RateLimited {
        /// Whose limit.
        scope: RateScope,
        /// When a retry may succeed.
        retry_after_secs: u64,
    },
    /// `X-Tenant-Id` names no configured tenant, or a disabled one; the body is not logged
    /// (tenant existence is configuration, not a decision).
    #[error("{0}")]
    TenantRefused(Refusal),
    /// Kafka did not acknowledge the submission in time.
    #[error("the write-ahead log is unavailable; retry")]
    LogUnavailable {
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// The submission is logged but its decision was not committed before the deadline.
    #[error("the record is logged but its decision is not visible yet; retrying is safe")]
    DecisionTimeout {
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// The decision was committed but could not be read back.
    #[error("the decision could not be read; retry")]
    DecisionUnavailable {
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// A lookup found no decision for that tenant and `pcs_id`.
    #[error("no decision for this pcs_id and tenant")]
    NotFound,
    /// An audit request names a checkpoint, leaf or record the log does not have (the message
    /// says which).
    #[error("{0}")]
    NoSuch(String),
    /// An audit or shards request has a missing, unknown or malformed parameter (the message
    /// names it).
    #[error("{0}")]
    BadQuery(String),
    /// The projection store failed a lookup.
    #[error("the store is unavailable; retry")]
    Store {
        /// What the store said (logged by the handler, never sent).
        error: StoreError,
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// The entry is in the cold tier and its segment cannot be served now: the object store does
    /// not answer (`cold_tier_unavailable`), or the object is missing or fails its manifest's
    /// checks (`cold_segment_unreadable`; never served, reported in the log and metrics).
    #[error("{message}")]
    ColdTier {
        /// Machine code.
        code: &'static str,
        /// What happened, without object contents.
        message: String,
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// `/ready`: a dependency does not answer; the body names which.
    #[error("not ready")]
    NotReady {
        /// `{"kafka": bool, "postgres": bool}`.
        checks: Value,
        /// Suggested wait before asking again.
        retry_after_secs: u64,
    },
    /// `/metrics`, `/debug/actors` or `/api/shards/*` without the configured Basic Auth
    /// credentials.
    #[error("metrics require authentication")]
    MetricsUnauthorized,
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnreadableBody => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::LogUnavailable { .. }
            | ApiError::DecisionTimeout { .. }
            | ApiError::DecisionUnavailable { .. }
            | ApiError::Store { .. }
            | ApiError::ColdTier { .. }
            | ApiError::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound | ApiError::NoSuch(_) => StatusCode::NOT_FOUND,
            ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::MetricsUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TenantRefused(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The machine code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnreadableBody => "bad_body",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::UnsupportedEncoding { .. } => "unsupported_encoding",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::LogUnavailable { .. } => "log_unavailable",
            ApiError::DecisionTimeout { .. } => "decision_timeout",
            ApiError::DecisionUnavailable { .. } => "decision_unavailable",
            ApiError::NotFound | ApiError::NoSuch(_) => "not_found",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::Store { error, .. } => match error {
                StoreError::Unavailable(_)
                | StoreError::Fenced { .. }
                | StoreError::LeaseLost(_) => "store_unavailable",
                StoreError::InvalidInput(_) | StoreError::Corrupt(_) | StoreError::Fatal(_) => {
                    "store_error"
                }
            },
            ApiError::ColdTier { code, .. } => code,
            ApiError::NotReady { .. } => "not_ready",
            ApiError::MetricsUnauthorized => "unauthorized",
            ApiError::TenantRefused(_) => "tenant_refused",
        }
    }

    /// `Retry-After` seconds, for the errors a later retry can fix.
    pub fn retry_after_secs_opt(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::LogUnavailable { retry_after_secs }
            | ApiError::DecisionTimeout { retry_after_secs }
            | ApiError::DecisionUnavailable { retry_after_secs }
            | ApiError::Store {
                retry_after_secs, ..
            }
            | ApiError::ColdTier {
                retry_after_secs, ..
            }
            | ApiError::NotReady {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::PayloadTooLarge { .. }
            | ApiError::UnreadableBody
            | ApiError::BodyTimeout { .. }
            | ApiError::UnsupportedEncoding { .. }
            | ApiError::NotFound
            | ApiError::NoSuch(_)
            | ApiError::BadQuery(_)
            | ApiError::TenantRefused(_)
            | ApiError::MetricsUnauthorized => None,
        }
    }

    /// The response: `{"error": code, "message": text}` with the headers the table names.
    pub fn to_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let Some(seconds) = self.retry_after_secs_opt() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        match self {
            // The rest of the body is never read, so the connection cannot be reused.
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTimeout { .. } => {
                response.force_close();
            }
            ApiError::NotReady { checks, .. } => return response.json(checks),
            ApiError::MetricsUnauthorized => {
                return response
                    .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"flk-metrics\""))
                    .finish();
            }
            _ => {}
        }
        response.json(json!({"error": self.code(), "message": self.to_string()}))
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// The status of a decision that was not a conflict.
pub fn outcome_status(outcome_class: OutcomeClass) -> StatusCode {
    match outcome_class {
        OutcomeClass::Accepted => StatusCode::OK,
        OutcomeClass::Escalated | OutcomeClass::Rejected => StatusCode::ACCEPTED,
        OutcomeClass::Malformed => StatusCode::BAD_REQUEST,
        OutcomeClass::SignatureRejected => StatusCode::UNAUTHORIZED,
        OutcomeClass::TenantRefused => StatusCode::FORBIDDEN,
    }
}

/// The status of a committed decision: 409 for a conflict, else by its outcome class.
pub fn applied_status(applied: &Applied) -> StatusCode {
    match applied.dedup_result {
        DedupResult::Conflict => StatusCode::CONFLICT,
        DedupResult::First
        | DedupResult::Duplicate
        | DedupResult::Superseded
        | DedupResult::NotDeduplicated => outcome_status(applied.outcome_class),
    }
}

/// The answer for a committed decision (CONTRACT section 4).
pub fn applied_response(applied: &Applied) -> HttpResponse {
    let mut response = HttpResponse::build(applied_status(applied));
    if applied.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    let body = match applied.dedup_result {
        DedupResult::Conflict => json!({
            "error": "conflict",
            "message": "this pcs_id was already decided for the tenant with different signed fields",
            "pcs_id": applied.pcs_id_opt,
            "outcome": applied.body,
        }),
        // A superseding record (another region's, earlier by the cross-region rule) is now the
        // first record: it is answered like one.
        DedupResult::First | DedupResult::Duplicate | DedupResult::Superseded => {
            let mut body = applied.body.clone();
            if let (Some(object), Some(pcs_id)) = (body.as_object_mut(), &applied.pcs_id_opt) {
                object.insert("pcs_id".into(), json!(pcs_id));
            }
            body
        }
        // The stored error body of a record that was not verified: `{"error", "message"}`.
        DedupResult::NotDeduplicated => applied.body.clone(),
    };
    response.json(body)
}

/// A lookup's answer: the stored first outcome, with the status its first submission got.
pub fn lookup_response(outcome_class: OutcomeClass, mut body: Value) -> HttpResponse {
    if let Some(object) = body.as_object_mut() {
        object.insert("outcome_code".into(), json!(outcome_class.as_str()));
        object.insert(
            "status".into(),
            json!(outcome_status(outcome_class).as_u16()),
        );
    }
    ok().json(body)
}

/// 200 for the operational routes' successful answers.
pub fn ok() -> HttpResponseBuilder {
    HttpResponse::build(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;
    use events::SourceCoordinates;

    fn applied(outcome_class: OutcomeClass, dedup_result: DedupResult, body: Value) -> Applied {
        Applied {
            source: SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset: 1,
            },
            decisions_offset: 1,
            tenant: "acme".into(),
            pcs_id_opt: Some("p1".into()),
            signed_digest_opt: Some([1; 32]),
            outcome_class,
            dedup_result,
            body,
            replayed: dedup_result == DedupResult::Duplicate,
            dedup_expires_at_ms_opt: None,
        }
    }

    fn body_of(response: HttpResponse) -> Value {
        let bytes = response.into_body().try_into_bytes().unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    #[test]
    fn every_outcome_class_has_its_status() {
        let table = [
            (OutcomeClass::Accepted, 200),
            (OutcomeClass::Escalated, 202),
            (OutcomeClass::Rejected, 202),
            (OutcomeClass::Malformed, 400),
            (OutcomeClass::SignatureRejected, 401),
            (OutcomeClass::TenantRefused, 403),
        ];
        assert_eq!(table.len(), OutcomeClass::ALL.len());
        for (class, status) in table {
            assert_eq!(outcome_status(class).as_u16(), status, "{class}");
        }
    }

    /// The shared contract vectors (`tests/vectors/pcs-vectors.json`) carry the status of every
    /// verification case; the mapping must give the same.
    #[test]
    fn verification_vectors_get_their_contract_status() {
        let text = include_str!("../../../tests/vectors/pcs-vectors.json");
        let vectors: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let cases = vectors["verification"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!cases.is_empty());
        for case in cases {
            let name = case["name"].as_str().unwrap_or("?");
            let params: events::VerifyParams =
                serde_json::from_value(case["params"].clone()).unwrap_or_default();
            let pcs = events::Pcs::from_json_bytes(case["pcs"].to_string().as_bytes());
            let Ok(pcs) = pcs else {
                panic!("{name}: vector does not decode");
            };
            let class = events::verify(&pcs, &params).class();
            assert_eq!(
                json!(outcome_status(class).as_u16()),
                case["status"],
                "{name}"
            );
        }
    }

    #[test]
    fn decisions_map_to_status_headers_and_body() {
        let outcome = json!({"accepted": true, "escalated": false});
        let first = applied_response(&applied(
            OutcomeClass::Accepted,
            DedupResult::First,
            outcome.clone(),
        ));
        assert_eq!(first.status().as_u16(), 200);
        assert!(first.headers().get(IDEMPOTENT_REPLAYED).is_none());
        assert_eq!(
            body_of(first),
            json!({"accepted": true, "escalated": false, "pcs_id": "p1"})
        );

        let duplicate = applied_response(&applied(
            OutcomeClass::Rejected,
            DedupResult::Duplicate,
            json!({"accepted": false, "escalated": true, "reason": "r"}),
        ));
        assert_eq!(duplicate.status().as_u16(), 202);
        assert_eq!(
            duplicate
                .headers()
                .get(IDEMPOTENT_REPLAYED)
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
        assert_eq!(body_of(duplicate)["reason"], json!("r"));

        for class in OutcomeClass::ALL {
            let conflict =
                applied_response(&applied(class, DedupResult::Conflict, outcome.clone()));
            assert_eq!(conflict.status().as_u16(), 409, "{class}");
            let body = body_of(conflict);
            assert_eq!(body["error"], json!("conflict"));
            assert_eq!(body["pcs_id"], json!("p1"));
            assert_eq!(body["outcome"], outcome);
        }

        for (class, code, status) in [
            (OutcomeClass::Malformed, "malformed", 400),
            (OutcomeClass::SignatureRejected, "signature_invalid", 401),
            (OutcomeClass::TenantRefused, "tenant_refused", 403),
        ] {
            let error_body = json!({"error": code, "message": "why"});
            let response = applied_response(&applied(
                class,
                DedupResult::NotDeduplicated,
                error_body.clone(),
            ));
            assert_eq!(response.status().as_u16(), status, "{class}");
            assert_eq!(body_of(response), error_body);
        }
    }

    #[test]
    fn errors_map_to_status_code_and_retry_after() {
        let unavailable = |error: StoreError| ApiError::Store {
            error,
            retry_after_secs: 2,
        };
        let table: Vec<(ApiError, u16, &str, Option<&str>)> = vec![
            (
                ApiError::PayloadTooLarge { limit_bytes: 10 },
                413,
                "payload_too_large",
                None,
            ),
            (ApiError::UnreadableBody, 400, "bad_body", None),
            (
                ApiError::BodyTimeout { timeout_ms: 10 },
                408,
                "body_timeout",
                None,
            ),
            (
                ApiError::UnsupportedEncoding {
                    encoding: "gzip".into(),
                },
                415,
                "unsupported_encoding",
                None,
            ),
            (
                ApiError::RateLimited {
                    scope: RateScope::Tenant,
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
                Some("7"),
            ),
            (
                ApiError::RateLimited {
                    scope: RateScope::Address,
                    retry_after_secs: 2,
                },
                429,
                "rate_limited",
                Some("2"),
            ),
            (
                ApiError::TenantRefused(Refusal::Disabled),
                403,
                "tenant_refused",
                None,
            ),
            (
                ApiError::LogUnavailable {
                    retry_after_secs: 1,
                },
                503,
                "log_unavailable",
                Some("1"),
            ),
            (
                ApiError::DecisionTimeout {
                    retry_after_secs: 1,
                },
                503,
                "decision_timeout",
                Some("1"),
            ),
            (
                ApiError::DecisionUnavailable {
                    retry_after_secs: 1,
                },
                503,
                "decision_unavailable",
                Some("1"),
            ),
            (ApiError::NotFound, 404, "not_found", None),
            (
                unavailable(StoreError::Unavailable("down".into())),
                503,
                "store_unavailable",
                Some("2"),
            ),
            (
                unavailable(StoreError::Fenced {
                    consumer: "c".into(),
                    topic: "t".into(),
                    partition: 0,
                    claimed_epoch: 1,
                    current_epoch_opt: Some(2),
                }),
                503,
                "store_unavailable",
                Some("2"),
            ),
            (
                unavailable(StoreError::InvalidInput("x".into())),
                503,
                "store_error",
                Some("2"),
            ),
            (
                unavailable(StoreError::Corrupt("x".into())),
                503,
                "store_error",
                Some("2"),
            ),
            (
                unavailable(StoreError::Fatal("x".into())),
                503,
                "store_error",
                Some("2"),
            ),
        ];
        for (error, status, code, retry_after_opt) in table {
            let message = error.to_string();
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                retry_after_opt,
                "{error:?}"
            );
            assert_eq!(
                body_of(response),
                json!({"error": code, "message": message}),
                "{error:?}"
            );
        }
    }

    #[test]
    fn store_error_text_is_never_sent() {
        let response = ApiError::Store {
            error: StoreError::Corrupt("secret detail".into()),
            retry_after_secs: 1,
        }
        .to_response();
        assert!(!body_of(response).to_string().contains("secret detail"));
    }

    #[test]
    fn lookups_report_the_first_status_and_code() {
        let response = lookup_response(
            OutcomeClass::Escalated,
            json!({"pcs_id": "p1", "outcome": {"accepted": true, "escalated": true}}),
        );
        assert_eq!(response.status().as_u16(), 200);
        let body = body_of(response);
        assert_eq!(body["status"], json!(202));
        assert_eq!(body["outcome_code"], json!("escalated"));
    }
}
