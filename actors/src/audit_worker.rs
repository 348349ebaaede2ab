//! Audit worker actor: runs the tasks of `flk.audit.tasks` (consumer group `flk-audit-worker`,
//! so more workers share the partitions) and gives up on a task only into the DLQ.
//!
//! Each task runs as its own future: skipped when its id is already recorded as done, else tried
//! up to `task_max_attempts` times with exponential backoff and full jitter between attempts; a
//! success is recorded by id (idempotency), a task that used up its attempts (or can never
//! succeed: an unknown kind, a bad payload) goes to the DLQ with the reason and every attempt,
//! both into Postgres (`flk audit dlq`) and onto `flk.audit.dlq` for outside consumers.
//!
//! Positions: a task's position is stored only when it is finished (done, skipped or dead), in
//! offset order per partition, so a crash redelivers unfinished tasks and the idempotency record
//! makes the redelivery harmless. A slow task (a time-stamping authority that is down) holds back
//! its partition's position, never the actor: other tasks keep running, up to
//! [`MAX_IN_FLIGHT`]. Ingestion never waits for any of this.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use events::audit_task::{Attempt, AuditTask, DeadTask, backoff_ms};
use infra::config::AuditConfig;
use infra::log::{LogRecord, LogSink, OutgoingRecord, Positions};
use infra::metrics::Metrics;
use serde_json::Value;

use crate::audit_task_kinds::{TaskContext, TaskError, execute};
use crate::contract::{
    ActorStatus, Assigned, Consumed, Drain, GetStatus, Inlet, Revoked, Shutdown, SourceActor,
    SourceFailed, StatusBoard, TICK, Tick, now_ms,
};
use crate::lanes::Lanes;
use crate::shard::OpenSource;
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's).
// ---------------------------------------------------------------------------------------------

/// A task finished: done, skipped, or dead (in the DLQ).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TaskFinished {
    /// Tasks partition.
    pub partition: i32,
    /// The task's offset.
    pub offset: i64,
    /// `Err` when recording the outcome failed (the task is redelivered after a restart).
    pub result: Result<(), String>,
}

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// Tasks running at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// Ticks between refreshes of the DLQ depth gauge (about 10 s).
const DEPTH_REFRESH_TICKS: u64 = 20;

/// Consumer group of the workers.
pub const GROUP: &str = "flk-audit-worker";

/// What a worker needs; kept across restarts.
#[derive(Clone)]
pub struct AuditWorkerDeps {
    /// Subscribes to `flk.audit.tasks`.
    pub open_source: OpenSource,
    /// Where dead tasks are produced.
    pub sink: Arc<dyn LogSink>,
    /// `flk.audit.dlq` with prefix.
    pub dlq_topic: String,
    /// What the task kinds need.
    pub context: TaskContext,
    /// Attempts and backoff.
    pub retry: AuditConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
}

impl std::fmt::Debug for AuditWorkerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWorkerDeps")
            .field("dlq_topic", &self.dlq_topic)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The audit worker actor.
#[derive(Debug)]
pub struct AuditWorker {
    /// Dependencies.
    deps: AuditWorkerDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// Reads the tasks.
    inlet: Inlet,
    /// Position store of the current source.
    positions_opt: Option<Arc<dyn Positions>>,
    /// Assigned partitions: unfinished tasks, stored positions, revocations.
    lanes: Lanes,
    /// Tasks running, all lanes.
    in_flight: usize,
    /// `running`, `backing_off`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Told when a shutdown has drained.
    drain: Drain,
    /// Ticks so far (for the periodic DLQ depth refresh).
    ticks: u64,
}

impl AuditWorker {
    /// A worker that starts consuming when started under a supervisor.
    pub fn new(deps: AuditWorkerDeps, supervision: Supervision) -> Self {
        AuditWorker {
            deps,
            supervision,
            inlet: Inlet::default(),
            positions_opt: None,
            lanes: Lanes::default(),
            in_flight: 0,
            state: "starting",
            last_progress_ms: 0,
            drain: Drain::default(),
            ticks: 0,
        }
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        match (self.deps.open_source)() {
            Ok(source) => {
                let (inlet, positions) = Inlet::open(source);
                self.inlet = inlet;
                self.positions_opt = Some(positions);
                self.state = "running";
                tracing::info!(topic = "audit tasks", "audit worker consuming");
                Inlet::pull(self, ctx);
            }
            Err(error) => self.fail(ctx, &error),
        }
    }

    fn fail(&mut self, ctx: &mut Context<Self>, error: &dyn std::fmt::Display) {
        tracing::error!(actor = "audit_worker", error = %error, "audit worker stopped; restarting");
        ctx.stop();
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
        let mut status = ActorStatus::new("audit_worker", self.state, self.lanes.statuses(&lag));
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status
    }

    fn progressed(&mut self) {
        self.deps.heartbeat.beat();
        self.last_progress_ms = now_ms();
    }

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

impl Actor for AuditWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for AuditWorker {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.inlet = Inlet::default();
        self.positions_opt = None;
        self.lanes.clear();
        self.in_flight = 0;
        self.drain = Drain::default();
        self.deps.heartbeat.beat();
    }
}

impl SourceActor for AuditWorker {
    fn inlet(&mut self) -> &mut Inlet {
        &mut self.inlet
    }

    fn has_room(&self) -> bool {
        self.in_flight < MAX_IN_FLIGHT && self.state == "running"
    }
}

impl Handler<Assigned> for AuditWorker {
    type Result = ();

    fn handle(&mut self, Assigned(partitions): Assigned, _ctx: &mut Self::Context) {
        self.lanes.assign(partitions);
        self.publish();
    }
}

impl Handler<Revoked> for AuditWorker {
    type Result = ();

    fn handle(&mut self, revoked: Revoked, _ctx: &mut Self::Context) {
        self.lanes.revoke(revoked.partitions, revoked.release);
        self.publish();
    }
}

impl Handler<Consumed> for AuditWorker {
    type Result = ();

    fn handle(&mut self, Consumed(record): Consumed, ctx: &mut Self::Context) {
        if !self.lanes.contains(record.partition) || self.lanes.is_revoking(record.partition) {
            return;
        }
        self.lanes.start(record.partition, record.offset);
        self.in_flight += 1;
        let deps = self.deps.clone();
        let (partition, offset) = (record.partition, record.offset);
        ctx.spawn(
            async move { run_task(&deps, &record).await }
                .into_actor(self)
                .map(move |result, actor, ctx| {
                    actor.handle(
                        TaskFinished {
                            partition,
                            offset,
                            result,
                        },
                        ctx,
                    );
                }),
        );
    }
}

impl Handler<TaskFinished> for AuditWorker {
    type Result = ();

    fn handle(&mut self, finished: TaskFinished, ctx: &mut Self::Context) {
        if let Err(error) = finished.result {
            return self.fail(ctx, &format!("recording a task outcome: {error}"));
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Err(error) = self.lanes.finish(
            finished.partition,
            finished.offset,
            self.positions_opt.as_ref(),
        ) {
            return self.fail(ctx, &format!("storing position: {error}"));
        }
        self.progressed();
        self.publish();
        self.finish_shutdown_if_drained(ctx);
        Inlet::pull(self, ctx);
    }
}

impl Handler<SourceFailed> for AuditWorker {
    type Result = ();

    fn handle(&mut self, SourceFailed(error): SourceFailed, ctx: &mut Self::Context) {
        self.fail(ctx, &format!("consuming audit tasks: {error}"));
    }
}

impl Handler<Tick> for AuditWorker {
    type Result = ();

    fn handle(&mut self, _tick: Tick, ctx: &mut Self::Context) {
        // Tasks in backoff are progress too: the worker is alive while it waits for them.
        self.progressed();
        self.publish();
        // The DLQ depth changes by operators too (redrive, drop): refresh it now and then.
        self.ticks += 1;
        if self.ticks % DEPTH_REFRESH_TICKS == 1 {
            let (store, gauge) = (
                self.deps.context.store.clone(),
                self.deps
                    .metrics
                    .audit_dlq_depth
                    .with_label_values(&[] as &[&str]),
            );
            ctx.spawn(
                async move {
                    if let Ok(depth) = store.dlq_depth().await {
                        gauge.set(depth);
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Handler<Restart> for AuditWorker {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "audit_worker", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for AuditWorker {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let answer = self.drain.begin();
        self.finish_shutdown_if_drained(ctx);
        answer
    }
}

impl Handler<GetStatus> for AuditWorker {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Runs one task record to its end: skipped, done, or dead. `Err` only when the outcome could
/// not be recorded (the actor restarts and the task comes again).
async fn run_task(deps: &AuditWorkerDeps, record: &LogRecord) -> Result<(), String> {
    let metrics = &deps.metrics;
    let task = match AuditTask::decode(&record.payload) {
        Ok(task) => task,
        Err(error) => {
            let id = format!(
                "undecodable:{}:{}:{}",
                record.topic, record.partition, record.offset
            );
            let text = String::from_utf8_lossy(&record.payload).into_owned();
            let dead = DeadTask {
                task: Value::String(text),
                reason: format!("undecodable task: {error}"),
                attempts: Vec::new(),
                dead_at_ms: now_ms(),
            };
            return bury(deps, &id, "undecodable", &dead).await;
        }
    };
    let store = &deps.context.store;
    if store
        .task_done(&task.id)
        .await
        .map_err(|error| error.to_string())?
    {
        metrics
            .audit_task_attempts
            .with_label_values(&[kind_label(&task.kind), "skipped"])
            .inc();
        return Ok(());
    }
    let kind_label = kind_label(&task.kind);
    let mut attempts = Vec::new();
    let max = deps.retry.task_max_attempts;
    for attempt in 1..=max {
        match execute(&deps.context, &task).await {
            Ok(result) => {
                store
                    .record_task_done(&task.id, &task.kind, attempt as i32, now_ms(), &result)
                    .await
                    .map_err(|error| error.to_string())?;
                metrics
                    .audit_task_attempts
                    .with_label_values(&[kind_label, "ok"])
                    .inc();
                observe_age(metrics, &task);
                return Ok(());
            }
            Err(error) => {
                let permanent = matches!(error, TaskError::Permanent(_));
                tracing::warn!(task_kind = kind_label, attempt, error = %error, permanent, "audit task attempt failed");
                attempts.push(Attempt {
                    at_ms: now_ms(),
                    error: error.to_string(),
                });
                metrics
                    .audit_task_attempts
                    .with_label_values(&[kind_label, "failed"])
                    .inc();
                if permanent {
                    break;
                }
                if attempt < max {
                    let delay = backoff_ms(
                        attempt,
                        deps.retry.task_backoff_initial_ms,
                        deps.retry.task_backoff_max_ms,
                        rand::random::<f64>(),
                    );
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
            }
        }
    }
    let reason = attempts
        .last()
        .map_or_else(|| "no attempt".to_owned(), |last| last.error.clone());
    let dead = DeadTask {
        task: serde_json::to_value(&task).unwrap_or(Value::Null),
        reason,
        attempts,
        dead_at_ms: now_ms(),
    };
    observe_age(metrics, &task);
    bury(deps, &task.id, kind_label, &dead).await
}

/// Bounded metric label for a kind (an unknown kind from a stray producer is `other`).
fn kind_label(kind: &str) -> &'static str {
    use events::audit_task::kinds;
    match kind {
        kinds::ATTEST_EXTERNAL => kinds::ATTEST_EXTERNAL,
        kinds::GENERATE_REPORT => kinds::GENERATE_REPORT,
        _ => "other",
    }
}

fn observe_age(metrics: &Metrics, task: &AuditTask) {
    let age_ms = (now_ms() - task.created_at_ms).max(0);
    metrics
        .audit_task_age
        .with_label_values(&[kind_label(&task.kind)])
        .observe(age_ms as f64 / 1000.0);
}

/// Puts a dead task into the DLQ: Postgres first (what `flk audit dlq` works on), then the
/// DLQ topic for outside consumers.
async fn bury(deps: &AuditWorkerDeps, id: &str, kind: &str, dead: &DeadTask) -> Result<(), String> {
    let store = &deps.context.store;
    store
        .record_dead_task(id, kind, dead)
        .await
        .map_err(|error| error.to_string())?;
    tracing::error!(task_id = id, task_kind = kind, reason = %dead.reason, "audit task moved to the DLQ");
    deps.metrics
        .audit_task_attempts
        .with_label_values(&[kind_label(kind), "dead"])
        .inc();
    let record = OutgoingRecord {
        topic: deps.dlq_topic.clone(),
        partition_opt: None,
        key: id.as_bytes().to_vec(),
        payload: serde_json::to_vec(dead).unwrap_or_default(),
        headers: Vec::new(),
    };
    match deps.sink.produce(record) {
        Ok(ack) => {
            if let Err(error) = ack.await {
                tracing::warn!(error = %error, "dead task not copied to the DLQ topic");
            }
        }
        Err(error) => tracing::warn!(error = %error, "dead task not copied to the DLQ topic"),
    }
    if let Ok(depth) = store.dlq_depth().await {
        deps.metrics
            .audit_dlq_depth
            .with_label_values(&[] as &[&str])
            .set(depth);
    }
    Ok(())
}
