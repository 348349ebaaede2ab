//! The Redis hot tier as the projector's after-commit side effect (never before the commit: Redis
//! is never ahead of Postgres). Redis is best effort: its errors are logged, never fail the
//! projector.

use futures::FutureExt as _;
use futures::future::BoxFuture;
use projections::{Applied, CacheEntry, HotCache};

/// Fills the hot cache after each committed batch (never before: I5).
#[derive(Debug, Clone)]
pub struct HotCacheFiller {
    /// The cache.
    pub cache: HotCache,
}

impl crate::projector::AfterCommit for HotCacheFiller {
    fn after_commit(&self, applied: &[Applied]) -> BoxFuture<'static, ()> {
        let entries: Vec<CacheEntry> = applied
            .iter()
            .filter_map(CacheEntry::from_applied)
            .collect();
        let cache = self.cache.clone();
        async move {
            if entries.is_empty() {
                return;
            }
            if let Err(error) = cache.put_many(&entries).await {
                tracing::warn!(error = %error, "hot cache not filled (redis is best effort)");
            }
        }
        .boxed()
    }
}
