//! Crashes in the middle of a load: `kill -9` of the process running the projector, and of one of
//! two processes sharing the partitions. Afterwards the history checker must find every
//! acknowledged record decided exactly once and the audit log covering the whole WAL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::{history, load, wait_until};

const SECRET: &str = "testsecret";

async fn wait_for_progress(progress: &AtomicUsize, at_least: usize) {
    load::wait_for_progress(progress, at_least, Duration::from_secs(60))
        .await
        .unwrap();
}

/// Records each load sends (distinct, all valid).
const RECORDS: u64 = 300;

/// Starts the bounded load against `url` in the background; `progress` counts acknowledgements.
fn start_load(
    url: &str,
    first_seed: u64,
    deadline: Duration,
    progress: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<load::LoadResult> {
    tokio::spawn(load::run(
        url.to_owned(),
        SECRET,
        first_seed,
        RECORDS,
        8,
        deadline,
        progress.clone(),
    ))
}

/// Every record of the load got a decision, and the history checker agrees: each decided exactly
/// once, the audit log covering the WAL.
async fn assert_nothing_lost(
    deployment: &Deployment,
    load: tokio::task::JoinHandle<load::LoadResult>,
) -> history::HistoryReport {
    let result = load.await.unwrap();
    assert_eq!(
        result.acknowledged.len() as u64,
        RECORDS,
        "undecided: {:?}",
        result.undecided
    );
    history::check_load(deployment, &result).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_projector_process_loses_nothing() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 2_000;
    let gateway = FlkProcess::start(&deployment, "gateway", "gateway").unwrap();
    let mut workers = FlkProcess::start(&deployment, "shard,projector", "workers-1").unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let load = start_load(gateway.url(), 1_000, Duration::from_secs(120), &progress);
    wait_for_progress(&progress, 100).await;
    workers.kill9();
    let _workers = FlkProcess::start(&deployment, "shard,projector", "workers-2").unwrap();
    assert_nothing_lost(&deployment, load).await;
    drop(gateway);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_partitions_and_survive_one_kill() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 3_000;
    let first = FlkProcess::start(&deployment, "gateway,shard,projector", "first").unwrap();
    let mut second = FlkProcess::start(&deployment, "shard,projector", "second").unwrap();
    // Both must own partitions before the kill, or the test proves nothing.
    let client = deployment.postgres().await.unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let load = start_load(first.url(), 5_000, Duration::from_secs(150), &progress);
    wait_for_progress(&progress, 60).await;
    wait_until(
        "the second process to own partitions",
        Duration::from_secs(30),
        || async { second.log().contains("partition claimed").then_some(()) },
    )
    .await
    .unwrap();
    let owners_before: i64 = client
        .query_one(
            "SELECT count(*) FROM projection_offsets WHERE owner_epoch > 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    second.kill9();
    assert_nothing_lost(&deployment, load).await;
    // The survivor claimed the dead process's partitions (epochs moved on).
    let owners_after: i64 = client
        .query_one(
            "SELECT count(*) FROM projection_offsets WHERE owner_epoch > 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        owners_after >= owners_before,
        "{owners_before} -> {owners_after}"
    );
    drop(first);
    deployment.cleanup().await;
}

/// The checker itself, on real stores: after a clean load it finds nothing; once a dedup row is
/// deleted behind the service's back, it names that key as lost and applied by halves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_checker_names_a_record_a_doctored_store_lost() {
    use chaos::checker::{Anomaly, analyse};
    let deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "checked").unwrap();
    let result = load::run(
        flk.url().to_owned(),
        SECRET,
        90_000,
        20,
        4,
        Duration::from_secs(60),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    history::check_load(&deployment, &result).await.unwrap();
    assert!(result.operations.len() >= 20);

    let victim = result.acknowledged[3].pcs_id.clone();
    deployment
        .postgres()
        .await
        .unwrap()
        .execute("DELETE FROM dedup WHERE pcs_id = $1", &[&victim])
        .await
        .unwrap();
    let observed = history::observe(&deployment, &result.operations)
        .await
        .unwrap();
    let anomalies = analyse(&result.operations, &observed);
    let key = ("default".to_owned(), victim);
    assert!(
        anomalies.contains(&Anomaly::Lost { key: key.clone() }),
        "{anomalies:?}"
    );
    assert!(
        anomalies.contains(&Anomaly::HalfApplied {
            key: key.clone(),
            present: "audit entry without dedup row",
        }),
        "{anomalies:?}"
    );
    for anomaly in &anomalies {
        let about_victim = match anomaly {
            Anomaly::Lost { key: k }
            | Anomaly::HalfApplied { key: k, .. }
            | Anomaly::RedisAhead { key: k, .. } => *k == key,
            _ => false,
        };
        assert!(about_victim, "only the doctored key is named: {anomaly:?}");
    }
    drop(flk);
    deployment.cleanup().await;
}
