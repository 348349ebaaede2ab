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
