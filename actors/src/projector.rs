//! Projector actor: folds decision events into Postgres, one transaction per partition batch (dedup,
//! audit log and offsets together, I4), then fills the Redis hot cache (after commit, I5) and wakes
//! the gateway requests waiting for those records.
//!
//! Ownership: on assignment a partition is claimed in Postgres, which bumps its owner epoch and
//! fences any previous owner (a stale process's next commit fails instead of double-applying).
//! Positions: Postgres `next_offset` is the truth; events below it are skipped by the store. Kafka
//! offsets are committed only after the Postgres commit, so Kafka is never ahead of Postgres and a
//! restart never skips an event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::DecisionEvent;
use infra::config::KafkaConfig;
use infra::failpoints::{Failpoints, points};
use infra::kafka;
use infra::metrics::Metrics;
use infra::tracing_context;
use projections::{Applied, Claim, ProjectionStore, StoreError};
use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use tracing::Instrument as _;

use crate::decision_bus::DecisionBus;
use crate::rebalance::{PartitionChange, RebalanceForwarder};
use crate::supervision::Heartbeat;

/// Consumer name recorded with the projection offsets.
pub const CONSUMER: &str = "flk-projector";

/// Something that wants the results of every committed batch (the hot cache, for instance).
pub trait AfterCommit: Send + Sync + std::fmt::Debug {
    /// Called after a batch committed; must not fail the projector (best effort).
    fn after_commit(&self, applied: &[Applied]) -> futures::future::BoxFuture<'static, ()>;
}

/// What a projector needs; cloned into each (re)start.
#[derive(Debug, Clone)]
pub struct ProjectorDeps {
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// The Postgres projections.
    pub store: ProjectionStore,
    /// Most events per transaction.
    pub max_batch: usize,
    /// Wakes waiting gateway requests in this process.
    pub bus: DecisionBus,
    /// Best-effort side effects after commit (hot cache).
    pub after_commit_opt: Option<Arc<dyn AfterCommit>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the supervisor.
    pub heartbeat: Heartbeat,
    /// Fault injection (tests).
    pub failpoints: Failpoints,
}

/// One span per applied batch: a child of the first traced decision's shard span, linked to the
/// others, so a record's trace runs from the gateway to its commit.
fn apply_span(partition: i32, batch: &[(i64, DecisionEvent)]) -> tracing::Span {
    let span = tracing::info_span!(
        "projector.apply_batch",
        otel.kind = "consumer",
        partition,
        events = batch.len(),
    );
    tracing_context::follow_batch(
        &span,
        batch
            .iter()
            .filter_map(|(_, event)| event.traceparent_opt.as_deref()),
    );
    span
}

/// The projector loop: runs until a store or Kafka error; the supervisor restarts it.
pub async fn run(deps: ProjectorDeps) -> anyhow::Result<()> {
    let topic = deps.kafka.decisions_topic();
    let (forwarder, mut changes) = RebalanceForwarder::channel();
    let consumer = kafka::consumer(&deps.kafka, &deps.kafka.group("flk-projector"), forwarder)?;
    consumer
        .subscribe(&[&topic])
        .context("subscribing to decisions")?;
    tracing::info!(topic = %topic, "projector consuming");
    let mut owned: HashMap<i32, Claim> = HashMap::new();
    let owned_gauge = deps
        .metrics
        .partitions_owned
        .with_label_values(&["projector"]);
    loop {
        // Wait for the first event, then take whatever else is already buffered.
        let first = tokio::select! {
            received = consumer.recv() => Some(received.context("consuming decisions")?.detach()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        deps.heartbeat.beat();
        while let Ok(change) = changes.try_recv() {
            match change {
                PartitionChange::Assigned(list) => {
                    for partition in list {
                        let claim = deps
                            .store
                            .claim_partition(CONSUMER, &topic, partition)
                            .await?;
                        tracing::info!(
                            partition,
                            next_offset = claim.next_offset,
                            epoch = claim.owner_epoch,
                            "partition claimed"
                        );
                        owned.insert(partition, claim);
                    }
                }
                PartitionChange::Revoked(list) => {
                    for partition in list {
                        owned.remove(&partition);
                    }
                }
            }
            owned_gauge.set(owned.len() as i64);
        }
        let Some(first) = first else { continue };
        let mut by_partition: BTreeMap<i32, Vec<(i64, DecisionEvent)>> = BTreeMap::new();
        let mut count = 0;
        let mut pending = Some(first);
        while let Some(message) = pending.take() {
            count += 1;
            match message.payload().map(DecisionEvent::decode) {
                Some(Ok(event)) => by_partition
                    .entry(message.partition())
                    .or_default()
                    .push((message.offset(), event)),
                // A record that is not a decision cannot be projected; it is skipped loudly rather
                // than wedging the partition (the shard only writes valid envelopes).
                other => tracing::error!(
                    partition = message.partition(),
                    offset = message.offset(),
                    error = ?other.map(|result| result.err()),
                    "undecodable decision record skipped"
                ),
            }
            if count < deps.max_batch {
                if let Some(Ok(next)) = futures::FutureExt::now_or_never(consumer.recv()) {
                    pending = Some(next.detach());
                }
            }
        }
        let mut round = Vec::with_capacity(by_partition.len());
        for (partition, batch) in by_partition {
            let Some(claim) = owned.get(&partition).copied() else {
                tracing::debug!(partition, "event for an unowned partition ignored");
                continue;
            };
            deps.failpoints.hit(points::PROJECTOR_BEFORE_COMMIT).await?;
            round.push((partition, claim, batch));
        }
        // Partitions are independent (own offsets row, own audit chain, and a key lives in one
        // partition), so their transactions run concurrently, each on its own pooled connection:
        // a request no longer waits for the commits of the partitions before its own.
        let results = futures::future::join_all(round.iter().map(|(partition, claim, batch)| {
            deps.store
                .apply_batch(CONSUMER, &topic, *partition, claim.owner_epoch, batch)
                .instrument(apply_span(*partition, batch))
        }))
        .await;
        let mut side_effects = Vec::new();
        for ((partition, _, batch), result) in round.iter().zip(results) {
            match result {
                Ok(applied) => {
                    for result in &applied {
                        deps.metrics
                            .decisions_applied
                            .with_label_values(&[result.dedup_result.as_str()])
                            .inc();
                    }
                    // Waiters first (they only need the commit), then the best-effort cache.
                    if let Some(after_commit) = &deps.after_commit_opt {
                        side_effects.push(after_commit.after_commit(&applied));
                    }
                    deps.bus.publish_applied(applied);
                    let last_offset = batch.last().map_or(-1, |(offset, _)| *offset);
                    consumer.store_offset(&topic, *partition, last_offset)?;
                }
                Err(error @ StoreError::Fenced { .. }) => {
                    // Another owner claimed it (a rebalance we have not seen yet, or a rebuilt
                    // schema swapped in). Restarting rejoins the group and re-claims from Postgres.
                    return Err(error).context("fenced");
                }
                Err(error) => return Err(error).context("applying decisions"),
            }
        }
        futures::future::join_all(side_effects).await;
    }
}
