//! Runs every case of the shared vector file (`tests/vectors/pcs-vectors.json`), the same file every
//! SDK runs, and pins its SHA-256 so an edit is always deliberate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

use std::path::PathBuf;

use events::decimal::{python_repr, round9};
use events::{
    Ed25519Signer, OutcomeClass, Pcs, SignedFields, VerifyParams, VerifyingSecret, derive_pcs_id,
    sign_hmac, sign_hmac_prehash, verify,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Pinned digest of the vector file. Changing the file means changing this line in the same commit
/// (and `pcs-vectors.json.sha256`, which the SDK suites read).
const PINNED_SHA256: &str = "9228b8146ea0e2a5eca2d09994a2463005d8d82db9a2e345b3c495d121cb906a";

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

fn load() -> Value {
    let text = std::fs::read(vectors_dir().join("pcs-vectors.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn cases(section: &str) -> Vec<Value> {
    load()[section].as_array().unwrap().clone()
}

#[test]
fn file_matches_pinned_digest() {
    let bytes = std::fs::read(vectors_dir().join("pcs-vectors.json")).unwrap();
    let digest = hex::encode(Sha256::digest(&bytes));
    assert_eq!(digest, PINNED_SHA256, "pcs-vectors.json changed");
    let sums = std::fs::read_to_string(vectors_dir().join("pcs-vectors.json.sha256")).unwrap();
    assert_eq!(sums, format!("{PINNED_SHA256}  pcs-vectors.json\n"));
}

#[test]
fn file_has_the_promised_coverage() {
    assert!(cases("signing").len() >= 40);
    assert!(cases("verification").len() >= 30);
}

#[test]
fn signing_cases() {
    for case in cases("signing") {
        let name = case["name"].as_str().unwrap();
        let fields = SignedFields::from_json_bytes(case["fields"].to_string().as_bytes()).unwrap();
        let payload = fields.canonical_payload();
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            case["payload"],
            "{name}: payload"
        );
        let key = case["hmac_key"].as_str().unwrap().as_bytes();
        assert_eq!(sign_hmac(key, &payload), case["hmac"], "{name}: hmac");
        assert_eq!(
            sign_hmac_prehash(key, &payload),
            case["hmac_prehash"],
            "{name}: prehash"
        );
        let signer =
            Ed25519Signer::from_seed_base64(case["ed25519_seed"].as_str().unwrap()).unwrap();
        assert_eq!(
            signer.public_key_base64(),
            case["ed25519_public"],
            "{name}: public"
        );
        assert_eq!(signer.sign(&payload), case["ed25519"], "{name}: ed25519");
        let public =
            VerifyingSecret::ed25519_from_base64(case["ed25519_public"].as_str().unwrap()).unwrap();
        assert!(
            public
                .verify(&payload, case["ed25519"].as_str().unwrap(), false)
                .is_ok()
        );
        let hmac = VerifyingSecret::Hmac(key.to_vec());
        assert!(
            hmac.verify(&payload, case["hmac"].as_str().unwrap(), false)
                .is_ok()
        );
        assert!(
            hmac.verify(&payload, case["hmac_prehash"].as_str().unwrap(), false)
                .is_err()
        );
        assert!(
            hmac.verify(&payload, case["hmac_prehash"].as_str().unwrap(), true)
                .is_ok()
        );
    }
}

#[test]
fn rounding_cases() {
    for case in cases("rounding") {
        let input = case["input"].as_f64().unwrap();
        assert_eq!(python_repr(round9(input)), case["output_repr"], "{input:e}");
    }
}

#[test]
fn pcs_id_cases() {
    for case in cases("pcs_id") {
        assert_eq!(
            derive_pcs_id(
                case["merkle_root"].as_str().unwrap(),
                case["epoch"].as_i64().unwrap(),
                case["shard_id"].as_str().unwrap()
            ),
            case["pcs_id"]
        );
    }
}

#[test]
fn verification_cases() {
    for case in cases("verification") {
        let name = case["name"].as_str().unwrap();
        let params: VerifyParams = serde_json::from_value(case["params"].clone()).unwrap();
        let pcs = Pcs::from_json_bytes(case["pcs"].to_string().as_bytes()).unwrap();
        let outcome = verify(&pcs, &params);
        assert_eq!(outcome.to_json(), case["expected"], "{name}");
        // The vectors carry the contract's status (data for SDKs); the core only classifies.
        // The gateway's mapping is checked against the same field in gateway/src/http/status.rs.
        let expected_class_is_accepted = match case["status"].as_u64() {
            Some(200) => true,
            Some(202) => false,
            other => panic!("{name}: verification status {other:?}"),
        };
        assert_eq!(
            outcome.class() == OutcomeClass::Accepted,
            expected_class_is_accepted,
            "{name}"
        );
    }
}

#[test]
fn malformed_cases() {
    for case in cases("malformed") {
        let name = case["name"].as_str().unwrap();
        let error =
            Pcs::from_json_bytes(case["body"].as_str().unwrap().as_bytes()).expect_err(name);
        assert_eq!(error.key(), case["key"].as_str(), "{name}");
    }
}

#[test]
fn golden_records_verify_with_their_signatures() {
    for file in ["pcs_tiny_case_1.json", "pcs_tiny_case_2.json"] {
        let body = std::fs::read(vectors_dir().join("golden").join(file)).unwrap();
        let pcs = Pcs::from_json_bytes(&body).unwrap();
        let payload = pcs.signed_fields().canonical_payload();
        let key = VerifyingSecret::Hmac(b"testsecret".to_vec());
        assert!(
            key.verify(&payload, pcs.sig_opt.as_deref().unwrap(), false)
                .is_ok(),
            "{file}"
        );
        assert_eq!(
            verify(&pcs, &VerifyParams::default()).class(),
            OutcomeClass::Accepted,
            "{file}"
        );
    }
}
