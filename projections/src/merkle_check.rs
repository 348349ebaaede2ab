//! Recomputing the Merkle log from the audit entries: `flk audit check` (does every stored leaf
//! and every signed root follow from the audit rows?) and the tree half of `flk replay` (repeat
//! the live log's recorded rounds on a rebuilt audit log, so the rebuilt tree has the same root
//! at every signed size; the projections' I6 extended to the tree).
//!
//! Both walk the checkpoints oldest first. A checkpoint records each partition's watermark after
//! its round, so the round's leaves are the audit entries between the previous checkpoint's
//! watermarks and its own, partitions ascending, seq order (the rule in docs/contract.md).

use std::collections::{BTreeMap, HashMap};

use events::checkpoint::NoteVerifier;
use events::merkle::{self, Frontier, Hash, NodeId};

use crate::ProjectionStore;
use crate::error::StoreError;
use crate::merkle_log::{Round, StoredCheckpoint, StoredLeaf};

/// Checkpoints read per query.
const PAGE: i64 = 500;

/// What `flk audit check` found in the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeReport {
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Leaves checked.
    pub leaves: u64,
    /// The first thing that does not follow from the audit rows, if any.
    pub first_mismatch_opt: Option<String>,
}

/// The leaves of one recorded round, recomputed from `store`'s audit rows.
async fn round_leaves(
    store: &ProjectionStore,
    previous: &BTreeMap<i32, i64>,
    checkpoint: &StoredCheckpoint,
) -> Result<Vec<StoredLeaf>, StoreError> {
    let ranges: Vec<(i32, i64, i64)> = checkpoint
        .watermarks
        .iter()
        .map(|(partition, next)| {
            (
                *partition,
                previous.get(partition).copied().unwrap_or(0),
                *next,
            )
        })
        .filter(|(_, from, to)| from < to)
        .collect();
    let entries = store.audit_entries_between(&ranges).await?;
    Ok(entries
        .iter()
        .enumerate()
        .map(|(i, entry)| StoredLeaf::of(entry, checkpoint.previous_size + i as u64))
        .collect())
}

fn found(report: &TreeReport, what: String) -> Result<TreeReport, StoreError> {
    Ok(TreeReport {
        first_mismatch_opt: Some(what),
        ..report.clone()
    })
}

/// Checks every checkpoint (signature when a verifier is given, leaves, root) against the audit
/// rows; stops at the first mismatch and names it.
pub async fn check_tree(
    store: &ProjectionStore,
    verifier_opt: Option<&NoteVerifier>,
) -> Result<TreeReport, StoreError> {
    let mut report = TreeReport::default();
    let mut frontier = Frontier::new();
    let mut watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let page = store.checkpoints_after(frontier.size(), PAGE).await?;
        if page.is_empty() {
            return Ok(report);
        }
        for checkpoint in page {
            if checkpoint.previous_size != frontier.size() {
                return found(
                    &report,
                    format!(
                        "checkpoint {} extends size {}, but the tree before it has {} leaves",
                        checkpoint.tree_size,
                        checkpoint.previous_size,
                        frontier.size()
                    ),
                );
            }
            if let Some(verifier) = verifier_opt {
                match verifier.open_checkpoint(&checkpoint.note) {
                    Ok(signed)
                        if signed.size == checkpoint.tree_size
                            && signed.root == checkpoint.root => {}
                    Ok(_) => {
                        return found(
                            &report,
                            format!(
                                "checkpoint {}: the signed note names another size or root than the row",
                                checkpoint.tree_size
                            ),
                        );
                    }
                    Err(error) => {
                        return found(
                            &report,
                            format!("checkpoint {}: {error}", checkpoint.tree_size),
                        );
                    }
                }
            }
            let expected = round_leaves(store, &watermarks, &checkpoint).await?;
            let stored = store
                .leaves_between(checkpoint.previous_size, checkpoint.tree_size)
                .await?;
            if expected.len() as u64 != checkpoint.tree_size - checkpoint.previous_size {
                return found(
                    &report,
                    format!(
                        "checkpoint {}: its round covers {} audit entries, not {}",
                        checkpoint.tree_size,
                        expected.len(),
                        checkpoint.tree_size - checkpoint.previous_size
                    ),
                );
            }
            for (want, have) in expected
                .iter()
                .zip(stored.iter().map(Some).chain(std::iter::repeat(None)))
            {
                match have {
                    Some(have) if have == want => {}
                    Some(_) => {
                        return found(
                            &report,
                            format!(
                                "leaf {} does not match audit entry partition {} seq {}",
                                want.leaf_index, want.partition, want.seq
                            ),
                        );
                    }
                    None => return found(&report, format!("leaf {} is missing", want.leaf_index)),
                }
                frontier.append(merkle::leaf_hash(&want.entry));
                report.leaves += 1;
            }
            if frontier.root() != checkpoint.root {
                return found(
                    &report,
                    format!(
                        "checkpoint {}: the leaves give another root than the signed one",
                        checkpoint.tree_size
                    ),
                );
            }
            let stored_root = store.merkle_root(checkpoint.tree_size).await?;
            if stored_root != checkpoint.root {
                return found(
                    &report,
                    format!(
                        "checkpoint {}: the stored subtree hashes give another root",
                        checkpoint.tree_size
                    ),
                );
            }
            watermarks.extend(checkpoint.watermarks.iter().copied());
            report.checkpoints += 1;
        }
    }
}

/// What [`rebuild_tree`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeRebuild {
    /// Checkpoints repeated.
    pub checkpoints: u64,
    /// Leaves in the rebuilt tree.
    pub tree_size: u64,
}

/// Repeats every round of `live`'s Merkle log on `rebuild`'s audit rows and copies the signed
/// checkpoints over, after checking each rebuilt root equals the signed one. Fails, naming the
/// size, when the rebuilt audit log does not give the same tree (the rebuild must then not be
/// swapped in: the live log's signatures would no longer match its tree).
pub async fn rebuild_tree(
    live: &ProjectionStore,
    rebuild: &ProjectionStore,
) -> Result<TreeRebuild, StoreError> {
    let mut done = TreeRebuild::default();
    let mut frontier = Frontier::new();
    let mut watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let page = live.checkpoints_after(frontier.size(), PAGE).await?;
        if page.is_empty() {
            return Ok(done);
        }
        for checkpoint in page {
            let leaves = round_leaves(rebuild, &watermarks, &checkpoint).await?;
            if leaves.len() as u64 != checkpoint.tree_size - checkpoint.previous_size {
                return Err(StoreError::Corrupt(format!(
                    "the rebuilt audit log has {} of the {} entries of the round ending at tree size {} \
                     (was the projector stopped during the replay?)",
                    leaves.len(),
                    checkpoint.tree_size - checkpoint.previous_size,
                    checkpoint.tree_size
                )));
            }
            let mut nodes: HashMap<NodeId, Hash> = HashMap::new();
            for leaf in &leaves {
                nodes.extend(frontier.append(merkle::leaf_hash(&leaf.entry)));
            }
            if frontier.root() != checkpoint.root {
                return Err(StoreError::Corrupt(format!(
                    "the rebuilt tree of size {} has another root than the signed checkpoint",
                    checkpoint.tree_size
                )));
            }
            watermarks.extend(checkpoint.watermarks.iter().copied());
            let appended = rebuild
                .append_round(&Round {
                    leaves,
                    nodes: nodes.into_iter().collect(),
                    checkpoint: checkpoint.clone(),
                })
                .await?;
            if !appended {
                return Err(StoreError::Corrupt(format!(
                    "the rebuild schema already has a checkpoint extending tree size {}",
                    checkpoint.previous_size
                )));
            }
            done.checkpoints += 1;
            done.tree_size = checkpoint.tree_size;
        }
    }
}
