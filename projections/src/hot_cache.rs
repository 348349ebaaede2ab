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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinSet;

use events::OutcomeClass;

use crate::frozen_status::class_of_body;
use crate::model::{Applied, DedupResult, StoredOutcome, TenantTtl};
use crate::placement::Placement;
use crate::redis_nodes::{RedisNodes, node_id};
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
    /// The entry for an applied first, duplicate or superseding record (which overwrites the
    /// record it replaced); `None` for anything else (conflicts and rejections are never cached:
    /// I2, and a conflict's own digest is not the first one).
    pub fn from_applied(applied: &Applied) -> Option<Self> {
        if !matches!(
            applied.dedup_result,
            DedupResult::First | DedupResult::Duplicate | DedupResult::Superseded
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

/// The hot cache client.
#[derive(Debug, Clone)]
pub struct HotCache {
    /// Connections by node id (configured nodes, plus nodes a newer ring names).
    nodes: RedisNodes,
    /// Which rings reads and writes go through; replaced whole when the ring changes.
    placement: Arc<RwLock<Arc<Placement>>>,
    /// Key prefix.
    prefix: String,
    /// Hot TTL per tenant.
    ttl: TenantTtl,
    /// Counts entries whose write to a second ring (a migration's dual write) failed.
    dual_write_errors_opt: Option<prometheus::IntCounter>,
}

fn escape_tenant(tenant: &str) -> String {
    tenant.replace('%', "%25").replace(':', "%3A")
}

impl HotCache {
    /// A client for the configured nodes and prefix (nothing connects yet). Reads and writes go
    /// through the configuration's ring until [`HotCache::set_placement`] installs a recorded one.
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
        let ring = HashRing::new(ids, config.virtual_nodes)
            .map_err(|error| CacheError::Config(error.to_string()))?;
        let nodes = RedisNodes::new(&config.urls, config.op_timeout)?;
        Ok(HotCache {
            nodes,
            placement: Arc::new(RwLock::new(Arc::new(Placement::from_config(ring)))),
            prefix: config.prefix,
            ttl: config.ttl,
            dual_write_errors_opt: None,
        })
    }

    /// Counts failed dual writes in `counter` (`flk_dedup_dual_write_errors_total`), so a
    /// migration's second ring never silently misses writes.
    pub fn with_dual_write_errors(mut self, counter: prometheus::IntCounter) -> Self {
        self.dual_write_errors_opt = Some(counter);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The placement in use now.
    pub fn placement(&self) -> Arc<Placement> {
        match self.placement.read() {
            Ok(placement) => placement.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches reads and writes to `placement` at once (every later operation uses it) and
    /// returns the previous one: operations that started before still hold it, so its strong
    /// count says when the last of them has finished.
    pub fn set_placement(&self, placement: Placement) -> Arc<Placement> {
        let placement = Arc::new(placement);
        match self.placement.write() {
            Ok(mut current) => std::mem::replace(&mut *current, placement),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), placement),
        }
    }

    /// The ring reads go through now.
    pub fn ring(&self) -> HashRing {
        self.placement().read.clone()
    }

    /// The node connections (for `flk migrate` and the shards API).
    pub fn nodes(&self) -> &RedisNodes {
        &self.nodes
    }

    /// The Redis key of (tenant, `pcs_id`).
    pub fn key(&self, tenant: &str, pcs_id: &str) -> String {
        format!("{}:{}:{}", self.prefix, escape_tenant(tenant), pcs_id)
    }

    /// Writes entries with their TTLs, pipelined per node, to every node the placement writes
    /// each key to (two while a migration dual-writes). Entries past their expiry are skipped.
    /// `Ok(n)`: all `n` entries landed on all their nodes; otherwise [`CacheError::Partial`]
    /// counts the entries with a write that failed.
    pub async fn put_many(&self, entries: &[CacheEntry]) -> Result<usize, CacheError> {
        let now = infra::clock::now_ms();
        let placement = self.placement();
        // Per node: the pipeline, the entries it writes, and how many of them are second-ring
        // (dual) writes.
        let mut per_node: HashMap<String, (redis::Pipeline, Vec<usize>, u64)> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let mut ttl_ms = self.ttl.ttl_ms(&entry.tenant);
            if let Some(expires_at_ms) = entry.expires_at_ms_opt {
                ttl_ms = ttl_ms.min(expires_at_ms.saturating_sub(now));
            }
            if ttl_ms <= 0 {
                // Past its expiry: nothing to cache, and nothing failed.
                continue;
            }
            let value = serde_json::to_string(&entry.outcome)
                .map_err(|error| CacheError::Decode(error.to_string()))?;
            let key = self.key(&entry.tenant, &entry.pcs_id);
            for (rank, owner) in placement
                .write_owners(key.as_bytes())
                .into_iter()
                .enumerate()
            {
                let (pipeline, indexes, dual) = per_node
                    .entry(owner.to_owned())
                    .or_insert_with(|| (redis::pipe(), Vec::new(), 0));
                if rank > 0 {
                    *dual += 1;
                }
                pipeline
                    .cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                indexes.push(index);
            }
        }
        let mut tasks = JoinSet::new();
        let mut first_error_opt: Option<CacheError> = None;
        let mut failed_entries: HashSet<usize> = HashSet::new();
        let mut dual_failed = 0;
        for (id, (pipeline, indexes, dual)) in per_node {
            let node = match self.nodes.node(&id) {
                Ok(node) => node,
                Err(error) => {
                    failed_entries.extend(indexes);
                    dual_failed += dual;
                    first_error_opt.get_or_insert(error);
                    continue;
                }
            };
            tasks.spawn(async move {
                let outcome = node.query_pipeline::<()>(&pipeline).await;
                (indexes, dual, outcome)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, _, Ok(()))) => {}
                Ok((indexes, dual, Err(error))) => {
                    failed_entries.extend(indexes);
                    dual_failed += dual;
                    first_error_opt.get_or_insert(error);
                }
                Err(error) => {
                    first_error_opt.get_or_insert(CacheError::Node {
                        node: "?".into(),
                        message: error.to_string(),
                    });
                }
            }
        }
        if let Some(counter) = self
            .dual_write_errors_opt
            .as_ref()
            .filter(|_| dual_failed > 0)
        {
            counter.inc_by(dual_failed);
        }
        match first_error_opt {
            None => Ok(entries.len()),
            Some(first_error) => Err(CacheError::Partial {
                written: entries.len() - failed_entries.len(),
                failed: failed_entries.len(),
                first_error: first_error.to_string(),
            }),
        }
    }

    /// The cached answer for (tenant, `pcs_id`), from the node reads go to.
    pub async fn get(
        &self,
        tenant: &str,
        pcs_id: &str,
    ) -> Result<Option<CachedOutcome>, CacheError> {
        let key = self.key(tenant, pcs_id);
        let node = self
            .nodes
            .node(self.placement().read_owner(key.as_bytes()))?;
        let value_opt: Option<String> = node.query(redis::cmd("GET").arg(&key)).await?;
        value_opt
            .map(|value| {
                serde_json::from_str(&value).map_err(|error| CacheError::Decode(error.to_string()))
            })
            .transpose()
    }

    /// Remaining TTL of (tenant, `pcs_id`) on the node reads go to; `None` when absent.
    pub async fn ttl_ms(&self, tenant: &str, pcs_id: &str) -> Result<Option<i64>, CacheError> {
        let key = self.key(tenant, pcs_id);
        let node = self
            .nodes
            .node(self.placement().read_owner(key.as_bytes()))?;
        let ttl: i64 = node.query(redis::cmd("PTTL").arg(&key)).await?;
        Ok((ttl >= 0).then_some(ttl))
    }

    /// Deletes every key under this prefix on every node of the placement (tests, `flk replay`).
    pub async fn flush_all_prefix(&self) -> Result<u64, CacheError> {
        let pattern = format!("{}:*", self.prefix);
        let placement = self.placement();
        let mut deleted = 0u64;
        for id in placement.node_ids() {
            let node = self.nodes.node(id)?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = node.scan(cursor, &pattern, 1_000).await?;
                deleted += node.delete_many(&keys).await?;
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
