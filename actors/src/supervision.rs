//! Supervision: restart backoff with jitter, a restart budget, and the progress heartbeat that
//! detects a stuck actor.
//!
//! actix's `Supervisor` restarts an actor that stops; these add what it lacks: a delay that grows
//! with consecutive failures (so a dead dependency is not hammered) and is jittered (so actors
//! failing together do not retry together), a budget after which the process exits non-zero
//! (a crash loop is visible to whoever runs it), and a watchdog that stops an actor whose
//! heartbeat has not moved for too long (stuck, not crashed).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus::IntCounter;

/// Asks a supervised actor to stop so its supervisor restarts it (sent by the [`Watchdog`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Restart;

/// Called once when an actor used up its restart budget; `flk serve` exits non-zero then.
pub type OnExhausted = Arc<dyn Fn(&'static str) + Send + Sync>;

/// How an actor is restarted: exponential backoff with jitter, and a budget of restarts in a
/// sliding window after which the process gives up.
#[derive(Debug, Clone)]
pub struct SupervisorPolicy {
    /// Delay after the first failure of a series.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Share of each delay taken away at random (0.5: the delay lands in [d/2, d]), so actors
    /// failing together on a shared dependency do not retry in lockstep.
    pub jitter: f64,
    /// A run this long resets the series (the next failure waits `initial` again).
    pub healthy_after: Duration,
    /// Restarts allowed within `window`.
    pub budget: u32,
    /// The budget's sliding window.
    pub window: Duration,
}

impl SupervisorPolicy {
    /// The policy the configuration asks for.
    pub fn from_config(config: &infra::config::SupervisionConfig) -> Self {
        SupervisorPolicy {
            initial: Duration::from_millis(config.backoff_initial_ms),
            max: Duration::from_millis(config.backoff_max_ms),
            jitter: 0.5,
            healthy_after: Duration::from_secs(60),
            budget: config.restart_budget,
            window: Duration::from_secs(config.restart_window_secs),
        }
    }

    /// The delay before restart number `failures` (1-based) of a series, before jitter.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }
}

impl Default for SupervisorPolicy {
    fn default() -> Self {
        SupervisorPolicy::from_config(&infra::config::SupervisionConfig::default())
    }
}

/// One actor's supervision state. It lives in the actor but outside the working state, so it
/// survives actix restarts (which keep the same instance) on purpose.
pub struct Supervision {
    /// Role name for logs, metrics and the exit hook.
    role: &'static str,
    /// The policy.
    policy: SupervisorPolicy,
    /// Failures in the current series.
    failures: u32,
    /// When the current run started (`None` before the first start).
    started_at_opt: Option<Instant>,
    /// Restart instants within the window.
    recent: VecDeque<Instant>,
    /// Restarts since the process started.
    restarts_total: u64,
    /// Counts restarts (`flk_actor_restarts_total{role}`).
    restarts_metric: IntCounter,
    /// Told once when the budget is used up.
    on_exhausted: OnExhausted,
    /// Set once the budget is used up: the actor stays stopped.
    exhausted: bool,
}

impl std::fmt::Debug for Supervision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision")
            .field("role", &self.role)
            .field("failures", &self.failures)
            .field("restarts_total", &self.restarts_total)
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

/// What the supervisor decided for a (re)start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// Start after this delay (zero for the first start).
    After(Duration),
    /// The restart budget is used up: do not start again.
    GiveUp,
}

impl Supervision {
    /// Supervision of `role` under `policy`.
    pub fn new(
        role: &'static str,
        policy: SupervisorPolicy,
        restarts_metric: IntCounter,
        on_exhausted: OnExhausted,
    ) -> Self {
        Supervision {
            role,
            policy,
            failures: 0,
            started_at_opt: None,
            recent: VecDeque::new(),
            restarts_total: 0,
            restarts_metric,
            on_exhausted,
            exhausted: false,
        }
    }

    /// Called from `started()`: the first start goes at once; each restart counts against the
    /// budget and waits the backoff delay.
    pub fn next_start(&mut self) -> StartDecision {
        let now = Instant::now();
        let Some(started_at) = self.started_at_opt.replace(now) else {
            return StartDecision::After(Duration::ZERO);
        };
        if self.exhausted {
            return StartDecision::GiveUp;
        }
        if now.duration_since(started_at) >= self.policy.healthy_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.restarts_total += 1;
        self.restarts_metric.inc();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.policy.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > self.policy.budget as usize {
            self.exhausted = true;
            tracing::error!(
                actor = self.role,
                restarts = self.recent.len(),
                window_secs = self.policy.window.as_secs(),
                "restart budget used up; giving up"
            );
            (self.on_exhausted)(self.role);
            return StartDecision::GiveUp;
        }
        let ceiling = self.policy.ceiling(self.failures);
        let cut = self.policy.jitter.clamp(0.0, 1.0) * rand::random::<f64>();
        StartDecision::After(ceiling.mul_f64(1.0 - cut))
    }

    /// Restarts since the process started.
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }

    /// Role name.
    pub fn role(&self) -> &'static str {
        self.role
    }
}

/// What every actor's `started()` does: asks `supervision` when to start, then runs `open` after
/// that delay (zero the first time), or never once the restart budget is spent. Returns the
/// state to report meanwhile.
pub fn schedule_start<A: Actor<Context = Context<A>>>(
    supervision: &mut Supervision,
    ctx: &mut Context<A>,
    open: fn(&mut A, &mut Context<A>),
) -> &'static str {
    match supervision.next_start() {
        StartDecision::GiveUp => "gave_up",
        StartDecision::After(delay) => {
            ctx.run_later(delay, open);
            if delay.is_zero() {
                "starting"
            } else {
                "backing_off"
            }
        }
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

    fn supervision(policy: SupervisorPolicy, exhausted: Arc<AtomicI64>) -> Supervision {
        Supervision::new(
            "test",
            policy,
            IntCounter::new("restarts", "restarts").unwrap(),
            Arc::new(move |_| {
                exhausted.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[test]
    fn delays_double_within_their_jitter_band_and_cap() {
        let policy = SupervisorPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.5,
            healthy_after: Duration::from_secs(60),
            budget: 1_000,
            window: Duration::from_secs(60),
        };
        let mut supervision = supervision(policy.clone(), Arc::default());
        assert_eq!(
            supervision.next_start(),
            StartDecision::After(Duration::ZERO)
        );
        for failures in 1..=12u32 {
            let ceiling = policy.ceiling(failures);
            let StartDecision::After(delay) = supervision.next_start() else {
                panic!("gave up early");
            };
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{failures}: {delay:?} vs {ceiling:?}"
            );
        }
        assert_eq!(policy.ceiling(1), Duration::from_millis(100));
        assert_eq!(policy.ceiling(3), Duration::from_millis(400));
        assert_eq!(policy.ceiling(12), Duration::from_secs(10));
        assert_eq!(supervision.restarts_total(), 12);
    }

    #[test]
    fn the_budget_gives_up_once_and_says_so() {
        let policy = SupervisorPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
            jitter: 0.0,
            healthy_after: Duration::from_secs(60),
            budget: 3,
            window: Duration::from_secs(60),
        };
        let exhausted = Arc::new(AtomicI64::new(0));
        let mut supervision = supervision(policy, exhausted.clone());
        supervision.next_start();
        for _ in 0..3 {
            assert_eq!(
                supervision.next_start(),
                StartDecision::After(Duration::from_millis(1))
            );
        }
        assert_eq!(supervision.next_start(), StartDecision::GiveUp);
        assert_eq!(supervision.next_start(), StartDecision::GiveUp);
        assert_eq!(exhausted.load(Ordering::SeqCst), 1);
    }
}
