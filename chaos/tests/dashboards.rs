//! The Grafana dashboard renders: every panel's PromQL, run against the local stack's Prometheus
//! scraping a live `flk serve` (every role, through its metrics listener) after a short load that
//! touches each part (accepted, duplicate and badly signed records, anchoring with time stamps,
//! demotion and a cold read, replication to and heartbeats from a second region), returns data,
//! and every number is a number.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaos::deployment::{Deployment, StackEnv, TestTenant, replication_toml};
use chaos::http::{lookup, submit_json};
use chaos::process::FlkProcess;
use chaos::prometheus::query;
use chaos::records::{pcs_id, signed_record};
use chaos::wait_until;
use serde_json::{Value, json};

const SECRET: &str = "testsecret";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the stack with `infra/scripts/stack.sh up` (it runs Prometheus) and `. .local/stack/env.sh`")
    })
}

/// Every (panel title, PromQL) of the dashboard, with Grafana's variables filled in.
fn panel_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/grafana/dashboards/flk-pipeline.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$tenant", ".*");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data_from_prometheus() {
    let prometheus = env("FLK_PROMETHEUS_URL");
    let targets_dir = env("FLK_PROMETHEUS_TARGETS_DIR");
    let mut deployment = Deployment::new(vec![TestTenant {
        settings_toml: "hot_ttl_secs = 1\n".to_owned(),
        ..TestTenant::signed("default", SECRET)
    }])
    .unwrap();
    // A second region on the region b stack: the deployment ships its submissions there, and
    // region b's replicator ships its heartbeats back (the Regions row of the dashboard).
    let mut region_b = Deployment::on(
        StackEnv::region_b().unwrap(),
        vec![TestTenant::signed("default", SECRET)],
    )
    .unwrap();
    deployment.region = "a".into();
    region_b.region = "b".into();
    region_b.extra_toml =
        replication_toml("a", &deployment.stack.brokers, &deployment.topic_prefix);
    let key_path = deployment.dir.join("audit.key");
    std::fs::write(&key_path, BASE64.encode([7u8; 32])).unwrap();
    deployment.extra_toml = format!(
        "[telemetry]\nmetrics_listen_opt = \"127.0.0.1:0\"\n\
         [audit]\nsigning_key_file_opt = {:?}\nanchor_interval_ms = 200\n\
         [tiering]\ndemote_interval_ms = 200\nsegment_max_wait_ms = 0\n\
         [tenants.default.tiering]\nwarm_ttl_secs = 1\nallow_warm_below_dedup_window = true\n{}",
        key_path.display().to_string(),
        replication_toml("b", &region_b.stack.brokers, &region_b.topic_prefix)
    );
    let flk_b = FlkProcess::start(&region_b, "replicator", "region-b").unwrap();
    let flk = FlkProcess::start(
        &deployment,
        "gateway,shard,projector,anchorer,audit-worker,demoter,replicator",
        "serve",
    )
    .unwrap();
    // Register the process with Prometheus (file-based discovery), as an operator's SD would.
    let metrics_url = flk.metrics_url().unwrap();
    let target = metrics_url.trim_start_matches("http://").to_owned();
    let target_file = std::path::Path::new(&targets_dir).join(format!("{}.json", deployment.id));
    std::fs::write(
        &target_file,
        json!([{"targets": [target], "labels": {"deployment": deployment.id}}]).to_string(),
    )
    .unwrap();

    // A short load that touches every row of the dashboard.
    let client = reqwest::Client::new();
    let records: Vec<Value> = (0..30).map(|i| signed_record(98_000 + i, SECRET)).collect();
    for record in &records {
        assert_eq!(
            submit_json(&client, flk.url(), Some("default"), record)
                .await
                .unwrap()
                .status,
            200
        );
    }
    let duplicate = submit_json(&client, flk.url(), Some("default"), &records[0])
        .await
        .unwrap();
    assert!(duplicate.replayed);
    let forged = signed_record(98_100, "not-the-secret");
    assert_eq!(
        submit_json(&client, flk.url(), Some("default"), &forged)
            .await
            .unwrap()
            .status,
        401
    );
    let pg = deployment.postgres().await.unwrap();
    wait_until(
        "records demoted to the cold tier",
        Duration::from_secs(60),
        || async {
            let row = pg
                .query_one(
                    "SELECT count(*) FROM cold_keys WHERE pcs_id = $1",
                    &[&pcs_id(&records[5])],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk.log()));
    let (status, body) = lookup(&client, flk.url(), "default", &pcs_id(&records[5]))
        .await
        .unwrap();
    assert_eq!(
        (status, body["tier"].as_str()),
        (200, Some("cold")),
        "{body}"
    );
    wait_until(
        "a time-stamped checkpoint",
        Duration::from_secs(60),
        || async {
            let row = pg
                .query_one("SELECT count(*) FROM attestations", &[])
                .await
                .ok()?;
            (row.get::<_, i64>(0) > 0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error} (is the stack's TSA up?)\n{}", flk.log()));

    // Every panel's query answers with at least one series, and only numbers, once Prometheus
    // has scraped the load (a scrape a second).
    let queries = panel_queries();
    assert!(queries.len() >= 30, "{} queries", queries.len());
    // A trickle of load while waiting keeps every rate window fresh: a new record (decision,
    // leaf, checkpoint, time stamp), its duplicate, a forged one, and a cold read of a demoted
    // key (each read promotes one).
    let trickle = std::sync::atomic::AtomicU64::new(0);
    let outcome = wait_until(
        "every panel to show data",
        Duration::from_secs(90),
        || async {
            let turn = trickle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fresh = signed_record(98_200 + turn, SECRET);
            let _ = submit_json(&client, flk.url(), Some("default"), &fresh).await;
            let _ = submit_json(&client, flk.url(), Some("default"), &fresh).await;
            let _ = submit_json(&client, flk.url(), Some("default"), &forged).await;
            if let Some(cold) = records.get(6 + turn as usize) {
                let _ = lookup(&client, flk.url(), "default", &pcs_id(cold)).await;
            }
            let mut empty = Vec::new();
            for (title, expr) in &queries {
                let values = query(&client, &prometheus, expr).await.unwrap();
                if values.is_empty() || values.iter().any(|value| !value.is_finite()) {
                    empty.push(format!("{title}: {expr} -> {values:?}"));
                }
            }
            empty.is_empty().then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_file(&target_file);
    if outcome.is_err() {
        // Name the panels without data.
        let mut missing = Vec::new();
        for (title, expr) in &queries {
            let values = query(&client, &prometheus, expr).await.unwrap();
            if values.is_empty() || values.iter().any(|value| !value.is_finite()) {
                missing.push(format!("{title}: {expr} -> {values:?}"));
            }
        }
        panic!("panels without data:\n{}", missing.join("\n"));
    }
    drop(flk);
    drop(flk_b);
    deployment.cleanup().await;
    region_b.cleanup().await;
}
