//! The dedup table: first write wins per (tenant, `pcs_id`) for the tenant's TTL (I3).
//!
//! Within a batch transaction the rows of every key the batch touches are locked (`FOR UPDATE`,
//! in key order, so two projectors touching overlapping keys do not deadlock), folded in memory
//! event by event, then written back with one multi-row INSERT (new keys) and one UPDATE (rows an
//! expired first record gave up). A concurrent projector inserting the same new key makes the
//! INSERT fail with a unique violation; the whole batch transaction is then retried and sees it.
//!
//! The rules themselves ([`rule`]: first write wins, expiry, the cross-region rule) are pure
//! functions over [`FirstRecord`], shared with the in-memory fold of a replay
//! ([`crate::replay_fold`]), which keeps its rows in a more compact form.

use std::collections::HashMap;

use events::{OutcomeClass, SourceCoordinates};
use serde_json::Value;
use tokio_postgres::Row;

use crate::error::{AttemptError, StoreError};
use crate::model::{DedupResult, StoredOutcome};
use crate::plan_mode::{self, PlanMode};

/// (tenant, `pcs_id`).
pub(crate) type DedupKey = (String, String);

/// The columns of a dedup row this crate folds (tier is left to the demoter).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DedupRow {
    /// Signed digest of the first record.
    pub signed_digest: [u8; 32],
    /// Class of the first outcome.
    pub outcome_class: OutcomeClass,
    /// The first outcome JSON.
    pub outcome: Value,
    /// Coordinates of the first record.
    pub first_source: SourceCoordinates,
    /// Received at, ms.
    pub received_at_ms: i64,
    /// Decided at, ms.
    pub decided_at_ms: i64,
    /// `received_at_ms` + TTL.
    pub expires_at_ms: i64,
    /// Region that first received the record ("" when unknown: rows from before migration 0010
    /// and cold keys, which are never superseded).
    pub origin_region: String,
}

/// What the first-write-wins rules read of a first record: a stored row, or the row a new
/// record would write. Implemented by [`DedupRow`] here and by the replay's compact rows
/// ([`crate::replay_fold`]), so the live fold and a replay decide by the same code.
pub(crate) trait FirstRecord {
    /// Signed digest of the record.
    fn signed_digest(&self) -> &[u8; 32];
    /// Received at, ms.
    fn received_at_ms(&self) -> i64;
    /// `received_at_ms` + the tenant's TTL.
    fn expires_at_ms(&self) -> i64;
    /// Region that first received the record ("" when unknown).
    fn origin_region(&self) -> &str;
}

impl FirstRecord for DedupRow {
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

/// How a verified record relates to the row stored for its key (pure; no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// No live row: this record becomes the first.
    First,
    /// Same digest as the live row.
    Duplicate,
    /// Different digest from the live row.
    Conflict,
    /// Different digest from the live row of another region, and first by the cross-region rule:
    /// this record takes the row's place.
    Superseded,
}

impl Resolution {
    /// True when the record becomes the key's row.
    pub(crate) fn takes_place(self) -> bool {
        matches!(self, Resolution::First | Resolution::Superseded)
    }

    /// The dedup result an audit entry records for it.
    pub(crate) fn result(self) -> DedupResult {
        match self {
            Resolution::First => DedupResult::First,
            Resolution::Duplicate => DedupResult::Duplicate,
            Resolution::Conflict => DedupResult::Conflict,
            Resolution::Superseded => DedupResult::Superseded,
        }
    }
}

/// The cross-region rule (docs/contract.md): does `candidate`, a different record for the key of
/// `stored`, take its place? Only between records of two different, known regions, and only when
/// the candidate ranks first by (received-at, origin region, signed digest). Every region ranks
/// the same two records the same way, so they all keep the same one.
pub(crate) fn supersedes(stored: &impl FirstRecord, candidate: &impl FirstRecord) -> bool {
    if stored.origin_region().is_empty()
        || candidate.origin_region().is_empty()
        || stored.origin_region() == candidate.origin_region()
    {
        return false;
    }
    rank(candidate) < rank(stored)
}

/// The order of the cross-region rule: received-at, then origin region, then signed digest.
fn rank(row: &impl FirstRecord) -> (i64, &str, [u8; 32]) {
    (
        row.received_at_ms(),
        row.origin_region(),
        *row.signed_digest(),
    )
}

/// First write wins; a row expired before `received_at_ms` no longer counts.
pub(crate) fn resolve(
    existing_opt: Option<&impl FirstRecord>,
    signed_digest: &[u8; 32],
    received_at_ms: i64,
) -> Resolution {
    match existing_opt {
        None => Resolution::First,
        Some(row) if row.expires_at_ms() < received_at_ms => Resolution::First,
        Some(row) if row.signed_digest() == signed_digest => Resolution::Duplicate,
        Some(_) => Resolution::Conflict,
    }
}

/// The whole rule for one verified record against its key's row: [`resolve`], then the
/// cross-region rule for a conflict ([`supersedes`]).
pub(crate) fn rule(
    existing_opt: Option<&impl FirstRecord>,
    candidate: &impl FirstRecord,
) -> Resolution {
    match resolve(
        existing_opt,
        candidate.signed_digest(),
        candidate.received_at_ms(),
    ) {
        Resolution::Conflict
            if existing_opt.is_some_and(|stored| supersedes(stored, candidate)) =>
        {
            Resolution::Superseded
        }
        other => other,
    }
}

/// What the batch must write for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Loaded and unchanged.
    Stored,
    /// New key: INSERT.
    Inserted,
    /// Existing key whose expired row was replaced: UPDATE.
    Replaced,
    /// Loaded from the cold tier's key index (no warm row): a new first record INSERTs.
    Cold,
}

#[derive(Debug)]
struct Slot {
    row: DedupRow,
    state: SlotState,
}

/// The answer the dedup table gives one verified record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DedupAnswer {
    /// Relation to the stored row.
    pub result: DedupResult,
    /// Class of the answered outcome (the first record's, except for a new first record).
    pub outcome_class: OutcomeClass,
    /// Body to answer (the first outcome).
    pub body: Value,
    /// Expiry of the row that answered (first or duplicate).
    pub expires_at_ms_opt: Option<i64>,
}

/// The locked rows of one batch, folded in memory.
#[derive(Debug, Default)]
pub(crate) struct DedupBatch {
    slots: HashMap<DedupKey, Slot>,
}

const ROW_COLUMNS: &str = "tenant, pcs_id, signed_digest, outcome_code, outcome::text, first_topic, \
     first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms, tier, \
     COALESCE(origin_region, '')";

/// The cold tier's entries of the given keys (migration 0007), so a demoted key still decides
/// duplicates and conflicts inside its window. The first outcome's body comes from the audit log
/// entry at the first record's coordinates (kept forever), so the object store is never on this
/// path. Not locked: a cold key only changes when the demoter seals or expires a segment, and
/// sealing locks the warm rows it deletes first. One index probe per key (`LIMIT 1` keeps each
/// probe a subquery, whatever the cached plan).
const COLD_LOOKUP: &str = "SELECT c.* FROM unnest($1::text[], $2::text[]) AS k(tenant, pcs_id) \
     JOIN LATERAL (SELECT c.tenant, c.pcs_id, c.signed_digest, c.outcome_code, a.outcome::text, \
         c.first_topic, c.first_partition, c.first_offset, c.received_at_ms, c.decided_at_ms, \
         c.expires_at_ms, 'cold', ''::text \
         FROM cold_keys c \
         JOIN audit_log a ON a.source_topic = c.first_topic \
             AND a.source_partition = c.first_partition AND a.source_offset = c.first_offset \
         WHERE c.tenant = k.tenant AND c.pcs_id = k.pcs_id LIMIT 1) AS c ON true";

fn row_from_sql(row: &Row) -> Result<(DedupKey, DedupRow, String), StoreError> {
    let digest: Vec<u8> = row.try_get(2)?;
    let signed_digest: [u8; 32] = digest.try_into().map_err(|bytes: Vec<u8>| {
        StoreError::Corrupt(format!("dedup signed_digest has {} bytes", bytes.len()))
    })?;
    let outcome_code: String = row.try_get(3)?;
    let outcome_class = OutcomeClass::parse(&outcome_code)
        .ok_or_else(|| StoreError::Corrupt(format!("dedup outcome_code {outcome_code:?}")))?;
    let outcome_text: String = row.try_get(4)?;
    let outcome = serde_json::from_str(&outcome_text)
        .map_err(|error| StoreError::Corrupt(format!("dedup outcome is not JSON: {error}")))?;
    Ok((
        (row.try_get(0)?, row.try_get(1)?),
        DedupRow {
            signed_digest,
            outcome_class,
            outcome,
            first_source: SourceCoordinates {
                topic: row.try_get(5)?,
                partition: row.try_get(6)?,
                offset: row.try_get(7)?,
            },
            received_at_ms: row.try_get(8)?,
            decided_at_ms: row.try_get(9)?,
            expires_at_ms: row.try_get(10)?,
            origin_region: row.try_get(12)?,
        },
        row.try_get(11)?,
    ))
}

impl DedupBatch {
    /// Locks and loads the rows of `keys` (duplicates allowed) for the rest of the transaction,
    /// and the cold-tier entries of the keys without a warm row.
    ///
    /// Both lookups go out together (one round trip) and probe an index once per key. The cold
    /// one runs on the transaction's cached plan; the warm one is planned at execution, and so
    /// is every statement after it until the transaction switches back ([`crate::plan_mode`]).
    /// Keys are locked in sorted order, as every writer of `dedup` locks them, so two
    /// transactions never wait for each other in a cycle.
    pub(crate) async fn load_for_update(
        transaction: &deadpool_postgres::Transaction<'_>,
        keys: &[DedupKey],
    ) -> Result<Self, AttemptError> {
        let mut batch = DedupBatch::default();
        if keys.is_empty() {
            return Ok(batch);
        }
        let mut sorted: Vec<&DedupKey> = keys.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let tenants: Vec<&str> = sorted.iter().map(|(tenant, _)| tenant.as_str()).collect();
        let pcs_ids: Vec<&str> = sorted.iter().map(|(_, pcs_id)| pcs_id.as_str()).collect();
        let (cold, (), warm) = futures::try_join!(
            async {
                let statement = transaction.prepare_cached(COLD_LOOKUP).await?;
                transaction.query(&statement, &[&tenants, &pcs_ids]).await
            },
            plan_mode::set(transaction, PlanMode::PerExecution),
            async {
                let statement = transaction
                    .prepare_cached(&format!(
                        "SELECT d.* FROM unnest($1::text[], $2::text[]) AS k(tenant, pcs_id) \
                         JOIN LATERAL (SELECT {ROW_COLUMNS} FROM dedup \
                             WHERE dedup.tenant = k.tenant AND dedup.pcs_id = k.pcs_id \
                             FOR UPDATE) AS d ON true"
                    ))
                    .await?;
                transaction.query(&statement, &[&tenants, &pcs_ids]).await
            },
        )?;
        for row in warm {
            let (key, row, _tier) = row_from_sql(&row)?;
            batch.slots.insert(
                key,
                Slot {
                    row,
                    state: SlotState::Stored,
                },
            );
        }
        // A key with a warm row decides by it; the cold tier answers only for the others.
        for row in cold {
            let (key, row, _tier) = row_from_sql(&row)?;
            batch.slots.entry(key).or_insert(Slot {
                row,
                state: SlotState::Cold,
            });
        }
        Ok(batch)
    }

    /// Folds one verified record whose own first-record row would be `candidate`.
    pub(crate) fn decide(&mut self, key: DedupKey, candidate: DedupRow) -> DedupAnswer {
        let existing_opt = self.slots.get(&key).map(|slot| &slot.row);
        let resolution = rule(existing_opt, &candidate);
        if resolution.takes_place() {
            let answer = DedupAnswer {
                result: resolution.result(),
                outcome_class: candidate.outcome_class,
                body: candidate.outcome.clone(),
                expires_at_ms_opt: Some(candidate.expires_at_ms),
            };
            self.take_place(key, candidate);
            return answer;
        }
        // `rule` keeps the stored row only when there is one; the candidate is a fallback that
        // cannot be reached, not a second source of truth.
        debug_assert!(existing_opt.is_some());
        let stored = existing_opt.cloned().unwrap_or(candidate);
        DedupAnswer {
            result: resolution.result(),
            outcome_class: stored.outcome_class,
            body: stored.outcome,
            // A conflict is not answered by the row's window.
            expires_at_ms_opt: (resolution == Resolution::Duplicate)
                .then_some(stored.expires_at_ms),
        }
    }

    /// Every row the batch holds (the replay fold's tests compare with it).
    #[cfg(test)]
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&DedupKey, &DedupRow)> {
        self.slots.iter().map(|(key, slot)| (key, &slot.row))
    }

    /// Makes `candidate` the key's row: an INSERT for a key without a warm row, else an UPDATE.
    fn take_place(&mut self, key: DedupKey, candidate: DedupRow) {
        let state = match self.slots.get(&key).map(|slot| slot.state) {
            None | Some(SlotState::Inserted | SlotState::Cold) => SlotState::Inserted,
            Some(SlotState::Stored | SlotState::Replaced) => SlotState::Replaced,
        };
        self.slots.insert(
            key,
            Slot {
                row: candidate,
                state,
            },
        );
    }

    /// Writes new and replaced rows.
    pub(crate) async fn write(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), AttemptError> {
        let mut inserted = RowArrays::default();
        let mut replaced = RowArrays::default();
        for (key, slot) in &self.slots {
            match slot.state {
                SlotState::Stored | SlotState::Cold => {}
                SlotState::Inserted => inserted.push(key, &slot.row),
                SlotState::Replaced => replaced.push(key, &slot.row),
            }
        }
        const ARRAYS: &str = "unnest($1::text[], $2::text[], $3::bytea[], $4::text[], \
             $5::text[], $6::text[], $7::int4[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
             $12::text[]) \
             AS u(tenant, pcs_id, digest, outcome_code, outcome, topic, part, off, received, decided, \
             expires, origin)";
        if !inserted.tenants.is_empty() {
            let statement = transaction
                .prepare_cached(&format!(
                    "INSERT INTO dedup (tenant, pcs_id, signed_digest, outcome_code, outcome, \
                         first_topic, first_partition, first_offset, received_at_ms, \
                         decided_at_ms, expires_at_ms, origin_region) \
                     SELECT u.tenant, u.pcs_id, u.digest, u.outcome_code, u.outcome::jsonb, u.topic, \
                         u.part, u.off, u.received, u.decided, u.expires, u.origin FROM {ARRAYS}"
                ))
                .await?;
            transaction.execute(&statement, &inserted.params()).await?;
        }
        if !replaced.tenants.is_empty() {
            let statement = transaction
                .prepare_cached(&format!(
                    "UPDATE dedup SET signed_digest = u.digest, outcome_code = u.outcome_code, \
                         outcome = u.outcome::jsonb, first_topic = u.topic, \
                         first_partition = u.part, first_offset = u.off, \
                         received_at_ms = u.received, decided_at_ms = u.decided, \
                         expires_at_ms = u.expires, origin_region = u.origin, tier = 'hot', \
                         promoted_at_ms = NULL \
                     FROM {ARRAYS} \
                     WHERE dedup.tenant = u.tenant AND dedup.pcs_id = u.pcs_id"
                ))
                .await?;
            // A join: planned at execution (crate::plan_mode).
            let params = replaced.params();
            futures::try_join!(
                plan_mode::set(transaction, PlanMode::PerExecution),
                transaction.execute(&statement, &params),
            )?;
        }
        Ok(())
    }
}

/// Column arrays for one multi-row statement.
#[derive(Debug, Default)]
struct RowArrays {
    tenants: Vec<String>,
    pcs_ids: Vec<String>,
    digests: Vec<Vec<u8>>,
    outcome_codes: Vec<&'static str>,
    outcomes: Vec<String>,
    topics: Vec<String>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    received: Vec<i64>,
    decided: Vec<i64>,
    expires: Vec<i64>,
    /// NULL for an unknown origin.
    origins: Vec<Option<String>>,
}

impl RowArrays {
    fn push(&mut self, key: &DedupKey, row: &DedupRow) {
        self.tenants.push(key.0.clone());
        self.pcs_ids.push(key.1.clone());
        self.digests.push(row.signed_digest.to_vec());
        self.outcome_codes.push(row.outcome_class.as_str());
        self.outcomes.push(row.outcome.to_string());
        self.topics.push(row.first_source.topic.clone());
        self.partitions.push(row.first_source.partition);
        self.offsets.push(row.first_source.offset);
        self.received.push(row.received_at_ms);
        self.decided.push(row.decided_at_ms);
        self.expires.push(row.expires_at_ms);
        self.origins
            .push(Some(row.origin_region.clone()).filter(|origin| !origin.is_empty()));
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
        [
            &self.tenants,
            &self.pcs_ids,
            &self.digests,
            &self.outcome_codes,
            &self.outcomes,
            &self.topics,
            &self.partitions,
            &self.offsets,
            &self.received,
            &self.decided,
            &self.expires,
            &self.origins,
        ]
    }
}

/// The dedup row of (tenant, `pcs_id`).
pub(crate) async fn lookup(
    client: &deadpool_postgres::Client,
    tenant: &str,
    pcs_id: &str,
) -> Result<Option<StoredOutcome>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM dedup WHERE tenant = $1 AND pcs_id = $2"
        ))
        .await?;
    let row_opt = client.query_opt(&statement, &[&tenant, &pcs_id]).await?;
    let Some(row) = row_opt else {
        return Ok(None);
    };
    let ((tenant, pcs_id), row, tier) = row_from_sql(&row)?;
    Ok(Some(StoredOutcome {
        tenant,
        pcs_id,
        signed_digest: row.signed_digest,
        outcome_class: row.outcome_class,
        body: row.outcome,
        first_source: row.first_source,
        received_at_ms: row.received_at_ms,
        decided_at_ms: row.decided_at_ms,
        expires_at_ms: row.expires_at_ms,
        tier,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(digest: u8, expires_at_ms: i64) -> DedupRow {
        DedupRow {
            signed_digest: [digest; 32],
            outcome_class: OutcomeClass::Accepted,
            outcome: json!({"accepted": true, "escalated": false}),
            first_source: SourceCoordinates {
                topic: "s".into(),
                partition: 0,
                offset: 1,
            },
            received_at_ms: 0,
            decided_at_ms: 1,
            expires_at_ms,
            origin_region: "a".into(),
        }
    }

    fn from(origin: &str, digest: u8, received_at_ms: i64) -> DedupRow {
        DedupRow {
            origin_region: origin.into(),
            received_at_ms,
            ..row(digest, received_at_ms + 1_000)
        }
    }

    #[test]
    fn an_earlier_record_of_another_region_supersedes_and_both_regions_agree() {
        // Region a holds its own record (t=10) and receives b's (t=5): b's takes its place.
        assert!(supersedes(&from("a", 1, 10), &from("b", 2, 5)));
        // Region b holds its own (t=5) and receives a's (t=10): it stays.
        assert!(!supersedes(&from("b", 2, 5), &from("a", 1, 10)));
        // Same received-at: the smaller region id wins, in both directions.
        assert!(supersedes(&from("b", 2, 7), &from("a", 1, 7)));
        assert!(!supersedes(&from("a", 1, 7), &from("b", 2, 7)));
        // Within one region, or with an unknown origin, first write wins as always.
        assert!(!supersedes(&from("a", 1, 10), &from("a", 2, 5)));
        assert!(!supersedes(&from("", 1, 10), &from("b", 2, 5)));
        assert!(!supersedes(&from("a", 1, 10), &from("", 2, 5)));
    }

    #[test]
    fn a_superseding_record_replaces_the_row_and_later_copies_are_duplicates() {
        let mut batch = DedupBatch::default();
        let key: DedupKey = ("t".into(), "p".into());
        assert_eq!(
            batch.decide(key.clone(), from("a", 1, 10)).result,
            DedupResult::First
        );
        let replaced = batch.decide(key.clone(), from("b", 2, 5));
        assert_eq!(replaced.result, DedupResult::Superseded);
        assert_eq!(replaced.expires_at_ms_opt, Some(1_005));
        // Replaying either record again changes nothing.
        assert_eq!(
            batch.decide(key.clone(), from("b", 2, 5)).result,
            DedupResult::Duplicate
        );
        assert_eq!(
            batch.decide(key.clone(), from("a", 1, 10)).result,
            DedupResult::Conflict
        );
    }

    #[test]
    fn first_write_wins_until_expiry() {
        assert_eq!(resolve(None::<&DedupRow>, &[1; 32], 5), Resolution::First);
        let stored = row(1, 100);
        assert_eq!(resolve(Some(&stored), &[1; 32], 50), Resolution::Duplicate);
        assert_eq!(resolve(Some(&stored), &[2; 32], 50), Resolution::Conflict);
        // Expiry is inclusive of its last millisecond.
        assert_eq!(resolve(Some(&stored), &[2; 32], 100), Resolution::Conflict);
        assert_eq!(resolve(Some(&stored), &[2; 32], 101), Resolution::First);
    }

    #[test]
    fn in_batch_fold_inserts_once_and_answers_later_records_from_it() {
        let mut batch = DedupBatch::default();
        let key: DedupKey = ("t".into(), "p".into());
        let first = batch.decide(key.clone(), row(1, 100));
        assert_eq!(first.result, DedupResult::First);
        let mut second_candidate = row(1, 200);
        second_candidate.outcome_class = OutcomeClass::Escalated;
        let second = batch.decide(key.clone(), second_candidate);
        assert_eq!(second.result, DedupResult::Duplicate);
        assert_eq!(second.outcome_class, OutcomeClass::Accepted);
        let third = batch.decide(key.clone(), row(9, 200));
        assert_eq!(third.result, DedupResult::Conflict);
        assert_eq!(
            third.outcome_class,
            OutcomeClass::Accepted,
            "the first record's class"
        );
        assert_eq!(third.body, json!({"accepted": true, "escalated": false}));
        assert_eq!(batch.slots[&key].state, SlotState::Inserted);
        assert_eq!(batch.slots[&key].row.expires_at_ms, 100);
    }
}
