//! Crashes of the dependencies under load: `kill -9` of the Kafka broker (restarted with log
//! recovery) and of the whole Postgres server (restarted with crash recovery), one after the
//! other, while a load runs through the gateway. The `flk serve` process must ride both out
//! without exiting, and the history checker must find nothing lost, nothing decided twice, no
//! first-write-wins violation, and the stores in agreement.
//!
//! These crash shared services, so they live in their own test binary with one test: cargo runs
//! test binaries one after another, so no other service test sees the crashes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::{history, load};

const SECRET: &str = "testsecret";

/// `stack.sh <args>`, on the blocking pool (a Kafka restart takes tens of seconds).
async fn stack(args: &[&str]) {
    let script = format!("{}/../infra/scripts/stack.sh", env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let status =
        tokio::task::spawn_blocking(move || Command::new("bash").arg(script).args(&args).status())
            .await
            .unwrap()
            .unwrap();
    assert!(status.success(), "stack.sh failed");
}

async fn more_progress(progress: &AtomicUsize, by: usize) {
    let from = progress.load(Ordering::SeqCst);
    load::wait_for_progress(progress, from + by, Duration::from_secs(120))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_broker_and_of_postgres_under_load_loses_nothing() {
    let deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let mut flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(load::run(
        flk.url().to_owned(),
        SECRET,
        40_000,
        400,
        4,
        Duration::from_secs(300),
        progress.clone(),
    ));
    more_progress(&progress, 50).await;

    let started = Instant::now();
    stack(&["kill", "kafka"]).await;
    stack(&["start", "kafka"]).await;
    println!(
        "broker killed and back in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    more_progress(&progress, 50).await;
    let recovered_after_kafka = started.elapsed();

    let started = Instant::now();
    stack(&["kill", "postgres"]).await;
    stack(&["start", "postgres"]).await;
    more_progress(&progress, 50).await;
    let recovered_after_postgres = started.elapsed();

    let result = running.await.unwrap();
    assert!(flk.is_running(), "flk serve exited:\n{}", flk.log());
    let report = history::check_load(&deployment, &result)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", flk.log()));
    println!(
        "kill -9 of the broker and of postgres under load: {} records acknowledged, {} attempts \
         ({} answered 503, {} transport errors), {} WAL records, 0 anomalies; 50 more records \
         acknowledged {:.1} s after the broker kill and {:.1} s after the postgres kill",
        result.acknowledged.len(),
        result.operations.len(),
        result.unavailable,
        result.transport_errors,
        report.wal_records,
        recovered_after_kafka.as_secs_f64(),
        recovered_after_postgres.as_secs_f64(),
    );
    drop(flk);
    deployment.cleanup().await;
}
