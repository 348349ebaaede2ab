//! Connections to the Redis nodes of the sharded hot tier, by node id, and the few commands the
//! hot cache, `flk migrate` and the shards API send to one node.
//!
//! A node id is its URL without user info (so a password change does not move keys); the URL
//! used to connect is the configured one with the same id when there is one (credentials stay
//! in the configuration, never in Postgres), else the id itself. Connections are lazy: creating
//! a node never connects, the first command does, bounded by the operation timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::hot_cache::CacheError;

/// One node: its id and a shared, reconnecting connection.
#[derive(Clone)]
pub struct RedisNode {
    /// Node id (URL without user info).
    pub id: String,
    /// Multiplexed connection (cheap to clone).
    connection: ConnectionManager,
    /// Upper bound on one command (also the connect timeout).
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNode").field("id", &self.id).finish()
    }
}

/// A key's value and remaining time to live, as read from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// Its value; `None` when the key is gone (expired or deleted since it was listed).
    pub value_opt: Option<Vec<u8>>,
    /// Milliseconds to live; `None` for a key without expiry.
    pub ttl_ms_opt: Option<i64>,
}

/// The node id of a Redis URL: the URL without user info.
pub fn node_id(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Sums the values of `KEYS` with their names on the node (server-side), so a chunk's checksum
/// crosses the network instead of its values. A missing key counts as a distinct marker.
const CHUNK_CHECKSUM_SCRIPT: &str = r"
local parts = {}
for index, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value then parts[index] = key .. '=' .. value else parts[index] = key .. '!' end
end
return redis.sha1hex(table.concat(parts, '\n'))
";

/// Same digest computed locally (for one side read with GET, or for tests).
pub fn chunk_checksum(entries: &[(String, Option<Vec<u8>>)]) -> String {
    use sha1_smol::Sha1;
    let mut joined: Vec<u8> = Vec::new();
    for (index, (key, value_opt)) in entries.iter().enumerate() {
        if index > 0 {
            joined.push(b'\n');
        }
        joined.extend_from_slice(key.as_bytes());
        match value_opt {
            Some(value) => {
                joined.push(b'=');
                joined.extend_from_slice(value);
            }
            None => joined.push(b'!'),
        }
    }
    Sha1::from(&joined).digest().to_string()
}

impl RedisNode {
    /// A node for `url` (not connected yet).
    pub fn open(url: &str, op_timeout: Duration) -> Result<Self, CacheError> {
        let id = node_id(url);
        let client = redis::Client::open(url)
            .map_err(|error| CacheError::Config(format!("{id}: {error}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|error| CacheError::Config(format!("{id}: {error}")))?;
        Ok(RedisNode {
            id,
            connection,
            op_timeout,
        })
    }

    fn timeout_error(&self) -> CacheError {
        CacheError::Timeout {
            node: self.id.clone(),
            after_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn node_error(&self, error: &redis::RedisError) -> CacheError {
        CacheError::Node {
            node: self.id.clone(),
            message: error.to_string(),
        }
    }

    /// Runs one command, bounded by the operation timeout.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.op_timeout, command.query_async(&mut connection))
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|error| self.node_error(&error))
    }

    /// Runs one pipeline, bounded by the operation timeout.
    pub async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> Result<T, CacheError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.op_timeout, pipeline.query_async(&mut connection))
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|error| self.node_error(&error))
    }

    /// One SCAN step over keys matching `pattern`: the next cursor (0 = done) and the keys.
    pub async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), CacheError> {
        self.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count),
        )
        .await
    }

    /// Values and TTLs of `keys`, in order (one round trip).
    pub async fn read_many(&self, keys: &[String]) -> Result<Vec<KeyValue>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("GET").arg(key).cmd("PTTL").arg(key);
        }
        let answers: Vec<redis::Value> = self.query_pipeline(&pipeline).await?;
        let mut read = Vec::with_capacity(keys.len());
        for (key, pair) in keys.iter().zip(answers.chunks(2)) {
            let value_opt: Option<Vec<u8>> = match pair.first() {
                Some(value) => redis::from_redis_value(value.clone())
                    .map_err(|error| CacheError::Decode(error.to_string()))?,
                None => None,
            };
            let ttl: i64 = match pair.get(1) {
                Some(value) => redis::from_redis_value(value.clone())
                    .map_err(|error| CacheError::Decode(error.to_string()))?,
                None => -2,
            };
            read.push(KeyValue {
                key: key.clone(),
                // PTTL -2: the key is gone; -1: no expiry.
                value_opt: if ttl == -2 { None } else { value_opt },
                ttl_ms_opt: (ttl >= 0).then_some(ttl),
            });
        }
        Ok(read)
    }

    /// Writes `entries` with their TTLs (one round trip); entries without a value are skipped.
    /// Returns how many were written.
    pub async fn write_many(&self, entries: &[KeyValue]) -> Result<usize, CacheError> {
        let mut pipeline = redis::pipe();
        let mut written = 0;
        for entry in entries {
            let Some(value) = &entry.value_opt else {
                continue;
            };
            let command = pipeline.cmd("SET").arg(&entry.key).arg(value.as_slice());
            if let Some(ttl_ms) = entry.ttl_ms_opt {
                // A key about to expire still gets at least a millisecond (PX 0 is an error).
                command.arg("PX").arg(ttl_ms.max(1));
            }
            command.ignore();
            written += 1;
        }
        if written > 0 {
            self.query_pipeline::<()>(&pipeline).await?;
        }
        Ok(written)
    }

    /// Deletes `keys`; returns how many existed.
    pub async fn delete_many(&self, keys: &[String]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("DEL").arg(keys)).await
    }

    /// Server-side checksum of `keys`' names and values ([`chunk_checksum`] computes the same).
    pub async fn checksum(&self, keys: &[String]) -> Result<String, CacheError> {
        let script = redis::Script::new(CHUNK_CHECKSUM_SCRIPT);
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.op_timeout, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|error| self.node_error(&error))
    }

    /// Round-trip time of a PING.
    pub async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }
}

/// The nodes a process has connections to, by id; nodes named later by a new ring version are
/// added on demand and kept (a rollback may need them again).
#[derive(Debug, Clone)]
pub struct RedisNodes {
    /// Configured URLs by node id (with their credentials).
    urls: Arc<HashMap<String, String>>,
    /// Open nodes by id.
    nodes: Arc<Mutex<HashMap<String, RedisNode>>>,
    /// Operation timeout of new nodes.
    op_timeout: Duration,
}

impl RedisNodes {
    /// Connections for the configured `urls` (nothing connects yet).
    pub fn new(urls: &[String], op_timeout: Duration) -> Result<Self, CacheError> {
        let mut by_id = HashMap::new();
        let mut nodes = HashMap::new();
        for url in urls {
            let node = RedisNode::open(url, op_timeout)?;
            by_id.insert(node.id.clone(), url.clone());
            nodes.insert(node.id.clone(), node);
        }
        Ok(RedisNodes {
            urls: Arc::new(by_id),
            nodes: Arc::new(Mutex::new(nodes)),
            op_timeout,
        })
    }

    /// The node `id`, opened now if this process has not used it yet.
    pub fn node(&self, id: &str) -> Result<RedisNode, CacheError> {
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| CacheError::Config("redis node table poisoned".to_owned()))?;
        if let Some(node) = nodes.get(id) {
            return Ok(node.clone());
        }
        let url = self.urls.get(id).map_or(id, String::as_str);
        let node = RedisNode::open(url, self.op_timeout)?;
        nodes.insert(id.to_owned(), node.clone());
        Ok(node)
    }

    /// The operation timeout.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_drop_credentials() {
        assert_eq!(
            node_id("redis://user:secret@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(node_id("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn local_checksum_distinguishes_values_and_missing_keys() {
        let present = chunk_checksum(&[("k".into(), Some(b"v".to_vec()))]);
        let other = chunk_checksum(&[("k".into(), Some(b"w".to_vec()))]);
        let missing = chunk_checksum(&[("k".into(), None)]);
        assert_ne!(present, other);
        assert_ne!(present, missing);
        assert_eq!(present.len(), 40);
    }
}
