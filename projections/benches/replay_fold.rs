//! The replay's in-memory fold ([`projections::ReplayFold`]) in decisions per second: the CPU a
//! `flk replay` spends per decision before COPY, without Kafka or Postgres.
//!
//! ```text
//! cargo bench -p projections --bench replay_fold
//! ```
//!
//! Each run folds a fresh stream of 20,000 decisions over 12 partitions, like `flk bench`'s load:
//! 64-hex `pcs_id`s over three tenants, every 20th a duplicate of a recent record, every 7th
//! escalated. It measures; it gates nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a benchmark on generated data: failing loudly is the useful behaviour"
)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use events::{DecisionEvent, Outcome, SourceCoordinates, SubmissionSource, Verdict};
use projections::{AuditChains, ReplayFold, TenantTtl};

const DECISIONS: i64 = 20_000;
const PARTITIONS: i64 = 12;

fn event(index: i64) -> (i32, i64, DecisionEvent) {
    // Every 20th repeats the record of 10 decisions before (same key, same digest).
    let key = if index % 20 == 19 { index - 10 } else { index };
    let escalated = index % 7 == 0;
    let event = DecisionEvent {
        source: SourceCoordinates {
            topic: "bench.flk.submissions".into(),
            partition: (index % PARTITIONS) as i32,
            offset: index / PARTITIONS,
        },
        submission_source: SubmissionSource::Kafka,
        tenant: ["alpha", "beta", "gamma"][(key % 3) as usize].into(),
        pcs_id_opt: Some(format!(
            "{:064x}",
            (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
        signed_digest_opt: Some([(key % 251) as u8; 32]),
        verdict: Verdict::Verified {
            outcome: Outcome {
                accepted: true,
                escalated,
                recomputed_d_hat_opt: Some(0.528_320_834),
                recomputed_budget_opt: Some(0.317_807_017),
                reason_opt: escalated.then(|| "agent reported degraded mode".into()),
            },
        },
        params_version: 1,
        key_id_opt: Some("alpha-1".into()),
        region: "local".into(),
        received_at_ms: 1_767_225_600_000 + index,
        decided_at_ms: 1_767_225_600_003 + index,
        traceparent_opt: None,
    };
    // The topic key puts a key in one partition.
    ((key % PARTITIONS) as i32, index, event)
}

fn fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_fold");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(DECISIONS as u64));
    group.bench_function("decisions", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let events: Vec<_> = (0..DECISIONS).map(event).collect();
                let mut fold = ReplayFold::new(TenantTtl::default());
                let mut chains = AuditChains::default();
                let started = Instant::now();
                for (partition, offset, event) in events {
                    let mut folded = fold.fold(partition, offset, event).unwrap();
                    // Sealing runs on the COPY's thread in `flk replay`; measured with the fold.
                    if let Some(entry) = folded.audit_entry_opt.as_mut() {
                        chains.seal(entry);
                    }
                    std::hint::black_box(folded);
                }
                elapsed += started.elapsed();
                assert_eq!(fold.audit_entry_count(), DECISIONS as u64);
            }
            elapsed
        })
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    fold(&mut criterion);
    criterion.final_summary();
}
