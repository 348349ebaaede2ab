//! Projector actor: folds decision events into Postgres, one transaction per partition batch (dedup,
//! audit log and offsets together, I4), then fills the Redis hot cache (after commit, I5) and wakes
//! the gateway requests waiting for those records.
//!
//! Ownership: on assignment a partition is claimed in Postgres, which bumps its owner epoch and
//! fences any previous owner (a stale process's next commit fails instead of double-applying).
//! Positions: Postgres `next_offset` is the truth; events below it are skipped by the store. Kafka
//! offsets are committed only after the Postgres commit, so Kafka is never ahead of Postgres and a
//! restart never skips an event.
//!
//! Pipelining (group commit): each owned partition is a lane with at most one transaction in
//! flight. The loop keeps consuming while transactions run; what arrives for a busy lane waits in
//! its buffer and goes into the lane's next transaction (up to `max_batch` events) as soon as the
//! current one commits. At low load every event is applied at once; under load batches grow by
//! themselves. Lanes never wait for each other: partitions are independent (own offsets row, own
//! audit chain, and a key lives in one partition).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::DecisionEvent;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::future::{BoxFuture, LocalBoxFuture, Shared};
use futures::stream::FuturesUnordered;
use infra::config::KafkaConfig;
use infra::failpoints::{Failpoints, points};
use infra::kafka;
use infra::metrics::Metrics;
use infra::tracing_context;
use projections::{Applied, Claim, ProjectionStore, StoreError};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use tracing::Instrument as _;

use crate::decision_bus::DecisionBus;
use crate::rebalance::{PartitionChange, RebalanceForwarder};
use crate::supervision::Heartbeat;

/// Consumer name recorded with the projection offsets.
pub const CONSUMER: &str = "flk-projector";

/// Buffered events (all lanes) per `max_batch` before the loop stops consuming (backpressure).
const BUFFERED_BATCHES: usize = 4;

/// Hot-cache fills running at once before the loop stops consuming (backpressure on Redis).
const MAX_SIDE_EFFECTS: usize = 256;

/// Something that wants the results of every committed batch (the hot cache, for instance).
pub trait AfterCommit: Send + Sync + std::fmt::Debug {
    /// Called after a batch committed; must not fail the projector (best effort).
    fn after_commit(&self, applied: &[Applied]) -> BoxFuture<'static, ()>;
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
    /// Most partition transactions in flight at once.
    pub max_transactions: usize,
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

/// One owned partition.
struct Lane {
    /// The Postgres claim every transaction presents.
    claim: Claim,
    /// Events consumed and not yet in a transaction, in offset order.
    buffered: Vec<(i64, DecisionEvent)>,
    /// When the lane's transaction in flight started (none in flight: `None`).
    applying_since_opt: Option<Instant>,
    /// When the oldest buffered event arrived (empty buffer: `None`); the lane waiting longest
    /// gets the next free transaction.
    waiting_since_opt: Option<Instant>,
    /// The lane's latest hot-cache fill; the next one runs after it, so a key's cache writes keep
    /// their commit order.
    side_effect_opt: Option<Shared<BoxFuture<'static, ()>>>,
}

/// What one transaction reports back to the loop.
struct Committed {
    /// Decisions partition.
    partition: i32,
    /// The claim epoch it was applied under (a lane claimed again since then ignores it).
    epoch: i64,
    /// Last decisions offset of the batch.
    last_offset: i64,
    /// Events applied.
    events: usize,
    /// The store's answer.
    result: Result<Vec<Applied>, StoreError>,
}

/// The loop's state between events.
struct Projector {
    deps: ProjectorDeps,
    /// `flk.decisions` with prefix.
    topic: String,
    consumer: StreamConsumer<RebalanceForwarder>,
    lanes: HashMap<i32, Lane>,
    /// Events in all lanes' buffers.
    buffered: usize,
    /// Transactions in flight (at most one per lane).
    applying: FuturesUnordered<LocalBoxFuture<'static, Committed>>,
    /// Hot-cache fills in flight.
    side_effects: FuturesUnordered<Shared<BoxFuture<'static, ()>>>,
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
    let buffer_limit = deps.max_batch.saturating_mul(BUFFERED_BATCHES);
    let mut projector = Projector {
        deps,
        topic,
        consumer,
        lanes: HashMap::new(),
        buffered: 0,
        applying: FuturesUnordered::new(),
        side_effects: FuturesUnordered::new(),
    };
    let mut idle = tokio::time::interval(Duration::from_millis(500));
    loop {
        let may_consume =
            projector.buffered < buffer_limit && projector.side_effects.len() < MAX_SIDE_EFFECTS;
        tokio::select! {
            received = projector.consumer.recv(), if may_consume => {
                let message = received.context("consuming decisions")?.detach();
                projector.apply_changes(&mut changes).await?;
                projector.buffer(message);
            }
            Some(committed) = projector.applying.next() => projector.committed(committed)?,
            Some(()) = projector.side_effects.next() => {}
            _ = idle.tick() => projector.apply_changes(&mut changes).await?,
        }
        projector.start_ready().await?;
        projector.beat();
    }
}

impl Projector {
    /// Claims newly assigned partitions in Postgres and forgets revoked ones (their buffered
    /// events are consumed again by the next owner; a transaction in flight is fenced or lands).
    async fn apply_changes(
        &mut self,
        changes: &mut tokio::sync::mpsc::UnboundedReceiver<PartitionChange>,
    ) -> anyhow::Result<()> {
        while let Ok(change) = changes.try_recv() {
            match change {
                PartitionChange::Assigned(list) => {
                    for partition in list {
                        let claim = self
                            .deps
                            .store
                            .claim_partition(CONSUMER, &self.topic, partition)
                            .await?;
                        tracing::info!(
                            partition,
                            next_offset = claim.next_offset,
                            epoch = claim.owner_epoch,
                            "partition claimed"
                        );
                        if let Some(old) = self.lanes.insert(partition, Lane::new(claim)) {
                            self.buffered -= old.buffered.len();
                        }
                    }
                }
                PartitionChange::Revoked(list) => {
                    for partition in list {
                        if let Some(old) = self.lanes.remove(&partition) {
                            self.buffered -= old.buffered.len();
                        }
                    }
                }
            }
            self.deps
                .metrics
                .partitions_owned
                .with_label_values(&["projector"])
                .set(self.lanes.len() as i64);
        }
        Ok(())
    }

    /// Puts a consumed event into its lane's buffer.
    fn buffer(&mut self, message: OwnedMessage) {
        let partition = message.partition();
        let Some(lane) = self.lanes.get_mut(&partition) else {
            tracing::debug!(partition, "event for an unowned partition ignored");
            return;
        };
        match message.payload().map(DecisionEvent::decode) {
            Some(Ok(event)) => {
                lane.waiting_since_opt.get_or_insert_with(Instant::now);
                lane.buffered.push((message.offset(), event));
                self.buffered += 1;
            }
            // A record that is not a decision cannot be projected; it is skipped loudly rather
            // than wedging the partition (the shard only writes valid envelopes).
            other => tracing::error!(
                partition,
                offset = message.offset(),
                error = ?other.map(|result| result.err()),
                "undecodable decision record skipped"
            ),
        }
    }

    /// Starts transactions for idle lanes with buffered events, longest waiting first, while
    /// fewer than `max_transactions` are in flight.
    async fn start_ready(&mut self) -> anyhow::Result<()> {
        let free = self
            .deps
            .max_transactions
            .saturating_sub(self.applying.len());
        if free == 0 {
            return Ok(());
        }
        let mut ready: Vec<(Instant, i32)> = self
            .lanes
            .iter()
            .filter(|(_, lane)| lane.applying_since_opt.is_none())
            .filter_map(|(partition, lane)| Some((lane.waiting_since_opt?, *partition)))
            .collect();
        ready.sort_unstable();
        for (_, partition) in ready.into_iter().take(free) {
            self.deps
                .failpoints
                .hit(points::PROJECTOR_BEFORE_COMMIT)
                .await?;
            let Some(lane) = self.lanes.get_mut(&partition) else {
                continue;
            };
            let take = lane.buffered.len().min(self.deps.max_batch);
            let batch: Vec<(i64, DecisionEvent)> = lane.buffered.drain(..take).collect();
            self.buffered -= take;
            if lane.buffered.is_empty() {
                lane.waiting_since_opt = None;
            } // else what stays behind keeps its age, and goes first once this batch commits.
            lane.applying_since_opt = Some(Instant::now());
            let store = self.deps.store.clone();
            let topic = self.topic.clone();
            let epoch = lane.claim.owner_epoch;
            let span = apply_span(partition, &batch);
            self.applying.push(
                async move {
                    let result = store
                        .apply_batch(CONSUMER, &topic, partition, epoch, &batch)
                        .instrument(span)
                        .await;
                    Committed {
                        partition,
                        epoch,
                        last_offset: batch.last().map_or(-1, |(offset, _)| *offset),
                        events: batch.len(),
                        result,
                    }
                }
                .boxed_local(),
            );
        }
        Ok(())
    }

    /// After a transaction: wake the waiters, fill the cache, let Kafka commit past the batch.
    fn committed(&mut self, committed: Committed) -> anyhow::Result<()> {
        let Committed {
            partition,
            epoch,
            last_offset,
            events,
            result,
        } = committed;
        let lane_opt = self
            .lanes
            .get_mut(&partition)
            .filter(|lane| lane.claim.owner_epoch == epoch);
        let applied = match (result, lane_opt.is_some()) {
            (Ok(applied), _) => applied,
            // Revoked (or claimed again) while in flight: the new owner has fenced it, fine.
            (Err(StoreError::Fenced { .. }), false) => return Ok(()),
            // Another owner claimed it (a rebalance we have not seen yet, or a rebuilt schema
            // swapped in). Restarting rejoins the group and re-claims from Postgres.
            (Err(error @ StoreError::Fenced { .. }), true) => return Err(error).context("fenced"),
            (Err(error), _) => return Err(error).context("applying decisions"),
        };
        for result in &applied {
            self.deps
                .metrics
                .decisions_applied
                .with_label_values(&[result.dedup_result.as_str()])
                .inc();
        }
        let side_effect_opt = self
            .deps
            .after_commit_opt
            .as_ref()
            .map(|after_commit| after_commit.after_commit(&applied));
        // Waiters only need the commit; the cache is best effort and comes after.
        self.deps.bus.publish_applied(applied);
        let Some(lane) = lane_opt else {
            // Committed for a partition this process no longer owns: its next owner stores the
            // Kafka offset.
            return Ok(());
        };
        lane.applying_since_opt = None;
        if let Some(side_effect) = side_effect_opt {
            let previous_opt = lane.side_effect_opt.take();
            let chained = async move {
                if let Some(previous) = previous_opt {
                    previous.await;
                }
                side_effect.await;
            }
            .boxed()
            .shared();
            lane.side_effect_opt = Some(chained.clone());
            self.side_effects.push(chained);
        }
        tracing::trace!(partition, events, last_offset, "batch committed");
        self.consumer
            .store_offset(&self.topic, partition, last_offset)?;
        Ok(())
    }

    /// Progress is "every transaction started before the beat has finished": the heartbeat is set
    /// to the start of the oldest transaction still in flight, so one stuck transaction (or a stuck
    /// failpoint) ages it past the watchdog's limit even while other lanes keep committing.
    fn beat(&self) {
        match self
            .lanes
            .values()
            .filter_map(|lane| lane.applying_since_opt)
            .min()
        {
            Some(oldest) => self.deps.heartbeat.beat_at(oldest),
            None => self.deps.heartbeat.beat(),
        }
    }
}

impl Lane {
    fn new(claim: Claim) -> Self {
        Lane {
            claim,
            buffered: Vec::new(),
            applying_since_opt: None,
            waiting_since_opt: None,
            side_effect_opt: None,
        }
    }
}
