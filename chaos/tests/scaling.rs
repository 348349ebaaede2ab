//! Scaling the consumer groups while load runs (issue 9, item 3: revocation safety). One process
//! runs every role; two more `shard,projector` processes join one after the other (1 -> 3) and
//! then leave with a graceful stop (3 -> 1), for `FLK_SCALE_ROUNDS` rounds, under a steady load of
//! `FLK_SCALE_RATE` records per second through the first process's gateway.
//!
//! Each join revokes partitions from the processes already there. A worker that stores the Kafka
//! offset of a partition revoked a moment ago (before its loop has seen the revocation) gets
//! `Store offset error: State (Local: Erroneous state)` from librdkafka and its actor restarts,
//! which clients see as stalls of seconds and 503s. So the test asserts what a user relies on
//! while an operator scales: no actor restarted (the gateway process's `flk_actor_restarts_total`,
//! and every process's log), no 503 answered, and the history checker's verdict that every
//! acknowledged record was decided exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaos::deployment::{Deployment, TestTenant};
use chaos::http::{metric_sum, metrics};
use chaos::load::{self, LoadOptions};
use chaos::process::FlkProcess;
use chaos::{history, wait_until};

const SECRET: &str = "testsecret";

/// Partitions of the topics: the production default, so each join moves several partitions of
/// each group (12 -> 6 -> 4 on the first process) and a revoked one is likely to be mid-batch.
const PARTITIONS: i32 = 12;

/// How long any one observable condition may take (a rebalance takes seconds, not this).
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);

/// Metric names of `infra/src/metrics.rs` the test reads.
const ACTOR_RESTARTS: &str = "flk_actor_restarts_total";
const PARTITIONS_OWNED: &str = "flk_partitions_owned";

/// Log texts that show an actor restart (the supervisor's line, and the librdkafka error of the
/// bug this test guards against, should it be logged some other way).
const RESTART_MARKERS: [&str; 2] = ["restarting", "Store offset error"];

/// A number from the environment, or `default` (the short CI form).
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Partitions the process's projector owns, per its gateway's `/metrics`.
async fn projector_partitions(client: &reqwest::Client, process: &FlkProcess) -> Option<i32> {
    let text = metrics(client, process.url()).await.ok()?;
    Some(metric_sum(&text, PARTITIONS_OWNED, &[("role", "projector")]) as i32)
}

/// Waits until the gateway process's projector owns exactly `wanted` partitions.
async fn wait_for_projector_partitions(
    client: &reqwest::Client,
    process: &FlkProcess,
    wanted: i32,
) {
    wait_until(
        &format!("the first process's projector to own {wanted} partitions"),
        CONDITION_TIMEOUT,
        || async { (projector_partitions(client, process).await? == wanted).then_some(()) },
    )
    .await
    .map_err(|error| error.context(process.log()))
    .unwrap();
}

/// Waits until a `shard,projector` process owns partitions in both groups, as its log shows (it
/// serves no `/metrics`): a projector claim, and a shard assignment that is not empty (the first
/// assignment of a cooperative rebalance often is).
async fn wait_for_partitions_in_log(process: &FlkProcess, name: &str) {
    wait_until(
        &format!("{name} to own shard and projector partitions"),
        CONDITION_TIMEOUT,
        || async {
            let log = process.log();
            let claimed = log.contains("partition claimed");
            let assigned = log
                .lines()
                .any(|line| line.contains("shard partitions assigned") && !line.contains("[]"));
            (claimed && assigned).then_some(())
        },
    )
    .await
    .map_err(|error| error.context(process.log()))
    .unwrap();
}

/// Waits for about a second's worth of acknowledgements more than now: the load goes on.
async fn wait_for_more_progress(progress: &AtomicUsize, rate: f64) {
    let at_least = progress.load(Ordering::SeqCst) + rate.ceil().max(1.0) as usize;
    load::wait_for_progress(progress, at_least, CONDITION_TIMEOUT)
        .await
        .unwrap();
}

/// The lines of `log` that show an actor restart, prefixed with the process name.
fn restart_lines(name: &str, log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| RESTART_MARKERS.iter().any(|marker| line.contains(marker)))
        .map(|line| format!("{name}: {line}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_the_group_1_to_3_to_1_under_load_restarts_no_actor() {
    // Four rounds at the reported 300/s: on the actors without revocation safety each round
    // restarted an actor more often than not (5 to 6 restarts per run, every run failing; at 2
    // rounds and 150/s one run in six passed). About 35 s on a 2-core machine.
    let rounds: u32 = env_or("FLK_SCALE_ROUNDS", 4);
    let rate: f64 = env_or("FLK_SCALE_RATE", 300.0);
    let started = Instant::now();
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.partitions = PARTITIONS;
    // The production default: a decision later than this is a 503 a client sees.
    deployment.decision_timeout_ms = 5_000;
    let first = FlkProcess::start(&deployment, "gateway,shard,projector", "first").unwrap();
    let client = reqwest::Client::new();
    wait_for_projector_partitions(&client, &first, PARTITIONS).await;

    let progress = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let options = LoadOptions {
        first_seed: 1_000_000,
        // A cap far above what the rounds need; `stop` ends the load.
        count: (rate * 3_600.0) as u64,
        // Enough in flight to hold the rate through a stall of a few seconds.
        concurrency: 64,
        rate_per_second_opt: Some(rate),
        deadline: Duration::from_secs(600),
    };
    let load = tokio::spawn(load::run_with(
        first.url().to_owned(),
        SECRET,
        options,
        progress.clone(),
        stop.clone(),
    ));
    wait_for_more_progress(&progress, rate).await;

    // Logs of the processes that have left, kept for the restart check.
    let mut left_logs: Vec<(String, String)> = Vec::new();
    for round in 1..=rounds {
        let mut joined = Vec::new();
        // One at a time: each join is a rebalance that revokes partitions from those already in.
        for member in ["b", "c"] {
            let name = format!("round{round}-{member}");
            let process = FlkProcess::start(&deployment, "shard,projector", &name).unwrap();
            wait_for_partitions_in_log(&process, &name).await;
            joined.push((name, process));
        }
        wait_for_projector_partitions(&client, &first, PARTITIONS / 3).await;
        wait_for_more_progress(&progress, rate).await;
        for (name, process) in &mut joined {
            let status = process.stop(Duration::from_secs(30)).await;
            assert!(
                status.as_ref().is_ok_and(|status| status.success()),
                "{name} did not stop gracefully: {status:?}\n{}",
                process.log()
            );
        }
        wait_for_projector_partitions(&client, &first, PARTITIONS).await;
        wait_for_more_progress(&progress, rate).await;
        left_logs.extend(
            joined
                .into_iter()
                .map(|(name, process)| (name, process.log())),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let result = load.await.unwrap();

    let text = metrics(&client, first.url()).await.unwrap();
    let restarts = metric_sum(&text, ACTOR_RESTARTS, &[]);
    let mut restarts_logged = restart_lines("first", &first.log());
    for (name, log) in &left_logs {
        restarts_logged.extend(restart_lines(name, log));
    }
    let history = history::check_load(&deployment, &result).await;
    eprintln!(
        "scaling: {rounds} rounds at {rate}/s in {:.1} s: {} records acknowledged, latency p50 \
         {:?} p99 {:?} max {:?}, {} answers 503, {} transport errors, {restarts} restarts \
         (first process), {} restart lines logged; history check: {history:?}",
        started.elapsed().as_secs_f64(),
        result.acknowledged.len(),
        result.latency_quantile(0.5),
        result.latency_quantile(0.99),
        result.latency_quantile(1.0),
        result.unavailable,
        result.transport_errors,
        restarts_logged.len(),
    );
    drop(first);
    deployment.cleanup().await;

    assert!(
        restarts == 0.0 && restarts_logged.is_empty(),
        "a rebalance restarted actors: flk_actor_restarts_total of the first process is \
         {restarts}; restart lines:\n{}",
        restarts_logged.join("\n")
    );
    assert_eq!(result.unavailable, 0, "the load was answered 503");
    assert_eq!(result.transport_errors, 0, "the load saw transport errors");
    history.unwrap();
}
