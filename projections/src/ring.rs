//! A consistent hash ring over the Redis nodes of the hot cache (pure; no I/O).
//!
//! Each node owns `virtual_nodes` points: the first 8 bytes (big-endian) of SHA-256 of
//! `"<node id>#<i>"`. A key belongs to the first point at or after the key's own point (same
//! hash of the key bytes), wrapping around. Adding a node therefore moves only the keys that now
//! fall on its points (about 1/N of them), all *to* the new node; `dedup-migrate` uses two rings
//! (before/after) to find exactly those keys.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Default points per node.
pub const DEFAULT_VIRTUAL_NODES: u32 = 64;

/// Why a ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// No nodes.
    #[error("a hash ring needs at least one node")]
    NoNodes,
    /// Zero virtual nodes per node.
    #[error("a hash ring needs at least one virtual node per node")]
    NoVirtualNodes,
    /// The same node id twice.
    #[error("node {0:?} is listed twice")]
    DuplicateNode(String),
}

/// Position of bytes on the ring.
pub fn ring_point(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A consistent hash ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    /// Node ids, in the order given.
    nodes: Vec<String>,
    /// (point, index into `nodes`), sorted.
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// Builds a ring of `nodes` (stable ids, e.g. `host:port`) with `virtual_nodes` points each.
    pub fn new(nodes: Vec<String>, virtual_nodes: u32) -> Result<Self, RingError> {
        if nodes.is_empty() {
            return Err(RingError::NoNodes);
        }
        if virtual_nodes == 0 {
            return Err(RingError::NoVirtualNodes);
        }
        for (index, node) in nodes.iter().enumerate() {
            if nodes[..index].contains(node) {
                return Err(RingError::DuplicateNode(node.clone()));
            }
        }
        let mut points = Vec::with_capacity(nodes.len() * virtual_nodes as usize);
        for (index, node) in nodes.iter().enumerate() {
            for replica in 0..virtual_nodes {
                points.push((ring_point(format!("{node}#{replica}").as_bytes()), index));
            }
        }
        // Ties (vanishingly rare) break by node id so every process builds the same ring.
        points.sort_by(|left, right| {
            left.0
                .cmp(&right.0)
                .then_with(|| nodes[left.1].cmp(&nodes[right.1]))
        });
        Ok(HashRing { nodes, points })
    }

    /// Node ids, in the order given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Index (into [`HashRing::nodes`]) of the node that owns `key`.
    pub fn node_index(&self, key: &[u8]) -> usize {
        let point = ring_point(key);
        let position = self.points.partition_point(|(p, _)| *p < point);
        let (_, index) = self
            .points
            .get(position)
            .or_else(|| self.points.first())
            .copied()
            .unwrap_or((0, 0));
        index
    }

    /// Id of the node that owns `key`.
    pub fn node_for(&self, key: &[u8]) -> &str {
        self.nodes
            .get(self.node_index(key))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(count: usize) -> HashRing {
        HashRing::new(
            (0..count)
                .map(|i| format!("127.0.0.1:{}", 16379 + i))
                .collect(),
            DEFAULT_VIRTUAL_NODES,
        )
        .unwrap()
    }

    fn keys() -> Vec<String> {
        (0..20_000).map(|i| format!("flk:acme:{i:064x}")).collect()
    }

    #[test]
    fn assignment_is_stable_and_deterministic() {
        let first = ring(3);
        let second = ring(3);
        assert_eq!(first, second);
        for key in keys().iter().take(1_000) {
            assert_eq!(
                first.node_for(key.as_bytes()),
                second.node_for(key.as_bytes())
            );
        }
        // Pinned: a change of the point function would silently move every cached key.
        assert_eq!(ring_point(b"flk:acme:abc"), 13_796_072_281_077_454_216);
    }

    #[test]
    fn keys_spread_over_all_nodes() {
        let ring = ring(3);
        let mut counts = [0usize; 3];
        for key in keys() {
            counts[ring.node_index(key.as_bytes())] += 1;
        }
        let mean = keys().len() / 3;
        for count in counts {
            assert!(count > mean / 2 && count < mean * 3 / 2, "{counts:?}");
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_nth_and_only_to_it() {
        let before = ring(3);
        let after = ring(4);
        let all = keys();
        let mut moved = 0;
        for key in &all {
            let old = before.node_for(key.as_bytes());
            let new = after.node_for(key.as_bytes());
            if old != new {
                moved += 1;
                assert_eq!(new, "127.0.0.1:16382", "a key moved between old nodes");
            }
        }
        let fraction = moved as f64 / all.len() as f64;
        assert!((0.15..0.35).contains(&fraction), "moved {fraction}");
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = ring(4);
        let after = ring(3);
        for key in keys().iter().take(5_000) {
            let old = before.node_for(key.as_bytes());
            if old != "127.0.0.1:16382" {
                assert_eq!(after.node_for(key.as_bytes()), old);
            }
        }
    }

    #[test]
    fn bad_rings_are_refused() {
        assert_eq!(HashRing::new(vec![], 64), Err(RingError::NoNodes));
        assert_eq!(
            HashRing::new(vec!["a".into()], 0),
            Err(RingError::NoVirtualNodes)
        );
        assert_eq!(
            HashRing::new(vec!["a".into(), "a".into()], 8),
            Err(RingError::DuplicateNode("a".into()))
        );
        let single = HashRing::new(vec!["only".into()], 1).unwrap();
        assert_eq!(single.node_for(b"anything"), "only");
    }
}
