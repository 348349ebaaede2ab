//! Projector throughput: `ProjectionStore::apply_batch` (dedup + hash-chained audit + offsets +
//! NOTIFY in one Postgres transaction) in rows per second, for several batch sizes (the projector's
//! `[projector] max_batch`), into a fresh schema that is dropped at the end.
//!
//! ```text
//! infra/scripts/stack.sh up postgres && . .local/stack/env.sh
//! cargo bench -p projections --bench apply
//! ```
//!
//! Needs `FLK_POSTGRES_URL`; without it the benchmark prints why and does nothing. Each batch holds
//! new records (first writes) with every 10th repeating an earlier `pcs_id` (half duplicates, half
//! conflicts) and every 20th a signature rejection (audit entry only), across four tenants. It
//! measures; it gates nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a benchmark against a scratch schema: failing loudly is the useful behaviour"
)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use events::{DecisionEvent, Outcome, SourceCoordinates, SubmissionSource, Verdict};
use projections::ProjectionStore;

const CONSUMER: &str = "bench";
const TOPIC: &str = "bench.flk.decisions";

fn event(offset: i64) -> DecisionEvent {
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
                escalated: offset % 7 == 0,
                recomputed_d_hat_opt: Some(0.528_320_834),
                recomputed_budget_opt: Some(0.317_807_017),
                reason_opt: (offset % 7 == 0).then(|| "agent reported degraded mode".into()),
            },
        }
    };
    DecisionEvent {
        source: SourceCoordinates {
            topic: "bench.flk.submissions".into(),
            partition: 0,
            offset,
        },
        submission_source: SubmissionSource::Kafka,
        tenant: format!("tenant-{}", offset % 4),
        pcs_id_opt: Some(format!("{pcs_index:064x}")),
        signed_digest_opt: Some([digest; 32]),
        verdict,
        params_version: 1,
        key_id_opt: Some("k1".into()),
        region: "local".into(),
        received_at_ms: 1_767_225_600_000 + offset,
        decided_at_ms: 1_767_225_600_003 + offset,
        traceparent_opt: None,
    }
}

fn apply_batch(c: &mut Criterion, url: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let schema = format!("flk_bench_apply_{}", std::process::id());
    let store = runtime
        .block_on(ProjectionStore::connect(url, &schema))
        .unwrap();
    let claim = runtime
        .block_on(store.claim_partition(CONSUMER, TOPIC, 0))
        .unwrap();
    // Offsets only grow, so every measured batch is new work (nothing is skipped as replayed).
    let next_offset = AtomicI64::new(0);
    let mut group = c.benchmark_group("projector_apply_batch");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for batch_size in [100i64, 500, 2_000] {
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_size),
            &batch_size,
            |b, &batch_size| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let first = next_offset.fetch_add(batch_size, Ordering::Relaxed);
                        let batch: Vec<(i64, DecisionEvent)> = (first..first + batch_size)
                            .map(|offset| (offset, event(offset)))
                            .collect();
                        let started = Instant::now();
                        let applied = runtime
                            .block_on(store.apply_batch(
                                CONSUMER,
                                TOPIC,
                                0,
                                claim.owner_epoch,
                                &batch,
                            ))
                            .unwrap();
                        elapsed += started.elapsed();
                        assert_eq!(applied.len(), batch.len());
                    }
                    elapsed
                })
            },
        );
    }
    group.finish();
    drop(store);
    runtime
        .block_on(ProjectionStore::drop_schema(url, &schema))
        .unwrap();
}

fn main() {
    let Ok(url) = std::env::var("FLK_POSTGRES_URL") else {
        eprintln!(
            "projector apply bench skipped: FLK_POSTGRES_URL is not set \
             (infra/scripts/stack.sh up postgres, then . .local/stack/env.sh)"
        );
        return;
    };
    let mut criterion = Criterion::default().configure_from_args();
    apply_batch(&mut criterion, &url);
    criterion.final_summary();
}
