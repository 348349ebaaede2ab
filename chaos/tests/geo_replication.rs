//! Two regions on the local two-region stack (`stack.sh up --regions a,b`): each region's
//! replicator ships its submissions to the other's Kafka cluster, and each region decides what it
//! receives itself. Records submitted in either region end up decided in both, with the same
//! signed digest and outcome, and nothing comes back around (a replica is never shipped again).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant, two_regions};
use chaos::process::FlkProcess;
use chaos::wait_until;

const SECRET: &str = "geosecret";

/// Records submitted to each region.
const PER_REGION: u64 = 100;

/// `(pcs_id, signed digest hex, outcome class)` of every dedup row, sorted.
async fn dedup_rows(deployment: &Deployment) -> Vec<(String, String, String)> {
    let client = deployment.postgres().await.unwrap();
    let mut rows: Vec<(String, String, String)> = client
        .query(
            "SELECT pcs_id, encode(signed_digest, 'hex'), outcome_code FROM dedup \
             WHERE tenant = 'default'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    rows.sort();
    rows
}

/// Audit entries by source topic.
async fn audit_by_topic(deployment: &Deployment) -> Vec<(String, i64)> {
    let client = deployment.postgres().await.unwrap();
    client
        .query(
            "SELECT source_topic, count(*) FROM audit_log GROUP BY source_topic ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// What a region holds and did, for a failure message: rows, audit entries per topic, the
/// replication and shard counters, and its log.
async fn explain(deployment: &Deployment, flk: &FlkProcess) -> String {
    let metrics = chaos::http::metrics(&reqwest::Client::new(), flk.url())
        .await
        .unwrap_or_else(|error| format!("(no metrics: {error})"));
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|line| {
            line.starts_with("flk_replication_records_total")
                || line.starts_with("flk_actor_restarts_total")
                || line.starts_with("flk_decisions_produced_total")
                || line.starts_with("flk_actor_in_flight_records")
                || line.starts_with("flk_actor_lag_records")
        })
        .collect();
    format!(
        "region {}: {} dedup rows, audit entries by topic {:?}\n{}\nlog:\n{}",
        deployment.region,
        dedup_rows(deployment).await.len(),
        audit_by_topic(deployment).await,
        counters.join("\n"),
        flk.log()
    )
}

async fn submit_all(gateway: &str, seeds: std::ops::Range<u64>) {
    let client = reqwest::Client::new();
    for seed in seeds {
        let record = chaos::records::signed_record(seed, SECRET);
        let answer = chaos::http::submit_json(&client, gateway, None, &record)
            .await
            .unwrap();
        assert!(
            answer.status == 200 || answer.status == 202,
            "seed {seed}: {} {}",
            answer.status,
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_submitted_in_either_region_are_decided_in_both_and_never_come_back() {
    let (a, b) = two_regions(|| vec![TestTenant::signed("default", SECRET)], false).unwrap();
    let roles = "gateway,shard,projector,replicator";
    let flk_a = FlkProcess::start(&a, roles, "region-a").unwrap();
    let flk_b = FlkProcess::start(&b, roles, "region-b").unwrap();

    submit_all(flk_a.url(), 0..PER_REGION).await;
    submit_all(flk_b.url(), 10_000..10_000 + PER_REGION).await;

    let everything = (2 * PER_REGION) as usize;
    for (name, deployment) in [("a", &a), ("b", &b)] {
        let waited = wait_until(
            &format!("region {name} decides every record of both regions"),
            Duration::from_secs(60),
            || async move { (dedup_rows(deployment).await.len() == everything).then_some(()) },
        )
        .await;
        if let Err(error) = waited {
            panic!(
                "{error}\n{}\n{}",
                explain(&a, &flk_a).await,
                explain(&b, &flk_b).await
            );
        }
    }
    // Both regions hold the same first outcomes: same keys, digests and statuses.
    assert_eq!(dedup_rows(&a).await, dedup_rows(&b).await);

    // Each region decided its own records once and the other region's once: nothing was
    // shipped back around.
    let expected = |own: &Deployment, other_region: &str| {
        let mut topics = vec![
            (own.submissions_topic(), PER_REGION as i64),
            (
                format!("{}{other_region}.flk.submissions", own.topic_prefix),
                PER_REGION as i64,
            ),
        ];
        topics.sort();
        topics
    };
    assert_eq!(audit_by_topic(&a).await, expected(&a, "b"));
    assert_eq!(audit_by_topic(&b).await, expected(&b, "a"));

    // The replicators saw the mirrored records in their own region's log and left them.
    for (deployment, flk, other) in [(&a, &flk_a, "b"), (&b, &flk_b, "a")] {
        let text = chaos::http::metrics(&reqwest::Client::new(), flk.url())
            .await
            .unwrap();
        let shipped = chaos::http::metric_sum(
            &text,
            "flk_replication_records_total",
            &[
                ("remote_region", other),
                ("stream", "submissions"),
                ("outcome", "shipped"),
            ],
        );
        assert_eq!(
            shipped, PER_REGION as f64,
            "region {}: {text}",
            deployment.region
        );
    }

    // Heartbeats cross both ways: each region measures the lag of the link from the other (from
    // heartbeats and from the mirrored records' received-at), and the newest heartbeat is fresh.
    for (name, flk, origin) in [("a", &flk_a, "b"), ("b", &flk_b, "a")] {
        let client = reqwest::Client::new();
        let text = wait_until(
            &format!("region {name} observes heartbeats from {origin}"),
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    let text = chaos::http::metrics(&client, flk.url()).await.ok()?;
                    let observed = chaos::http::metric_sum(
                        &text,
                        "flk_crr_lag_seconds_count",
                        &[("origin_region", origin), ("source", "heartbeat")],
                    );
                    (observed >= 2.0).then_some(text)
                }
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\nlog of region {name}:\n{}", flk.log()));
        let records = chaos::http::metric_sum(
            &text,
            "flk_crr_lag_seconds_count",
            &[("origin_region", origin), ("source", "record")],
        );
        assert_eq!(records, PER_REGION as f64, "region {name}: {text}");
        let age = chaos::http::metric_sum(
            &text,
            "flk_crr_heartbeat_age_seconds",
            &[("origin_region", origin)],
        );
        assert!(age < 5.0, "region {name}: newest heartbeat {age} s old");
    }

    // A split second of split brain: different records for one key, region b's received first.
    // Whatever order each region sees them in, both keep region b's (earliest received-at).
    let original = chaos::records::signed_record(50_000, SECRET);
    let contested = chaos::records::pcs_id(&original);
    let earlier = chaos::records::edited(&original, serde_json::json!({"budget": 0.5}), SECRET);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for (gateway, record) in [(flk_b.url(), &earlier), (flk_a.url(), &original)] {
        let answer = chaos::http::submit_json(&client, gateway, None, record)
            .await
            .unwrap();
        assert!(
            [200, 202, 409].contains(&answer.status),
            "{} {}",
            answer.status,
            answer.body
        );
        statuses.push(answer.status);
    }
    let row_of = |rows: Vec<(String, String, String)>| {
        rows.into_iter().find(|(pcs_id, _, _)| *pcs_id == contested)
    };
    let kept_by_b = row_of(dedup_rows(&b).await).unwrap();
    let converged = wait_until(
        "both regions keep region b's earlier record",
        Duration::from_secs(30),
        || async {
            let in_a = row_of(dedup_rows(&a).await)?;
            let in_b = row_of(dedup_rows(&b).await)?;
            (in_a == in_b).then_some(in_a)
        },
    )
    .await;
    if let Err(error) = converged {
        panic!(
            "{error}\n{}\n{}",
            explain(&a, &flk_a).await,
            explain(&b, &flk_b).await
        );
    }
    assert_eq!(row_of(dedup_rows(&a).await).unwrap(), kept_by_b);
    // Region a took its own record first unless b's arrived before it (then a answered 409):
    // in the first case its audit log says b's record superseded it.
    let superseded = a.audit_entries(&contested, "superseded").await.unwrap();
    assert_eq!(
        superseded,
        i64::from(statuses[1] != 409),
        "answers {statuses:?}"
    );

    drop(flk_a);
    drop(flk_b);
    a.cleanup().await;
    b.cleanup().await;
}

/// Region a's Kafka settings for `deployment` (names under its prefix).
fn kafka_of(deployment: &Deployment) -> infra::config::KafkaConfig {
    infra::config::KafkaConfig {
        brokers: deployment.stack.brokers.clone(),
        topic_prefix: deployment.topic_prefix.clone(),
        ..infra::config::KafkaConfig::default()
    }
}

/// Produces `records` to partition 0 of `topic`, each acked.
async fn produce_all(
    kafka: &infra::config::KafkaConfig,
    topic: &str,
    records: Vec<(String, Vec<u8>)>,
) {
    use infra::log::{LogSink as _, OutgoingRecord};
    let sink = infra::kafka::sink::KafkaSink::new(kafka, "geo-replication").unwrap();
    for (key, payload) in records {
        let ack = sink
            .produce(OutgoingRecord {
                topic: topic.to_owned(),
                partition_opt: Some(0),
                key: key.into_bytes(),
                payload,
                headers: Vec::new(),
            })
            .unwrap();
        ack.await.unwrap();
    }
}

/// Subscribes `group` to `topic` from `checkpoints` and returns the offset of the first record it
/// reads, with the source (still open).
async fn first_offset(
    kafka: &infra::config::KafkaConfig,
    group: &str,
    topic: &str,
    checkpoints: &[(i32, i64)],
) -> (i64, infra::log::LogSource) {
    use infra::log::SourceEvent;
    let mut source = infra::kafka::source::subscribe_from(
        kafka,
        &kafka.group(group),
        topic,
        Duration::from_secs(5),
        checkpoints.iter().copied().collect(),
    )
    .unwrap();
    let offset = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match source.events.recv().await {
                Some(SourceEvent::Record(record)) => break record.offset,
                Some(SourceEvent::Failed(error)) => panic!("source failed: {error}"),
                Some(_) => {}
                None => panic!("source closed"),
            }
        }
    })
    .await
    .expect("a record within 60 s");
    (offset, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_starts_at_the_later_of_its_group_position_and_its_checkpoint() {
    let deployment = Deployment::new(vec![]).unwrap();
    let kafka = kafka_of(&deployment);
    let topic = format!("{}log", deployment.topic_prefix);
    infra::kafka::create_topics(&kafka, &[(topic.clone(), 1)])
        .await
        .unwrap();
    let records = (0..10).map(|n| (format!("k{n}"), vec![b'x'])).collect();
    produce_all(&kafka, &topic, records).await;

    // Group positions lost (a group that never committed): the checkpoint decides, so nothing
    // before it is shipped again.
    let (offset, _source) = first_offset(&kafka, "lost", &topic, &[(0, 6)]).await;
    assert_eq!(offset, 6, "started at the checkpoint");

    // A checkpoint past the end belongs to an older incarnation of the topic: ignored, so
    // nothing is skipped.
    let (offset, _source) = first_offset(&kafka, "recreated", &topic, &[(0, 50)]).await;
    assert_eq!(offset, 0, "a checkpoint past the end is ignored");

    // The group got further than the (older) checkpoint: the group position decides.
    let (_, source) = first_offset(&kafka, "ahead", &topic, &[]).await;
    source.positions.store(0, 7).unwrap();
    let closed = source.closed;
    drop(source.events);
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the source leaves its group")
        .ok();
    let (offset, _source) = first_offset(&kafka, "ahead", &topic, &[(0, 6)]).await;
    assert_eq!(offset, 8, "the committed position is past the checkpoint");

    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_read_back_newest_first_and_partition_counts_must_agree() {
    use events::replication_checkpoint::ReplicationCheckpoint;
    use infra::kafka::checkpoints;
    let (a, b) = two_regions(Vec::new, false).unwrap();
    let (kafka_a, kafka_b) = (kafka_of(&a), kafka_of(&b));
    let limit = Duration::from_secs(10);

    // The target keeps the checkpoints of every origin and stream in one compacted topic.
    let topic = kafka_b.mirrored_checkpoints_topic("a");
    infra::kafka::create_compacted_topics(&kafka_b, &[(topic.clone(), 1)])
        .await
        .unwrap();
    assert!(
        checkpoints::read(&kafka_b, &topic, "a", "submissions", limit)
            .await
            .unwrap()
            .is_empty(),
        "no checkpoints yet"
    );
    let record = |region: &str, stream: &str, partition: i32, next: i64| {
        let checkpoint = ReplicationCheckpoint::new(region, stream, partition, next, 1);
        (checkpoint.key(), checkpoint.encode())
    };
    produce_all(
        &kafka_b,
        &topic,
        vec![
            record("a", "submissions", 0, 10),
            record("a", "submissions", 1, 4),
            ("junk".to_owned(), b"not a checkpoint".to_vec()),
            record("a", "heartbeats", 0, 99),
            record("c", "submissions", 0, 77),
            record("a", "submissions", 0, 12),
        ],
    )
    .await;
    let read = checkpoints::read(&kafka_b, &topic, "a", "submissions", limit)
        .await
        .unwrap();
    assert_eq!(
        read.into_iter().collect::<Vec<_>>(),
        vec![(0, 12), (1, 4)],
        "the newest of each partition, this origin and stream only"
    );

    // Partition counts: equal is fine, different is a configuration error naming both, and a
    // target topic that is not there yet is worth retrying.
    let local = format!("{}counted", a.topic_prefix);
    let (same, fewer) = (
        format!("{}same", b.topic_prefix),
        format!("{}fewer", b.topic_prefix),
    );
    infra::kafka::create_topics(&kafka_a, &[(local.clone(), 4)])
        .await
        .unwrap();
    infra::kafka::create_topics(&kafka_b, &[(same.clone(), 4), (fewer.clone(), 2)])
        .await
        .unwrap();
    checkpoints::check_partitions(&kafka_a, &local, &kafka_b, &same, limit)
        .await
        .unwrap();
    match checkpoints::check_partitions(&kafka_a, &local, &kafka_b, &fewer, limit).await {
        Err(infra::kafka::KafkaClientError::Fatal(message)) => {
            assert!(
                message.contains(&format!("{local} has 4 here")),
                "{message}"
            );
            assert!(message.contains(&format!("{fewer} has 2")), "{message}");
        }
        other => panic!("a partition mismatch is a configuration error, got {other:?}"),
    }
    let missing = format!("{}missing", b.topic_prefix);
    match checkpoints::check_partitions(&kafka_a, &local, &kafka_b, &missing, limit).await {
        Err(infra::kafka::KafkaClientError::Unavailable(message)) => {
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("a missing target topic is retried, got {other:?}"),
    }

    a.cleanup().await;
    b.cleanup().await;
}
