//! `flk serve`: the composition root. Starts the roles this process runs (gateway, shard,
//! projector, replicator, anchorer, audit worker, demoter), each actor under an actix supervisor
//! and a heartbeat watchdog, and shuts them down gracefully on SIGINT or SIGTERM. The
//! cross-region actors (replicators, heartbeat emitter and observers) are wired in [`regions`].

mod regions;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Arbiter, Recipient, Supervisor};

use actix_web::{App, HttpServer, web};
use actors::anchorer::{Anchorer, AnchorerDeps};
use actors::audit_task_kinds::TaskContext;
use actors::audit_worker::{AuditWorker, AuditWorkerDeps};
use actors::contract::{Shutdown, StatusBoard};
use actors::decision_bus::DecisionBus;
use actors::demoter::{Demoter, DemoterDeps};
use actors::demotion::DemotionDeps;
use actors::projector::{Projector, ProjectorDeps};
use actors::shard::{OpenSource, Shard, ShardDeps};
use actors::supervision::{Heartbeat, OnExhausted, Supervision, SupervisorPolicy, Watchdog};
use anyhow::Context as _;
use events::checkpoint::NoteSigner;
use infra::config::{Config, KafkaConfig};
use infra::failpoints::Failpoints;
use infra::kafka::sink::KafkaSink;
use infra::log::LogError;
use infra::metrics::Metrics;
use projections::{HotCache, ProjectionStore};

use actors::hot_cache_fill::HotCacheFiller;
use gateway::http::{self, AppState};
use gateway::metrics_server::MetricsState;
use gateway::rate_limit::{AddressLimiter, RateLimiter};

/// A role a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Role {
    /// HTTP gateway.
    Gateway,
    /// Shard actors: submissions -> decisions.
    Shard,
    /// Projector actors: decisions -> Postgres + Redis.
    Projector,
    /// The anchorer: audit entries -> Merkle log -> signed checkpoints (one per region is
    /// enough; a second one only loses races and reloads, it never forks the tree).
    Anchorer,
    /// Audit workers: run `flk.audit.tasks` (time attestations, reports), the DLQ after retries.
    AuditWorker,
    /// The demoter: warm rows past their tenant's `warm_ttl` -> cold segments in the object store
    /// (a singleton by lease: a second one stands by).
    Demoter,
    /// Replicators: local submissions -> each `[[replication.targets]]` region's cluster.
    Replicator,
    /// The divergence checker: this region's dedup state against `[divergence]`'s region, on a
    /// timer (one per region).
    DivergenceChecker,
}

/// Opens the projection store in `schema` as the configuration describes it.
pub async fn open_store(config: &Config, schema: &str) -> anyhow::Result<ProjectionStore> {
    projections::open::store(config, schema)
        .await
        .with_context(|| format!("opening the projection store (schema {schema})"))
}

/// Runs the given roles until the process is stopped (SIGINT or SIGTERM), then shuts the actors
/// down gracefully (in-flight work finished, partitions released, groups left). Fails when an
/// actor used up its restart budget, so the process exits non-zero. Must run inside an actix
/// `System`.
pub async fn serve(
    config: Config,
    roles: HashSet<Role>,
    failpoints: Failpoints,
) -> anyhow::Result<()> {
    infra::kafka::ensure_topics(&config.kafka)
        .await
        .context("creating topics")?;
    // Each region creates the topics it reads, the mirrored ones included; a replicator of
    // another region produces into them (and retries until they exist).
    let mirrored = regions::mirrored_topics(&config);
    infra::kafka::create_topics(&config.kafka, &mirrored)
        .await
        .context("creating the mirrored submissions topics")?;
    infra::kafka::create_compacted_topics(
        &config.kafka,
        &regions::mirrored_checkpoint_topics(&config),
    )
    .await
    .context("creating the replication checkpoints topics")?;
    let store = open_store(&config, &config.postgres.schema).await?;
    let metrics = Metrics::new();
    metrics.initialize(config.tenants.keys().map(String::as_str));
    let bus = DecisionBus::default();
    let board = StatusBoard::default();
    let hot_cache = projections::open::hot_cache(&config)
        .context("configuring the redis hot tier")?
        .with_dual_write_errors(
            metrics
                .dedup_dual_write_errors
                .with_label_values(&[] as &[&str]),
        );
    // Gateways and projectors use the hot tier: they follow its recorded ring (`flk migrate`).
    let ring_follower_opt = (roles.contains(&Role::Gateway) || roles.contains(&Role::Projector))
        .then(|| {
            tokio::spawn(projections::ring_follower::follow(
                store.clone(),
                hot_cache.clone(),
                follower_id(&roles),
                projections::ring_follower::DEFAULT_POLL,
                std::future::pending(),
            ))
        });
    let (exhausted_tx, mut exhausted) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let on_exhausted: OnExhausted = Arc::new(move |role| {
        let _ = exhausted_tx.send(role);
    });
    let started = StartedActors::start(
        &config,
        &roles,
        Wiring {
            store: store.clone(),
            metrics: metrics.clone(),
            bus: bus.clone(),
            board: board.clone(),
            hot_cache: hot_cache.clone(),
            failpoints,
            on_exhausted,
        },
    )?;

    if let Some(listen) = &config.telemetry.metrics_listen_opt {
        start_metrics_listener(
            listen,
            MetricsState {
                metrics: metrics.clone(),
                board: board.clone(),
                basic_auth_opt: config.gateway.metrics_basic_auth_opt.clone(),
            },
        )?;
    }
    let running = async {
        if !roles.contains(&Role::Gateway) {
            tracing::info!(roles = ?roles, "running without gateway");
            return wait_for_stop_signal().await;
        }
        actix::spawn(forward_notifications(store.clone(), bus.clone()));
        let state = AppState {
            producer: infra::kafka::producer(&config.kafka, "flk-gateway")?,
            submissions_topic: config.kafka.submissions_topic(),
            bus,
            store,
            hot_cache,
            limiter: Arc::new(RateLimiter::new(config.tenants.iter().map(
                |(name, tenant)| (name.clone(), tenant.rate_per_second, tenant.rate_burst),
            ))),
            address_limiter: Arc::new(AddressLimiter::new(
                config.gateway.address_rate_per_second,
                config.gateway.address_rate_burst,
            )),
            tenant_names: Arc::new(config.tenants.keys().cloned().collect()),
            disabled_tenants: Arc::new(
                config
                    .tenants
                    .iter()
                    .filter(|(_, tenant)| !tenant.enabled)
                    .map(|(name, _)| name.clone())
                    .collect(),
            ),
            cold: projections::cold_objects::ColdReader::new(
                infra::objects::open(&config.object_store)
                    .context("opening the object store for cold reads")?,
                config.tiering.read_cache_segments,
            ),
            metrics,
            board,
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
        // actix-web stops on SIGINT and SIGTERM by itself, after finishing open requests.
        server.run().await.context("running the HTTP server")
    };
    let outcome = tokio::select! {
        outcome = running => outcome,
        Some(role) = exhausted.recv() => Err(anyhow::anyhow!(
            "the {role} actor used up its restart budget ({} restarts within {} s); exiting",
            config.supervision.restart_budget,
            config.supervision.restart_window_secs
        )),
    };
    started.shutdown().await;
    if let Some(follower) = ring_follower_opt {
        follower.abort();
    }
    outcome
}

/// How this process names itself to `flk migrate`: host, pid, start time and roles.
fn follower_id(roles: &HashSet<Role>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    let mut names: Vec<String> = roles
        .iter()
        .map(|role| format!("{role:?}").to_lowercase())
        .collect();
    names.sort();
    format!(
        "{host}/{}/{}/{}",
        std::process::id(),
        infra::clock::now_ms(),
        names.join(",")
    )
}

/// What the actors of a process share.
struct Wiring {
    store: ProjectionStore,
    metrics: Metrics,
    bus: DecisionBus,
    board: StatusBoard,
    hot_cache: HotCache,
    failpoints: Failpoints,
    on_exhausted: OnExhausted,
}

/// The actors this process started, for the watchdog and the shutdown.
struct StartedActors {
    /// Each actor's shutdown handle, by role.
    shutdowns: Vec<(&'static str, Recipient<Shutdown>)>,
    /// The thread the shard actors run on (the others share the system thread).
    shard_arbiter_opt: Option<Arbiter>,
    /// Keeps the watchdog running.
    _watchdog: Addr<Watchdog>,
}

impl StartedActors {
    /// Starts the shard and projector roles asked for, each under a supervisor, and a watchdog
    /// over their heartbeats.
    fn start(config: &Config, roles: &HashSet<Role>, wiring: Wiring) -> anyhow::Result<Self> {
        let policy = SupervisorPolicy::from_config(&config.supervision);
        let revoke_timeout = Duration::from_millis(config.supervision.revoke_timeout_ms);
        let supervision = |role: &'static str| {
            Supervision::new(
                role,
                policy.clone(),
                wiring.metrics.actor_restarts.with_label_values(&[role]),
                wiring.on_exhausted.clone(),
            )
        };
        let mut watched = Vec::new();
        let mut shutdowns = Vec::new();
        let mut shard_arbiter_opt: Option<Arbiter> = None;
        let mut region_actors = regions::RegionActors::default();
        if roles.contains(&Role::Shard) {
            regions::start_heartbeat_observers(config, &wiring.metrics, &mut region_actors);
            // Local submissions, and the mirrored submissions of each origin region, which are
            // decided like local ones by a consumer group of their own.
            let mut sources = vec![("shard".to_owned(), config.kafka.submissions_topic())];
            sources.extend(config.replication.origins.iter().map(|origin| {
                (
                    format!("shard-{origin}"),
                    config.kafka.mirrored_submissions_topic(origin),
                )
            }));
            for (role, topic) in sources {
                let heartbeat = Heartbeat::default();
                let group = format!("flk-{role}");
                let deps = ShardDeps {
                    role,
                    open_source: open_source(&config.kafka, &group, topic, revoke_timeout),
                    sink: Arc::new(KafkaSink::new(&config.kafka, &group)?),
                    decisions_topic: config.kafka.decisions_topic(),
                    region: config.region.clone(),
                    tenants: Arc::new(config.tenant_policies()?),
                    max_body_bytes: config.gateway.max_body_bytes,
                    metrics: wiring.metrics.clone(),
                    heartbeat: heartbeat.clone(),
                    board: wiring.board.clone(),
                    failpoints: wiring.failpoints.clone(),
                };
                let shard_supervision = supervision("shard");
                // Deciding (parsing, verifying a signature) takes a core of its own under load;
                // on the system thread it would take turns with the projector's transactions.
                let arbiter = shard_arbiter_opt.get_or_insert_with(Arbiter::new);
                let shard = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                    Shard::new(deps, shard_supervision)
                });
                watched.push(("shard", heartbeat, shard.clone().recipient()));
                shutdowns.push(("shard", shard.recipient()));
            }
        }
        if roles.contains(&Role::Replicator) {
            regions::start_replication(
                config,
                &wiring.metrics,
                &wiring.board,
                &supervision,
                revoke_timeout,
                &mut region_actors,
            )?;
        }
        if roles.contains(&Role::DivergenceChecker) {
            regions::start_divergence_checker(
                config,
                &wiring.store,
                &wiring.metrics,
                &mut region_actors,
            )?;
        }
        watched.append(&mut region_actors.watched);
        shutdowns.append(&mut region_actors.shutdowns);
        if roles.contains(&Role::Projector) {
            let heartbeat = Heartbeat::default();
            let deps = ProjectorDeps {
                open_source: open_source(
                    &config.kafka,
                    "flk-projector",
                    config.kafka.decisions_topic(),
                    revoke_timeout,
                ),
                topic: config.kafka.decisions_topic(),
                store: Arc::new(wiring.store.clone()),
                max_batch: config.projector.max_batch,
                max_transactions: config.projector.max_transactions,
                bus: wiring.bus.clone(),
                after_commit_opt: Some(Arc::new(HotCacheFiller {
                    cache: wiring.hot_cache.clone(),
                })),
                metrics: wiring.metrics.clone(),
                heartbeat: heartbeat.clone(),
                board: wiring.board.clone(),
                failpoints: wiring.failpoints.clone(),
            };
            let supervision = supervision("projector");
            let projector = Supervisor::start(move |_| Projector::new(deps, supervision));
            watched.push(("projector", heartbeat, projector.clone().recipient()));
            shutdowns.push(("projector", projector.recipient()));
        }
        if roles.contains(&Role::Anchorer) {
            let heartbeat = Heartbeat::default();
            let origin = config.audit.origin(&config.region);
            let seed = config
                .audit
                .signing_seed()?
                .context("the anchorer needs audit.signing_key_file_opt")?;
            let deps = AnchorerDeps {
                store: wiring.store.clone(),
                signer: Arc::new(NoteSigner::new(&origin, &seed)?),
                origin,
                interval: Duration::from_millis(config.audit.anchor_interval_ms),
                max_round_leaves: config.audit.max_round_leaves,
                metrics: wiring.metrics.clone(),
                heartbeat: heartbeat.clone(),
                board: wiring.board.clone(),
                objects_opt: Some(
                    infra::objects::open(&config.object_store)
                        .context("opening the object store for checkpoints")?,
                ),
                object_prefix: config.postgres.schema.clone(),
                attest_tasks_opt: match &config.audit.tsa_url_opt {
                    Some(_) => Some((
                        Arc::new(KafkaSink::new(&config.kafka, "flk-anchorer")?)
                            as Arc<dyn infra::log::LogSink>,
                        config.kafka.audit_tasks_topic(),
                    )),
                    None => None,
                },
            };
            let supervision = supervision("anchorer");
            let anchorer = Supervisor::start(move |_| Anchorer::new(deps, supervision));
            watched.push(("anchorer", heartbeat, anchorer.clone().recipient()));
            shutdowns.push(("anchorer", anchorer.recipient()));
        }
        if roles.contains(&Role::AuditWorker) {
            let heartbeat = Heartbeat::default();
            let tsa_opt = match &config.audit.tsa_url_opt {
                Some(url) => Some(infra::tsa::TsaClient::new(
                    url,
                    Duration::from_millis(config.audit.tsa_timeout_ms),
                )?),
                None => None,
            };
            let deps = AuditWorkerDeps {
                open_source: open_source(
                    &KafkaConfig {
                        fetch_wait_max_ms: BACKGROUND_FETCH_WAIT_MS,
                        ..config.kafka.clone()
                    },
                    actors::audit_worker::GROUP,
                    config.kafka.audit_tasks_topic(),
                    revoke_timeout,
                ),
                sink: Arc::new(KafkaSink::new(&config.kafka, actors::audit_worker::GROUP)?),
                dlq_topic: config.kafka.audit_dlq_topic(),
                context: TaskContext {
                    store: wiring.store.clone(),
                    tsa_opt,
                    objects_opt: Some(
                        infra::objects::open(&config.object_store)
                            .context("opening the object store for reports")?,
                    ),
                    object_prefix: config.postgres.schema.clone(),
                },
                retry: config.audit.clone(),
                metrics: wiring.metrics.clone(),
                heartbeat: heartbeat.clone(),
                board: wiring.board.clone(),
            };
            let supervision = supervision("audit_worker");
            let worker = Supervisor::start(move |_| AuditWorker::new(deps, supervision));
            watched.push(("audit_worker", heartbeat, worker.clone().recipient()));
            shutdowns.push(("audit_worker", worker.recipient()));
        }
        if roles.contains(&Role::Demoter) {
            let heartbeat = Heartbeat::default();
            let deps = DemoterDeps {
                demotion: demotion_deps(config, wiring.store.clone(), wiring.metrics.clone())?,
                owner: format!(
                    "{}-{}-{}",
                    config.region,
                    std::process::id(),
                    start_suffix()
                ),
                interval: Duration::from_millis(config.tiering.demote_interval_ms),
                heartbeat: heartbeat.clone(),
                board: wiring.board.clone(),
            };
            let supervision = supervision("demoter");
            let demoter = Supervisor::start(move |_| Demoter::new(deps, supervision));
            watched.push(("demoter", heartbeat, demoter.clone().recipient()));
            shutdowns.push(("demoter", demoter.recipient()));
        }
        let watchdog = actix::Actor::start(Watchdog::new(
            watched,
            Duration::from_millis(config.supervision.stuck_after_ms),
        ));
        Ok(StartedActors {
            shutdowns,
            shard_arbiter_opt,
            _watchdog: watchdog,
        })
    }

    /// Asks every actor to finish its work and leave its group, shards first (their last
    /// decisions then still reach a running projector), each bounded in time.
    async fn shutdown(self) {
        for (role, actor) in self.shutdowns {
            tracing::info!(actor = role, "shutting down");
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, actor.send(Shutdown))
                .await
                .is_err()
            {
                tracing::warn!(actor = role, "shutdown timed out");
            }
        }
        if let Some(arbiter) = self.shard_arbiter_opt {
            arbiter.stop();
        }
    }
}

/// What a demotion cycle needs, from the configuration (the actor and `flk tier demote`).
pub fn demotion_deps(
    config: &Config,
    store: ProjectionStore,
    metrics: Metrics,
) -> anyhow::Result<DemotionDeps> {
    Ok(DemotionDeps {
        store,
        objects: infra::objects::open(&config.object_store)
            .context("opening the object store for cold segments")?,
        object_prefix: config.postgres.schema.clone(),
        tiering: config.tiering.clone(),
        policies: config
            .tenants
            .iter()
            .map(|(name, tenant)| (name.clone(), tenant.tiering.clone()))
            .collect(),
        metrics,
    })
}

/// A suffix that makes a lease owner id unique per start (the clock's nanoseconds).
fn start_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}

/// Longest a fetch of the audit worker waits on the broker for tasks. Tasks are background work
/// retried over seconds; with the pipeline's 5 ms, an idle worker sent the broker 200 fetches a
/// second, a third of all fetches at 1,000 records/s (docs/benchmarks.md).
const BACKGROUND_FETCH_WAIT_MS: u64 = 500;

/// Longest graceful shutdown of one actor.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a fresh Kafka subscription of `group` to `topic` on every call (every actor start).
fn open_source(
    kafka: &KafkaConfig,
    group: &str,
    topic: String,
    revoke_timeout: Duration,
) -> OpenSource {
    let kafka = kafka.clone();
    let group = kafka.group(group);
    Arc::new(move || {
        infra::kafka::source::subscribe(&kafka, &group, &topic, revoke_timeout)
            .map_err(|error| LogError::Fatal(error.to_string()))
    })
}

/// Resolves on SIGINT or SIGTERM.
/// Serves `/metrics`, `/debug/actors` and `/health` on `listen` until the process stops (the
/// process's own signal handling stops it). Prints `flk: metrics on http://<address>`, which
/// scripts and tests read to learn a port picked with `:0`.
fn start_metrics_listener(listen: &str, state: MetricsState) -> anyhow::Result<()> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(gateway::metrics_server::configure)
    })
    .workers(1)
    .disable_signals()
    .bind(listen)
    .with_context(|| format!("binding the metrics listener {listen}"))?;
    for address in server.addrs() {
        println!("flk: metrics on http://{address}");
        tracing::info!(%address, "metrics listening");
    }
    actix::spawn(async move {
        if let Err(error) = server.run().await {
            tracing::error!(error = %error, "metrics listener stopped");
        }
    });
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for ctrl-c"),
        _ = terminate.recv() => Ok(()),
    }
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
