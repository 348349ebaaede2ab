//! Supervision helpers: restart backoff and the progress heartbeat that detects a stuck actor.
//!
//! actix's `Supervisor` restarts an actor that stops; these add the two things it lacks: a delay
//! that grows with consecutive failures (so a dead dependency is not hammered) and a watchdog that
//! stops an actor whose loop has not made progress for too long (stuck, not crashed).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use prometheus::IntCounter;

/// The work loop of a [`LoopActor`]: runs until it fails (it never returns `Ok` in normal operation).
pub type WorkLoop = LocalBoxFuture<'static, anyhow::Result<()>>;

/// A supervised actor whose whole job is one async loop (shard, projector, ...).
///
/// All working state lives inside the loop's future, so an actix restart (which keeps the same
/// instance) starts from a clean slate: the loop is rebuilt by `make_loop`, reconnects and reloads
/// its checkpoint. When the loop fails, the actor stops and its `Supervisor` restarts it after the
/// backoff delay; the watchdog's [`Restart`] message does the same for a loop that stopped beating.
pub struct LoopActor {
    /// Name used in logs and metrics labels.
    name: &'static str,
    /// Builds a fresh loop for every (re)start.
    make_loop: Box<dyn Fn() -> WorkLoop>,
    /// Restart backoff (supervision state: survives restarts on purpose).
    backoff: Backoff,
    /// The loop's progress heartbeat.
    heartbeat: Heartbeat,
    /// Counts restarts after failures.
    restarts: IntCounter,
}

impl std::fmt::Debug for LoopActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopActor")
            .field("name", &self.name)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl LoopActor {
    /// An actor named `name` running the loops `make_loop` builds.
    pub fn new(
        name: &'static str,
        heartbeat: Heartbeat,
        restarts: IntCounter,
        make_loop: impl Fn() -> WorkLoop + 'static,
    ) -> Self {
        LoopActor {
            name,
            make_loop: Box::new(make_loop),
            backoff: Backoff::default(),
            heartbeat,
            restarts,
        }
    }
}

impl Actor for LoopActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.backoff.next_delay();
        let work = (self.make_loop)();
        let delayed = async move {
            actix::clock::sleep(delay).await;
            work.await
        };
        ctx.spawn(delayed.into_actor(self).map(|result, actor, ctx| {
            if let Err(error) = result {
                tracing::error!(actor = actor.name, error = %format!("{error:#}"), "{} stopped; restarting", actor.name);
                actor.restarts.inc();
            }
            ctx.stop();
        }));
    }
}

impl Supervised for LoopActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.heartbeat.beat();
    }
}

impl Handler<Restart> for LoopActor {
    type Result = ();

    fn handle(&mut self, _msg: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = self.name, "heartbeat stale; restarting");
        ctx.stop();
    }
}

/// Asks a supervised actor to stop so its supervisor restarts it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Restart;

/// Exponential restart delay: 0 on the first start, then 100 ms doubling up to 10 s; resets after
/// a run that lasted longer than a minute.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Consecutive quick failures.
    failures: u32,
    /// When the current run started.
    started_at_opt: Option<Instant>,
}

impl Backoff {
    /// The delay before the next start, and records that a start happens now.
    pub fn next_delay(&mut self) -> Duration {
        let healthy_run = self
            .started_at_opt
            .is_some_and(|started| started.elapsed() > Duration::from_secs(60));
        if healthy_run {
            self.failures = 0;
        }
        let delay = match self.started_at_opt {
            None => Duration::ZERO,
            Some(_) => {
                let exponent = self.failures.min(7);
                Duration::from_millis(100 * (1u64 << exponent)).min(Duration::from_secs(10))
            }
        };
        if self.started_at_opt.is_some() {
            self.failures = self.failures.saturating_add(1);
        }
        self.started_at_opt = Some(Instant::now());
        delay
    }
}

/// A progress timestamp shared between an actor's loop and its watchdog.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Milliseconds since `origin` of the last beat.
    last_beat_ms: Arc<AtomicI64>,
    /// Reference instant.
    origin: Instant,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            last_beat_ms: Arc::new(AtomicI64::new(0)),
            origin: Instant::now(),
        }
    }
}

impl Heartbeat {
    /// Records progress.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.origin.elapsed().as_millis() as i64, Ordering::Relaxed);
    }

    /// Records progress up to `instant` (earlier than now when work started then is still
    /// unfinished): the age then counts from that instant.
    pub fn beat_at(&self, instant: Instant) {
        let since_origin = instant.saturating_duration_since(self.origin);
        self.last_beat_ms
            .store(since_origin.as_millis() as i64, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as i64;
        Duration::from_millis((now - self.last_beat_ms.load(Ordering::Relaxed)).max(0) as u64)
    }
}

/// Watches heartbeats and sends [`Restart`] to actors that stopped beating.
pub struct Watchdog {
    /// (name, heartbeat, recipient) of each watched actor.
    watched: Vec<(&'static str, Heartbeat, Recipient<Restart>)>,
    /// A heartbeat older than this means stuck.
    stale_after: Duration,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("watched", &self.watched.len())
            .field("stale_after", &self.stale_after)
            .finish()
    }
}

impl Watchdog {
    /// A watchdog over `watched` actors.
    pub fn new(
        watched: Vec<(&'static str, Heartbeat, Recipient<Restart>)>,
        stale_after: Duration,
    ) -> Self {
        Watchdog {
            watched,
            stale_after,
        }
    }
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (_, heartbeat, _) in &self.watched {
            heartbeat.beat();
        }
        let period = (self.stale_after / 4).max(Duration::from_millis(100));
        ctx.run_interval(period, |watchdog, _ctx| {
            for (name, heartbeat, recipient) in &watchdog.watched {
                if heartbeat.age() > watchdog.stale_after {
                    tracing::warn!(
                        actor = name,
                        age_ms = heartbeat.age().as_millis() as u64,
                        "actor stuck"
                    );
                    heartbeat.beat();
                    recipient.do_send(Restart);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_at_an_earlier_instant_ages_the_heartbeat_from_then() {
        let Some(origin) = Instant::now().checked_sub(Duration::from_secs(10)) else {
            return; // a clock less than 10 s old cannot hold the scenario
        };
        let heartbeat = Heartbeat {
            last_beat_ms: Arc::new(AtomicI64::new(0)),
            origin,
        };
        heartbeat.beat();
        assert!(heartbeat.age() < Duration::from_secs(5));
        // Work that started 9 s ago is still unfinished: the heartbeat is as old as that work.
        heartbeat.beat_at(origin + Duration::from_secs(1));
        assert!(heartbeat.age() >= Duration::from_secs(9));
        heartbeat.beat_at(Instant::now());
        assert!(heartbeat.age() < Duration::from_secs(5));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_delay(), Duration::ZERO);
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(10));
    }
}
