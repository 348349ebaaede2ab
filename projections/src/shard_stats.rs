//! Cross-shard views of the hot tier for operators: how this deployment's keys spread over the
//! Redis nodes, whether each node answers, a few key names per node, and where one key is. The
//! gateway's `/api/shards/*` routes and `flk shards` both print what these functions return, so
//! the two always agree.
//!
//! Every view covers each node of the current [`Placement`] (both rings while a migration
//! dual-writes) and only keys under this deployment's prefix. Nodes are asked concurrently, and a
//! node that fails is reported as a [`NodeAnswer::Failed`] beside the others: one dead node never
//! hides what the rest say.
//!
//! Listing uses SCAN in chunks of [`SCAN_CHUNK_KEYS`] (never KEYS, which blocks a node for as
//! long as it takes) and sizes come from STRLEN pipelined per chunk, so memory stays bounded by
//! one chunk whatever a node holds. Counts are exact on a quiet node; SCAN may return a key twice
//! while Redis shrinks its table, and keys expire while they are counted, so a busy node's count
//! can be off by a few. Values are never read.

use futures::future::join_all;
use serde::Serialize;
use thiserror::Error;

use crate::hot_cache::{CacheError, HotCache};
use crate::placement::Placement;
use crate::redis_nodes::RedisNode;
use crate::reshard::pattern_of;
use crate::reshard::plan::Volume;

/// Keys asked for per SCAN step, and STRLENs per pipeline.
pub const SCAN_CHUNK_KEYS: usize = 1_000;

/// Key names per node a sample returns unless asked otherwise.
pub const DEFAULT_SAMPLE_PER_NODE: u64 = 5;

/// Most key names per node a sample returns.
pub const MAX_SAMPLE_PER_NODE: u64 = 100;

/// A request the views cannot answer as asked (the caller's input is wrong).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardQueryError {
    /// The sample size is outside `1..=MAX_SAMPLE_PER_NODE`.
    #[error("per_node must be between 1 and {MAX_SAMPLE_PER_NODE}, got {0}")]
    PerNodeOutOfRange(u64),
    /// A required part of a key is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// The sample size `per_node` as a count, when it is within `1..=MAX_SAMPLE_PER_NODE`.
pub fn check_per_node(per_node: u64) -> Result<usize, ShardQueryError> {
    if (1..=MAX_SAMPLE_PER_NODE).contains(&per_node) {
        usize::try_from(per_node).map_err(|_| ShardQueryError::PerNodeOutOfRange(per_node))
    } else {
        Err(ShardQueryError::PerNodeOutOfRange(per_node))
    }
}

/// The rings in use, as every view reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingInfo {
    /// Bumped at every ring change (0: the configuration's ring, nothing recorded).
    pub state_version: i64,
    /// Ring version reads go through.
    pub read_version: i64,
    /// Ring versions writes go through, read version first.
    pub write_versions: Vec<i64>,
    /// True while writes reach two rings (a migration between dual-write and cleanup).
    pub dual_writing: bool,
    /// The migration that set this placement.
    #[serde(rename = "migration_id")]
    pub migration_id_opt: Option<String>,
}

impl RingInfo {
    /// The rings of `placement`.
    pub fn of(placement: &Placement) -> Self {
        RingInfo {
            state_version: placement.state_version,
            read_version: placement.read_version,
            write_versions: placement
                .writes
                .iter()
                .map(|(version, _)| *version)
                .collect(),
            dual_writing: placement.dual_writing(),
            migration_id_opt: placement.migration_id_opt.clone(),
        }
    }
}

/// What one node answered, or why it did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NodeAnswer<T> {
    /// The node answered.
    Answered(T),
    /// The node could not be asked or failed (`{"error": "..."}` in JSON).
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl<T> NodeAnswer<T> {
    /// The answer, when the node gave one.
    pub fn answered(&self) -> Option<&T> {
        match self {
            NodeAnswer::Answered(value) => Some(value),
            NodeAnswer::Failed { .. } => None,
        }
    }

    /// The error, when the node failed.
    pub fn error_opt(&self) -> Option<&str> {
        match self {
            NodeAnswer::Answered(_) => None,
            NodeAnswer::Failed { error } => Some(error),
        }
    }
}

impl<T> From<Result<T, CacheError>> for NodeAnswer<T> {
    fn from(result: Result<T, CacheError>) -> Self {
        match result {
            Ok(value) => NodeAnswer::Answered(value),
            Err(error) => NodeAnswer::Failed {
                error: error.to_string(),
            },
        }
    }
}

/// One node's line of a view: the node, its role, and its answer (flattened in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport<T> {
    /// Node id (its URL without credentials).
    pub node: String,
    /// True when the read ring names the node (false for a node only a migration writes to).
    pub in_read_ring: bool,
    /// What it answered.
    #[serde(flatten)]
    pub answer: NodeAnswer<T>,
}

/// Keys and bytes of this deployment's prefix per node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// The key prefix counted.
    pub prefix: String,
    /// The rings in use.
    pub ring: RingInfo,
    /// Per node of the placement, in node id order.
    pub nodes: Vec<NodeReport<Volume>>,
    /// Sum over the nodes that answered (a key dual-written to two nodes counts twice).
    pub total: Volume,
    /// Max over mean keys of the nodes that answered; `None` without keys.
    #[serde(rename = "balance")]
    pub balance_opt: Option<f64>,
}

/// The summary of a [`Distribution`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// The key prefix counted.
    pub prefix: String,
    /// The rings in use.
    pub ring: RingInfo,
    /// Nodes of the placement.
    pub node_count: usize,
    /// Nodes that answered.
    pub nodes_answered: usize,
    /// Sum over the nodes that answered.
    pub total: Volume,
    /// Max over mean keys of the nodes that answered; `None` without keys.
    #[serde(rename = "balance")]
    pub balance_opt: Option<f64>,
    /// The nodes that failed, with why.
    pub errors: Vec<NodeError>,
}

/// A node that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeError {
    /// Node id.
    pub node: String,
    /// What went wrong.
    pub error: String,
}

/// A PING's round trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ping {
    /// Milliseconds, with microsecond precision.
    pub latency_ms: f64,
}

/// Whether each node answers, and the rings in use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// The rings in use.
    pub ring: RingInfo,
    /// Per node of the placement, in node id order.
    pub nodes: Vec<NodeReport<Ping>>,
    /// Nodes that answered the PING.
    pub nodes_up: usize,
}

/// Some key names found on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampledKeys {
    /// Up to the asked number of key names, in SCAN order.
    pub keys: Vec<String>,
}

/// Some key names per node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The key prefix sampled.
    pub prefix: String,
    /// Key names asked for per node.
    pub per_node: usize,
    /// Per node of the placement, in node id order.
    pub nodes: Vec<NodeReport<SampledKeys>>,
}

/// Whether a node holds a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    /// EXISTS answered 1.
    pub exists: bool,
}

/// Where one key should be and where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyLocation {
    /// Tenant.
    pub tenant: String,
    /// The `pcs_id`.
    pub pcs_id: String,
    /// The Redis key.
    pub key: String,
    /// The rings in use.
    pub ring: RingInfo,
    /// The node reads of the key go to.
    pub read_owner: String,
    /// The nodes writes of the key go to, read owner first.
    pub write_owners: Vec<String>,
    /// The nodes that hold the key now.
    pub held_by: Vec<String>,
    /// EXISTS per node of the placement, in node id order.
    pub nodes: Vec<NodeReport<Presence>>,
}

/// Max over mean of `keys`; `None` for no nodes or no keys (nothing to balance).
pub fn balance(keys: &[u64]) -> Option<f64> {
    let total: u64 = keys.iter().sum();
    let max = keys.iter().copied().max()?;
    if total == 0 {
        return None;
    }
    let mean = total as f64 / keys.len() as f64;
    Some(max as f64 / mean)
}

impl Distribution {
    /// A distribution from per-node counts: the total and balance over the nodes that answered.
    pub fn from_nodes(prefix: String, ring: RingInfo, nodes: Vec<NodeReport<Volume>>) -> Self {
        let answered: Vec<&Volume> = nodes
            .iter()
            .filter_map(|report| report.answer.answered())
            .collect();
        let total = Volume {
            keys: answered.iter().map(|volume| volume.keys).sum(),
            bytes: answered.iter().map(|volume| volume.bytes).sum(),
        };
        let keys: Vec<u64> = answered.iter().map(|volume| volume.keys).collect();
        Distribution {
            prefix,
            ring,
            total,
            balance_opt: balance(&keys),
            nodes,
        }
    }
}

impl Stats {
    /// The summary of `distribution`.
    pub fn of(distribution: &Distribution) -> Self {
        let errors: Vec<NodeError> = distribution
            .nodes
            .iter()
            .filter_map(|report| {
                report.answer.error_opt().map(|error| NodeError {
                    node: report.node.clone(),
                    error: error.to_owned(),
                })
            })
            .collect();
        Stats {
            prefix: distribution.prefix.clone(),
            ring: distribution.ring.clone(),
            node_count: distribution.nodes.len(),
            nodes_answered: distribution.nodes.len() - errors.len(),
            total: distribution.total,
            balance_opt: distribution.balance_opt,
            errors,
        }
    }
}

/// The rings in use and the nodes to ask, in node id order, with whether the read ring names
/// each. Views take this and drop the placement before any node is asked: a count over a
/// large node takes seconds, and a ring follower waits for operations still holding the previous
/// placement before it reports a new one.
fn snapshot(placement: &Placement) -> (RingInfo, Vec<(String, bool)>) {
    let targets = placement
        .node_ids()
        .into_iter()
        .map(|id| {
            let in_read_ring = placement.read.nodes().iter().any(|node| node == id);
            (id.to_owned(), in_read_ring)
        })
        .collect();
    (RingInfo::of(placement), targets)
}

/// Asks every node of `targets` with `ask`, concurrently; answers in the same order.
async fn per_node<T, F, Fut>(
    cache: &HotCache,
    targets: Vec<(String, bool)>,
    ask: F,
) -> Vec<NodeReport<T>>
where
    F: Fn(RedisNode) -> Fut,
    Fut: Future<Output = Result<T, CacheError>>,
{
    let asks = targets.into_iter().map(|(id, in_read_ring)| {
        let asked = cache.nodes().node(&id).map(&ask);
        async move {
            let answer = match asked {
                Ok(asked) => asked.await,
                Err(error) => Err(error),
            };
            NodeReport {
                node: id,
                in_read_ring,
                answer: answer.into(),
            }
        }
    });
    join_all(asks).await
}

/// Keys and bytes under `pattern` on `node`, one SCAN chunk at a time.
async fn count_node(node: RedisNode, pattern: String) -> Result<Volume, CacheError> {
    let mut volume = Volume::default();
    let mut cursor = 0;
    loop {
        let (next, keys) = node.scan(cursor, &pattern, SCAN_CHUNK_KEYS).await?;
        if !keys.is_empty() {
            let mut pipeline = redis::pipe();
            // A key of another type must not fail the whole chunk.
            pipeline.ignore_errors();
            for key in &keys {
                pipeline.cmd("STRLEN").arg(key);
            }
            let lengths: Vec<redis::RedisResult<u64>> = node.query_pipeline(&pipeline).await?;
            for length in lengths {
                match length {
                    // Gone since it was listed: this tier never writes an empty value.
                    Ok(0) => {}
                    Ok(bytes) => {
                        volume.keys += 1;
                        volume.bytes += bytes;
                    }
                    // Not a string (WRONGTYPE): a key, without string bytes.
                    Err(_) => volume.keys += 1,
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(volume);
        }
    }
}

/// Up to `limit` key names under `pattern` on `node`.
async fn sample_node(
    node: RedisNode,
    pattern: String,
    limit: usize,
) -> Result<SampledKeys, CacheError> {
    let mut keys: Vec<String> = Vec::with_capacity(limit);
    let mut cursor = 0;
    loop {
        let (next, found) = node.scan(cursor, &pattern, SCAN_CHUNK_KEYS).await?;
        for key in found {
            // SCAN may repeat a key; a sample lists each once.
            if keys.len() < limit && !keys.contains(&key) {
                keys.push(key);
            }
        }
        cursor = next;
        if cursor == 0 || keys.len() >= limit {
            return Ok(SampledKeys { keys });
        }
    }
}

/// Keys and bytes of this deployment's prefix on every node of the placement.
pub async fn distribution(cache: &HotCache) -> Distribution {
    let (ring, targets) = snapshot(&cache.placement());
    let pattern = pattern_of(cache.prefix());
    let nodes = per_node(cache, targets, |node| count_node(node, pattern.clone())).await;
    Distribution::from_nodes(cache.prefix().to_owned(), ring, nodes)
}

/// The summary of [`distribution`].
pub async fn stats(cache: &HotCache) -> Stats {
    Stats::of(&distribution(cache).await)
}

/// PING latency of every node of the placement (on an open connection), and the rings in use.
pub async fn health(cache: &HotCache) -> Health {
    let (ring, targets) = snapshot(&cache.placement());
    let nodes = per_node(cache, targets, |node| async move {
        // The first PING of a process also connects; the latency is the round trip after it.
        node.ping().await?;
        let elapsed = node.ping().await?;
        Ok(Ping {
            latency_ms: (elapsed.as_secs_f64() * 1_000_000.0).round() / 1_000.0,
        })
    })
    .await;
    let nodes_up = nodes
        .iter()
        .filter(|report| report.answer.answered().is_some())
        .count();
    Health {
        ring,
        nodes,
        nodes_up,
    }
}

/// Up to `per_node` key names of this deployment's prefix from every node of the placement
/// (names only, never values). `per_node` is checked with [`check_per_node`].
pub async fn sample(cache: &HotCache, per_node_keys: u64) -> Result<Sample, ShardQueryError> {
    let limit = check_per_node(per_node_keys)?;
    let (_, targets) = snapshot(&cache.placement());
    let pattern = pattern_of(cache.prefix());
    let nodes = per_node(cache, targets, |node| {
        sample_node(node, pattern.clone(), limit)
    })
    .await;
    Ok(Sample {
        prefix: cache.prefix().to_owned(),
        per_node: limit,
        nodes,
    })
}

/// Which node the read ring names for (tenant, `pcs_id`), which nodes the write rings name, and
/// which nodes of the placement hold its key (EXISTS on each).
pub async fn find(
    cache: &HotCache,
    tenant: &str,
    pcs_id: &str,
) -> Result<KeyLocation, ShardQueryError> {
    if tenant.is_empty() {
        return Err(ShardQueryError::Empty("tenant"));
    }
    if pcs_id.is_empty() {
        return Err(ShardQueryError::Empty("pcs_id"));
    }
    let key = cache.key(tenant, pcs_id);
    let (ring, targets, read_owner, write_owners) = {
        let placement = cache.placement();
        let (ring, targets) = snapshot(&placement);
        let write_owners: Vec<String> = placement
            .write_owners(key.as_bytes())
            .into_iter()
            .map(str::to_owned)
            .collect();
        (
            ring,
            targets,
            placement.read_owner(key.as_bytes()).to_owned(),
            write_owners,
        )
    };
    let nodes = per_node(cache, targets, |node| {
        let key = key.clone();
        async move {
            let exists: u64 = node.query(redis::cmd("EXISTS").arg(&key)).await?;
            Ok(Presence { exists: exists > 0 })
        }
    })
    .await;
    let held_by = nodes
        .iter()
        .filter(|report| report.answer.answered().is_some_and(|found| found.exists))
        .map(|report| report.node.clone())
        .collect();
    Ok(KeyLocation {
        tenant: tenant.to_owned(),
        pcs_id: pcs_id.to_owned(),
        read_owner,
        write_owners,
        ring,
        key,
        held_by,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::HashRing;
    use serde_json::json;

    fn report(node: &str, answer: NodeAnswer<Volume>) -> NodeReport<Volume> {
        NodeReport {
            node: node.to_owned(),
            in_read_ring: true,
            answer,
        }
    }

    fn volume(keys: u64, bytes: u64) -> NodeAnswer<Volume> {
        NodeAnswer::Answered(Volume { keys, bytes })
    }

    fn ring_info() -> RingInfo {
        RingInfo {
            state_version: 0,
            read_version: 0,
            write_versions: vec![0],
            dual_writing: false,
            migration_id_opt: None,
        }
    }

    #[test]
    fn balance_is_max_over_mean() {
        assert_eq!(balance(&[10, 10, 10]), Some(1.0));
        assert_eq!(balance(&[30, 10, 20]), Some(1.5));
        assert_eq!(balance(&[7]), Some(1.0));
        // Everything on one of four nodes: four times the mean.
        assert_eq!(balance(&[0, 0, 12, 0]), Some(4.0));
    }

    #[test]
    fn balance_is_undefined_without_keys() {
        assert_eq!(balance(&[]), None);
        assert_eq!(balance(&[0, 0, 0]), None);
    }

    #[test]
    fn totals_and_balance_cover_only_the_nodes_that_answered() {
        let distribution = Distribution::from_nodes(
            "p".into(),
            ring_info(),
            vec![
                report("a", volume(30, 300)),
                report(
                    "b",
                    NodeAnswer::Failed {
                        error: "down".into(),
                    },
                ),
                report("c", volume(10, 100)),
            ],
        );
        assert_eq!(
            distribution.total,
            Volume {
                keys: 40,
                bytes: 400
            }
        );
        assert_eq!(distribution.balance_opt, Some(1.5));
        let stats = Stats::of(&distribution);
        assert_eq!(stats.node_count, 3);
        assert_eq!(stats.nodes_answered, 2);
        assert_eq!(
            stats.errors,
            [NodeError {
                node: "b".into(),
                error: "down".into()
            }]
        );
    }

    #[test]
    fn node_reports_flatten_their_answer_or_error() {
        let answered = serde_json::to_value(report("a", volume(2, 20))).unwrap();
        assert_eq!(
            answered,
            json!({"node": "a", "in_read_ring": true, "keys": 2, "bytes": 20})
        );
        let failed = serde_json::to_value(report(
            "b",
            NodeAnswer::Failed {
                error: "no answer".into(),
            },
        ))
        .unwrap();
        assert_eq!(
            failed,
            json!({"node": "b", "in_read_ring": true, "error": "no answer"})
        );
        let empty = Distribution::from_nodes("p".into(), ring_info(), vec![]);
        let text = serde_json::to_value(&empty).unwrap();
        assert_eq!(text["balance"], json!(null));
        assert_eq!(text["ring"]["migration_id"], json!(null));
    }

    #[test]
    fn sample_sizes_are_bounded() {
        assert_eq!(check_per_node(1), Ok(1));
        assert_eq!(check_per_node(MAX_SAMPLE_PER_NODE), Ok(100));
        assert_eq!(
            check_per_node(0),
            Err(ShardQueryError::PerNodeOutOfRange(0))
        );
        assert_eq!(
            check_per_node(101),
            Err(ShardQueryError::PerNodeOutOfRange(101))
        );
        assert_eq!(
            ShardQueryError::PerNodeOutOfRange(101).to_string(),
            "per_node must be between 1 and 100, got 101"
        );
    }

    #[test]
    fn ring_info_names_a_dual_writing_migration() {
        let ring = |nodes: &[&str]| {
            HashRing::new(nodes.iter().map(|node| (*node).to_owned()).collect(), 8).unwrap()
        };
        let placement = Placement {
            state_version: 4,
            read_version: 1,
            read: ring(&["a", "b"]),
            writes: vec![(1, ring(&["a", "b"])), (2, ring(&["a", "b", "c"]))],
            migration_id_opt: Some("m-1".into()),
        };
        assert_eq!(
            RingInfo::of(&placement),
            RingInfo {
                state_version: 4,
                read_version: 1,
                write_versions: vec![1, 2],
                dual_writing: true,
                migration_id_opt: Some("m-1".into()),
            }
        );
    }
}
