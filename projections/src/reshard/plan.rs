//! `flk migrate plan`: lists the real keys (in chunks, never all at once) and counts exactly
//! which keys and bytes move from which node to which, and how long copying them takes at the
//! throttle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hot_cache::CacheError;

use super::{KeyNode, KeyNodes, Rings};

/// Keys and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Keys.
    pub keys: u64,
    /// Bytes of their values.
    pub bytes: u64,
}

impl Volume {
    fn add(&mut self, bytes: u64) {
        self.keys += 1;
        self.bytes += bytes;
    }
}

/// What one source node holds and sends away.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Keys found on the node.
    pub scanned: Volume,
    /// Keys that move, by target node.
    pub moving_to: BTreeMap<String, Volume>,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Per source node.
    pub nodes: BTreeMap<String, NodePlan>,
    /// Keys found in all.
    pub scanned: Volume,
    /// Keys that move in all.
    pub moving: Volume,
    /// Keys each target node receives.
    pub receiving: BTreeMap<String, Volume>,
    /// `moving.keys / scanned.keys` (0 when empty).
    pub moved_fraction: f64,
    /// Seconds the copy takes at `max_keys_per_second` (its lower bound).
    pub expected_copy_seconds: f64,
    /// The throttle the estimate assumes.
    pub max_keys_per_second: u64,
}

/// Lists every node of both rings under `pattern` and counts what moves. `on_chunk` is called
/// with the keys listed so far (progress).
pub async fn plan<N: KeyNodes>(
    nodes: &N,
    rings: &Rings,
    pattern: &str,
    chunk_keys: usize,
    max_keys_per_second: u64,
    mut on_chunk: impl FnMut(u64),
) -> Result<Plan, CacheError> {
    let mut plan = Plan {
        max_keys_per_second,
        ..Plan::default()
    };
    for node_id in rings.nodes() {
        let node = nodes.node(&node_id)?;
        let mut node_plan = NodePlan::default();
        let mut cursor = 0;
        loop {
            let (next, keys) = node.scan(cursor, pattern, chunk_keys).await?;
            let entries = node.read_many(&keys).await?;
            for entry in entries {
                let Some(value) = &entry.value_opt else {
                    continue;
                };
                let bytes = value.len() as u64;
                node_plan.scanned.add(bytes);
                if let Some(target) = rings.target_of(&node_id, &entry.key) {
                    node_plan
                        .moving_to
                        .entry(target.to_owned())
                        .or_default()
                        .add(bytes);
                }
            }
            plan.scanned.keys += keys.len() as u64;
            on_chunk(plan.scanned.keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        plan.nodes.insert(node_id, node_plan);
    }
    plan.scanned = Volume::default();
    for node_plan in plan.nodes.values() {
        plan.scanned.keys += node_plan.scanned.keys;
        plan.scanned.bytes += node_plan.scanned.bytes;
        for (target, volume) in &node_plan.moving_to {
            plan.moving.keys += volume.keys;
            plan.moving.bytes += volume.bytes;
            let receiving = plan.receiving.entry(target.clone()).or_default();
            receiving.keys += volume.keys;
            receiving.bytes += volume.bytes;
        }
    }
    if plan.scanned.keys > 0 {
        plan.moved_fraction = plan.moving.keys as f64 / plan.scanned.keys as f64;
    }
    if max_keys_per_second > 0 {
        plan.expected_copy_seconds = plan.moving.keys as f64 / max_keys_per_second as f64;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::memory::MemoryNodes;
    use crate::reshard::memory::ring;

    #[tokio::test]
    async fn counts_exactly_the_keys_that_move() {
        let rings = Rings {
            from: ring(&["a", "b", "c"]),
            to: ring(&["a", "b", "c", "d"]),
        };
        let nodes = MemoryNodes::default();
        let mut expected_moving = 0;
        for index in 0..3_000 {
            let key = format!("p:t:{index}");
            let owner = rings.from.node_for(key.as_bytes());
            nodes.insert(owner, &key, b"12345", None);
            if rings.to.node_for(key.as_bytes()) != owner {
                expected_moving += 1;
            }
        }
        // A key of another prefix is not ours.
        nodes.insert("a", "other:x", b"1", None);
        let plan = plan(&nodes, &rings, "p:*", 100, 1_000, |_| {})
            .await
            .unwrap();
        assert_eq!(plan.scanned.keys, 3_000);
        assert_eq!(plan.scanned.bytes, 15_000);
        assert_eq!(plan.moving.keys, expected_moving);
        assert_eq!(plan.moving.bytes, expected_moving * 5);
        assert_eq!(plan.receiving.keys().collect::<Vec<_>>(), ["d"]);
        assert!((plan.expected_copy_seconds - expected_moving as f64 / 1_000.0).abs() < 1e-9);
        assert!(plan.moved_fraction > 0.15 && plan.moved_fraction < 0.35);
    }
}
