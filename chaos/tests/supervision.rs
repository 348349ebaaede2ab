//! Supervision on the real stack: a stuck actor (a handler that never returns) is detected by its
//! heartbeat and restarted; one that fails is restarted; in both cases the record is decided. The
//! restart is read from the process's `/debug/actors`, not from its log. (The backoff delays
//! themselves are measured in the actors' unit tests, `actors/src/shard_tests.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::http::{actor_restarts, submit_json};
use chaos::process::FlkProcess;
use chaos::records::signed_record;

const SECRET: &str = "testsecret";

async fn decided_despite(failpoint: &str, role: &str) {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 30_000;
    deployment.extra_toml = "[supervision]\nstuck_after_ms = 2000\n".to_owned();
    let flk = FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector",
        "all",
        &[("FLK_FAILPOINTS", failpoint)],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let answer = submit_json(&client, flk.url(), None, &signed_record(7, SECRET))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, flk.log());
    let restarts = actor_restarts(&client, flk.url(), role).await.unwrap();
    assert!(
        restarts.is_some_and(|count| count >= 1),
        "expected a {role} restart, /debug/actors says {restarts:?}\n{}",
        flk.log()
    );
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_projector_is_restarted_by_the_watchdog() {
    decided_despite("projector.before_commit=stall_once", "projector").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shard_is_restarted_with_backoff() {
    decided_despite("shard.before_produce=error_once", "shard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_shard_is_restarted_by_the_watchdog() {
    decided_despite("shard.before_produce=stall_once", "shard").await;
}

/// An actor that fails on every start uses up its restart budget, and then the process exits
/// non-zero (so whoever runs it sees a crash loop, instead of a process that looks alive and
/// decides nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_keeps_failing_spends_its_budget_and_the_process_exits_non_zero() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.extra_toml = "[supervision]\nrestart_budget = 2\nbackoff_initial_ms = 50\n\
                             backoff_max_ms = 100\n"
        .to_owned();
    let mut flk = FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector",
        "all",
        &[("FLK_FAILPOINTS", "shard.before_produce=error")],
    )
    .unwrap();
    let client = reqwest::Client::new();
    // The shard fails on this record, and again on each restart, which reads it again. The
    // answer does not matter (the process goes away meanwhile).
    let _ = submit_json(&client, flk.url(), None, &signed_record(9, SECRET)).await;
    let status = flk.wait_for_exit(Duration::from_secs(90)).await.unwrap();
    assert!(
        !status.success(),
        "expected a non-zero exit, got {status}\n{}",
        flk.log()
    );
    drop(flk);
    deployment.cleanup().await;
}
