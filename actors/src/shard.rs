//! Shard actor: turns every submission of its assigned partitions into exactly one decision event
//! on `flk.decisions` (same partition: the topics are co-partitioned), rejections included.
//!
//! At-least-once: a submission's position is stored only after its decision is acked by the log,
//! in offset order per partition. A crash in between re-decides the submission; the projector
//! ignores the second decision because the audit log is unique on source coordinates.
//!
//! Decisions are produced in submission order (the handler produces synchronously), which keeps
//! "first write wins" in log order. Revocation is synchronous: a revoked partition takes no new
//! records, its unacked decisions are waited for and their positions stored, and only then is the
//! partition released, so a rebalance neither re-decides acked work nor stores a position for a
//! partition this process no longer owns.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use events::{DecisionEvent, SourceCoordinates, SubmissionSource, TenantPolicy, decide};
use infra::failpoints::{Failpoints, Fired, points};
use infra::kafka::headers;
use infra::log::{LogError, LogRecord, LogSink, LogSource, OutgoingRecord, Positions};
use infra::metrics::Metrics;
use infra::tracing_context;
use tracing::Instrument as _;

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

/// The log answered the produce of one decision.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DecisionAcked {
    /// Submissions partition.
    pub partition: i32,
    /// Submission offset the decision is about.
    pub offset: i64,
    /// The log's answer.
    pub result: Result<(), LogError>,
}

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// Most decisions awaiting their ack at once (bounds memory and redelivery after a crash).
pub const MAX_IN_FLIGHT: usize = 2_048;

/// Opens a fresh subscription to the submissions topic (called on every start).
pub type OpenSource = Arc<dyn Fn() -> Result<LogSource, LogError> + Send + Sync>;

/// What a shard needs; kept across restarts.
#[derive(Clone)]
pub struct ShardDeps {
    /// Its role on the status board: `shard` for local submissions, `shard-<origin>` for a
    /// region's mirrored ones.
    pub role: String,
    /// Subscribes to the submissions topic.
    pub open_source: OpenSource,
    /// Where decisions go.
    pub sink: Arc<dyn LogSink>,
    /// `flk.decisions` with prefix.
    pub decisions_topic: String,
    /// Region recorded in decisions.
    pub region: String,
    /// Tenants by name.
    pub tenants: Arc<HashMap<String, TenantPolicy>>,
    /// Largest body decided as a PCS; larger direct-Kafka records are decided malformed.
    pub max_body_bytes: usize,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
    /// Fault injection (tests).
    pub failpoints: Failpoints,
}

impl std::fmt::Debug for ShardDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardDeps")
            .field("decisions_topic", &self.decisions_topic)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The shard actor.
#[derive(Debug)]
pub struct Shard {
    /// Dependencies.
    deps: ShardDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// Reads the submissions.
    inlet: Inlet,
    /// Position store of the current source.
    positions_opt: Option<Arc<dyn Positions>>,
    /// Assigned partitions: unacked decisions, stored positions, revocations.
    lanes: Lanes,
    /// Decisions awaiting their ack, all lanes.
    in_flight: usize,
    /// `running`, `backing_off`, `stalled`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Told when a shutdown has drained.
    drain: Drain,
}

impl Shard {
    /// A shard that starts consuming when started under a supervisor.
    pub fn new(deps: ShardDeps, supervision: Supervision) -> Self {
        Shard {
            deps,
            supervision,
            inlet: Inlet::default(),
            positions_opt: None,
            lanes: Lanes::default(),
            in_flight: 0,
            state: "starting",
            last_progress_ms: 0,
            drain: Drain::default(),
        }
    }

    /// Opens the source and starts reading.
    fn open(&mut self, ctx: &mut Context<Self>) {
        match (self.deps.open_source)() {
            Ok(source) => {
                let (inlet, positions) = Inlet::open(source);
                self.inlet = inlet;
                self.positions_opt = Some(positions);
                self.state = "running";
                tracing::info!(topic = "submissions", "shard consuming");
                Inlet::pull(self, ctx);
            }
            Err(error) => self.fail(ctx, &error),
        }
    }

    /// Stops the actor; its supervisor restarts it.
    fn fail(&mut self, ctx: &mut Context<Self>, error: &dyn std::fmt::Display) {
        tracing::error!(actor = "shard", error = %error, "shard stopped; restarting");
        ctx.stop();
    }

    /// Decides one record and queues its decision; `Err` means the sink refused it.
    fn decide_and_produce(
        &mut self,
        record: &LogRecord,
        ctx: &mut Context<Self>,
    ) -> Result<(), String> {
        let span = decide_span(record);
        let (event, produce_span) = span.in_scope(|| {
            let mut event = decide_record(record, &self.deps);
            let pcs_id = event
                .pcs_id_opt
                .as_deref()
                .map_or("", tracing_context::displayable_id);
            span.record("tenant", event.tenant.as_str());
            span.record("pcs_id", pcs_id);
            span.record("verdict", event.verdict.code());
            // One line per decision, at debug level only (ids and the verdict; never the body).
            tracing::debug!(
                tenant = event.tenant.as_str(),
                pcs_id,
                verdict = event.verdict.code(),
                "decided"
            );
            // Producing the decision is a span of its own, a child of the decide span.
            let produce_span = tracing::info_span!(
                "shard.produce_decision",
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.destination.name = self.deps.decisions_topic.as_str(),
                messaging.kafka.partition = record.partition,
                tenant = event.tenant.as_str(),
                pcs_id,
            );
            // The projector's span follows the produce span: the decision event carries it.
            event.traceparent_opt = tracing_context::outgoing_traceparent(
                &produce_span,
                record.header_str(headers::TRACEPARENT),
            );
            (event, produce_span)
        });
        self.deps
            .metrics
            .decisions_produced
            .with_label_values(&[event.verdict.code()])
            .inc();
        let payload = event.encode().map_err(|error| error.to_string())?;
        let outgoing = OutgoingRecord {
            topic: self.deps.decisions_topic.clone(),
            partition_opt: Some(record.partition),
            key: format!("{}/{}", record.partition, record.offset).into_bytes(),
            payload,
            headers: Vec::new(),
        };
        let ack = self
            .deps
            .sink
            .produce(outgoing)
            .map_err(|error| error.to_string())?;
        let (partition, offset) = (record.partition, record.offset);
        self.lanes.start(partition, offset);
        self.in_flight += 1;
        // The produce span (and so its parent, the decide span) lasts until the log acks.
        ctx.spawn(
            ack.instrument(produce_span)
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    actor.handle(
                        DecisionAcked {
                            partition,
                            offset,
                            result,
                        },
                        ctx,
                    );
                }),
        );
        Ok(())
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
        let mut status = ActorStatus::new(&self.deps.role, self.state, self.lanes.statuses(&lag));
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status
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

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for Shard {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Dropping the lanes drops their revocation shares (released); dropping the inlet closes
        // the source. Unacked decisions are decided again after the restart (at-least-once).
        self.inlet = Inlet::default();
        self.positions_opt = None;
        self.lanes.clear();
        self.in_flight = 0;
        self.drain = Drain::default();
        self.deps.heartbeat.beat();
    }
}

impl SourceActor for Shard {
    fn inlet(&mut self) -> &mut Inlet {
        &mut self.inlet
    }

    fn has_room(&self) -> bool {
        self.in_flight < MAX_IN_FLIGHT && self.state == "running"
    }
}

impl Handler<Assigned> for Shard {
    type Result = ();

    fn handle(&mut self, Assigned(partitions): Assigned, _ctx: &mut Self::Context) {
        tracing::info!(?partitions, "shard partitions assigned");
        self.lanes.assign(partitions);
        self.publish();
    }
}

impl Handler<Revoked> for Shard {
    type Result = ();

    fn handle(&mut self, revoked: Revoked, _ctx: &mut Self::Context) {
        tracing::info!(partitions = ?revoked.partitions, "shard partitions revoked");
        self.lanes.revoke(revoked.partitions, revoked.release);
        self.publish();
    }
}

impl Handler<Consumed> for Shard {
    type Result = ();

    fn handle(&mut self, Consumed(record): Consumed, ctx: &mut Self::Context) {
        match self.deps.failpoints.fire(points::SHARD_BEFORE_PRODUCE) {
            Some(Fired::Error) => return self.fail(ctx, &"failpoint shard.before_produce"),
            Some(Fired::Stall) => {
                // A stuck handler: no more reads, no more beats, until the watchdog restarts us.
                self.state = "stalled";
                return;
            }
            None => {}
        }
        if self.lanes.is_revoking(record.partition) {
            // Being handed over: its next owner decides this record.
            return;
        }
        self.observe_replication_lag(&record);
        if let Err(error) = self.decide_and_produce(&record, ctx) {
            self.fail(ctx, &format!("producing decision: {error}"));
        }
    }
}

impl Shard {
    /// For a record mirrored from another region: how long it took from its origin's gateway (its
    /// received-at) to this region's shard.
    fn observe_replication_lag(&self, record: &LogRecord) {
        // Only the shard of a mirrored topic (role `shard-<origin>`), and the label from the
        // configured origin, never from a header anyone producing to Kafka could set.
        let Some(origin) = self.deps.role.strip_prefix("shard-") else {
            return;
        };
        if record.header_str(headers::ORIGIN_REGION).is_none() {
            return;
        }
        let Some(received_at_ms) = record
            .header_str(headers::RECEIVED_AT)
            .and_then(|value| value.parse::<i64>().ok())
        else {
            return;
        };
        let lag_seconds = (now_ms() - received_at_ms).max(0) as f64 / 1_000.0;
        self.deps
            .metrics
            .crr_lag
            .with_label_values(&[origin, "record"])
            .observe(lag_seconds);
    }
}

impl Handler<DecisionAcked> for Shard {
    type Result = ();

    fn handle(&mut self, acked: DecisionAcked, ctx: &mut Self::Context) {
        if let Err(error) = acked.result {
            return self.fail(ctx, &format!("decision not delivered: {error}"));
        }
        self.in_flight = self.in_flight.saturating_sub(1);
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

impl Handler<SourceFailed> for Shard {
    type Result = ();

    fn handle(&mut self, SourceFailed(error): SourceFailed, ctx: &mut Self::Context) {
        self.fail(ctx, &format!("consuming submissions: {error}"));
    }
}

impl Handler<Tick> for Shard {
    type Result = ();

    fn handle(&mut self, _tick: Tick, _ctx: &mut Self::Context) {
        // Idle is progress too; with decisions in flight only their acks count, so a stuck
        // produce stops the heartbeat.
        if self.in_flight == 0 && self.state != "stalled" {
            self.progressed();
        }
        self.publish();
    }
}

impl Handler<Restart> for Shard {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "shard", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for Shard {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let answer = self.drain.begin();
        self.finish_shutdown_if_drained(ctx);
        answer
    }
}

impl Handler<GetStatus> for Shard {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

/// One span per submission, continuing the trace its record carries (`traceparent` header).
fn decide_span(record: &LogRecord) -> tracing::Span {
    let span = tracing::info_span!(
        "shard.decide",
        otel.kind = "consumer",
        partition = record.partition,
        offset = record.offset,
        tenant = tracing::field::Empty,
        pcs_id = tracing::field::Empty,
        verdict = tracing::field::Empty,
    );
    tracing_context::continue_context(&span, tracing_context::context_from_record(record));
    span
}

/// Builds the decision event of one submission record (pure apart from the clock), without its
/// trace context, which the caller adds.
fn decide_record(record: &LogRecord, deps: &ShardDeps) -> DecisionEvent {
    let tenant = record.tenant().to_owned();
    let body = record.payload.as_slice();
    let policy_opt = deps.tenants.get(&tenant);
    let decision = if body.len() > deps.max_body_bytes {
        events::Decision {
            verdict: events::Verdict::Malformed {
                error: format!(
                    "body is {} bytes, over the {} byte limit",
                    body.len(),
                    deps.max_body_bytes
                ),
            },
            pcs_id_opt: None,
            signed_digest_opt: None,
            key_id_opt: None,
        }
    } else {
        decide(body, &tenant, policy_opt)
    };
    let received_at_ms = record
        .header_str(headers::RECEIVED_AT)
        .and_then(|text| text.parse().ok())
        .unwrap_or(record.timestamp_ms_opt.unwrap_or_default());
    DecisionEvent {
        source: SourceCoordinates {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        },
        submission_source: submission_source(record),
        tenant,
        pcs_id_opt: decision.pcs_id_opt,
        signed_digest_opt: decision.signed_digest_opt,
        verdict: decision.verdict,
        params_version: policy_opt.map_or(0, |policy| policy.params_version),
        key_id_opt: decision.key_id_opt,
        region: deps.region.clone(),
        received_at_ms,
        decided_at_ms: now_ms(),
        // Set by the caller to the produce span's context.
        traceparent_opt: None,
    }
}

fn number<T: std::str::FromStr>(record: &LogRecord, name: &str) -> Option<T> {
    record.header_str(name).and_then(|text| text.parse().ok())
}

fn submission_source(record: &LogRecord) -> SubmissionSource {
    match record.header_str(headers::SOURCE) {
        Some("gateway") => SubmissionSource::Gateway,
        Some("replica") => SubmissionSource::Replica {
            origin_region: record
                .header_str(headers::ORIGIN_REGION)
                .unwrap_or_default()
                .to_owned(),
            origin_partition: number(record, headers::ORIGIN_PARTITION).unwrap_or(-1),
            origin_offset: number(record, headers::ORIGIN_OFFSET).unwrap_or(-1),
            hops: number(record, headers::HOPS).unwrap_or(1),
        },
        _ => SubmissionSource::Kafka,
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
