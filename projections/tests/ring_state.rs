//! The recorded hot tier ring against real Postgres and Redis: a follower hears a change by
//! notification (long before its next poll), and a rebuild swap keeps the ring and its history.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use projections::redis_nodes::node_id;
use projections::ring::{RingSpec, WeightedNode};
use projections::ring_store::Phase;
use projections::{HotCache, HotCacheConfig, ProjectionStore};
use serde_json::json;

fn spec_of(urls: &[String]) -> RingSpec {
    RingSpec::new(
        urls.iter()
            .map(|url| WeightedNode::unweighted(node_id(url)))
            .collect(),
        64,
    )
}

/// Waits until `check` holds, or fails after 10 s with `what`.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store with a recorded ring over every local node and a planned migration to the first two.
async fn store_with_planned_migration(schema: &TestSchema, id: &str) -> ProjectionStore {
    let store = schema.store().await;
    let urls = redis_urls();
    assert!(urls.len() >= 3, "the local stack runs three Redis nodes");
    store.bootstrap_ring(&spec_of(&urls), 1).await.unwrap();
    store
        .create_ring_migration(id, &spec_of(&urls[..2]), &json!({"moved": 0}), 2)
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn a_follower_hears_a_ring_change_long_before_its_next_poll() {
    let schema = TestSchema::new();
    let store = store_with_planned_migration(&schema, "m-notify").await;
    let cache = HotCache::new(HotCacheConfig::new(redis_urls(), unique_name("flkring"))).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The first tick polls at once; the next one is an hour away, so only a notification can
    // bring the later change.
    let follower = tokio::spawn(projections::ring_follower::follow(
        store.clone(),
        cache.clone(),
        "test-follower".into(),
        Duration::from_secs(3_600),
        async {
            let _ = stopped.await;
        },
    ));
    wait_until("the follower applies the bootstrap ring", || async {
        cache.placement().state_version == 1
    })
    .await;
    // LISTEN is opened before the first poll; this change commits after it.
    let state_version = store
        .set_ring_phase(
            "m-notify",
            &[Phase::Planned],
            Phase::DualWrite,
            &json!({}),
            3,
        )
        .await
        .unwrap();
    wait_until("the follower applies dual-write", || async {
        cache.placement().state_version == state_version
    })
    .await;
    let placement = cache.placement();
    assert!(placement.dual_writing());
    assert_eq!(placement.read_version, 1);
    wait_until("the follower reports the new state", || async {
        store
            .ring_followers(0)
            .await
            .unwrap()
            .iter()
            .any(|f| f.follower_id == "test-follower" && f.state_version == state_version)
    })
    .await;
    stop.send(()).unwrap();
    follower.await.unwrap();
}

#[tokio::test]
async fn a_rebuild_swap_keeps_the_ring_and_its_history() {
    let schema = TestSchema::new();
    let live = store_with_planned_migration(&schema, "m-swap").await;
    live.set_ring_phase("m-swap", &[Phase::Planned], Phase::DualWrite, &json!({}), 3)
        .await
        .unwrap();
    let before = live.ring_state().await.unwrap().unwrap();
    let events_before = live.ring_events("m-swap").await.unwrap();

    let rebuild_name = ProjectionStore::rebuild_schema_name(&schema.name);
    let rebuild = ProjectionStore::connect(&schema.url, &rebuild_name)
        .await
        .unwrap();
    assert!(rebuild.ring_state().await.unwrap().is_none());
    ProjectionStore::swap_in(&schema.url, &rebuild_name, &schema.name)
        .await
        .unwrap();

    let swapped = ProjectionStore::connect(&schema.url, &schema.name)
        .await
        .unwrap();
    let after = swapped.ring_state().await.unwrap().unwrap();
    assert_eq!(after.state_version, before.state_version);
    assert_eq!(after.read_version, before.read_version);
    assert_eq!(after.writes, before.writes);
    assert_eq!(after.migration_id_opt.as_deref(), Some("m-swap"));
    let migration = swapped.ring_migration("m-swap").await.unwrap().unwrap();
    assert_eq!(migration.phase, Phase::DualWrite);
    assert_eq!(swapped.ring_events("m-swap").await.unwrap(), events_before);

    // The migration goes on in the swapped-in schema: its next step and event ids continue.
    swapped
        .record_ring_event("m-swap", "copy_started", &json!({}), 4)
        .await
        .unwrap();
    let next = swapped
        .set_ring_phase(
            "m-swap",
            &[Phase::DualWrite],
            Phase::RolledBack,
            &json!({}),
            5,
        )
        .await
        .unwrap();
    assert_eq!(next, before.state_version + 1);
    assert_eq!(
        swapped.ring_events("m-swap").await.unwrap().len(),
        events_before.len() + 2
    );
}
