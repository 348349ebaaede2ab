//! The one place that turns results and errors into HTTP responses.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use projections::{Applied, DedupResult};
use serde_json::json;

/// `{"error": code, "message": text}` with `status`; `retry_after_opt` adds `Retry-After`.
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    retry_after_opt: Option<u64>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status_code(status));
    if let Some(seconds) = retry_after_opt {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    response.json(json!({"error": code, "message": message}))
}

/// The answer for a committed decision.
pub fn applied_response(applied: &Applied) -> HttpResponse {
    let mut response = HttpResponse::build(status_code(applied.status));
    if applied.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    let body = match applied.dedup_result {
        DedupResult::Conflict => json!({
            "error": "conflict",
            "message": "this pcs_id was already decided for the tenant with different signed fields",
            "pcs_id": applied.pcs_id_opt,
            "outcome": applied.body,
        }),
        DedupResult::First | DedupResult::Duplicate => {
            let mut body = applied.body.clone();
            if let (Some(object), Some(pcs_id)) = (body.as_object_mut(), &applied.pcs_id_opt) {
                object.insert("pcs_id".into(), json!(pcs_id));
            }
            body
        }
        DedupResult::NotDeduplicated => applied.body.clone(),
    };
    response.json(body)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
