//! The cross-region part of `flk serve`: for each `[[replication.targets]]` region, a replicator
//! of the submissions and one of the heartbeats, plus this region's heartbeat emitter (role
//! `replicator`); for each `[replication] origins` region, a heartbeat observer (role `shard`,
//! beside the shard group that decides that origin's mirrored submissions); the divergence
//! checker (role `divergence-checker`, with `[divergence]`).

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Recipient, Supervisor};
use actors::contract::Shutdown;
use actors::divergence_checker::{DivergenceChecker, DivergenceCheckerDeps};
use actors::heartbeat_emitter::{HEARTBEAT_INTERVAL, HeartbeatEmitter, HeartbeatEmitterDeps};
use actors::heartbeat_observer::{HeartbeatObserver, HeartbeatObserverDeps};
use actors::replicator::{
    OpenSink, OpenSourceFrom, Prepare, Replicator, ReplicatorDeps, TenantFilter,
};
use actors::supervision::{Heartbeat, Restart, Supervision};
use infra::config::{Config, KafkaConfig, ReplicationMode, ReplicationTarget};
use infra::kafka::sink::KafkaSink;
use infra::log::{LogError, LogSink};
use infra::metrics::Metrics;

/// `client.id` of the replicators' producers to the remote clusters.
const REPLICATOR_CLIENT: &str = "flk-replicator";

/// Longest a replicator's start waits for the target's checkpoints and partition counts.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

/// Actors started here, for the watchdog and the shutdown.
#[derive(Default)]
pub(super) struct RegionActors {
    /// Supervised actors with a progress heartbeat.
    pub watched: Vec<(&'static str, Heartbeat, Recipient<Restart>)>,
    /// Every actor's shutdown handle.
    pub shutdowns: Vec<(&'static str, Recipient<Shutdown>)>,
}

/// Starts the replicators to every target and the heartbeat emitter.
pub(super) fn start_replication(
    config: &Config,
    metrics: &Metrics,
    board: &actors::contract::StatusBoard,
    supervision: &dyn Fn(&'static str) -> Supervision,
    revoke_timeout: Duration,
    started: &mut RegionActors,
) -> anyhow::Result<()> {
    if config.replication.targets.is_empty() {
        return Ok(());
    }
    let emitter = HeartbeatEmitter::new(HeartbeatEmitterDeps {
        sink: Arc::new(KafkaSink::new(&config.kafka, "flk-heartbeats")?),
        topic: config.kafka.heartbeats_topic(),
        region: config.region.clone(),
        interval: HEARTBEAT_INTERVAL,
        metrics: metrics.clone(),
    })
    .start();
    started
        .shutdowns
        .push(("heartbeat-emitter", emitter.recipient()));
    for target in &config.replication.targets {
        let remote = target.kafka(&config.kafka);
        let streams = [
            (
                "submissions",
                config.kafka.submissions_topic(),
                remote.mirrored_submissions_topic(&config.region),
                tenant_filter(target),
            ),
            (
                // Heartbeats carry no tenant: every one is shipped.
                "heartbeats",
                config.kafka.heartbeats_topic(),
                remote.mirrored_heartbeats_topic(&config.region),
                TenantFilter::All,
            ),
        ];
        for (stream, local_topic, remote_topic, tenants) in streams {
            let heartbeat = Heartbeat::default();
            let group = match stream {
                "submissions" => format!("flk-replicator-{}", target.region),
                _ => format!("flk-replicator-{}-{stream}", target.region),
            };
            let checkpoint_topic = remote.mirrored_checkpoints_topic(&config.region);
            let deps = ReplicatorDeps {
                open_source: open_source_from(config, &group, &local_topic, revoke_timeout),
                prepare: prepare(
                    config,
                    &local_topic,
                    &remote,
                    &remote_topic,
                    &checkpoint_topic,
                    stream,
                ),
                open_sink: open_sink(&remote)?,
                local_region: config.region.clone(),
                remote_region: target.region.clone(),
                stream,
                remote_topic,
                checkpoint_topic,
                tenants,
                metrics: metrics.clone(),
                heartbeat: heartbeat.clone(),
                board: board.clone(),
            };
            let supervision = supervision("replicator");
            let replicator = Supervisor::start(move |_| Replicator::new(deps, supervision));
            started
                .watched
                .push(("replicator", heartbeat, replicator.clone().recipient()));
            started
                .shutdowns
                .push(("replicator", replicator.recipient()));
        }
    }
    Ok(())
}

/// Starts a heartbeat observer per origin region.
pub(super) fn start_heartbeat_observers(
    config: &Config,
    metrics: &Metrics,
    started: &mut RegionActors,
) {
    for origin in &config.replication.origins {
        let kafka = config.kafka.clone();
        let topic = config.kafka.mirrored_heartbeats_topic(origin);
        let client_id = format!("flk-heartbeats-{origin}");
        let observer = HeartbeatObserver::new(HeartbeatObserverDeps {
            open_tail: Arc::new(move || infra::kafka::tail::follow(&kafka, &topic, &client_id)),
            origin: origin.clone(),
            metrics: metrics.clone(),
        })
        .start();
        started
            .shutdowns
            .push(("heartbeat-observer", observer.recipient()));
    }
}

/// Starts the divergence checker against `[divergence]`'s region.
pub(super) fn start_divergence_checker(
    config: &Config,
    store: &projections::ProjectionStore,
    metrics: &Metrics,
    started: &mut RegionActors,
) -> anyhow::Result<()> {
    let settings = &config.divergence;
    let remote = projections::ProjectionStore::connect_lazy(
        &settings.remote_postgres_url,
        &settings.remote_schema,
        projections::store::StoreOptions::default(),
    )
    .map_err(|error| anyhow::anyhow!("[divergence] remote store: {error}"))?;
    let checker = DivergenceChecker::new(DivergenceCheckerDeps {
        local: store.clone(),
        local_region: config.region.clone(),
        local_topic_prefix: config.kafka.topic_prefix.clone(),
        remote,
        remote_region: settings.remote_region.clone(),
        remote_topic_prefix: settings
            .remote_topic_prefix_opt
            .clone()
            .unwrap_or_else(|| config.kafka.topic_prefix.clone()),
        interval: Duration::from_millis(settings.interval_ms),
        settle_ms: i64::try_from(settings.settle_ms).unwrap_or(i64::MAX),
        leaf_keys: i64::from(settings.leaf_keys),
        metrics: metrics.clone(),
    })
    .start();
    started
        .shutdowns
        .push(("divergence-checker", checker.recipient()));
    Ok(())
}

/// Subscribes `group` to `topic`, each partition starting no earlier than its checkpoint.
fn open_source_from(
    config: &Config,
    group: &str,
    topic: &str,
    revoke_timeout: Duration,
) -> OpenSourceFrom {
    let kafka = config.kafka.clone();
    let group = kafka.group(group);
    let topic = topic.to_owned();
    Arc::new(move |checkpoints| {
        infra::kafka::source::subscribe_from(&kafka, &group, &topic, revoke_timeout, checkpoints)
            .map_err(|error| LogError::Fatal(error.to_string()))
    })
}

/// Before each start: the same partition count on both sides, then the checkpoints this
/// region's `stream` replicator left in the target cluster.
fn prepare(
    config: &Config,
    local_topic: &str,
    remote: &KafkaConfig,
    remote_topic: &str,
    checkpoint_topic: &str,
    stream: &'static str,
) -> Prepare {
    let (local, remote) = (config.kafka.clone(), remote.clone());
    let region = config.region.clone();
    let (local_topic, remote_topic, checkpoint_topic) = (
        local_topic.to_owned(),
        remote_topic.to_owned(),
        checkpoint_topic.to_owned(),
    );
    Arc::new(move || {
        let (local, remote, region) = (local.clone(), remote.clone(), region.clone());
        let (local_topic, remote_topic, checkpoint_topic) = (
            local_topic.clone(),
            remote_topic.clone(),
            checkpoint_topic.clone(),
        );
        Box::pin(async move {
            use infra::kafka::checkpoints;
            checkpoints::check_partitions(
                &local,
                &local_topic,
                &remote,
                &remote_topic,
                PREPARE_TIMEOUT,
            )
            .await?;
            Ok(
                checkpoints::read(&remote, &checkpoint_topic, &region, stream, PREPARE_TIMEOUT)
                    .await?,
            )
        })
    })
}

/// The topics this region reads that other regions write: each origin's mirrored submissions
/// and heartbeats.
pub(super) fn mirrored_topics(config: &Config) -> Vec<(String, i32)> {
    config
        .replication
        .origins
        .iter()
        .flat_map(|origin| {
            [
                (
                    config.kafka.mirrored_submissions_topic(origin),
                    config.kafka.partitions,
                ),
                (config.kafka.mirrored_heartbeats_topic(origin), 1),
            ]
        })
        .collect()
}

/// The compacted topics other regions' replicators keep their checkpoints in, one per origin.
pub(super) fn mirrored_checkpoint_topics(config: &Config) -> Vec<(String, i32)> {
    config
        .replication
        .origins
        .iter()
        .map(|origin| (config.kafka.mirrored_checkpoints_topic(origin), 1))
        .collect()
}

fn tenant_filter(target: &ReplicationTarget) -> TenantFilter {
    match target.mode {
        ReplicationMode::Full => TenantFilter::All,
        ReplicationMode::Selective => TenantFilter::Only(target.tenants.iter().cloned().collect()),
    }
}

/// A new producer to `remote` per replicator start (checked once now, so a bad setting fails
/// the start rather than the first record).
fn open_sink(remote: &KafkaConfig) -> anyhow::Result<OpenSink> {
    drop(KafkaSink::new(remote, REPLICATOR_CLIENT)?);
    let remote = remote.clone();
    Ok(Arc::new(move || {
        Ok(Arc::new(
            KafkaSink::new(&remote, REPLICATOR_CLIENT)
                .map_err(|error| LogError::Fatal(error.to_string()))?,
        ) as Arc<dyn LogSink>)
    }))
}
