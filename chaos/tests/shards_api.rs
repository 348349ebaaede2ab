//! The cross-shard operations API (`/api/shards/*`) and `flk shards` on the real stack: every
//! answer is checked against what the Redis nodes hold, read independently here (KEYS and
//! STRLEN per node on this deployment's prefix); bad parameters answer 400 with a message naming
//! them, missing credentials 401; a dead node is reported in its own entry of a 200, and makes
//! `flk shards` exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaos::deployment::{Deployment, TestTenant};
use chaos::http::submit_json;
use chaos::process::{FlkProcess, flk_binary, run_flk};
use chaos::records::{pcs_id, signed_record};
use chaos::wait_until;
use projections::redis_nodes::node_id;
use projections::{CacheEntry, CachedOutcome, HotCache, HotCacheConfig, OutcomeClass};
use serde_json::{Value, json};

const SECRET: &str = "testsecret";
const AUTH: &str = "operator:s3cret";

/// Records submitted through the gateway (cached by the projector after commit).
const SUBMITTED: u64 = 5;
/// Entries written straight into the cache.
const SEEDED: usize = 300;

/// Nothing listens here.
const DEAD_NODE: &str = "redis://127.0.0.1:1";

const ROUTES: [&str; 5] = [
    "/api/shards/distribution",
    "/api/shards/health",
    "/api/shards/sample",
    "/api/shards/find?tenant=default&pcs_id=x",
    "/api/shards/stats",
];

/// Every key of `prefix` per node id with its value's length, read with KEYS: the test's own
/// view, independent of the SCAN the API uses (a few hundred keys of one test prefix).
fn redis_truth(urls: &[String], prefix: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    urls.iter()
        .map(|url| {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut connection = client.get_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query(&mut connection)
                .unwrap();
            let lengths = keys
                .into_iter()
                .map(|key| {
                    let length: u64 = redis::cmd("STRLEN")
                        .arg(&key)
                        .query(&mut connection)
                        .unwrap();
                    (key, length)
                })
                .collect();
            (node_id(url), lengths)
        })
        .collect()
}

fn total_keys(truth: &BTreeMap<String, BTreeMap<String, u64>>) -> usize {
    truth.values().map(BTreeMap::len).sum()
}

/// `GET base+path`, with the operator's credentials when `auth`: `(status, JSON body)`.
async fn get(client: &reqwest::Client, base: &str, path: &str, auth: bool) -> (u16, Value) {
    let mut request = client.get(format!("{base}{path}"));
    if auth {
        request = request.header("Authorization", format!("Basic {}", BASE64.encode(AUTH)));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The nodes of an answer's `nodes` list by id.
fn by_node(body: &Value) -> BTreeMap<String, Value> {
    body["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {body}"))
        .iter()
        .map(|node| (node["node"].as_str().unwrap().to_owned(), node.clone()))
        .collect()
}

async fn seed_cache(deployment: &Deployment) -> HotCache {
    let cache = HotCache::new(HotCacheConfig::new(
        deployment.stack.redis_urls.clone(),
        deployment.id.clone(),
    ))
    .unwrap();
    let entries: Vec<CacheEntry> = (0..SEEDED)
        .map(|index| CacheEntry {
            // A tenant with a colon: its key is escaped, and still found.
            tenant: if index % 2 == 0 { "default" } else { "ops:eu" }.to_owned(),
            pcs_id: format!("seeded-{index:04}"),
            outcome: CachedOutcome {
                outcome_class: OutcomeClass::Accepted,
                body: json!({"accepted": true, "escalated": false, "seeded": index}),
                signed_digest: "00".repeat(32),
            },
            expires_at_ms_opt: None,
        })
        .collect();
    assert_eq!(cache.put_many(&entries).await.unwrap(), SEEDED);
    cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_api_reports_what_redis_holds() {
    let deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let env = [("FLK_METRICS_BASIC_AUTH", AUTH)];
    let flk =
        FlkProcess::start_with_env(&deployment, "gateway,shard,projector", "all", &env).unwrap();
    let base = flk.url().to_owned();
    let client = reqwest::Client::new();

    let mut submitted = Vec::new();
    for seed in 0..SUBMITTED {
        let record = signed_record(98_400 + seed, SECRET);
        let answer = submit_json(&client, &base, Some("default"), &record)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        submitted.push(pcs_id(&record));
    }
    let cache = seed_cache(&deployment).await;
    let urls = deployment.stack.redis_urls.clone();
    let expected = SEEDED + SUBMITTED as usize;
    // The projector fills the cache right after commit, which may be just after the answer.
    let truth = wait_until(
        "every submitted record in the hot tier",
        Duration::from_secs(30),
        || async {
            let truth = redis_truth(&urls, &deployment.id);
            (total_keys(&truth) == expected).then_some(truth)
        },
    )
    .await
    .unwrap();
    let node_ids: BTreeSet<String> = urls.iter().map(|url| node_id(url)).collect();
    assert_eq!(truth.keys().cloned().collect::<BTreeSet<_>>(), node_ids);

    // 401 without credentials or with wrong ones, on every route, like /metrics.
    for route in ROUTES {
        let (status, _) = get(&client, &base, route, false).await;
        assert_eq!(status, 401, "{route} without credentials");
        let wrong = client
            .get(format!("{base}{route}"))
            .header("Authorization", format!("Basic {}", BASE64.encode("x:y")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong.status().as_u16(),
            401,
            "{route} with wrong credentials"
        );
    }

    // distribution: per node exactly what the node holds; total and balance from the same.
    let (status, body) = get(&client, &base, "/api/shards/distribution", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prefix"], json!(deployment.id));
    assert_eq!(body["ring"]["state_version"], json!(0));
    assert_eq!(body["ring"]["dual_writing"], json!(false));
    let nodes = by_node(&body);
    assert_eq!(nodes.keys().cloned().collect::<BTreeSet<_>>(), node_ids);
    let mut counts = Vec::new();
    for (node, held) in &truth {
        let bytes: u64 = held.values().sum();
        assert_eq!(nodes[node]["keys"], json!(held.len()), "{node}: {body}");
        assert_eq!(nodes[node]["bytes"], json!(bytes), "{node}: {body}");
        assert_eq!(nodes[node]["in_read_ring"], json!(true));
        assert!(nodes[node].get("error").is_none(), "{body}");
        counts.push(held.len() as f64);
    }
    assert_eq!(body["total"]["keys"], json!(expected), "{body}");
    let total_bytes: u64 = truth.values().flat_map(BTreeMap::values).sum();
    assert_eq!(body["total"]["bytes"], json!(total_bytes));
    let mean = counts.iter().sum::<f64>() / counts.len() as f64;
    let balance = counts.iter().copied().fold(0.0, f64::max) / mean;
    assert!(
        (body["balance"].as_f64().unwrap() - balance).abs() < 1e-9,
        "{body}"
    );

    // health: every configured node answers a PING; the configuration's ring, no migration.
    let (status, body) = get(&client, &base, "/api/shards/health", true).await;
    assert_eq!(status, 200, "{body}");
    let nodes = by_node(&body);
    assert_eq!(nodes.keys().cloned().collect::<BTreeSet<_>>(), node_ids);
    for (node, report) in &nodes {
        assert!(
            report["latency_ms"].as_f64().unwrap() >= 0.0,
            "{node}: {body}"
        );
    }
    assert_eq!(body["nodes_up"], json!(node_ids.len()));
    assert_eq!(body["ring"]["read_version"], json!(0));
    assert_eq!(body["ring"]["write_versions"], json!([0]));
    assert_eq!(body["ring"]["migration_id"], json!(null));

    // sample: key names the node holds, at most per_node, never values; 5 by default.
    for (query, per_node) in [("?per_node=3", 3), ("", 5)] {
        let (status, body) = get(&client, &base, &format!("/api/shards/sample{query}"), true).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["per_node"], json!(per_node));
        for (node, report) in by_node(&body) {
            let fields: BTreeSet<&str> = report
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(fields, BTreeSet::from(["node", "in_read_ring", "keys"]));
            let keys = report["keys"].as_array().unwrap();
            assert_eq!(keys.len(), per_node.min(truth[&node].len()), "{body}");
            for key in keys {
                assert!(
                    truth[&node].contains_key(key.as_str().unwrap()),
                    "{key} is not on {node}"
                );
            }
        }
    }

    // find: the read owner is the ring's, it holds the key, and no other node does.
    for (tenant, id) in [
        ("default", submitted[0].as_str()),
        ("ops:eu", "seeded-0001"),
    ] {
        let query = format!(
            "/api/shards/find?tenant={}&pcs_id={id}",
            tenant.replace(':', "%3A")
        );
        let (status, body) = get(&client, &base, &query, true).await;
        assert_eq!(status, 200, "{body}");
        let key = cache.key(tenant, id);
        let owner = cache.placement().read_owner(key.as_bytes()).to_owned();
        assert_eq!(body["key"], json!(key));
        assert_eq!(body["read_owner"], json!(owner), "{body}");
        assert_eq!(body["write_owners"], json!([owner]), "{body}");
        assert_eq!(body["held_by"], json!([owner]), "{body}");
        assert!(truth[&owner].contains_key(&key));
        for (node, report) in by_node(&body) {
            assert_eq!(report["exists"], json!(node == owner), "{body}");
        }
    }
    let (status, body) = get(
        &client,
        &base,
        "/api/shards/find?tenant=default&pcs_id=never-submitted",
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held_by"], json!([]));

    // stats: the distribution's summary.
    let (status, body) = get(&client, &base, "/api/shards/stats", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["node_count"], json!(node_ids.len()));
    assert_eq!(body["nodes_answered"], json!(node_ids.len()));
    assert_eq!(body["total"]["keys"], json!(expected));
    assert_eq!(body["total"]["bytes"], json!(total_bytes));
    assert_eq!(body["errors"], json!([]));
    assert!((body["balance"].as_f64().unwrap() - balance).abs() < 1e-9);

    // 400 with a message naming what is wrong.
    for (path, message) in [
        (
            "/api/shards/sample?per_node=0",
            "per_node must be between 1 and 100, got 0",
        ),
        (
            "/api/shards/sample?per_node=101",
            "per_node must be between 1 and 100, got 101",
        ),
        (
            "/api/shards/sample?per_node=many",
            "per_node must be an integer between 1 and 100, got \"many\"",
        ),
        ("/api/shards/find?tenant=default", "pcs_id is required"),
        ("/api/shards/find", "tenant and pcs_id are required"),
        (
            "/api/shards/find?tenant=&pcs_id=p",
            "tenant must not be empty",
        ),
        (
            "/api/shards/distribution?node=1",
            "unknown parameter \"node\"; this route takes none",
        ),
        (
            "/api/shards/sample?per_nodes=2",
            "unknown parameter \"per_nodes\"; expected per_node",
        ),
    ] {
        let (status, body) = get(&client, &base, path, true).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            body,
            json!({"error": "bad_query", "message": message}),
            "{path}"
        );
    }

    // flk shards: the same numbers from the command line.
    let stats: Value =
        serde_json::from_str(&run_flk(&deployment, &["shards", "stats", "--json"]).unwrap())
            .unwrap();
    assert_eq!(stats["total"]["keys"], json!(expected), "{stats}");
    assert_eq!(stats["total"]["bytes"], json!(total_bytes));
    assert_eq!(stats["node_count"], json!(node_ids.len()));
    let table = run_flk(&deployment, &["shards", "distribution"]).unwrap();
    for (node, held) in &truth {
        let line = table
            .lines()
            .find(|line| line.starts_with(node.as_str()))
            .unwrap_or_else(|| panic!("no line for {node} in\n{table}"));
        assert!(
            line.split_whitespace()
                .any(|word| word == held.len().to_string()),
            "{line}"
        );
    }
    assert!(table.contains("balance (max/mean keys)"), "{table}");

    // A dead node among the configured ones: reported in its own entry, the others still counted.
    let with_dead = format!("{},{DEAD_NODE}", urls.join(","));
    let degraded = FlkProcess::start_with_env(
        &deployment,
        "gateway",
        "degraded",
        &[("FLK_REDIS_URLS", with_dead.as_str())],
    )
    .unwrap();
    let (status, body) = get(&client, degraded.url(), "/api/shards/health", false).await;
    assert_eq!(status, 200, "{body}");
    let nodes = by_node(&body);
    assert!(nodes[DEAD_NODE]["error"].is_string(), "{body}");
    assert!(nodes[DEAD_NODE].get("latency_ms").is_none(), "{body}");
    assert_eq!(body["nodes_up"], json!(node_ids.len()));
    let (status, body) = get(&client, degraded.url(), "/api/shards/distribution", false).await;
    assert_eq!(status, 200, "{body}");
    assert!(by_node(&body)[DEAD_NODE]["error"].is_string(), "{body}");
    assert_eq!(body["total"]["keys"], json!(expected), "{body}");
    let config = deployment.write_config().unwrap();
    let output = Command::new(flk_binary().unwrap())
        .args(["shards", "health", "-c"])
        .arg(&config)
        .env("FLK_REDIS_URLS", &with_dead)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with(DEAD_NODE) && line.contains("error:")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!(
        "{} of {} nodes answer",
        node_ids.len(),
        node_ids.len() + 1
    )));

    drop((flk, degraded));
    deployment.cleanup().await;
}
