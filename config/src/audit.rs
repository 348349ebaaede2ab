//! `[audit]`: the audit Merkle log's anchorer (signed checkpoints).

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// The anchorer and its signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name in its checkpoints and the signing key's name; `flk/<region>` when unset.
    pub origin_opt: Option<String>,
    /// File holding the base64 of the 32-byte Ed25519 seed that signs checkpoints
    /// (`FLK_AUDIT_SIGNING_KEY_FILE`; `flk audit keygen` writes one). Without it no anchorer runs.
    pub signing_key_file_opt: Option<PathBuf>,
    /// Longest time between a decision's audit entry and the checkpoint that covers it.
    pub anchor_interval_ms: u64,
    /// Most leaves one round (one checkpoint) appends; a larger backlog takes several rounds
    /// back to back. A round holds its entries and leaves in memory: while a backlog of
    /// 1,000,000 records drained on 2 cores, rounds of 20,000 took the process to 370-385 MiB,
    /// rounds of 5,000 to 222 MiB and rounds of 2,000 to 184 MiB, and anchored 14,000, 13,000
    /// and 8,800 leaves/s (each round has a fixed cost: a signature, a transaction, a proof).
    pub max_round_leaves: usize,
    /// RFC 3161 time-stamping authority (`FLK_TSA_URL`): each checkpoint gets an
    /// `attest_external` audit task; none when unset.
    pub tsa_url_opt: Option<String>,
    /// How long one time-stamp request may take.
    pub tsa_timeout_ms: u64,
    /// Attempts of an audit task before it goes to the DLQ.
    pub task_max_attempts: u32,
    /// Backoff before the second attempt; it doubles with each attempt (full jitter).
    pub task_backoff_initial_ms: u64,
    /// Longest backoff between attempts.
    pub task_backoff_max_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            origin_opt: None,
            signing_key_file_opt: None,
            anchor_interval_ms: 1_000,
            max_round_leaves: 5_000,
            tsa_url_opt: None,
            tsa_timeout_ms: 10_000,
            task_max_attempts: 5,
            task_backoff_initial_ms: 500,
            task_backoff_max_ms: 30_000,
        }
    }
}

impl AuditConfig {
    /// The log's origin line for `region`.
    pub fn origin(&self, region: &str) -> String {
        self.origin_opt
            .clone()
            .unwrap_or_else(|| format!("flk/{region}"))
    }

    /// Reads the signing seed from `signing_key_file_opt` (`None` when no file is configured).
    /// The error names the file, never its content.
    pub fn signing_seed(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        let Some(path) = &self.signing_key_file_opt else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        BASE64
            .decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    "audit.signing_key_file_opt",
                    format!(
                        "{} must hold the base64 of a 32-byte Ed25519 seed (`flk audit keygen` writes one)",
                        path.display()
                    ),
                )
            })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(origin) = &self.origin_opt {
            if origin.is_empty()
                || origin.contains(['+', ' '])
                || origin.chars().any(char::is_control)
            {
                return Err(invalid(
                    "audit.origin_opt",
                    "must be non-empty, without `+`, spaces or control characters",
                ));
            }
        }
        if !(10..=3_600_000).contains(&self.anchor_interval_ms) {
            return Err(invalid(
                "audit.anchor_interval_ms",
                "must be between 10 and 3600000",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_round_leaves) {
            return Err(invalid(
                "audit.max_round_leaves",
                "must be between 1 and 1000000",
            ));
        }
        if let Some(url) = &self.tsa_url_opt {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "audit.tsa_url_opt",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if !(1..=100).contains(&self.task_max_attempts) {
            return Err(invalid(
                "audit.task_max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.task_backoff_initial_ms == 0
            || self.task_backoff_max_ms < self.task_backoff_initial_ms
        {
            return Err(invalid(
                "audit.task_backoff_initial_ms",
                "must be positive and at most audit.task_backoff_max_ms",
            ));
        }
        if self.tsa_timeout_ms == 0 {
            return Err(invalid("audit.tsa_timeout_ms", "must be positive"));
        }
        Ok(())
    }
}
