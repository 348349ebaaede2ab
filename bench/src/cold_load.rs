//! `flk bench --target cold-reads`: how fast `GET /v1/pcs/{pcs_id}` answers for entries in the
//! cold tier. Samples keys of sealed segments from Postgres (a few per segment, none with a warm
//! row), then reads each key once through the gateway: the first key of a segment makes the
//! gateway fetch and verify the object (`object` latency), the others of that segment are served
//! from its cache of verified segments (`cache` latency). Each key is read once because a read
//! promotes it to warm. An answer whose `tier` is not `cold` is counted, not timed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use projections::ProjectionStore;

use super::report::{LatencySummary, histogram, record};

/// What the run measured.
#[derive(Debug)]
pub struct ColdRun {
    /// Segments read.
    pub segments: usize,
    /// Reads answered from the cold tier.
    pub reads: u64,
    /// Answers that were not a cold-tier 200/202 (errors, or another tier).
    pub other: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// First read of each segment (object fetched and verified).
    pub object: LatencySummary,
    /// Later reads of a segment (its verified copy cached).
    pub cache: LatencySummary,
}

/// Reads up to `segments` segments' keys (`per_segment` each) through `base`, from `connections`
/// workers (one segment at a time each).
pub async fn run(
    base: &str,
    store: &ProjectionStore,
    connections: usize,
    segments: i64,
    per_segment: i64,
) -> anyhow::Result<ColdRun> {
    let sample = store
        .sample_cold_keys(segments, per_segment)
        .await
        .context("sampling cold keys")?;
    if sample.is_empty() {
        bail!("no cold keys without a warm row: demote first (flk tier demote --now)");
    }
    let segment_count = sample.len();
    let queue = Arc::new(Mutex::new(sample));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections.max(1) {
        let (queue, base) = (queue.clone(), base.to_owned());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut object: Histogram<u64> = histogram();
            let mut cache: Histogram<u64> = histogram();
            let (mut reads, mut other) = (0u64, 0u64);
            loop {
                let next = queue.lock().ok().and_then(|mut queue| queue.pop());
                let Some((_segment, keys)) = next else { break };
                for (position, (tenant, pcs_id)) in keys.iter().enumerate() {
                    let sent = Instant::now();
                    let answer = client
                        .get(format!("{base}/v1/pcs/{pcs_id}"))
                        .header("X-Tenant-Id", tenant)
                        .send()
                        .await;
                    let Ok(answer) = answer else {
                        other += 1;
                        continue;
                    };
                    let status = answer.status().as_u16();
                    let body: serde_json::Value = answer.json().await.unwrap_or_default();
                    let took = sent.elapsed();
                    if !(status == 200 || status == 202) || body["tier"] != "cold" {
                        other += 1;
                        continue;
                    }
                    reads += 1;
                    record(
                        if position == 0 {
                            &mut object
                        } else {
                            &mut cache
                        },
                        took,
                    );
                }
            }
            anyhow::Ok((object, cache, reads, other))
        }));
    }
    let (mut object, mut cache): (Histogram<u64>, Histogram<u64>) = (histogram(), histogram());
    let (mut reads, mut other) = (0, 0);
    for worker in workers {
        let (o, c, r, x) = worker.await??;
        object.add(&o)?;
        cache.add(&c)?;
        reads += r;
        other += x;
    }
    Ok(ColdRun {
        segments: segment_count,
        reads,
        other,
        elapsed: started.elapsed(),
        object: LatencySummary::of(&object),
        cache: LatencySummary::of(&cache),
    })
}
