//! Opening the projections the way the configuration describes them (one place, so `flk serve`,
//! `flk replay` and `flk state-hash` agree: a rebuild with other TTLs would not hash the same).

use std::collections::HashMap;

use infra::config::Config;

use crate::StoreError;
use crate::hot_cache::{CacheError, HotCache, HotCacheConfig};
use crate::model::TenantTtl;
use crate::store::{ProjectionStore, StoreOptions};

/// The projection store in `schema`, with the tenants' dedup TTLs and the configured pool.
pub async fn store(config: &Config, schema: &str) -> Result<ProjectionStore, StoreError> {
    let options = StoreOptions {
        pool_size: config.postgres.pool_size,
        dedup_ttl: TenantTtl {
            per_tenant_ms: per_tenant_ms(config, |tenant| tenant.dedup_ttl_secs),
            ..TenantTtl::default()
        },
        ..StoreOptions::default()
    };
    ProjectionStore::connect_with(&config.postgres.url, schema, options).await
}

/// The Redis hot tier with each tenant's hot TTL.
pub fn hot_cache(config: &Config) -> Result<HotCache, CacheError> {
    let mut cache_config =
        HotCacheConfig::new(config.redis.urls.clone(), config.redis.key_prefix.clone());
    cache_config.ttl.per_tenant_ms = per_tenant_ms(config, |tenant| tenant.hot_ttl_secs);
    HotCache::new(cache_config)
}

fn per_tenant_ms(
    config: &Config,
    seconds: impl Fn(&infra::config::TenantConfig) -> u64,
) -> HashMap<String, i64> {
    config
        .tenants
        .iter()
        .map(|(name, tenant)| (name.clone(), seconds(tenant) as i64 * 1000))
        .collect()
}
