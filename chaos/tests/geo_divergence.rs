//! Split brain between the two regions of the local two-region stack: with the link between
//! them down (no replicators), region a and region b each take a different record for the same
//! key, and each takes a record the other never sees. `flk regions diff` names exactly those
//! keys, says which record the cross-region rule keeps (earliest received-at, then region id),
//! records the run in region a's database, and exits 1; equal regions exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chaos::deployment::{Deployment, StackEnv, TestTenant};
use chaos::process::{FlkProcess, run_flk_status};
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
    let roles = "gateway,shard,projector";
    let flk_a = FlkProcess::start(&a, roles, "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, roles, "region-b").unwrap();

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

    drop(flk_a);
    drop(flk_b);
    a.cleanup().await;
    b.cleanup().await;
}
