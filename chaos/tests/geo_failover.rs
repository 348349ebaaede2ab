//! Geo-DR failover drill on the local two-region stack (docs/runbooks/geo-dr.md), short form in
//! `make test`, long form with `make drills` (`FLK_DRILL_RATE`).
//!
//! A client writes to region a at a steady rate; every region-a process is killed with SIGKILL
//! mid-load (region a's Kafka and database stay up, as when a region's compute is lost); the
//! client fails over to region b. Measured and printed: RTO, from the kill to the first record
//! region b acknowledges for the failed-over client; RPO before catch-up, the records region a
//! acknowledged that region b did not hold at the kill (count and the time they span); and, once
//! region a's processes are back, the catch-up time. Asserted: after the catch-up every record
//! region a ever acknowledged is decided in region b with the same signed digest (RPO 0), and the
//! history checker finds nothing wrong in region b over every attempt of the client.
//!
//! The regions reach each other through link proxies that delay every chunk by
//! `FLK_DRILL_LINK_DELAY_MS` each way (100 ms by default: a cross-region round trip), so the
//! replication runs behind as it does between real regions and the RPO before catch-up is what
//! such a delay costs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::checker::{Operation, analyse};
use chaos::deployment::{Deployment, TestTenant, two_regions};
use chaos::history;
use chaos::http::submit_json;
use chaos::link_proxy::LinkProxy;
use chaos::load::operation_of;
use chaos::process::FlkProcess;
use chaos::records::{pcs_id, signed_record};
use chaos::wait_until;

const SECRET: &str = "failoversecret";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// `pcs_id -> (signed digest hex, received-at ms)` of the rows whose record region a received.
async fn rows_from_a(deployment: &Deployment) -> BTreeMap<String, (String, i64)> {
    deployment
        .postgres()
        .await
        .unwrap()
        .query(
            "SELECT pcs_id, encode(signed_digest, 'hex'), received_at_ms FROM dedup \
             WHERE origin_region = 'a'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_region_b_loses_nothing_region_a_acknowledged() {
    let rate = env_number("FLK_DRILL_RATE", 250).max(1);
    let kill_after = env_number("FLK_DRILL_RECORDS", 500) / 2;
    let delay = Duration::from_millis(env_number("FLK_DRILL_LINK_DELAY_MS", 100));
    let (a, b) = two_regions(|| vec![TestTenant::signed("default", SECRET)], true).unwrap();
    let mut proxies = Vec::new();
    for region in [&a, &b] {
        let (upstream, address) = region.stack.link().unwrap();
        let proxy = LinkProxy::start(&address, &upstream).await.unwrap();
        proxy.set_latency(delay);
        proxies.push(proxy);
    }
    let roles = "gateway,shard,projector,replicator";
    let mut flk_a = FlkProcess::start(&a, roles, "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, roles, "region-b").unwrap();

    // The client: one new record every 1/rate s to region a, each in its own task; what region
    // a acknowledges (200/202: decided and committed there) is recorded.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    // Every attempt, to either region, for the history checker.
    let operations: Arc<Mutex<Vec<Operation>>> = Arc::default();
    let started = Instant::now();
    let since_start = move || started.elapsed().as_millis() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, operations, stop) =
            (acknowledged.clone(), operations.clone(), stop.clone());
        let url = flk_a.url().to_owned();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut seed = 60_000;
            let mut sends = tokio::task::JoinSet::new();
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                let record = signed_record(seed, SECRET);
                seed += 1;
                let (client, url, acknowledged, operations) = (
                    client.clone(),
                    url.clone(),
                    acknowledged.clone(),
                    operations.clone(),
                );
                sends.spawn(async move {
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
                });
            }
            while sends.join_next().await.is_some() {}
        })
    };
    wait_until(
        "region a acknowledges the first half of the load",
        Duration::from_secs(120),
        || async { (acknowledged.lock().unwrap().len() as u64 >= kill_after).then_some(()) },
    )
    .await
    .unwrap();

    // Region a's compute is lost.
    flk_a.kill9();
    let killed_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    // The client fails over: its next record goes to region b.
    let client = reqwest::Client::new();
    let mut seed = 65_000;
    let rto = loop {
        let record = signed_record(seed, SECRET);
        seed += 1;
        let invoked_at_ms = since_start();
        let answered = submit_json(&client, flk_b.url(), None, &record).await;
        operations.lock().unwrap().push(operation_of(
            &record,
            "default",
            (invoked_at_ms, since_start()),
            &answered,
        ));
        if let Ok(answer) = answered {
            if answer.status == 200 || answer.status == 202 {
                break killed_at.elapsed();
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "region b never answered"
        );
    };
    writer.await.unwrap();
    let acknowledged_in_a: Vec<String> = acknowledged.lock().unwrap().clone();
    let in_a = rows_from_a(&a).await;
    let in_b_at_kill = rows_from_a(&b).await;
    let missing: Vec<&String> = acknowledged_in_a
        .iter()
        .filter(|pcs_id| !in_b_at_kill.contains_key(*pcs_id))
        .collect();
    let received: Vec<i64> = missing
        .iter()
        .filter_map(|pcs_id| in_a.get(*pcs_id).map(|(_, received_at)| *received_at))
        .collect();
    let span_ms = match (received.iter().min(), received.iter().max()) {
        (Some(first), Some(last)) => last - first,
        _ => 0,
    };

    // Region a's processes come back; its replicator ships what it had not.
    let flk_a = FlkProcess::start(&a, roles, "region-a-again").unwrap();
    let restarted_at = Instant::now();
    wait_until(
        "region b holds every record region a acknowledged",
        Duration::from_secs(120),
        || async {
            let in_b = rows_from_a(&b).await;
            acknowledged_in_a
                .iter()
                .all(|pcs_id| in_b.contains_key(pcs_id))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_a.log()));
    let catch_up = restarted_at.elapsed();
    let in_b = rows_from_a(&b).await;
    for pcs_id in &acknowledged_in_a {
        assert_eq!(
            in_b.get(pcs_id).map(|(digest, _)| digest),
            in_a.get(pcs_id).map(|(digest, _)| digest),
            "{pcs_id}: the same record in both regions"
        );
    }
    // Every attempt of the client, judged against region b's stores.
    let operations = operations.lock().unwrap().clone();
    let observed = history::observe(&b, &operations).await.unwrap();
    let anomalies = analyse(&operations, &observed);
    assert!(anomalies.is_empty(), "{}", history::describe(&anomalies));
    println!(
        "drill failover (link delayed {} ms each way): {} records acknowledged by region a at \
         {rate}/s before and during the kill; RTO (kill to the first record region b acknowledged for the failed-over client) \
         {} ms; RPO before catch-up: {} acknowledged records not yet in region b, spanning {} ms \
         of receipts; after region a's processes restarted, caught up in {} ms: RPO 0; history \
         checker over {} attempts: no anomaly in region b",
        delay.as_millis(),
        acknowledged_in_a.len(),
        rto.as_millis(),
        missing.len(),
        span_ms,
        catch_up.as_millis(),
        operations.len()
    );

    drop(flk_a);
    drop(flk_b);
    drop(proxies);
    a.cleanup().await;
    b.cleanup().await;
}
