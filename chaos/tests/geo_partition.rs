//! Geo-DR partition drills on the local two-region stack (docs/runbooks/geo-dr.md): each
//! region's replicator reaches the other cluster only through a link proxy of ours
//! (`chaos::link_proxy`, in front of the cluster's LINK listener), so the test can cut the link
//! both ways. Short form in `make test`; `make drills` runs it longer (`FLK_DRILL_CUT_SECS`,
//! `FLK_DRILL_RATE`).
//!
//! - Partition and heal: region a keeps taking records while the link is cut; region b's
//!   newest heartbeat from a ages past the `WalReplicationLag` threshold (10 s); once healed, the
//!   backlog drains, every record region a acknowledged is decided in region b, and the
//!   heartbeat age is back under 2 s. The history checker then judges every attempt of the
//!   writer against each region's stores. Prints the backlog at the heal, the drain time and the
//!   largest heartbeat age. A cut of 75 s or more (the long form) also scrapes region b with the
//!   stack's Prometheus and checks that the `WalReplicationLag` alert fires and then clears.
//! - Split brain during the partition: different records for one key submitted to both regions
//!   (tenant `split`); `flk regions diff` names exactly that key; `flk regions reconcile` makes
//!   both keep region b's earlier record while the link is still cut; after the heal nothing
//!   differs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::checker::{Operation, analyse};
use chaos::deployment::{Deployment, TestTenant, two_regions};
use chaos::history;
use chaos::http::submit_json;
use chaos::link_proxy::LinkProxy;
use chaos::load::operation_of;
use chaos::process::{FlkProcess, run_flk_output, run_flk_status};
use chaos::prometheus::{ScrapeTarget, query};
use chaos::records::{edited, pcs_id, signed_record};
use chaos::wait_until;
use serde_json::{Value, json};

const SECRET: &str = "partitionsecret";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Keys of `tenant` whose record region a received first, as `deployment` holds them.
async fn keys_from_a(deployment: &Deployment, tenant: &str) -> BTreeSet<String> {
    deployment
        .postgres()
        .await
        .unwrap()
        .query(
            "SELECT pcs_id FROM dedup WHERE origin_region = 'a' AND tenant = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Region b's newest-heartbeat age for origin a (seconds), from its metrics.
async fn heartbeat_age(client: &reqwest::Client, flk_b: &FlkProcess) -> Option<f64> {
    let text = chaos::http::metrics(client, flk_b.url()).await.ok()?;
    text.lines()
        .find(|line| {
            line.starts_with("flk_crr_heartbeat_age_seconds")
                && line.contains("origin_region=\"a\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn diff_args<'a>(b: &'a Deployment, command: &'a str) -> Vec<&'a str> {
    vec![
        "regions",
        command,
        "--remote-region",
        "b",
        "--remote-postgres-url",
        &b.stack.postgres_url,
        "--remote-schema",
        &b.schema,
        "--remote-topic-prefix",
        &b.topic_prefix,
        "--tenant",
        "split",
        "--settle-ms",
        "0",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heal_and_split_brain() {
    let cut_for = Duration::from_secs(env_number("FLK_DRILL_CUT_SECS", 12));
    let rate = env_number("FLK_DRILL_RATE", 100).max(1);
    let tenants = || {
        vec![
            TestTenant::signed("default", SECRET),
            TestTenant::signed("split", SECRET),
        ]
    };
    let (a, b) = two_regions(tenants, true).unwrap();
    let (upstream_a, proxy_address_a) = a.stack.link().unwrap();
    let (upstream_b, proxy_address_b) = b.stack.link().unwrap();
    let proxy_a = LinkProxy::start(&proxy_address_a, &upstream_a)
        .await
        .unwrap();
    let proxy_b = LinkProxy::start(&proxy_address_b, &upstream_b)
        .await
        .unwrap();
    let roles = "gateway,shard,projector,replicator";
    let flk_a = FlkProcess::start(&a, roles, "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, roles, "region-b").unwrap();
    let client = reqwest::Client::new();

    // A steady writer into region a for the whole drill; every attempt is recorded for the
    // history checker.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let operations: Arc<Mutex<Vec<Operation>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, operations, stop, client) = (
            acknowledged.clone(),
            operations.clone(),
            stop.clone(),
            client.clone(),
        );
        let url = flk_a.url().to_owned();
        tokio::spawn(async move {
            let started = Instant::now();
            let since_start = || started.elapsed().as_millis() as u64;
            let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut seed = 80_000;
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                let record = signed_record(seed, SECRET);
                seed += 1;
                let invoked_at_ms = since_start();
                let answered = submit_json(&client, &url, None, &record).await;
                operations.lock().unwrap().push(operation_of(
                    &record,
                    "default",
                    (invoked_at_ms, since_start()),
                    &answered,
                ));
                if let Ok(answer) = answered {
                    if answer.status == 200 || answer.status == 202 {
                        acknowledged.lock().unwrap().push(pcs_id(&record));
                    }
                }
            }
        })
    };
    // Replication works before the cut.
    wait_until(
        "region b receives region a's records through the link",
        Duration::from_secs(60),
        || async { (keys_from_a(&b, "default").await.len() >= 20).then_some(()) },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_a.log()));

    // The partition.
    proxy_a.cut();
    proxy_b.cut();
    let cut_at = Instant::now();

    // Split brain: one key, different records in each region, region b's first.
    let original = signed_record(89_000, SECRET);
    let earlier = edited(&original, json!({"budget": 0.5}), SECRET);
    let contested = pcs_id(&original);
    for (url, record) in [(flk_b.url(), &earlier), (flk_a.url(), &original)] {
        let answer = submit_json(&client, url, Some("split"), record)
            .await
            .unwrap();
        assert!(
            [200, 202].contains(&answer.status),
            "{} {}",
            answer.status,
            answer.body
        );
    }
    let (code, stdout) =
        run_flk_status(&a, &[&diff_args(&b, "diff")[..], &["--json"]].concat()).unwrap();
    assert_eq!(code, 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let named: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["pcs_id"].as_str().unwrap(),
                finding["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        vec![(contested.as_str(), "different_record")],
        "{stdout}"
    );
    let mut reconcile = diff_args(&b, "reconcile");
    reconcile.extend(["--remote-brokers", &b.stack.brokers]);
    let (code, output) = run_flk_output(&a, &reconcile).unwrap();
    assert_eq!(code, 0, "{output}");

    // The link stays cut: region b's newest heartbeat from a ages past the alert's threshold.
    // A cut long enough for the alert's minute (the long form) also watches the alert itself in
    // the stack's Prometheus, scraping region b.
    let alert_watch = (cut_for >= Duration::from_secs(75)).then(|| {
        let prometheus = std::env::var("FLK_PROMETHEUS_URL")
            .expect("FLK_PROMETHEUS_URL: start the stack with its Prometheus");
        let targets = std::env::var("FLK_PROMETHEUS_TARGETS_DIR")
            .expect("FLK_PROMETHEUS_TARGETS_DIR: start the stack with its Prometheus");
        let target = ScrapeTarget::register(&targets, &b.id, flk_b.url()).unwrap();
        (prometheus, target)
    });
    let firing =
        "ALERTS{alertname=\"WalReplicationLag\",alertstate=\"firing\",origin_region=\"a\"}";
    let mut oldest_heartbeat = 0.0f64;
    let mut fired_after_opt = None;
    while cut_at.elapsed() < cut_for {
        if let Some(age) = heartbeat_age(&client, &flk_b).await {
            oldest_heartbeat = oldest_heartbeat.max(age);
        }
        if let (Some((prometheus, _)), None) = (&alert_watch, fired_after_opt) {
            if !query(&client, prometheus, firing).await.unwrap().is_empty() {
                fired_after_opt = Some(cut_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if alert_watch.is_some() {
        assert!(
            fired_after_opt.is_some(),
            "WalReplicationLag never fired during a {cut_for:?} cut"
        );
    }
    if cut_for >= Duration::from_secs(12) {
        assert!(
            oldest_heartbeat > 10.0,
            "heartbeat age reached only {oldest_heartbeat} s during a {cut_for:?} cut"
        );
    }
    let acknowledged_at_heal: Vec<String> = acknowledged.lock().unwrap().clone();
    let in_b_at_heal = keys_from_a(&b, "default").await;
    let backlog = acknowledged_at_heal
        .iter()
        .filter(|key| !in_b_at_heal.contains(*key))
        .count();
    assert!(
        backlog > 0,
        "records written during the cut wait for the link"
    );

    // Heal: the backlog drains and the lag comes back.
    proxy_a.heal();
    proxy_b.heal();
    let healed_at = Instant::now();
    wait_until(
        "the backlog drains into region b",
        Duration::from_secs(120),
        || async {
            let in_b = keys_from_a(&b, "default").await;
            acknowledged_at_heal
                .iter()
                .all(|key| in_b.contains(key))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_a.log()));
    let drained_in = healed_at.elapsed();
    wait_until(
        "region b's heartbeat age from a back under 2 s",
        Duration::from_secs(60),
        || async {
            heartbeat_age(&client, &flk_b)
                .await
                .filter(|age| *age < 2.0)
        },
    )
    .await
    .unwrap();
    let lag_back_in = healed_at.elapsed();
    let mut cleared_after_opt = None;
    if let Some((prometheus, _)) = &alert_watch {
        wait_until(
            "WalReplicationLag clears after the heal",
            Duration::from_secs(180),
            || async {
                query(&client, prometheus, firing)
                    .await
                    .ok()
                    .filter(Vec::is_empty)
                    .map(|_| ())
            },
        )
        .await
        .unwrap();
        cleared_after_opt = Some(healed_at.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    // Everything region a acknowledged is in region b; the split key agrees.
    let all = acknowledged.lock().unwrap().clone();
    wait_until(
        "every record in region b",
        Duration::from_secs(60),
        || async {
            let in_b = keys_from_a(&b, "default").await;
            all.iter().all(|key| in_b.contains(key)).then_some(())
        },
    )
    .await
    .unwrap();
    let (code, stdout) = run_flk_status(&a, &diff_args(&b, "diff")).unwrap();
    assert_eq!(code, 0, "{stdout}");
    // The history checker over region a's writer, in both regions: nothing region a
    // acknowledged is lost or told wrong in either, and each region's stores agree.
    let operations = operations.lock().unwrap().clone();
    for region in [&a, &b] {
        let observed = history::observe(region, &operations).await.unwrap();
        let anomalies = analyse(&operations, &observed);
        assert!(
            anomalies.is_empty(),
            "region {}: {}",
            region.region,
            history::describe(&anomalies)
        );
    }
    println!(
        "drill partition and heal: link cut both ways for {:.1} s at {rate}/s into region a; \
         newest heartbeat age in b reached {oldest_heartbeat:.1} s (WalReplicationLag threshold \
         10 s); backlog at the heal {backlog} records; drained in {} ms; heartbeat age under 2 s \
         {} ms after the heal; {} records region a acknowledged, all in region b",
        cut_for.as_secs_f64(),
        drained_in.as_millis(),
        lag_back_in.as_millis(),
        all.len()
    );
    if let (Some(fired), Some(cleared)) = (fired_after_opt, cleared_after_opt) {
        println!(
            "drill partition alert: WalReplicationLag fired {:.1} s into the cut and cleared \
             {:.1} s after the heal",
            fired.as_secs_f64(),
            cleared.as_secs_f64()
        );
    }
    println!(
        "drill split brain: one key, different records in a and b during the partition; diff \
         named exactly it; reconcile made both keep b's earlier record before the heal; nothing \
         differs after"
    );

    drop(flk_a);
    drop(flk_b);
    a.cleanup().await;
    b.cleanup().await;
}
