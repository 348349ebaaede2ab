//! The history recorder of `flk bench --history FILE`: every submission attempt through the
//! gateway as one JSON line (when it was sent and answered, tenant, `pcs_id`, signed digest, and
//! what the client was told), for the history checker to judge against the stores afterwards
//! (`flk-chaos check-history`, in the `chaos` crate; this crate only records).
//!
//! A line: `{"invoked_at_ms":12,"completed_at_ms":15,"tenant":"default","pcs_id":"…",
//! "digest":"<hex>","answer":"ok","status":200,"outcome_code":"accepted"}`; `answer` is `ok`
//! (200, 202, 409: a decision, with its outcome code), `fail` (a refusal that decided nothing:
//! 4xx) or `unknown` (503, a timeout, a broken connection: the record may be in the log).

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use super::records::Plan;

/// One attempt as the worker saw it (cheap to keep: the digest is computed when written).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Index of the submission in the plan.
    pub index: usize,
    /// Milliseconds from the start of the run to the send.
    pub invoked_at_ms: u64,
    /// Milliseconds from the start of the run to the answer (or the failure).
    pub completed_at_ms: u64,
    /// HTTP status, `None` without an answer.
    pub status_opt: Option<u16>,
    /// The outcome code the answer carried, for a decision.
    pub outcome_code_opt: Option<String>,
}

/// One line of the history file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    invoked_at_ms: u64,
    completed_at_ms: u64,
    tenant: &'a str,
    pcs_id: &'a str,
    digest: String,
    answer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_code: Option<&'a str>,
}

/// The outcome code of a decision body (for a 409, of the stored first outcome it carries):
/// what the client learned.
pub fn outcome_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let outcome = if value["outcome"].is_object() {
        &value["outcome"]
    } else {
        &value
    };
    let code = match (
        outcome["accepted"].as_bool(),
        outcome["escalated"].as_bool(),
    ) {
        (Some(true), Some(false)) => "accepted",
        (Some(true), Some(true)) => "escalated",
        (Some(false), _) => "rejected",
        _ => return None,
    };
    Some(code.to_owned())
}

/// `ok`, `fail` or `unknown` for an answer.
fn classify(status_opt: Option<u16>) -> &'static str {
    match status_opt {
        Some(200 | 202 | 409) => "ok",
        Some(503) | None => "unknown",
        Some(_) => "fail",
    }
}

/// Writes `attempts` of `plan` to `path`, one JSON line each, in send order.
pub fn write(path: &Path, plan: &Plan, attempts: &mut [Attempt]) -> anyhow::Result<()> {
    attempts.sort_by_key(|attempt| (attempt.invoked_at_ms, attempt.index));
    let file = std::fs::File::create(path)
        .map_err(|error| anyhow::anyhow!("--history {}: {error}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for attempt in attempts.iter() {
        let Some(record) = plan.submissions.get(attempt.index) else {
            continue;
        };
        let digest = events::Pcs::from_json_bytes(&record.body)
            .map(|pcs| hex::encode(pcs.signed_fields().signed_digest()))
            .unwrap_or_default();
        let line = Line {
            invoked_at_ms: attempt.invoked_at_ms,
            completed_at_ms: attempt.completed_at_ms,
            tenant: &plan.tenants[record.tenant].name,
            pcs_id: &record.pcs_id,
            digest,
            answer: classify(attempt.status_opt),
            status: attempt.status_opt,
            outcome_code: attempt.outcome_code_opt.as_deref(),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_are_classified_as_the_checker_reads_them() {
        assert_eq!(classify(Some(200)), "ok");
        assert_eq!(classify(Some(202)), "ok");
        assert_eq!(classify(Some(409)), "ok");
        assert_eq!(classify(Some(429)), "fail");
        assert_eq!(classify(Some(401)), "fail");
        assert_eq!(classify(Some(503)), "unknown");
        assert_eq!(classify(None), "unknown");
    }

    #[test]
    fn the_outcome_code_comes_from_the_decision_or_the_first_one_a_409_carries() {
        assert_eq!(
            outcome_code(br#"{"accepted":true,"escalated":false}"#).as_deref(),
            Some("accepted")
        );
        assert_eq!(
            outcome_code(br#"{"error":"conflict","outcome":{"accepted":false}}"#).as_deref(),
            Some("rejected")
        );
        assert_eq!(
            outcome_code(br#"{"accepted":true,"escalated":true}"#).as_deref(),
            Some("escalated")
        );
        assert_eq!(outcome_code(b"not json"), None);
    }
}
