//! The audit Merkle log in Postgres: leaves, complete-subtree hashes and signed checkpoints
//! (migration 0004). The math is in [`events::merkle`]; this module reads and writes it.
//!
//! Writing: the anchorer computes a round (new leaves, the subtree hashes they complete, the
//! signed checkpoint) in memory and [`append_round`] commits it in one transaction. The
//! checkpoint's `previous_size` is unique, so a second anchorer extending the same tree fails
//! instead of forking it; nodes and leaves are plain inserts, so a conflicting hash is an error,
//! never an overwrite.
//!
//! Reading: a proof first asks [`events::merkle`] which stored subtrees it needs, reads them in
//! one query ([`read_nodes`]) and assembles the proof from them.

use std::collections::HashMap;

use events::audit_leaf::{AuditLeaf, LeafSource};
use events::merkle::{self, Hash, NodeId};
use tokio_postgres::Row;

use crate::audit::{AUDIT_COLUMNS, AuditEntry, entry_from_row};
use crate::error::StoreError;

/// One signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Leaves covered.
    pub tree_size: u64,
    /// The size the round extended.
    pub previous_size: u64,
    /// Root of the first `tree_size` leaves.
    pub root: Hash,
    /// The C2SP signed note.
    pub note: String,
    /// Watermarks after the round: (partition, next seq), ascending by partition.
    pub watermarks: Vec<(i32, i64)>,
    /// When the anchorer made it, ms since the epoch.
    pub created_at_ms: i64,
}

/// One leaf as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLeaf {
    /// Global leaf index.
    pub leaf_index: u64,
    /// Decisions partition of the audit entry.
    pub partition: i32,
    /// Its seq in the partition's chain.
    pub seq: i64,
    /// Tenant.
    pub tenant: String,
    /// `pcs_id`, when known.
    pub pcs_id_opt: Option<String>,
    /// The leaf bytes.
    pub entry: Vec<u8>,
}

/// What one anchoring round appends.
#[derive(Debug, Clone)]
pub struct Round {
    /// The leaves, in leaf-index order, starting at the checkpoint's `previous_size`.
    pub leaves: Vec<StoredLeaf>,
    /// Every complete subtree the leaves complete.
    pub nodes: Vec<(NodeId, Hash)>,
    /// The checkpoint that ends the round.
    pub checkpoint: StoredCheckpoint,
}

impl StoredLeaf {
    /// Audit entry `entry` as leaf `leaf_index` (its bytes are [`leaf_of`] encoded).
    pub fn of(entry: &AuditEntry, leaf_index: u64) -> Self {
        StoredLeaf {
            leaf_index,
            partition: entry.partition,
            seq: entry.seq,
            tenant: entry.tenant.clone(),
            pcs_id_opt: entry.pcs_id_opt.clone(),
            entry: leaf_of(entry).encode(),
        }
    }
}

/// The leaf of an audit entry.
pub fn leaf_of(entry: &AuditEntry) -> AuditLeaf {
    AuditLeaf {
        decided_at_ms: entry.decided_at_ms,
        dedup: entry.dedup_result.as_str().to_owned(),
        entry_hash: hex::encode(entry.entry_hash),
        outcome: entry.verdict.clone(),
        partition: entry.partition,
        pcs_id: entry.pcs_id_opt.clone(),
        region: entry.region.clone(),
        seq: entry.seq,
        signed_digest: entry.signed_digest_opt.map(hex::encode),
        source: LeafSource {
            topic: entry.source.topic.clone(),
            partition: entry.source.partition,
            offset: entry.source.offset,
        },
        tenant: entry.tenant.clone(),
        v: events::audit_leaf::LEAF_VERSION,
    }
}

/// `columns` (comma separated) each prefixed with `alias.`.
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| StoreError::Corrupt(format!("{what} has {} bytes", bytes.len())))
}

fn size_of(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative")))
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidInput(format!("{value} is too large")))
}

const CHECKPOINT_COLUMNS: &str =
    "tree_size, previous_size, root, note, partitions, next_seqs, created_at_ms";

fn checkpoint_from_row(row: &Row) -> Result<StoredCheckpoint, StoreError> {
    let partitions: Vec<i32> = row.try_get(4)?;
    let next_seqs: Vec<i64> = row.try_get(5)?;
    if partitions.len() != next_seqs.len() {
        return Err(StoreError::Corrupt(
            "checkpoint watermark arrays differ in length".into(),
        ));
    }
    Ok(StoredCheckpoint {
        tree_size: size_of(row.try_get(0)?, "checkpoint tree_size")?,
        previous_size: size_of(row.try_get(1)?, "checkpoint previous_size")?,
        root: hash32(row.try_get(2)?, "checkpoint root")?,
        note: row.try_get(3)?,
        watermarks: partitions.into_iter().zip(next_seqs).collect(),
        created_at_ms: row.try_get(6)?,
    })
}

const LEAF_COLUMNS: &str = "leaf_index, partition, seq, tenant, pcs_id, entry";

fn leaf_from_row(row: &Row) -> Result<StoredLeaf, StoreError> {
    Ok(StoredLeaf {
        leaf_index: size_of(row.try_get(0)?, "leaf_index")?,
        partition: row.try_get(1)?,
        seq: row.try_get(2)?,
        tenant: row.try_get(3)?,
        pcs_id_opt: row.try_get(4)?,
        entry: row.try_get(5)?,
    })
}

/// The newest checkpoint, if any.
pub(crate) async fn latest_checkpoint(
    client: &deadpool_postgres::Client,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let sql =
        format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1");
    client
        .query_opt(&sql, &[])
        .await?
        .as_ref()
        .map(checkpoint_from_row)
        .transpose()
}

/// The checkpoint for exactly `tree_size`, if one was signed.
pub(crate) async fn checkpoint_at(
    client: &deadpool_postgres::Client,
    tree_size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size = $1");
    client
        .query_opt(&sql, &[&to_i64(tree_size)?])
        .await?
        .as_ref()
        .map(checkpoint_from_row)
        .transpose()
}

/// Every checkpoint, oldest first, from `after_size` (exclusive), at most `limit`.
pub(crate) async fn checkpoints_after(
    client: &deadpool_postgres::Client,
    after_size: u64,
    limit: i64,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let sql = format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size > $1 ORDER BY tree_size LIMIT $2"
    );
    client
        .query(&sql, &[&to_i64(after_size)?, &limit])
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
}

/// The stored hashes of `ids` (missing ones are simply absent from the map).
pub(crate) async fn read_nodes(
    client: &deadpool_postgres::Client,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let levels: Vec<i16> = ids.iter().map(|id| i16::from(id.level)).collect();
    let indexes = ids
        .iter()
        .map(|id| to_i64(id.index))
        .collect::<Result<Vec<i64>, _>>()?;
    let rows = client
        .query(
            "SELECT n.level, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx) \
             JOIN merkle_nodes n ON n.level = w.level AND n.idx = w.idx",
            &[&levels, &indexes],
        )
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let level: i16 = row.try_get(0)?;
        let index: i64 = row.try_get(1)?;
        let id = NodeId {
            level: u8::try_from(level)
                .map_err(|_| StoreError::Corrupt(format!("merkle level {level}")))?,
            index: size_of(index, "merkle idx")?,
        };
        out.insert(id, hash32(row.try_get(2)?, "merkle hash")?);
    }
    Ok(out)
}

/// Audit entries after the watermarks, for every partition in `watermarks` (ascending), at most
/// `per_partition` each, ordered by partition then seq: the next round's leaves.
///
/// Their `outcome` is left `null`: a leaf does not carry the answer body, so reading and parsing
/// it for every entry of a round would be work for nothing.
pub(crate) async fn entries_after(
    client: &deadpool_postgres::Client,
    watermarks: &[(i32, i64)],
    per_partition: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let partitions: Vec<i32> = watermarks.iter().map(|(p, _)| *p).collect();
    let next_seqs: Vec<i64> = watermarks.iter().map(|(_, s)| *s).collect();
    let columns = qualified(AUDIT_COLUMNS, "a").replace("a.outcome::text", "'null'::text");
    debug_assert!(
        columns.contains("'null'::text"),
        "the outcome column was renamed"
    );
    let sql = format!(
        "SELECT {columns} FROM unnest($1::int[], $2::bigint[]) AS w(p, s) \
         CROSS JOIN LATERAL (SELECT * FROM audit_log WHERE partition = w.p AND seq >= w.s \
                             ORDER BY seq LIMIT $3) a \
         ORDER BY a.partition, a.seq"
    );
    client
        .query(&sql, &[&partitions, &next_seqs, &per_partition])
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
}

/// Audit entries of each partition in `[from, to)` seq ranges, ordered by partition then seq:
/// exactly the leaves of a recorded round (a rebuild repeats it).
pub(crate) async fn entries_between(
    client: &deadpool_postgres::Client,
    ranges: &[(i32, i64, i64)],
) -> Result<Vec<AuditEntry>, StoreError> {
    let partitions: Vec<i32> = ranges.iter().map(|r| r.0).collect();
    let from: Vec<i64> = ranges.iter().map(|r| r.1).collect();
    let to: Vec<i64> = ranges.iter().map(|r| r.2).collect();
    let columns = qualified(AUDIT_COLUMNS, "a");
    let sql = format!(
        "SELECT {columns} FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS w(p, f, t) \
         JOIN audit_log a ON a.partition = w.p AND a.seq >= w.f AND a.seq < w.t \
         ORDER BY a.partition, a.seq"
    );
    client
        .query(&sql, &[&partitions, &from, &to])
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
}

/// Commits one round: leaves, nodes and the checkpoint, in one transaction. `Ok(false)` when
/// another anchorer extended the same tree first (nothing written: reload and go on).
pub(crate) async fn append_round(
    client: &mut deadpool_postgres::Client,
    round: &Round,
) -> Result<bool, StoreError> {
    let transaction = client.transaction().await?;
    let checkpoint = &round.checkpoint;
    let partitions: Vec<i32> = checkpoint.watermarks.iter().map(|(p, _)| *p).collect();
    let next_seqs: Vec<i64> = checkpoint.watermarks.iter().map(|(_, s)| *s).collect();
    let inserted = transaction
        .execute(
            "INSERT INTO checkpoints (tree_size, previous_size, root, note, partitions, next_seqs, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &to_i64(checkpoint.tree_size)?,
                &to_i64(checkpoint.previous_size)?,
                &checkpoint.root.as_slice(),
                &checkpoint.note,
                &partitions,
                &next_seqs,
                &checkpoint.created_at_ms,
            ],
        )
        .await?;
    if inserted != 1 {
        // Another anchorer extended this tree first (the insert waited for its commit).
        return Ok(false);
    }
    let mut indexes = Vec::with_capacity(round.leaves.len());
    let mut leaf_partitions = Vec::with_capacity(round.leaves.len());
    let mut seqs = Vec::with_capacity(round.leaves.len());
    let mut tenants = Vec::with_capacity(round.leaves.len());
    let mut pcs_ids = Vec::with_capacity(round.leaves.len());
    let mut entries = Vec::with_capacity(round.leaves.len());
    for leaf in &round.leaves {
        indexes.push(to_i64(leaf.leaf_index)?);
        leaf_partitions.push(leaf.partition);
        seqs.push(leaf.seq);
        tenants.push(leaf.tenant.as_str());
        pcs_ids.push(leaf.pcs_id_opt.as_deref());
        entries.push(leaf.entry.as_slice());
    }
    transaction
        .execute(
            "INSERT INTO merkle_leaves (leaf_index, partition, seq, tenant, pcs_id, entry) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::bytea[])",
            &[&indexes, &leaf_partitions, &seqs, &tenants, &pcs_ids, &entries],
        )
        .await?;
    let levels: Vec<i16> = round
        .nodes
        .iter()
        .map(|(id, _)| i16::from(id.level))
        .collect();
    let node_indexes = round
        .nodes
        .iter()
        .map(|(id, _)| to_i64(id.index))
        .collect::<Result<Vec<_>, _>>()?;
    let hashes: Vec<&[u8]> = round
        .nodes
        .iter()
        .map(|(_, hash)| hash.as_slice())
        .collect();
    transaction
        .execute(
            "INSERT INTO merkle_nodes (level, idx, hash) \
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
            &[&levels, &node_indexes, &hashes],
        )
        .await?;
    transaction.commit().await?;
    Ok(true)
}

/// Leaf `index`, if the tree has it.
pub(crate) async fn leaf_at(
    client: &deadpool_postgres::Client,
    index: u64,
) -> Result<Option<StoredLeaf>, StoreError> {
    let sql = format!("SELECT {LEAF_COLUMNS} FROM merkle_leaves WHERE leaf_index = $1");
    client
        .query_opt(&sql, &[&to_i64(index)?])
        .await?
        .as_ref()
        .map(leaf_from_row)
        .transpose()
}

/// The first leaf of (tenant, pcs_id) below `tree_size`, if any.
pub(crate) async fn first_leaf_of(
    client: &deadpool_postgres::Client,
    tenant: &str,
    pcs_id: &str,
    tree_size: u64,
) -> Result<Option<StoredLeaf>, StoreError> {
    let sql = format!(
        "SELECT {LEAF_COLUMNS} FROM merkle_leaves WHERE tenant = $1 AND pcs_id = $2 \
         AND leaf_index < $3 ORDER BY leaf_index LIMIT 1"
    );
    client
        .query_opt(&sql, &[&tenant, &pcs_id, &to_i64(tree_size)?])
        .await?
        .as_ref()
        .map(leaf_from_row)
        .transpose()
}

/// Leaves `[from, to)` in index order.
pub(crate) async fn leaves_between(
    client: &deadpool_postgres::Client,
    from: u64,
    to: u64,
) -> Result<Vec<StoredLeaf>, StoreError> {
    let sql = format!(
        "SELECT {LEAF_COLUMNS} FROM merkle_leaves WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index"
    );
    client
        .query(&sql, &[&to_i64(from)?, &to_i64(to)?])
        .await?
        .iter()
        .map(leaf_from_row)
        .collect()
}

/// Maps a proof-planning error to the store's error kinds.
pub(crate) fn proof_error(error: merkle::ProofError) -> StoreError {
    match error {
        merkle::ProofError::OutOfRange(message) => StoreError::InvalidInput(message),
        merkle::ProofError::Missing(id) => StoreError::Corrupt(format!(
            "merkle node level {} index {} is missing",
            id.level, id.index
        )),
        merkle::ProofError::Mismatch(message) => StoreError::Corrupt(message),
    }
}

/// Checkpoints not yet written to the object store, oldest first, at most `limit`.
pub(crate) async fn unpublished(
    client: &deadpool_postgres::Client,
    limit: i64,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let columns = qualified(CHECKPOINT_COLUMNS, "c");
    let sql = format!(
        "SELECT {columns} FROM checkpoints c LEFT JOIN checkpoint_uploads u USING (tree_size) \
         WHERE u.tree_size IS NULL ORDER BY c.tree_size LIMIT $1"
    );
    client
        .query(&sql, &[&limit])
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
}

/// The Merkle log's operations (the SQL above; the math in [`events::merkle`]).
impl crate::ProjectionStore {
    /// The newest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        latest_checkpoint(&self.client().await?).await
    }

    /// The checkpoint signed for exactly `tree_size`, if any.
    pub async fn checkpoint_at(
        &self,
        tree_size: u64,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        checkpoint_at(&self.client().await?, tree_size).await
    }

    /// Up to `limit` checkpoints after `after_size`, oldest first.
    pub async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        checkpoints_after(&self.client().await?, after_size, limit).await
    }

    /// Stored subtree hashes by id.
    pub async fn merkle_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        read_nodes(&self.client().await?, ids).await
    }

    /// Decisions partitions the projector has claimed (every partition that can have entries).
    pub async fn projected_partitions(&self) -> Result<Vec<i32>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT partition FROM projection_offsets ORDER BY partition",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// The next round's audit entries, without their outcome body (see [`entries_after`]).
    pub async fn audit_entries_after(
        &self,
        watermarks: &[(i32, i64)],
        per_partition: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        entries_after(&self.client().await?, watermarks, per_partition).await
    }

    /// The audit entries of `(partition, from_seq, to_seq)` ranges, in leaf order.
    pub async fn audit_entries_between(
        &self,
        ranges: &[(i32, i64, i64)],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        entries_between(&self.client().await?, ranges).await
    }

    /// Commits one anchoring round (see [`append_round`]); `false` when another anchorer
    /// extended the same tree first and nothing was written.
    pub async fn append_round(&self, round: &Round) -> Result<bool, StoreError> {
        append_round(&mut self.client().await?, round).await
    }

    /// Leaf `index`, if the tree has it.
    pub async fn leaf_at(&self, index: u64) -> Result<Option<StoredLeaf>, StoreError> {
        leaf_at(&self.client().await?, index).await
    }

    /// The first leaf of `(tenant, pcs_id)` in the tree of `tree_size` leaves, if any.
    pub async fn first_leaf_of(
        &self,
        tenant: &str,
        pcs_id: &str,
        tree_size: u64,
    ) -> Result<Option<StoredLeaf>, StoreError> {
        first_leaf_of(&self.client().await?, tenant, pcs_id, tree_size).await
    }

    /// Leaves `[from, to)` in index order.
    pub async fn leaves_between(&self, from: u64, to: u64) -> Result<Vec<StoredLeaf>, StoreError> {
        leaves_between(&self.client().await?, from, to).await
    }

    /// The inclusion proof of leaf `index` in the tree of `tree_size` leaves (O(log n) reads).
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let plan = merkle::inclusion_plan(index, tree_size).map_err(proof_error)?;
        let nodes = self.merkle_nodes(&plan).await?;
        merkle::inclusion_proof(index, tree_size, &nodes).map_err(proof_error)
    }

    /// The consistency proof between the trees of `old_size` and `new_size` leaves.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let plan = merkle::consistency_plan(old_size, new_size).map_err(proof_error)?;
        let nodes = self.merkle_nodes(&plan).await?;
        merkle::consistency_proof(old_size, new_size, &nodes).map_err(proof_error)
    }

    /// The root of the first `tree_size` leaves, from the stored subtrees.
    pub async fn merkle_root(&self, tree_size: u64) -> Result<Hash, StoreError> {
        let nodes = self.merkle_nodes(&merkle::root_plan(tree_size)).await?;
        merkle::root(tree_size, &nodes).map_err(proof_error)
    }

    /// Checkpoints not yet in the object store, oldest first.
    pub async fn unpublished_checkpoints(
        &self,
        limit: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        unpublished(&self.client().await?, limit).await
    }

    /// Records that `tree_size`'s checkpoint is in the object store at `object_key`.
    pub async fn record_checkpoint_published(
        &self,
        tree_size: u64,
        object_key: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        // Not waiting for the WAL flush: losing this row in a crash only means the write-once
        // put is repeated, and it spares the anchorer a second disk flush per round.
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .batch_execute("SET LOCAL synchronous_commit = off")
            .await?;
        transaction
            .execute(
                "INSERT INTO checkpoint_uploads (tree_size, object_key, uploaded_at_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&to_i64(tree_size)?, &object_key, &at_ms],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}
