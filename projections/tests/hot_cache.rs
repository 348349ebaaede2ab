//! The Redis hot cache against the local 3-node Redis: round trip, TTLs, spread over the ring,
//! flush, and a dead node that costs an error, never a failure of the caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use projections::{
    CacheEntry, CacheError, CachedOutcome, DedupResult, HotCache, HotCacheConfig, OutcomeClass,
    TenantTtl,
};
use serde_json::json;

/// A cache with its own prefix; flushed at the end of each test.
fn cache(ttl: TenantTtl) -> HotCache {
    let mut config = HotCacheConfig::new(redis_urls(), unique_name("flktest"));
    config.ttl = ttl;
    config.op_timeout = Duration::from_secs(2);
    HotCache::new(config).unwrap()
}

fn entry(tenant: &str, pcs_id: &str, outcome_class: OutcomeClass) -> CacheEntry {
    let accepted = outcome_class == OutcomeClass::Accepted;
    CacheEntry {
        tenant: tenant.into(),
        pcs_id: pcs_id.into(),
        outcome: CachedOutcome {
            outcome_class,
            body: json!({"accepted": accepted, "escalated": !accepted}),
            signed_digest: hex::encode([7u8; 32]),
        },
        expires_at_ms_opt: None,
    }
}

#[tokio::test]
async fn round_trip_with_tenant_ttls() {
    let mut ttl = TenantTtl::uniform(60_000);
    ttl.per_tenant_ms.insert("brief".into(), 300);
    let cache = cache(ttl);
    let entries: Vec<CacheEntry> = (0..300)
        .map(|i| entry("acme", &format!("{i:064x}"), OutcomeClass::Accepted))
        .chain([
            entry("brief", "short-lived", OutcomeClass::Rejected),
            entry("a:b", "x", OutcomeClass::Accepted),
        ])
        .collect();
    assert_eq!(cache.put_many(&entries).await.unwrap(), entries.len());

    let got = cache
        .get("acme", &format!("{:064x}", 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, entries[5].outcome);
    let ttl_ms = cache
        .ttl_ms("acme", &format!("{:064x}", 5))
        .await
        .unwrap()
        .unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 60_000, "{ttl_ms}");
    assert!(cache.get("acme", "absent").await.unwrap().is_none());
    // Tenants are part of the key (I7), escaped so "a:b"/"x" is not "a"/"b:x".
    assert!(cache.get("a", "b:x").await.unwrap().is_none());
    assert!(cache.get("a:b", "x").await.unwrap().is_some());
    assert!(
        cache
            .get("globex", &format!("{:064x}", 5))
            .await
            .unwrap()
            .is_none()
    );

    // The brief tenant's entry expires on its own TTL.
    let gone = wait_for(Duration::from_secs(5), || async {
        cache
            .get("brief", "short-lived")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "entry outlived its 300 ms TTL");

    // Keys spread over all three nodes.
    let ring = cache.ring();
    let nodes: std::collections::HashSet<_> = entries
        .iter()
        .map(|e| ring.node_for(cache.key(&e.tenant, &e.pcs_id).as_bytes()))
        .collect();
    assert_eq!(nodes.len(), cache.ring().nodes().len());

    assert!(cache.flush_all_prefix().await.unwrap() >= 300);
    assert!(
        cache
            .get("acme", &format!("{:064x}", 5))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn entries_never_outlive_the_dedup_row() {
    let cache = cache(TenantTtl::uniform(3_600_000));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut expired = entry("acme", "old", OutcomeClass::Accepted);
    expired.expires_at_ms_opt = Some(now_ms - 1);
    let mut soon = entry("acme", "soon", OutcomeClass::Accepted);
    soon.expires_at_ms_opt = Some(now_ms + 5_000);
    cache.put_many(&[expired, soon]).await.unwrap();
    assert!(cache.get("acme", "old").await.unwrap().is_none());
    let ttl_ms = cache.ttl_ms("acme", "soon").await.unwrap().unwrap();
    assert!(ttl_ms <= 5_000, "{ttl_ms}");
    cache.flush_all_prefix().await.unwrap();
}

#[tokio::test]
async fn applied_answers_fill_the_cache_after_commit() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let cache = cache(TenantTtl::uniform(60_000));
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let mut first = accepted(1, "acme", "p", 1);
    first.received_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(
                0,
                vec![first, accepted(2, "acme", "p", 2), malformed(3, "acme")],
            ),
        )
        .await
        .unwrap();
    // Only after the commit above (I5): first/duplicate answers, never conflicts or rejections.
    let entries: Vec<CacheEntry> = applied
        .iter()
        .filter_map(CacheEntry::from_applied)
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(applied[1].dedup_result, DedupResult::Conflict);
    cache.put_many(&entries).await.unwrap();
    let cached = cache.get("acme", "p").await.unwrap().unwrap();
    assert_eq!(cached.outcome_class, OutcomeClass::Accepted);
    assert_eq!(cached.signed_digest, hex::encode([1u8; 32]));

    // Flushing loses nothing: the store refills it.
    cache.flush_all_prefix().await.unwrap();
    assert!(cache.get("acme", "p").await.unwrap().is_none());
    let stored = store.lookup("acme", "p").await.unwrap().unwrap();
    cache
        .put_many(&[CacheEntry::from_stored(&stored)])
        .await
        .unwrap();
    assert_eq!(cache.get("acme", "p").await.unwrap().unwrap(), cached);
    cache.flush_all_prefix().await.unwrap();
}

#[tokio::test]
async fn a_dead_node_is_an_error_not_a_failure() {
    // Port 1 on loopback: nothing listens there.
    let mut urls = redis_urls();
    urls.push("redis://127.0.0.1:1".into());
    let mut config = HotCacheConfig::new(urls, unique_name("flktest"));
    config.op_timeout = Duration::from_millis(300);
    let cache = HotCache::new(config).expect("construction never connects");
    let entries: Vec<CacheEntry> = (0..200)
        .map(|i| entry("acme", &format!("k{i}"), OutcomeClass::Accepted))
        .collect();
    match cache.put_many(&entries).await {
        Err(CacheError::Partial {
            written, failed, ..
        }) => {
            assert_eq!(written + failed, entries.len());
            assert!(written > 0 && failed > 0, "{written} {failed}");
        }
        other => panic!("expected a partial write, got {other:?}"),
    }
    let ring = cache.ring();
    let dead_key = entries
        .iter()
        .find(|e| {
            ring.node_for(cache.key(&e.tenant, &e.pcs_id).as_bytes()) == "redis://127.0.0.1:1"
        })
        .unwrap();
    let error = cache
        .get(&dead_key.tenant, &dead_key.pcs_id)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CacheError::Node { .. } | CacheError::Timeout { .. }),
        "{error:?}"
    );
    // Flushing the live nodes fails on the dead one; clean up the live ones directly.
    let live = HotCache::new(HotCacheConfig::new(redis_urls(), cache.prefix())).unwrap();
    live.flush_all_prefix().await.unwrap();
}
