//! A chaos scenario: one fault ([`crate::faults`]) injected into a fresh deployment under a paced
//! load through the gateway, then the whole history judged: every operation of the run against
//! what Postgres, Redis, the audit log and the decisions topic hold, and a replay of the log that
//! must rebuild the live state hash.
//!
//! [`run`] gives one [`Row`] of the table `flk-chaos` prints (`make chaos`): records, the
//! checker's findings, the latency and error rate of the records sent while the fault was on, and
//! how long the service took to answer again once it was healed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::checker::{Anomaly, Answer, Operation, analyse};
use crate::deployment::{Deployment, TestTenant};
use crate::faults::{self, Fault, OVERLOAD_FACTOR, Stage};
use crate::fixtures::Fixtures;
use crate::history;
use crate::http::{metric_sum, metrics};
use crate::load::{self, LoadOptions};
use crate::process::{FlkProcess, run_flk};
use crate::wait_until;

/// The secret of the scenario's tenant.
const SECRET: &str = "chaos-secret";

/// How big a scenario is.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Records the steady load sends.
    pub records: u64,
    /// Their rate, records per second.
    pub rate_per_second: f64,
    /// How long a timed fault lasts.
    pub hold: Duration,
}

impl Plan {
    /// The form `make test` runs: a few hundred records, faults of five seconds (longer than
    /// the gateway's 3 s cold read deadline, so a frozen object store shows as misses).
    pub fn short() -> Self {
        Plan {
            records: 400,
            rate_per_second: 50.0,
            hold: Duration::from_secs(5),
        }
    }

    /// The long form `make chaos` runs: `records` per scenario at 250 records/s, 10 s faults.
    pub fn long(records: u64) -> Self {
        Plan {
            records,
            rate_per_second: 250.0,
            hold: Duration::from_secs(10),
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub name: &'static str,
    /// Distinct records acknowledged (steady load and any burst).
    pub records: usize,
    /// Submission attempts in all.
    pub attempts: usize,
    /// Acknowledged records with no stored decision.
    pub lost: usize,
    /// Keys decided more than once as a first record.
    pub double: usize,
    /// Clients told something other than the stored first outcome.
    pub first_write_wins_violations: usize,
    /// Every other anomaly (Redis ahead, audit and decisions apart, half applied, replay).
    pub other_anomalies: usize,
    /// Up to five anomalies, for the report.
    pub examples: Vec<String>,
    /// Records whose first attempt came while the fault was on.
    pub records_during_fault: usize,
    /// 95th percentile of their latency (first send to decision, retries included).
    pub p95_during_fault: Duration,
    /// 99th percentile of the same.
    pub p99_during_fault: Duration,
    /// Attempts during the fault answered with anything but a decision (503, 429, a timeout,
    /// a broken connection), over all attempts during the fault.
    pub error_rate_during_fault: f64,
    /// How long the fault lasted, injection to heal.
    pub fault_duration: Duration,
    /// From the heal to the first decision of an attempt sent after it.
    pub recovery: Duration,
    /// The live state hash equals a replay's.
    pub replay_equal: bool,
    /// The rise of the fault's watched counter in the gateway process, when it has one.
    pub metric_rise_opt: Option<(&'static str, f64)>,
    /// Lookups made while the fault lasted, for faults of the read path: (count, error rate,
    /// p95).
    pub lookups_opt: Option<(usize, f64, Duration)>,
    /// What the fault noted.
    pub note: String,
}

impl Row {
    /// Nothing lost, decided twice, or told wrong, and nothing else the checker names.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.double == 0
            && self.first_write_wins_violations == 0
            && self.other_anomalies == 0
            && self.replay_equal
    }
}

/// Runs one scenario on a fresh deployment of the local stack.
pub async fn run(fault: Fault, plan: &Plan) -> anyhow::Result<Row> {
    let mut tenant = TestTenant::signed("default", SECRET);
    if fault == Fault::Overload {
        let limit = plan.rate_per_second * OVERLOAD_FACTOR;
        tenant.rate_opt = Some((limit, limit));
    }
    if fault.needs_cold_tier() {
        // Out of the hot tier a second after the decision, so lookups reach the warm or cold
        // tier; out of the warm tier a second later.
        tenant.settings_toml = "hot_ttl_secs = 1\n".to_owned();
    }
    let mut deployment = Deployment::new(vec![tenant])?;
    deployment.decision_timeout_ms = 5_000;
    if fault.needs_cold_tier() {
        deployment.extra_toml = "[tenants.default.tiering]\nwarm_ttl_secs = 1\n\
             allow_warm_below_dedup_window = true\n\
             [tiering]\ndemote_interval_ms = 200\nsegment_max_entries = 200\n\
             segment_max_wait_ms = 0\n"
            .to_owned();
    }
    let fixtures = match Fixtures::prepare(fault, &mut deployment).await {
        Ok(fixtures) => fixtures,
        Err(error) => {
            deployment.cleanup().await;
            return Err(error);
        }
    };
    let result = run_on(fault, plan, &deployment, &fixtures).await;
    deployment.cleanup().await;
    fixtures.remove(&deployment).await;
    result
}

async fn run_on(
    fault: Fault,
    plan: &Plan,
    deployment: &Deployment,
    fixtures: &Fixtures,
) -> anyhow::Result<Row> {
    let main = FlkProcess::start(deployment, "gateway,shard,projector", "main")?;
    let second_opt = match fault.second_process_roles_opt() {
        Some(roles) => Some(FlkProcess::start(deployment, roles, "second")?),
        None => None,
    };
    let client = reqwest::Client::new();
    let watched_before = watched_metric(fault, &client, &main).await?;

    let progress = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clock = Instant::now();
    // The steady load runs until told to stop: long enough to be under way when the fault
    // starts, to span it however long it lasts (a broker restart takes half a minute), and to
    // go on after the heal so the recovery can be measured.
    let steady = tokio::spawn(load::run_with(
        main.url().to_owned(),
        SECRET,
        LoadOptions {
            first_seed: 1,
            count: plan.records.saturating_mul(100),
            // Enough in flight to hold the rate through a stall of a few seconds.
            concurrency: 64,
            rate_per_second_opt: Some(plan.rate_per_second),
            deadline: Duration::from_secs(900),
        },
        progress.clone(),
        stop.clone(),
    ));
    let warm_up = (plan.records / 5).clamp(20, 2_000) as usize;
    load::wait_for_progress(&progress, warm_up, Duration::from_secs(120)).await?;

    if fault.needs_cold_tier() {
        wait_until(
            "records to reach the cold tier",
            Duration::from_secs(60),
            || async { (cold_keys(deployment).await.ok()? > 0).then_some(()) },
        )
        .await?;
    }

    let fault_started = clock.elapsed();
    let stage = Stage {
        deployment,
        main: &main,
        second_opt: second_opt.as_ref(),
        fixtures,
        progress: &progress,
        hold: plan.hold,
        secret: SECRET,
        rate_per_second: plan.rate_per_second,
    };
    let injected = faults::inject(fault, &stage).await;
    let healed = clock.elapsed();
    let after_heal = if injected.is_ok() {
        let at_heal = progress.load(Ordering::SeqCst);
        let wanted = (plan.records as usize).max(at_heal + warm_up);
        load::wait_for_progress(&progress, wanted, Duration::from_secs(300)).await
    } else {
        Ok(())
    };
    stop.store(true, Ordering::SeqCst);
    let outcome = injected?;
    after_heal?;

    let mut result = steady.await?;
    if let Some(burst) = outcome.extra_load_opt {
        result.merge(burst);
    }
    let watched_after = watched_metric(fault, &client, &main).await?;
    anyhow::ensure!(
        result.undecided.is_empty(),
        "{}: {} records without a decision: {:?}",
        fault.name(),
        result.undecided.len(),
        result.undecided.iter().take(5).collect::<Vec<_>>()
    );
    // The WAL fully audited first, so the state is final before it is hashed and replayed.
    history::check(deployment, &result.acknowledged).await?;
    drop(main);
    drop(second_opt);
    let mut observed = history::observe(deployment, &result.operations).await?;
    let hashes = live_and_replayed_state_hashes(|args| run_flk(deployment, args))?;
    let replay_equal = hashes.0 == hashes.1;
    observed.state_hashes_opt = Some(hashes);
    let anomalies = analyse(&result.operations, &observed);

    let window = (fault_started.as_millis() as u64, healed.as_millis() as u64);
    let during = during_fault(&result.operations, window);
    Ok(Row {
        name: fault.name(),
        records: result
            .acknowledged
            .iter()
            .map(|ack| &ack.pcs_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        attempts: result.operations.len(),
        lost: count(&anomalies, |a| matches!(a, Anomaly::Lost { .. })),
        double: count(&anomalies, |a| matches!(a, Anomaly::DecidedTwice { .. })),
        first_write_wins_violations: count(&anomalies, |a| {
            matches!(a, Anomaly::FirstWriteWinsBroken { .. })
        }),
        other_anomalies: count(&anomalies, |a| {
            !matches!(
                a,
                Anomaly::Lost { .. }
                    | Anomaly::DecidedTwice { .. }
                    | Anomaly::FirstWriteWinsBroken { .. }
            )
        }),
        examples: anomalies.iter().take(5).map(|a| format!("{a:?}")).collect(),
        records_during_fault: during.records,
        p95_during_fault: during.p95,
        p99_during_fault: during.p99,
        error_rate_during_fault: during.error_rate,
        fault_duration: healed.saturating_sub(fault_started),
        recovery: recovery_after(&result.operations, window.1),
        replay_equal,
        metric_rise_opt: fault
            .watched_metric_opt()
            .map(|name| (name, watched_after - watched_before)),
        lookups_opt: outcome.reads_opt.map(|reads| {
            (
                reads.latencies.len(),
                reads.error_rate(),
                reads.latency_quantile(0.95),
            )
        }),
        note: outcome.note,
    })
}

/// Keys in the cold tier's index.
async fn cold_keys(deployment: &Deployment) -> anyhow::Result<i64> {
    Ok(deployment
        .postgres()
        .await?
        .query_one("SELECT count(*) FROM cold_keys", &[])
        .await?
        .get(0))
}

/// The fault's watched counter in the gateway process (0 without one).
async fn watched_metric(
    fault: Fault,
    client: &reqwest::Client,
    main: &FlkProcess,
) -> anyhow::Result<f64> {
    let Some(name) = fault.watched_metric_opt() else {
        return Ok(0.0);
    };
    Ok(metric_sum(&metrics(client, main.url()).await?, name, &[]))
}

/// `flk state-hash` and the hash a replay into a side schema rebuilds (not swapped in), each
/// run by `run_flk` (the `flk` arguments in, its stdout out).
pub fn live_and_replayed_state_hashes(
    run_flk: impl Fn(&[&str]) -> anyhow::Result<String>,
) -> anyhow::Result<(String, String)> {
    let live = run_flk(&["state-hash"])?.trim().to_owned();
    let replayed = run_flk(&["replay", "--no-swap", "--quiet"])?;
    let rebuilt = replayed
        .lines()
        .find_map(|line| line.strip_prefix("rebuilt state hash: "))
        .ok_or_else(|| {
            anyhow::anyhow!("no rebuilt state hash in the replay's output:\n{replayed}")
        })?
        .trim()
        .to_owned();
    Ok((live, rebuilt))
}

fn count(anomalies: &[Anomaly], which: impl Fn(&Anomaly) -> bool) -> usize {
    anomalies.iter().filter(|anomaly| which(anomaly)).count()
}

/// What the records sent while the fault was on went through.
#[derive(Debug, Clone, PartialEq)]
pub struct DuringFault {
    /// Records whose first attempt fell in the window.
    pub records: usize,
    /// 95th percentile of their first-send-to-decision latency.
    pub p95: Duration,
    /// 99th percentile of the same.
    pub p99: Duration,
    /// Share of the attempts sent in the window that got no decision.
    pub error_rate: f64,
}

/// Latency and errors of the operations whose records were first sent in `window` (ms since
/// the load started, inclusive). A record never decided counts at its last attempt's end.
pub fn during_fault(operations: &[Operation], window: (u64, u64)) -> DuringFault {
    use std::collections::HashMap;
    let inside = |at: u64| at >= window.0 && at <= window.1;
    // Per record: first send, and the end of its deciding (or last) attempt.
    let mut spans: HashMap<&str, (u64, u64)> = HashMap::new();
    let (mut attempts, mut failed) = (0usize, 0usize);
    for operation in operations {
        let span = spans
            .entry(&operation.pcs_id)
            .or_insert((operation.invoked_at_ms, operation.completed_at_ms));
        span.0 = span.0.min(operation.invoked_at_ms);
        span.1 = span.1.max(operation.completed_at_ms);
        if inside(operation.invoked_at_ms) {
            attempts += 1;
            if !matches!(operation.answer, Answer::Ok { .. }) {
                failed += 1;
            }
        }
    }
    let latencies: Vec<Duration> = spans
        .values()
        .filter(|(first, _)| inside(*first))
        .map(|(first, last)| Duration::from_millis(last - first))
        .collect();
    DuringFault {
        records: latencies.len(),
        p95: load::quantile_of(&latencies, 0.95),
        p99: load::quantile_of(&latencies, 0.99),
        error_rate: if attempts == 0 {
            0.0
        } else {
            failed as f64 / attempts as f64
        },
    }
}

/// From `healed_at_ms` to the answer of the first attempt sent at or after it that got a
/// decision; zero when no attempt was sent after the heal.
pub fn recovery_after(operations: &[Operation], healed_at_ms: u64) -> Duration {
    operations
        .iter()
        .filter(|operation| operation.invoked_at_ms >= healed_at_ms)
        .filter(|operation| matches!(operation.answer, Answer::Ok { .. }))
        .map(|operation| operation.completed_at_ms - healed_at_ms)
        .min()
        .map(Duration::from_millis)
        .unwrap_or(Duration::ZERO)
}

/// The table `flk-chaos` prints, one line per scenario.
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| scenario | records | lost | double | first-write-wins violations | other anomalies | replay hash | \
         records during fault | p95 / p99 during fault | errors during fault | fault lasted | recovery | lookups during fault (errors, p95) | watched counter |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for row in rows {
        let watched = row
            .metric_rise_opt
            .map(|(name, rise)| format!("{name} +{rise:.0}"))
            .unwrap_or_else(|| "-".into());
        let lookups = row
            .lookups_opt
            .map(|(count, errors, p95)| {
                format!("{count} ({:.2} %, {} ms)", errors * 100.0, p95.as_millis())
            })
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} ms | {:.1} % | {:.1} s | {:.2} s | {} | {} |\n",
            row.name,
            row.records,
            row.lost,
            row.double,
            row.first_write_wins_violations,
            row.other_anomalies,
            if row.replay_equal { "equal" } else { "DIFFERS" },
            row.records_during_fault,
            row.p95_during_fault.as_millis(),
            row.p99_during_fault.as_millis(),
            row.error_rate_during_fault * 100.0,
            row.fault_duration.as_secs_f64(),
            row.recovery.as_secs_f64(),
            lookups,
            watched,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn operation(pcs_id: &str, invoked: u64, completed: u64, answer: Answer) -> Operation {
        Operation {
            invoked_at_ms: invoked,
            completed_at_ms: completed,
            tenant: "default".into(),
            pcs_id: pcs_id.into(),
            digest: "d".into(),
            answer,
        }
    }

    fn ok() -> Answer {
        Answer::Ok {
            status: 200,
            outcome_code: "accepted".into(),
        }
    }

    #[test]
    fn the_fault_window_counts_records_first_sent_in_it_and_their_retries() {
        let operations = vec![
            // Before the fault: not counted.
            operation("early", 0, 50, ok()),
            // Sent in the fault, 503 twice, decided after the heal: one record, 900 ms.
            operation("slow", 100, 400, Answer::Unknown),
            operation("slow", 500, 700, Answer::Unknown),
            operation("slow", 800, 1_000, ok()),
            // Sent in the fault, decided at once.
            operation("quick", 200, 210, ok()),
            // Throttled once, then decided.
            operation("throttled", 300, 301, Answer::Fail { status: 429 }),
            operation("throttled", 400, 420, ok()),
        ];
        let during = during_fault(&operations, (100, 600));
        assert_eq!(during.records, 3);
        assert_eq!(during.p99, Duration::from_millis(900));
        // Five attempts sent in the window, three without a decision.
        assert!((during.error_rate - 0.6).abs() < 1e-9, "{during:?}");
    }

    #[test]
    fn no_record_in_the_window_gives_zeros() {
        let during = during_fault(&[operation("a", 0, 10, ok())], (100, 200));
        assert_eq!(
            during,
            DuringFault {
                records: 0,
                p95: Duration::ZERO,
                p99: Duration::ZERO,
                error_rate: 0.0
            }
        );
    }

    #[test]
    fn recovery_is_the_first_decision_of_an_attempt_sent_after_the_heal() {
        let operations = vec![
            // Sent before the heal: says nothing about recovery.
            operation("a", 900, 1_005, ok()),
            operation("b", 1_000, 1_300, Answer::Unknown),
            operation("c", 1_100, 1_450, ok()),
            operation("d", 1_200, 1_500, ok()),
        ];
        assert_eq!(
            recovery_after(&operations, 1_000),
            Duration::from_millis(450)
        );
        assert_eq!(recovery_after(&operations, 5_000), Duration::ZERO);
    }

    #[test]
    fn a_row_with_any_finding_is_not_clean_and_the_table_says_so() {
        let row = Row {
            name: "broker-kill",
            records: 10,
            attempts: 12,
            lost: 0,
            double: 0,
            first_write_wins_violations: 0,
            other_anomalies: 0,
            examples: vec![],
            records_during_fault: 3,
            p95_during_fault: Duration::from_millis(40),
            p99_during_fault: Duration::from_millis(50),
            error_rate_during_fault: 0.25,
            fault_duration: Duration::from_secs(2),
            recovery: Duration::from_millis(1_500),
            replay_equal: true,
            metric_rise_opt: Some(("flk_rate_limited_total", 7.0)),
            lookups_opt: Some((200, 0.005, Duration::from_millis(12))),
            note: String::new(),
        };
        assert!(row.is_clean());
        let text = table(std::slice::from_ref(&row));
        assert!(
            text.contains("| broker-kill | 10 | 0 | 0 | 0 | 0 | equal | 3 | 40 / 50 ms | 25.0 % | 2.0 s | 1.50 s | 200 (0.50 %, 12 ms) | flk_rate_limited_total +7 |"),
            "{text}"
        );
        let lost = Row {
            lost: 1,
            ..row.clone()
        };
        assert!(!lost.is_clean());
        let replay = Row {
            replay_equal: false,
            ..row
        };
        assert!(!replay.is_clean());
        assert!(table(&[replay]).contains("DIFFERS"));
    }
}
