//! Micro-benchmarks of the pure core, per record: decoding, the canonical payload and its HMAC,
//! Ed25519 verification, the verification function, the whole decision, and the decision envelope.
//!
//! ```text
//! cargo bench -p events --bench core
//! ```
//!
//! Sample sizes are small so the whole file runs in about a minute on two cores. It measures; it
//! gates nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark over constant inputs: a failure is a broken fixture, not an input error"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use events::{
    DecisionEvent, Ed25519Signer, Outcome, Pcs, SourceCoordinates, SubmissionSource, TenantKey,
    TenantPolicy, Verdict, VerifyParams, VerifyingSecret, decide, sign_hmac, verify,
};

const GOLDEN: &[u8] = include_bytes!("../../tests/vectors/golden/pcs_tiny_case_1.json");
const SECRET: &[u8] = b"testsecret";

fn pcs() -> Pcs {
    Pcs::from_json_bytes(GOLDEN).unwrap()
}

fn event() -> DecisionEvent {
    DecisionEvent {
        source: SourceCoordinates {
            topic: "bench.flk.submissions".into(),
            partition: 7,
            offset: 1_234_567,
        },
        submission_source: SubmissionSource::Gateway,
        tenant: "acme".into(),
        pcs_id_opt: Some(pcs().pcs_id),
        signed_digest_opt: Some(pcs().signed_fields().signed_digest()),
        verdict: Verdict::Verified {
            outcome: Outcome {
                accepted: true,
                escalated: false,
                recomputed_d_hat_opt: Some(0.528_320_834),
                recomputed_budget_opt: Some(0.317_807_017),
                reason_opt: None,
            },
        },
        params_version: 1,
        key_id_opt: Some("acme-2026".into()),
        region: "local".into(),
        received_at_ms: 1_767_225_600_000,
        decided_at_ms: 1_767_225_600_004,
        traceparent_opt: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

fn signing(c: &mut Criterion) {
    let pcs = pcs();
    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_pcs_json", |b| {
        b.iter(|| Pcs::from_json_bytes(black_box(GOLDEN)).unwrap())
    });
    group.bench_function("canonical_payload", |b| {
        b.iter(|| black_box(&pcs).signed_fields().canonical_payload())
    });
    group.bench_function("canonical_payload_and_hmac_sign", |b| {
        b.iter(|| sign_hmac(SECRET, &black_box(&pcs).signed_fields().canonical_payload()))
    });
    let payload = pcs.signed_fields().canonical_payload();
    let hmac_secret = VerifyingSecret::Hmac(SECRET.to_vec());
    let hmac_sig = sign_hmac(SECRET, &payload);
    group.bench_function("hmac_verify", |b| {
        b.iter(|| {
            hmac_secret
                .verify(black_box(&payload), &hmac_sig, false)
                .unwrap()
        })
    });
    let signer = Ed25519Signer::from_seed(&[7; 32]);
    let ed_sig = signer.sign(&payload);
    let ed_key = signer.verifying_secret();
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| ed_key.verify(black_box(&payload), &ed_sig, false).unwrap())
    });
    group.finish();
}

fn verification(c: &mut Criterion) {
    let pcs = pcs();
    let params = VerifyParams::default();
    let policy = TenantPolicy {
        enabled: true,
        keys: vec![TenantKey {
            id: "k".into(),
            secret: VerifyingSecret::Hmac(SECRET.to_vec()),
        }],
        accept_legacy_prehash: false,
        params,
        params_version: 1,
    };
    let mut group = c.benchmark_group("verification");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter(|| verify(black_box(&pcs), black_box(&params)))
    });
    // What a shard does per record: decode, canonical payload, HMAC check, verify.
    group.bench_function("decide_hmac", |b| {
        b.iter(|| decide(black_box(GOLDEN), "acme", Some(&policy)))
    });
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let event = event();
    let bytes = event.encode().unwrap();
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| black_box(&event).encode().unwrap()));
    group.bench_function("decode", |b| {
        b.iter(|| DecisionEvent::decode(black_box(&bytes)).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = signing, verification, envelope
}
criterion_main!(benches);
