//! `flk migrate cleanup`: after the cutover, deletes from each node the keys it no longer owns on
//! the new ring (all keys of a node that left). Run only once every process reads and writes
//! through the new ring alone, so nothing writes a deleted key back to its old node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::hot_cache::CacheError;

use super::{KeyNode, KeyNodes, Rings};

/// Deletes moved keys on every node of `rings`; returns the keys deleted per node. At most
/// `max_keys_per_second` deletions a second (0: no bound). `on_chunk` gets the keys deleted so far.
pub async fn cleanup<N: KeyNodes>(
    nodes: &N,
    rings: &Rings,
    pattern: &str,
    chunk_keys: usize,
    max_keys_per_second: u64,
    mut on_chunk: impl FnMut(u64),
) -> Result<BTreeMap<String, u64>, CacheError> {
    let started = Instant::now();
    let mut deleted_per_node = BTreeMap::new();
    let mut total = 0u64;
    for node_id in rings.nodes() {
        let node = nodes.node(&node_id)?;
        let mut deleted = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = node.scan(cursor, pattern, chunk_keys).await?;
            let stale: Vec<String> = keys
                .into_iter()
                .filter(|key| rings.target_of(&node_id, key).is_some())
                .collect();
            let removed = node.delete_many(&stale).await?;
            deleted += removed;
            total += removed;
            on_chunk(total);
            if max_keys_per_second > 0 {
                let due = Duration::from_secs_f64(total as f64 / max_keys_per_second as f64);
                if let Some(pause) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(pause).await;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        deleted_per_node.insert(node_id, deleted);
    }
    Ok(deleted_per_node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::memory::MemoryNodes;
    use crate::reshard::memory::ring;

    #[tokio::test]
    async fn leaves_each_key_only_on_its_new_owner() {
        let rings = Rings {
            from: ring(&["a", "b", "c", "d"]),
            to: ring(&["a", "b", "c"]),
        };
        let nodes = MemoryNodes::default();
        for index in 0..1_000 {
            let key = format!("p:t:{index:04}");
            // As after copy: on the old owner and on the new one.
            nodes.insert(rings.from.node_for(key.as_bytes()), &key, b"v", None);
            nodes.insert(rings.to.node_for(key.as_bytes()), &key, b"v", None);
        }
        nodes.insert("d", "other:x", b"1", None);
        let deleted = cleanup(&nodes, &rings, "p:*", 100, 0, |_| {})
            .await
            .unwrap();
        assert_eq!(deleted.get("d").copied(), Some(deleted.values().sum()));
        assert_eq!(
            nodes.keys("d"),
            ["other:x"],
            "only other prefixes stay on the node that left"
        );
        for index in 0..1_000 {
            let key = format!("p:t:{index:04}");
            assert!(nodes.get(rings.to.node_for(key.as_bytes()), &key).is_some());
        }
    }
}
