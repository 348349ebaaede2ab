//! Divergence checker actor: every `interval` it compares this region's dedup state with another
//! region's (`projections::divergence`: range digests, then the differing keys), stores the run
//! and its findings in this region's database, and sets `flk_geo_divergence_open_keys{kind}`
//! (alert `GeoDedupDivergence`), `flk_geo_divergence_runs_total{outcome}` and
//! `flk_geo_divergence_last_success_timestamp_seconds`. `flk regions diff` runs the same
//! comparison once, by hand; `flk regions reconcile` fixes what it finds.
//!
//! A singleton by configuration (role `divergence-checker`; run it in one process): two checkers
//! would only compare twice. A failed comparison (the other region unreachable) is counted and
//! logged, and the next tick tries again; it never stops the process.

use std::time::Duration;

use actix::prelude::*;
use infra::metrics::Metrics;
use projections::ProjectionStore;
use projections::divergence::{DiffReport, FindingKind, RegionView, diff, record_run};

use crate::contract::{Shutdown, now_ms};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Shutdown).
// ---------------------------------------------------------------------------------------------

/// A comparison finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CheckFinished(pub Result<DiffReport, String>);

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// What the checker needs.
#[derive(Clone)]
pub struct DivergenceCheckerDeps {
    /// This region's store (findings are written here).
    pub local: ProjectionStore,
    /// This region's id.
    pub local_region: String,
    /// This region's topic prefix.
    pub local_topic_prefix: String,
    /// The other region's store (read only).
    pub remote: ProjectionStore,
    /// The other region's id.
    pub remote_region: String,
    /// The other region's topic prefix.
    pub remote_topic_prefix: String,
    /// Time between comparisons.
    pub interval: Duration,
    /// Keys younger than this are left out (still replicating), ms.
    pub settle_ms: i64,
    /// Largest key range compared key by key.
    pub leaf_keys: i64,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for DivergenceCheckerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DivergenceCheckerDeps")
            .field("local_region", &self.local_region)
            .field("remote_region", &self.remote_region)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The divergence checker actor.
#[derive(Debug)]
pub struct DivergenceChecker {
    /// Dependencies.
    deps: DivergenceCheckerDeps,
    /// A comparison is running (a slow one is not overlapped by the next tick).
    checking: bool,
}

/// Every kind, so a kind that went back to zero is set to zero, not left at its old value.
const KINDS: [FindingKind; 4] = [
    FindingKind::MissingHere,
    FindingKind::MissingThere,
    FindingKind::DifferentRecord,
    FindingKind::DifferentOutcome,
];

impl DivergenceChecker {
    /// A checker that compares once when started, then every interval.
    pub fn new(deps: DivergenceCheckerDeps) -> Self {
        DivergenceChecker {
            deps,
            checking: false,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let deps = self.deps.clone();
        let comparison = async move {
            let here = RegionView {
                store: &deps.local,
                region: &deps.local_region,
                topic_prefix: &deps.local_topic_prefix,
            };
            let there = RegionView {
                store: &deps.remote,
                region: &deps.remote_region,
                topic_prefix: &deps.remote_topic_prefix,
            };
            let started_at_ms = now_ms();
            let report = diff(
                &here,
                &there,
                None,
                started_at_ms - deps.settle_ms,
                deps.leaf_keys,
            )
            .await
            .map_err(|error| error.to_string())?;
            record_run(
                &deps.local,
                &deps.remote_region,
                &report,
                started_at_ms,
                now_ms(),
            )
            .await
            .map_err(|error| format!("recording findings: {error}"))?;
            Ok(report)
        };
        ctx.spawn(comparison.into_actor(self).map(|result, actor, ctx| {
            actor.handle(CheckFinished(result), ctx);
        }));
    }
}

impl Actor for DivergenceChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(remote_region = %self.deps.remote_region, "divergence checker started");
        self.check(ctx);
        ctx.run_interval(self.deps.interval, Self::check);
    }
}

impl Handler<CheckFinished> for DivergenceChecker {
    type Result = ();

    fn handle(&mut self, CheckFinished(result): CheckFinished, _ctx: &mut Self::Context) {
        self.checking = false;
        let remote = self.deps.remote_region.as_str();
        let metrics = &self.deps.metrics;
        match result {
            Ok(report) => {
                for kind in KINDS {
                    let count = report
                        .findings
                        .iter()
                        .filter(|finding| finding.kind == kind)
                        .count();
                    metrics
                        .geo_divergence_open_keys
                        .with_label_values(&[remote, kind.as_str()])
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
                metrics
                    .geo_divergence_runs
                    .with_label_values(&[remote, "ok"])
                    .inc();
                metrics
                    .geo_divergence_last_success
                    .with_label_values(&[remote])
                    .set(now_ms() / 1_000);
                if !report.findings.is_empty() {
                    tracing::warn!(
                        remote_region = remote,
                        keys = report.findings.len(),
                        "regions differ (flk regions diff lists the keys; flk regions reconcile fixes them)"
                    );
                }
            }
            Err(error) => {
                metrics
                    .geo_divergence_runs
                    .with_label_values(&[remote, "failed"])
                    .inc();
                tracing::warn!(remote_region = remote, error = %error, "divergence check failed; next tick retries");
            }
        }
    }
}

impl Handler<Shutdown> for DivergenceChecker {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        Box::pin(async {})
    }
}
