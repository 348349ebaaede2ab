//! Moving a sharded key-value tier from one ring to another while it serves (`flk migrate`):
//! plan, copy, verify and cleanup, Vitess Reshard + VDiff style.
//!
//! The steps only need a few commands per node ([`KeyNode`]): SCAN-like listing with a resumable
//! cursor, reading and writing keys with their TTLs, deleting, and a checksum of a chunk computed
//! on the node. Redis implements them ([`crate::redis_nodes`]); an in-memory set implements them
//! for the unit tests ([`memory`]); another sharded store would implement the same five.
//!
//! Which keys move: a key found on node N moves when the target ring's owner of the key is not
//! N. That covers keys the old ring put on N and strays a past restart left there. Values of the
//! hot tier never change once written (a first outcome), so copying a key twice, or after a dual
//! write put it on the target already, writes the same value.
//!
//! - [`plan`]: counts keys and bytes that move, per source and target node;
//! - [`copy`]: copies them in chunks, throttled, checkpointing a cursor per source node;
//! - [`verify`]: chunk checksums on both sides, then the exact differing keys, and the fix;
//! - [`cleanup`]: deletes moved keys from the nodes that no longer own them.

pub mod cleanup;
pub mod copy;
pub mod memory;
pub mod plan;
pub mod verify;

use std::collections::BTreeMap;
use std::future::Future;

use crate::hot_cache::CacheError;
use crate::redis_nodes::{KeyValue, RedisNode, RedisNodes};
use crate::ring::HashRing;

/// Keys listed per SCAN step and handled per chunk. Measured (docs/benchmarks.md, "Shard
/// migration"): the quiet copy rate rose from 34,000 keys/s at 1,000 to 46,000 at 5,000 and no
/// further at 10,000, while gateway latency during the copy did not change.
pub const DEFAULT_CHUNK_KEYS: usize = 5_000;

/// The commands the migration steps send to one node.
pub trait KeyNode: Send + Sync {
    /// One listing step over keys matching `pattern` from `cursor`: the next cursor (0 = done).
    fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> impl Future<Output = Result<(u64, Vec<String>), CacheError>> + Send;
    /// Values and TTLs of `keys`, in order.
    fn read_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<KeyValue>, CacheError>> + Send;
    /// Writes entries with their TTLs; returns how many were written.
    fn write_many(
        &self,
        entries: &[KeyValue],
    ) -> impl Future<Output = Result<usize, CacheError>> + Send;
    /// Deletes keys; returns how many existed.
    fn delete_many(&self, keys: &[String]) -> impl Future<Output = Result<u64, CacheError>> + Send;
    /// A checksum of `keys`' names and values computed on the node.
    fn checksum(&self, keys: &[String]) -> impl Future<Output = Result<String, CacheError>> + Send;
}

/// Nodes by id.
pub trait KeyNodes {
    /// The node type.
    type Node: KeyNode;
    /// The node `id`.
    fn node(&self, id: &str) -> Result<Self::Node, CacheError>;
}

impl KeyNode for RedisNode {
    async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), CacheError> {
        RedisNode::scan(self, cursor, pattern, count).await
    }

    async fn read_many(&self, keys: &[String]) -> Result<Vec<KeyValue>, CacheError> {
        RedisNode::read_many(self, keys).await
    }

    async fn write_many(&self, entries: &[KeyValue]) -> Result<usize, CacheError> {
        RedisNode::write_many(self, entries).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64, CacheError> {
        RedisNode::delete_many(self, keys).await
    }

    async fn checksum(&self, keys: &[String]) -> Result<String, CacheError> {
        RedisNode::checksum(self, keys).await
    }
}

impl KeyNodes for RedisNodes {
    type Node = RedisNode;

    fn node(&self, id: &str) -> Result<RedisNode, CacheError> {
        RedisNodes::node(self, id)
    }
}

/// The two rings of a migration.
#[derive(Debug, Clone)]
pub struct Rings {
    /// Where keys are now.
    pub from: HashRing,
    /// Where they go.
    pub to: HashRing,
}

impl Rings {
    /// Nodes to list keys on: every node of either ring (a node leaving holds keys to move; a
    /// node joining may hold strays), in a stable order.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.from.nodes().to_vec();
        for node in self.to.nodes() {
            if !nodes.contains(node) {
                nodes.push(node.clone());
            }
        }
        nodes
    }

    /// The node `key`, found on `node`, moves to; `None` when `node` owns it on the target ring.
    pub fn target_of<'a>(&'a self, node: &str, key: &str) -> Option<&'a str> {
        let target = self.to.node_for(key.as_bytes());
        (target != node).then_some(target)
    }

    /// Keys of `keys` (found on `node`) that move, grouped by target node.
    pub fn moving<'k>(&self, node: &str, keys: &'k [String]) -> BTreeMap<String, Vec<&'k String>> {
        let mut groups: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for key in keys {
            if let Some(target) = self.target_of(node, key) {
                groups.entry(target.to_owned()).or_default().push(key);
            }
        }
        groups
    }
}

/// The SCAN pattern of a key prefix.
pub fn pattern_of(prefix: &str) -> String {
    format!("{prefix}:*")
}
