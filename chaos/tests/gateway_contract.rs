//! The HTTP status matrix of CONTRACT section 4 against a real `flk serve` on the local stack,
//! plus direct Kafka producing, tenant isolation and rebuild by replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::http::{Answer, lookup, submit, submit_json};
use chaos::process::{FlkProcess, run_flk};
use chaos::records::{edited, golden, pcs_id, signed_record};
use chaos::wait_until;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const SECRET: &str = "testsecret";

/// Counts an answer that implies its body was logged (everything but 403, 413 and 429: the
/// refusals at the door).
fn count(logged: &mut i64, answer: anyhow::Result<Answer>) -> anyhow::Result<Answer> {
    if let Ok(answer) = &answer {
        if ![403, 413, 429].contains(&answer.status) {
            *logged += 1;
        }
    }
    answer
}

async fn counted(
    logged: &mut i64,
    client: &reqwest::Client,
    url: &str,
    tenant_opt: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    count(logged, submit(client, url, tenant_opt, body).await)
}

async fn counted_json(
    logged: &mut i64,
    client: &reqwest::Client,
    url: &str,
    tenant_opt: Option<&str>,
    record: &serde_json::Value,
) -> anyhow::Result<Answer> {
    count(logged, submit_json(client, url, tenant_opt, record).await)
}

fn tenants() -> Vec<TestTenant> {
    vec![
        TestTenant::signed("default", SECRET),
        TestTenant::signed("acme", "acme-secret"),
        TestTenant {
            name: "slow".into(),
            hmac_secret_opt: None,
            enabled: true,
            rate_opt: Some((0.5, 1.0)),
            settings_toml: String::new(),
        },
        TestTenant {
            name: "frozen".into(),
            hmac_secret_opt: Some(SECRET.into()),
            enabled: false,
            rate_opt: None,
            settings_toml: String::new(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_matrix() {
    let mut deployment = Deployment::new(tenants()).unwrap();
    deployment.max_body_bytes = 4096;
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let url = flk.url().to_owned();
    let client = reqwest::Client::new();
    // Requests answered with anything but 413/429: each must have left its body in the log (I1).
    let mut logged = 0i64;

    // Golden records: 200, then the stored outcome with Idempotent-Replayed.
    for file in ["pcs_tiny_case_1.json", "pcs_tiny_case_2.json"] {
        let body = std::fs::read(format!(
            "{}/../tests/vectors/golden/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let first = counted(&mut logged, &client, &url, None, body.clone())
            .await
            .unwrap();
        assert_eq!(first.status, 200, "{file}: {:?}\n{}", first.body, flk.log());
        assert!(!first.replayed);
        assert_eq!(first.body["accepted"], true);
        let again = counted(&mut logged, &client, &url, None, body)
            .await
            .unwrap();
        assert_eq!((again.status, again.replayed), (200, true), "{file}");
        assert_eq!(
            again.body["recomputed_D_hat"],
            first.body["recomputed_D_hat"]
        );
    }

    // Conflict: same pcs_id, different signed fields -> 409 carrying the first outcome.
    let conflicting = edited(&golden(), json!({"budget": 0.3178}), SECRET);
    let conflict = counted_json(&mut logged, &client, &url, None, &conflicting)
        .await
        .unwrap();
    assert_eq!(conflict.status, 409, "{:?}", conflict.body);
    assert_eq!(conflict.body["error"], "conflict");
    assert_eq!(conflict.body["outcome"]["accepted"], true);

    // 401 is never cached: a bad signature first, then the valid record is a first decision.
    let record = signed_record(1, SECRET);
    let mut forged = record.clone();
    forged["sig"] = json!("AAAA");
    let rejected = counted_json(&mut logged, &client, &url, None, &forged)
        .await
        .unwrap();
    assert_eq!(rejected.status, 401);
    assert_eq!(rejected.body["error"], "signature_invalid");
    let unsigned = edited(&record, json!({"sig": null}), "unused");
    let mut unsigned = unsigned;
    unsigned.as_object_mut().unwrap().remove("sig");
    assert_eq!(
        counted_json(&mut logged, &client, &url, None, &unsigned)
            .await
            .unwrap()
            .status,
        401
    );
    let valid = counted_json(&mut logged, &client, &url, None, &record)
        .await
        .unwrap();
    assert_eq!((valid.status, valid.replayed), (200, false));

    // Escalated outcome: 202, and its replay keeps 202.
    let escalated = edited(
        &signed_record(2, SECRET),
        json!({"regime": "sticky"}),
        SECRET,
    );
    let answer = counted_json(&mut logged, &client, &url, None, &escalated)
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    assert_eq!(
        answer.body["reason"],
        "regime mismatch: claimed=sticky, expected=mixed"
    );
    let replay = counted_json(&mut logged, &client, &url, None, &escalated)
        .await
        .unwrap();
    assert_eq!((replay.status, replay.replayed), (202, true));

    // Validation failure: 202 with accepted=false.
    let bad_id = edited(&signed_record(3, SECRET), json!({"pcs_id": "nope"}), SECRET);
    let answer = counted_json(&mut logged, &client, &url, None, &bad_id)
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    assert_eq!(answer.body["accepted"], false);

    // 400: not an object, wrong type, bad sent_at; each names its problem.
    for (body, needle) in [
        (b"[1,2]".to_vec(), "object"),
        (
            serde_json::to_vec(&edited(&golden(), json!({"epoch": 1.5}), SECRET)).unwrap(),
            "epoch",
        ),
        (
            serde_json::to_vec(&edited(&golden(), json!({"sent_at": "noon"}), SECRET)).unwrap(),
            "sent_at",
        ),
    ] {
        let answer = counted(&mut logged, &client, &url, None, body)
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(
            answer.body["message"].as_str().unwrap().contains(needle),
            "{:?}",
            answer.body
        );
    }

    // 403 at the door, nothing logged: unknown and disabled tenants, and a tenant header that
    // is not UTF-8 or is huge.
    for tenant in ["nobody", "frozen"] {
        let answer = counted_json(&mut logged, &client, &url, Some(tenant), &record)
            .await
            .unwrap();
        assert_eq!(answer.status, 403, "{tenant}");
        assert_eq!(answer.body["error"], "tenant_refused", "{tenant}");
    }
    for header_value in [
        reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        reqwest::header::HeaderValue::from_str(&"t".repeat(6_000)).unwrap(),
    ] {
        let response = client
            .post(format!("{url}/v1/pcs/submit"))
            .header("X-Tenant-Id", header_value)
            .json(&record)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
    }

    // 413: over the body limit, before anything is logged.
    let answer = counted(&mut logged, &client, &url, None, vec![b' '; 5000])
        .await
        .unwrap();
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body["error"], "payload_too_large");

    // 429 with Retry-After: the `slow` tenant allows a burst of one.
    let unsigned_tenant_record = signed_record(4, SECRET);
    let first = counted_json(
        &mut logged,
        &client,
        &url,
        Some("slow"),
        &unsigned_tenant_record,
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body);
    let limited = counted_json(
        &mut logged,
        &client,
        &url,
        Some("slow"),
        &signed_record(5, SECRET),
    )
    .await
    .unwrap();
    assert_eq!(limited.status, 429);
    assert!(limited.retry_after_opt.unwrap().parse::<u64>().unwrap() >= 1);

    // Lookups are scoped by tenant.
    let (status, body) = lookup(&client, &url, "default", &pcs_id(&record))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], 200);
    assert_eq!(
        lookup(&client, &url, "acme", &pcs_id(&record))
            .await
            .unwrap()
            .0,
        404
    );

    // I1: every body but the 413 and 429 ones is in the write-ahead log, and was decided.
    assert_eq!(
        chaos::history::wal_record_count(&deployment).unwrap(),
        logged
    );
    let report = chaos::history::check(&deployment, &[]).await.unwrap();
    assert_eq!(report.audit_entries, logged);
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let deployment = Deployment::new(tenants()).unwrap();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let client = reqwest::Client::new();
    // The same pcs_id under two tenants, each signed with its own key: two first decisions.
    let for_default = signed_record(10, SECRET);
    let for_acme = signed_record(10, "acme-secret");
    let answer = submit_json(&client, flk.url(), None, &for_default)
        .await
        .unwrap();
    assert_eq!((answer.status, answer.replayed), (200, false));
    let answer = submit_json(&client, flk.url(), Some("acme"), &for_acme)
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.replayed),
        (200, false),
        "{:?}",
        answer.body
    );
    // A key of one tenant does not sign for another.
    let answer = submit_json(&client, flk.url(), Some("acme"), &signed_record(11, SECRET))
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_kafka_producers_get_the_same_decisions() {
    let deployment = Deployment::new(tenants()).unwrap();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let client = reqwest::Client::new();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &deployment.stack.brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let topic = deployment.submissions_topic();
    let cases = [
        (signed_record(20, "acme-secret"), Some("acme"), 200),
        (signed_record(21, SECRET), None, 200),
        (
            edited(
                &signed_record(22, SECRET),
                json!({"regime": "sticky"}),
                SECRET,
            ),
            None,
            202,
        ),
    ];
    for (record, tenant_opt, _) in &cases {
        let body = serde_json::to_vec(record).unwrap();
        let tenant = tenant_opt.unwrap_or("default");
        let key = format!("{tenant}/{}", pcs_id(record));
        let mut message = FutureRecord::to(&topic).payload(&body).key(&key);
        if let Some(tenant) = tenant_opt {
            message = message.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: "flk-tenant",
                    value: Some(*tenant),
                },
            ));
        }
        producer
            .send(message, Duration::from_secs(10))
            .await
            .unwrap();
    }
    for (record, tenant_opt, expected) in &cases {
        let tenant = tenant_opt.unwrap_or("default");
        let stored = wait_until(
            "the direct record to be decided",
            Duration::from_secs(30),
            || async {
                let (status, body) = lookup(&client, flk.url(), tenant, &pcs_id(record))
                    .await
                    .ok()?;
                (status == 200).then_some(body)
            },
        )
        .await
        .unwrap();
        assert_eq!(stored["status"], *expected);
        // The gateway gives the same answer, as a replay.
        let answer = submit_json(&client, flk.url(), *tenant_opt, record)
            .await
            .unwrap();
        assert_eq!((answer.status, answer.replayed), (*expected, true));
    }
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_same_state() {
    let deployment = Deployment::new(tenants()).unwrap();
    let mut flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let client = reqwest::Client::new();
    let mut expected = Vec::new();
    for seed in 0..40 {
        let mut record = signed_record(100 + seed % 30, SECRET);
        if seed % 7 == 0 {
            record["sig"] = json!("AAAA");
        }
        if seed % 11 == 0 {
            record = edited(&record, json!({"budget": 0.5}), SECRET);
        }
        let answer = submit_json(&client, flk.url(), None, &record)
            .await
            .unwrap();
        expected.push(answer.status);
    }
    assert!(
        expected.contains(&200) && expected.contains(&401),
        "{expected:?}"
    );
    flk.kill9();
    let live = run_flk(&deployment, &["state-hash"]).unwrap();
    let output = run_flk(&deployment, &["replay", "--quiet"]).unwrap();
    assert!(
        output.contains(&format!("rebuilt state hash: {}", live.trim())),
        "{output}\nlive {live}"
    );
    let after = run_flk(&deployment, &["state-hash"]).unwrap();
    assert_eq!(after, live);
    // The rebuilt projections serve the service again.
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "again").unwrap();
    // Record 101 was first accepted as seed 1 (seed 0 edited record 100 before it got a clean copy).
    let answer = submit_json(&client, flk.url(), None, &signed_record(101, SECRET))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.replayed), (200, true));
    drop(flk);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_cache_fills_after_commit_and_refills_after_a_flush() {
    let deployment = Deployment::new(tenants()).unwrap();
    let flk = FlkProcess::start(&deployment, "gateway,shard,projector", "all").unwrap();
    let client = reqwest::Client::new();
    let record = signed_record(30, SECRET);
    assert_eq!(
        submit_json(&client, flk.url(), None, &record)
            .await
            .unwrap()
            .status,
        200
    );
    let cache = projections::HotCache::new(projections::HotCacheConfig::new(
        deployment.stack.redis_urls.clone(),
        deployment.id.clone(),
    ))
    .unwrap();
    // Filled after the commit (the answer came after the commit, the fill right after it).
    let cached = wait_until(
        "the hot cache to hold the outcome",
        Duration::from_secs(10),
        || async { cache.get("default", &pcs_id(&record)).await.ok().flatten() },
    )
    .await
    .unwrap();
    assert_eq!(cached.outcome_class, projections::OutcomeClass::Accepted);
    assert_eq!(
        lookup(&client, flk.url(), "default", &pcs_id(&record))
            .await
            .unwrap()
            .1["source"],
        "cache"
    );
    // Flushing Redis loses nothing: the lookup falls back to Postgres and refills.
    assert!(cache.flush_all_prefix().await.unwrap() >= 1);
    let (status, body) = lookup(&client, flk.url(), "default", &pcs_id(&record))
        .await
        .unwrap();
    assert_eq!((status, body["source"].as_str()), (200, Some("postgres")));
    assert!(
        cache
            .get("default", &pcs_id(&record))
            .await
            .unwrap()
            .is_some()
    );
    // Duplicates are still answered from Postgres truth, with the replay header.
    let again = submit_json(&client, flk.url(), None, &record)
        .await
        .unwrap();
    assert_eq!((again.status, again.replayed), (200, true));
    drop(flk);
    let _ = cache.flush_all_prefix().await;
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_routes_health_ready_and_metrics_behind_basic_auth() {
    let deployment = Deployment::new(tenants()).unwrap();
    let flk = chaos::process::FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector",
        "all",
        &[("FLK_METRICS_BASIC_AUTH", "ops:s3cret")],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = flk.url();
    let health = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await.unwrap(), "OK");
    let ready = client.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        submit_json(&client, url, None, &signed_record(40, SECRET))
            .await
            .unwrap()
            .status,
        200
    );
    let anonymous = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = client
        .get(format!("{url}/metrics"))
        .basic_auth("ops", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let metrics = client
        .get(format!("{url}/metrics"))
        .basic_auth("ops", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("flk_ingest_total{tenant=\"default\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flk_accepted{tenant=\"default\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains(&pcs_id(&signed_record(40, SECRET))),
        "metrics must not carry ids"
    );
    // Secrets never reach the logs.
    assert!(!flk.log().contains("s3cret") && !flk.log().contains(SECRET));
    drop(flk);
    deployment.cleanup().await;
}
