//! The frozen numeric class of an answer: the only place outside the gateway where an HTTP-like
//! number still exists, and only as bytes inside hashes.
//!
//! Why it exists: audit canonical bytes version 1 (`flk.audit.v1`, see [`crate::audit`]) and the
//! state digest version 1 (`flk.state.v1`, see [`crate::state_hash`]) were defined when the stored
//! decision carried the HTTP status it was answered with, and both hash that number as a `u16`.
//! Those formats are frozen: stored chains must keep verifying, and a log written by an older
//! build must replay to the same state hash. So the store now keeps the outcome class (and the
//! dedup result), and the hash encodings derive the old number from them here, in one function,
//! instead of storing or choosing statuses anywhere else. It is not the gateway's status map
//! (`gateway/src/http/status.rs` is); the two agree today, and if the gateway's mapping ever
//! changes, this function must not.
//!
//! Migration `0003_outcome_codes.sql` is its inverse over stored rows: 200 -> `accepted`,
//! 202 -> `escalated` or `rejected` by the outcome JSON's `accepted`, 409 -> the class of the
//! stored first outcome (the dedup result says `conflict`), 400/401/403 -> `malformed`,
//! `signature_invalid`, `tenant_refused`.

use events::OutcomeClass;
use serde_json::Value;

use crate::model::DedupResult;

/// The legacy status class hashed for an answer (frozen; see the module doc).
pub fn frozen_status_class(outcome_class: OutcomeClass, dedup_result: DedupResult) -> u16 {
    if dedup_result == DedupResult::Conflict {
        return 409;
    }
    match outcome_class {
        OutcomeClass::Accepted => 200,
        OutcomeClass::Escalated | OutcomeClass::Rejected => 202,
        OutcomeClass::Malformed => 400,
        OutcomeClass::SignatureRejected => 401,
        OutcomeClass::TenantRefused => 403,
    }
}

/// The class a stored answer body implies: a verification outcome's `accepted`/`escalated`, or an
/// error body's `error` code. `None` when the body is neither.
///
/// The body is hashed in full, so an outcome code that disagrees with it is tampering or a bug;
/// [`crate::audit::check_link`] uses this to catch a change the frozen number cannot see
/// (escalated and rejected share 202).
pub fn class_of_body(body: &Value) -> Option<OutcomeClass> {
    if let Some(code) = body.get("error").and_then(Value::as_str) {
        return OutcomeClass::parse(code).filter(|class| !class.is_verified());
    }
    let accepted = body.get("accepted").and_then(Value::as_bool)?;
    let escalated = body.get("escalated").and_then(Value::as_bool)?;
    Some(OutcomeClass::of_verification(accepted, escalated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_frozen_classes() {
        use OutcomeClass::*;
        let first = DedupResult::First;
        let table = [
            (Accepted, 200),
            (Escalated, 202),
            (Rejected, 202),
            (Malformed, 400),
            (SignatureRejected, 401),
            (TenantRefused, 403),
        ];
        for (class, status) in table {
            assert_eq!(frozen_status_class(class, first), status, "{class}");
            assert_eq!(
                frozen_status_class(class, DedupResult::Duplicate),
                status,
                "{class}"
            );
            assert_eq!(frozen_status_class(class, DedupResult::Conflict), 409);
        }
    }

    #[test]
    fn classes_of_bodies() {
        assert_eq!(
            class_of_body(&json!({"accepted": true, "escalated": false})),
            Some(OutcomeClass::Accepted)
        );
        assert_eq!(
            class_of_body(&json!({"accepted": true, "escalated": true, "reason": "r"})),
            Some(OutcomeClass::Escalated)
        );
        assert_eq!(
            class_of_body(&json!({"accepted": false, "escalated": true})),
            Some(OutcomeClass::Rejected)
        );
        assert_eq!(
            class_of_body(&json!({"error": "signature_invalid", "message": "m"})),
            Some(OutcomeClass::SignatureRejected)
        );
        assert_eq!(class_of_body(&json!({"error": "accepted"})), None);
        assert_eq!(class_of_body(&json!({"accepted": true})), None);
        assert_eq!(class_of_body(&Value::Null), None);
    }
}
