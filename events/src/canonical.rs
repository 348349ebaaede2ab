//! The canonical signing payload (CONTRACT section 2).
//!
//! Exactly eight fields are signed. Numbers are rounded with [`round9`] so that agents in any
//! language sign the same bytes, and the JSON is written by hand (not by serde) because every byte is
//! normative: code-point key order, no spaces, Python-`repr` floats, ASCII-only strings.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decimal::{python_repr, round9};
use crate::json_object::{DecodeError, JsonObject};

/// The eight fields a PCS signature covers, before rounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedFields {
    /// `sha256(merkle_root|epoch|shard_id)` as lowercase hex.
    pub pcs_id: String,
    /// Root of the agent's data Merkle tree.
    pub merkle_root: String,
    /// The agent's epoch counter; printed as a plain integer.
    pub epoch: i64,
    /// The agent's shard (not a Kafka partition).
    pub shard_id: String,
    /// Claimed fractal dimension.
    pub d_hat: f64,
    /// Claimed directional coherence.
    pub coh_star: f64,
    /// Claimed compressibility; absent in a PCS means `0.0`.
    pub r: f64,
    /// Claimed budget.
    pub budget: f64,
}

impl SignedFields {
    /// Reads the eight fields from a JSON object; all eight must be present (used by signing tools,
    /// which take "a JSON object that holds at least the 8 signed fields").
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let object = JsonObject::parse(bytes)?;
        Self::from_object(&object, true)
    }

    /// Reads the eight fields from a decoded object. With `require_r == false`, a missing `r`
    /// counts as `0.0` (a PCS may omit it).
    pub(crate) fn from_object(object: &JsonObject, require_r: bool) -> Result<Self, DecodeError> {
        let r = if require_r {
            object.required_f64("r")?
        } else {
            object.optional_f64("r")?.unwrap_or(0.0)
        };
        Ok(SignedFields {
            pcs_id: object.required_string("pcs_id")?,
            merkle_root: object.required_string("merkle_root")?,
            epoch: object.required_i64("epoch")?,
            shard_id: object.required_string("shard_id")?,
            d_hat: object.required_f64("D_hat")?,
            coh_star: object.required_f64("coh_star")?,
            r,
            budget: object.required_f64("budget")?,
        })
    }

    /// The exact bytes that get signed.
    pub fn canonical_payload(&self) -> Vec<u8> {
        // Keys in code-point order: uppercase `D_hat` sorts before every lowercase key.
        let mut out = String::with_capacity(256);
        out.push_str("{\"D_hat\":");
        out.push_str(&python_repr(round9(self.d_hat)));
        out.push_str(",\"budget\":");
        out.push_str(&python_repr(round9(self.budget)));
        out.push_str(",\"coh_star\":");
        out.push_str(&python_repr(round9(self.coh_star)));
        out.push_str(",\"epoch\":");
        out.push_str(&self.epoch.to_string());
        out.push_str(",\"merkle_root\":");
        push_json_string(&mut out, &self.merkle_root);
        out.push_str(",\"pcs_id\":");
        push_json_string(&mut out, &self.pcs_id);
        out.push_str(",\"r\":");
        out.push_str(&python_repr(round9(self.r)));
        out.push_str(",\"shard_id\":");
        push_json_string(&mut out, &self.shard_id);
        out.push('}');
        out.into_bytes()
    }

    /// SHA-256 of the canonical payload: the "signed digest" dedup compares to detect conflicts.
    pub fn signed_digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_payload()).into()
    }
}

/// Appends `text` as a JSON string the way Python's `json.dumps(ensure_ascii=True)` writes it.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// `pcs_id` derivation: lowercase hex SHA-256 of `merkle_root|epoch|shard_id`.
pub fn derive_pcs_id(merkle_root: &str, epoch: i64, shard_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(merkle_root.as_bytes());
    hasher.update(b"|");
    hasher.update(epoch.to_string().as_bytes());
    hasher.update(b"|");
    hasher.update(shard_id.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract_fields() -> SignedFields {
        SignedFields {
            pcs_id: "test-id".into(),
            merkle_root: "abc123".into(),
            epoch: 1,
            shard_id: "shard-001".into(),
            d_hat: 1.412345679,
            coh_star: 0.73456789,
            r: 0.871234568,
            budget: 0.421234568,
        }
    }

    #[test]
    fn contract_payload() {
        assert_eq!(
            String::from_utf8(contract_fields().canonical_payload()).unwrap(),
            r#"{"D_hat":1.412345679,"budget":0.421234568,"coh_star":0.73456789,"epoch":1,"merkle_root":"abc123","pcs_id":"test-id","r":0.871234568,"shard_id":"shard-001"}"#
        );
    }

    #[test]
    fn pcs_id_reference() {
        assert_eq!(
            derive_pcs_id("abc123", 1, "shard-001"),
            "9c2a1a9fe3d87edab9aaee193852edc091aa03e263580f9556f1f0d0f1679b93"
        );
    }

    #[test]
    fn strings_are_ascii_escaped_like_python() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀<>&/");
        assert_eq!(
            out,
            r#""a\"\\\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00<>&/""#
        );
    }
}
