//! Split brain between the two regions of the local two-region stack: with the link between
//! them down (no replicators), region a and region b each take a different record for the same
//! key, and each takes a record the other never sees. `flk regions diff` names exactly those
//! keys, says which record the cross-region rule keeps (earliest received-at, then region id),
//! records the run in region a's database, and exits 1; equal regions exit 0.
//! `flk regions reconcile` then makes them agree by the rule, and a second run changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chaos::deployment::{Deployment, StackEnv, TestTenant};
use chaos::process::{FlkProcess, run_flk_output, run_flk_status};
use chaos::wait_until;
use serde_json::{Value, json};

const SECRET: &str = "splitsecret";

async fn submit(gateway: &str, record: &Value) {
    let answer = chaos::http::submit_json(&reqwest::Client::new(), gateway, None, record)
        .await
        .unwrap();
    assert!(
        answer.status == 200 || answer.status == 202,
        "{} {}",
        answer.status,
        answer.body
    );
}

async fn dedup_count(deployment: &Deployment) -> i64 {
    let client = deployment.postgres().await.unwrap();
    client
        .query_one("SELECT count(*) FROM dedup", &[])
        .await
        .unwrap()
        .get(0)
}

/// The signed digest (hex) and origin region of a key's dedup row.
async fn digest_of(deployment: &Deployment, pcs_id: &str) -> (String, String) {
    let row = deployment
        .postgres()
        .await
        .unwrap()
        .query_one(
            "SELECT encode(signed_digest, 'hex'), origin_region FROM dedup WHERE pcs_id = $1",
            &[&pcs_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits until region a's divergence checker reports `expected` differing keys.
async fn wait_for_open_keys(flk: &FlkProcess, expected: u32) {
    let client = reqwest::Client::new();
    wait_until(
        &format!("the divergence checker reports {expected} differing keys"),
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let text = chaos::http::metrics(&client, flk.url()).await.ok()?;
                let open = chaos::http::metric_sum(
                    &text,
                    "flk_geo_divergence_open_keys",
                    &[("remote_region", "b")],
                );
                let runs = chaos::http::metric_sum(
                    &text,
                    "flk_geo_divergence_runs_total",
                    &[("remote_region", "b"), ("outcome", "ok")],
                );
                (runs > 0.0 && open == f64::from(expected)).then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk.log()));
}

fn diff(a: &Deployment, b: &Deployment) -> (i32, Value, String) {
    let (code, stdout) = run_flk_status(
        a,
        &[
            "regions",
            "diff",
            "--remote-region",
            "b",
            "--remote-postgres-url",
            &b.stack.postgres_url,
            "--remote-schema",
            &b.schema,
            "--remote-topic-prefix",
            &b.topic_prefix,
            "--settle-ms",
            "0",
            "--leaf-keys",
            "4",
            "--json",
        ],
    )
    .unwrap();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, report, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_names_exactly_the_keys_a_split_brain_made_different() {
    let mut a = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    a.region = "a".into();
    let mut b = Deployment::on(
        StackEnv::region_b().unwrap(),
        vec![TestTenant::signed("default", SECRET)],
    )
    .unwrap();
    b.region = "b".into();
    // Each region decides what the other ships, but nothing ships: the link is down.
    // Region a also runs the divergence checker against region b, every second.
    a.extra_toml = format!(
        "[replication]\norigins = [\"b\"]\n\
         [divergence]\nremote_region = \"b\"\nremote_postgres_url = \"{}\"\n\
         remote_schema = \"{}\"\nremote_topic_prefix_opt = \"{}\"\n\
         interval_ms = 1000\nsettle_ms = 0\n",
        b.stack.postgres_url, b.schema, b.topic_prefix
    );
    b.extra_toml = "[replication]\norigins = [\"a\"]\n".into();
    let flk_a =
        FlkProcess::start(&a, "gateway,shard,projector,divergence-checker", "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, "gateway,shard,projector", "region-b").unwrap();

    // Forty records both regions took alike (enough for the comparison to split ranges).
    for seed in 0..40 {
        let record = chaos::records::signed_record(seed, SECRET);
        submit(flk_a.url(), &record).await;
        submit(flk_b.url(), &record).await;
    }
    let (code, report, stdout) = diff(&a, &b);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(report["findings"], json!([]), "{stdout}");
    assert_eq!(report["keys_here"], json!(40));

    // The split brain: one key, two different signed records, region b's first.
    let original = chaos::records::signed_record(1_000, SECRET);
    let conflicting = chaos::records::edited(&original, json!({"budget": 0.5}), SECRET);
    let contested = chaos::records::pcs_id(&original);
    assert_eq!(contested, chaos::records::pcs_id(&conflicting));
    submit(flk_b.url(), &conflicting).await;
    submit(flk_a.url(), &original).await;
    let only_a = chaos::records::signed_record(1_001, SECRET);
    submit(flk_a.url(), &only_a).await;
    let only_b = chaos::records::signed_record(1_002, SECRET);
    submit(flk_b.url(), &only_b).await;
    for deployment in [&a, &b] {
        wait_until(
            "both regions decided 42 keys",
            Duration::from_secs(30),
            || async move { (dedup_count(deployment).await == 42).then_some(()) },
        )
        .await
        .unwrap();
    }

    let (code, report, stdout) = diff(&a, &b);
    assert_eq!(code, 1, "{stdout}");
    let mut found: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["pcs_id"].as_str().unwrap().to_owned(),
                finding["kind"].as_str().unwrap().to_owned(),
                finding["winner"].to_string(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        // Region b received its record first: the rule keeps b's.
        (
            contested.clone(),
            "different_record".to_owned(),
            "\"there\"".to_owned(),
        ),
        (
            chaos::records::pcs_id(&only_a),
            "missing_there".to_owned(),
            "null".to_owned(),
        ),
        (
            chaos::records::pcs_id(&only_b),
            "missing_here".to_owned(),
            "null".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected, "{stdout}");

    // The run and its findings are in region a's database.
    let client = a.postgres().await.unwrap();
    let stored: Vec<(String, String)> = client
        .query(
            "SELECT pcs_id, kind FROM geo_divergence_findings \
             WHERE run_id = (SELECT max(run_id) FROM geo_divergence_runs) ORDER BY pcs_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut expected_stored: Vec<(String, String)> = expected
        .iter()
        .map(|(pcs_id, kind, _)| (pcs_id.clone(), kind.clone()))
        .collect();
    expected_stored.sort();
    assert_eq!(stored, expected_stored);

    // The checker sees the same three keys (by kind) and says so in its metrics.
    wait_for_open_keys(&flk_a, 3).await;

    // Reconcile: b's winner goes to a, each region's own key to the other; then they agree.
    let reconcile = |dry_run: bool| {
        let mut args = vec![
            "regions",
            "reconcile",
            "--remote-region",
            "b",
            "--remote-postgres-url",
            &b.stack.postgres_url,
            "--remote-schema",
            &b.schema,
            "--remote-topic-prefix",
            &b.topic_prefix,
            "--remote-brokers",
            &b.stack.brokers,
            "--settle-ms",
            "0",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        run_flk_output(&a, &args).unwrap()
    };
    let (code, stdout) = reconcile(true);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(stdout.matches("would ship").count(), 3, "{stdout}");
    assert_eq!(dedup_count(&a).await, 42, "a dry run ships nothing");
    let (code, stdout) = reconcile(false);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 keys still differ"), "{stdout}");
    let (code, _, stdout) = diff(&a, &b);
    assert_eq!(code, 0, "{stdout}");
    for deployment in [&a, &b] {
        assert_eq!(dedup_count(deployment).await, 43);
    }
    let kept = digest_of(&b, &contested).await;
    assert_eq!(kept.1, "b");
    assert_eq!(
        digest_of(&a, &contested).await,
        kept,
        "a keeps b's earlier record"
    );
    // What it did is in a's audit log: b's record superseded a's.
    let superseded = a.audit_entries(&contested, "superseded").await.unwrap();
    assert_eq!(superseded, 1);
    wait_for_open_keys(&flk_a, 0).await;

    // Again: nothing to do, nothing changes.
    let (code, stdout) = reconcile(false);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("nothing to reconcile"), "{stdout}");
    for deployment in [&a, &b] {
        assert_eq!(dedup_count(deployment).await, 43);
    }

    drop(flk_a);
    drop(flk_b);
    a.cleanup().await;
    b.cleanup().await;
}
