//! The in-memory fold of a replay (pure; no I/O): the rows that applying the same events with
//! [`ProjectionStore::apply_batch`](crate::ProjectionStore::apply_batch), in the same order, would
//! leave in a fresh schema, computed without a round trip, so that a rebuild is bound by COPY
//! ([`crate::bulk_copy`]) instead of by one transaction per batch.
//!
//! Feed it each event once, in the order of [`crate::replay_merge`]. Each event gives what
//! [`crate::apply`] gives it, and by the same code ([`Normalized`], [`crate::dedup::rule`],
//! [`AuditEntry::seal`]):
//! - an event below its partition's next offset was applied before and changes nothing;
//! - an event whose source already has an audit entry (the shard decided a submission twice, in
//!   any partition) gets no second entry but moves its partition's offset on;
//! - a verified event with a key folds into the dedup rows: first write wins, same digest is a
//!   duplicate, a different digest a conflict answered with the stored first outcome, an expired
//!   row is replaced, and a record of another region may supersede (the cross-region rule);
//! - every other event becomes the next hash-chained audit entry of its partition.
//!
//! [`ReplayFold::fold`] hands back at once what an event adds ([`Folded`]): its audit entry (sealed
//! into its partition's hash chain afterwards, in the same order, by [`AuditChains`]), and the
//! dedup row it wrote, if any, so the caller can COPY both while the fold goes on. A row can
//! still be replaced later (by a record received after it expired, or by an earlier record of
//! another region); the versions copied and replaced since are listed by
//! [`ReplayFold::replaced_rows`], for deletion before the table's key is built. At the end the
//! fold also holds each partition's next offset ([`ReplayFold::next_offsets`]). `pg_notify` has
//! no counterpart (no one listens to a rebuild), nor has what a fresh rebuild cannot hold:
//! cold-tier keys (a rebuild puts every row in the warm table) and rows written before the replay.
//!
//! Memory grows with the log: each live dedup key (the key, the first record's columns, its
//! outcome as JSON text, its set slot; tenants, topics and regions are shared) stays until the
//! end, nothing of an audit entry once the caller has copied it. The audited sources (to spot a
//! source decided twice) are kept as runs of consecutive offsets per source partition
//! ([`SourceRuns`]): a shard decides a partition's offsets in order, so that is a few runs per
//! partition, not an entry per decision. About 420 bytes a decision when each has its own key
//! with a 64-character `pcs_id` (450 measured when each source took an entry of ~30 bytes), so
//! about 1.2 GiB for 3 million decisions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::Arc;

use events::{DecisionEvent, OutcomeClass};
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::audit::{AuditEntry, GENESIS_HASH};
use crate::dedup::{FirstRecord, rule};
use crate::error::StoreError;
use crate::model::{DedupResult, TenantTtl};
use crate::normalized::Normalized;

/// The columns of a `dedup` row as the fold keeps them: repeated names shared, the outcome kept
/// as text (a parsed JSON value costs several times as much).
#[derive(Debug, Clone)]
pub(crate) struct FoldedRow {
    /// Signed digest of the first record.
    pub signed_digest: [u8; 32],
    /// Class of the first outcome.
    pub outcome_class: OutcomeClass,
    /// The first outcome, as JSON text.
    pub outcome: Box<RawValue>,
    /// Topic of the first record's coordinates.
    pub first_topic: Arc<str>,
    /// Partition of the first record's coordinates.
    pub first_partition: i32,
    /// Offset of the first record's coordinates.
    pub first_offset: i64,
    /// Received at, ms.
    pub received_at_ms: i64,
    /// Decided at, ms.
    pub decided_at_ms: i64,
    /// `received_at_ms` + the tenant's TTL.
    pub expires_at_ms: i64,
    /// Region that first received the record ("" when unknown; stored as NULL).
    pub origin_region: Arc<str>,
}

impl FirstRecord for FoldedRow {
    fn signed_digest(&self) -> &[u8; 32] {
        &self.signed_digest
    }

    fn received_at_ms(&self) -> i64 {
        self.received_at_ms
    }

    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }

    fn origin_region(&self) -> &str {
        &self.origin_region
    }
}

/// One version of a key's dedup row, shared by the fold (while it is the key's live row) and the
/// COPY that writes it.
#[derive(Debug)]
pub struct DedupRowVersion {
    /// Tenant.
    pub(crate) tenant: Arc<str>,
    /// `pcs_id`.
    pub(crate) pcs_id: Box<str>,
    /// The other columns.
    pub(crate) row: FoldedRow,
}

/// A tenant's live dedup rows by `pcs_id`. A raw hash table, so that a record's lookup and the
/// write of its row hash the `pcs_id` and probe the table once, not once each.
#[derive(Debug, Default)]
struct TenantRows {
    /// Hashes a `pcs_id`.
    hasher: FastHash,
    /// The live row of each `pcs_id`.
    rows: HashTable<Arc<DedupRowVersion>>,
}

/// What one folded event adds to the rebuild.
#[derive(Debug, Default)]
pub struct Folded {
    /// Its audit entry, not sealed yet (seal the entries in the order they are handed out:
    /// [`AuditChains`]; [`crate::bulk_copy::AuditCopy`] does); `None` when it adds none (applied
    /// before, or its source was decided before).
    pub audit_entry_opt: Option<AuditEntry>,
    /// The dedup row it wrote (a first record, or one that took an expired or superseded row's
    /// place), to copy.
    pub dedup_row_opt: Option<Arc<DedupRowVersion>>,
}

/// Where a decisions partition's fold stands.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionHead {
    /// `seq` of the partition's next audit entry.
    next_seq: i64,
    /// First decisions offset not folded yet.
    next_offset: i64,
}

/// The hash chains of a fresh schema's audit partitions: seals the entries a fold hands out, in
/// the order it hands them out. Apart from the fold so that the hashing (the entry's canonical
/// bytes and a SHA-256; the SHA-256 alone was 6 % of the fold's thread in `flk replay`) can run
/// on another thread than the fold, which is the replay's one serial stage.
#[derive(Debug, Default)]
pub struct AuditChains(BTreeMap<i32, [u8; 32]>);

impl AuditChains {
    /// Seals `entry` after the last entry of its partition sealed here ([`GENESIS_HASH`] before
    /// the first).
    pub fn seal(&mut self, entry: &mut AuditEntry) {
        let prev_hash = self.0.entry(entry.partition).or_insert(GENESIS_HASH);
        entry.seal(*prev_hash);
        *prev_hash = entry.entry_hash;
    }
}

/// The hasher of the fold's tables: with SipHash (std's default), the six lookups a decision
/// made then (two of them of a `pcs_id` of up to 64 bytes) took a fifth of the fold's thread in
/// `flk replay` (perf). foldhash is several times faster and still seeded at random per table,
/// so keys chosen to collide cannot be precomputed.
type FastHash = RandomState;

/// Shared copies of the few distinct names (tenants, topics, regions) the rows repeat.
#[derive(Debug, Default)]
struct Names(HashSet<Arc<str>, FastHash>);

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// A set of offsets as runs of consecutive ones: `start -> end` (exclusive), runs apart by at
/// least one offset. Offsets that come in order, with a few repeated or late, make a few runs, so
/// a lookup touches a few cache lines instead of a hash table of every offset.
#[derive(Debug, Default)]
struct SourceRuns(BTreeMap<i64, i64>);

impl SourceRuns {
    /// Adds `offset`; false if it was in already. (`i64::MAX`, which no Kafka offset reaches,
    /// would make a run that ends at itself: it is then always reported new.)
    fn insert(&mut self, offset: i64) -> bool {
        let previous_opt = (self.0.range(..=offset).next_back()).map(|(start, end)| (*start, *end));
        if previous_opt.is_some_and(|(_, end)| offset < end) {
            return false;
        }
        // A run that starts right after `offset` now touches it, and so may the previous one
        // (ending at `offset`): they become one run.
        let after = offset.saturating_add(1);
        let end = self.0.remove(&after).unwrap_or(after);
        let start = match previous_opt {
            Some((start, previous_end)) if previous_end == offset => start,
            _ => offset,
        };
        self.0.insert(start, end);
        true
    }
}

/// The state a replay builds in memory while its rows are copied into Postgres.
#[derive(Debug)]
pub struct ReplayFold {
    /// Dedup TTL per tenant (the live store's, or the state hash differs: I6).
    dedup_ttl: TenantTtl,
    /// Shared names.
    names: Names,
    /// Live dedup rows by tenant.
    dedup: HashMap<Arc<str>, TenantRows, FastHash>,
    /// Row versions handed out and replaced since.
    replaced: Vec<Arc<DedupRowVersion>>,
    /// Sources that have an audit entry, by source topic and partition.
    audited: HashMap<Arc<str>, HashMap<i32, SourceRuns, FastHash>, FastHash>,
    /// Per decisions partition folded so far.
    heads: BTreeMap<i32, PartitionHead>,
    /// Audit entries handed out.
    audit_entries: u64,
    /// Dedup row versions handed out.
    dedup_versions: u64,
}

/// The answer one new event gets: class, dedup result, body.
type Answer = (OutcomeClass, DedupResult, Value);

impl ReplayFold {
    /// An empty fold (a fresh schema) with the tenants' dedup TTLs.
    pub fn new(dedup_ttl: TenantTtl) -> Self {
        ReplayFold {
            dedup_ttl,
            names: Names::default(),
            dedup: HashMap::default(),
            replaced: Vec::new(),
            audited: HashMap::default(),
            heads: BTreeMap::new(),
            audit_entries: 0,
            dedup_versions: 0,
        }
    }

    /// Folds the event at `offset` of decisions partition `partition`. An error means the fold's
    /// own state is inconsistent (a bug), never bad input.
    pub fn fold(
        &mut self,
        partition: i32,
        offset: i64,
        event: DecisionEvent,
    ) -> Result<Folded, StoreError> {
        let head = self.heads.entry(partition).or_default();
        if offset < head.next_offset {
            return Ok(Folded::default());
        }
        head.next_offset = offset + 1;
        let mut event = Normalized::from_owned(event);
        let topic = self.names.get(&event.source.topic);
        let first_decision = self
            .audited
            .entry(Arc::clone(&topic))
            .or_default()
            .entry(event.source.partition)
            .or_default()
            .insert(event.source.offset);
        if !first_decision {
            return Ok(Folded::default());
        }
        let ((outcome_class, dedup_result, body), dedup_row_opt) =
            self.decide(&mut event, topic)?;
        let head = self.heads.entry(partition).or_default();
        let entry = event.into_audit_entry(
            partition,
            head.next_seq,
            offset,
            outcome_class,
            dedup_result,
            body,
        );
        head.next_seq += 1;
        self.audit_entries += 1;
        Ok(Folded {
            audit_entry_opt: Some(entry),
            dedup_row_opt,
        })
    }

    /// The answer to one new event, its own verdict's or the dedup table's, and the row it wrote.
    fn decide(
        &mut self,
        event: &mut Normalized,
        topic: Arc<str>,
    ) -> Result<(Answer, Option<Arc<DedupRowVersion>>), StoreError> {
        let Some((pcs_id, signed_digest)) = event.dedup_identity() else {
            let body = std::mem::take(&mut event.body);
            return Ok((
                (event.outcome_class, DedupResult::NotDeduplicated, body),
                None,
            ));
        };
        let candidate = FoldedRow {
            signed_digest: *signed_digest,
            outcome_class: event.outcome_class,
            outcome: serde_json::value::to_raw_value(&event.body).map_err(|error| {
                StoreError::Fatal(format!("an outcome does not serialize: {error}"))
            })?,
            first_topic: topic,
            first_partition: event.source.partition,
            first_offset: event.source.offset,
            received_at_ms: event.received_at_ms,
            decided_at_ms: event.decided_at_ms,
            expires_at_ms: event.expires_at_ms(&self.dedup_ttl),
            origin_region: self.names.get(&event.origin_region),
        };
        let tenant = self.names.get(&event.tenant);
        let TenantRows { hasher, rows } = self.dedup.entry(Arc::clone(&tenant)).or_default();
        let entry = rows.entry(
            hasher.hash_one(pcs_id),
            |live| *live.pcs_id == *pcs_id,
            |live| hasher.hash_one(&*live.pcs_id),
        );
        let stored_opt = match &entry {
            Entry::Occupied(occupied) => Some(&occupied.get().row),
            Entry::Vacant(_) => None,
        };
        let resolution = rule(stored_opt, &candidate);
        if resolution.takes_place() {
            let version = Arc::new(DedupRowVersion {
                tenant,
                pcs_id: pcs_id.into(),
                row: candidate,
            });
            match entry {
                Entry::Occupied(mut occupied) => {
                    let replaced = std::mem::replace(occupied.get_mut(), Arc::clone(&version));
                    self.replaced.push(replaced);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(Arc::clone(&version));
                }
            }
            self.dedup_versions += 1;
            let body = std::mem::take(&mut event.body);
            let answer = (event.outcome_class, resolution.result(), body);
            return Ok((answer, Some(version)));
        }
        let Entry::Occupied(occupied) = entry else {
            debug_assert!(false, "a stored row answers only when there is one");
            return Err(StoreError::Fatal(
                "replay fold: a duplicate or conflict without a stored row".into(),
            ));
        };
        let stored = occupied.get();
        let body = serde_json::from_str(stored.row.outcome.get()).map_err(|error| {
            StoreError::Fatal(format!(
                "replay fold: a stored outcome does not parse: {error}"
            ))
        })?;
        Ok(((stored.row.outcome_class, resolution.result(), body), None))
    }

    /// Every live dedup row, in no particular order.
    #[cfg(test)]
    pub(crate) fn dedup_rows(&self) -> impl Iterator<Item = &DedupRowVersion> {
        self.dedup
            .values()
            .flat_map(|tenant| tenant.rows.iter().map(|live| &**live))
    }

    /// Row versions handed out by [`Self::fold`] and replaced since: the rows to delete from
    /// what was copied.
    pub(crate) fn replaced_rows(&self) -> &[Arc<DedupRowVersion>] {
        &self.replaced
    }

    /// Live dedup rows.
    pub fn dedup_row_count(&self) -> u64 {
        self.dedup
            .values()
            .map(|tenant| tenant.rows.len() as u64)
            .sum()
    }

    /// Dedup row versions handed out (live rows, plus the replaced ones).
    pub fn dedup_version_count(&self) -> u64 {
        self.dedup_versions
    }

    /// Audit entries handed out.
    pub fn audit_entry_count(&self) -> u64 {
        self.audit_entries
    }

    /// `(partition, next offset)` of every partition that folded an event: the `next_offset` of
    /// its `projection_offsets` row (partitions without events keep the 0 of their claim).
    pub fn next_offsets(&self) -> Vec<(i32, i64)> {
        self.heads
            .iter()
            .map(|(partition, head)| (*partition, head.next_offset))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, HashMap, HashSet};

    use events::{Outcome, SourceCoordinates, SubmissionSource, Verdict};
    use proptest::prelude::*;

    use super::*;
    use crate::apply::fold_one;
    use crate::audit::check_link;
    use crate::dedup::{DedupBatch, DedupRow};

    const T0: i64 = 1_700_000_000_000;

    fn verified(
        source_offset: i64,
        pcs_id: &str,
        digest: u8,
        received_at_ms: i64,
    ) -> DecisionEvent {
        DecisionEvent {
            source: SourceCoordinates {
                topic: "s".into(),
                partition: 0,
                offset: source_offset,
            },
            submission_source: SubmissionSource::Gateway,
            tenant: "acme".into(),
            pcs_id_opt: Some(pcs_id.into()),
            signed_digest_opt: Some([digest; 32]),
            verdict: Verdict::Verified {
                outcome: Outcome {
                    accepted: digest % 2 == 1,
                    escalated: digest % 3 == 0,
                    recomputed_d_hat_opt: Some(0.5 + f64::from(digest)),
                    recomputed_budget_opt: None,
                    reason_opt: None,
                },
            },
            params_version: 1,
            key_id_opt: Some("k1".into()),
            region: "a".into(),
            received_at_ms,
            decided_at_ms: received_at_ms + 2,
            traceparent_opt: None,
        }
    }

    fn results(fold: &mut ReplayFold, events: &[DecisionEvent]) -> Vec<Option<DedupResult>> {
        events
            .iter()
            .enumerate()
            .map(|(offset, event)| {
                fold.fold(0, offset as i64, event.clone())
                    .unwrap()
                    .audit_entry_opt
                    .map(|entry| entry.dedup_result)
            })
            .collect()
    }

    proptest! {
        /// Runs of offsets answer exactly as a set of every offset would, in any order.
        #[test]
        fn source_runs_answer_as_a_set_does(offsets in proptest::collection::vec(0i64..64, 0..200)) {
            let (mut runs, mut set) = (SourceRuns::default(), HashSet::new());
            for offset in offsets {
                prop_assert_eq!(runs.insert(offset), set.insert(offset), "offset {}", offset);
            }
            let covered: i64 = runs.0.iter().map(|(start, end)| end - start).sum();
            prop_assert_eq!(covered, set.len() as i64);
            // Runs never touch: a gap of at least one offset between them.
            let starts: Vec<(i64, i64)> = runs.0.iter().map(|(s, e)| (*s, *e)).collect();
            for pair in starts.windows(2) {
                prop_assert!(pair[0].1 < pair[1].0, "runs {:?}", pair);
            }
        }
    }

    #[test]
    fn offsets_in_order_make_one_run() {
        let mut runs = SourceRuns::default();
        for offset in 0..1_000 {
            assert!(runs.insert(offset));
        }
        assert!(!runs.insert(500));
        assert_eq!(runs.0.len(), 1);
    }

    #[test]
    fn first_write_wins_until_the_row_expires() {
        let mut fold = ReplayFold::new(TenantTtl::uniform(100));
        let events = [
            verified(0, "p", 1, T0),
            verified(1, "p", 1, T0 + 10),
            verified(2, "p", 2, T0 + 100),
            verified(3, "p", 2, T0 + 101),
            verified(4, "p", 1, T0 + 150),
        ];
        assert_eq!(
            results(&mut fold, &events),
            [
                DedupResult::First,
                DedupResult::Duplicate,
                DedupResult::Conflict,
                DedupResult::First,
                DedupResult::Conflict
            ]
            .map(Some)
        );
        let rows: Vec<_> = fold.dedup_rows().collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].row.signed_digest, [2; 32]);
        assert_eq!(rows[0].row.first_offset, 3);
        assert_eq!(rows[0].row.expires_at_ms, T0 + 201);
        // The first row was handed out, then replaced: it is listed for deletion.
        assert_eq!(fold.dedup_version_count(), 2);
        let replaced: Vec<i64> = fold
            .replaced_rows()
            .iter()
            .map(|version| version.row.first_offset)
            .collect();
        assert_eq!(replaced, [0]);
    }

    #[test]
    fn a_duplicate_and_a_conflict_answer_with_the_first_outcome() {
        let mut fold = ReplayFold::new(TenantTtl::default());
        let first = fold
            .fold(0, 0, verified(0, "p", 1, T0))
            .unwrap()
            .audit_entry_opt
            .unwrap();
        let conflict = fold
            .fold(0, 1, verified(1, "p", 6, T0 + 1))
            .unwrap()
            .audit_entry_opt
            .unwrap();
        assert_eq!(conflict.outcome, first.outcome);
        assert_eq!(conflict.outcome_class, first.outcome_class);
        assert_eq!(conflict.signed_digest_opt, Some([6; 32]), "its own digest");
    }

    #[test]
    fn a_source_decided_twice_gets_one_entry_and_moves_the_offset() {
        let mut fold = ReplayFold::new(TenantTtl::default());
        let event = verified(7, "p", 1, T0);
        assert!(
            fold.fold(2, 10, event.clone())
                .unwrap()
                .audit_entry_opt
                .is_some()
        );
        // Decided again, even in another partition: no entry.
        assert!(
            fold.fold(2, 11, event.clone())
                .unwrap()
                .audit_entry_opt
                .is_none()
        );
        assert!(fold.fold(3, 0, event).unwrap().audit_entry_opt.is_none());
        // Below the next offset: applied before.
        assert!(
            fold.fold(2, 5, verified(8, "q", 1, T0))
                .unwrap()
                .audit_entry_opt
                .is_none()
        );
        assert_eq!(fold.next_offsets(), vec![(2, 12), (3, 1)]);
        assert_eq!(fold.audit_entry_count(), 1);
    }

    #[test]
    fn rejections_are_audited_and_never_deduplicated() {
        let mut fold = ReplayFold::new(TenantTtl::default());
        let mut rejected = verified(0, "p", 1, T0);
        rejected.verdict = Verdict::SignatureRejected {
            reason: "bad".into(),
        };
        let mut chains = AuditChains::default();
        let mut entry = fold.fold(0, 0, rejected).unwrap().audit_entry_opt.unwrap();
        chains.seal(&mut entry);
        assert_eq!(entry.dedup_result, DedupResult::NotDeduplicated);
        assert_eq!(fold.dedup_row_count(), 0);
        let mut first = fold
            .fold(0, 1, verified(1, "p", 1, T0))
            .unwrap()
            .audit_entry_opt
            .unwrap();
        chains.seal(&mut first);
        assert_eq!(first.dedup_result, DedupResult::First);
        assert_eq!(first.seq, 1);
        assert_eq!(check_link(&first, 1, &entry.entry_hash), None);
    }

    #[test]
    fn an_earlier_record_of_another_region_supersedes() {
        let mut fold = ReplayFold::new(TenantTtl::default());
        let mut replica = verified(1, "p", 2, T0 - 5);
        replica.submission_source = SubmissionSource::Replica {
            origin_region: "b".into(),
            origin_partition: 0,
            origin_offset: 0,
            hops: 1,
        };
        let answers = results(&mut fold, &[verified(0, "p", 1, T0), replica]);
        assert_eq!(answers[1], Some(DedupResult::Superseded));
        let rows: Vec<_> = fold.dedup_rows().collect();
        assert_eq!(&*rows[0].row.origin_region, "b");
    }

    // -----------------------------------------------------------------------------------------
    // The fold against the transactional fold's own steps (crate::apply), run in memory.

    /// What `apply::attempt_batches` does with events applied in this order, without Postgres:
    /// its offset filter, its source check, `fold_one` over a `DedupBatch`, its chain.
    /// Audit entries, dedup rows by key, next offsets.
    type Folded = (
        Vec<AuditEntry>,
        BTreeMap<(String, String), DedupRow>,
        Vec<(i32, i64)>,
    );

    fn reference(events: &[(i32, i64, DecisionEvent)], ttl: &TenantTtl) -> Folded {
        let mut dedup = DedupBatch::default();
        let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut heads: HashMap<i32, (i64, [u8; 32])> = HashMap::new();
        let mut sources = HashSet::new();
        let mut entries = Vec::new();
        for (partition, offset, event) in events {
            let next_offset = next_offsets.entry(*partition).or_default();
            if *offset < *next_offset {
                continue;
            }
            *next_offset = offset + 1;
            let event = Normalized::from_event(event);
            if !sources.insert(event.source.clone()) {
                continue;
            }
            let applied = fold_one(&mut dedup, &event, *offset, ttl);
            let (seq, prev_hash) = heads.entry(*partition).or_insert((0, GENESIS_HASH));
            let mut entry = event.into_audit_entry(
                *partition,
                *seq,
                *offset,
                applied.outcome_class,
                applied.dedup_result,
                applied.body,
            );
            entry.seal(*prev_hash);
            *prev_hash = entry.entry_hash;
            *seq += 1;
            entries.push(entry);
        }
        let rows = dedup
            .rows()
            .map(|(key, row)| (key.clone(), row.clone()))
            .collect();
        (entries, rows, next_offsets.into_iter().collect())
    }

    /// A row version in the reference's shape.
    fn as_dedup_row(version: &DedupRowVersion) -> ((String, String), DedupRow) {
        let row = &version.row;
        (
            (version.tenant.to_string(), version.pcs_id.to_string()),
            DedupRow {
                signed_digest: row.signed_digest,
                outcome_class: row.outcome_class,
                outcome: serde_json::from_str(row.outcome.get()).unwrap(),
                first_source: SourceCoordinates {
                    topic: row.first_topic.to_string(),
                    partition: row.first_partition,
                    offset: row.first_offset,
                },
                received_at_ms: row.received_at_ms,
                decided_at_ms: row.decided_at_ms,
                expires_at_ms: row.expires_at_ms,
                origin_region: row.origin_region.to_string(),
            },
        )
    }

    /// One generated event: (partition, kind, tenant, pcs, digest, time step, region, source).
    type Spec = (
        i32,
        u8,
        bool,
        u8,
        u8,
        i64,
        bool,
        Option<prop::sample::Index>,
    );

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0i32..3,
            0u8..10,
            any::<bool>(),
            0u8..4,
            1u8..4,
            prop_oneof![0i64..20, 150i64..400],
            any::<bool>(),
            prop::option::weighted(0.1, any::<prop::sample::Index>()),
        )
    }

    /// Events in apply order, with per-partition offsets ascending (some skipped: gaps).
    fn build(specs: &[Spec]) -> Vec<(i32, i64, DecisionEvent)> {
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        let mut at = T0;
        let mut built: Vec<(i32, i64, DecisionEvent)> = Vec::new();
        for (index, (partition, kind, tenant, pcs, digest, step, region, again)) in
            specs.iter().enumerate()
        {
            at += step;
            let offset = offsets.entry(*partition).or_default();
            *offset += 1 + i64::from(*kind == 9);
            let mut event = match again {
                // The shard decided an earlier submission again.
                Some(pick) if !built.is_empty() => built[pick.index(built.len())].2.clone(),
                // pcs 3 carries a NUL (stored as U+FFFD).
                _ => verified(
                    index as i64,
                    &format!("p{pcs}{}", if *pcs == 3 { "\0" } else { "" }),
                    *digest,
                    at,
                ),
            };
            event.tenant = if *tenant { "acme" } else { "globex" }.into();
            match kind {
                0 => {
                    event.verdict = Verdict::Malformed {
                        error: "e\0".into(),
                    };
                    event.pcs_id_opt = None;
                    event.signed_digest_opt = None;
                }
                1 => {
                    event.verdict = Verdict::SignatureRejected {
                        reason: "bad".into(),
                    }
                }
                2 => {
                    event.verdict = Verdict::TenantRefused {
                        reason: "who".into(),
                    }
                }
                _ => {}
            }
            if *region {
                event.submission_source = SubmissionSource::Replica {
                    origin_region: "b".into(),
                    origin_partition: 1,
                    origin_offset: index as i64,
                    hops: 1,
                };
            }
            built.push((*partition, *offset, event));
        }
        built
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Same audit entries (every column and hash), same dedup rows, same offsets.
        #[test]
        fn the_fold_leaves_what_the_transactional_fold_leaves(
            specs in prop::collection::vec(spec(), 0..80),
        ) {
            let ttl = TenantTtl {
                default_ms: 300,
                per_tenant_ms: [("globex".to_owned(), 100)].into_iter().collect(),
            };
            let events = build(&specs);
            let (expected_entries, expected_rows, expected_offsets) = reference(&events, &ttl);
            let mut fold = ReplayFold::new(ttl);
            let mut chains = AuditChains::default();
            let mut entries = Vec::new();
            let mut versions = Vec::new();
            for (partition, offset, event) in &events {
                let mut folded = fold.fold(*partition, *offset, event.clone()).unwrap();
                if let Some(entry) = folded.audit_entry_opt.as_mut() {
                    chains.seal(entry);
                }
                entries.extend(folded.audit_entry_opt);
                versions.extend(folded.dedup_row_opt);
            }
            prop_assert_eq!(&entries, &expected_entries);
            let live: BTreeMap<_, _> = fold.dedup_rows().map(as_dedup_row).collect();
            prop_assert_eq!(&live, &expected_rows);
            // What was handed out, less what was replaced since, is what lives.
            let kept: BTreeMap<_, _> = versions
                .iter()
                .filter(|version| {
                    !fold.replaced_rows().iter().any(|replaced| Arc::ptr_eq(replaced, version))
                })
                .map(|version| as_dedup_row(version))
                .collect();
            prop_assert_eq!(&kept, &expected_rows);
            prop_assert_eq!(fold.dedup_version_count(), versions.len() as u64);
            prop_assert_eq!(fold.dedup_row_count(), expected_rows.len() as u64);
            prop_assert_eq!(fold.next_offsets(), expected_offsets);
            prop_assert_eq!(fold.audit_entry_count(), entries.len() as u64);
        }
    }
}
