//! `flk load`: sends a mixed demo load to a gateway and prints what came back.
//!
//! Records are the golden record with a fresh Merkle root each (a new `pcs_id`), signed with the
//! tenant's key. The mix exercises every answer a person should see: accepted (200), escalated
//! (202), duplicate replays (200 + `Idempotent-Replayed`), conflicts (409) and bad signatures (401).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use events::{derive_pcs_id, sign_hmac};
use serde_json::{Value, json};

const GOLDEN: &str = include_str!("../../tests/vectors/golden/pcs_tiny_case_1.json");

/// `flk load` options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Tenant (`X-Tenant-Id`).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// HMAC secret of the tenant.
    #[arg(long, default_value = "testsecret")]
    pub key: String,
    /// Records to send.
    #[arg(long, default_value_t = 200)]
    pub count: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// First seed (records are unique per seed, so reruns with the same seed replay).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A W3C `traceparent` sent with every request, so the records' spans join that trace (with
    /// `--count 1`, the one trace to look up in Jaeger by its id).
    #[arg(long)]
    pub traceparent: Option<String>,
}

/// What kind of record the `index`-th submission is.
fn kind(index: u64) -> &'static str {
    match index % 10 {
        5 => "escalated",
        6 => "duplicate",
        7 => "conflict",
        8 => "bad-signature",
        _ => "valid",
    }
}

fn record(seed: u64, key: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut record: Value = serde_json::from_str(GOLDEN).unwrap_or(Value::Null);
    let merkle_root = format!("{seed:064x}");
    record["pcs_id"] = json!(derive_pcs_id(&merkle_root, 1, "test-shard-001"));
    record["merkle_root"] = json!(merkle_root);
    edit(&mut record);
    let bytes = serde_json::to_vec(&record).unwrap_or_default();
    if let Ok(pcs) = events::Pcs::from_json_bytes(&bytes) {
        record["sig"] = json!(sign_hmac(
            key.as_bytes(),
            &pcs.signed_fields().canonical_payload()
        ));
    }
    record
}

/// The submissions for one index (a duplicate or conflict sends its original first).
fn submissions(args: &LoadArgs, index: u64) -> Vec<Value> {
    let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(index);
    match kind(index) {
        "escalated" => vec![record(seed, &args.key, |r| r["regime"] = json!("sticky"))],
        "duplicate" => {
            let original = record(seed, &args.key, |_| {});
            vec![original.clone(), original]
        }
        "conflict" => vec![
            record(seed, &args.key, |_| {}),
            record(seed, &args.key, |r| r["budget"] = json!(0.3178)),
        ],
        "bad-signature" => {
            let mut forged = record(seed, &args.key, |_| {});
            forged["sig"] = json!("AAAA");
            vec![forged]
        }
        _ => vec![record(seed, &args.key, |_| {})],
    }
}

/// Runs the load and prints a summary; returns the exit code (1 when any request failed).
pub fn run(args: LoadArgs) -> anyhow::Result<u8> {
    if let Some(text) = &args.traceparent {
        if infra::tracing_context::TraceParent::parse(text).is_none() {
            anyhow::bail!(
                "--traceparent {text:?} is not a W3C traceparent: expected \
                 00-<32 lowercase hex digits>-<16 lowercase hex digits>-<2 hex digits>, \
                 ids not all zero"
            );
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(load(args))
}

async fn load(args: LoadArgs) -> anyhow::Result<u8> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, args, next) = (client.clone(), args.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut sample: Vec<String> = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= args.count {
                    return (counts, sample);
                }
                for body in submissions(&args, index) {
                    let mut request = client
                        .post(format!("{}/v1/pcs/submit", args.url))
                        .header("X-Tenant-Id", &args.tenant)
                        .json(&body);
                    if let Some(traceparent) = &args.traceparent {
                        request = request.header("traceparent", traceparent);
                    }
                    let sent = request.send().await;
                    let label = match sent {
                        Ok(response) => {
                            let replayed = response.headers().contains_key("Idempotent-Replayed");
                            let status = response.status().as_u16();
                            if status == 200 && !replayed && sample.len() < 3 {
                                sample.push(body["pcs_id"].as_str().unwrap_or_default().to_owned());
                            }
                            if replayed {
                                format!("{status} replayed")
                            } else {
                                status.to_string()
                            }
                        }
                        Err(error) if error.is_timeout() => "timeout".to_owned(),
                        Err(_) => "connection error".to_owned(),
                    };
                    *counts.entry(label).or_default() += 1;
                }
            }
        }));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut sample = Vec::new();
    for task in tasks {
        let (part, part_sample) = task.await?;
        for (label, count) in part {
            *counts.entry(label).or_default() += count;
        }
        sample.extend(part_sample);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = counts.values().sum();
    println!(
        "sent {total} requests for {} records in {elapsed:.2} s ({:.0} req/s)",
        args.count,
        total as f64 / elapsed.max(1e-9)
    );
    println!("{:<20} {:>8}", "answer", "count");
    for (label, count) in &counts {
        println!("{label:<20} {count:>8}");
    }
    for pcs_id in sample.iter().take(3) {
        let response = client
            .get(format!("{}/v1/pcs/{pcs_id}", args.url))
            .header("X-Tenant-Id", &args.tenant)
            .send()
            .await?;
        println!("lookup {pcs_id}: {}", response.text().await?);
    }
    let failed = counts
        .iter()
        .filter(|(label, _)| {
            !["200", "200 replayed", "202", "202 replayed", "401", "409"].contains(&label.as_str())
        })
        .count();
    Ok(u8::from(failed > 0))
}
