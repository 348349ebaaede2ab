//! Binary COPY of a replay's folded rows ([`crate::replay_fold`]) into a fresh rebuild schema.
//!
//! One COPY per table, each on a connection of its own (outside the pool: a COPY holds it for
//! the whole load), both fed while the fold still runs: the audit entries and the dedup row
//! versions it hands out. Postgres parses binary rows without a plan, a lock or an index probe
//! per row (the tables' keys and indexes are dropped for the load; see [`crate::bulk_load`]). The
//! few dedup versions a later record replaced are deleted once the COPY is over
//! ([`delete_replaced`]), before the key is built.
//!
//! Only for a schema no one else reads or writes: nothing here takes a row lock, checks an owner
//! epoch or notifies listeners. Each COPY is its own transaction; a COPY dropped before
//! [`AuditCopy::finish`] is rolled back by Postgres, and the replay starts over from a fresh
//! schema.

use std::pin::Pin;
use std::sync::Arc;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};

use crate::audit::AuditEntry;
use crate::error::StoreError;
use crate::replay_fold::{AuditChains, DedupRowVersion, ReplayFold};

/// The audit log's columns, in the order of [`AUDIT_TYPES`] and of [`AuditCopy::write`].
const AUDIT_COPY: &str = "COPY audit_log (partition, seq, source_topic, source_partition, \
     source_offset, decisions_offset, tenant, pcs_id, verdict, outcome_code, dedup_result, \
     outcome, signed_digest, key_id, params_version, region, received_at_ms, decided_at_ms, \
     prev_hash, entry_hash) FROM STDIN (FORMAT binary)";

const AUDIT_TYPES: [Type; 20] = [
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
];

/// The dedup columns a replay sets, in the order of [`DEDUP_TYPES`]; `tier` and
/// `promoted_at_ms` keep their defaults (`hot`, NULL), as the projector's INSERT leaves them.
const DEDUP_COPY: &str = "COPY dedup (tenant, pcs_id, signed_digest, outcome_code, outcome, \
     first_topic, first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms, \
     origin_region) FROM STDIN (FORMAT binary)";

const DEDUP_TYPES: [Type; 12] = [
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
];

/// A binary COPY in progress on a connection of its own: the part both tables share.
struct BinaryCopy {
    /// The connection the COPY runs on, held until it ends.
    _client: tokio_postgres::Client,
    /// Encodes rows and sends them in chunks of a few KiB.
    writer: Pin<Box<BinaryCopyInWriter>>,
    /// Rows written so far.
    rows: u64,
}

impl std::fmt::Debug for BinaryCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryCopy")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl BinaryCopy {
    /// Starts `statement` (a `COPY ... FROM STDIN (FORMAT binary)`) on `client`.
    async fn start(
        client: tokio_postgres::Client,
        statement: &str,
        types: &[Type],
    ) -> Result<Self, StoreError> {
        let sink = client.copy_in(statement).await?;
        let writer = Box::pin(BinaryCopyInWriter::new(sink, types));
        Ok(BinaryCopy {
            _client: client,
            writer,
            rows: 0,
        })
    }

    /// Writes one row, its values in the order of the statement's columns.
    async fn write_row(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        self.writer.as_mut().write(values).await?;
        self.rows += 1;
        Ok(())
    }

    /// Ends the COPY (commits it); returns the rows Postgres took.
    async fn finish(mut self) -> Result<u64, StoreError> {
        let rows = self.writer.as_mut().finish().await?;
        debug_assert_eq!(rows, self.rows);
        Ok(rows)
    }
}

/// A COPY into `audit_log` in progress, fed the entries a fold hands out, unsealed and in the
/// order it handed them out: it seals each into its partition's hash chain (starting from the
/// genesis hash, as the schema is fresh) before writing it.
#[derive(Debug)]
pub struct AuditCopy {
    /// The COPY.
    copy: BinaryCopy,
    /// Where each partition's chain stands.
    chains: AuditChains,
}

impl AuditCopy {
    /// Starts the COPY on `client`.
    pub(crate) async fn start(client: tokio_postgres::Client) -> Result<Self, StoreError> {
        Ok(AuditCopy {
            copy: BinaryCopy::start(client, AUDIT_COPY, &AUDIT_TYPES).await?,
            chains: AuditChains::default(),
        })
    }

    /// Seals and writes entries (their hashes are set on return).
    pub async fn write(&mut self, entries: &mut [AuditEntry]) -> Result<(), StoreError> {
        for entry in entries.iter_mut() {
            self.chains.seal(entry);
            let entry = &*entry;
            let outcome_code = entry.outcome_class.as_str();
            let dedup_result = entry.dedup_result.as_str();
            let signed_digest_opt = entry.signed_digest_opt.as_ref().map(<[u8; 32]>::as_slice);
            let prev_hash = entry.prev_hash.as_slice();
            let entry_hash = entry.entry_hash.as_slice();
            self.copy
                .write_row(&[
                    &entry.partition,
                    &entry.seq,
                    &entry.source.topic,
                    &entry.source.partition,
                    &entry.source.offset,
                    &entry.decisions_offset,
                    &entry.tenant,
                    &entry.pcs_id_opt,
                    &entry.verdict,
                    &outcome_code,
                    &dedup_result,
                    &entry.outcome,
                    &signed_digest_opt,
                    &entry.key_id_opt,
                    &entry.params_version,
                    &entry.region,
                    &entry.received_at_ms,
                    &entry.decided_at_ms,
                    &prev_hash,
                    &entry_hash,
                ])
                .await?;
        }
        Ok(())
    }

    /// Ends the COPY (commits it); returns the rows Postgres took.
    pub async fn finish(self) -> Result<u64, StoreError> {
        self.copy.finish().await
    }
}

/// A COPY into `dedup` in progress, fed the row versions a replay's fold hands out (the replaced
/// ones are deleted afterwards: [`delete_replaced`]).
#[derive(Debug)]
pub struct DedupCopy(BinaryCopy);

impl DedupCopy {
    /// Starts the COPY on `client`.
    pub(crate) async fn start(client: tokio_postgres::Client) -> Result<Self, StoreError> {
        Ok(DedupCopy(
            BinaryCopy::start(client, DEDUP_COPY, &DEDUP_TYPES).await?,
        ))
    }

    /// Writes row versions.
    pub async fn write(&mut self, versions: &[Arc<DedupRowVersion>]) -> Result<(), StoreError> {
        for version in versions {
            let row = &version.row;
            let tenant: &str = &version.tenant;
            let pcs_id: &str = &version.pcs_id;
            let signed_digest = row.signed_digest.as_slice();
            let outcome_code = row.outcome_class.as_str();
            let outcome = Json(&*row.outcome);
            let first_topic: &str = &row.first_topic;
            // The projector stores an unknown origin as NULL.
            let origin_region_opt = Some(&*row.origin_region).filter(|origin| !origin.is_empty());
            self.0
                .write_row(&[
                    &tenant,
                    &pcs_id,
                    &signed_digest,
                    &outcome_code,
                    &outcome,
                    &first_topic,
                    &row.first_partition,
                    &row.first_offset,
                    &row.received_at_ms,
                    &row.decided_at_ms,
                    &row.expires_at_ms,
                    &origin_region_opt,
                ])
                .await?;
        }
        Ok(())
    }

    /// Ends the COPY (commits it); returns the rows Postgres took.
    pub async fn finish(self) -> Result<u64, StoreError> {
        self.0.finish().await
    }
}

/// Deletes the copied row versions `fold` replaced afterwards, found by key and first
/// coordinates (one scan with a hash join; a version's first coordinates are its own, as a
/// source is folded once). Returns the rows deleted.
pub(crate) async fn delete_replaced(
    client: &tokio_postgres::Client,
    fold: &ReplayFold,
) -> Result<u64, StoreError> {
    let replaced = fold.replaced_rows();
    if replaced.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<&str> = replaced.iter().map(|version| &*version.tenant).collect();
    let pcs_ids: Vec<&str> = replaced.iter().map(|version| &*version.pcs_id).collect();
    let topics: Vec<&str> = replaced
        .iter()
        .map(|version| &*version.row.first_topic)
        .collect();
    let partitions: Vec<i32> = replaced
        .iter()
        .map(|version| version.row.first_partition)
        .collect();
    let offsets: Vec<i64> = replaced
        .iter()
        .map(|version| version.row.first_offset)
        .collect();
    let deleted = client
        .execute(
            "DELETE FROM dedup d \
             USING unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[]) \
                 AS r(tenant, pcs_id, topic, part, off) \
             WHERE d.tenant = r.tenant AND d.pcs_id = r.pcs_id AND d.first_topic = r.topic \
               AND d.first_partition = r.part AND d.first_offset = r.off",
            &[&tenants, &pcs_ids, &topics, &partitions, &offsets],
        )
        .await?;
    debug_assert_eq!(deleted, replaced.len() as u64);
    Ok(deleted)
}
