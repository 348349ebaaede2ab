//! `flk migrate verify`: checks that every key that moves is on its target with the same value,
//! VDiff style but cheaper: per chunk, each side computes a checksum of the chunk's keys and
//! values where the data is, and only a chunk whose checksums differ is compared key by key.
//!
//! No false positives: a key found different is read again on both sides before it is reported,
//! and a key that expired (or was deleted) on the source meanwhile is not a difference. TTLs are
//! not compared: a dual write may legitimately refresh one side's TTL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hot_cache::CacheError;

use super::{KeyNode, KeyNodes, Rings};

/// Differing keys listed in a report at most (the count is always exact).
pub const MAX_LISTED_DIFFERENCES: usize = 1_000;

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Not on the target.
    MissingOnTarget,
    /// On the target with another value.
    ValueDiffers,
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The key.
    pub key: String,
    /// Node it was found on.
    pub source: String,
    /// Node it moves to.
    pub target: String,
    /// How it differs.
    pub kind: DifferenceKind,
}

/// What a verify found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Keys listed on all nodes.
    pub scanned: u64,
    /// Keys that move, checked.
    pub checked: u64,
    /// Chunks compared by checksum.
    pub chunks: u64,
    /// Chunks whose checksums differed (compared key by key).
    pub chunks_differing: u64,
    /// Differing keys in all.
    pub differences: u64,
    /// The first [`MAX_LISTED_DIFFERENCES`] of them.
    pub listed: Vec<Difference>,
    /// Keys per (source, target) pair that were checked.
    pub pairs: BTreeMap<String, u64>,
}

impl VerifyReport {
    /// True when nothing differs.
    pub fn clean(&self) -> bool {
        self.differences == 0
    }

    /// The listed differences grouped by (source, target), for a fix.
    pub fn by_pair(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for difference in &self.listed {
            pairs
                .entry((difference.source.clone(), difference.target.clone()))
                .or_default()
                .push(difference.key.clone());
        }
        pairs
    }
}

/// Verifies every node of `rings`. `on_chunk` is called with the keys listed so far.
pub async fn verify<N: KeyNodes>(
    nodes: &N,
    rings: &Rings,
    pattern: &str,
    chunk_keys: usize,
    mut on_chunk: impl FnMut(u64),
) -> Result<VerifyReport, CacheError> {
    let mut report = VerifyReport::default();
    for node_id in rings.nodes() {
        let source = nodes.node(&node_id)?;
        let mut cursor = 0;
        loop {
            let (next, keys) = source.scan(cursor, pattern, chunk_keys).await?;
            report.scanned += keys.len() as u64;
            for (target_id, moving) in rings.moving(&node_id, &keys) {
                let moving: Vec<String> = moving.into_iter().cloned().collect();
                let target = nodes.node(&target_id)?;
                report.chunks += 1;
                report.checked += moving.len() as u64;
                *report
                    .pairs
                    .entry(format!("{node_id} -> {target_id}"))
                    .or_default() += moving.len() as u64;
                if source.checksum(&moving).await? == target.checksum(&moving).await? {
                    continue;
                }
                report.chunks_differing += 1;
                for (key, kind) in differing_keys(&source, &target, &moving).await? {
                    report.differences += 1;
                    if report.listed.len() < MAX_LISTED_DIFFERENCES {
                        report.listed.push(Difference {
                            key,
                            source: node_id.clone(),
                            target: target_id.clone(),
                            kind,
                        });
                    }
                }
            }
            on_chunk(report.scanned);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(report)
}

/// The keys of a chunk that really differ: compared one by one, then read again.
async fn differing_keys<S: KeyNode, T: KeyNode>(
    source: &S,
    target: &T,
    keys: &[String],
) -> Result<Vec<(String, DifferenceKind)>, CacheError> {
    let compare = |source_values: Vec<crate::redis_nodes::KeyValue>,
                   target_values: Vec<crate::redis_nodes::KeyValue>| {
        source_values
            .into_iter()
            .zip(target_values)
            .filter_map(|(on_source, on_target)| {
                // Gone from the source (expired, deleted): nothing to have copied.
                let value = on_source.value_opt?;
                match on_target.value_opt {
                    None => Some((on_source.key, DifferenceKind::MissingOnTarget)),
                    Some(other) if other != value => {
                        Some((on_source.key, DifferenceKind::ValueDiffers))
                    }
                    Some(_) => None,
                }
            })
            .collect::<Vec<_>>()
    };
    let first = compare(source.read_many(keys).await?, target.read_many(keys).await?);
    if first.is_empty() {
        return Ok(first);
    }
    let suspects: Vec<String> = first.into_iter().map(|(key, _)| key).collect();
    Ok(compare(
        source.read_many(&suspects).await?,
        target.read_many(&suspects).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::copy::{CopyOptions, CopyProgress, copy};
    use crate::reshard::memory::MemoryNodes;
    use crate::reshard::memory::ring;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn finds_exactly_the_keys_that_differ_and_nothing_after_a_copy() {
        let rings = Rings {
            from: ring(&["a", "b", "c"]),
            to: ring(&["a", "b", "c", "d"]),
        };
        let nodes = MemoryNodes::default();
        let mut moving = Vec::new();
        for index in 0..1_000 {
            let key = format!("p:t:{index:04}");
            nodes.insert(rings.from.node_for(key.as_bytes()), &key, b"v", None);
            if rings.to.node_for(key.as_bytes()) == "d" {
                moving.push(key);
            }
        }
        let before = verify(&nodes, &rings, "p:*", 100, |_| {}).await.unwrap();
        assert_eq!(before.differences, moving.len() as u64);
        assert!(
            before
                .listed
                .iter()
                .all(|difference| difference.kind == DifferenceKind::MissingOnTarget)
        );

        copy(
            &nodes,
            &rings,
            &mut CopyProgress::default(),
            &CopyOptions {
                pattern: "p:*".into(),
                chunk_keys: 100,
                max_keys_per_second: 0,
                checkpoint_every: std::time::Duration::ZERO,
            },
            &AtomicBool::new(false),
            |_| async { Ok(()) },
        )
        .await
        .unwrap();
        let after = verify(&nodes, &rings, "p:*", 100, |_| {}).await.unwrap();
        assert!(after.clean(), "{after:?}");
        assert_eq!(after.checked, moving.len() as u64);

        // One changed value and one lost key are named exactly.
        nodes.insert("d", &moving[0], b"other", None);
        assert_eq!(
            nodes
                .node("d")
                .unwrap()
                .delete_many(&moving[1..2])
                .await
                .unwrap(),
            1
        );
        let broken = verify(&nodes, &rings, "p:*", 100, |_| {}).await.unwrap();
        assert_eq!(broken.differences, 2);
        let named: Vec<(&str, DifferenceKind)> = broken
            .listed
            .iter()
            .map(|difference| (difference.key.as_str(), difference.kind))
            .collect();
        assert!(named.contains(&(moving[0].as_str(), DifferenceKind::ValueDiffers)));
        assert!(named.contains(&(moving[1].as_str(), DifferenceKind::MissingOnTarget)));
    }
}
