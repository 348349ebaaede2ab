//! Signed PCS records for tests: the golden record with a fresh Merkle root each time (so each is a
//! new `pcs_id`), re-signed with the tenant's key.

use events::{derive_pcs_id, sign_hmac};
use serde_json::{Value, json};

const GOLDEN_1: &str = include_str!("../../tests/vectors/golden/pcs_tiny_case_1.json");

/// The first golden record, as shipped (signed with `testsecret`).
pub fn golden() -> Value {
    serde_json::from_str(GOLDEN_1).unwrap_or(Value::Null)
}

/// A new valid record (HTTP 200 when verified), unique by `seed`, signed with `secret`.
pub fn signed_record(seed: u64, secret: &str) -> Value {
    let mut record = golden();
    let merkle_root = format!("{seed:064x}");
    let pcs_id = derive_pcs_id(&merkle_root, 1, "test-shard-001");
    record["merkle_root"] = json!(merkle_root);
    record["pcs_id"] = json!(pcs_id);
    resign(&mut record, secret);
    record
}

/// Recomputes `sig` after an edit.
pub fn resign(record: &mut Value, secret: &str) {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    if let Ok(pcs) = events::Pcs::from_json_bytes(&bytes) {
        record["sig"] = json!(sign_hmac(
            secret.as_bytes(),
            &pcs.signed_fields().canonical_payload()
        ));
    }
}

/// The record's `pcs_id`.
pub fn pcs_id(record: &Value) -> String {
    record["pcs_id"].as_str().unwrap_or_default().to_owned()
}

/// The record with `json!(...)` edits applied and re-signed.
pub fn edited(record: &Value, edits: Value, secret: &str) -> Value {
    let mut record = record.clone();
    if let (Some(target), Some(changes)) = (record.as_object_mut(), edits.as_object()) {
        for (key, value) in changes {
            target.insert(key.clone(), value.clone());
        }
    }
    resign(&mut record, secret);
    record
}
