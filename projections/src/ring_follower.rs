//! Keeps a process's hot cache on the recorded ring: polls `ring_state` (a one-row read), installs
//! a new placement the moment its state version changes, and reports the version it applied, so
//! `flk migrate` can wait until every live process writes (or reads) the new way before it goes
//! on. No restart is needed for any ring change.
//!
//! Until a ring is recorded (`flk migrate plan` records the first), the cache keeps the
//! configuration's ring. A poll that fails keeps the current placement and retries at the next
//! tick: the cache is best effort, and a migration step waits for this process to report anyway.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;
use crate::hot_cache::HotCache;
use crate::store::ProjectionStore;

/// How often a follower polls by default. Migration steps wait for every follower, so this
/// bounds how long a cutover takes to reach every process.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// A follower is live while it reported within this window; `flk migrate` waits only for those.
pub const LIVE_WINDOW: Duration = Duration::from_secs(10);

/// One poll: installs the recorded placement if its state version differs from the cache's,
/// then reports the version in use. Returns it.
pub async fn poll_once(
    store: &ProjectionStore,
    cache: &HotCache,
    follower_id: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let current = cache.placement().state_version;
    let applied = match store.ring_state().await? {
        Some(state) if state.state_version != current => {
            let placement = state.placement()?;
            let version = placement.state_version;
            tracing::info!(
                state_version = version,
                read_version = placement.read_version,
                dual_write = placement.dual_writing(),
                migration = placement.migration_id_opt.as_deref().unwrap_or(""),
                "hot tier ring changed"
            );
            let previous = cache.set_placement(placement);
            drain(previous).await;
            version
        }
        _ => current,
    };
    store
        .report_ring_follower(follower_id, applied, now_ms)
        .await?;
    Ok(applied)
}

/// Installs the recorded ring in `cache` once, without reporting as a follower: for one-shot
/// commands (`flk tier explain`, `flk shards`) that must look where serving processes look.
pub async fn install_recorded(store: &ProjectionStore, cache: &HotCache) -> Result<(), StoreError> {
    if let Some(state) = store.ring_state().await? {
        cache.set_placement(state.placement()?);
    }
    Ok(())
}

/// Longest wait for operations that started under the previous placement.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until no operation still uses `previous` (each holds a clone while it runs, at most an
/// operation timeout), so a reported version means no write through the old rings is still in
/// flight: a copy that starts after dual-write cannot miss a write that was already under way.
async fn drain(previous: std::sync::Arc<crate::placement::Placement>) {
    let started = tokio::time::Instant::now();
    while std::sync::Arc::strong_count(&previous) > 1 {
        if started.elapsed() > DRAIN_TIMEOUT {
            tracing::warn!("operations under the previous hot tier ring still running after 2 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls every `interval` until `shutdown` resolves.
pub async fn follow(
    store: ProjectionStore,
    cache: HotCache,
    follower_id: String,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match poll_once(&store, &cache, &follower_id, infra::clock::now_ms()).await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("hot tier ring follower recovered");
            }
            Ok(_) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "hot tier ring follower cannot read the ring state");
            }
            Err(_) => {}
        }
    }
}
