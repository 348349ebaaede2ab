//! Replicator actor: ships this region's submissions to another region's Kafka cluster, the way
//! MirrorMaker 2 does. One actor per remote region (consumer group `flk-replicator-<remote>`, so
//! more processes share the partitions). Each record of the local `flk.submissions` goes to the
//! remote cluster's `<local region>.flk.submissions`, same partition and key, body untouched, with
//! provenance headers: `flk-source: replica`, origin region, origin partition and offset, and a
//! hop count. The remote region's shards decide it like any other submission (verifying it again).
//!
//! A second replicator per remote region ships `flk.heartbeats` the same way (every tenant, no
//! tenant header), so the remote region measures the link's lag from records that took the
//! same path as the data.
//!
//! Never re-ships what came from a replica (`flk-source: replica`), so two regions shipping to each
//! other make no cycle. Tenants outside a selective replication's list are not shipped. Skipped
//! records still move the position, in order with the shipped ones.
//!
//! At-least-once, positions after acks: a record's position is stored only once the remote
//! cluster acked it (idempotent producer, acks=all) and every record before it is done, so a crash
//! or restart re-ships at most the records in flight; the remote side's dedup (first write wins
//! per tenant and pcs_id) makes a re-shipped record change nothing.
//!
//! Checkpoints in the target cluster, the way MirrorMaker 2 keeps its source offsets there: once
//! a second, each partition whose position moved gets a record in the target's
//! `<local region>.flk.checkpoints` (`events::replication_checkpoint`). Before it subscribes, a
//! starting replicator reads them back and each partition starts at the later of its checkpoint
//! and its group position, so a replicator whose group positions were lost (expired, deleted,
//! restored from old ones) neither ships everything again nor skips anything. The same start also
//! checks that both sides have the same partition count (records keep their partition).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use events::replication_checkpoint::ReplicationCheckpoint;
use futures::future::BoxFuture;
use infra::kafka::headers;
use infra::log::{LogError, LogRecord, LogSink, LogSource, OutgoingRecord, Positions};
use infra::metrics::Metrics;

use crate::contract::{
    ActorStatus, Assigned, Consumed, Drain, GetStatus, Inlet, Revoked, Shutdown, SourceActor,
    SourceFailed, StatusBoard, TICK, Tick, now_ms,
};
use crate::lanes::Lanes;
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Assigned, Revoked, Consumed, SourceFailed, Tick, Shutdown,
// GetStatus and the watchdog's Restart).
// ---------------------------------------------------------------------------------------------

/// The target cluster's checkpoints were read (or could not be) at a start.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Prepared(pub Result<BTreeMap<i32, i64>, LogError>);

/// The target cluster answered the produce of one checkpoint.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CheckpointWritten {
    /// Local partition the checkpoint is for.
    pub partition: i32,
    /// The target's answer.
    pub result: Result<(), LogError>,
}

/// The remote cluster answered the produce of one mirrored record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct MirrorAcked {
    /// Local submissions partition.
    pub partition: i32,
    /// Local offset of the record.
    pub offset: i64,
    /// False for a record that stays (done without a produce).
    pub shipped: bool,
    /// The remote log's answer.
    pub result: Result<(), LogError>,
}

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// Most records awaiting the remote ack at once (bounds memory and re-shipping after a crash).
pub const MAX_IN_FLIGHT: usize = 4_096;

/// Least time between two checkpoints of one partition (a restart after losing the group
/// positions re-ships at most this much).
pub const CHECKPOINT_INTERVAL_MS: i64 = 1_000;

/// Which tenants are shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFilter {
    /// Every tenant (the seed's `full` mode).
    All,
    /// Only these (the seed's `selective` mode).
    Only(BTreeSet<String>),
}

impl TenantFilter {
    fn ships(&self, tenant: &str) -> bool {
        match self {
            TenantFilter::All => true,
            TenantFilter::Only(tenants) => tenants.contains(tenant),
        }
    }
}

/// Opens a producer (a new one per call).
pub type OpenSink = Arc<dyn Fn() -> Result<Arc<dyn LogSink>, LogError> + Send + Sync>;

/// Subscribes to the local stream; each partition starts no earlier than its entry in the map
/// (the checkpoints, partition -> next offset; see `infra::kafka::source::subscribe_from`).
pub type OpenSourceFrom =
    Arc<dyn Fn(BTreeMap<i32, i64>) -> Result<LogSource, LogError> + Send + Sync>;

/// Reads this replicator's checkpoints from the target cluster (partition -> next offset) after
/// checking that the local and remote topics have the same partition count.
pub type Prepare =
    Arc<dyn Fn() -> BoxFuture<'static, Result<BTreeMap<i32, i64>, LogError>> + Send + Sync>;

/// What a replicator needs; kept across restarts.
#[derive(Clone)]
pub struct ReplicatorDeps {
    /// Subscribes to the local stream.
    pub open_source: OpenSourceFrom,
    /// Reads the checkpoints and checks partition counts before each start.
    pub prepare: Prepare,
    /// Opens a producer to the remote cluster. Each start opens a new one: an idempotent producer
    /// that hit a fatal error (or never got its producer id) stays broken, so a restart must not
    /// reuse it.
    pub open_sink: OpenSink,
    /// This region's id (the origin written on every mirrored record).
    pub local_region: String,
    /// The remote region's id (for logs and metrics).
    pub remote_region: String,
    /// What it ships: `submissions` or `heartbeats` (one replicator per stream and remote region).
    pub stream: &'static str,
    /// The remote topic: `<remote prefix><local region>.flk.<stream>`.
    pub remote_topic: String,
    /// Where checkpoints go: `<remote prefix><local region>.flk.checkpoints`.
    pub checkpoint_topic: String,
    /// Which tenants are shipped.
    pub tenants: TenantFilter,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
}

impl std::fmt::Debug for ReplicatorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorDeps")
            .field("local_region", &self.local_region)
            .field("remote_region", &self.remote_region)
            .field("remote_topic", &self.remote_topic)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// The replicator actor.
#[derive(Debug)]
pub struct Replicator {
    /// Dependencies.
    deps: ReplicatorDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// Reads the local submissions.
    inlet: Inlet,
    /// Position store of the current source.
    positions_opt: Option<Arc<dyn Positions>>,
    /// Producer to the remote cluster, opened with the source.
    sink_opt: Option<Arc<dyn LogSink>>,
    /// Assigned partitions: unacked records, stored positions, revocations.
    lanes: Lanes,
    /// Records awaiting the remote ack, all lanes.
    in_flight: usize,
    /// Checkpoints awaiting the remote ack.
    checkpoints_in_flight: usize,
    /// Positions stored and not yet checkpointed (partition -> last shipped offset).
    uncheckpointed: BTreeMap<i32, i64>,
    /// Milliseconds since the epoch of the last checkpoint round.
    last_checkpoint_ms: i64,
    /// `running`, `backing_off`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Told when a shutdown has drained.
    drain: Drain,
}

/// What to do with one local record.
#[derive(Debug, PartialEq, Eq)]
pub enum Mirror {
    /// Ship it.
    Ship(OutgoingRecord),
    /// Leave it: it came from a replica (shipping it would make a cycle).
    FromReplica,
    /// Leave it: its tenant is not replicated.
    TenantNotReplicated,
}

/// The headers of `record` mirrored from `origin_region`: its own headers (tenant, received-at,
/// trace context) as they are, except a source header, plus the provenance: `flk-source:
/// replica`, origin region, origin partition and offset, one hop.
pub fn mirrored_headers(record: &LogRecord, origin_region: &str) -> Vec<(String, Vec<u8>)> {
    let provenance = [
        (headers::SOURCE, "replica".to_owned()),
        (headers::ORIGIN_REGION, origin_region.to_owned()),
        (headers::ORIGIN_PARTITION, record.partition.to_string()),
        (headers::ORIGIN_OFFSET, record.offset.to_string()),
        (headers::HOPS, "1".to_owned()),
    ];
    let mut mirrored: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(name, _)| name != headers::SOURCE)
        .cloned()
        .collect();
    mirrored.extend(
        provenance
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into_bytes())),
    );
    mirrored
}

/// Decides what becomes of `record` (pure): the mirrored record with its provenance headers, or
/// why it stays.
pub fn mirror(record: &LogRecord, deps: &ReplicatorDeps) -> Mirror {
    if record.header_str(headers::SOURCE) == Some("replica")
        || record.header_str(headers::ORIGIN_REGION).is_some()
    {
        return Mirror::FromReplica;
    }
    let tenant = record.tenant();
    if !deps.tenants.ships(tenant) {
        return Mirror::TenantNotReplicated;
    }
    Mirror::Ship(OutgoingRecord {
        topic: deps.remote_topic.clone(),
        partition_opt: Some(record.partition),
        key: record.key_opt.clone().unwrap_or_default(),
        payload: record.payload.clone(),
        headers: mirrored_headers(record, &deps.local_region),
    })
}

impl Replicator {
    /// A replicator that starts consuming when started under a supervisor.
    pub fn new(deps: ReplicatorDeps, supervision: Supervision) -> Self {
        Replicator {
            deps,
            supervision,
            inlet: Inlet::default(),
            positions_opt: None,
            sink_opt: None,
            lanes: Lanes::default(),
            in_flight: 0,
            checkpoints_in_flight: 0,
            uncheckpointed: BTreeMap::new(),
            last_checkpoint_ms: 0,
            state: "starting",
            last_progress_ms: 0,
            drain: Drain::default(),
        }
    }

    /// Reads the checkpoints (and checks the partitions); [`Prepared`] opens the source.
    fn open(&mut self, ctx: &mut Context<Self>) {
        self.state = "preparing";
        let prepare = (self.deps.prepare)();
        ctx.spawn(
            prepare
                .into_actor(self)
                .map(|result, actor, ctx| actor.handle(Prepared(result), ctx)),
        );
    }

    /// Opens the producer and the source, each partition starting no earlier than its checkpoint.
    fn open_from(&mut self, checkpoints: BTreeMap<i32, i64>, ctx: &mut Context<Self>) {
        let opened = (self.deps.open_sink)()
            .and_then(|sink| Ok((sink, (self.deps.open_source)(checkpoints)?)));
        match opened {
            Ok((sink, source)) => {
                self.sink_opt = Some(sink);
                let (inlet, positions) = Inlet::open(source);
                self.inlet = inlet;
                self.positions_opt = Some(positions);
                self.state = "running";
                tracing::info!(remote_region = %self.deps.remote_region, "replicator consuming");
                Inlet::pull(self, ctx);
            }
            Err(error) => self.fail(ctx, &error),
        }
    }

    /// Stops the actor; its supervisor restarts it.
    fn fail(&mut self, ctx: &mut Context<Self>, error: &dyn std::fmt::Display) {
        tracing::error!(
            actor = "replicator",
            remote_region = %self.deps.remote_region,
            error = %error,
            "replicator stopped; restarting"
        );
        ctx.stop();
    }

    /// Ships one record (or marks it done when it stays); `Err` means the sink refused it.
    fn ship(&mut self, record: &LogRecord, ctx: &mut Context<Self>) -> Result<(), String> {
        let (partition, offset) = (record.partition, record.offset);
        self.lanes.start(partition, offset);
        self.in_flight += 1;
        let outgoing = match mirror(record, &self.deps) {
            Mirror::Ship(outgoing) => outgoing,
            skipped => {
                let reason = match skipped {
                    Mirror::FromReplica => "from_replica",
                    _ => "tenant_not_replicated",
                };
                self.count("skipped", reason);
                // Done at once, in order with the records shipped before it.
                self.handle(
                    MirrorAcked {
                        partition,
                        offset,
                        shipped: false,
                        result: Ok(()),
                    },
                    ctx,
                );
                return Ok(());
            }
        };
        let Some(sink) = self.sink_opt.as_ref() else {
            return Err("no producer open".to_owned());
        };
        let ack = sink.produce(outgoing).map_err(|error| error.to_string())?;
        ctx.spawn(ack.into_actor(self).map(move |result, actor, ctx| {
            actor.handle(
                MirrorAcked {
                    partition,
                    offset,
                    shipped: true,
                    result,
                },
                ctx,
            );
        }));
        Ok(())
    }

    /// Writes a checkpoint for every partition whose position moved, at most once per
    /// [`CHECKPOINT_INTERVAL_MS`] unless `now` (a revocation or shutdown: the partition's last
    /// position must not wait). A checkpoint that fails is only counted and logged: the group
    /// position still holds, and the next round writes a newer one.
    fn write_checkpoints(&mut self, now: bool, ctx: &mut Context<Self>) {
        self.uncheckpointed.extend(self.lanes.take_stored());
        let due = now || now_ms() - self.last_checkpoint_ms >= CHECKPOINT_INTERVAL_MS;
        if self.uncheckpointed.is_empty() || !due {
            return;
        }
        self.last_checkpoint_ms = now_ms();
        let Some(sink) = self.sink_opt.clone() else {
            return;
        };
        for (partition, shipped) in std::mem::take(&mut self.uncheckpointed) {
            let checkpoint = ReplicationCheckpoint::new(
                &self.deps.local_region,
                self.deps.stream,
                partition,
                shipped + 1,
                now_ms(),
            );
            let record = OutgoingRecord {
                topic: self.deps.checkpoint_topic.clone(),
                partition_opt: Some(0),
                key: checkpoint.key().into_bytes(),
                payload: checkpoint.encode(),
                headers: Vec::new(),
            };
            let ack = match sink.produce(record) {
                Ok(ack) => ack,
                Err(error) => {
                    self.handle(
                        CheckpointWritten {
                            partition,
                            result: Err(error),
                        },
                        ctx,
                    );
                    continue;
                }
            };
            self.checkpoints_in_flight += 1;
            ctx.spawn(ack.into_actor(self).map(move |result, actor, ctx| {
                actor.checkpoints_in_flight = actor.checkpoints_in_flight.saturating_sub(1);
                actor.handle(CheckpointWritten { partition, result }, ctx);
            }));
        }
    }

    fn count(&self, outcome: &str, reason: &str) {
        self.deps
            .metrics
            .replicated_records
            .with_label_values(&[
                self.deps.remote_region.as_str(),
                self.deps.stream,
                outcome,
                reason,
            ])
            .inc();
    }

    /// Publishes the status to the board and the metrics.
    fn publish(&self) {
        self.deps.board.publish(self.status(), &self.deps.metrics);
    }

    fn status(&self) -> ActorStatus {
        let lag = self
            .positions_opt
            .as_ref()
            .map(|positions| positions.lag())
            .unwrap_or_default();
        let mut status = ActorStatus::new(&self.role(), self.state, self.lanes.statuses(&lag));
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status
    }

    /// The role on the status board: one per remote region and stream.
    fn role(&self) -> String {
        match self.deps.stream {
            "submissions" => format!("replicator-{}", self.deps.remote_region),
            stream => format!("replicator-{}-{stream}", self.deps.remote_region),
        }
    }

    fn progressed(&mut self) {
        self.deps.heartbeat.beat();
        self.last_progress_ms = now_ms();
    }

    /// Ends a shutdown once nothing is in flight: writes the last checkpoints, then (once they
    /// are acked) closes the source, leaving the group.
    fn finish_shutdown_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 || self.state != "stopping" {
            return;
        }
        self.write_checkpoints(true, ctx);
        if self.checkpoints_in_flight > 0 {
            return;
        }
        if self.drain.finish(&mut self.inlet, ctx) {
            self.lanes.clear();
            self.state = "stopped";
            self.publish();
        }
    }
}

impl Actor for Replicator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for Replicator {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Unacked records are shipped again after the restart (at-least-once; the remote dedup
        // absorbs the repeats).
        self.inlet = Inlet::default();
        self.positions_opt = None;
        self.sink_opt = None;
        self.lanes.clear();
        self.in_flight = 0;
        self.checkpoints_in_flight = 0;
        self.uncheckpointed.clear();
        self.last_checkpoint_ms = 0;
        self.drain = Drain::default();
        self.deps.heartbeat.beat();
    }
}

impl SourceActor for Replicator {
    fn inlet(&mut self) -> &mut Inlet {
        &mut self.inlet
    }

    fn has_room(&self) -> bool {
        self.in_flight < MAX_IN_FLIGHT && self.state == "running"
    }
}

impl Handler<Assigned> for Replicator {
    type Result = ();

    fn handle(&mut self, Assigned(partitions): Assigned, _ctx: &mut Self::Context) {
        tracing::info!(?partitions, remote_region = %self.deps.remote_region, "replicator partitions assigned");
        self.lanes.assign(partitions);
        self.publish();
    }
}

impl Handler<Revoked> for Replicator {
    type Result = ();

    fn handle(&mut self, revoked: Revoked, ctx: &mut Self::Context) {
        tracing::info!(partitions = ?revoked.partitions, "replicator partitions revoked");
        // The next owner may have lost the group positions too: leave it our last ones.
        self.write_checkpoints(true, ctx);
        self.lanes.revoke(revoked.partitions, revoked.release);
        self.publish();
    }
}

impl Handler<Consumed> for Replicator {
    type Result = ();

    fn handle(&mut self, Consumed(record): Consumed, ctx: &mut Self::Context) {
        if self.lanes.is_revoking(record.partition) {
            // Being handed over: its next owner ships this record.
            return;
        }
        if let Err(error) = self.ship(&record, ctx) {
            self.fail(
                ctx,
                &format!("producing to region {}: {error}", self.deps.remote_region),
            );
        }
    }
}

impl Handler<MirrorAcked> for Replicator {
    type Result = ();

    fn handle(&mut self, acked: MirrorAcked, ctx: &mut Self::Context) {
        if let Err(error) = acked.result {
            return self.fail(
                ctx,
                &format!(
                    "record not delivered to region {}: {error}",
                    self.deps.remote_region
                ),
            );
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if acked.shipped {
            self.count("shipped", "");
        }
        match self
            .lanes
            .finish(acked.partition, acked.offset, self.positions_opt.as_ref())
        {
            Ok(true) => {
                // A revoked partition finished: its last position goes out now.
                self.write_checkpoints(true, ctx);
                self.publish();
            }
            Ok(false) => {}
            Err(error) => return self.fail(ctx, &format!("storing position: {error}")),
        }
        self.progressed();
        self.finish_shutdown_if_drained(ctx);
        Inlet::pull(self, ctx);
    }
}

impl Handler<Prepared> for Replicator {
    type Result = ();

    fn handle(&mut self, Prepared(result): Prepared, ctx: &mut Self::Context) {
        if matches!(self.state, "stopping" | "stopped") {
            // A shutdown came while the checkpoints were read: nothing to open any more.
            return;
        }
        match result {
            Ok(checkpoints) => {
                tracing::info!(
                    remote_region = %self.deps.remote_region,
                    stream = self.deps.stream,
                    partitions_with_checkpoints = checkpoints.len(),
                    "replicator checkpoints read from the target cluster"
                );
                self.open_from(checkpoints, ctx);
            }
            Err(error) => self.fail(
                ctx,
                &format!(
                    "preparing to ship to region {}: {error}",
                    self.deps.remote_region
                ),
            ),
        }
    }
}

impl Handler<CheckpointWritten> for Replicator {
    type Result = ();

    fn handle(&mut self, written: CheckpointWritten, ctx: &mut Self::Context) {
        let outcome = match &written.result {
            Ok(()) => "written",
            Err(error) => {
                tracing::warn!(
                    remote_region = %self.deps.remote_region,
                    partition = written.partition,
                    error = %error,
                    "replication checkpoint not written; the group position still holds"
                );
                "failed"
            }
        };
        self.deps
            .metrics
            .replication_checkpoints
            .with_label_values(&[self.deps.remote_region.as_str(), self.deps.stream, outcome])
            .inc();
        if self.state == "stopping" {
            self.finish_shutdown_if_drained(ctx);
        }
    }
}

impl Handler<SourceFailed> for Replicator {
    type Result = ();

    fn handle(&mut self, SourceFailed(error): SourceFailed, ctx: &mut Self::Context) {
        self.fail(ctx, &format!("consuming submissions: {error}"));
    }
}

impl Handler<Tick> for Replicator {
    type Result = ();

    fn handle(&mut self, _tick: Tick, ctx: &mut Self::Context) {
        // Idle is progress too; with records in flight only their acks count, so a remote
        // cluster that stopped answering stops the heartbeat.
        if self.in_flight == 0 {
            self.progressed();
        }
        if self.state == "running" {
            self.write_checkpoints(false, ctx);
        }
        self.publish();
    }
}

impl Handler<Restart> for Replicator {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "replicator", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for Replicator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let answer = self.drain.begin();
        self.finish_shutdown_if_drained(ctx);
        answer
    }
}

impl Handler<GetStatus> for Replicator {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
#[path = "replicator_tests.rs"]
mod tests;
