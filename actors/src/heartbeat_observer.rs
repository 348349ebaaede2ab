//! Heartbeat observer actor: reads one origin region's heartbeats as mirrored into this region
//! (`<origin>.flk.heartbeats`) and turns them into the replication lag a user alerts on:
//! `flk_crr_lag_seconds{origin_region, source="heartbeat"}` (a heartbeat's age when it arrives)
//! and `flk_crr_heartbeat_age_seconds{origin_region}` (age of the newest heartbeat, set every
//! second, so it keeps growing while the link is cut and no new lag can be observed at all).
//!
//! Every process that runs shards observes on its own (it reads the topic's end outside any
//! consumer group, keeping no position): each process's gauge is then right, which a group that
//! gave the one partition to a single process would not be.

use std::time::Duration;

use actix::prelude::*;
use events::heartbeat::Heartbeat;
use futures::stream::BoxStream;
use infra::log::{LogError, LogRecord};
use infra::metrics::Metrics;

use crate::contract::{Shutdown, now_ms};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Shutdown; records arrive as a stream).
// ---------------------------------------------------------------------------------------------

/// Open (or reopen) the heartbeat stream.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct OpenStream;

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// Opens a stream of the mirrored heartbeats from the current end of the topic.
pub type OpenTail = std::sync::Arc<
    dyn Fn() -> Result<BoxStream<'static, Result<LogRecord, LogError>>, LogError> + Send + Sync,
>;

/// Wait before reopening a stream that failed to open or ended.
const REOPEN_AFTER: Duration = Duration::from_secs(2);

/// How often the age gauge is set.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// What the observer needs.
#[derive(Clone)]
pub struct HeartbeatObserverDeps {
    /// Opens the stream of `<origin>.flk.heartbeats` on this region's cluster.
    pub open_tail: OpenTail,
    /// The origin region (from configuration: the metric label).
    pub origin: String,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for HeartbeatObserverDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatObserverDeps")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The heartbeat observer actor.
#[derive(Debug)]
pub struct HeartbeatObserver {
    /// Dependencies.
    deps: HeartbeatObserverDeps,
    /// When it started (the age reference until a first heartbeat arrives).
    started_at_ms: i64,
    /// Emission time of the newest heartbeat seen.
    newest_emitted_at_ms_opt: Option<i64>,
    /// Errors since the last warning (one warning per streak).
    errors_unreported: u64,
}

/// Seconds from `emitted_at_ms` to `now_ms`; zero when the origin's clock is ahead of ours.
pub fn lag_seconds(emitted_at_ms: i64, now_ms: i64) -> f64 {
    (now_ms - emitted_at_ms).max(0) as f64 / 1_000.0
}

impl HeartbeatObserver {
    /// An observer that opens its stream when started.
    pub fn new(deps: HeartbeatObserverDeps) -> Self {
        HeartbeatObserver {
            deps,
            started_at_ms: now_ms(),
            newest_emitted_at_ms_opt: None,
            errors_unreported: 0,
        }
    }

    fn set_age(&mut self, _ctx: &mut Context<Self>) {
        let reference = self.newest_emitted_at_ms_opt.unwrap_or(self.started_at_ms);
        self.deps
            .metrics
            .crr_heartbeat_age
            .with_label_values(&[self.deps.origin.as_str()])
            .set(lag_seconds(reference, now_ms()));
    }

    fn warn_once(&mut self, what: &str, error: &dyn std::fmt::Display) {
        if self.errors_unreported == 0 {
            tracing::warn!(origin = %self.deps.origin, error = %error, "{what}");
        }
        self.errors_unreported += 1;
    }

    fn observe(&mut self, record: &LogRecord) {
        let heartbeat = match Heartbeat::decode(&record.payload) {
            Ok(heartbeat) => heartbeat,
            Err(error) => return self.warn_once("record in the heartbeats topic ignored", &error),
        };
        if heartbeat.region != self.deps.origin {
            // Someone else's heartbeat in this origin's topic: not this link's lag.
            return self.warn_once(
                "heartbeat of another region ignored",
                &format!("region {}", heartbeat.region),
            );
        }
        self.errors_unreported = 0;
        self.deps
            .metrics
            .crr_lag
            .with_label_values(&[self.deps.origin.as_str(), "heartbeat"])
            .observe(lag_seconds(heartbeat.emitted_at_ms, now_ms()));
        let newest = self
            .newest_emitted_at_ms_opt
            .map_or(heartbeat.emitted_at_ms, |newest| {
                newest.max(heartbeat.emitted_at_ms)
            });
        self.newest_emitted_at_ms_opt = Some(newest);
    }
}

impl Actor for HeartbeatObserver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(GAUGE_EVERY, Self::set_age);
        ctx.notify(OpenStream);
    }
}

impl Handler<OpenStream> for HeartbeatObserver {
    type Result = ();

    fn handle(&mut self, _open: OpenStream, ctx: &mut Self::Context) {
        match (self.deps.open_tail)() {
            Ok(stream) => {
                tracing::info!(origin = %self.deps.origin, "observing heartbeats");
                ctx.add_stream(stream);
            }
            Err(error) => {
                self.warn_once("heartbeat stream not opened; retrying", &error);
                ctx.notify_later(OpenStream, REOPEN_AFTER);
            }
        }
    }
}

impl StreamHandler<Result<LogRecord, LogError>> for HeartbeatObserver {
    fn handle(&mut self, item: Result<LogRecord, LogError>, _ctx: &mut Self::Context) {
        match item {
            Ok(record) => self.observe(&record),
            Err(error) => self.warn_once("reading heartbeats", &error),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The stream ended (its consumer closed): open a new one rather than stop observing.
        ctx.notify_later(OpenStream, REOPEN_AFTER);
    }
}

impl Handler<Shutdown> for HeartbeatObserver {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};

    use futures::StreamExt as _;

    use super::*;
    use crate::test_support::eventually;

    fn heartbeat_record(payload: Vec<u8>) -> LogRecord {
        LogRecord {
            topic: "a.flk.heartbeats".into(),
            partition: 0,
            offset: 0,
            key_opt: None,
            payload,
            headers: Vec::new(),
            timestamp_ms_opt: None,
        }
    }

    #[test]
    fn lag_is_never_negative() {
        assert_eq!(lag_seconds(1_000, 3_500), 2.5);
        assert_eq!(lag_seconds(5_000, 3_500), 0.0);
    }

    #[actix_rt::test]
    async fn heartbeats_of_the_origin_become_lag_and_age_others_are_ignored() {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let receiver = Arc::new(Mutex::new(Some(receiver)));
        let metrics = Metrics::new();
        let _observer = HeartbeatObserver::new(HeartbeatObserverDeps {
            open_tail: Arc::new(move || {
                let stream = receiver
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or(LogError::Unavailable("opened twice".into()))?;
                Ok(stream.map(Ok).boxed())
            }),
            origin: "a".into(),
            metrics: metrics.clone(),
        })
        .start();
        let emitted = now_ms() - 3_000;
        for payload in [
            Heartbeat::new("a", emitted).encode(),
            Heartbeat::new("z", emitted).encode(),
            b"not a heartbeat".to_vec(),
        ] {
            sender.unbounded_send(heartbeat_record(payload)).unwrap();
        }
        let lag = metrics.crr_lag.with_label_values(&["a", "heartbeat"]);
        eventually("one lag observed", || {
            (lag.get_sample_count() == 1).then_some(())
        })
        .await;
        assert!(lag.get_sample_sum() >= 3.0, "{}", lag.get_sample_sum());
        let age = metrics.crr_heartbeat_age.with_label_values(&["a"]);
        eventually("the age gauge set from the heartbeat", || {
            (age.get() >= 3.0).then_some(())
        })
        .await;
    }
}
