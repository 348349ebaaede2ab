//! Tiering on a live stack (Kafka, Postgres, Redis, moto for S3): demotion of many entries for
//! tenants with different policies; every entry readable afterwards with the same outcome;
//! duplicates and conflicts of demoted keys answered from the first decision; the state hash
//! unchanged by demotion and reproduced by replay; `kill -9` of the demoter mid-cycle leaves no
//! lost, duplicated or orphaned entry; an object store outage and a corrupted object.
//!
//! `FLK_TIER_TEST_ENTRIES` sets the demotion test's size (20,000 in `make test`; `make tier-drill`
//! runs 100,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant, s3_objects};
use chaos::http::{lookup, metric_sum, metrics, submit_json};
use chaos::process::{FlkProcess, run_flk, run_flk_status};
use chaos::records::{edited, pcs_id, signed_record};
use chaos::wait_until;
use object_store::ObjectStore as _;
use object_store::path::Path;
use serde_json::json;

const SECRET: &str = "testsecret";

/// alpha and beta move to the cold tier a second after their decision (inside their dedup
/// window, which the policy allows explicitly); gamma keeps the default policy (30 days).
fn tier_deployment(extra: &str) -> Deployment {
    // A hot TTL of a second, so reads after demotion miss Redis and reach the cold tier.
    let short_hot = |name: &str| TestTenant {
        settings_toml: "hot_ttl_secs = 1\n".to_owned(),
        ..TestTenant::signed(name, SECRET)
    };
    let mut deployment = Deployment::new(vec![
        short_hot("alpha"),
        short_hot("beta"),
        TestTenant::signed("gamma", SECRET),
    ])
    .unwrap();
    deployment.extra_toml = format!(
        "[tenants.alpha.tiering]\nwarm_ttl_secs = 1\nallow_warm_below_dedup_window = true\n\
         [tenants.beta.tiering]\nwarm_ttl_secs = 1\nallow_warm_below_dedup_window = true\n\
         cold_retention_secs_opt = 1209600\n{extra}"
    );
    deployment
}

/// Object names under the deployment's cold prefix.
async fn cold_objects(deployment: &Deployment) -> BTreeSet<String> {
    use futures::TryStreamExt as _;
    let prefix = Path::from(format!("{}/cold", deployment.schema));
    s3_objects()
        .unwrap()
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// Every (tenant, pcs_id) -> outcome JSON in the warm tier, and per tenant counts.
async fn warm_outcomes(deployment: &Deployment) -> BTreeMap<(String, String), String> {
    let client = deployment.postgres().await.unwrap();
    client
        .query("SELECT tenant, pcs_id, outcome::text FROM dedup", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect()
}

fn entries_wanted() -> u64 {
    std::env::var("FLK_TIER_TEST_ENTRIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20_000)
}

/// Produces `count` realistic signed records straight into Kafka (as agents do) and waits for
/// their decisions.
fn produce(deployment: &Deployment, count: u64, seed: u64) {
    run_flk(
        deployment,
        &[
            "bench",
            "--target",
            "kafka",
            "--count",
            &count.to_string(),
            "--duration",
            "600",
            "--duplicate-ratio",
            "0.02",
            "--seed",
            &seed.to_string(),
            "--quiet",
        ],
    )
    .unwrap();
}

fn state_hash(deployment: &Deployment) -> String {
    run_flk(deployment, &["state-hash"])
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_entries_stay_readable_deduplicated_and_replayable() {
    let deployment = tier_deployment("");
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "serve").unwrap();
    let client = reqwest::Client::new();
    // A few records through the gateway, kept to resubmit after demotion.
    let mine: Vec<serde_json::Value> = (0..20).map(|i| signed_record(91_000 + i, SECRET)).collect();
    for record in &mine {
        let answer = submit_json(&client, flk.url(), Some("alpha"), record)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    let wanted = entries_wanted();
    produce(&deployment, wanted, 7);
    let before = warm_outcomes(&deployment).await;
    let per_tenant = |tenant: &str| before.keys().filter(|(t, _)| t == tenant).count();
    let moving = per_tenant("alpha") + per_tenant("beta");
    assert!(
        moving as u64 >= wanted / 2,
        "{moving} of {wanted} in alpha and beta"
    );
    assert!(per_tenant("gamma") > 0);
    let hash_before = state_hash(&deployment);

    // Wait until alpha's and beta's rows are past their warm TTL, then demote once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let output = run_flk(&deployment, &["tier", "demote", "--now"]).unwrap();
    assert!(
        output.contains(&format!("demoted {moving} entries")),
        "{output}"
    );

    // Every alpha and beta row left Postgres for a sealed segment; gamma's stayed.
    let pg = deployment.postgres().await.unwrap();
    let warm_left: i64 = pg
        .query_one(
            "SELECT count(*) FROM dedup WHERE tenant IN ('alpha', 'beta')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(warm_left, 0);
    let row = pg
        .query_one(
            "SELECT (SELECT count(*) FROM cold_keys), \
                    (SELECT count(*) FROM cold_segments WHERE state = 'sealed'), \
                    (SELECT count(*) FROM cold_segments WHERE state <> 'sealed'), \
                    (SELECT count(*) FROM dedup WHERE tenant = 'gamma')",
            &[],
        )
        .await
        .unwrap();
    let (cold_keys, sealed, other, gamma): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(cold_keys as usize, moving);
    assert_eq!(other, 0, "no pending or abandoned segment");
    assert_eq!(gamma as usize, per_tenant("gamma"));
    // Exactly one object and one manifest per sealed segment: nothing orphaned.
    let objects = cold_objects(&deployment).await;
    assert_eq!(objects.len() as i64, 2 * sealed, "{objects:?}");
    // Segments are big enough for S3 lifecycle rules (>= 128 KiB) unless a tenant ran out.
    let small: i64 = pg
        .query_one(
            "SELECT count(*) FROM cold_segments WHERE compressed_bytes < 131072",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        small <= 2,
        "{small} small segments (at most the last of each tenant)"
    );

    // Demotion moves rows; it changes no decision.
    assert_eq!(state_hash(&deployment), hash_before);
    let (code, report) = run_flk_status(&deployment, &["tier", "verify"]).unwrap();
    assert_eq!(code, 0, "{report}");
    let stats = run_flk(&deployment, &["tier", "stats"]).unwrap();
    assert!(stats.contains("cold"), "{stats}");

    // Every demoted entry reads back from the cold tier with the outcome it had (a sample,
    // spread over the key space), then from warm or hot once promoted.
    let sample: Vec<&(String, String)> = before
        .keys()
        .filter(|(tenant, _)| tenant != "gamma")
        .step_by((moving / 200).max(1))
        .collect();
    for (tenant, id) in &sample {
        let (status, body) = lookup(&client, flk.url(), tenant, id).await.unwrap();
        assert!(status == 200 || status == 202, "{status} {body}");
        assert_eq!(body["tier"], "cold", "{body}");
        let expected: serde_json::Value =
            serde_json::from_str(&before[&(tenant.clone(), id.clone())]).unwrap();
        assert_eq!(body["outcome"], expected);
    }
    let (tenant, id) = sample[0];
    let (_, again) = lookup(&client, flk.url(), tenant, id).await.unwrap();
    assert!(again["tier"] == "hot" || again["tier"] == "warm", "{again}");
    let text = metrics(&client, flk.url()).await.unwrap();
    assert!(metric_sum(&text, "flk_tier_cold_reads_total", &[]) >= sample.len() as f64);
    assert!(metric_sum(&text, "flk_tier_promotions_total", &[]) >= 1.0);
    // Promotion changes no decision either.
    assert_eq!(state_hash(&deployment), hash_before);

    // Duplicates of demoted keys get the first outcome; a conflicting payload gets 409.
    for record in mine.iter().skip(1).take(5) {
        let answer = submit_json(&client, flk.url(), Some("alpha"), record)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.replayed, "a duplicate of a cold key is a replay");
        let conflicting = edited(record, json!({"budget": 0.3178}), SECRET);
        let conflict = submit_json(&client, flk.url(), Some("alpha"), &conflicting)
            .await
            .unwrap();
        assert_eq!(conflict.status, 409, "{:?}", conflict.body);
        assert_eq!(conflict.body["outcome"]["accepted"], true);
    }
    let applied: Vec<(String, String)> = pg
        .query(
            "SELECT dedup_result, pcs_id FROM audit_log WHERE tenant = 'alpha' AND pcs_id = ANY($1) \
             ORDER BY partition, seq",
            &[&mine.iter().skip(1).take(5).map(pcs_id).collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        applied
            .iter()
            .filter(|(result, _)| result == "first")
            .count(),
        5,
        "no demoted key was decided as new: {applied:?}"
    );

    // A rebuild from the log (every row back in Postgres) prints the live state hash.
    let live = state_hash(&deployment);
    let replayed = run_flk(&deployment, &["replay", "--no-swap", "--quiet"]).unwrap();
    assert!(
        replayed.contains(&live),
        "live {live}; replay said {replayed}"
    );
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_demoter_mid_cycle_loses_and_orphans_nothing() {
    // Small segments, so a cycle writes many and a kill lands between steps.
    let deployment = tier_deployment(
        "[tiering]\ndemote_interval_ms = 200\nsegment_max_entries = 100\nsegment_target_bytes = 4096\nsegment_max_wait_ms = 0\n",
    );
    let serve = FlkProcess::start(&deployment, "gateway,shard,projector", "serve").unwrap();
    produce(&deployment, 6_000, 11);
    let before = warm_outcomes(&deployment).await;
    let moving = before
        .keys()
        .filter(|(tenant, _)| tenant != "gamma")
        .count() as i64;
    let hash_before = state_hash(&deployment);
    let pg = deployment.postgres().await.unwrap();
    let sealed = || async {
        pg.query_one(
            "SELECT count(*) FROM cold_segments WHERE state = 'sealed'",
            &[],
        )
        .await
        .ok()
        .map(|row| row.get::<_, i64>(0))
    };
    for round in 0..3 {
        let mut demoter =
            FlkProcess::start(&deployment, "demoter", &format!("demoter{round}")).unwrap();
        let at_start = sealed().await.unwrap_or(0);
        wait_until(
            "the demoter to seal segments",
            Duration::from_secs(60),
            || async {
                sealed()
                    .await
                    .filter(|count| *count >= at_start + 3)
                    .map(|_| ())
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", demoter.log()));
        demoter.kill9();
        // A demoter killed holding the lease keeps it until it runs out; the next one waits.
        pg.execute("UPDATE tier_lease SET expires_at_ms = 0", &[])
            .await
            .unwrap();
    }
    let _last = FlkProcess::start(&deployment, "demoter", "demoter-last").unwrap();
    wait_until(
        "every due row demoted",
        Duration::from_secs(120),
        || async {
            let row = pg
                .query_one(
                    "SELECT (SELECT count(*) FROM dedup WHERE tenant IN ('alpha', 'beta')), \
                        (SELECT count(*) FROM cold_segments WHERE state = 'pending')",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 0 && row.get::<_, i64>(1) == 0).then_some(())
        },
    )
    .await
    .unwrap();
    // Every moved key is in exactly one sealed segment; no key is lost or doubled.
    let row = pg
        .query_one(
            "SELECT count(*), count(DISTINCT (c.tenant, c.pcs_id)) FROM cold_keys c \
             JOIN cold_segments s USING (segment_key) WHERE s.state = 'sealed'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (moving, moving)
    );
    // Objects: exactly the sealed segments' (abandoned ones were deleted).
    let sealed_keys: BTreeSet<String> = pg
        .query(
            "SELECT segment_key FROM cold_segments WHERE state = 'sealed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .flat_map(|row| {
            let key: String = row.get(0);
            [key.clone(), format!("{key}.manifest.json")]
        })
        .collect();
    assert_eq!(cold_objects(&deployment).await, sealed_keys);
    assert_eq!(state_hash(&deployment), hash_before);
    let (code, report) = run_flk_status(&deployment, &["tier", "verify"]).unwrap();
    assert_eq!(code, 0, "{report}");
    drop(serve);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_touches_only_cold_reads_and_a_corrupt_object_is_never_served() {
    let deployment = tier_deployment("");
    let serve = FlkProcess::start(&deployment, "gateway,shard,projector", "serve").unwrap();
    let client = reqwest::Client::new();
    let records: Vec<serde_json::Value> =
        (0..30).map(|i| signed_record(93_000 + i, SECRET)).collect();
    for record in &records {
        assert_eq!(
            submit_json(&client, serve.url(), Some("alpha"), record)
                .await
                .unwrap()
                .status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    run_flk(&deployment, &["tier", "demote", "--now"]).unwrap();

    // A second gateway whose object store does not answer: warm reads and ingestion work, a
    // cold-only read answers 503 with Retry-After and a JSON error, and the miss is counted.
    let dead = FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector,demoter",
        "dead-store",
        &[("FLK_S3_ENDPOINT", "http://127.0.0.1:1")],
    )
    .unwrap();
    let (status, body) = lookup(&client, dead.url(), "alpha", &pcs_id(&records[0]))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "cold_tier_unavailable");
    let fresh = signed_record(93_500, SECRET);
    let answer = submit_json(&client, dead.url(), Some("gamma"), &fresh)
        .await
        .unwrap();
    assert_eq!(
        answer.status, 200,
        "ingestion does not need the object store"
    );
    let (status, body) = lookup(&client, dead.url(), "gamma", &pcs_id(&fresh))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["tier"] == "hot" || body["tier"] == "warm", "{body}");
    // A duplicate of a cold key is still answered from the first decision (no object read).
    let duplicate = submit_json(&client, dead.url(), Some("alpha"), &records[1])
        .await
        .unwrap();
    assert_eq!((duplicate.status, duplicate.replayed), (200, true));
    let text = metrics(&client, dead.url()).await.unwrap();
    assert!(
        metric_sum(
            &text,
            "flk_tier_cold_misses_total",
            &[("reason", "unavailable")]
        ) >= 1.0
    );
    drop(dead);

    // Corrupt one segment in place: its reads are refused, never served, and verify names it.
    let pg = deployment.postgres().await.unwrap();
    let segment: String = pg
        .query_one(
            "SELECT segment_key FROM cold_keys WHERE tenant = 'alpha' AND pcs_id = $1",
            &[&pcs_id(&records[2])],
        )
        .await
        .unwrap()
        .get(0);
    let objects = s3_objects().unwrap();
    let location = Path::from(segment.as_str());
    let mut bytes = objects
        .get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    objects.put(&location, bytes.into()).await.unwrap();
    let (status, body) = lookup(&client, serve.url(), "alpha", &pcs_id(&records[2]))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "cold_segment_unreadable");
    assert!(body.get("outcome").is_none());
    let (code, report) = run_flk_status(&deployment, &["tier", "verify"]).unwrap();
    assert_eq!(code, 1, "{report}");
    assert!(report.contains(&segment), "{report}");
    drop(serve);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_retention_deletes_segments_and_records_it() {
    // delta: a one-second dedup window, cold after a second, deleted two seconds after decision.
    let mut deployment = tier_deployment(
        "[tenants.delta.tiering]\nwarm_ttl_secs = 1\ncold_retention_secs_opt = 2\n",
    );
    deployment.tenants.push(TestTenant {
        settings_toml: "hot_ttl_secs = 1\ndedup_ttl_secs = 1\n".to_owned(),
        ..TestTenant::signed("delta", SECRET)
    });
    let serve = FlkProcess::start(&deployment, "gateway,shard,projector", "serve").unwrap();
    let client = reqwest::Client::new();
    let records: Vec<serde_json::Value> =
        (0..10).map(|i| signed_record(95_000 + i, SECRET)).collect();
    for record in &records {
        let answer = submit_json(&client, serve.url(), Some("delta"), record)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let output = run_flk(&deployment, &["tier", "demote", "--now"]).unwrap();
    assert!(output.contains("demoted 10 entries"), "{output}");
    let (status, body) = lookup(&client, serve.url(), "delta", &pcs_id(&records[0]))
        .await
        .unwrap();
    assert_eq!(
        (status, body["tier"].as_str()),
        (200, Some("cold")),
        "{body}"
    );
    assert_eq!(cold_objects(&deployment).await.len(), 2);

    // Past retention: the next cycle deletes the segments, their keys and their objects. The
    // entry the read promoted is due again and moves into a segment of its own first, which is
    // past retention too (retention counts from the decision).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let output = run_flk(&deployment, &["tier", "demote", "--now"]).unwrap();
    assert!(output.contains("demoted 1 entries"), "{output}");
    assert!(output.contains("2 expired by retention"), "{output}");
    assert!(cold_objects(&deployment).await.is_empty());
    for record in [&records[0], &records[5]] {
        let (status, _) = lookup(&client, serve.url(), "delta", &pcs_id(record))
            .await
            .unwrap();
        assert_eq!(
            status, 404,
            "an entry past retention is gone from every tier"
        );
    }
    let pg = deployment.postgres().await.unwrap();
    let row = pg
        .query_one(
            "SELECT (SELECT count(*) FROM cold_keys WHERE tenant = 'delta'), \
                    (SELECT count(*) FROM tier_events WHERE tenant = 'delta' AND kind = 'expired'), \
                    (SELECT sum(entries)::bigint FROM tier_events WHERE tenant = 'delta' AND kind = 'expired'), \
                    (SELECT count(*) FROM audit_log WHERE tenant = 'delta')",
            &[],
        )
        .await
        .unwrap();
    // The audit log keeps all ten decisions.
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(counts, (0, 2, 10, 10));
    drop(serve);
    deployment.cleanup().await;
}
