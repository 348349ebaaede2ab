//! `flk bench --target proofs`: how fast the gateway serves audit proofs. Samples leaves of the
//! newest checkpoint (finding each one's tenant through `GET /v1/audit/entries/{i}`, since proofs
//! are tenant-scoped), then requests `GET /v1/audit/proof?leaf_index=i` in a closed loop from
//! `connections` workers for `duration`, and checks a share of the answers with the offline
//! verifier's inclusion check (so a fast wrong answer cannot pass for a fast one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use events::audit_proof::{ProofBundle, decode_hashes};
use events::checkpoint::Checkpoint;
use events::merkle;
use hdrhistogram::Histogram;

use super::report::{LatencySummary, histogram, record};

/// Leaves sampled.
const SAMPLE: usize = 500;

/// What the run measured.
#[derive(Debug)]
pub struct ProofRun {
    /// Tree size proved against.
    pub tree_size: u64,
    /// Proofs answered 200.
    pub proofs: u64,
    /// Other answers.
    pub errors: u64,
    /// Answers checked with the inclusion verifier.
    pub verified: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency per proof request.
    pub latency: LatencySummary,
}

/// Runs the proof load against `base` with `tenants` (the config's).
pub async fn run(
    base: &str,
    tenants: &[String],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<ProofRun> {
    let client = reqwest::Client::new();
    let latest: serde_json::Value = client
        .get(format!("{base}/v1/audit/checkpoint"))
        .send()
        .await
        .context("asking for the newest checkpoint")?
        .json()
        .await?;
    let note = latest["checkpoint"].as_str().context(
        "no checkpoint yet: run flk serve with an audit signing key and send records first",
    )?;
    let body = &note[..note.find("\n\n").map_or(note.len(), |at| at + 1)];
    let checkpoint = Checkpoint::parse(body).map_err(|error| anyhow::anyhow!("{error}"))?;
    let mut sample: Vec<(u64, String)> = Vec::with_capacity(SAMPLE);
    for _ in 0..SAMPLE * 4 {
        if sample.len() >= SAMPLE {
            break;
        }
        let index = rand::random::<u64>() % checkpoint.size;
        for tenant in tenants {
            let answer = client
                .get(format!("{base}/v1/audit/entries/{index}"))
                .header("X-Tenant-Id", tenant)
                .send()
                .await?;
            if answer.status().is_success() {
                sample.push((index, tenant.clone()));
                break;
            }
        }
    }
    if sample.is_empty() {
        bail!("no sampled leaf belongs to a configured tenant");
    }
    let sample = Arc::new(sample);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections.max(1) {
        let (sample, next, base) = (sample.clone(), next.clone(), base.to_owned());
        let root = checkpoint.root;
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies: Histogram<u64> = histogram();
            let (mut proofs, mut errors, mut verified) = (0u64, 0u64, 0u64);
            while started.elapsed() < duration {
                let turn = next.fetch_add(1, Ordering::Relaxed);
                let (index, tenant) = &sample[turn % sample.len()];
                let sent = Instant::now();
                let answer = client
                    .get(format!(
                        "{base}/v1/audit/proof?leaf_index={index}&tree_size={}",
                        checkpoint.size
                    ))
                    .header("X-Tenant-Id", tenant)
                    .send()
                    .await;
                let Ok(answer) = answer else {
                    errors += 1;
                    continue;
                };
                if !answer.status().is_success() {
                    errors += 1;
                    continue;
                }
                let bytes = answer.bytes().await?;
                record(&mut latencies, sent.elapsed());
                proofs += 1;
                if turn % 10 == 0 {
                    let bundle: ProofBundle = serde_json::from_slice(&bytes)?;
                    let entry = BASE64.decode(&bundle.entry)?;
                    let proof = decode_hashes(&bundle.inclusion).map_err(anyhow::Error::msg)?;
                    merkle::verify_inclusion(
                        &merkle::leaf_hash(&entry),
                        bundle.leaf_index,
                        bundle.tree_size,
                        &proof,
                        &root,
                    )
                    .map_err(|error| anyhow::anyhow!("leaf {index}: {error}"))?;
                    verified += 1;
                }
            }
            anyhow::Ok((latencies, proofs, errors, verified))
        }));
    }
    let mut all: Histogram<u64> = histogram();
    let (mut proofs, mut errors, mut verified) = (0, 0, 0);
    for worker in workers {
        let (latencies, p, e, v) = worker.await??;
        all.add(&latencies)?;
        proofs += p;
        errors += e;
        verified += v;
    }
    Ok(ProofRun {
        tree_size: checkpoint.size,
        proofs,
        errors,
        verified,
        elapsed: started.elapsed(),
        latency: LatencySummary::of(&all),
    })
}
