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

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;
use infra::kafka::headers;
use infra::log::{LogError, LogRecord, LogSink, OutgoingRecord, Positions};
use infra::metrics::Metrics;

use crate::contract::{
    ActorStatus, Assigned, Consumed, Drain, GetStatus, Inlet, Revoked, Shutdown, SourceActor,
    SourceFailed, StatusBoard, TICK, Tick, now_ms,
};
use crate::lanes::Lanes;
use crate::shard::OpenSource;
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Assigned, Revoked, Consumed, SourceFailed, Tick, Shutdown,
// GetStatus and the watchdog's Restart).
// ---------------------------------------------------------------------------------------------

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

/// What a replicator needs; kept across restarts.
#[derive(Clone)]
pub struct ReplicatorDeps {
    /// Subscribes to the local submissions topic.
    pub open_source: OpenSource,
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
    let tenant = record.header_str(headers::TENANT).unwrap_or("default");
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
            state: "starting",
            last_progress_ms: 0,
            drain: Drain::default(),
        }
    }

    /// Opens the source and starts reading.
    fn open(&mut self, ctx: &mut Context<Self>) {
        let opened =
            (self.deps.open_sink)().and_then(|sink| Ok((sink, (self.deps.open_source)()?)));
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

    /// Ends a shutdown once nothing is in flight: closes the source (leaving the group).
    fn finish_shutdown_if_drained(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 {
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

    fn handle(&mut self, revoked: Revoked, _ctx: &mut Self::Context) {
        tracing::info!(partitions = ?revoked.partitions, "replicator partitions revoked");
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
            Ok(true) => self.publish(),
            Ok(false) => {}
            Err(error) => return self.fail(ctx, &format!("storing position: {error}")),
        }
        self.progressed();
        self.finish_shutdown_if_drained(ctx);
        Inlet::pull(self, ctx);
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

    fn handle(&mut self, _tick: Tick, _ctx: &mut Self::Context) {
        // Idle is progress too; with records in flight only their acks count, so a remote
        // cluster that stopped answering stops the heartbeat.
        if self.in_flight == 0 {
            self.progressed();
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
