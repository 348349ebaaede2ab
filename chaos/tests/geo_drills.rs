//! Geo-DR drills on the local two-region stack (docs/runbooks/geo-dr.md), short form in
//! `make test`, long form with `make drills` (`FLK_DRILL_RECORDS`, `FLK_DRILL_RATE`). Each prints
//! what it measured; the numbers it asserts are correctness (every record present once, the same
//! everywhere), never time.
//!
//! - Normal replication: records into region a through the gateway and straight into Kafka,
//!   paced; every one is decided in region b with the same signed digest; prints the lag per
//!   record (b's decision time minus a's received-at) as p50, p99 and max.
//! - Lost positions: region a's replicator loses its group positions (the group deleted, as
//!   an expiry would); it resumes from the checkpoints it keeps in region b's cluster, so new
//!   records arrive and nothing is shipped twice.
//! - Replay idempotency: region a's replicator is made to ship everything again (its group
//!   positions deleted and its checkpoints set back to the start, as a restore from old offsets
//!   would); region b keeps exactly one dedup row per record, decides each repeat as a
//!   duplicate, and region a's state hash is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use chaos::deployment::{Deployment, TestTenant, two_regions};
use chaos::load::{LoadOptions, run_with};
use chaos::process::{FlkProcess, run_flk};
use chaos::wait_until;

const SECRET: &str = "drillsecret";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// `pcs_id -> signed digest (hex)` of the dedup rows whose record region a received first.
async fn rows_from_a(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .postgres()
        .await
        .unwrap()
        .query(
            "SELECT pcs_id, encode(signed_digest, 'hex') FROM dedup WHERE origin_region = 'a'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Sends `count` records into region a: four in five through the gateway at `rate`/s, the rest
/// straight into Kafka (`flk bench --target kafka`).
async fn load_region_a(a: &Deployment, flk_a: &FlkProcess, count: u64, rate: u64) {
    let direct = count / 5;
    let through_gateway = count - direct;
    let options = LoadOptions {
        first_seed: 70_000,
        count: through_gateway,
        concurrency: 32,
        rate_per_second_opt: Some(rate as f64),
        deadline: Duration::from_secs(120 + through_gateway / rate.max(1)),
    };
    let gateway_load = tokio::spawn(run_with(
        flk_a.url().to_owned(),
        SECRET,
        options,
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    ));
    // Agents producing straight into Kafka at the same time (a blocking command; the gateway
    // load runs on its own task meanwhile).
    tokio::task::block_in_place(|| {
        run_flk(
            a,
            &[
                "bench",
                "--target",
                "kafka",
                "--count",
                &direct.to_string(),
                "--rate",
                &(rate / 4).max(1).to_string(),
                "--duration",
                "600",
                "--duplicate-ratio",
                "0",
                "--seed",
                "7",
                "--quiet",
            ],
        )
        .unwrap()
    });
    let result = gateway_load.await.unwrap();
    assert!(
        result.undecided.is_empty(),
        "undecided: {:?}",
        result.undecided
    );
    assert_eq!(result.acknowledged.len() as u64, through_gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_normal_replication_then_replay_idempotency() {
    let count = env_number("FLK_DRILL_RECORDS", 500);
    let rate = env_number("FLK_DRILL_RATE", 250);
    let (a, b) = two_regions(|| vec![TestTenant::signed("default", SECRET)], false).unwrap();
    let roles = "gateway,shard,projector,replicator";
    let mut flk_a = FlkProcess::start(&a, roles, "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, roles, "region-b").unwrap();

    // Drill 1: normal replication.
    let started = Instant::now();
    load_region_a(&a, &flk_a, count, rate).await;
    let in_a = rows_from_a(&a).await;
    assert_eq!(in_a.len() as u64, count, "every record decided in region a");
    let in_b = wait_until(
        "region b decides every record of region a",
        Duration::from_secs(120),
        || async {
            let rows = rows_from_a(&b).await;
            (rows.len() == in_a.len()).then_some(rows)
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_b.log()));
    assert_eq!(in_b, in_a, "same keys and signed digests in both regions");
    let lag: Vec<i64> = b
        .postgres()
        .await
        .unwrap()
        .query(
            "SELECT decided_at_ms - received_at_ms FROM dedup WHERE origin_region = 'a' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let at = |quantile: f64| lag[((lag.len() - 1) as f64 * quantile).round() as usize];
    println!(
        "drill normal replication: {count} records into region a ({} through the gateway paced \
         at {rate}/s, {} straight into Kafka) in {:.1} s ({:.0} records/s achieved); all decided \
         in region b; replication lag (b's decision - a's received-at): p50 {} ms, p99 {} ms, \
         max {} ms",
        count - count / 5,
        count / 5,
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    );

    // Lost positions: the replicator's group is deleted; the checkpoints in region b's cluster
    // say where it got to, so it ships only what is new.
    let group = format!("{}flk-replicator-b", a.topic_prefix);
    let mirrored_topic = format!("{}a.flk.submissions", b.topic_prefix);
    flk_a.stop(Duration::from_secs(30)).await.unwrap();
    forget_group(&a, &group).await;
    let mut flk_a = FlkProcess::start(&a, roles, "region-a-restarted").unwrap();
    let new_records = 50;
    let options = LoadOptions {
        first_seed: 90_000,
        count: new_records,
        concurrency: 8,
        rate_per_second_opt: None,
        deadline: Duration::from_secs(120),
    };
    let added = run_with(
        flk_a.url().to_owned(),
        SECRET,
        options,
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    assert_eq!(added.acknowledged.len() as u64, new_records);
    let total = count + new_records;
    wait_until(
        "region b decides the records added after the restart",
        Duration::from_secs(120),
        || async { (rows_from_a(&b).await.len() as u64 == total).then_some(()) },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_a.log()));
    let metrics = chaos::http::metrics(&reqwest::Client::new(), flk_a.url())
        .await
        .unwrap();
    let shipped = chaos::http::metric_sum(
        &metrics,
        "flk_replication_records_total",
        &[("stream", "submissions"), ("outcome", "shipped")],
    );
    assert_eq!(
        shipped, new_records as f64,
        "the restarted replicator ships only the new records"
    );
    assert_eq!(
        mirrored_entries(&b, &mirrored_topic).await,
        total as i64,
        "region b received nothing twice"
    );
    println!(
        "drill lost positions: group positions deleted; the restarted replicator resumed from its \
         checkpoints in region b's cluster and shipped {shipped} records (the {new_records} new \
         ones), none twice"
    );

    // Drill 3: replay idempotency. Region a's replicator forgets its positions and its
    // checkpoints and ships everything again.
    let hash_before = run_flk(&a, &["state-hash"]).unwrap();
    flk_a.stop(Duration::from_secs(30)).await.unwrap();
    forget_group(&a, &group).await;
    rewind_checkpoints(&a, &b).await;
    let flk_a = FlkProcess::start(&a, roles, "region-a-again").unwrap();
    let count = total;
    let decided_twice = wait_until(
        "region b decides every record a second time",
        Duration::from_secs(120),
        || async {
            let entries = mirrored_entries(&b, &mirrored_topic).await;
            (entries == 2 * count as i64).then_some(entries)
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", flk_a.log()));
    let duplicates: i64 = b
        .postgres()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM audit_log WHERE source_topic = $1 AND dedup_result = 'duplicate'",
            &[&mirrored_topic],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        duplicates, count as i64,
        "each repeat decided as a duplicate"
    );
    assert_eq!(
        rows_from_a(&b).await,
        rows_from_a(&a).await,
        "still one row per record in region b"
    );
    assert_eq!(
        run_flk(&a, &["state-hash"]).unwrap(),
        hash_before,
        "region a unchanged"
    );
    println!(
        "drill replay idempotency: {count} records shipped again; region b decided {decided_twice} \
         mirrored submissions, {duplicates} of them duplicates; one dedup row per record; region a's \
         state hash unchanged"
    );

    drop(flk_a);
    drop(flk_b);
    a.cleanup().await;
    b.cleanup().await;
}

/// Audit entries of region b for records mirrored from region a (each decision of one).
async fn mirrored_entries(b: &Deployment, mirrored_topic: &str) -> i64 {
    b.postgres()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM audit_log WHERE source_topic = $1",
            &[&mirrored_topic],
        )
        .await
        .unwrap()
        .get(0)
}

/// Deletes region a's replicator group (its positions), waiting until its last member left.
async fn forget_group(a: &Deployment, group: &str) {
    wait_until(
        "the replicator's group positions deleted",
        Duration::from_secs(60),
        || async { delete_group(&a.stack.brokers, group).await.then_some(()) },
    )
    .await
    .unwrap();
}

/// Sets region a's submission checkpoints in region b's cluster back to the start of every
/// partition (what a restore of old checkpoints would do).
async fn rewind_checkpoints(a: &Deployment, b: &Deployment) {
    use events::replication_checkpoint::ReplicationCheckpoint;
    use infra::log::{LogSink as _, OutgoingRecord};
    let kafka_b = infra::config::KafkaConfig {
        brokers: b.stack.brokers.clone(),
        topic_prefix: b.topic_prefix.clone(),
        ..infra::config::KafkaConfig::default()
    };
    let sink = infra::kafka::sink::KafkaSink::new(&kafka_b, "geo-drills").unwrap();
    for partition in 0..a.partitions {
        let checkpoint = ReplicationCheckpoint::new("a", "submissions", partition, 0, 0);
        let ack = sink
            .produce(OutgoingRecord {
                topic: kafka_b.mirrored_checkpoints_topic("a"),
                partition_opt: Some(0),
                key: checkpoint.key().into_bytes(),
                payload: checkpoint.encode(),
                headers: Vec::new(),
            })
            .unwrap();
        ack.await.unwrap();
    }
}

/// Deletes a consumer group (true once it is gone; false while it still has members).
async fn delete_group(brokers: &str, group: &str) -> bool {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let Ok(admin) = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<AdminClient<rdkafka::client::DefaultClientContext>>()
    else {
        return false;
    };
    match admin.delete_groups(&[group], &AdminOptions::new()).await {
        Ok(results) => results.iter().all(|result| result.is_ok()),
        Err(_) => false,
    }
}
