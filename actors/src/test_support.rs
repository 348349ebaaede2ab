//! Helpers for the actors' unit tests: in-memory sources handed out one per start, a condition
//! wait with a deadline, and a supervision that counts and records starts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use infra::log::memory::{self, SourceControl};
use infra::log::{LogError, LogSource};
use infra::metrics::Metrics;

use crate::contract::{ActorStatus, GetStatus};
use crate::shard::OpenSource;
use crate::supervision::{Supervision, SupervisorPolicy};

/// Hands out one fresh in-memory source per actor start and keeps their controls.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Controls of the sources handed out, in start order.
    controls: Arc<Mutex<Vec<SourceControl>>>,
    /// Instants of every open attempt (including refused ones).
    opened_at: Arc<Mutex<Vec<Instant>>>,
    /// Errors to answer instead of a source, one per attempt, first.
    refusals: Arc<Mutex<VecDeque<LogError>>>,
}

impl Sources {
    /// The opener an actor's deps take.
    pub fn opener(&self, topic: &'static str) -> OpenSource {
        let sources = self.clone();
        Arc::new(move || -> Result<LogSource, LogError> {
            sources.opened_at.lock().unwrap().push(Instant::now());
            if let Some(error) = sources.refusals.lock().unwrap().pop_front() {
                return Err(error);
            }
            let (source, control) = memory::source(topic);
            sources.controls.lock().unwrap().push(control);
            Ok(source)
        })
    }

    /// Refuses the next `count` opens.
    pub fn refuse(&self, count: usize) {
        let mut refusals = self.refusals.lock().unwrap();
        for _ in 0..count {
            refusals.push_back(LogError::Unavailable("broker down".into()));
        }
    }

    /// The control of the latest source, once the actor has opened one.
    pub async fn latest(&self) -> SourceControl {
        eventually("a source opened", || {
            self.controls.lock().unwrap().last().cloned()
        })
        .await
    }

    /// How many sources were handed out.
    pub fn opened(&self) -> usize {
        self.controls.lock().unwrap().len()
    }

    /// Instants of every open attempt.
    pub fn attempts(&self) -> Vec<Instant> {
        self.opened_at.lock().unwrap().clone()
    }
}

/// Polls `check` (yielding to the actors in between) until it answers, or panics after 10 s.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix::clock::sleep(Duration::from_millis(1)).await;
    }
}

/// A supervision with short delays for tests; `exhausted` counts budget exhaustion.
pub fn supervision(
    role: &'static str,
    policy: SupervisorPolicy,
    exhausted: Arc<Mutex<u32>>,
) -> Supervision {
    let metrics = Metrics::new();
    Supervision::new(
        role,
        policy,
        metrics.actor_restarts.with_label_values(&[role]),
        Arc::new(move |_| *exhausted.lock().unwrap() += 1),
    )
}

/// Fast restarts, a large budget.
pub fn quick_policy() -> SupervisorPolicy {
    SupervisorPolicy {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        jitter: 0.5,
        healthy_after: Duration::from_secs(60),
        budget: 100,
        window: Duration::from_secs(60),
    }
}

/// Asks `actor` for its status until `wanted` holds, or panics after 10 s.
pub async fn status_until<A>(actor: &Addr<A>, wanted: impl Fn(&ActorStatus) -> bool) -> ActorStatus
where
    A: Actor<Context = Context<A>> + Handler<GetStatus, Result = MessageResult<GetStatus>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = actor.send(GetStatus).await.unwrap();
        if wanted(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never matched: {status:?}"
        );
        actix::clock::sleep(Duration::from_millis(1)).await;
    }
}
