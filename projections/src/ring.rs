//! A consistent hash ring over the Redis nodes of the hot cache (pure; no I/O).
//!
//! Each node owns `virtual_nodes * weight` points: the first 8 bytes (big-endian) of SHA-256 of
//! `"<node id>#<i>"`, `i` counting from 0. A key belongs to the first point at or after the key's
//! own point (same hash of the key bytes), wrapping around. Adding a node therefore moves only the
//! keys that now fall on its points (about its share of them), all *to* the new node;
//! `dedup-migrate` uses two rings (before/after) to find exactly those keys.
//!
//! Weights extend the same numbering instead of replacing it: a node of weight 2 keeps the points
//! it had at weight 1 and adds `virtual_nodes` more. So weight 1 gives exactly the ring of
//! [`HashRing::new`], and raising one node's weight moves keys only *to* that node.
//!
//! A ring version is stored as a [`RingSpec`] (JSON in Postgres); [`RingSpec::build`] turns it
//! back into the same ring on every process.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Default points per node (per unit of weight).
pub const DEFAULT_VIRTUAL_NODES: u32 = 64;

/// Most points one ring may have. Building costs one SHA-256 per point and the ring holds 16
/// bytes per point, so this bounds a bad spec to about a second of work and 16 MB.
pub const MAX_RING_POINTS: u64 = 1_000_000;

/// The [`RingSpec::hash`] name of this module's placement: SHA-256 points, virtual nodes,
/// successor lookup. The only one [`RingSpec::build`] accepts today.
pub const SHA256_RING: &str = "sha256-ring";

/// Why a ring cannot be built. All of them are bad input: fix the node list or the spec.
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
    /// A node of weight 0 (it would own no point; removing it is the way to say that).
    #[error("node {0:?} has weight 0; weights start at 1 (remove the node to give it no keys)")]
    ZeroWeight(String),
    /// More points than [`MAX_RING_POINTS`].
    #[error(
        "the ring would have {points} points ({nodes} nodes, total weight {total_weight}, \
         {virtual_nodes} virtual nodes per unit of weight); at most {max} are allowed"
    )]
    TooManyPoints {
        /// `virtual_nodes * total_weight`.
        points: u64,
        /// Number of nodes.
        nodes: usize,
        /// Sum of the weights.
        total_weight: u64,
        /// Points per unit of weight.
        virtual_nodes: u32,
        /// The cap, [`MAX_RING_POINTS`].
        max: u64,
    },
    /// A [`RingSpec::hash`] this code does not implement.
    #[error("unknown ring hash {found:?}; supported: {supported:?}")]
    UnknownHash {
        /// The name in the spec.
        found: String,
        /// The name this code implements, [`SHA256_RING`].
        supported: &'static str,
    },
}

/// Position of bytes on the ring.
pub fn ring_point(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// One node of a ring and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedNode {
    /// Stable node id (the Redis URL without credentials); its points hash this text.
    pub id: String,
    /// Relative share of keys: the node owns `virtual_nodes * weight` points. At least 1.
    pub weight: u32,
}

impl WeightedNode {
    /// A node of weight 1.
    pub fn unweighted(id: impl Into<String>) -> Self {
        WeightedNode {
            id: id.into(),
            weight: 1,
        }
    }
}

/// A ring version as stored (JSON in Postgres): enough to rebuild the identical ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSpec {
    /// Placement algorithm, [`SHA256_RING`] today. Stored so that code with a different
    /// placement refuses an old version instead of silently reading it as its own.
    pub hash: String,
    /// Points per unit of weight.
    pub virtual_nodes: u32,
    /// Nodes in ring order, each with its weight.
    pub nodes: Vec<WeightedNode>,
}

impl RingSpec {
    /// A [`SHA256_RING`] spec of `nodes`.
    pub fn new(nodes: Vec<WeightedNode>, virtual_nodes: u32) -> Self {
        RingSpec {
            hash: SHA256_RING.to_owned(),
            virtual_nodes,
            nodes,
        }
    }

    /// Checks everything [`RingSpec::build`] checks, without hashing anything.
    pub fn validate(&self) -> Result<(), RingError> {
        if self.hash != SHA256_RING {
            return Err(RingError::UnknownHash {
                found: self.hash.clone(),
                supported: SHA256_RING,
            });
        }
        checked_point_count(&self.nodes, self.virtual_nodes).map(|_| ())
    }

    /// The ring this spec describes.
    pub fn build(&self) -> Result<HashRing, RingError> {
        self.validate()?;
        HashRing::weighted(self.nodes.clone(), self.virtual_nodes)
    }
}

/// The number of points a ring of `nodes` would have, or why it cannot be built.
fn checked_point_count(nodes: &[WeightedNode], virtual_nodes: u32) -> Result<u64, RingError> {
    if nodes.is_empty() {
        return Err(RingError::NoNodes);
    }
    if virtual_nodes == 0 {
        return Err(RingError::NoVirtualNodes);
    }
    let mut seen = HashSet::with_capacity(nodes.len());
    let mut total_weight: u64 = 0;
    for node in nodes {
        if node.weight == 0 {
            return Err(RingError::ZeroWeight(node.id.clone()));
        }
        if !seen.insert(node.id.as_str()) {
            return Err(RingError::DuplicateNode(node.id.clone()));
        }
        total_weight = total_weight.saturating_add(u64::from(node.weight));
    }
    let points = total_weight.saturating_mul(u64::from(virtual_nodes));
    if points > MAX_RING_POINTS {
        return Err(RingError::TooManyPoints {
            points,
            nodes: nodes.len(),
            total_weight,
            virtual_nodes,
            max: MAX_RING_POINTS,
        });
    }
    Ok(points)
}

/// A consistent hash ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    /// Node ids, in the order given.
    nodes: Vec<String>,
    /// Weight of each node, parallel to `nodes`.
    weights: Vec<u32>,
    /// Points per unit of weight.
    virtual_nodes: u32,
    /// (point, index into `nodes`), sorted.
    points: Vec<(u64, usize)>,
}

impl HashRing {
    /// Builds a ring of `nodes` (stable ids, e.g. `host:port`) with `virtual_nodes` points each
    /// (every node of weight 1).
    pub fn new(nodes: Vec<String>, virtual_nodes: u32) -> Result<Self, RingError> {
        let nodes = nodes.into_iter().map(WeightedNode::unweighted).collect();
        Self::weighted(nodes, virtual_nodes)
    }

    /// Builds a ring where each node owns `virtual_nodes * weight` points.
    pub fn weighted(nodes: Vec<WeightedNode>, virtual_nodes: u32) -> Result<Self, RingError> {
        let point_count = checked_point_count(&nodes, virtual_nodes)?;
        let mut points = Vec::with_capacity(usize::try_from(point_count).unwrap_or_default());
        for (index, node) in nodes.iter().enumerate() {
            // Numbering continues past `virtual_nodes` rather than restarting per weight unit,
            // so a node's first points stay put when its weight changes.
            let replicas = u64::from(virtual_nodes) * u64::from(node.weight);
            for replica in 0..replicas {
                let label = format!("{}#{replica}", node.id);
                points.push((ring_point(label.as_bytes()), index));
            }
        }
        // Ties (vanishingly rare) break by node id so every process builds the same ring.
        points.sort_by(|left, right| {
            left.0
                .cmp(&right.0)
                .then_with(|| nodes[left.1].id.cmp(&nodes[right.1].id))
        });
        let (nodes, weights) = nodes.into_iter().map(|node| (node.id, node.weight)).unzip();
        Ok(HashRing {
            nodes,
            weights,
            virtual_nodes,
            points,
        })
    }

    /// Node ids, in the order given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Weight of each node, parallel to [`HashRing::nodes`].
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The spec that rebuilds this ring (to store it as a ring version).
    pub fn spec(&self) -> RingSpec {
        let nodes = self
            .nodes
            .iter()
            .zip(&self.weights)
            .map(|(id, weight)| WeightedNode {
                id: id.clone(),
                weight: *weight,
            })
            .collect();
        RingSpec::new(nodes, self.virtual_nodes)
    }

    /// Index (into [`HashRing::nodes`]) of the node that owns `key`.
    pub fn node_index(&self, key: &[u8]) -> usize {
        self.node_index_for_point(ring_point(key))
    }

    /// Index of the node that owns a key whose [`ring_point`] is `point` (for callers that
    /// hash a key once and place it on several rings).
    pub fn node_index_for_point(&self, point: u64) -> usize {
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
    use proptest::prelude::*;

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

    /// Share of `keys` each node of `ring` owns.
    fn shares(ring: &HashRing, keys: &[String]) -> Vec<f64> {
        let mut counts = vec![0usize; ring.nodes().len()];
        for key in keys {
            counts[ring.node_index(key.as_bytes())] += 1;
        }
        counts
            .into_iter()
            .map(|count| count as f64 / keys.len() as f64)
            .collect()
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
    fn placement_matches_an_independent_implementation() {
        // Computed with Python's hashlib from the module doc's definition, before weights
        // existed: weights must not move a single key of an unweighted ring.
        let ring = ring(3);
        let expected = [16380, 16379, 16379, 16381, 16379, 16380, 16379, 16381];
        for (i, port) in expected.iter().enumerate() {
            let key = format!("flk:acme:{i:064x}");
            assert_eq!(ring.node_for(key.as_bytes()), format!("127.0.0.1:{port}"));
        }
    }

    #[test]
    fn weight_one_is_bit_identical_to_the_unweighted_ring() {
        let ids: Vec<String> = (0..4).map(|i| format!("redis://10.0.0.{i}:6379")).collect();
        let plain = HashRing::new(ids.clone(), 64).unwrap();
        let weighted = HashRing::weighted(
            ids.iter().cloned().map(WeightedNode::unweighted).collect(),
            64,
        )
        .unwrap();
        assert_eq!(plain, weighted);
        // The points themselves, rebuilt the way the ring was built before weights.
        let mut legacy: Vec<(u64, usize)> = Vec::new();
        for (index, node) in ids.iter().enumerate() {
            for replica in 0..64u32 {
                legacy.push((ring_point(format!("{node}#{replica}").as_bytes()), index));
            }
        }
        legacy.sort_by(|l, r| l.0.cmp(&r.0).then_with(|| ids[l.1].cmp(&ids[r.1])));
        assert_eq!(plain.points, legacy);
    }

    #[test]
    fn weight_two_roughly_doubles_a_share() {
        let nodes = vec![
            WeightedNode::unweighted("127.0.0.1:16379"),
            WeightedNode::unweighted("127.0.0.1:16380"),
            WeightedNode {
                id: "127.0.0.1:16381".into(),
                weight: 2,
            },
        ];
        let ring = HashRing::weighted(nodes, DEFAULT_VIRTUAL_NODES).unwrap();
        assert_eq!(ring.points.len(), 4 * DEFAULT_VIRTUAL_NODES as usize);
        let shares = shares(&ring, &keys());
        let light = (shares[0] + shares[1]) / 2.0;
        let ratio = shares[2] / light;
        assert!((1.6..2.4).contains(&ratio), "shares {shares:?}");
        assert!((0.42..0.58).contains(&shares[2]), "shares {shares:?}");
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

    #[test]
    fn bad_specs_give_specific_errors() {
        let good = RingSpec::new(
            vec![
                WeightedNode::unweighted("a"),
                WeightedNode {
                    id: "b".into(),
                    weight: 3,
                },
            ],
            64,
        );
        assert_eq!(good.validate(), Ok(()));

        let mut unknown_hash = good.clone();
        unknown_hash.hash = "md5-ring".into();
        let error = unknown_hash.build().unwrap_err();
        assert_eq!(
            error,
            RingError::UnknownHash {
                found: "md5-ring".into(),
                supported: SHA256_RING
            }
        );
        assert!(error.to_string().contains("\"md5-ring\""), "{error}");

        let mut zero = good.clone();
        zero.nodes[1].weight = 0;
        let error = zero.validate().unwrap_err();
        assert_eq!(error, RingError::ZeroWeight("b".into()));
        assert!(error.to_string().contains("weight 0"), "{error}");

        let mut no_vnodes = good.clone();
        no_vnodes.virtual_nodes = 0;
        assert_eq!(no_vnodes.validate(), Err(RingError::NoVirtualNodes));

        let mut empty = good.clone();
        empty.nodes.clear();
        assert_eq!(empty.build(), Err(RingError::NoNodes));

        let mut duplicate = good.clone();
        duplicate.nodes[1].id = "a".into();
        assert_eq!(
            duplicate.validate(),
            Err(RingError::DuplicateNode("a".into()))
        );

        let mut huge = good.clone();
        huge.nodes[1].weight = u32::MAX;
        let error = huge.build().unwrap_err();
        let total_weight = u64::from(u32::MAX) + 1;
        assert_eq!(
            error,
            RingError::TooManyPoints {
                points: total_weight * 64,
                nodes: 2,
                total_weight,
                virtual_nodes: 64,
                max: MAX_RING_POINTS,
            }
        );
        let message = error.to_string();
        assert!(message.contains("274877906944 points"), "{message}");
        assert!(message.contains("at most 1000000"), "{message}");

        // Exactly at the cap is fine (checked without building it).
        let at_cap = RingSpec::new(vec![WeightedNode::unweighted("a")], 1_000_000);
        assert_eq!(at_cap.validate(), Ok(()));
        let over = RingSpec::new(vec![WeightedNode::unweighted("a")], 1_000_001);
        assert!(matches!(
            over.validate(),
            Err(RingError::TooManyPoints {
                points: 1_000_001,
                ..
            })
        ));
    }

    #[test]
    fn spec_json_is_strict() {
        let text = r#"{"hash":"sha256-ring","virtual_nodes":64,
            "nodes":[{"id":"redis://127.0.0.1:16379","weight":1}]}"#;
        let spec: RingSpec = serde_json::from_str(text).unwrap();
        assert_eq!(spec.build().unwrap(), ring_of(&["redis://127.0.0.1:16379"]));

        let extra_field = text.replace("\"virtual_nodes\"", "\"vnodes\":1,\"virtual_nodes\"");
        let error = serde_json::from_str::<RingSpec>(&extra_field).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `vnodes`"),
            "{error}"
        );

        let extra_node_field = text.replace("\"weight\":1", "\"weight\":1,\"zone\":\"a\"");
        let error = serde_json::from_str::<RingSpec>(&extra_node_field).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `zone`"),
            "{error}"
        );

        let no_weight = text.replace(",\"weight\":1", "");
        let error = serde_json::from_str::<RingSpec>(&no_weight).unwrap_err();
        assert!(
            error.to_string().contains("missing field `weight`"),
            "{error}"
        );

        let negative = text.replace("\"weight\":1", "\"weight\":-1");
        assert!(serde_json::from_str::<RingSpec>(&negative).is_err());
    }

    #[test]
    fn a_ring_gives_back_its_spec() {
        let spec = RingSpec::new(
            vec![
                WeightedNode::unweighted("x"),
                WeightedNode {
                    id: "y".into(),
                    weight: 2,
                },
            ],
            16,
        );
        let ring = spec.build().unwrap();
        assert_eq!(ring.spec(), spec);
        assert_eq!(ring.weights(), &[1, 2]);
        assert_eq!(ring.points.len(), 48);
    }

    fn ring_of(ids: &[&str]) -> HashRing {
        HashRing::new(ids.iter().map(|id| id.to_string()).collect(), 64).unwrap()
    }

    /// Distinct node ids with weights 1..=3; the last one is held back as "the new node".
    fn nodes_and_newcomer() -> impl Strategy<Value = (Vec<WeightedNode>, WeightedNode)> {
        (
            proptest::collection::btree_set("[a-z0-9.:/]{1,20}", 3..8),
            proptest::collection::vec(1u32..=3, 7),
        )
            .prop_map(|(ids, weights)| {
                let mut nodes: Vec<WeightedNode> = ids
                    .into_iter()
                    .zip(weights)
                    .map(|(id, weight)| WeightedNode { id, weight })
                    .collect();
                let newcomer = nodes.pop().unwrap_or_else(|| WeightedNode::unweighted("z"));
                (nodes, newcomer)
            })
    }

    fn sample_keys(seed: u64) -> Vec<String> {
        (0..500u64)
            .map(|i| format!("flk:t{}:{:064x}", i % 7, seed ^ i))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn adding_a_node_moves_keys_only_to_it(
            (nodes, newcomer) in nodes_and_newcomer(),
            seed in any::<u64>(),
        ) {
            let before = HashRing::weighted(nodes.clone(), 16).unwrap();
            let mut grown = nodes;
            grown.push(newcomer.clone());
            let after = HashRing::weighted(grown, 16).unwrap();
            for key in sample_keys(seed) {
                let old = before.node_for(key.as_bytes());
                let new = after.node_for(key.as_bytes());
                prop_assert!(old == new || new == newcomer.id, "{key}: {old} -> {new}");
            }
        }

        #[test]
        fn removing_any_weighted_node_moves_only_its_keys(
            (nodes, _) in nodes_and_newcomer(),
            removed in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let before = HashRing::weighted(nodes.clone(), 16).unwrap();
            let gone = nodes[removed.index(nodes.len())].id.clone();
            let rest: Vec<WeightedNode> =
                nodes.into_iter().filter(|node| node.id != gone).collect();
            let after = HashRing::weighted(rest, 16).unwrap();
            for key in sample_keys(seed) {
                let old = before.node_for(key.as_bytes());
                if old != gone {
                    prop_assert_eq!(after.node_for(key.as_bytes()), old);
                }
            }
        }

        #[test]
        fn raising_a_weight_moves_keys_only_to_that_node(
            (nodes, _) in nodes_and_newcomer(),
            which in any::<prop::sample::Index>(),
            extra in 1u32..=3,
            seed in any::<u64>(),
        ) {
            let before = HashRing::weighted(nodes.clone(), 16).unwrap();
            let mut heavier = nodes;
            let index = which.index(heavier.len());
            heavier[index].weight += extra;
            let grown_id = heavier[index].id.clone();
            let after = HashRing::weighted(heavier, 16).unwrap();
            for key in sample_keys(seed) {
                let old = before.node_for(key.as_bytes());
                let new = after.node_for(key.as_bytes());
                prop_assert!(old == new || new == grown_id, "{key}: {old} -> {new}");
            }
        }

        #[test]
        fn each_node_owns_virtual_nodes_times_weight_points(
            (nodes, _) in nodes_and_newcomer(),
            virtual_nodes in 1u32..40,
        ) {
            let ring = HashRing::weighted(nodes.clone(), virtual_nodes).unwrap();
            for (index, node) in nodes.iter().enumerate() {
                let owned = ring.points.iter().filter(|(_, owner)| *owner == index).count();
                prop_assert_eq!(owned, (virtual_nodes * node.weight) as usize);
            }
            prop_assert!(ring.points.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        }

        #[test]
        fn a_spec_round_trips_through_json(
            (nodes, _) in nodes_and_newcomer(),
            virtual_nodes in any::<u32>(),
            hash in prop_oneof![Just(SHA256_RING.to_owned()), "\\PC{0,12}"],
        ) {
            let spec = RingSpec { hash, virtual_nodes, nodes };
            let text = serde_json::to_string(&spec).unwrap();
            let back: RingSpec = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &spec);
            prop_assert_eq!(back.validate(), spec.validate());
        }
    }
}
