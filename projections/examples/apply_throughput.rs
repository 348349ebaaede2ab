//! Measures `apply_batch` throughput: batches of 1,000 decision events (new firsts, duplicates,
//! conflicts and rejections) into a fresh schema, dropped at the end.
//!
//! ```text
//! source .local/stack/env.sh
//! cargo run --release -p projections --example apply_throughput -- [batches] [batch size]
//! ```
//!
//! It measures; it gates nothing.

use std::time::Instant;

use events::{DecisionEvent, Outcome, SourceCoordinates, SubmissionSource, Verdict};
use projections::ProjectionStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn event(offset: i64) -> DecisionEvent {
    // Every 10th record repeats an earlier pcs_id (half duplicates, half conflicts); every 20th
    // is a rejection.
    let (pcs_index, digest) = if offset % 10 == 9 {
        (offset - 5, if offset % 20 == 9 { 1 } else { 2 })
    } else {
        (offset, 1)
    };
    let verdict = if offset % 20 == 13 {
        Verdict::SignatureRejected {
            reason: "signature mismatch".into(),
        }
    } else {
        Verdict::Verified {
            outcome: Outcome {
                accepted: true,
                escalated: offset % 3 == 0,
                recomputed_d_hat_opt: Some(0.528_320_834),
                recomputed_budget_opt: Some(0.317_807_017),
                reason_opt: None,
            },
        }
    };
    DecisionEvent {
        source: SourceCoordinates {
            topic: "bench.flk.submissions".into(),
            partition: 0,
            offset,
        },
        submission_source: SubmissionSource::Gateway,
        tenant: format!("tenant-{}", offset % 4),
        pcs_id_opt: Some(format!("{pcs_index:064x}")),
        signed_digest_opt: Some([digest; 32]),
        verdict,
        params_version: 1,
        key_id_opt: Some("k1".into()),
        region: "local".into(),
        received_at_ms: 1_700_000_000_000 + offset,
        decided_at_ms: 1_700_000_000_003 + offset,
        traceparent_opt: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("FLK_POSTGRES_URL").map_err(|_| {
        "FLK_POSTGRES_URL is not set: run `infra/scripts/stack.sh up postgres` and source .local/stack/env.sh"
    })?;
    let mut args = std::env::args().skip(1);
    let batches: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let batch_size: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let schema = format!("flk_bench_{}", std::process::id());
    let store = ProjectionStore::connect(&url, &schema).await?;
    let result = run(&store, batches, batch_size).await;
    ProjectionStore::drop_schema(&url, &schema).await?;
    result
}

async fn run(store: &ProjectionStore, batches: i64, batch_size: i64) -> Result<(), BoxError> {
    let claim = store
        .claim_partition("bench", "bench.flk.decisions", 0)
        .await?;
    let all: Vec<(i64, DecisionEvent)> = (0..batches * batch_size).map(|o| (o, event(o))).collect();
    let mut timings = Vec::new();
    let started = Instant::now();
    for batch in all.chunks(batch_size as usize) {
        let batch_started = Instant::now();
        let applied = store
            .apply_batch("bench", "bench.flk.decisions", 0, claim.owner_epoch, batch)
            .await?;
        timings.push(batch_started.elapsed());
        debug_assert_eq!(applied.len(), batch.len());
    }
    let total = started.elapsed();
    timings.sort();
    let rows = all.len() as f64;
    println!(
        "{} batches x {} events: {:.0} rows/s overall; per batch p50 {:?}, p90 {:?}, max {:?}",
        batches,
        batch_size,
        rows / total.as_secs_f64(),
        timings[timings.len() / 2],
        timings[timings.len() * 9 / 10],
        timings[timings.len() - 1],
    );
    let replay_started = Instant::now();
    store
        .apply_batch("bench", "bench.flk.decisions", 0, claim.owner_epoch, &all)
        .await?;
    println!(
        "replaying all {} events (a no-op): {:?}",
        all.len(),
        replay_started.elapsed()
    );
    let hash_started = Instant::now();
    let hash = store.state_hash().await?;
    println!(
        "state_hash over {} rows: {:?} ({hash})",
        all.len(),
        hash_started.elapsed()
    );
    let verify_started = Instant::now();
    let report = store.verify_audit_chain(0).await?;
    println!(
        "verify_audit_chain: {} entries intact={} in {:?}",
        report.entries,
        report.is_intact(),
        verify_started.elapsed()
    );
    Ok(())
}
