//! Dependency outages during a load: Postgres stopped (503s while down, full recovery after,
//! nothing acknowledged lost) and Redis stopped (the hot tier is best effort: no errors at all).
//!
//! These stop shared services, so they live in their own test binary with one test: cargo runs test
//! binaries one after another, so no other service test sees the outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::{history, load, wait_until};

const SECRET: &str = "testsecret";

fn stack(args: &[&str]) {
    let script = format!("{}/../infra/scripts/stack.sh", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "stack.sh {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_redis_outages_degrade_and_recover() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 1_500;
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();

    // Postgres down in the middle of a load.
    let progress = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(load::run(
        flk.url().to_owned(),
        SECRET,
        20_000,
        200,
        4,
        Duration::from_secs(180),
        progress.clone(),
    ));
    wait_until("load progress", Duration::from_secs(60), || async {
        (progress.load(Ordering::SeqCst) >= 50).then_some(())
    })
    .await
    .unwrap();
    stack(&["stop", "postgres"]);
    let stalled_at = progress.load(Ordering::SeqCst);
    // While Postgres is down, requests get 503 (with Retry-After), not hangs or 500s.
    let client = reqwest::Client::new();
    let answer = chaos::http::submit_json(
        &client,
        flk.url(),
        None,
        &chaos::records::signed_record(1, SECRET),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(answer.retry_after_opt.is_some());
    stack(&["start", "postgres"]);
    let result = running.await.unwrap();
    assert!(
        result.undecided.is_empty(),
        "undecided: {:?}",
        result.undecided
    );
    assert!(result.unavailable > 0, "the outage was not observed");
    assert!(progress.load(Ordering::SeqCst) > stalled_at);
    let mut acknowledged = result.acknowledged;
    // The probe record above was logged too; it must have been decided after recovery.
    let probe = chaos::http::submit_json(
        &client,
        flk.url(),
        None,
        &chaos::records::signed_record(1, SECRET),
    )
    .await
    .unwrap();
    assert_eq!((probe.status, probe.replayed), (200, true));
    acknowledged.push(history::Acknowledged {
        tenant: "default".into(),
        pcs_id: chaos::records::pcs_id(&chaos::records::signed_record(1, SECRET)),
        status: 200,
    });

    // Redis down: the hot tier is best effort, so every answer is still a decision.
    stack(&["stop", "redis"]);
    let progress = Arc::new(AtomicUsize::new(0));
    let result = load::run(
        flk.url().to_owned(),
        SECRET,
        30_000,
        50,
        4,
        Duration::from_secs(60),
        progress,
    )
    .await;
    stack(&["start", "redis"]);
    assert!(
        result.undecided.is_empty(),
        "undecided: {:?}",
        result.undecided
    );
    assert_eq!(result.acknowledged.len(), 50);
    acknowledged.extend(result.acknowledged);

    let report = history::check(&deployment, &acknowledged).await.unwrap();
    assert_eq!(report.dedup_rows as usize, acknowledged.len(), "{report:?}");
    drop(flk);
    deployment.cleanup().await;
}
