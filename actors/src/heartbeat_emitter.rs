//! Heartbeat emitter actor: writes one `flk.heartbeat` record a second to this region's
//! `flk.heartbeats` (one partition, key = region). The heartbeat replicator ships them to the
//! other regions like data, and their heartbeat observers turn them into lag and liveness
//! (`flk_crr_lag_seconds`, `flk_crr_heartbeat_age_seconds`).
//!
//! Best effort by design: a heartbeat that cannot be written is counted and logged, never retried
//! (the next one a second later carries a newer time anyway), and never stops the process.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use events::heartbeat::Heartbeat;
use infra::log::{LogError, LogSink, OutgoingRecord};
use infra::metrics::Metrics;

use crate::contract::{Shutdown, now_ms};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Shutdown).
// ---------------------------------------------------------------------------------------------

/// The log answered one heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HeartbeatWritten(pub Result<(), LogError>);

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// How often a region emits a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What the emitter needs.
#[derive(Clone)]
pub struct HeartbeatEmitterDeps {
    /// This region's log.
    pub sink: Arc<dyn LogSink>,
    /// `flk.heartbeats` with the prefix.
    pub topic: String,
    /// This region's id.
    pub region: String,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for HeartbeatEmitterDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatEmitterDeps")
            .field("topic", &self.topic)
            .field("region", &self.region)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The heartbeat emitter actor.
#[derive(Debug)]
pub struct HeartbeatEmitter {
    /// Dependencies.
    deps: HeartbeatEmitterDeps,
    /// A heartbeat awaits its ack (the next tick skips rather than piling up behind it).
    writing: bool,
    /// Failures since the last warning (one warning per streak, not one a second).
    failures_unreported: u64,
}

impl HeartbeatEmitter {
    /// An emitter that starts writing when started.
    pub fn new(deps: HeartbeatEmitterDeps) -> Self {
        HeartbeatEmitter {
            deps,
            writing: false,
            failures_unreported: 0,
        }
    }

    fn emit(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let record = OutgoingRecord {
            topic: self.deps.topic.clone(),
            partition_opt: Some(0),
            key: self.deps.region.clone().into_bytes(),
            payload: Heartbeat::new(&self.deps.region, now_ms()).encode(),
            headers: Vec::new(),
        };
        match self.deps.sink.produce(record) {
            Ok(ack) => {
                self.writing = true;
                ctx.spawn(ack.into_actor(self).map(|result, actor, ctx| {
                    actor.handle(HeartbeatWritten(result), ctx);
                }));
            }
            Err(error) => self.handle(HeartbeatWritten(Err(error)), ctx),
        }
    }

    fn count(&self, outcome: &str) {
        self.deps
            .metrics
            .crr_heartbeats
            .with_label_values(&[outcome])
            .inc();
    }
}

impl Actor for HeartbeatEmitter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(topic = %self.deps.topic, "heartbeat emitter started");
        self.emit(ctx);
        ctx.run_interval(self.deps.interval, Self::emit);
    }
}

impl Handler<HeartbeatWritten> for HeartbeatEmitter {
    type Result = ();

    fn handle(&mut self, HeartbeatWritten(result): HeartbeatWritten, _ctx: &mut Self::Context) {
        self.writing = false;
        match result {
            Ok(()) => {
                self.count("written");
                if self.failures_unreported > 0 {
                    tracing::info!(
                        failed = self.failures_unreported,
                        "heartbeats written again"
                    );
                    self.failures_unreported = 0;
                }
            }
            Err(error) => {
                self.count("failed");
                if self.failures_unreported == 0 {
                    tracing::warn!(error = %error, "heartbeat not written (best effort; retried next second)");
                }
                self.failures_unreported += 1;
            }
        }
    }
}

impl Handler<Shutdown> for HeartbeatEmitter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use infra::log::memory::{AckMode, MemorySink};

    use super::*;
    use crate::test_support::eventually;

    #[actix_rt::test]
    async fn a_heartbeat_a_tick_with_the_region_and_a_current_time() {
        let sink = MemorySink::new(AckMode::Immediate);
        let metrics = Metrics::new();
        let before = now_ms();
        let _emitter = HeartbeatEmitter::new(HeartbeatEmitterDeps {
            sink: sink.clone(),
            topic: "p.flk.heartbeats".into(),
            region: "eu".into(),
            interval: Duration::from_millis(10),
            metrics: metrics.clone(),
        })
        .start();
        eventually("three heartbeats", || {
            (sink.produced().len() >= 3).then_some(())
        })
        .await;
        for record in sink.produced() {
            assert_eq!(record.topic, "p.flk.heartbeats");
            assert_eq!(record.key, b"eu");
            let heartbeat = Heartbeat::decode(&record.payload).unwrap();
            assert_eq!(heartbeat.region, "eu");
            assert!(heartbeat.emitted_at_ms >= before && heartbeat.emitted_at_ms <= now_ms());
        }
        eventually("three acks counted", || {
            (metrics.crr_heartbeats.with_label_values(&["written"]).get() >= 3).then_some(())
        })
        .await;
    }
}
