//! Projector actor: folds decision events into Postgres, one transaction per batch (dedup, audit
//! log and offsets together), then fills the Redis hot cache (after commit: Redis is never ahead
//! of Postgres) and wakes the gateway requests waiting for those records.
//!
//! Ownership: on assignment a partition is claimed in Postgres, which bumps its owner epoch and
//! fences any previous owner (a stale process's next commit fails instead of double-applying).
//! Events arriving before the claim completes wait in the lane. Positions: Postgres
//! `next_offset` is the truth; events below it are skipped by the store. Log positions are stored
//! only after the Postgres commit, so the log is never ahead of Postgres.
//!
//! Group commit: each owned partition is a lane with at most one transaction in flight. The
//! actor keeps consuming while transactions run; what arrives for a busy lane waits in its buffer.
//! Whenever no transaction is in flight, a new one takes the idle lanes with buffered events,
//! longest waiting first, up to `max_batch` events: at low load an event is applied at once,
//! under load batches grow by themselves, and after a stall the backlog of every partition
//! drains in one commit (docs/benchmarks.md, profile 5). Further transactions (up to
//! `max_transactions`) start only while the idle lanes hold a full batch: a backlog drains with
//! one commit's Postgres time overlapping the next one's preparation, and a low rate keeps one
//! commit at a time.
//!
//! Revocation is synchronous: a revoked lane drops its buffer, lets its transaction in flight
//! finish, stores its position, and only then releases the partition.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use events::{DecisionEvent, SourceCoordinates, SubmissionSource};
use futures::FutureExt as _;
use futures::future::{BoxFuture, LocalBoxFuture, Shared};
use infra::failpoints::{Failpoints, points};
use infra::log::{LogError, LogRecord, Positions, Release};
use infra::metrics::Metrics;
use infra::tracing_context;
use projections::{Applied, Claim, PartitionBatch, ProjectionStore, StoreError};
use tracing::Instrument as _;

use crate::contract::{
    ActorStatus, Assigned, Consumed, Drain, GetStatus, Inlet, PartitionStatus, Revoked, Shutdown,
    SourceActor, SourceFailed, StatusBoard, TICK, Tick, now_ms,
};
use crate::decision_bus::DecisionBus;
use crate::shard::OpenSource;
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's).
// ---------------------------------------------------------------------------------------------

/// A partition's claim in the store completed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Claimed {
    /// Decisions partition.
    pub partition: i32,
    /// Which claim request of the lane this answers (a lane assigned again asks again).
    pub request: u64,
    /// The store's answer.
    pub result: Result<Claim, StoreError>,
}

/// A transaction finished (committed or failed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Committed {
    /// Its partitions' batches.
    pub batches: Vec<LaneBatch>,
    /// The store's answers, one list per batch.
    pub result: Result<Vec<Vec<Applied>>, StoreError>,
}

/// A lane's hot-cache fill finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SideEffectDone;

// ---------------------------------------------------------------------------------------------
// Seams and dependencies.
// ---------------------------------------------------------------------------------------------

/// Consumer name recorded with the projection offsets.
pub const CONSUMER: &str = "flk-projector";

/// Buffered events (all lanes) per `max_batch` before the actor stops reading (backpressure).
const BUFFERED_BATCHES: usize = 4;

/// Hot-cache fills running at once before the actor stops reading (backpressure on Redis).
const MAX_SIDE_EFFECTS: usize = 256;

/// Something that wants the results of every committed batch (the hot cache, for instance).
pub trait AfterCommit: Send + Sync + std::fmt::Debug {
    /// Called after a batch committed; must not fail the projector (best effort).
    fn after_commit(&self, applied: &[Applied]) -> BoxFuture<'static, ()>;
}

/// Where the projector folds decisions: Postgres ([`ProjectionStore`]) in production, an
/// in-memory fake in unit tests.
pub trait ProjectionTarget: std::fmt::Debug {
    /// Claims `partition` of `topic` for this consumer, fencing every older claim.
    fn claim(
        &self,
        topic: &str,
        partition: i32,
    ) -> LocalBoxFuture<'static, Result<Claim, StoreError>>;

    /// Applies `batches` (distinct partitions) in one transaction.
    fn apply(&self, topic: &str, batches: Vec<LaneBatch>) -> LocalBoxFuture<'static, Committed>;
}

impl ProjectionTarget for ProjectionStore {
    fn claim(
        &self,
        topic: &str,
        partition: i32,
    ) -> LocalBoxFuture<'static, Result<Claim, StoreError>> {
        let (store, topic) = (self.clone(), topic.to_owned());
        async move { store.claim_partition(CONSUMER, &topic, partition).await }.boxed_local()
    }

    fn apply(&self, topic: &str, batches: Vec<LaneBatch>) -> LocalBoxFuture<'static, Committed> {
        let (store, topic) = (self.clone(), topic.to_owned());
        async move {
            let parts: Vec<PartitionBatch<'_>> = batches
                .iter()
                .map(|batch| PartitionBatch {
                    partition: batch.partition,
                    claim_epoch: batch.epoch,
                    events: &batch.events,
                })
                .collect();
            let result = store.apply_batches(CONSUMER, &topic, &parts).await;
            drop(parts);
            Committed { batches, result }
        }
        .boxed_local()
    }
}

/// What a projector needs; kept across restarts.
#[derive(Clone)]
pub struct ProjectorDeps {
    /// Subscribes to the decisions topic (called on every start).
    pub open_source: OpenSource,
    /// `flk.decisions` with prefix (the offsets rows are keyed by it).
    pub topic: String,
    /// The projections.
    pub store: Arc<dyn ProjectionTarget + Send + Sync>,
    /// Most events per transaction.
    pub max_batch: usize,
    /// Most transactions in flight at once.
    pub max_transactions: usize,
    /// Wakes waiting gateway requests in this process.
    pub bus: DecisionBus,
    /// Best-effort side effects after commit (hot cache).
    pub after_commit_opt: Option<Arc<dyn AfterCommit>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
    /// Fault injection (tests).
    pub failpoints: Failpoints,
}

impl std::fmt::Debug for ProjectorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectorDeps")
            .field("topic", &self.topic)
            .field("max_batch", &self.max_batch)
            .field("max_transactions", &self.max_transactions)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// One owned partition.
#[derive(Debug, Default)]
struct Lane {
    /// The Postgres claim every transaction presents (`None` while claiming).
    claim_opt: Option<Claim>,
    /// Number of the claim request in flight or answered last.
    claim_request: u64,
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
    /// Last position stored in this run.
    position_opt: Option<i64>,
    /// Held while revoking; the revocation is released when every lane drops its share.
    revoking_opt: Option<Rc<Release>>,
}

/// One partition's part of a transaction.
#[derive(Debug)]
pub struct LaneBatch {
    /// Decisions partition.
    pub partition: i32,
    /// The claim epoch it is applied under (a lane claimed again since then ignores the result).
    pub epoch: i64,
    /// The events, handed back so a transaction rolled back by another lane's fencing can
    /// return them to their lanes.
    pub events: Vec<(i64, DecisionEvent)>,
}

/// The projector actor.
#[derive(Debug)]
pub struct Projector {
    /// Dependencies.
    deps: ProjectorDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// Reads the decisions.
    inlet: Inlet,
    /// Position store of the current source.
    positions_opt: Option<Arc<dyn Positions>>,
    /// Owned partitions.
    lanes: HashMap<i32, Lane>,
    /// Events in all lanes' buffers.
    buffered: usize,
    /// Transactions in flight (at most `max_transactions`; a lane is in at most one).
    applying: usize,
    /// Hot-cache fills in flight.
    side_effects: usize,
    /// Claim requests made in this run (numbers them).
    claim_requests: u64,
    /// `running`, `backing_off`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Told when a shutdown has drained.
    drain: Drain,
}

impl Projector {
    /// A projector that starts consuming when started under a supervisor.
    pub fn new(deps: ProjectorDeps, supervision: Supervision) -> Self {
        Projector {
            deps,
            supervision,
            inlet: Inlet::default(),
            positions_opt: None,
            lanes: HashMap::new(),
            buffered: 0,
            applying: 0,
            side_effects: 0,
            claim_requests: 0,
            state: "starting",
            last_progress_ms: 0,
            drain: Drain::default(),
        }
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        match (self.deps.open_source)() {
            Ok(source) => {
                let (inlet, positions) = Inlet::open(source);
                self.inlet = inlet;
                self.positions_opt = Some(positions);
                self.state = "running";
                tracing::info!(topic = %self.deps.topic, "projector consuming");
                Inlet::pull(self, ctx);
            }
            Err(error) => self.fail(ctx, &error),
        }
    }

    /// Stops the actor; its supervisor restarts it (rejoining the group and claiming again).
    fn fail(&mut self, ctx: &mut Context<Self>, error: &dyn std::fmt::Display) {
        tracing::error!(actor = "projector", error = %error, "projector stopped; restarting");
        ctx.stop();
    }

    /// Starts transactions while fewer than `max_transactions` are in flight: each takes the
    /// idle, claimed lanes with buffered events, longest waiting first, until it holds
    /// `max_batch` events.
    fn start_ready(&mut self, ctx: &mut Context<Self>) {
        let free = self.deps.max_transactions.saturating_sub(self.applying);
        if free == 0 {
            return;
        }
        let mut ready: Vec<(Instant, i32)> = self
            .lanes
            .iter()
            .filter(|(_, lane)| {
                lane.applying_since_opt.is_none()
                    && lane.claim_opt.is_some()
                    && lane.revoking_opt.is_none()
            })
            .filter_map(|(partition, lane)| Some((lane.waiting_since_opt?, *partition)))
            .collect();
        ready.sort_unstable();
        let mut ready = ready.into_iter().map(|(_, partition)| partition).peekable();
        for _ in 0..free {
            if self.applying > 0 && !self.backlog_fills_a_batch(ready.clone()) {
                // A second transaction only pays off with a backlog: at a low rate it would
                // split the events into more, smaller commits (more CPU per record, a worse
                // tail), while a drain gets one commit's Postgres time overlapped with the
                // other's work here.
                break;
            }
            let mut batches = Vec::new();
            let mut room = self.deps.max_batch;
            while room > 0 {
                let Some(partition) = ready.next() else { break };
                let Some(lane) = self.lanes.get_mut(&partition) else {
                    continue;
                };
                let Some(claim) = &lane.claim_opt else {
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
                    epoch: claim.owner_epoch,
                    events,
                });
            }
            if batches.is_empty() {
                break;
            }
            self.applying += 1;
            let span = apply_span(&batches);
            let failpoints = self.deps.failpoints.clone();
            let events: usize = batches.iter().map(|batch| batch.events.len()).sum();
            let metrics = self.deps.metrics.clone();
            let apply = self.deps.store.apply(&self.deps.topic, batches);
            let transaction = async move {
                // The failpoint sits before the transaction, as a stalled or failed dependency.
                let injected = failpoints.hit(points::PROJECTOR_BEFORE_COMMIT).await;
                let started = Instant::now();
                let mut committed = apply.await;
                if committed.result.is_ok() {
                    let none: &[&str] = &[];
                    metrics
                        .projector_batch_events
                        .with_label_values(none)
                        .observe(events as f64);
                    metrics
                        .projector_transaction_latency
                        .with_label_values(none)
                        .observe(started.elapsed().as_secs_f64());
                }
                if let Err(failure) = injected {
                    committed.result = Err(StoreError::Unavailable(failure.to_string()));
                }
                committed
            };
            ctx.spawn(transaction.instrument(span.clone()).into_actor(self).map(
                move |committed, actor, ctx| {
                    // The cache fills started by the commit are children of its span.
                    span.in_scope(|| actor.handle(committed, ctx));
                },
            ));
            if ready.peek().is_none() {
                break;
            }
        }
    }

    /// Whether the lanes of `ready` hold at least `max_batch` buffered events between them.
    fn backlog_fills_a_batch(&self, ready: impl Iterator<Item = i32>) -> bool {
        let mut events = 0;
        for partition in ready {
            events += self
                .lanes
                .get(&partition)
                .map_or(0, |lane| lane.buffered.len());
            if events >= self.deps.max_batch {
                return true;
            }
        }
        false
    }

    /// Whether `batch`'s lane is still this process's, under the claim it was applied with.
    fn owns(&self, batch: &LaneBatch) -> bool {
        self.lanes.get(&batch.partition).is_some_and(|lane| {
            lane.claim_opt
                .as_ref()
                .is_some_and(|claim| claim.owner_epoch == batch.epoch)
        })
    }

    /// Whether `batch`'s lane is ours and staying ours (not being handed over).
    fn keeps(&self, batch: &LaneBatch) -> bool {
        self.owns(batch)
            && self
                .lanes
                .get(&batch.partition)
                .is_some_and(|lane| lane.revoking_opt.is_none())
    }

    /// Stores `offset` as done for `partition`; a partition taken without our release is only
    /// logged (Postgres holds the truth; its next owner skips what we applied).
    fn store_position(&mut self, partition: i32, offset: i64) -> Result<(), LogError> {
        let stored = match &self.positions_opt {
            Some(positions) => positions.store(partition, offset),
            None => Err(LogError::NotAssigned(partition)),
        };
        match stored {
            Ok(()) => {
                if let Some(lane) = self.lanes.get_mut(&partition) {
                    lane.position_opt = Some(offset);
                }
                Ok(())
            }
            Err(LogError::NotAssigned(partition)) => {
                tracing::warn!(partition, "position not stored: partition no longer ours");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Starts the lane's cache fill after its previous one (per-key order of cache writes).
    fn chain_side_effect(
        &mut self,
        partition: i32,
        side_effect: BoxFuture<'static, ()>,
        ctx: &mut Context<Self>,
    ) {
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
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
        self.side_effects += 1;
        ctx.spawn(
            chained
                .into_actor(self)
                .map(|(), actor, ctx| actor.handle(SideEffectDone, ctx)),
        );
    }

    /// Drops a revoked lane once it has nothing in flight (releasing its share).
    fn drop_lane_if_revoked(&mut self, partition: i32) {
        let done = self
            .lanes
            .get(&partition)
            .is_some_and(|lane| lane.revoking_opt.is_some() && lane.applying_since_opt.is_none());
        if done {
            if let Some(lane) = self.lanes.remove(&partition) {
                self.buffered -= lane.buffered.len();
            }
        }
    }

    /// Progress is "every transaction started before the beat has finished": the heartbeat is set
    /// to the start of the oldest transaction still in flight, so one stuck transaction (or a stuck
    /// failpoint) ages it past the watchdog's limit even while other lanes keep committing.
    fn beat(&mut self) {
        match self
            .lanes
            .values()
            .filter_map(|lane| lane.applying_since_opt)
            .min()
        {
            Some(oldest) => self.deps.heartbeat.beat_at(oldest),
            None => {
                self.deps.heartbeat.beat();
                self.last_progress_ms = now_ms();
            }
        }
    }

    fn publish(&self) {
        self.deps.board.publish(self.status(), &self.deps.metrics);
    }

    fn status(&self) -> ActorStatus {
        let lag = self
            .positions_opt
            .as_ref()
            .map(|positions| positions.lag())
            .unwrap_or_default();
        let mut partitions: Vec<PartitionStatus> = self
            .lanes
            .iter()
            .map(|(partition, lane)| PartitionStatus {
                partition: *partition,
                position_opt: lane.position_opt,
                lag_opt: lag.get(partition).copied(),
                in_flight: usize::from(lane.applying_since_opt.is_some()),
                buffered: lane.buffered.len(),
                revoking: lane.revoking_opt.is_some(),
            })
            .collect();
        partitions.sort_by_key(|status| status.partition);
        let mut status = ActorStatus::new("projector", self.state, partitions);
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status
    }

    fn finish_shutdown_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.applying > 0 {
            return;
        }
        if self.drain.finish(&mut self.inlet, ctx) {
            self.lanes.clear();
            self.buffered = 0;
            self.state = "stopped";
            self.publish();
        }
    }

    /// After anything that may have freed a lane or room: start work, read more, beat.
    fn after_change(&mut self, ctx: &mut Context<Self>) {
        if self.state == "running" {
            self.start_ready(ctx);
        }
        self.finish_shutdown_if_drained(ctx);
        Inlet::pull(self, ctx);
        self.beat();
    }
}

/// One span per transaction: a child of the first traced decision's shard span, linked to the
/// others, so a record's trace runs from the gateway to its commit.
/// It carries the tenant and pcs_id of that first traced decision, the one whose trace it joins.
fn apply_span(batches: &[LaneBatch]) -> tracing::Span {
    let traced = || {
        batches
            .iter()
            .flat_map(|batch| &batch.events)
            .filter(|(_, event)| event.traceparent_opt.is_some())
            .map(|(_, event)| event)
    };
    let first_opt = traced().next();
    let span = tracing::info_span!(
        "projector.apply_batch",
        otel.kind = "consumer",
        db.system = "postgresql",
        partitions = batches.len(),
        events = batches
            .iter()
            .map(|batch| batch.events.len())
            .sum::<usize>(),
        tenant = first_opt.map_or("", |event| event.tenant.as_str()),
        pcs_id = first_opt
            .and_then(|event| event.pcs_id_opt.as_deref())
            .map_or("", tracing_context::displayable_id),
    );
    tracing_context::follow_batch(
        &span,
        traced().filter_map(|event| event.traceparent_opt.as_deref()),
    );
    span
}

/// The span of one lane's hot-cache fill; a child of the current (transaction) span.
fn redis_fill_span(applied: &[Applied]) -> tracing::Span {
    let first_opt = applied.first();
    tracing::info_span!(
        "projector.redis_fill",
        otel.kind = "client",
        db.system = "redis",
        entries = applied.len(),
        tenant = first_opt.map_or("", |result| result.tenant.as_str()),
        pcs_id = first_opt
            .and_then(|result| result.pcs_id_opt.as_deref())
            .map_or("", tracing_context::displayable_id),
    )
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and handlers.
// ---------------------------------------------------------------------------------------------

impl Actor for Projector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for Projector {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Transactions in flight were cancelled with the context (rolled back by Postgres);
        // buffered events are read again after the restart, from the committed position.
        self.inlet = Inlet::default();
        self.positions_opt = None;
        self.lanes.clear();
        self.buffered = 0;
        self.applying = 0;
        self.side_effects = 0;
        self.drain = Drain::default();
        self.deps.heartbeat.beat();
    }
}

impl SourceActor for Projector {
    fn inlet(&mut self) -> &mut Inlet {
        &mut self.inlet
    }

    fn has_room(&self) -> bool {
        self.state == "running"
            && self.buffered < self.deps.max_batch.saturating_mul(BUFFERED_BATCHES)
            && self.side_effects < MAX_SIDE_EFFECTS
    }
}

impl Handler<Assigned> for Projector {
    type Result = ();

    fn handle(&mut self, Assigned(partitions): Assigned, ctx: &mut Self::Context) {
        for partition in partitions {
            self.claim_requests += 1;
            let request = self.claim_requests;
            let lane = Lane {
                claim_request: request,
                ..Lane::default()
            };
            if let Some(old) = self.lanes.insert(partition, lane) {
                self.buffered -= old.buffered.len();
            }
            let claim = self.deps.store.claim(&self.deps.topic, partition);
            ctx.spawn(claim.into_actor(self).map(move |result, actor, ctx| {
                actor.handle(
                    Claimed {
                        partition,
                        request,
                        result,
                    },
                    ctx,
                );
            }));
        }
        self.publish();
    }
}

impl Handler<Claimed> for Projector {
    type Result = ();

    fn handle(&mut self, claimed: Claimed, ctx: &mut Self::Context) {
        let claim = match claimed.result {
            Ok(claim) => claim,
            Err(error) => return self.fail(ctx, &format!("claiming a partition: {error}")),
        };
        let Some(lane) = self.lanes.get_mut(&claimed.partition) else {
            return; // revoked meanwhile
        };
        if lane.claim_request != claimed.request {
            return; // assigned again since; the newer claim answers
        }
        tracing::info!(
            partition = claimed.partition,
            next_offset = claim.next_offset,
            epoch = claim.owner_epoch,
            "partition claimed"
        );
        lane.claim_opt = Some(claim);
        self.publish();
        self.after_change(ctx);
    }
}

impl Handler<Revoked> for Projector {
    type Result = ();

    fn handle(&mut self, revoked: Revoked, ctx: &mut Self::Context) {
        tracing::info!(partitions = ?revoked.partitions, "projector partitions revoked");
        let release = Rc::new(revoked.release);
        for partition in revoked.partitions {
            if let Some(lane) = self.lanes.get_mut(&partition) {
                // Its buffered events are read again by the next owner.
                self.buffered -= lane.buffered.len();
                lane.buffered.clear();
                lane.waiting_since_opt = None;
                lane.revoking_opt = Some(release.clone());
            }
            self.drop_lane_if_revoked(partition);
        }
        drop(release);
        self.publish();
        self.after_change(ctx);
    }
}

impl Handler<Consumed> for Projector {
    type Result = ();

    fn handle(&mut self, Consumed(record): Consumed, ctx: &mut Self::Context) {
        let LogRecord {
            partition,
            offset,
            payload,
            ..
        } = record;
        let Some(lane) = self.lanes.get_mut(&partition) else {
            tracing::debug!(partition, "event for an unowned partition ignored");
            return;
        };
        if lane.revoking_opt.is_some() {
            return;
        }
        match DecisionEvent::decode(&payload) {
            Ok(event) => {
                lane.waiting_since_opt.get_or_insert_with(Instant::now);
                lane.buffered.push((offset, event));
                self.buffered += 1;
            }
            // A record that is not a decision cannot be projected; it is skipped loudly rather
            // than wedging the partition (the shard only writes valid envelopes).
            Err(error) => tracing::error!(
                partition,
                offset,
                error = %error,
                "undecodable decision record skipped"
            ),
        }
        if self.state == "running" {
            self.start_ready(ctx);
        }
    }
}

impl Handler<Committed> for Projector {
    type Result = ();

    fn handle(&mut self, committed: Committed, ctx: &mut Self::Context) {
        self.applying = self.applying.saturating_sub(1);
        let Committed { batches, result } = committed;
        let answers = match result {
            Ok(answers) => answers,
            Err(StoreError::Fenced { partition, .. })
                if !batches
                    .iter()
                    .any(|batch| batch.partition == partition && self.keeps(batch)) =>
            {
                // A lane revoked (or claimed again) while in flight was fenced by its new owner,
                // and the transaction rolled back for every lane in it: the lanes still ours get
                // their events back, in front of what arrived meanwhile.
                for batch in batches {
                    let kept = self.keeps(&batch);
                    let Some(lane) = self.lanes.get_mut(&batch.partition) else {
                        continue;
                    };
                    lane.applying_since_opt = None;
                    if kept {
                        lane.waiting_since_opt = Some(Instant::now());
                        self.buffered += batch.events.len();
                        lane.buffered.splice(0..0, batch.events);
                    }
                    self.drop_lane_if_revoked(batch.partition);
                }
                return self.after_change(ctx);
            }
            // Another owner claimed a partition we still hold (a rebalance we have not seen yet,
            // or a rebuilt schema swapped in). Restarting rejoins the group and claims again.
            Err(error @ StoreError::Fenced { .. }) => {
                return self.fail(ctx, &format!("fenced: {error}"));
            }
            Err(error) => return self.fail(ctx, &format!("applying decisions: {error}")),
        };
        for (batch, applied) in batches.iter().zip(answers) {
            for result in &applied {
                self.deps
                    .metrics
                    .decisions_applied
                    .with_label_values(&[result.dedup_result.as_str()])
                    .inc();
            }
            let side_effect_opt = self.deps.after_commit_opt.as_ref().map(|after_commit| {
                after_commit
                    .after_commit(&applied)
                    .instrument(redis_fill_span(&applied))
                    .boxed()
            });
            // Waiters only need the commit; the cache is best effort and comes after. Only a
            // record that came through a gateway can have a request waiting for it (perhaps not
            // registered yet); the bus would keep the others' results for nothing (about 2 KiB
            // each, which made the memory of a backlog drain grow with the backlog).
            let through_gateway: HashSet<&SourceCoordinates> = batch
                .events
                .iter()
                .filter(|(_, event)| event.submission_source == SubmissionSource::Gateway)
                .map(|(_, event)| &event.source)
                .collect();
            self.deps.bus.publish_applied(
                applied
                    .into_iter()
                    .filter(|result| through_gateway.contains(&result.source)),
            );
            if !self.owns(batch) {
                // Committed for a partition this process no longer owns (claimed again by
                // someone): its owner stores the position.
                if let Some(lane) = self.lanes.get_mut(&batch.partition) {
                    lane.applying_since_opt = None;
                }
                self.drop_lane_if_revoked(batch.partition);
                continue;
            }
            if let Some(lane) = self.lanes.get_mut(&batch.partition) {
                lane.applying_since_opt = None;
            }
            if let Some(side_effect) = side_effect_opt {
                self.chain_side_effect(batch.partition, side_effect, ctx);
            }
            let last_offset = batch.events.last().map_or(-1, |(offset, _)| *offset);
            tracing::trace!(partition = batch.partition, last_offset, "batch committed");
            if last_offset >= 0 {
                if let Err(error) = self.store_position(batch.partition, last_offset) {
                    return self.fail(ctx, &format!("storing position: {error}"));
                }
            }
            self.drop_lane_if_revoked(batch.partition);
        }
        self.last_progress_ms = now_ms();
        self.after_change(ctx);
    }
}

impl Handler<SideEffectDone> for Projector {
    type Result = ();

    fn handle(&mut self, _done: SideEffectDone, ctx: &mut Self::Context) {
        self.side_effects = self.side_effects.saturating_sub(1);
        Inlet::pull(self, ctx);
    }
}

impl Handler<SourceFailed> for Projector {
    type Result = ();

    fn handle(&mut self, SourceFailed(error): SourceFailed, ctx: &mut Self::Context) {
        self.fail(ctx, &format!("consuming decisions: {error}"));
    }
}

impl Handler<Tick> for Projector {
    type Result = ();

    fn handle(&mut self, _tick: Tick, _ctx: &mut Self::Context) {
        self.beat();
        self.publish();
    }
}

impl Handler<Restart> for Projector {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "projector", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for Projector {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let answer = self.drain.begin();
        self.finish_shutdown_if_drained(ctx);
        answer
    }
}

impl Handler<GetStatus> for Projector {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
#[path = "projector_tests.rs"]
mod tests;
