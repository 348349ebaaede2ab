//! The Redis hot cache: the first outcome per (tenant, `pcs_id`), spread over N nodes by a
//! [`HashRing`].
//!
//! Best effort by design: Postgres is the truth. Entries are written only after the batch
//! transaction committed (I5: Redis is never ahead of Postgres), the cache can be flushed at any
//! time and refills, and every error is a [`CacheError`] the caller logs and moves past; each
//! operation is bounded by a timeout so a dead node costs at most that much.
//!
//! Key: `<prefix>:<tenant>:<pcs_id>`, with `%` and `:` in the tenant percent-encoded (`%25`,
//! `%3A`) so two tenants can never share a key (I7). Value: JSON
//! `{"outcome": "<outcome code>", "body": <outcome>, "signed_digest": "<hex>"}`. Values written
//! by older builds carry `"status": 200 | 202` instead of `"outcome"`; they are still read (200 is
//! accepted, 202 is escalated or rejected by the body's `accepted`), and anything else that does
//! not decode is a miss ([`CacheError::Decode`]), never a wrong answer.
//! TTL: the tenant's hot TTL, never past the dedup row's expiry.
//! Ring node ids are the URLs without user info, so a password change does not move keys.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tokio::task::JoinSet;

use events::OutcomeClass;

use crate::frozen_status::class_of_body;
use crate::model::{Applied, DedupResult, StoredOutcome, TenantTtl};
use crate::ring::{DEFAULT_VIRTUAL_NODES, HashRing};

/// Default hot TTL: one day.
pub const DEFAULT_HOT_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// Why a cache operation did not (fully) happen. Never fatal: log and continue.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    /// Bad configuration (URL, prefix, ring).
    #[error("hot cache configuration: {0}")]
    Config(String),
    /// A node answered with an error or the connection failed.
    #[error("redis node {node}: {message}")]
    Node {
        /// Node id.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// A node did not answer in time.
    #[error("redis node {node}: no answer within {after_ms} ms")]
    Timeout {
        /// Node id.
        node: String,
        /// The timeout.
        after_ms: u64,
    },
    /// A cached value is not what this crate writes (treat as a miss).
    #[error("hot cache value does not decode: {0}")]
    Decode(String),
    /// Some entries of a `put_many` were not written.
    #[error("hot cache wrote {written} entries, {failed} failed: {first_error}")]
    Partial {
        /// Entries written.
        written: usize,
        /// Entries not written.
        failed: usize,
        /// The first node error.
        first_error: String,
    },
}

/// Settings of a [`HotCache`].
#[derive(Debug, Clone)]
pub struct HotCacheConfig {
    /// One URL per Redis node (`redis://host:port[/db]`).
    pub urls: Vec<String>,
    /// Key prefix (`[A-Za-z0-9_.:-]+`); tests use a random one.
    pub prefix: String,
    /// Hot TTL per tenant.
    pub ttl: TenantTtl,
    /// Points per node on the ring.
    pub virtual_nodes: u32,
    /// Upper bound on one operation against one node (also the connect timeout).
    pub op_timeout: Duration,
}

impl HotCacheConfig {
    /// Defaults for the given nodes and prefix: one-day TTL, 64 points per node, 250 ms timeout.
    pub fn new(urls: Vec<String>, prefix: impl Into<String>) -> Self {
        HotCacheConfig {
            urls,
            prefix: prefix.into(),
            ttl: TenantTtl::uniform(DEFAULT_HOT_TTL_MS),
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
            op_timeout: Duration::from_millis(250),
        }
    }
}

/// The cached answer for (tenant, `pcs_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CachedOutcomeWire")]
pub struct CachedOutcome {
    /// Class of the first outcome (accepted, escalated or rejected).
    #[serde(rename = "outcome")]
    pub outcome_class: OutcomeClass,
    /// The first outcome JSON.
    pub body: Value,
    /// Lowercase hex of the first record's signed digest.
    pub signed_digest: String,
}

/// A cached value as read: the current shape, or the one older builds wrote (`status`).
#[derive(Debug, Deserialize)]
struct CachedOutcomeWire {
    /// Outcome code (current builds).
    #[serde(default)]
    outcome: Option<OutcomeClass>,
    /// HTTP status of the first record (builds before outcome codes; 200 or 202).
    #[serde(default)]
    status: Option<u16>,
    /// The first outcome JSON.
    body: Value,
    /// Lowercase hex of the first record's signed digest.
    signed_digest: String,
}

impl TryFrom<CachedOutcomeWire> for CachedOutcome {
    type Error = String;

    fn try_from(wire: CachedOutcomeWire) -> Result<Self, Self::Error> {
        let outcome_class = match (wire.outcome, wire.status) {
            (Some(class), _) => class,
            // The body decides between escalated and rejected, which both were 202; a body that
            // disagrees with its status is not trusted.
            (None, Some(status @ (200 | 202))) => match class_of_body(&wire.body) {
                Some(OutcomeClass::Accepted) if status == 200 => OutcomeClass::Accepted,
                Some(class @ (OutcomeClass::Escalated | OutcomeClass::Rejected))
                    if status == 202 =>
                {
                    class
                }
                _ => {
                    return Err(format!(
                        "legacy cache value {status} disagrees with its body"
                    ));
                }
            },
            (None, Some(status)) => return Err(format!("legacy cache value with status {status}")),
            (None, None) => return Err("cache value without an outcome".to_owned()),
        };
        if !outcome_class.is_verified() {
            return Err(format!(
                "cached outcome {outcome_class} is not a verification"
            ));
        }
        Ok(CachedOutcome {
            outcome_class,
            body: wire.body,
            signed_digest: wire.signed_digest,
        })
    }
}

/// One entry to cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    /// Tenant.
    pub tenant: String,
    /// The `pcs_id`.
    pub pcs_id: String,
    /// The value.
    pub outcome: CachedOutcome,
    /// Expiry of the dedup row; the cache entry never outlives it.
    pub expires_at_ms_opt: Option<i64>,
}

impl CacheEntry {
    /// The entry for an applied first or duplicate record; `None` for anything else (conflicts
    /// and rejections are never cached: I2, and a conflict's own digest is not the first one).
    pub fn from_applied(applied: &Applied) -> Option<Self> {
        if !matches!(
            applied.dedup_result,
            DedupResult::First | DedupResult::Duplicate
        ) {
            return None;
        }
        Some(CacheEntry {
            tenant: applied.tenant.clone(),
            pcs_id: applied.pcs_id_opt.clone()?,
            outcome: CachedOutcome {
                outcome_class: applied.outcome_class,
                body: applied.body.clone(),
                signed_digest: hex::encode(applied.signed_digest_opt?),
            },
            expires_at_ms_opt: applied.dedup_expires_at_ms_opt,
        })
    }

    /// The entry for a stored dedup row (refill after a miss).
    pub fn from_stored(stored: &StoredOutcome) -> Self {
        CacheEntry {
            tenant: stored.tenant.clone(),
            pcs_id: stored.pcs_id.clone(),
            outcome: CachedOutcome {
                outcome_class: stored.outcome_class,
                body: stored.body.clone(),
                signed_digest: hex::encode(stored.signed_digest),
            },
            expires_at_ms_opt: Some(stored.expires_at_ms),
        }
    }
}

#[derive(Clone)]
struct Node {
    id: String,
    connection: ConnectionManager,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

/// The hot cache client.
#[derive(Debug, Clone)]
pub struct HotCache {
    /// One lazily connected manager per node, in ring order.
    nodes: Vec<Node>,
    /// Which node owns which key.
    ring: HashRing,
    /// Key prefix.
    prefix: String,
    /// Hot TTL per tenant.
    ttl: TenantTtl,
    /// Bound on one operation against one node.
    op_timeout: Duration,
}

/// `url` without `user:password@`.
fn node_id(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn escape_tenant(tenant: &str) -> String {
    tenant.replace('%', "%25").replace(':', "%3A")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl HotCache {
    /// Builds the client. Connections are lazy: a node that is down now only makes later
    /// operations on its keys fail, never this call. Fails only on bad configuration.
    pub fn new(config: HotCacheConfig) -> Result<Self, CacheError> {
        let prefix_ok = !config.prefix.is_empty()
            && config
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !prefix_ok {
            return Err(CacheError::Config(format!(
                "prefix {:?} must match [A-Za-z0-9_.:-]+",
                config.prefix
            )));
        }
        let ids: Vec<String> = config.urls.iter().map(|url| node_id(url)).collect();
        let ring = HashRing::new(ids.clone(), config.virtual_nodes)
            .map_err(|error| CacheError::Config(error.to_string()))?;
        let mut nodes = Vec::with_capacity(config.urls.len());
        for (url, id) in config.urls.iter().zip(ids) {
            let client = redis::Client::open(url.as_str())
                .map_err(|error| CacheError::Config(format!("{id}: {error}")))?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.op_timeout))
                .set_response_timeout(Some(config.op_timeout))
                .set_number_of_retries(1);
            let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
                .map_err(|error| CacheError::Config(format!("{id}: {error}")))?;
            nodes.push(Node { id, connection });
        }
        Ok(HotCache {
            nodes,
            ring,
            prefix: config.prefix,
            ttl: config.ttl,
            op_timeout: config.op_timeout,
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The ring (for `dedup-migrate`).
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// The Redis key of (tenant, `pcs_id`).
    pub fn key(&self, tenant: &str, pcs_id: &str) -> String {
        format!("{}:{}:{}", self.prefix, escape_tenant(tenant), pcs_id)
    }

    fn node_for_key(&self, key: &str) -> Option<&Node> {
        self.nodes.get(self.ring.node_index(key.as_bytes()))
    }

    fn timeout_error(&self, node: &str) -> CacheError {
        CacheError::Timeout {
            node: node.to_owned(),
            after_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Runs one command on `node`, bounded by `op_timeout`, with node-naming errors.
    async fn query<T: redis::FromRedisValue>(
        &self,
        node: &Node,
        command: &redis::Cmd,
    ) -> Result<T, CacheError> {
        let mut connection = node.connection.clone();
        tokio::time::timeout(self.op_timeout, command.query_async(&mut connection))
            .await
            .map_err(|_| self.timeout_error(&node.id))?
            .map_err(|error| CacheError::Node {
                node: node.id.clone(),
                message: error.to_string(),
            })
    }

    /// Writes entries (call only after the Postgres commit, I5), pipelined per node, nodes in
    /// parallel. Returns how many were written; entries already past their dedup expiry are
    /// skipped and count as written.
    pub async fn put_many(&self, entries: &[CacheEntry]) -> Result<usize, CacheError> {
        let now = now_ms();
        let mut per_node: HashMap<usize, redis::Pipeline> = HashMap::new();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        let mut skipped = 0;
        for entry in entries {
            let mut ttl_ms = self.ttl.ttl_ms(&entry.tenant);
            if let Some(expires_at_ms) = entry.expires_at_ms_opt {
                ttl_ms = ttl_ms.min(expires_at_ms.saturating_sub(now));
            }
            if ttl_ms <= 0 {
                skipped += 1;
                continue;
            }
            let value = serde_json::to_string(&entry.outcome)
                .map_err(|error| CacheError::Decode(error.to_string()))?;
            let key = self.key(&entry.tenant, &entry.pcs_id);
            let index = self.ring.node_index(key.as_bytes());
            per_node
                .entry(index)
                .or_insert_with(redis::pipe)
                .cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            *counts.entry(index).or_default() += 1;
        }
        let mut tasks = JoinSet::new();
        for (index, pipeline) in per_node {
            let Some(node) = self.nodes.get(index).cloned() else {
                continue;
            };
            let count = counts.get(&index).copied().unwrap_or(0);
            let op_timeout = self.op_timeout;
            tasks.spawn(async move {
                let mut connection = node.connection.clone();
                let outcome =
                    tokio::time::timeout(op_timeout, pipeline.query_async::<()>(&mut connection))
                        .await;
                (node.id, count, outcome)
            });
        }
        let mut written = skipped;
        let mut failed = 0;
        let mut first_error_opt: Option<CacheError> = None;
        while let Some(joined) = tasks.join_next().await {
            let (node, count, outcome) = match joined {
                Ok(result) => result,
                Err(error) => {
                    first_error_opt.get_or_insert(CacheError::Node {
                        node: "?".into(),
                        message: error.to_string(),
                    });
                    continue;
                }
            };
            match outcome {
                Ok(Ok(())) => written += count,
                Ok(Err(error)) => {
                    failed += count;
                    first_error_opt.get_or_insert(CacheError::Node {
                        node,
                        message: error.to_string(),
                    });
                }
                Err(_) => {
                    failed += count;
                    first_error_opt.get_or_insert(self.timeout_error(&node));
                }
            }
        }
        match first_error_opt {
            None => Ok(written),
            Some(first_error) => Err(CacheError::Partial {
                written,
                failed,
                first_error: first_error.to_string(),
            }),
        }
    }

    /// The cached outcome of (tenant, `pcs_id`); `Ok(None)` on a miss.
    pub async fn get(
        &self,
        tenant: &str,
        pcs_id: &str,
    ) -> Result<Option<CachedOutcome>, CacheError> {
        let key = self.key(tenant, pcs_id);
        let Some(node) = self.node_for_key(&key) else {
            return Ok(None);
        };
        let value_opt: Option<String> = self.query(node, redis::cmd("GET").arg(&key)).await?;
        value_opt
            .map(|value| {
                serde_json::from_str(&value).map_err(|error| CacheError::Decode(error.to_string()))
            })
            .transpose()
    }

    /// Remaining TTL of a key in ms (`None` when absent); for tests and diagnostics.
    pub async fn ttl_ms(&self, tenant: &str, pcs_id: &str) -> Result<Option<i64>, CacheError> {
        let key = self.key(tenant, pcs_id);
        let Some(node) = self.node_for_key(&key) else {
            return Ok(None);
        };
        let ttl: i64 = self.query(node, redis::cmd("PTTL").arg(&key)).await?;
        Ok((ttl >= 0).then_some(ttl))
    }

    /// Deletes every key under this cache's prefix on every node; returns how many. For tests and
    /// for "Redis can be flushed at any time" drills (I5).
    pub async fn flush_all_prefix(&self) -> Result<u64, CacheError> {
        let pattern = format!("{}:*", self.prefix);
        let mut deleted = 0u64;
        for node in &self.nodes {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .query(
                        node,
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1_000),
                    )
                    .await?;
                if !keys.is_empty() {
                    let removed: u64 = self.query(node, redis::cmd("DEL").arg(&keys)).await?;
                    deleted += removed;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_drop_credentials() {
        assert_eq!(
            node_id("redis://user:secret@10.0.0.1:6379/2"),
            "redis://10.0.0.1:6379/2"
        );
        assert_eq!(
            node_id("redis://127.0.0.1:16379"),
            "redis://127.0.0.1:16379"
        );
    }

    #[test]
    fn tenant_escaping_keeps_keys_apart() {
        assert_ne!(escape_tenant("a:b"), escape_tenant("a%3Ab"));
        assert_eq!(escape_tenant("a:b%"), "a%3Ab%25");
    }

    #[test]
    fn only_first_and_duplicate_answers_are_cached() {
        let mut applied = Applied {
            source: events::SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
            decisions_offset: 0,
            tenant: "acme".into(),
            pcs_id_opt: Some("p".into()),
            signed_digest_opt: Some([1; 32]),
            outcome_class: OutcomeClass::Accepted,
            dedup_result: DedupResult::First,
            body: serde_json::json!({"accepted": true}),
            replayed: false,
            dedup_expires_at_ms_opt: Some(10),
        };
        assert!(CacheEntry::from_applied(&applied).is_some());
        applied.dedup_result = DedupResult::Conflict;
        assert!(CacheEntry::from_applied(&applied).is_none());
        applied.dedup_result = DedupResult::NotDeduplicated;
        assert!(CacheEntry::from_applied(&applied).is_none());
    }

    #[test]
    fn values_round_trip_and_legacy_values_still_read() {
        let body = serde_json::json!({"accepted": false, "escalated": true, "reason": "r"});
        let current = CachedOutcome {
            outcome_class: OutcomeClass::Rejected,
            body: body.clone(),
            signed_digest: "ab".into(),
        };
        let text = serde_json::to_string(&current).unwrap();
        assert!(text.contains(r#""outcome":"rejected""#), "{text}");
        assert_eq!(
            serde_json::from_str::<CachedOutcome>(&text).unwrap(),
            current
        );

        // Written by builds that stored the HTTP status: 202 splits by the body.
        let legacy = |status: u16, body: &Value| {
            serde_json::from_value::<CachedOutcome>(serde_json::json!({
                "status": status, "body": body, "signed_digest": "ab"
            }))
        };
        assert_eq!(legacy(202, &body).unwrap(), current);
        let escalated = serde_json::json!({"accepted": true, "escalated": true});
        assert_eq!(
            legacy(202, &escalated).unwrap().outcome_class,
            OutcomeClass::Escalated
        );
        let accepted = serde_json::json!({"accepted": true, "escalated": false});
        assert_eq!(
            legacy(200, &accepted).unwrap().outcome_class,
            OutcomeClass::Accepted
        );

        // Anything else is a miss, never a guess.
        assert!(legacy(409, &accepted).is_err());
        assert!(legacy(202, &accepted).is_err());
        assert!(legacy(202, &serde_json::json!({"error": "malformed"})).is_err());
        assert!(
            serde_json::from_value::<CachedOutcome>(serde_json::json!({
                "outcome": "malformed", "body": {}, "signed_digest": "ab"
            }))
            .is_err()
        );
        assert!(
            serde_json::from_value::<CachedOutcome>(serde_json::json!({
                "body": {}, "signed_digest": "ab"
            }))
            .is_err()
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let config = HotCacheConfig::new(vec!["redis://127.0.0.1:1".into()], "a b");
        assert!(matches!(HotCache::new(config), Err(CacheError::Config(_))));
    }
}
