//! The actor contract every role follows (shard, projector, anchorer, audit worker, demoter and
//! replicator today; the divergence checker to come). See `docs/actors.md` for a walk-through.
//!
//! 1. **Typed messages.** A role is an actix actor with a `Handler` for each thing it reacts to:
//!    the log's [`Assigned`], [`Revoked`], [`Consumed`] and [`SourceFailed`] (delivered by its
//!    [`Inlet`]), its own completions (a produce acked, a transaction committed), [`Tick`],
//!    [`Shutdown`] and [`GetStatus`]. Tests send the same messages.
//! 2. **Working state is rebuilt on restart.** actix restarts a supervised actor on the same
//!    instance, so `restarting()` clears every working field and `started()` asks its
//!    [`Supervision`](crate::supervision::Supervision) when to start, then reopens the source and
//!    reloads its checkpoint. Only the supervision state survives a restart.
//! 3. **Observable.** Each actor publishes an [`ActorStatus`] (partitions, positions, lag,
//!    in-flight work, last progress, restarts) to the process's [`StatusBoard`] on every tick and
//!    after assignment changes; `/debug/actors` and the `flk_actor_*` metrics read the board.
//! 4. **Pull, not push.** The [`Inlet`] reads the next events only while the actor says it has
//!    room, so a slow dependency slows the consumer instead of filling memory.
//! 5. **Synchronous revocation.** A [`Revoked`] carries a release; the actor finishes or drops
//!    the partitions' work, stores their last positions, and releases. The log does not move the
//!    partitions before that, and the actor never touches them after.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
pub use infra::clock::now_ms;
use infra::log::{LogError, LogRecord, LogSource, Positions, Release, SourceEvent};
use infra::metrics::Metrics;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Partitions newly assigned by the log.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Assigned(pub Vec<i32>);

/// Partitions being taken away; release them once nothing of theirs is in flight.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Revoked {
    /// The partitions.
    pub partitions: Vec<i32>,
    /// Released (or dropped) when done; the log waits for it.
    pub release: Release,
}

/// A record read from an assigned partition.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Consumed(pub LogRecord);

/// The log source failed; the actor stops and its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SourceFailed(pub LogError);

/// Periodic housekeeping: heartbeat, status, timeouts.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Stop for good (process shutdown): finish or drop work, release partitions, do not restart.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Asks for the actor's current [`ActorStatus`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ActorStatus")]
pub struct GetStatus;

/// How often actors tick.
pub const TICK: Duration = Duration::from_millis(500);

/// One partition as an actor sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// Partition number.
    pub partition: i32,
    /// Last offset whose work is done and stored (`None`: nothing yet in this run).
    pub position_opt: Option<i64>,
    /// Records behind the end of the partition, as last reported by the log.
    pub lag_opt: Option<i64>,
    /// Records taken but not finished (produced and unacked, or in a transaction).
    pub in_flight: usize,
    /// Records read and waiting for their turn.
    pub buffered: usize,
    /// True between a revocation and its release.
    pub revoking: bool,
}

/// What an actor reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActorStatus {
    /// Role (`shard`, `projector`, ...).
    pub role: String,
    /// `starting`, `running`, `backing_off`, `stopped` or `gave_up`.
    pub state: String,
    /// Owned partitions, by number.
    pub partitions: Vec<PartitionStatus>,
    /// Sum of the partitions' in-flight records.
    pub in_flight: usize,
    /// Sum of the partitions' buffered records.
    pub buffered: usize,
    /// Milliseconds since the epoch of the last progress (a record finished or an idle beat).
    pub last_progress_ms: i64,
    /// Restarts since the process started.
    pub restarts: u64,
}

impl ActorStatus {
    /// A status with the totals summed from `partitions`.
    pub fn new(role: &str, state: &str, partitions: Vec<PartitionStatus>) -> Self {
        ActorStatus {
            role: role.to_owned(),
            state: state.to_owned(),
            in_flight: partitions.iter().map(|p| p.in_flight).sum(),
            buffered: partitions.iter().map(|p| p.buffered).sum(),
            partitions,
            last_progress_ms: 0,
            restarts: 0,
        }
    }

    /// Records behind across partitions (unknown lags count as zero).
    pub fn lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag_opt).sum()
    }
}

/// The process's actor statuses, by role; what `/debug/actors` shows (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    /// Latest status per role.
    statuses: Arc<Mutex<BTreeMap<String, ActorStatus>>>,
}

impl StatusBoard {
    /// Records `status` and mirrors it into the `flk_actor_*` gauges.
    pub fn publish(&self, status: ActorStatus, metrics: &Metrics) {
        let role = [status.role.as_str()];
        metrics
            .partitions_owned
            .with_label_values(&role)
            .set(status.partitions.len() as i64);
        metrics
            .actor_in_flight
            .with_label_values(&role)
            .set(status.in_flight as i64);
        metrics
            .actor_buffered
            .with_label_values(&role)
            .set(status.buffered as i64);
        metrics.actor_lag.with_label_values(&role).set(status.lag());
        for partition in &status.partitions {
            if let Some(lag) = partition.lag_opt {
                metrics
                    .actor_partition_lag
                    .with_label_values(&[status.role.as_str(), &partition.partition.to_string()])
                    .set(lag);
            }
        }
        self.statuses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(status.role.clone(), status);
    }

    /// Sets `flk_actor_progress_age_seconds` of every role from its last progress (called when
    /// metrics are rendered, so a stuck actor's age keeps growing).
    pub fn observe_progress_age(&self, metrics: &Metrics, now_ms: i64) {
        for status in self.snapshot() {
            if status.last_progress_ms > 0 {
                metrics
                    .actor_progress_age
                    .with_label_values(&[status.role.as_str()])
                    .set((now_ms - status.last_progress_ms).max(0) as f64 / 1000.0);
            }
        }
    }

    /// Every role's latest status.
    pub fn snapshot(&self) -> Vec<ActorStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// A graceful stop in progress (see [`Shutdown`]): the actor takes no more records, and once
/// nothing is in flight it closes its source; the `Shutdown` answer waits until the source has
/// stopped (for Kafka: left the group and committed the stored positions).
#[derive(Debug, Default)]
pub struct Drain {
    /// Where the source's stop signal goes once drained.
    waiting_opt: Option<oneshot::Sender<Option<oneshot::Receiver<()>>>>,
}

impl Drain {
    /// Begins a graceful stop; returns the `Shutdown` handler's answer.
    pub fn begin(&mut self) -> ResponseFuture<()> {
        let (drained, waiting) = oneshot::channel();
        self.waiting_opt = Some(drained);
        Box::pin(async move {
            if let Ok(Some(closed)) = waiting.await {
                let _ = closed.await;
            }
        })
    }

    /// Ends the stop, if one is in progress: closes `inlet` and lets the answer wait for the
    /// source to stop. Returns whether it did; call it once nothing is in flight.
    pub fn finish<A: Actor<Context = Context<A>>>(
        &mut self,
        inlet: &mut Inlet,
        ctx: &mut Context<A>,
    ) -> bool {
        let Some(waiting) = self.waiting_opt.take() else {
            return false;
        };
        let _ = waiting.send(inlet.close(ctx));
        true
    }
}

/// Most events handled per wake-up of the inlet (bounds one turn of the actor's mailbox).
const EVENTS_PER_TURN: usize = 256;

/// An actor that reads a log source through an [`Inlet`].
pub trait SourceActor:
    Actor<Context = Context<Self>>
    + Handler<Assigned, Result = ()>
    + Handler<Revoked, Result = ()>
    + Handler<Consumed, Result = ()>
    + Handler<SourceFailed, Result = ()>
{
    /// The actor's inlet.
    fn inlet(&mut self) -> &mut Inlet;

    /// Whether the actor can take another record now (backpressure).
    fn has_room(&self) -> bool;
}

/// Reads a source's events into an actor's handlers, only while it has room.
#[derive(Debug, Default)]
pub struct Inlet {
    /// The events; taken out while a read is pending.
    events_opt: Option<mpsc::Receiver<SourceEvent>>,
    /// The pending read, if any.
    reading_opt: Option<SpawnHandle>,
    /// Resolves when the source has fully stopped (see [`infra::log::LogSource::closed`]).
    closed_opt: Option<oneshot::Receiver<()>>,
    /// Set by [`Inlet::close`]: a read in progress must not put the events back.
    shut: bool,
}

impl Inlet {
    /// An inlet over `source`'s events; returns it with the source's position store.
    pub fn open(source: LogSource) -> (Self, Arc<dyn Positions>) {
        let inlet = Inlet {
            events_opt: Some(source.events),
            reading_opt: None,
            closed_opt: Some(source.closed),
            shut: false,
        };
        (inlet, source.positions)
    }

    /// Reads more if the actor has room and no read is pending; call after anything that may
    /// have made room. A closed source stops the actor (its supervisor restarts it).
    pub fn pull<A: SourceActor>(actor: &mut A, ctx: &mut Context<A>) {
        if actor.inlet().reading_opt.is_some() || !actor.has_room() {
            return;
        }
        let Some(mut events) = actor.inlet().events_opt.take() else {
            return;
        };
        let read = async move {
            let first = events.recv().await;
            (events, first)
        };
        let handle = ctx.spawn(
            read.into_actor(actor)
                .map(|(mut events, first), actor, ctx| {
                    actor.inlet().reading_opt = None;
                    let Some(first) = first else {
                        tracing::warn!("log source closed");
                        ctx.stop();
                        return;
                    };
                    dispatch(actor, ctx, first);
                    let mut handled = 1;
                    while handled < EVENTS_PER_TURN && actor.has_room() && !actor.inlet().shut {
                        let Ok(event) = events.try_recv() else { break };
                        dispatch(actor, ctx, event);
                        handled += 1;
                    }
                    if actor.inlet().shut {
                        return;
                    }
                    actor.inlet().events_opt = Some(events);
                    Inlet::pull(actor, ctx);
                }),
        );
        actor.inlet().reading_opt = Some(handle);
    }

    /// Drops the source (cancelling a pending read); returns what resolves once it has fully
    /// stopped.
    pub fn close<A: Actor<Context = Context<A>>>(
        &mut self,
        ctx: &mut Context<A>,
    ) -> Option<oneshot::Receiver<()>> {
        if let Some(handle) = self.reading_opt.take() {
            ctx.cancel_future(handle);
        }
        self.events_opt = None;
        self.shut = true;
        self.closed_opt.take()
    }
}

fn dispatch<A: SourceActor>(actor: &mut A, ctx: &mut Context<A>, event: SourceEvent) {
    match event {
        SourceEvent::Assigned(partitions) => {
            <A as Handler<Assigned>>::handle(actor, Assigned(partitions), ctx);
        }
        SourceEvent::Revoked {
            partitions,
            release,
        } => <A as Handler<Revoked>>::handle(
            actor,
            Revoked {
                partitions,
                release,
            },
            ctx,
        ),
        SourceEvent::Record(record) => {
            <A as Handler<Consumed>>::handle(actor, Consumed(record), ctx)
        }
        SourceEvent::Failed(error) => {
            <A as Handler<SourceFailed>>::handle(actor, SourceFailed(error), ctx);
        }
    }
}
