//! Two alternatives to the virtual-node ring of [`crate::ring`] (pure; no I/O): jump consistent
//! hash and rendezvous (highest random weight) hashing. `examples/ring_balance.rs` measures all
//! three; they share the key's [`ring_point`] so that a comparison measures placement only.
//!
//! - [`JumpHash`] (Lamping & Veach, 2014): no table, perfect balance, and growing from n to n+1
//!   nodes moves exactly the keys that go to the new node. But a node is a *position*: nodes
//!   can only be added or removed at the end of the list, so a failed node in the middle cannot
//!   be dropped without moving keys among the survivors.
//! - [`Rendezvous`]: every node scores every key and the highest score wins. Any node may join
//!   or leave (only its keys move), the list order does not matter, balance is that of a fair
//!   die. A lookup costs one mix per node, which is nothing next to the SHA-256 of the key for
//!   the few nodes a hot cache has.
//!
//! Neither takes weights here: weighted rendezvous needs a logarithm per score, and `f64::ln`
//! is not guaranteed to round the same on every platform, which a placement function must.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::num::NonZeroU32;

use crate::ring::{MAX_RING_POINTS, RingError, ring_point};

/// The bucket in `0..buckets` of `key` (Lamping & Veach, "A Fast, Minimal Memory, Consistent
/// Hash Algorithm", figure 1). Going from n to n+1 buckets, a key either stays or moves to
/// bucket n.
pub fn jump_bucket(mut key: u64, buckets: NonZeroU32) -> u32 {
    let buckets = i64::from(buckets.get());
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // Only IEEE division and multiplication, which round the same everywhere; the final
        // cast saturates, which only ends the loop.
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    debug_assert!((0..buckets).contains(&bucket));
    u32::try_from(bucket).unwrap_or_default()
}

/// Refuses what no placement can use: no nodes, a repeated id, or absurdly many nodes.
fn check_nodes(nodes: &[String]) -> Result<NonZeroU32, RingError> {
    let mut seen = HashSet::with_capacity(nodes.len());
    for node in nodes {
        if !seen.insert(node.as_str()) {
            return Err(RingError::DuplicateNode(node.clone()));
        }
    }
    let count = nodes.len() as u64;
    if count > MAX_RING_POINTS {
        return Err(RingError::TooManyPoints {
            points: count,
            nodes: nodes.len(),
            total_weight: count,
            virtual_nodes: 1,
            max: MAX_RING_POINTS,
        });
    }
    u32::try_from(nodes.len())
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(RingError::NoNodes)
}

/// Jump consistent hash over a list of nodes, where a node's position is its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHash {
    /// Node ids; index = bucket. Only the end of this list may change between versions.
    nodes: Vec<String>,
    /// `nodes.len()`, checked non-zero once.
    buckets: NonZeroU32,
}

impl JumpHash {
    /// Placement over `nodes`, in this fixed order.
    pub fn new(nodes: Vec<String>) -> Result<Self, RingError> {
        let buckets = check_nodes(&nodes)?;
        Ok(JumpHash { nodes, buckets })
    }

    /// Node ids, in bucket order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Index (into [`JumpHash::nodes`]) of the node that owns `key`.
    pub fn node_index(&self, key: &[u8]) -> usize {
        self.node_index_for_point(ring_point(key))
    }

    /// Index of the node that owns a key whose [`ring_point`] is `point`.
    pub fn node_index_for_point(&self, point: u64) -> usize {
        jump_bucket(point, self.buckets) as usize
    }

    /// Id of the node that owns `key`.
    pub fn node_for(&self, key: &[u8]) -> &str {
        self.nodes
            .get(self.node_index(key))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Rendezvous (highest random weight) hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Node ids, in the order given (which does not affect placement).
    nodes: Vec<String>,
    /// [`ring_point`] of each node id, parallel to `nodes`, mixed with the key point to score.
    seeds: Vec<u64>,
}

/// SplitMix64's finalizer (Stafford's "mix13"): a bijection on u64 in which every input bit
/// flips each output bit with probability close to 1/2, so scores of different nodes for one
/// key behave as independent draws.
fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

impl Rendezvous {
    /// Placement over `nodes`; their order is irrelevant.
    pub fn new(nodes: Vec<String>) -> Result<Self, RingError> {
        check_nodes(&nodes)?;
        let seeds = nodes
            .iter()
            .map(|node| ring_point(node.as_bytes()))
            .collect();
        Ok(Rendezvous { nodes, seeds })
    }

    /// Node ids, in the order given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Index (into [`Rendezvous::nodes`]) of the node that owns `key`.
    pub fn node_index(&self, key: &[u8]) -> usize {
        self.node_index_for_point(ring_point(key))
    }

    /// Index of the node that owns a key whose [`ring_point`] is `point`.
    pub fn node_index_for_point(&self, point: u64) -> usize {
        let mut best: Option<(u64, usize)> = None;
        for (index, seed) in self.seeds.iter().enumerate() {
            let score = mix64(point ^ seed);
            let wins = match best {
                None => true,
                // Equal scores (vanishingly rare) go to the smaller id, so the winner never
                // depends on the list order.
                Some((best_score, best_index)) => match score.cmp(&best_score) {
                    Ordering::Greater => true,
                    Ordering::Equal => self.nodes[index] < self.nodes[best_index],
                    Ordering::Less => false,
                },
            };
            if wins {
                best = Some((score, index));
            }
        }
        best.map(|(_, index)| index).unwrap_or_default()
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
    use proptest::prelude::*;

    fn ids(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("redis://127.0.0.1:{}", 16379 + i))
            .collect()
    }

    fn keys() -> Vec<String> {
        (0..20_000).map(|i| format!("flk:acme:{i:064x}")).collect()
    }

    fn buckets(count: u32) -> NonZeroU32 {
        NonZeroU32::new(count).unwrap()
    }

    #[test]
    fn jump_matches_the_reference_implementation() {
        // Published vectors of the paper's C++ code (ClickHouse's jumpConsistentHash tests,
        // jmphash-rs), rechecked with a Python transcription.
        let vectors: [(u64, u32, u32); 7] = [
            (1, 1, 0),
            (42, 57, 43),
            (256, 1024, 520),
            (3_735_883_980, 1, 0),
            (3_735_883_980, 666, 361),
            (16_045_690_984_833_335_023, 255, 237),
            (123_456, 1000, 984),
        ];
        for (key, count, expected) in vectors {
            assert_eq!(jump_bucket(key, buckets(count)), expected, "{key} {count}");
        }
    }

    #[test]
    fn rendezvous_placement_is_pinned() {
        // Computed with Python (hashlib + the same mix); a change here moves cached keys.
        let placement = Rendezvous::new(ids(3)).unwrap();
        let expected = [16381, 16380, 16379, 16381, 16381, 16379, 16381, 16381];
        for (i, port) in expected.iter().enumerate() {
            let key = format!("flk:acme:{i:064x}");
            let want = format!("redis://127.0.0.1:{port}");
            assert_eq!(placement.node_for(key.as_bytes()), want, "key {i}");
        }
    }

    #[test]
    fn both_spread_keys_evenly() {
        let all = keys();
        let jump = JumpHash::new(ids(4)).unwrap();
        let rendezvous = Rendezvous::new(ids(4)).unwrap();
        let mut jump_counts = [0usize; 4];
        let mut rendezvous_counts = [0usize; 4];
        for key in &all {
            jump_counts[jump.node_index(key.as_bytes())] += 1;
            rendezvous_counts[rendezvous.node_index(key.as_bytes())] += 1;
        }
        // 5000 expected per node; binomial sd is about 61.
        for count in jump_counts.iter().chain(&rendezvous_counts) {
            assert!(
                (4_700..5_300).contains(count),
                "{jump_counts:?} {rendezvous_counts:?}"
            );
        }
    }

    #[test]
    fn bad_node_lists_are_refused() {
        assert_eq!(JumpHash::new(vec![]), Err(RingError::NoNodes));
        assert_eq!(Rendezvous::new(vec![]), Err(RingError::NoNodes));
        let twice = vec!["a".to_string(), "b".into(), "a".into()];
        assert_eq!(
            JumpHash::new(twice.clone()),
            Err(RingError::DuplicateNode("a".into()))
        );
        assert_eq!(
            Rendezvous::new(twice),
            Err(RingError::DuplicateNode("a".into()))
        );
        let single = Rendezvous::new(vec!["only".into()]).unwrap();
        assert_eq!(single.node_for(b"anything"), "only");
        assert_eq!(
            JumpHash::new(vec!["only".into()]).unwrap().node_for(b"x"),
            "only"
        );
    }

    proptest! {
        #[test]
        fn jump_growth_moves_keys_only_to_the_new_bucket(key in any::<u64>(), count in 1u32..2_000) {
            let before = jump_bucket(key, buckets(count));
            let after = jump_bucket(key, buckets(count + 1));
            prop_assert!(before < count);
            prop_assert!(after == before || after == count, "{before} -> {after}");
        }

        #[test]
        fn rendezvous_ignores_the_list_order(
            ids in proptest::collection::btree_set("[a-z0-9:/.]{1,16}", 1..10),
            rotation in any::<prop::sample::Index>(),
            point in any::<u64>(),
        ) {
            let ids: Vec<String> = ids.into_iter().collect();
            let mut rotated = ids.clone();
            rotated.rotate_left(rotation.index(ids.len()));
            rotated.reverse();
            let first = Rendezvous::new(ids).unwrap();
            let second = Rendezvous::new(rotated).unwrap();
            prop_assert_eq!(
                &first.nodes()[first.node_index_for_point(point)],
                &second.nodes()[second.node_index_for_point(point)]
            );
        }

        #[test]
        fn rendezvous_removal_of_any_node_moves_only_its_keys(
            ids in proptest::collection::btree_set("[a-z0-9:/.]{1,16}", 2..10),
            removed in any::<prop::sample::Index>(),
            points in proptest::collection::vec(any::<u64>(), 200),
        ) {
            let ids: Vec<String> = ids.into_iter().collect();
            let gone = ids[removed.index(ids.len())].clone();
            let before = Rendezvous::new(ids.clone()).unwrap();
            let after =
                Rendezvous::new(ids.into_iter().filter(|id| *id != gone).collect()).unwrap();
            for point in points {
                let old = &before.nodes()[before.node_index_for_point(point)];
                let new = &after.nodes()[after.node_index_for_point(point)];
                prop_assert!(old == new || *old == gone, "{old} -> {new}");
            }
        }
    }
}
