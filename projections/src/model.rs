//! Values the store hands back: claims, applied results, stored outcomes, chain reports.

use std::collections::HashMap;

use events::{OutcomeClass, SourceCoordinates};
use serde_json::Value;

/// Default dedup time to live: 14 days.
pub const DEFAULT_DEDUP_TTL_MS: i64 = 14 * 24 * 60 * 60 * 1000;

/// The result of claiming a decisions partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// First decisions offset not yet applied; the projector seeks here.
    pub next_offset: i64,
    /// This owner's epoch; every `apply_batch` must present it (a newer claim fences this one).
    pub owner_epoch: i64,
}

/// How a verified submission related to the dedup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupResult {
    /// First record for (tenant, `pcs_id`) within the TTL: it wrote the dedup row.
    First,
    /// Same signed digest as the stored first record: answered with the stored outcome.
    Duplicate,
    /// Different signed digest: a conflict answered with the stored first outcome; nothing
    /// overwritten.
    Conflict,
    /// Not a verified record (malformed, tenant refused, signature rejected) or no key: the dedup
    /// table is not touched (I2).
    NotDeduplicated,
    /// Different signed digest from a first record of another region, and earlier by the
    /// cross-region rule (earliest received-at, then region id): it replaced that row, so every
    /// region keeps the same first record (docs/contract.md).
    Superseded,
}

impl DedupResult {
    /// Stable text stored in `audit_log.dedup_result` (part of the hash chain; never change).
    pub fn as_str(self) -> &'static str {
        match self {
            DedupResult::First => "first",
            DedupResult::Duplicate => "duplicate",
            DedupResult::Conflict => "conflict",
            DedupResult::NotDeduplicated => "not_deduplicated",
            DedupResult::Superseded => "superseded",
        }
    }

    /// Parses [`DedupResult::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "first" => Some(DedupResult::First),
            "duplicate" => Some(DedupResult::Duplicate),
            "conflict" => Some(DedupResult::Conflict),
            "not_deduplicated" => Some(DedupResult::NotDeduplicated),
            "superseded" => Some(DedupResult::Superseded),
            _ => None,
        }
    }
}

/// What one decision event did; the gateway maps it to a status (`gateway/src/http/status.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The submission (WAL coordinates) the decision is about; the gateway's wait key.
    pub source: SourceCoordinates,
    /// Offset of the decision event in the decisions topic.
    pub decisions_offset: i64,
    /// Tenant of the submission.
    pub tenant: String,
    /// `pcs_id`, when the body decoded.
    pub pcs_id_opt: Option<String>,
    /// This submission's signed digest, when the body decoded (for a conflict it differs from the
    /// stored first digest).
    pub signed_digest_opt: Option<[u8; 32]>,
    /// Class of the answered outcome: the event's own class for a first record or a rejection,
    /// the stored first record's class for a duplicate or a conflict (the dedup result tells
    /// those apart).
    pub outcome_class: OutcomeClass,
    /// Relation to the dedup table.
    pub dedup_result: DedupResult,
    /// Response body: the outcome JSON (for a duplicate or conflict, the stored first outcome), or
    /// `{"error": code, "message": text}` for a record that was not verified.
    pub body: Value,
    /// True for a duplicate: the gateway adds `Idempotent-Replayed: true`.
    pub replayed: bool,
    /// Expiry of the dedup row that decided the answer (first or duplicate); `None` otherwise and
    /// when read back from the audit log.
    pub dedup_expires_at_ms_opt: Option<i64>,
}

/// The dedup row for (tenant, `pcs_id`): the first outcome and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    /// Tenant (lookups are always tenant-scoped, I7).
    pub tenant: String,
    /// The `pcs_id`.
    pub pcs_id: String,
    /// Signed digest of the first record.
    pub signed_digest: [u8; 32],
    /// Class of the first outcome (accepted, escalated or rejected).
    pub outcome_class: OutcomeClass,
    /// The first outcome JSON.
    pub body: Value,
    /// WAL coordinates of the first record.
    pub first_source: SourceCoordinates,
    /// When the first record was received, ms since the epoch.
    pub received_at_ms: i64,
    /// When it was decided, ms since the epoch.
    pub decided_at_ms: i64,
    /// When the row stops deduplicating (`received_at_ms` + the tenant's TTL).
    pub expires_at_ms: i64,
    /// Storage tier (`hot` when written by the projector).
    pub tier: String,
}

impl StoredOutcome {
    /// True when the row no longer deduplicates a record received at `at_ms`.
    pub fn is_expired_at(&self, at_ms: i64) -> bool {
        self.expires_at_ms < at_ms
    }
}

/// Per-tenant time to live, in milliseconds, with a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTtl {
    /// TTL for tenants without an override.
    pub default_ms: i64,
    /// Overrides by tenant name.
    pub per_tenant_ms: HashMap<String, i64>,
}

impl TenantTtl {
    /// The same TTL for every tenant.
    pub fn uniform(default_ms: i64) -> Self {
        TenantTtl {
            default_ms,
            per_tenant_ms: HashMap::new(),
        }
    }

    /// TTL that applies to `tenant`.
    pub fn ttl_ms(&self, tenant: &str) -> i64 {
        self.per_tenant_ms
            .get(tenant)
            .copied()
            .unwrap_or(self.default_ms)
    }
}

impl Default for TenantTtl {
    fn default() -> Self {
        TenantTtl::uniform(DEFAULT_DEDUP_TTL_MS)
    }
}

/// Why an audit chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreakKind {
    /// `seq` is not the previous one plus one (or the first is not 0).
    SeqGap {
        /// The `seq` that should have come next.
        expected: i64,
    },
    /// `prev_hash` is not the previous entry's `entry_hash` (or 32 zero bytes for the first).
    PrevHashMismatch,
    /// `entry_hash` is not SHA-256(prev_hash || canonical bytes) of the stored columns.
    EntryHashMismatch,
    /// The stored outcome code disagrees with the hashed outcome body (the hash covers the code
    /// only through its frozen status class, which escalated and rejected share).
    OutcomeMismatch,
}

/// The first place an audit chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// `seq` of the offending entry.
    pub seq: i64,
    /// What is wrong with it.
    pub kind: ChainBreakKind,
}

/// Result of recomputing one partition's audit hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Decisions partition.
    pub partition: i32,
    /// Entries read.
    pub entries: u64,
    /// `seq` of the last entry, when any.
    pub last_seq_opt: Option<i64>,
    /// `entry_hash` of the last entry as stored (32 zero bytes when empty).
    pub head_hash: [u8; 32],
    /// First break found; `None` when the whole chain verifies.
    pub break_opt: Option<ChainBreak>,
}

impl ChainReport {
    /// True when every entry verified.
    pub fn is_intact(&self) -> bool {
        self.break_opt.is_none()
    }
}

/// What [`crate::ProjectionStore::swap_in`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// The schema that is live now (the rebuild, renamed).
    pub live_schema: String,
    /// Where the previous live schema went (kept for inspection), `None` when there was none.
    pub old_schema_opt: Option<String>,
}
