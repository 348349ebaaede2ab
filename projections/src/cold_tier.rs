//! The cold tier's Postgres side (migration 0007): the demoter's lease, due warm rows, segment
//! bookkeeping, the cold key index, promotion back to warm, and tier statistics. The object store
//! side (writing, reading and verifying segments) is the demoter's and the reader's; the segment
//! format is `events::cold_segment`.
//!
//! The order that keeps I10 ("a tier move never loses an entry"): record the segment as pending
//! ([`ProjectionStore::record_pending_segment`]), write the object, read it back and verify it,
//! then [`ProjectionStore::seal_segment`] indexes its keys and deletes exactly those warm rows in one
//! transaction, after checking that each row is still the one packed. Every demoter transaction
//! first checks the lease epoch ([`fence`]), so a stale demoter changes nothing.

use events::cold_segment::{ColdEntry, Manifest};
use events::{OutcomeClass, SourceCoordinates};
use serde_json::Value;
use tokio_postgres::Row;

use crate::error::StoreError;
use crate::model::StoredOutcome;

/// The lease's name in `tier_lease`.
const LEASE: &str = "demoter";

/// A demoter's claim on the singleton lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it (unique per process start).
    pub owner: String,
    /// Bumped at every take-over; checked by every demoter transaction.
    pub epoch: i64,
}

/// A warm row due for the cold tier.
#[derive(Debug, Clone, PartialEq)]
pub struct DueRow {
    /// The row as it will be stored cold.
    pub entry: ColdEntry,
    /// When it became due: `coalesce(promoted_at_ms, decided_at_ms)`.
    pub due_since_ms: i64,
}

/// A segment left pending by a demoter that stopped between recording and sealing it.
#[derive(Debug, Clone)]
pub struct PendingSegment {
    /// Object name.
    pub segment_key: String,
    /// Its tenant.
    pub tenant: String,
    /// The manifest it was recorded with.
    pub manifest: Manifest,
    /// The keys it packs.
    pub pcs_ids: Vec<String>,
}

/// A sealed segment (for reads, verification and retention).
#[derive(Debug, Clone)]
pub struct SealedSegment {
    /// Object name.
    pub segment_key: String,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Where a cold key lives and what dedup needs to know of it.
#[derive(Debug, Clone)]
pub struct ColdKey {
    /// The segment that holds the entry, with its manifest.
    pub segment: SealedSegment,
    /// Signed digest of the first record.
    pub signed_digest: [u8; 32],
    /// Class of the first outcome.
    pub outcome_class: OutcomeClass,
    /// End of its dedup window.
    pub expires_at_ms: i64,
}

/// Why sealing did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealOutcome {
    /// Sealed: keys indexed, warm rows deleted.
    Sealed,
    /// A packed row changed or went away since it was packed (a new first record, a promotion);
    /// nothing was deleted. The caller abandons the segment.
    RowsChanged(String),
}

/// Entries and bytes of one tenant in one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierStats {
    /// Tenant.
    pub tenant: String,
    /// `warm` or `cold`.
    pub tier: &'static str,
    /// Entries (cold: indexed keys not shadowed by a warm row).
    pub entries: i64,
    /// Bytes: warm, the table's estimate per row times rows; cold, compressed object bytes.
    pub bytes: i64,
    /// Cold only: original (uncompressed) bytes of the sealed segments.
    pub raw_bytes: i64,
    /// Cold only: sealed segments.
    pub segments: i64,
}

/// Fails with [`StoreError::LeaseLost`] unless `lease` is still the current one;
/// locks the lease row for the rest of the transaction.
pub(crate) async fn fence(
    transaction: &deadpool_postgres::Transaction<'_>,
    lease: &Lease,
) -> Result<(), StoreError> {
    let held = transaction
        .query_opt(
            "SELECT 1 FROM tier_lease WHERE name = $1 AND owner = $2 AND epoch = $3 FOR UPDATE",
            &[&LEASE, &lease.owner, &lease.epoch],
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost(format!(
            "demoter lease epoch {} of {} was taken over",
            lease.epoch, lease.owner
        ))),
    }
}

const DEDUP_ENTRY_COLUMNS: &str = "tenant, pcs_id, signed_digest, outcome_code, outcome::text, \
     first_topic, first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms, \
     coalesce(promoted_at_ms, decided_at_ms)";

fn due_row(row: &Row) -> Result<DueRow, StoreError> {
    let digest: Vec<u8> = row.try_get(2)?;
    let outcome_text: String = row.try_get(4)?;
    let outcome: Value = serde_json::from_str(&outcome_text)
        .map_err(|error| StoreError::Corrupt(format!("dedup outcome is not JSON: {error}")))?;
    Ok(DueRow {
        entry: ColdEntry {
            tenant: row.try_get(0)?,
            pcs_id: row.try_get(1)?,
            signed_digest: hex::encode(digest),
            outcome_code: row.try_get(3)?,
            outcome,
            first_topic: row.try_get(5)?,
            first_partition: row.try_get(6)?,
            first_offset: row.try_get(7)?,
            received_at_ms: row.try_get(8)?,
            decided_at_ms: row.try_get(9)?,
            expires_at_ms: row.try_get(10)?,
        },
        due_since_ms: row.try_get(11)?,
    })
}

fn manifest_of(text: String) -> Result<Manifest, StoreError> {
    serde_json::from_str(&text)
        .map_err(|error| StoreError::Corrupt(format!("cold segment manifest: {error}")))
}

fn digest32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| StoreError::Corrupt(format!("digest of {} bytes", bytes.len())))
}

/// The cold tier's operations.
impl crate::ProjectionStore {
    /// Takes the demoter lease when it is free or expired (bumping its epoch), or renews it when
    /// `owner` already holds it. `None`: another demoter holds it.
    pub async fn take_tier_lease(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let client = self.client().await?;
        // Expiry is judged by the database's clock, the one clock every demoter shares: a
        // demoter whose host clock runs ahead must not find a live lease expired and take it.
        let row = client
            .query_opt(
                "INSERT INTO tier_lease (name, owner, epoch, expires_at_ms) \
                 SELECT $1, $2, 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $3 \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                     epoch = tier_lease.epoch + CASE WHEN tier_lease.owner = excluded.owner THEN 0 ELSE 1 END, \
                     expires_at_ms = excluded.expires_at_ms \
                 WHERE tier_lease.owner = excluded.owner \
                     OR tier_lease.expires_at_ms < excluded.expires_at_ms - $3 \
                 RETURNING epoch",
                &[&LEASE, &owner, &lease_ms],
            )
            .await?;
        Ok(row.map(|row| Lease {
            owner: owner.to_owned(),
            epoch: row.get(0),
        }))
    }

    /// Gives the lease up (a demoter stopping, `flk tier demote --now` done), so another can take
    /// it at once instead of after it runs out. A no-op unless `owner` holds it.
    pub async fn release_tier_lease(&self, owner: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE tier_lease SET expires_at_ms = 0 WHERE name = $1 AND owner = $2",
                &[&LEASE, &owner],
            )
            .await?;
        Ok(())
    }

    /// Warm rows of `tenant` due before `due_before_ms`, in the order they became due, at most
    /// `limit` (the `dedup_due` index; never a full scan).
    pub async fn due_rows(
        &self,
        tenant: &str,
        due_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueRow>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {DEDUP_ENTRY_COLUMNS} FROM dedup \
                 WHERE tenant = $1 AND coalesce(promoted_at_ms, decided_at_ms) < $2 \
                 ORDER BY tenant, coalesce(promoted_at_ms, decided_at_ms), pcs_id LIMIT $3"
            ))
            .await?;
        client
            .query(&statement, &[&tenant, &due_before_ms, &limit])
            .await?
            .iter()
            .map(due_row)
            .collect()
    }

    /// The warm rows of `pcs_ids` (a pending segment's keys), as they are now.
    pub async fn warm_rows(
        &self,
        tenant: &str,
        pcs_ids: &[String],
    ) -> Result<Vec<DueRow>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT {DEDUP_ENTRY_COLUMNS} FROM dedup WHERE tenant = $1 AND pcs_id = ANY($2) \
                     ORDER BY pcs_id"
                ),
                &[&tenant, &pcs_ids],
            )
            .await?
            .iter()
            .map(due_row)
            .collect()
    }

    /// Records a segment about to be written (before the object exists), with its keys.
    /// Recording the same segment again (a retry, or identical rows demoted again) is a no-op
    /// unless it was abandoned or expired, which makes it pending again.
    pub async fn record_pending_segment(
        &self,
        lease: &Lease,
        segment_key: &str,
        manifest: &Manifest,
        pcs_ids: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        fence(&transaction, lease).await?;
        let manifest_json = serde_json::to_string(manifest)
            .map_err(|error| StoreError::InvalidInput(error.to_string()))?;
        transaction
            .execute(
                "INSERT INTO cold_segments (segment_key, tenant, state, manifest, entries, raw_bytes, \
                     compressed_bytes, max_decided_at_ms, pending_pcs_ids, created_at_ms) \
                 VALUES ($1, $2, 'pending', $3::text::jsonb, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (segment_key) DO UPDATE SET state = 'pending', \
                     pending_pcs_ids = excluded.pending_pcs_ids, ended_at_ms = NULL, last_error = NULL \
                 WHERE cold_segments.state IN ('abandoned', 'expired')",
                &[
                    &segment_key,
                    &manifest.tenant,
                    &manifest_json,
                    &i64::try_from(manifest.entries).unwrap_or(i64::MAX),
                    &i64::try_from(manifest.raw_bytes).unwrap_or(i64::MAX),
                    &i64::try_from(manifest.compressed_bytes).unwrap_or(i64::MAX),
                    &manifest.max_decided_at_ms,
                    &pcs_ids,
                    &now_ms,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Segments left pending (by a crash or a kill between recording and sealing).
    pub async fn pending_segments(&self) -> Result<Vec<PendingSegment>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT segment_key, tenant, manifest::text, coalesce(pending_pcs_ids, '{}') \
                 FROM cold_segments WHERE state = 'pending' ORDER BY created_at_ms, segment_key",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(PendingSegment {
                    segment_key: row.try_get(0)?,
                    tenant: row.try_get(1)?,
                    manifest: manifest_of(row.try_get(2)?)?,
                    pcs_ids: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Seals a verified segment: checks every packed row is still the one packed, indexes the
    /// keys, deletes exactly those warm rows and marks the segment sealed, in one transaction.
    pub async fn seal_segment(
        &self,
        lease: &Lease,
        segment_key: &str,
        packed: &[DueRow],
        now_ms: i64,
    ) -> Result<SealOutcome, StoreError> {
        let Some(first) = packed.first() else {
            return Ok(SealOutcome::RowsChanged("no rows".to_owned()));
        };
        let tenant = first.entry.tenant.clone();
        let pcs_ids: Vec<&str> = packed.iter().map(|row| row.entry.pcs_id.as_str()).collect();
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        fence(&transaction, lease).await?;
        let current: Vec<DueRow> = transaction
            .query(
                &format!(
                    "SELECT {DEDUP_ENTRY_COLUMNS} FROM dedup WHERE tenant = $1 AND pcs_id = ANY($2) \
                     ORDER BY pcs_id FOR UPDATE"
                ),
                &[&tenant, &pcs_ids],
            )
            .await?
            .iter()
            .map(due_row)
            .collect::<Result<_, _>>()?;
        let mut expected: Vec<&DueRow> = packed.iter().collect();
        expected.sort_by(|left, right| left.entry.pcs_id.cmp(&right.entry.pcs_id));
        if current.len() != expected.len() {
            return Ok(SealOutcome::RowsChanged(format!(
                "{} of {} packed rows are still warm",
                current.len(),
                expected.len()
            )));
        }
        if let Some((now, then)) = current
            .iter()
            .zip(expected.iter())
            .find(|(now, then)| now != *then)
        {
            return Ok(SealOutcome::RowsChanged(format!(
                "row {} changed since it was packed (was due since {}, now {})",
                now.entry.pcs_id, then.due_since_ms, now.due_since_ms
            )));
        }
        let mut digests = Vec::with_capacity(packed.len());
        for row in &expected {
            digests.push(
                hex::decode(&row.entry.signed_digest)
                    .map_err(|error| StoreError::Corrupt(format!("signed digest: {error}")))?,
            );
        }
        let codes: Vec<&str> = expected
            .iter()
            .map(|r| r.entry.outcome_code.as_str())
            .collect();
        let ids: Vec<&str> = expected.iter().map(|r| r.entry.pcs_id.as_str()).collect();
        let topics: Vec<&str> = expected
            .iter()
            .map(|r| r.entry.first_topic.as_str())
            .collect();
        let partitions: Vec<i32> = expected.iter().map(|r| r.entry.first_partition).collect();
        let offsets: Vec<i64> = expected.iter().map(|r| r.entry.first_offset).collect();
        let received: Vec<i64> = expected.iter().map(|r| r.entry.received_at_ms).collect();
        let decided: Vec<i64> = expected.iter().map(|r| r.entry.decided_at_ms).collect();
        let expires: Vec<i64> = expected.iter().map(|r| r.entry.expires_at_ms).collect();
        transaction
            .execute(
                "INSERT INTO cold_keys (tenant, pcs_id, segment_key, signed_digest, outcome_code, \
                     first_topic, first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms) \
                 SELECT $1, u.pcs_id, $2, u.digest, u.code, u.topic, u.part, u.off, u.received, u.decided, u.expires \
                 FROM unnest($3::text[], $4::bytea[], $5::text[], $6::text[], $7::int4[], $8::int8[], \
                     $9::int8[], $10::int8[], $11::int8[]) \
                     AS u(pcs_id, digest, code, topic, part, off, received, decided, expires) \
                 ON CONFLICT (tenant, pcs_id) DO UPDATE SET segment_key = excluded.segment_key, \
                     signed_digest = excluded.signed_digest, outcome_code = excluded.outcome_code, \
                     first_topic = excluded.first_topic, first_partition = excluded.first_partition, \
                     first_offset = excluded.first_offset, received_at_ms = excluded.received_at_ms, \
                     decided_at_ms = excluded.decided_at_ms, expires_at_ms = excluded.expires_at_ms",
                &[
                    &tenant, &segment_key, &ids, &digests, &codes, &topics, &partitions, &offsets,
                    &received, &decided, &expires,
                ],
            )
            .await?;
        let deleted = transaction
            .execute(
                "DELETE FROM dedup WHERE tenant = $1 AND pcs_id = ANY($2)",
                &[&tenant, &ids],
            )
            .await?;
        if deleted != ids.len() as u64 {
            // The rows are locked; this cannot happen. Roll back rather than half-move.
            return Err(StoreError::Fatal(format!(
                "deleted {deleted} warm rows, expected {}",
                ids.len()
            )));
        }
        transaction
            .execute(
                "UPDATE cold_segments SET state = 'sealed', sealed_at_ms = $2, pending_pcs_ids = NULL \
                 WHERE segment_key = $1",
                &[&segment_key, &now_ms],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO tier_events (at_ms, tenant, kind, segment_key, entries) \
                 VALUES ($1, $2, 'demoted', $3, $4)",
                &[&now_ms, &tenant, &segment_key, &(ids.len() as i64)],
            )
            .await?;
        transaction.commit().await?;
        Ok(SealOutcome::Sealed)
    }

    /// Marks a pending segment abandoned (its rows stay warm; the caller deletes the object).
    pub async fn abandon_segment(
        &self,
        lease: &Lease,
        segment_key: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        fence(&transaction, lease).await?;
        let changed = transaction
            .execute(
                "UPDATE cold_segments SET state = 'abandoned', ended_at_ms = $2, last_error = $3, \
                     pending_pcs_ids = NULL \
                 WHERE segment_key = $1 AND state = 'pending'",
                &[&segment_key, &now_ms, &reason],
            )
            .await?;
        if changed == 1 {
            transaction
                .execute(
                    "INSERT INTO tier_events (at_ms, tenant, kind, segment_key, entries, detail) \
                     SELECT $1, tenant, 'abandoned', segment_key, entries, $3 FROM cold_segments \
                     WHERE segment_key = $2",
                    &[&now_ms, &segment_key, &reason],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Sealed segments of `tenant` whose newest decision is before `before_ms` (retention).
    pub async fn segments_past(
        &self,
        tenant: &str,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<SealedSegment>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT segment_key, manifest::text FROM cold_segments \
                 WHERE tenant = $1 AND state = 'sealed' AND max_decided_at_ms < $2 \
                 ORDER BY max_decided_at_ms LIMIT $3",
                &[&tenant, &before_ms, &limit],
            )
            .await?
            .iter()
            .map(sealed_from_row)
            .collect()
    }

    /// Every sealed segment (for `flk tier verify`), oldest first, after `after_key`.
    pub async fn sealed_segments(
        &self,
        after_key: &str,
        limit: i64,
    ) -> Result<Vec<SealedSegment>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT segment_key, manifest::text FROM cold_segments \
                 WHERE state = 'sealed' AND segment_key > $1 ORDER BY segment_key LIMIT $2",
                &[&after_key, &limit],
            )
            .await?
            .iter()
            .map(sealed_from_row)
            .collect()
    }

    /// Ends a segment by retention: its cold keys go (the audit log and the Merkle log keep
    /// every decision), the segment is marked expired and the move is recorded. The caller
    /// deletes the object afterwards; a crash in between leaves the object of an `expired`
    /// segment behind (no key points at it; not retried yet).
    pub async fn expire_segment(
        &self,
        lease: &Lease,
        segment_key: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        fence(&transaction, lease).await?;
        let removed = transaction
            .execute(
                "DELETE FROM cold_keys WHERE segment_key = $1",
                &[&segment_key],
            )
            .await?;
        transaction
            .execute(
                "UPDATE cold_segments SET state = 'expired', ended_at_ms = $2 WHERE segment_key = $1",
                &[&segment_key, &now_ms],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO tier_events (at_ms, tenant, kind, segment_key, entries) \
                 SELECT $1, tenant, 'expired', segment_key, $3 FROM cold_segments WHERE segment_key = $2",
                &[&now_ms, &segment_key, &(removed as i64)],
            )
            .await?;
        transaction.commit().await?;
        Ok(removed)
    }

    /// Where `(tenant, pcs_id)` lives in the cold tier, if it has no warm row.
    pub async fn cold_key(
        &self,
        tenant: &str,
        pcs_id: &str,
    ) -> Result<Option<ColdKey>, StoreError> {
        let client = self.client().await?;
        let row_opt = client
            .query_opt(
                "SELECT s.segment_key, s.manifest::text, c.signed_digest, c.outcome_code, c.expires_at_ms \
                 FROM cold_keys c JOIN cold_segments s USING (segment_key) \
                 WHERE c.tenant = $1 AND c.pcs_id = $2 AND s.state = 'sealed'",
                &[&tenant, &pcs_id],
            )
            .await?;
        let Some(row) = row_opt else {
            return Ok(None);
        };
        let code: String = row.try_get(3)?;
        Ok(Some(ColdKey {
            segment: sealed_from_row(&row)?,
            signed_digest: digest32(row.try_get(2)?)?,
            outcome_class: OutcomeClass::parse(&code)
                .ok_or_else(|| StoreError::Corrupt(format!("cold outcome_code {code:?}")))?,
            expires_at_ms: row.try_get(4)?,
        }))
    }

    /// The keys the index places in `segment_key`, with their signed digests (for verification).
    pub async fn cold_key_digests(
        &self,
        segment_key: &str,
    ) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT pcs_id, signed_digest FROM cold_keys WHERE segment_key = $1 ORDER BY pcs_id",
                &[&segment_key],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, digest32(row.try_get(1)?)?)))
            .collect()
    }

    /// Up to `per_segment` cold keys of each of at most `segments` sealed segments, without a warm
    /// row, grouped by segment: `(segment_key, [(tenant, pcs_id)])` (the cold-read benchmark).
    pub async fn sample_cold_keys(
        &self,
        segments: i64,
        per_segment: i64,
    ) -> Result<Vec<(String, Vec<(String, String)>)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT segment_key, tenant, pcs_id FROM ( \
                     SELECT c.segment_key, c.tenant, c.pcs_id, \
                         row_number() OVER (PARTITION BY c.segment_key ORDER BY c.pcs_id) AS rn, \
                         dense_rank() OVER (ORDER BY c.segment_key) AS segment_rank \
                     FROM cold_keys c JOIN cold_segments s USING (segment_key) \
                     WHERE s.state = 'sealed' AND NOT EXISTS \
                         (SELECT 1 FROM dedup d WHERE d.tenant = c.tenant AND d.pcs_id = c.pcs_id)) k \
                 WHERE rn <= $2 AND segment_rank <= $1 ORDER BY segment_key, rn",
                &[&segments, &per_segment],
            )
            .await?;
        let mut grouped: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for row in rows {
            let segment: String = row.try_get(0)?;
            let key = (row.try_get(1)?, row.try_get(2)?);
            match grouped.last_mut() {
                Some((last, keys)) if *last == segment => keys.push(key),
                _ => grouped.push((segment, vec![key])),
            }
        }
        Ok(grouped)
    }

    /// Promotes a verified cold entry back to warm (a read asked for it): its row is inserted
    /// again, due for the cold tier `warm_ttl` after `now_ms`. A warm row that exists already
    /// (a concurrent promotion or a newer first record) wins; `false` then.
    pub async fn promote(&self, entry: &ColdEntry, now_ms: i64) -> Result<bool, StoreError> {
        let digest = hex::decode(&entry.signed_digest)
            .map_err(|error| StoreError::Corrupt(format!("signed digest: {error}")))?;
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO dedup (tenant, pcs_id, signed_digest, outcome_code, outcome, first_topic, \
                     first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms, \
                     tier, promoted_at_ms) \
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9, $10, $11, 'warm', $12) \
                 ON CONFLICT (tenant, pcs_id) DO NOTHING",
                &[
                    &entry.tenant,
                    &entry.pcs_id,
                    &digest,
                    &entry.outcome_code,
                    &entry.outcome.to_string(),
                    &entry.first_topic,
                    &entry.first_partition,
                    &entry.first_offset,
                    &entry.received_at_ms,
                    &entry.decided_at_ms,
                    &entry.expires_at_ms,
                    &now_ms,
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Entries and bytes per tenant and tier.
    pub async fn tier_stats(&self) -> Result<Vec<TierStats>, StoreError> {
        let client = self.client().await?;
        let mut stats = Vec::new();
        for row in client
            .query(
                "SELECT tenant, count(*), coalesce(sum(pg_column_size(dedup.*)), 0)::bigint \
                 FROM dedup GROUP BY tenant ORDER BY tenant",
                &[],
            )
            .await?
        {
            stats.push(TierStats {
                tenant: row.try_get(0)?,
                tier: "warm",
                entries: row.try_get(1)?,
                bytes: row.try_get(2)?,
                raw_bytes: 0,
                segments: 0,
            });
        }
        for row in client
            .query(
                "SELECT s.tenant, \
                     (SELECT count(*) FROM cold_keys c WHERE c.tenant = s.tenant \
                        AND NOT EXISTS (SELECT 1 FROM dedup d WHERE d.tenant = c.tenant AND d.pcs_id = c.pcs_id)), \
                     sum(s.compressed_bytes)::bigint, sum(s.raw_bytes)::bigint, count(*) \
                 FROM cold_segments s WHERE s.state = 'sealed' GROUP BY s.tenant ORDER BY s.tenant",
                &[],
            )
            .await?
        {
            stats.push(TierStats {
                tenant: row.try_get(0)?,
                tier: "cold",
                entries: row.try_get(1)?,
                bytes: row.try_get(2)?,
                raw_bytes: row.try_get(3)?,
                segments: row.try_get(4)?,
            });
        }
        Ok(stats)
    }
}

fn sealed_from_row(row: &Row) -> Result<SealedSegment, StoreError> {
    Ok(SealedSegment {
        segment_key: row.try_get(0)?,
        manifest: manifest_of(row.try_get(1)?)?,
    })
}

/// The stored outcome a verified cold entry answers with (`tier` = `cold`).
pub fn stored_outcome_of(entry: &ColdEntry) -> Result<StoredOutcome, StoreError> {
    let digest = hex::decode(&entry.signed_digest)
        .map_err(|error| StoreError::Corrupt(format!("signed digest: {error}")))?;
    Ok(StoredOutcome {
        tenant: entry.tenant.clone(),
        pcs_id: entry.pcs_id.clone(),
        signed_digest: digest32(digest)?,
        outcome_class: OutcomeClass::parse(&entry.outcome_code).ok_or_else(|| {
            StoreError::Corrupt(format!("cold outcome_code {:?}", entry.outcome_code))
        })?,
        body: entry.outcome.clone(),
        first_source: SourceCoordinates {
            topic: entry.first_topic.clone(),
            partition: entry.first_partition,
            offset: entry.first_offset,
        },
        received_at_ms: entry.received_at_ms,
        decided_at_ms: entry.decided_at_ms,
        expires_at_ms: entry.expires_at_ms,
        tier: "cold".to_owned(),
    })
}
