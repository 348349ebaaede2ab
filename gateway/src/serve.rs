//! `flk serve`: the composition root. Starts the roles this process runs (gateway, shard,
//! projector), each actor under an actix supervisor and a heartbeat watchdog.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::Supervisor;
use actix_web::{App, HttpServer, web};
use actors::decision_bus::DecisionBus;
use actors::projector::ProjectorDeps;
use actors::shard::ShardDeps;
use actors::supervision::{Heartbeat, LoopActor, Watchdog};
use anyhow::Context as _;
use futures::FutureExt as _;
use infra::config::Config;
use infra::failpoints::Failpoints;
use infra::metrics::Metrics;
use projections::{HotCache, HotCacheConfig, ProjectionStore, StoreOptions, TenantTtl};

use crate::hot_tier::HotCacheFiller;
use crate::http::{self, AppState};
use crate::rate_limit::RateLimiter;

/// A role a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// HTTP gateway.
    Gateway,
    /// Shard actors: submissions -> decisions.
    Shard,
    /// Projector actors: decisions -> Postgres + Redis.
    Projector,
}

/// Opens the projection store with the tenants' dedup TTLs.
pub async fn open_store(config: &Config, schema: &str) -> anyhow::Result<ProjectionStore> {
    let per_tenant_ms: HashMap<String, i64> = config
        .tenants
        .iter()
        .map(|(name, tenant)| (name.clone(), tenant.dedup_ttl_secs as i64 * 1000))
        .collect();
    let options = StoreOptions {
        pool_size: config.postgres.pool_size,
        dedup_ttl: TenantTtl {
            per_tenant_ms,
            ..TenantTtl::default()
        },
        ..StoreOptions::default()
    };
    ProjectionStore::connect_with(&config.postgres.url, schema, options)
        .await
        .with_context(|| format!("opening the projection store (schema {schema})"))
}

/// The Redis hot tier with each tenant's hot TTL.
pub fn open_hot_cache(config: &Config) -> anyhow::Result<HotCache> {
    let mut cache_config =
        HotCacheConfig::new(config.redis.urls.clone(), config.redis.key_prefix.clone());
    cache_config.ttl.per_tenant_ms = config
        .tenants
        .iter()
        .map(|(name, tenant)| (name.clone(), tenant.hot_ttl_secs as i64 * 1000))
        .collect();
    HotCache::new(cache_config).context("configuring the redis hot tier")
}

/// Runs the given roles until the process is stopped. Must run inside an actix `System`.
pub async fn serve(
    config: Config,
    roles: HashSet<Role>,
    failpoints: Failpoints,
) -> anyhow::Result<()> {
    infra::kafka::ensure_topics(&config.kafka)
        .await
        .context("creating topics")?;
    let store = open_store(&config, &config.postgres.schema).await?;
    let metrics = Metrics::new();
    let bus = DecisionBus::default();
    let tenants = Arc::new(config.tenant_policies()?);
    let hot_cache = open_hot_cache(&config)?;
    let mut watched = Vec::new();

    if roles.contains(&Role::Shard) {
        let heartbeat = Heartbeat::default();
        let deps = ShardDeps {
            kafka: config.kafka.clone(),
            region: config.region.clone(),
            tenants: tenants.clone(),
            max_body_bytes: config.gateway.max_body_bytes,
            metrics: metrics.clone(),
            heartbeat: heartbeat.clone(),
            failpoints: failpoints.clone(),
        };
        let restarts = metrics.actor_restarts.with_label_values(&["shard"]);
        let beat = heartbeat.clone();
        let shard = Supervisor::start(move |_| {
            LoopActor::new("shard", beat, restarts, move || {
                actors::shard::run(deps.clone()).boxed_local()
            })
        });
        watched.push(("shard", heartbeat, shard.recipient()));
    }
    if roles.contains(&Role::Projector) {
        let heartbeat = Heartbeat::default();
        let deps = ProjectorDeps {
            kafka: config.kafka.clone(),
            store: store.clone(),
            max_batch: config.projector.max_batch,
            max_transactions: config.projector.max_transactions,
            bus: bus.clone(),
            after_commit_opt: Some(Arc::new(HotCacheFiller {
                cache: hot_cache.clone(),
            })),
            metrics: metrics.clone(),
            heartbeat: heartbeat.clone(),
            failpoints: failpoints.clone(),
        };
        let restarts = metrics.actor_restarts.with_label_values(&["projector"]);
        let beat = heartbeat.clone();
        let projector = Supervisor::start(move |_| {
            LoopActor::new("projector", beat, restarts, move || {
                actors::projector::run(deps.clone()).boxed_local()
            })
        });
        watched.push(("projector", heartbeat, projector.recipient()));
    }
    let _watchdog = actix::Actor::start(Watchdog::new(
        watched,
        Duration::from_millis(config.supervision.stuck_after_ms),
    ));

    if !roles.contains(&Role::Gateway) {
        tracing::info!(roles = ?roles, "running without gateway");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        return Ok(());
    }
    actix::spawn(forward_notifications(store.clone(), bus.clone()));
    let state = AppState {
        producer: infra::kafka::producer(&config.kafka)?,
        submissions_topic: config.kafka.submissions_topic(),
        bus,
        store,
        hot_cache,
        limiter: Arc::new(RateLimiter::new(config.tenants.iter().map(
            |(name, tenant)| (name.clone(), tenant.rate_per_second, tenant.rate_burst),
        ))),
        tenant_names: Arc::new(config.tenants.keys().cloned().collect()),
        metrics,
        config: config.gateway.clone(),
    };
    let data = web::Data::new(state);
    let mut server =
        HttpServer::new(move || App::new().app_data(data.clone()).configure(http::configure))
            .bind(&config.gateway.listen)
            .with_context(|| format!("binding {}", config.gateway.listen))?
            .shutdown_timeout(5);
    if config.gateway.workers > 0 {
        server = server.workers(config.gateway.workers);
    }
    for address in server.addrs() {
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("flk: listening on http://{address}");
        tracing::info!(%address, "gateway listening");
    }
    server.run().await.context("running the HTTP server")
}

/// Wakes local waiters for decisions committed by any projector (Postgres NOTIFY), reconnecting
/// with backoff when Postgres goes away.
async fn forward_notifications(store: ProjectionStore, bus: DecisionBus) {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.listen_decided().await {
            Ok(mut listener) => {
                delay = Duration::from_millis(100);
                while let Some(source) = listener.next().await {
                    bus.publish_committed(source);
                }
                tracing::warn!("decision notifications ended; reconnecting");
            }
            Err(error) => tracing::warn!(error = %error, "cannot listen for decisions; retrying"),
        }
        actix::clock::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
