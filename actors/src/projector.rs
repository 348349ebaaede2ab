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
//! its buffer. Whenever fewer than `max_transactions` are in flight, a new one takes the idle
//! lanes with buffered events, longest waiting first, up to `max_batch` events: at low load an
//! event is applied at once, under load batches grow by themselves, and after a stall the backlog
//! of every partition drains in one commit instead of one per partition (which is what kept the
//! latency tail long). Partitions stay independent inside a transaction (own offsets row, fencing
//! and audit chain; a key lives in one partition).

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
use projections::{Applied, Claim, PartitionBatch, ProjectionStore, StoreError};
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

/// One partition's part of a transaction.
struct LaneBatch {
    /// Decisions partition.
    partition: i32,
    /// The claim epoch it is applied under (a lane claimed again since then ignores the result).
    epoch: i64,
    /// The events, handed back so a transaction rolled back by another lane's fencing can
    /// return them to their lanes.
    events: Vec<(i64, DecisionEvent)>,
}

/// What one transaction reports back to the loop.
struct Committed {
    /// Its partitions' batches.
    batches: Vec<LaneBatch>,
    /// The store's answers, one list per batch.
    result: Result<Vec<Vec<Applied>>, StoreError>,
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
    /// Transactions in flight (at most `max_transactions`; a lane is in at most one).
    applying: FuturesUnordered<LocalBoxFuture<'static, Committed>>,
    /// Hot-cache fills in flight.
    side_effects: FuturesUnordered<Shared<BoxFuture<'static, ()>>>,
}

/// One span per transaction: a child of the first traced decision's shard span, linked to the
/// others, so a record's trace runs from the gateway to its commit.
fn apply_span(batches: &[LaneBatch]) -> tracing::Span {
    let span = tracing::info_span!(
        "projector.apply_batch",
        otel.kind = "consumer",
        partitions = batches.len(),
        events = batches
            .iter()
            .map(|batch| batch.events.len())
            .sum::<usize>(),
    );
    tracing_context::follow_batch(
        &span,
        batches
            .iter()
            .flat_map(|batch| &batch.events)
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

    /// Starts transactions while fewer than `max_transactions` are in flight: each takes the
    /// idle lanes with buffered events, longest waiting first, until it holds `max_batch` events.
    /// One transaction for many partitions is what drains a backlog spread over partitions in one
    /// commit (docs/benchmarks.md, profile 5).
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
        if ready.is_empty() {
            return Ok(());
        }
        ready.sort_unstable();
        let mut ready = ready.into_iter().map(|(_, partition)| partition).peekable();
        for _ in 0..free {
            let mut batches = Vec::new();
            let mut room = self.deps.max_batch;
            while room > 0 {
                let Some(partition) = ready.next() else { break };
                self.deps
                    .failpoints
                    .hit(points::PROJECTOR_BEFORE_COMMIT)
                    .await?;
                let Some(lane) = self.lanes.get_mut(&partition) else {
                    continue;
                };
                let take = lane.buffered.len().min(room);
                room -= take;
                self.buffered -= take;
                let events: Vec<(i64, DecisionEvent)> = lane.buffered.drain(..take).collect();
                if lane.buffered.is_empty() {
                    lane.waiting_since_opt = None;
                } // else what stays behind keeps its age, and goes first once this commits.
                lane.applying_since_opt = Some(Instant::now());
                batches.push(LaneBatch {
                    partition,
                    epoch: lane.claim.owner_epoch,
                    events,
                });
            }
            if batches.is_empty() {
                break;
            }
            let store = self.deps.store.clone();
            let topic = self.topic.clone();
            let span = apply_span(&batches);
            self.applying.push(
                async move {
                    let parts: Vec<PartitionBatch<'_>> = batches
                        .iter()
                        .map(|batch| PartitionBatch {
                            partition: batch.partition,
                            claim_epoch: batch.epoch,
                            events: &batch.events,
                        })
                        .collect();
                    let result = store
                        .apply_batches(CONSUMER, &topic, &parts)
                        .instrument(span)
                        .await;
                    Committed { batches, result }
                }
                .boxed_local(),
            );
            if ready.peek().is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Whether `batch`'s lane is still this process's, under the claim it was applied with.
    fn owns(&self, batch: &LaneBatch) -> bool {
        self.lanes
            .get(&batch.partition)
            .is_some_and(|lane| lane.claim.owner_epoch == batch.epoch)
    }

    /// After a transaction: wake the waiters, fill the cache, let Kafka commit past the batches.
    fn committed(&mut self, committed: Committed) -> anyhow::Result<()> {
        let Committed { batches, result } = committed;
        let answers = match result {
            Ok(answers) => answers,
            Err(StoreError::Fenced { partition, .. })
                if !batches
                    .iter()
                    .any(|batch| batch.partition == partition && self.owns(batch)) =>
            {
                // A lane revoked (or claimed again) while in flight was fenced by its new owner,
                // and the transaction rolled back for every lane in it: the lanes still ours get
                // their events back, in front of what arrived meanwhile.
                for batch in batches {
                    if !self.owns(&batch) {
                        continue;
                    }
                    if let Some(lane) = self.lanes.get_mut(&batch.partition) {
                        lane.applying_since_opt = None;
                        lane.waiting_since_opt = Some(Instant::now());
                        self.buffered += batch.events.len();
                        lane.buffered.splice(0..0, batch.events);
                    }
                }
                return Ok(());
            }
            // Another owner claimed a partition we still hold (a rebalance we have not seen yet,
            // or a rebuilt schema swapped in). Restarting rejoins the group and re-claims.
            Err(error @ StoreError::Fenced { .. }) => return Err(error).context("fenced"),
            Err(error) => return Err(error).context("applying decisions"),
        };
        for (batch, applied) in batches.iter().zip(answers) {
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
            if !self.owns(batch) {
                // Committed for a partition this process no longer owns: its next owner stores
                // the Kafka offset.
                continue;
            }
            let Some(lane) = self.lanes.get_mut(&batch.partition) else {
                continue;
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
            let last_offset = batch.events.last().map_or(-1, |(offset, _)| *offset);
            tracing::trace!(partition = batch.partition, last_offset, "batch committed");
            self.consumer
                .store_offset(&self.topic, batch.partition, last_offset)?;
        }
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
