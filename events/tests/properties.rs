//! Property tests of the contract: canonical form is stable, rounding is idempotent, a signature
//! survives any change to unsigned fields and breaks on any change to a signed one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

use events::decimal::{python_repr, round9};
use events::{Pcs, SignedFields, VerifyingSecret, derive_pcs_id, sign_hmac};
use proptest::prelude::*;
use serde_json::{Value, json};

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        -10.0f64..10.0,
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 1e9 + 5e-10 * n.signum() as f64),
    ]
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,20}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\u{7f}'),
                Just('😀'),
                Just('\n'),
                any::<char>()
            ],
            0..8
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

prop_compose! {
    fn any_fields()(
        merkle_root in any_text(),
        epoch in 0i64..=(1i64 << 53),
        shard_id in any_text(),
        numbers in proptest::array::uniform4(any_float()),
    ) -> SignedFields {
        SignedFields {
            pcs_id: derive_pcs_id(&merkle_root, epoch, &shard_id),
            merkle_root,
            epoch,
            shard_id,
            d_hat: numbers[0],
            coh_star: numbers[1],
            r: numbers[2],
            budget: numbers[3],
        }
    }
}

fn to_json(fields: &SignedFields) -> Value {
    json!({
        "pcs_id": fields.pcs_id, "merkle_root": fields.merkle_root, "epoch": fields.epoch,
        "shard_id": fields.shard_id, "D_hat": fields.d_hat, "coh_star": fields.coh_star,
        "r": fields.r, "budget": fields.budget,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_numbers_parse_to_the_same_double(value in any_float()) {
        // Guards the `float_roundtrip` feature: without it serde_json misreads some doubles and
        // signatures made in other languages stop verifying.
        let parsed: f64 = serde_json::from_str(&python_repr(value)).unwrap();
        prop_assert_eq!(parsed.to_bits(), value.to_bits());
    }

    #[test]
    fn canonical_form_is_stable_through_json(fields in any_fields()) {
        let payload = fields.canonical_payload();
        let reparsed = SignedFields::from_json_bytes(to_json(&fields).to_string().as_bytes()).unwrap();
        prop_assert_eq!(&reparsed.canonical_payload(), &payload);
        // The payload is itself JSON whose values re-canonicalize to the same bytes.
        let again = SignedFields::from_json_bytes(&payload).unwrap();
        prop_assert_eq!(again.canonical_payload(), payload.clone());
        prop_assert!(payload.iter().all(|byte| (0x20..0x7f).contains(byte)));
    }

    #[test]
    fn rounding_is_idempotent(value in any_float()) {
        let once = round9(value);
        prop_assert_eq!(round9(once).to_bits(), once.to_bits());
    }

    #[test]
    fn unsigned_changes_keep_the_signature_and_signed_changes_break_it(
        fields in any_fields(),
        attempt in any::<i64>(),
        regime in "[a-z_]{1,10}",
        seed in any::<i64>(),
        field_index in 0usize..8,
        secret in any::<String>(),
    ) {
        let sig = sign_hmac(secret.as_bytes(), &fields.canonical_payload());
        let key = VerifyingSecret::Hmac(secret.clone().into_bytes());
        let mut body = to_json(&fields);
        body["sig"] = json!(sig);
        body["attempt"] = json!(attempt);
        body["regime"] = json!(regime);
        body["seed"] = json!(seed);
        body["scales"] = json!([2, 4]);
        body["N_j"] = json!({"2": 1, "4": 2});
        body["ft"] = json!({"degraded": true});
        let pcs = Pcs::from_json_bytes(body.to_string().as_bytes()).unwrap();
        prop_assert!(key.verify(&pcs.signed_fields().canonical_payload(), &sig, false).is_ok());

        let mut changed = fields.clone();
        match field_index {
            0 => changed.pcs_id.push('x'),
            1 => changed.merkle_root.push('x'),
            2 => changed.epoch += 1,
            3 => changed.shard_id.push('x'),
            4 => changed.d_hat = round9(changed.d_hat) + 1.0,
            5 => changed.coh_star = round9(changed.coh_star) + 1.0,
            6 => changed.r = round9(changed.r) + 1.0,
            _ => changed.budget = round9(changed.budget) + 1.0,
        }
        // Adding 1.0 to a huge number may not change it; only assert when the payload changed.
        if changed.canonical_payload() != fields.canonical_payload() {
            prop_assert!(key.verify(&changed.canonical_payload(), &sig, false).is_err());
        }
    }
}
