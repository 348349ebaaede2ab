//! One demotion cycle: what the demoter actor runs every `demote_interval_ms` and what
//! `flk tier demote --now` runs once. Kept apart from the actor so both share it.
//!
//! A cycle, under the demoter lease:
//! 1. finishes segments a stopped demoter left pending (same rows give the same bytes and the
//!    same name, so the object it may have written is reused; rows that changed meanwhile make the
//!    segment abandoned and its object deleted);
//! 2. per tenant, packs the warm rows past `warm_ttl` (oldest first) into segments: a segment is
//!    written once it reaches `segment_target_bytes` compressed or `segment_max_entries`, or, when
//!    the tenant has no more due rows, once its oldest row has waited `segment_max_wait_ms`;
//!    each is recorded pending, written, read back and verified, then sealed (keys indexed, warm
//!    rows deleted) in one transaction (I10);
//! 3. per tenant with a `cold_retention`, deletes the segments whose newest decision is older.

use std::time::Duration;

use events::cold_segment::{self, Segment};
use infra::config::{TierPolicy, TieringConfig};
use infra::metrics::Metrics;
use infra::objects::Objects;
use projections::ProjectionStore;
use projections::cold_objects::{self, ColdReadError};
use projections::cold_tier::{DueRow, Lease, SealOutcome};

use crate::contract::now_ms;

/// What a cycle needs.
#[derive(Clone)]
pub struct DemotionDeps {
    /// The warm tier and the cold tier's bookkeeping.
    pub store: ProjectionStore,
    /// Where segments go.
    pub objects: Objects,
    /// Object name prefix (the deployment's schema).
    pub object_prefix: String,
    /// Segment sizing and pacing.
    pub tiering: TieringConfig,
    /// Each configured tenant's policy, in name order.
    pub policies: Vec<(String, TierPolicy)>,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for DemotionDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemotionDeps")
            .field("object_prefix", &self.object_prefix)
            .field("tiering", &self.tiering)
            .finish_non_exhaustive()
    }
}

/// What one cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    /// Segments sealed.
    pub segments: u64,
    /// Entries moved to the cold tier.
    pub entries: u64,
    /// Compressed bytes written.
    pub compressed_bytes: u64,
    /// Uncompressed bytes of those segments.
    pub raw_bytes: u64,
    /// Pending segments of an earlier run that were finished.
    pub resumed: u64,
    /// Segments abandoned because their rows changed while packed.
    pub abandoned: u64,
    /// Segments deleted by retention.
    pub expired: u64,
    /// True when the segment budget of the cycle ran out with due rows left.
    pub more_due: bool,
}

impl CycleReport {
    /// Adds `other`'s counts to this one (cycles run back to back).
    pub fn add(&mut self, other: &CycleReport) {
        self.segments += other.segments;
        self.entries += other.entries;
        self.compressed_bytes += other.compressed_bytes;
        self.raw_bytes += other.raw_bytes;
        self.resumed += other.resumed;
        self.abandoned += other.abandoned;
        self.expired += other.expired;
        self.more_due = other.more_due;
    }
}

/// Why a cycle stopped early. Nothing half-done is left: a pending segment is finished or
/// abandoned by the next cycle.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Another demoter holds the lease (not a failure: this one stands by).
    #[error("another demoter holds the lease")]
    Standby,
    /// The lease was taken over during the cycle; nothing more is moved by this process.
    #[error("{0}")]
    LeaseLost(String),
    /// Postgres or the object store failed; retried next cycle.
    #[error("{0}")]
    Failed(String),
}

impl From<projections::StoreError> for CycleError {
    fn from(error: projections::StoreError) -> Self {
        match error {
            projections::StoreError::LeaseLost(message) => CycleError::LeaseLost(message),
            other => CycleError::Failed(other.to_string()),
        }
    }
}

impl From<ColdReadError> for CycleError {
    fn from(error: ColdReadError) -> Self {
        CycleError::Failed(error.to_string())
    }
}

/// How long a lease lasts without renewal: three cycles, at least 30 s.
pub fn lease_duration(tiering: &TieringConfig) -> Duration {
    Duration::from_millis(tiering.demote_interval_ms.saturating_mul(3)).max(Duration::from_secs(30))
}

/// Takes or renews the demoter lease for `owner`.
pub async fn take_lease(deps: &DemotionDeps, owner: &str) -> Result<Lease, CycleError> {
    let lease_ms = i64::try_from(lease_duration(&deps.tiering).as_millis()).unwrap_or(i64::MAX);
    deps.store
        .take_tier_lease(owner, lease_ms)
        .await?
        .ok_or(CycleError::Standby)
}

/// Runs one cycle under `lease`; `on_segment` hears of every sealed segment (progress).
pub async fn run_cycle(
    deps: &DemotionDeps,
    lease: &Lease,
    on_segment: &(dyn Fn(&CycleReport) + Sync),
) -> Result<CycleReport, CycleError> {
    let mut report = CycleReport::default();
    resume_pending(deps, lease, &mut report).await?;
    let mut budget = deps.tiering.max_segments_per_cycle;
    for (tenant, policy) in &deps.policies {
        // Rows to read for the next segment: learned from the last one, so a segment of about
        // `segment_target_bytes` costs about its own rows to read.
        let mut fetch = deps.tiering.segment_max_entries.min(FIRST_FETCH);
        while budget > 0 {
            match demote_one(deps, lease, tenant, policy, &mut fetch, &mut report).await? {
                Step::Sealed => {
                    budget -= 1;
                    on_segment(&report);
                }
                Step::Abandoned => budget -= 1,
                Step::ReadMore => {}
                Step::NothingDue => break,
            }
        }
        if budget == 0 {
            report.more_due = true;
            break;
        }
    }
    for (tenant, policy) in &deps.policies {
        if let Some(retention_ms) = policy.cold_retention_ms_opt() {
            expire(deps, lease, tenant, retention_ms, &mut report).await?;
        }
    }
    Ok(report)
}

/// Rows read for a tenant's first segment of a cycle.
const FIRST_FETCH: usize = 2_000;

enum Step {
    Sealed,
    ReadMore,
    Abandoned,
    NothingDue,
}

/// Packs and moves one segment of `tenant`, if enough is due.
async fn demote_one(
    deps: &DemotionDeps,
    lease: &Lease,
    tenant: &str,
    policy: &TierPolicy,
    fetch: &mut usize,
    report: &mut CycleReport,
) -> Result<Step, CycleError> {
    let now = now_ms();
    let due_before = now.saturating_sub(policy.warm_ttl_ms());
    let max_entries = deps.tiering.segment_max_entries;
    let target = deps.tiering.segment_target_bytes;
    let asked = *fetch;
    let limit = i64::try_from(asked).unwrap_or(i64::MAX);
    let mut rows = deps.store.due_rows(tenant, due_before, limit).await?;
    let read = rows.len();
    let Some(oldest_due_ms) = rows.first().map(|row| row.due_since_ms) else {
        return Ok(Step::NothingDue);
    };
    let mut segment = pack(&rows, deps.tiering.zlib_level)?;
    let compressed = segment.manifest.compressed_bytes.max(1);
    if compressed > target.saturating_mul(2) && rows.len() > 1 {
        // Far over the target: keep the oldest rows that make about the target size.
        let keep = (rows.len() as u128 * u128::from(target) * 11 / 10 / u128::from(compressed))
            .clamp(1, rows.len() as u128) as usize;
        rows.truncate(keep);
        segment = pack(&rows, deps.tiering.zlib_level)?;
    }
    // Next time read about what this segment needed, plus a margin.
    let per_byte = rows.len() as f64 / segment.manifest.compressed_bytes.max(1) as f64;
    *fetch = ((per_byte * target as f64 * 1.25) as usize + 16).clamp(1, max_entries);
    let full = rows.len() >= max_entries || segment.manifest.compressed_bytes >= target;
    if !full && read >= asked && asked < max_entries {
        // The read was cut short by its limit: read more before deciding the segment is small.
        *fetch = asked.saturating_mul(2).min(max_entries);
        return Ok(Step::ReadMore);
    }
    let waited_ms = due_before.saturating_sub(oldest_due_ms);
    let max_wait_ms = i64::try_from(deps.tiering.segment_max_wait_ms).unwrap_or(i64::MAX);
    if !full && waited_ms < max_wait_ms {
        // Too small to be worth an object yet; more rows will come due. (When a full fetch was
        // too small, the next fetch is larger, so this is only a quiet tenant's tail.)
        return Ok(Step::NothingDue);
    }
    move_segment(deps, lease, &rows, segment, report).await
}

fn pack(rows: &[DueRow], level: u32) -> Result<Segment, CycleError> {
    let entries: Vec<_> = rows.iter().map(|row| row.entry.clone()).collect();
    cold_segment::pack(&entries, level).map_err(|error| CycleError::Failed(error.to_string()))
}

/// Pending -> written -> verified -> sealed, or abandoned when the rows changed meanwhile.
async fn move_segment(
    deps: &DemotionDeps,
    lease: &Lease,
    rows: &[DueRow],
    segment: Segment,
    report: &mut CycleReport,
) -> Result<Step, CycleError> {
    let key = cold_objects::segment_key(&deps.object_prefix, &segment.manifest);
    let tenant = segment.manifest.tenant.clone();
    let pcs_ids: Vec<String> = rows.iter().map(|row| row.entry.pcs_id.clone()).collect();
    deps.store
        .record_pending_segment(lease, &key, &segment.manifest, &pcs_ids, now_ms())
        .await?;
    cold_objects::write_and_verify(&deps.objects, &key, &segment).await?;
    match deps.store.seal_segment(lease, &key, rows, now_ms()).await? {
        SealOutcome::Sealed => {
            report.segments += 1;
            report.entries += segment.manifest.entries;
            report.compressed_bytes += segment.manifest.compressed_bytes;
            report.raw_bytes += segment.manifest.raw_bytes;
            let metrics = &deps.metrics;
            metrics
                .tier_demoted_entries
                .with_label_values(&[tenant.as_str()])
                .inc_by(segment.manifest.entries);
            metrics
                .tier_segments_written
                .with_label_values(&[tenant.as_str()])
                .inc();
            metrics
                .tier_segment_bytes
                .with_label_values(&[tenant.as_str()])
                .inc_by(segment.manifest.compressed_bytes);
            tracing::info!(
                tenant = tenant.as_str(),
                entries = segment.manifest.entries,
                compressed_bytes = segment.manifest.compressed_bytes,
                raw_bytes = segment.manifest.raw_bytes,
                "cold segment sealed"
            );
            Ok(Step::Sealed)
        }
        SealOutcome::RowsChanged(reason) => {
            abandon(deps, lease, &key, &tenant, &reason, report).await?;
            Ok(Step::Abandoned)
        }
    }
}

async fn abandon(
    deps: &DemotionDeps,
    lease: &Lease,
    key: &str,
    tenant: &str,
    reason: &str,
    report: &mut CycleReport,
) -> Result<(), CycleError> {
    tracing::info!(tenant, reason, "cold segment abandoned; its rows stay warm");
    deps.store
        .abandon_segment(lease, key, reason, now_ms())
        .await?;
    cold_objects::delete_segment(&deps.objects, key).await?;
    report.abandoned += 1;
    deps.metrics
        .tier_segments_abandoned
        .with_label_values(&[tenant])
        .inc();
    Ok(())
}

/// Finishes or abandons the segments a stopped demoter left pending.
async fn resume_pending(
    deps: &DemotionDeps,
    lease: &Lease,
    report: &mut CycleReport,
) -> Result<(), CycleError> {
    for pending in deps.store.pending_segments().await? {
        let rows = deps
            .store
            .warm_rows(&pending.tenant, &pending.pcs_ids)
            .await?;
        let repacked = if rows.len() == pending.pcs_ids.len() && !rows.is_empty() {
            Some(pack(&rows, pending.manifest.level)?)
        } else {
            None
        };
        match repacked {
            Some(segment) if segment.manifest == pending.manifest => {
                tracing::info!(
                    tenant = pending.tenant.as_str(),
                    "finishing a cold segment left pending"
                );
                if let Step::Sealed = move_segment(deps, lease, &rows, segment, report).await? {
                    report.resumed += 1;
                }
            }
            _ => {
                abandon(
                    deps,
                    lease,
                    &pending.segment_key,
                    &pending.tenant,
                    "its rows changed before it was sealed",
                    report,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Deletes `tenant`'s segments past retention (keys first, then objects).
async fn expire(
    deps: &DemotionDeps,
    lease: &Lease,
    tenant: &str,
    retention_ms: i64,
    report: &mut CycleReport,
) -> Result<(), CycleError> {
    let before = now_ms().saturating_sub(retention_ms);
    for segment in deps.store.segments_past(tenant, before, 100).await? {
        let keys = deps
            .store
            .expire_segment(lease, &segment.segment_key, now_ms())
            .await?;
        cold_objects::delete_segment(&deps.objects, &segment.segment_key).await?;
        tracing::info!(tenant, keys, "cold segment deleted by retention");
        report.expired += 1;
        deps.metrics
            .tier_segments_expired
            .with_label_values(&[tenant])
            .inc();
    }
    Ok(())
}
