//! Audit tasks: the async audit pipeline's unit of work (topic `flk.audit.tasks`), what a task
//! that used up its attempts carries into the DLQ, and the retry schedule.
//!
//! A task is idempotent by its `id`: a worker records finished ids and skips one it has done, so
//! a task delivered twice (a crash before its position was stored, a redrive) has one effect.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version written in `v`.
pub const TASK_VERSION: u32 = 1;

/// The kinds a worker runs.
pub mod kinds {
    /// Ask the RFC 3161 time-stamping authority for a token over a checkpoint
    /// (payload `{"tree_size": N}`).
    pub const ATTEST_EXTERNAL: &str = "attest_external";
    /// Write a tenant's audit summary between two times to the object store
    /// (payload `{"tenant": T, "from_ms": A, "to_ms": B}`).
    pub const GENERATE_REPORT: &str = "generate_report";
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTask {
    /// Format version ([`TASK_VERSION`]).
    pub v: u32,
    /// Idempotency key: the same work always has the same id.
    pub id: String,
    /// What to do (see [`kinds`]).
    pub kind: String,
    /// When the task was made, ms since the epoch.
    pub created_at_ms: i64,
    /// The kind's arguments.
    pub payload: Value,
    /// How many times an operator sent it back from the DLQ.
    #[serde(default)]
    pub redrives: u32,
}

impl AuditTask {
    /// The `attest_external` task of the checkpoint of `tree_size` in the log `origin`.
    pub fn attest_external(origin: &str, tree_size: u64, now_ms: i64) -> Self {
        AuditTask {
            v: TASK_VERSION,
            id: format!("{}:{origin}:{tree_size}", kinds::ATTEST_EXTERNAL),
            kind: kinds::ATTEST_EXTERNAL.to_owned(),
            created_at_ms: now_ms,
            payload: serde_json::json!({ "tree_size": tree_size }),
            redrives: 0,
        }
    }

    /// The `generate_report` task of `tenant`'s decisions in `[from_ms, to_ms)`.
    pub fn generate_report(tenant: &str, from_ms: i64, to_ms: i64, now_ms: i64) -> Self {
        AuditTask {
            v: TASK_VERSION,
            id: format!("{}:{tenant}:{from_ms}:{to_ms}", kinds::GENERATE_REPORT),
            kind: kinds::GENERATE_REPORT.to_owned(),
            created_at_ms: now_ms,
            payload: serde_json::json!({ "tenant": tenant, "from_ms": from_ms, "to_ms": to_ms }),
            redrives: 0,
        }
    }

    /// The record value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record value (other versions and unknown fields are refused).
    pub fn decode(bytes: &[u8]) -> Result<AuditTask, String> {
        let task: AuditTask = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        if task.v != TASK_VERSION {
            return Err(format!("task version {} is not {TASK_VERSION}", task.v));
        }
        if task.id.is_empty() {
            return Err("task id is empty".into());
        }
        Ok(task)
    }
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it failed, ms since the epoch.
    pub at_ms: i64,
    /// Why.
    pub error: String,
}

/// A task that used up its attempts (or can never succeed), as the DLQ keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadTask {
    /// The task as it was last tried (its raw text when it could not be read).
    pub task: Value,
    /// Why it was given up.
    pub reason: String,
    /// Every failed attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// When it was given up, ms since the epoch.
    pub dead_at_ms: i64,
}

/// Backoff before attempt `attempt + 1` (after `attempt` failures, from 1): "full jitter", a
/// uniform draw in `[0, min(max, initial * 2^(attempt - 1))]`; `unit` is the draw in `[0, 1)`.
pub fn backoff_ms(attempt: u32, initial_ms: u64, max_ms: u64, unit: f64) -> u64 {
    let ceiling = initial_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
        .min(max_ms);
    (ceiling as f64 * unit.clamp(0.0, 1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_round_trip_and_bad_ones_are_refused() {
        let task = AuditTask::attest_external("flk/local", 42, 7);
        assert_eq!(task.id, "attest_external:flk/local:42");
        assert_eq!(AuditTask::decode(&task.encode()).unwrap(), task);
        assert!(AuditTask::decode(b"{}").is_err());
        let text = String::from_utf8(task.encode())
            .unwrap()
            .replace("\"v\":1", "\"v\":9");
        assert!(AuditTask::decode(text.as_bytes()).is_err());
    }

    #[test]
    fn backoff_grows_to_its_ceiling_with_full_jitter() {
        assert_eq!(backoff_ms(1, 500, 30_000, 0.999_999), 499);
        assert_eq!(backoff_ms(3, 500, 30_000, 0.5), 1_000);
        assert_eq!(backoff_ms(20, 500, 30_000, 0.5), 15_000);
        assert_eq!(backoff_ms(4, 500, 30_000, 0.0), 0);
    }
}
