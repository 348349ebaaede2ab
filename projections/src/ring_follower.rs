//! Keeps a process's hot cache on the recorded ring: reads `ring_state` (a one-row read) when a
//! change is notified (`LISTEN <schema>_ring`, sent in the transaction that changes the ring) and
//! on a slow poll as the fallback, installs a new placement the moment its state version changes,
//! and reports the version it applied, so `flk migrate` can wait until every live process writes
//! (or reads) the new way before it goes on. No restart is needed for any ring change.
//!
//! Until a ring is recorded (`flk migrate plan` records the first), the cache keeps the
//! configuration's ring. A poll that fails keeps the current placement and retries at the next
//! tick: the cache is best effort, and a migration step waits for this process to report anyway.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;
use crate::hot_cache::HotCache;
use crate::notify::RingListener;
use crate::store::ProjectionStore;

/// How often a follower polls by default, notified or not. A change normally arrives by
/// notification within milliseconds; the poll bounds how long one lost with a dropped
/// connection takes, and refreshes the follower's liveness for `flk migrate`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

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

/// How long a follower waits before opening a failed notification connection again.
const RELISTEN_AFTER: Duration = Duration::from_secs(5);

/// Follows the ring until `shutdown` resolves: polls at once when a change is notified, and
/// every `interval` anyway (to report as live, and to catch a change whose notification was lost
/// with a dropped connection).
pub async fn follow(
    store: ProjectionStore,
    cache: HotCache,
    follower_id: String,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener_opt: Option<RingListener> = None;
    let mut listen_again_at = tokio::time::Instant::now();
    let mut failing = false;
    tokio::pin!(shutdown);
    loop {
        if listener_opt.is_none() && tokio::time::Instant::now() >= listen_again_at {
            match store.listen_ring().await {
                Ok(listener) => listener_opt = Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for ring changes; polling only");
                    listen_again_at = tokio::time::Instant::now() + RELISTEN_AFTER;
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
            notified = changed(&mut listener_opt) => {
                if notified.is_none() {
                    tracing::warn!("ring change notifications stopped; listening again");
                    listener_opt = None;
                }
            }
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

/// The next notification, or never when there is no listener.
async fn changed(listener_opt: &mut Option<RingListener>) -> Option<()> {
    match listener_opt {
        Some(listener) => listener.changed().await,
        None => std::future::pending().await,
    }
}
