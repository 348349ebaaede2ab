//! A decision event as the projections store it: text NUL-free (see [`crate::sanitize`]), the
//! answer body built from the verdict, the dedup key and first-record row it would write, and the
//! audit entry it becomes. Shared by the two folds of the same events, the transactional one in
//! [`crate::apply`] and the in-memory one of a replay in [`crate::replay_fold`], so that both
//! derive every stored and hashed column the same way.

use events::{DecisionEvent, OutcomeClass, SourceCoordinates, SubmissionSource, Verdict};
use serde_json::{Value, json};

use crate::audit::{AuditEntry, GENESIS_HASH};
use crate::dedup::DedupKey;
use crate::model::{DedupResult, TenantTtl};
use crate::sanitize::{pg_json, pg_string};

/// The fields of a decision event as they will be stored.
#[derive(Debug)]
pub(crate) struct Normalized {
    /// The submission decided.
    pub source: SourceCoordinates,
    /// Tenant.
    pub tenant: String,
    /// `pcs_id`, when the body decoded.
    pub pcs_id_opt: Option<String>,
    /// Signed digest, when the body decoded.
    pub signed_digest_opt: Option<[u8; 32]>,
    /// The verdict's own code.
    pub verdict_code: &'static str,
    /// Class of the verdict alone, before dedup.
    pub outcome_class: OutcomeClass,
    /// Body of the verdict alone, before dedup.
    pub body: Value,
    /// Verified events are the ones deduplicated.
    pub verified: bool,
    /// Key that verified the signature.
    pub key_id_opt: Option<String>,
    /// Version of the tenant's verification parameters.
    pub params_version: i64,
    /// Region that decided.
    pub region: String,
    /// The region that first received the record: its origin for a replica, else the deciding
    /// region.
    pub origin_region: String,
    /// Received at, ms.
    pub received_at_ms: i64,
    /// Decided at, ms.
    pub decided_at_ms: i64,
}

impl Normalized {
    pub(crate) fn from_event(event: &DecisionEvent) -> Self {
        Self::from_owned(event.clone())
    }

    /// [`Self::from_event`] that moves the event's text instead of copying it (a replay owns
    /// its events; copying is most of what normalizing costs).
    pub(crate) fn from_owned(event: DecisionEvent) -> Self {
        let verdict_code = event.verdict.code();
        let outcome_class = event.verdict.class();
        let (body, verified) = match &event.verdict {
            Verdict::Verified { outcome } => (outcome.to_json(), true),
            Verdict::Malformed { error } => (error_body(&event.verdict, error), false),
            Verdict::TenantRefused { reason } | Verdict::SignatureRejected { reason } => {
                (error_body(&event.verdict, reason), false)
            }
        };
        let region = pg_string(event.region);
        Normalized {
            source: SourceCoordinates {
                topic: pg_string(event.source.topic),
                partition: event.source.partition,
                offset: event.source.offset,
            },
            tenant: pg_string(event.tenant),
            pcs_id_opt: event.pcs_id_opt.map(pg_string),
            signed_digest_opt: event.signed_digest_opt,
            verdict_code,
            outcome_class,
            body: pg_json(body),
            verified,
            key_id_opt: event.key_id_opt.map(pg_string),
            params_version: i64::from(event.params_version),
            origin_region: match event.submission_source {
                SubmissionSource::Replica { origin_region, .. } => pg_string(origin_region),
                SubmissionSource::Gateway | SubmissionSource::Kafka => region.clone(),
            },
            region,
            received_at_ms: event.received_at_ms,
            decided_at_ms: event.decided_at_ms,
        }
    }

    /// The `pcs_id` and digest of a verified event that carries both: the only events the dedup
    /// table sees (I2).
    pub(crate) fn dedup_identity(&self) -> Option<(&str, &[u8; 32])> {
        match (&self.pcs_id_opt, &self.signed_digest_opt) {
            (Some(pcs_id), Some(digest)) if self.verified => Some((pcs_id, digest)),
            _ => None,
        }
    }

    /// The dedup key, for verified events that carry a `pcs_id` and a digest.
    pub(crate) fn dedup_key(&self) -> Option<DedupKey> {
        self.dedup_identity()
            .map(|(pcs_id, _)| (self.tenant.clone(), pcs_id.to_owned()))
    }

    /// When the first-record row this event would write stops deduplicating.
    pub(crate) fn expires_at_ms(&self, ttl: &TenantTtl) -> i64 {
        self.received_at_ms.saturating_add(ttl.ttl_ms(&self.tenant))
    }

    /// The unsealed audit entry of this event, answered with `outcome_class`, `dedup_result` and
    /// `body` (the stored first record's for a duplicate or a conflict).
    pub(crate) fn into_audit_entry(
        self,
        partition: i32,
        seq: i64,
        decisions_offset: i64,
        outcome_class: OutcomeClass,
        dedup_result: DedupResult,
        body: Value,
    ) -> AuditEntry {
        AuditEntry {
            partition,
            seq,
            source: self.source,
            decisions_offset,
            tenant: self.tenant,
            pcs_id_opt: self.pcs_id_opt,
            verdict: self.verdict_code.to_owned(),
            outcome_class,
            dedup_result,
            outcome: body,
            signed_digest_opt: self.signed_digest_opt,
            key_id_opt: self.key_id_opt,
            params_version: self.params_version,
            region: self.region,
            received_at_ms: self.received_at_ms,
            decided_at_ms: self.decided_at_ms,
            prev_hash: GENESIS_HASH,
            entry_hash: GENESIS_HASH,
        }
    }
}

/// The contract's error body for a verdict that is not a verification (stored and hashed as is).
fn error_body(verdict: &Verdict, message: &str) -> Value {
    json!({"error": verdict.code(), "message": message})
}
