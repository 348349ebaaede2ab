//! The async audit pipeline on a live stack with the local RFC 3161 time-stamping authority:
//! every checkpoint gets a token that `openssl ts -verify` accepts; with the authority down,
//! ingestion goes on, the attestation tasks end in the DLQ after their retries, and a redrive once
//! it is back attests them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaos::deployment::{Deployment, TestTenant};
use chaos::process::{FlkProcess, run_flk};
use chaos::{load, wait_until};
use sha2::{Digest, Sha256};

const SECRET: &str = "testsecret";
const ROLES: &str = "gateway,shard,projector,anchorer,audit-worker";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the stack (with its tsa service) with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`")
    })
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

fn audit_toml(deployment: &Deployment, tsa_url: &str, max_attempts: u32) -> String {
    let key_path = deployment.dir.join("audit.key");
    std::fs::write(&key_path, BASE64.encode([5u8; 32])).unwrap();
    format!(
        "[audit]\nsigning_key_file_opt = {:?}\nanchor_interval_ms = 200\ntsa_url_opt = {tsa_url:?}\n\
         task_max_attempts = {max_attempts}\ntask_backoff_initial_ms = 20\ntask_backoff_max_ms = 100\n",
        key_path.display().to_string()
    )
}

async fn send(url: &str, first_seed: u64, count: u64) {
    let result = load::run(
        url.to_owned(),
        SECRET,
        first_seed,
        count,
        4,
        Duration::from_secs(60),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(
        result.acknowledged.len() as u64,
        count,
        "{:?}",
        result.undecided
    );
}

/// `openssl ts -verify` of a stored token against SHA-256 of the signed note.
fn openssl_verifies(dir: &std::path::Path, note: &str, response: &[u8]) -> String {
    let path = dir.join(format!("token-{}.tsr", rand::random::<u32>()));
    std::fs::write(&path, response).unwrap();
    let digest = hex::encode(Sha256::digest(note.as_bytes()));
    let output = std::process::Command::new("openssl")
        .args(["ts", "-verify", "-digest", &digest, "-in"])
        .arg(&path)
        .args([
            "-CAfile",
            &env("FLK_TSA_CA_FILE"),
            "-untrusted",
            &env("FLK_TSA_CERT_FILE"),
        ])
        .output()
        .expect("running openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_get_time_stamps_that_openssl_verifies() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.extra_toml = audit_toml(&deployment, &env("FLK_TSA_URL"), 5);
    let flk = FlkProcess::start(&deployment, ROLES, "all").unwrap();
    send(flk.url(), 40_000, 40).await;
    let client = deployment.postgres().await.unwrap();
    // Every checkpoint gets its token.
    let (note, response) = wait_until("every checkpoint attested", Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE a.tree_size IS NULL), max(c.tree_size) \
                 FROM checkpoints c LEFT JOIN attestations a USING (tree_size)",
                &[],
            )
            .await
            .ok()?;
        let (missing, newest): (i64, Option<i64>) = (row.get(0), row.get(1));
        let newest = newest?;
        if missing > 0 || newest < 40 {
            return None;
        }
        let row = client
            .query_one(
                "SELECT c.note, a.response FROM checkpoints c JOIN attestations a USING (tree_size) \
                 WHERE tree_size = $1",
                &[&newest],
            )
            .await
            .ok()?;
        Some((row.get::<_, String>(0), row.get::<_, Vec<u8>>(1)))
    })
    .await
    .unwrap();
    let verdict = openssl_verifies(&deployment.dir, &note, &response);
    assert!(verdict.contains("Verification: OK"), "{verdict}");
    // A token does not verify another note.
    let verdict = openssl_verifies(&deployment.dir, &format!("{note}x"), &response);
    assert!(!verdict.contains("Verification: OK"), "{verdict}");
    // A report task: the worker writes the tenant's counts to the object store once.
    let to_ms = chrono_now_ms() + 1;
    let enqueued = run_flk(
        &deployment,
        &[
            "audit",
            "report",
            "--tenant",
            "default",
            "--from-ms",
            "0",
            "--to-ms",
            &to_ms.to_string(),
        ],
    )
    .unwrap();
    assert!(
        enqueued.starts_with("enqueued generate_report:default:0:"),
        "{enqueued}"
    );
    let result: String = wait_until("the report task done", Duration::from_secs(60), || async {
        client
            .query_opt(
                "SELECT result::text FROM audit_tasks_done WHERE kind = 'generate_report'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0))
    })
    .await
    .unwrap();
    assert!(
        result.contains("/audit/reports/generate_report_default_0_"),
        "{result}"
    );
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tsa_outage_sends_attestations_to_the_dlq_and_a_redrive_recovers_them() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    // Nothing listens on port 9: every attempt fails. (FLK_TSA_URL from the stack's environment
    // would override the file, so the process gets it explicitly.)
    let down = "http://127.0.0.1:9/";
    deployment.extra_toml = audit_toml(&deployment, down, 3);
    let mut flk =
        FlkProcess::start_with_env(&deployment, ROLES, "outage", &[("FLK_TSA_URL", down)]).unwrap();
    // Ingestion does not wait for attestations.
    send(flk.url(), 50_000, 30).await;
    let client = deployment.postgres().await.unwrap();
    wait_until("attestation tasks in the DLQ", Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT count(*), min(jsonb_array_length(attempts)), max(jsonb_array_length(attempts)) \
                 FROM audit_dlq WHERE state = 'dead' AND kind = 'attest_external'",
                &[],
            )
            .await
            .ok()?;
        let (count, min, max): (i64, Option<i32>, Option<i32>) = (row.get(0), row.get(1), row.get(2));
        (count > 0 && min == Some(3) && max == Some(3)).then_some(count)
    })
    .await
    .unwrap();
    let listed = run_flk(&deployment, &["audit", "dlq", "list"]).unwrap();
    assert!(listed.contains("attest_external:flk/test:"), "{listed}");
    assert!(listed.contains("unavailable"), "{listed}");
    let attested: i64 = client
        .query_one("SELECT count(*) FROM attestations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attested, 0);

    // The authority is back: restart with its address and send the dead tasks back (counted
    // once the process is stopped: until then more tasks may still die).
    flk.stop(Duration::from_secs(20)).await.unwrap();
    let dead: i64 = client
        .query_one("SELECT count(*) FROM audit_dlq WHERE state = 'dead'", &[])
        .await
        .unwrap()
        .get(0);
    deployment.extra_toml = audit_toml(&deployment, &env("FLK_TSA_URL"), 3);
    let _flk = FlkProcess::start(&deployment, ROLES, "recovered").unwrap();
    let redriven = run_flk(&deployment, &["audit", "dlq", "redrive", "--all"]).unwrap();
    assert_eq!(
        redriven
            .lines()
            .filter(|line| line.starts_with("redriven "))
            .count() as i64,
        dead
    );
    wait_until("the redriven tasks attested", Duration::from_secs(60), || async {
        let row = client
            .query_one(
                "SELECT count(*) FROM audit_dlq d JOIN attestations a \
                 ON a.tree_size = (d.task->'payload'->>'tree_size')::bigint WHERE d.state = 'redriven'",
                &[],
            )
            .await
            .ok()?;
        (row.get::<_, i64>(0) == dead).then_some(())
    })
    .await
    .unwrap();
    let depth = run_flk(&deployment, &["audit", "dlq", "list"]).unwrap();
    assert_eq!(depth.lines().count(), 1, "only the header is left: {depth}");
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_audit_workers_loses_no_attestation() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    // Small rounds, often: many checkpoints, so kills land while tasks run.
    deployment.extra_toml = format!(
        "{}max_round_leaves = 5\n",
        audit_toml(&deployment, &env("FLK_TSA_URL"), 5)
            .replace("anchor_interval_ms = 200", "anchor_interval_ms = 30")
    );
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector,anchorer", "main").unwrap();
    // A paced load that runs until the three kills are done: a fixed-size one could finish
    // (and the anchorer stop making tasks) before the last worker starts, which would then wait
    // for an attestation that never comes.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::run_with(
        flk.url().to_owned(),
        SECRET,
        load::LoadOptions {
            first_seed: 60_000,
            count: 100_000,
            concurrency: 4,
            rate_per_second_opt: Some(40.0),
            deadline: Duration::from_secs(300),
        },
        Arc::new(AtomicUsize::new(0)),
        stop.clone(),
    ));
    let client = deployment.postgres().await.unwrap();
    let attested = || async {
        client
            .query_one("SELECT count(*) FROM attestations", &[])
            .await
            .ok()
            .map(|row| row.get::<_, i64>(0))
    };
    for round in 0..3 {
        let mut worker =
            FlkProcess::start(&deployment, "audit-worker", &format!("worker-{round}")).unwrap();
        let before = attested().await.unwrap_or(0);
        wait_until("a worker to attest", Duration::from_secs(60), || async {
            attested().await.filter(|count| *count > before)
        })
        .await
        .unwrap();
        worker.kill9();
    }
    stop.store(true, Ordering::SeqCst);
    let result = load.await.unwrap();
    assert!(result.undecided.is_empty(), "{:?}", result.undecided);
    assert!(!result.acknowledged.is_empty());
    let _worker = FlkProcess::start(&deployment, "audit-worker", "worker-last").unwrap();
    // Every checkpoint ends with exactly one token (the table's key), none in the DLQ.
    wait_until("every checkpoint attested", Duration::from_secs(90), || async {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM attestations), \
                        (SELECT count(*) FROM checkpoints WHERE tree_size = (SELECT count(*) FROM audit_log))",
                &[],
            )
            .await
            .ok()?;
        let (checkpoints, attestations, complete): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        (complete == 1 && attestations == checkpoints).then_some(())
    })
    .await
    .unwrap();
    let dead: i64 = client
        .query_one("SELECT count(*) FROM audit_dlq", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0);
    drop(flk);
    deployment.cleanup().await;
}
