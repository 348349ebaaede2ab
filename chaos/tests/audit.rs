//! The verifiable audit log on a live stack: every decided record gets a leaf and a signed
//! checkpoint, its proof bundle verifies offline (in Rust and with `flk audit verify`), checkpoints
//! are consistent with each other, replay rebuilds the same roots, tampering is named by
//! `flk audit check`, and `kill -9` of anchorers (two running at once) never forks the tree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaos::deployment::{Deployment, TestTenant, s3_objects};
use chaos::process::{FlkProcess, run_flk, run_flk_status};
use chaos::records::signed_record;
use chaos::{load, wait_until};
use events::SignedFields;
use events::audit_proof::{ProofBundle, decode_hashes, verify_bundle};
use events::checkpoint::{NoteSigner, NoteVerifier};
use events::merkle;

const SECRET: &str = "testsecret";
const SEED: [u8; 32] = [11; 32];

/// A deployment whose anchorer signs with a fixed test key, rounds every `interval_ms`, at
/// most `max_round_leaves` leaves per round. Returns it with the log's verifier.
fn audit_deployment(interval_ms: u64, max_round_leaves: usize) -> (Deployment, NoteVerifier) {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let key_path = deployment.dir.join("audit.key");
    std::fs::write(&key_path, BASE64.encode(SEED)).unwrap();
    deployment.extra_toml = format!(
        "[audit]\nsigning_key_file_opt = {:?}\nanchor_interval_ms = {interval_ms}\nmax_round_leaves = {max_round_leaves}\n",
        key_path.display().to_string()
    );
    // The deployment's region is "test", so the log's origin is "flk/test".
    let signer = NoteSigner::new("flk/test", &SEED).unwrap();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    (deployment, verifier)
}

/// Waits until the newest checkpoint covers every audit entry; returns the tree size.
async fn wait_until_anchored(deployment: &Deployment) -> u64 {
    let client = deployment.postgres().await.unwrap();
    wait_until(
        "a checkpoint covering every audit entry",
        Duration::from_secs(60),
        || async {
            let entries: i64 = client
                .query_one("SELECT count(*) FROM audit_log", &[])
                .await
                .ok()?
                .get(0);
            let size: Option<i64> = client
                .query_one("SELECT max(tree_size) FROM checkpoints", &[])
                .await
                .ok()?
                .get(0);
            (entries > 0 && size == Some(entries)).then_some(entries as u64)
        },
    )
    .await
    .unwrap()
}

async fn get_json(url: &str, tenant: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(url)
        .header("X-Tenant-Id", tenant)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn record_fields(seed: u64) -> SignedFields {
    SignedFields::from_json_bytes(signed_record(seed, SECRET).to_string().as_bytes()).unwrap()
}

const FIRST_SEED: u64 = 70_000;
const RECORDS: u64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decided_record_is_provable_offline_and_tampering_is_named() {
    let (deployment, verifier) = audit_deployment(200, 20_000);
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector,anchorer", "all").unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let result = load::run(
        flk.url().to_owned(),
        SECRET,
        FIRST_SEED,
        RECORDS,
        8,
        Duration::from_secs(120),
        progress,
    )
    .await;
    assert_eq!(result.acknowledged.len() as u64, RECORDS);
    let tree_size = wait_until_anchored(&deployment).await;

    // A proof for each of a sample of records verifies offline against its record.
    for seed in (FIRST_SEED..FIRST_SEED + RECORDS).step_by(15) {
        let fields = record_fields(seed);
        let url = format!("{}/v1/audit/proof?pcs_id={}", flk.url(), fields.pcs_id);
        let (status, body) = get_json(&url, "default").await;
        assert_eq!(status, 200, "{body}");
        let bundle: ProofBundle = serde_json::from_value(body).unwrap();
        let (checkpoint, leaf) = verify_bundle(&bundle, &verifier, Some(&fields)).unwrap();
        assert_eq!(checkpoint.size, tree_size);
        assert_eq!(leaf.tenant, "default");
        assert_eq!(leaf.outcome, "accepted");
        // Another record's fields do not match this entry.
        let other = record_fields(seed + 1);
        assert_eq!(
            verify_bundle(&bundle, &verifier, Some(&other))
                .unwrap_err()
                .kind(),
            "record"
        );
        // Another tenant learns nothing.
        let (status, _) = get_json(&url, "intruder").await;
        assert_eq!(status, 404);
    }

    // The newest checkpoint is published, byte for byte, as an immutable object in the S3 store.
    let (_, latest) = get_json(&format!("{}/v1/audit/checkpoint", flk.url()), "default").await;
    let objects = s3_objects().unwrap();
    let key = format!("{}/audit/checkpoints/{tree_size}", deployment.schema);
    let published = wait_until("the checkpoint object", Duration::from_secs(30), || async {
        infra::objects::get(&objects, &key).await.ok().flatten()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(published).unwrap(),
        latest["checkpoint"].as_str().unwrap()
    );

    // The same with the command line, from files, as an auditor would.
    let fields = signed_record(FIRST_SEED, SECRET);
    let (_, bundle) = get_json(
        &format!(
            "{}/v1/audit/proof?pcs_id={}",
            flk.url(),
            fields["pcs_id"].as_str().unwrap()
        ),
        "default",
    )
    .await;
    let bundle_path = deployment.dir.join("bundle.json");
    let record_path = deployment.dir.join("record.json");
    std::fs::write(&bundle_path, bundle.to_string()).unwrap();
    std::fs::write(&record_path, fields.to_string()).unwrap();
    let signer = NoteSigner::new("flk/test", &SEED).unwrap();
    let output = std::process::Command::new(chaos::process::flk_binary().unwrap())
        .args([
            "audit",
            "verify",
            "--key",
            &signer.verifier_key(),
            "--bundle",
        ])
        .arg(&bundle_path)
        .arg("--record")
        .arg(&record_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok: leaf "));

    // The first and the newest checkpoint are consistent.
    let client = deployment.postgres().await.unwrap();
    let first: i64 = client
        .query_one("SELECT min(tree_size) FROM checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    let open = |body: &serde_json::Value| {
        verifier
            .open_checkpoint(body["checkpoint"].as_str().unwrap())
            .unwrap()
    };
    let (_, old) = get_json(
        &format!("{}/v1/audit/checkpoint/{first}", flk.url()),
        "default",
    )
    .await;
    let (_, new) = get_json(&format!("{}/v1/audit/checkpoint", flk.url()), "default").await;
    let (old, new) = (open(&old), open(&new));
    let (status, proof) = get_json(
        &format!(
            "{}/v1/audit/consistency?old_size={}&new_size={}",
            flk.url(),
            old.size,
            new.size
        ),
        "default",
    )
    .await;
    assert_eq!(status, 200);
    let list: Vec<String> = serde_json::from_value(proof["proof"].clone()).unwrap();
    merkle::verify_consistency(
        old.size,
        new.size,
        &old.root,
        &new.root,
        &decode_hashes(&list).unwrap(),
    )
    .unwrap();

    // Bad requests are told what is wrong.
    for (query, status) in [
        ("proof?leaf_index=-1", 400),
        ("proof?pcs_id=a&leaf_index=0", 400),
        ("proof?pcs_id=a&tree_size=999999999", 404),
        ("consistency?old_size=5&new_size=4", 400),
        ("consistency", 400),
        ("checkpoint/abc", 400),
    ] {
        let (got, body) = get_json(&format!("{}/v1/audit/{query}", flk.url()), "default").await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}: {body}"
        );
    }

    // The log recomputes from its rows, and a replay rebuilds the same signed roots.
    let checked = run_flk(&deployment, &["audit", "check"]).unwrap();
    assert!(checked.contains("merkle log: ok"), "{checked}");
    drop(flk);
    let replayed = run_flk(&deployment, &["replay", "--no-swap", "--quiet"]).unwrap();
    assert!(replayed.contains("every signed root equal"), "{replayed}");

    // Tampering as a superuser (triggers off) is named by the check.
    client
        .batch_execute(
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete; \
             UPDATE audit_log SET pcs_id = 'forged' WHERE (partition, seq) = \
                 (SELECT partition, seq FROM audit_log WHERE pcs_id IS NOT NULL ORDER BY partition, seq LIMIT 1); \
             ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;",
        )
        .await
        .unwrap();
    let (code, report) = run_flk_status(&deployment, &["audit", "check"]).unwrap();
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("BROKEN at seq"), "{report}");
    assert!(
        report.contains("does not match audit entry partition"),
        "{report}"
    );
    // Without the trigger switched off, the database refuses the edit.
    let refused = client
        .batch_execute("UPDATE audit_log SET pcs_id = 'again'")
        .await;
    assert!(refused.is_err());
    let refused = client.batch_execute("DELETE FROM merkle_leaves").await;
    assert!(refused.is_err());
    // The writer role may append but not rewrite history, nor switch the triggers off.
    client
        .batch_execute("SET ROLE flk_audit_writer")
        .await
        .unwrap();
    client
        .batch_execute("SELECT count(*) FROM audit_log")
        .await
        .unwrap();
    for statement in [
        "UPDATE checkpoints SET note = ''",
        "DELETE FROM attestations",
        "TRUNCATE merkle_nodes",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        assert!(
            format!("{error:?}").contains("permission denied")
                || format!("{error:?}").contains("must be owner"),
            "{statement}: {error:?}"
        );
    }
    client.batch_execute("RESET ROLE").await.unwrap();
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_anchorers_never_forks_the_tree() {
    // Small rounds, often, so kills land in the middle of work.
    let (deployment, verifier) = audit_deployment(20, 7);
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "workers").unwrap();
    let _second = FlkProcess::start(&deployment, "anchorer", "anchorer-b").unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load::run(
        flk.url().to_owned(),
        SECRET,
        90_000,
        300,
        8,
        Duration::from_secs(120),
        progress.clone(),
    ));
    let client = deployment.postgres().await.unwrap();
    let tree_size = || async {
        client
            .query_one("SELECT coalesce(max(tree_size), 0) FROM checkpoints", &[])
            .await
            .ok()
            .map(|row| row.get::<_, i64>(0))
    };
    for round in 0..4 {
        let mut anchorer =
            FlkProcess::start(&deployment, "anchorer", &format!("anchorer-a{round}")).unwrap();
        let before = tree_size().await.unwrap_or(0);
        wait_until("the tree to grow", Duration::from_secs(60), || async {
            tree_size().await.filter(|size| *size > before)
        })
        .await
        .unwrap();
        anchorer.kill9();
    }
    let result = load.await.unwrap();
    assert_eq!(result.acknowledged.len(), 300);
    let size = wait_until_anchored(&deployment).await;
    // One chain of checkpoints, each extending the one before, every note signed by the key.
    let rows = client
        .query(
            "SELECT tree_size, previous_size, note FROM checkpoints ORDER BY tree_size",
            &[],
        )
        .await
        .unwrap();
    let mut previous = 0i64;
    for row in &rows {
        let (tree_size, previous_size, note): (i64, i64, String) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            previous_size, previous,
            "checkpoint {tree_size} does not extend {previous}"
        );
        assert_eq!(
            verifier.open_checkpoint(&note).unwrap().size,
            tree_size as u64
        );
        previous = tree_size;
    }
    assert_eq!(previous as u64, size);
    let checked = run_flk(&deployment, &["audit", "check"]).unwrap();
    assert!(checked.contains("merkle log: ok"), "{checked}");
    drop(flk);
    deployment.cleanup().await;
}
