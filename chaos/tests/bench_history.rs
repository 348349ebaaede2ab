//! The history recorder of `flk bench` and its judge: a bench run through the gateway writes
//! every attempt to `--history`, and `flk-chaos check-history` finds nothing wrong with a healthy
//! deployment, then names the record a doctored store lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use chaos::deployment::{Deployment, TestTenant};
use chaos::history_file::read_operations;
use chaos::process::{FlkProcess, run_flk};

fn check_history(deployment: &Deployment, history: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flk-chaos"))
        .arg("check-history")
        .arg("--history")
        .arg(history)
        .arg("--config")
        .arg(deployment.write_config().unwrap())
        .env("FLK_BIN", chaos::process::flk_binary().unwrap())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_history_is_judged_clean_and_a_lost_record_is_named() {
    let deployment = Deployment::new(vec![TestTenant::signed("default", "testsecret")]).unwrap();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "bench").unwrap();
    let history = deployment.dir.join("history.jsonl");
    let history_arg = history.to_string_lossy().into_owned();
    run_flk(
        &deployment,
        &[
            "bench",
            "--url",
            flk.url(),
            "--count",
            "300",
            "--rate",
            "150",
            "--duration",
            "30",
            "--duplicate-ratio",
            "0.1",
            "--seed",
            "7",
            "--history",
            &history_arg,
            "--quiet",
        ],
    )
    .unwrap();
    let operations = read_operations(&history).unwrap();
    assert_eq!(operations.len(), 300, "one line per attempt");

    let (clean, report) = check_history(&deployment, &history);
    println!("{report}");
    assert!(clean, "{report}");
    assert!(report.contains("no anomaly"), "{report}");
    assert!(report.contains("replay state hash equal"), "{report}");

    // A record the clients were told about, removed behind the service's back.
    let victim = operations
        .iter()
        .find(|operation| matches!(operation.answer, chaos::checker::Answer::Ok { .. }))
        .unwrap()
        .pcs_id
        .clone();
    deployment
        .postgres()
        .await
        .unwrap()
        .execute("DELETE FROM dedup WHERE pcs_id = $1", &[&victim])
        .await
        .unwrap();
    let (clean, report) = check_history(&deployment, &history);
    println!("{report}");
    assert!(!clean, "{report}");
    assert!(report.contains(&victim), "{report}");
    drop(flk);
    deployment.cleanup().await;
}
