//! Demoter actor: every `demote_interval_ms`, one demotion cycle ([`crate::demotion`]) moves the
//! warm rows past their tenant's `warm_ttl` into verified cold segments and deletes cold segments
//! past retention.
//!
//! A singleton by lease: the cycle first takes (or renews) the `demoter` lease in Postgres, and
//! every transaction of the cycle checks the lease's epoch, so two demoters never move the same
//! rows; the one without the lease stands by (state `standby`) and takes over once the holder's
//! lease runs out (three intervals, at least 30 s). A failed cycle (object store or Postgres down)
//! is logged and counted (`flk_tier_demote_errors_total`) and retried at the next tick, with the
//! interval as its backoff; it never stops the process. Only one cycle runs at a time, and every
//! sealed segment beats the heartbeat, so a long cycle is not mistaken for a stuck one.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::contract::{ActorStatus, GetStatus, Shutdown, StatusBoard, Tick, now_ms};
use crate::demotion::{CycleError, CycleReport, DemotionDeps, run_cycle, take_lease};
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Tick, Shutdown, GetStatus and the watchdog's Restart).
// ---------------------------------------------------------------------------------------------

/// A cycle finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CycleDone(pub Result<CycleReport, CycleError>);

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// What a demoter needs; kept across restarts.
#[derive(Debug, Clone)]
pub struct DemoterDeps {
    /// What a cycle needs.
    pub demotion: DemotionDeps,
    /// This process's lease owner id (unique per start).
    pub owner: String,
    /// Time between cycles.
    pub interval: Duration,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
}

/// The demoter actor.
#[derive(Debug)]
pub struct Demoter {
    /// Dependencies.
    deps: DemoterDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// True while a cycle runs.
    busy: bool,
    /// `starting`, `running`, `standby`, `backing_off`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Answers a shutdown once no cycle runs.
    stopped_opt: Option<oneshot::Sender<()>>,
}

impl Demoter {
    /// A demoter that starts cycling when started under a supervisor.
    pub fn new(deps: DemoterDeps, supervision: Supervision) -> Self {
        Demoter {
            deps,
            supervision,
            busy: false,
            state: "starting",
            last_progress_ms: 0,
            stopped_opt: None,
        }
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        self.state = "running";
        self.progressed();
        self.start_cycle(ctx);
        self.publish();
    }

    fn start_cycle(&mut self, ctx: &mut Context<Self>) {
        if self.busy || !matches!(self.state, "running" | "standby") {
            return;
        }
        self.busy = true;
        let deps = self.deps.clone();
        ctx.spawn(
            async move {
                let lease = take_lease(&deps.demotion, &deps.owner).await?;
                let heartbeat = deps.heartbeat.clone();
                run_cycle(&deps.demotion, &lease, &move |_report: &CycleReport| {
                    heartbeat.beat();
                })
                .await
            }
            .into_actor(self)
            .map(|result, actor, ctx| actor.handle(CycleDone(result), ctx)),
        );
    }

    fn publish(&self) {
        self.deps
            .board
            .publish(self.status(), &self.deps.demotion.metrics);
    }

    fn status(&self) -> ActorStatus {
        let mut status = ActorStatus::new("demoter", self.state, Vec::new());
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status.in_flight = usize::from(self.busy);
        status
    }

    fn progressed(&mut self) {
        self.deps.heartbeat.beat();
        self.last_progress_ms = now_ms();
    }

    fn finish_shutdown_if_idle(&mut self) {
        if !self.busy && self.state == "stopping" {
            self.state = "stopped";
            // Hand the lease over at once (a standby takes it at its next tick).
            let (store, owner) = (self.deps.demotion.store.clone(), self.deps.owner.clone());
            let stopped_opt = self.stopped_opt.take();
            actix::spawn(async move {
                if let Err(error) = store.release_tier_lease(&owner).await {
                    tracing::warn!(error = %error, "demoter lease not released; it runs out by itself");
                }
                if let Some(stopped) = stopped_opt {
                    let _ = stopped.send(());
                }
            });
            self.publish();
        }
    }
}

impl Actor for Demoter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.deps.interval, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for Demoter {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.busy = false;
        self.stopped_opt = None;
        self.deps.heartbeat.beat();
    }
}

impl Handler<CycleDone> for Demoter {
    type Result = ();

    fn handle(&mut self, CycleDone(result): CycleDone, ctx: &mut Self::Context) {
        self.busy = false;
        match result {
            Ok(report) => {
                if self.state == "standby" {
                    tracing::info!("demoter lease taken; demoting");
                    self.state = "running";
                }
                if report.segments + report.expired + report.abandoned > 0 {
                    tracing::info!(
                        segments = report.segments,
                        entries = report.entries,
                        resumed = report.resumed,
                        abandoned = report.abandoned,
                        expired = report.expired,
                        "demotion cycle done"
                    );
                }
                self.progressed();
                // A full cycle means a backlog: go on without waiting for the next tick.
                if report.more_due && self.state == "running" {
                    self.start_cycle(ctx);
                }
            }
            Err(CycleError::Standby) => {
                if self.state == "running" {
                    tracing::info!("another demoter holds the lease; standing by");
                    self.state = "standby";
                }
                self.progressed();
            }
            Err(CycleError::LeaseLost(reason)) => {
                tracing::warn!(reason, "demoter lease lost; standing by");
                self.state = "standby";
                self.progressed();
            }
            Err(CycleError::Failed(error)) => {
                // The tick is the backoff; the heartbeat keeps going so this is not a restart.
                tracing::warn!(error, "demotion cycle failed; retrying next interval");
                self.deps
                    .demotion
                    .metrics
                    .tier_demote_errors
                    .with_label_values(&[] as &[&str])
                    .inc();
                self.progressed();
            }
        }
        self.finish_shutdown_if_idle();
        self.publish();
    }
}

impl Handler<Tick> for Demoter {
    type Result = ();

    fn handle(&mut self, _tick: Tick, ctx: &mut Self::Context) {
        if !self.busy {
            self.progressed();
        }
        self.start_cycle(ctx);
        self.publish();
    }
}

impl Handler<Restart> for Demoter {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "demoter", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for Demoter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let (stopped, answer) = oneshot::channel();
        self.stopped_opt = Some(stopped);
        self.finish_shutdown_if_idle();
        Box::pin(async move {
            let _ = answer.await;
        })
    }
}

impl Handler<GetStatus> for Demoter {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}
