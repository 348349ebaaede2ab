//! An in-memory set of nodes for unit tests of the migration steps (the service tests use Redis).
//! Listing walks keys in order; a cursor names the last key of the page it ended (like Redis
//! SCAN, it survives keys added or deleted meanwhile), so a test can stop a copy midway and
//! resume it. Patterns are a prefix followed by `*`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::hot_cache::CacheError;
use crate::redis_nodes::{KeyValue, chunk_checksum};

use super::{KeyNode, KeyNodes};

type Data = BTreeMap<String, BTreeMap<String, (Vec<u8>, Option<i64>)>>;

/// Nodes holding keys in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryNodes {
    /// Node id -> key -> (value, TTL).
    data: Arc<Mutex<Data>>,
    /// Nodes that answer every command with an error (a node that is down).
    failing: Arc<Mutex<Vec<String>>>,
    /// Cursor -> the last key listed before it.
    cursors: Arc<Mutex<BTreeMap<u64, String>>>,
}

/// One node of a [`MemoryNodes`].
#[derive(Debug, Clone)]
pub struct MemoryNode {
    /// Its id.
    id: String,
    /// The shared data.
    nodes: MemoryNodes,
}

impl MemoryNodes {
    /// Sets `key` on `node`.
    pub fn insert(&self, node: &str, key: &str, value: &[u8], ttl_ms_opt: Option<i64>) {
        if let Ok(mut data) = self.data.lock() {
            data.entry(node.to_owned())
                .or_default()
                .insert(key.to_owned(), (value.to_vec(), ttl_ms_opt));
        }
    }

    /// The value of `key` on `node`.
    pub fn get(&self, node: &str, key: &str) -> Option<Vec<u8>> {
        let data = self.data.lock().ok()?;
        data.get(node)?.get(key).map(|(value, _)| value.clone())
    }

    /// Keys on `node`.
    pub fn keys(&self, node: &str) -> Vec<String> {
        self.data
            .lock()
            .ok()
            .and_then(|data| data.get(node).map(|keys| keys.keys().cloned().collect()))
            .unwrap_or_default()
    }

    /// Makes `node` fail (or work again).
    pub fn set_failing(&self, node: &str, failing: bool) {
        if let Ok(mut nodes) = self.failing.lock() {
            nodes.retain(|id| id != node);
            if failing {
                nodes.push(node.to_owned());
            }
        }
    }

    fn check(&self, node: &str) -> Result<(), CacheError> {
        let failing = self
            .failing
            .lock()
            .map(|nodes| nodes.iter().any(|id| id == node))
            .unwrap_or(false);
        if failing {
            return Err(CacheError::Node {
                node: node.to_owned(),
                message: "connection refused (test)".to_owned(),
            });
        }
        Ok(())
    }

    fn with<T>(
        &self,
        node: &str,
        body: impl FnOnce(&mut BTreeMap<String, (Vec<u8>, Option<i64>)>) -> T,
    ) -> Result<T, CacheError> {
        self.check(node)?;
        let mut data = self
            .data
            .lock()
            .map_err(|_| CacheError::Config("poisoned".to_owned()))?;
        Ok(body(data.entry(node.to_owned()).or_default()))
    }
}

impl KeyNodes for MemoryNodes {
    type Node = MemoryNode;

    fn node(&self, id: &str) -> Result<MemoryNode, CacheError> {
        Ok(MemoryNode {
            id: id.to_owned(),
            nodes: self.clone(),
        })
    }
}

impl KeyNode for MemoryNode {
    async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), CacheError> {
        let prefix = pattern.trim_end_matches('*').to_owned();
        let after_opt = match cursor {
            0 => None,
            cursor => Some(
                self.nodes
                    .cursors
                    .lock()
                    .ok()
                    .and_then(|cursors| cursors.get(&cursor).cloned())
                    .ok_or_else(|| CacheError::Decode(format!("unknown cursor {cursor}")))?,
            ),
        };
        let (page, more) = self.nodes.with(&self.id, |keys| {
            let mut listed = keys
                .keys()
                .filter(|key| after_opt.as_ref().is_none_or(|after| *key > after));
            let page: Vec<String> = listed.by_ref().take(count).cloned().collect();
            (page, listed.next().is_some())
        })?;
        let next = match (more, page.last()) {
            (true, Some(last)) => {
                let mut cursors = self
                    .nodes
                    .cursors
                    .lock()
                    .map_err(|_| CacheError::Config("poisoned".to_owned()))?;
                let next = cursors.len() as u64 + 1;
                cursors.insert(next, last.clone());
                next
            }
            _ => 0,
        };
        Ok((
            next,
            page.into_iter()
                .filter(|key| key.starts_with(&prefix))
                .collect(),
        ))
    }

    async fn read_many(&self, keys: &[String]) -> Result<Vec<KeyValue>, CacheError> {
        self.nodes.with(&self.id, |data| {
            keys.iter()
                .map(|key| {
                    let found = data.get(key);
                    KeyValue {
                        key: key.clone(),
                        value_opt: found.map(|(value, _)| value.clone()),
                        ttl_ms_opt: found.and_then(|(_, ttl)| *ttl),
                    }
                })
                .collect()
        })
    }

    async fn write_many(&self, entries: &[KeyValue]) -> Result<usize, CacheError> {
        self.nodes.with(&self.id, |data| {
            let mut written = 0;
            for entry in entries {
                if let Some(value) = &entry.value_opt {
                    data.insert(entry.key.clone(), (value.clone(), entry.ttl_ms_opt));
                    written += 1;
                }
            }
            written
        })
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64, CacheError> {
        self.nodes.with(&self.id, |data| {
            keys.iter()
                .filter(|key| data.remove(*key).is_some())
                .count() as u64
        })
    }

    async fn checksum(&self, keys: &[String]) -> Result<String, CacheError> {
        let entries = self.nodes.with(&self.id, |data| {
            keys.iter()
                .map(|key| (key.clone(), data.get(key).map(|(value, _)| value.clone())))
                .collect::<Vec<_>>()
        })?;
        Ok(chunk_checksum(&entries))
    }
}

/// A ring of `nodes` with 64 points each (unit tests).
#[cfg(test)]
pub(crate) fn ring(nodes: &[&str]) -> crate::ring::HashRing {
    let nodes = nodes.iter().map(|node| (*node).to_owned()).collect();
    crate::ring::HashRing::new(nodes, 64).unwrap_or_else(|error| unreachable!("{error}"))
}
