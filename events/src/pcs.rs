//! The PCS record and its decoder (CONTRACT section 1).
//!
//! Decoding is strict about JSON *types* (an integer-only `epoch`, RFC 3339 `sent_at`) and lenient
//! about *values*: an empty `pcs_id` or a wrong `schema` decodes fine and is reported by verification
//! step 1 as an outcome, because the contract answers those with 202, not 400. The rule, recorded in
//! `docs/decisions/0001-pcs-decoding.md`:
//! - not JSON, not an object, a key of the wrong JSON type, a bad `sent_at`: [`DecodeError`] (400);
//! - a missing key that verification step 1 names (`pcs_id`, `schema`, `version`, `shard_id`,
//!   `merkle_root`, `scales`): decodes as empty, so step 1 reports it;
//! - any other missing required key (`epoch`, `N_j`, `coh_star`, `D_hat`, `regime`, `budget`):
//!   [`DecodeError::MissingKey`];
//! - `null` on an optional key means absent; on a required key it is a type error.
//!
//! Unknown keys are ignored; keys are case-sensitive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::SignedFields;
pub use crate::json_object::DecodeError;
use crate::json_object::{JsonObject, integer};

/// Fault-tolerance block reported by the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultTolerance {
    /// Sequence number in the agent's durable outbox.
    pub outbox_seq_opt: Option<i64>,
    /// The agent ran in degraded mode (verification escalates, step 7).
    pub degraded: bool,
    /// Fallbacks the agent used.
    pub fallbacks: Vec<String>,
    /// The agent's measured clock skew.
    pub clock_skew_ms_opt: Option<i64>,
}

/// A decoded Proof-of-Computation Summary, schema `fractal-lba-kakeya`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pcs {
    /// Claimed id; verification checks it against [`crate::derive_pcs_id`].
    pub pcs_id: String,
    /// Must be `fractal-lba-kakeya` (checked by verification, not by decoding).
    pub schema: String,
    /// Schema version, non-empty.
    pub version: String,
    /// The agent's shard.
    pub shard_id: String,
    /// Agent epoch; negative values decode and fail verification.
    pub epoch: i64,
    /// Delivery attempt counter.
    pub attempt_opt: Option<i64>,
    /// When the agent sent the record, as given (validated RFC 3339 with a zone).
    pub sent_at_opt: Option<String>,
    /// Seed the agent used for random directions.
    pub seed_opt: Option<i64>,
    /// Box-counting scales, in the agent's order.
    pub scales: Vec<u64>,
    /// Occupied voxel counts keyed by the decimal string of each scale.
    pub n_j: BTreeMap<String, i64>,
    /// Claimed directional coherence.
    pub coh_star: f64,
    /// Best projection direction.
    pub v_star_opt: Option<Vec<f64>>,
    /// Claimed fractal dimension.
    pub d_hat: f64,
    /// Compressibility; feeds only the budget.
    pub r_opt: Option<f64>,
    /// Claimed regime: `sticky`, `mixed` or `non_sticky`.
    pub regime: String,
    /// Claimed budget.
    pub budget: f64,
    /// Root of the agent's data Merkle tree.
    pub merkle_root: String,
    /// Base64 signature over the canonical payload.
    pub sig_opt: Option<String>,
    /// Fault-tolerance block.
    pub ft_opt: Option<FaultTolerance>,
}

impl Pcs {
    /// Decodes a request body.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let object = JsonObject::parse(bytes)?;
        let scales = match object.optional("scales") {
            None => Vec::new(),
            Some(value) => decode_scales(value)?,
        };
        let n_j = decode_n_j(object.required("N_j")?)?;
        let ft_opt = object.optional("ft").map(decode_ft).transpose()?;
        let sent_at_opt = object.optional_string("sent_at")?;
        if let Some(sent_at) = &sent_at_opt {
            check_rfc3339(sent_at)?;
        }
        Ok(Pcs {
            pcs_id: object.optional_string("pcs_id")?.unwrap_or_default(),
            schema: object.optional_string("schema")?.unwrap_or_default(),
            version: object.optional_string("version")?.unwrap_or_default(),
            shard_id: object.optional_string("shard_id")?.unwrap_or_default(),
            epoch: object.required_i64("epoch")?,
            attempt_opt: object.optional_i64("attempt")?,
            sent_at_opt,
            seed_opt: object.optional_i64("seed")?,
            scales,
            n_j,
            coh_star: object.required_f64("coh_star")?,
            v_star_opt: object
                .optional("v_star")
                .map(|value| decode_f64_array("v_star", value))
                .transpose()?,
            d_hat: object.required_f64("D_hat")?,
            r_opt: object.optional_f64("r")?,
            regime: object.required_string("regime")?,
            budget: object.required_f64("budget")?,
            merkle_root: object.optional_string("merkle_root")?.unwrap_or_default(),
            sig_opt: object.optional_string("sig")?,
            ft_opt,
        })
    }

    /// The eight signed fields (`r` absent counts as `0.0`).
    pub fn signed_fields(&self) -> SignedFields {
        SignedFields {
            pcs_id: self.pcs_id.clone(),
            merkle_root: self.merkle_root.clone(),
            epoch: self.epoch,
            shard_id: self.shard_id.clone(),
            d_hat: self.d_hat,
            coh_star: self.coh_star,
            r: self.r(),
            budget: self.budget,
        }
    }

    /// Compressibility, `0.0` when absent.
    pub fn r(&self) -> f64 {
        self.r_opt.unwrap_or(0.0)
    }

    /// True when the agent reported degraded mode.
    pub fn degraded(&self) -> bool {
        self.ft_opt.as_ref().is_some_and(|ft| ft.degraded)
    }
}

fn decode_scales(value: &Value) -> Result<Vec<u64>, DecodeError> {
    const KEY: &str = "scales";
    const EXPECTED: &str = "an array of positive integers";
    let items = value
        .as_array()
        .ok_or_else(|| DecodeError::wrong_type(KEY, EXPECTED))?;
    items
        .iter()
        .map(|item| match item.as_u64() {
            Some(scale) if scale > 0 && !item.is_f64() => Ok(scale),
            _ => Err(DecodeError::wrong_type(KEY, EXPECTED)),
        })
        .collect()
}

fn decode_n_j(value: &Value) -> Result<BTreeMap<String, i64>, DecodeError> {
    let entries = value
        .as_object()
        .ok_or_else(|| DecodeError::wrong_type("N_j", "an object of integers"))?;
    entries
        .iter()
        .map(|(scale, count)| {
            let key = format!("N_j.{scale}");
            Ok((scale.clone(), integer(&key, count)?))
        })
        .collect()
}

fn decode_f64_array(key: &str, value: &Value) -> Result<Vec<f64>, DecodeError> {
    const EXPECTED: &str = "an array of numbers";
    value
        .as_array()
        .ok_or_else(|| DecodeError::wrong_type(key, EXPECTED))?
        .iter()
        .map(|item| {
            item.as_f64()
                .ok_or_else(|| DecodeError::wrong_type(key, EXPECTED))
        })
        .collect()
}

fn decode_ft(value: &Value) -> Result<FaultTolerance, DecodeError> {
    let object = JsonObject::nested(
        value
            .as_object()
            .ok_or_else(|| DecodeError::wrong_type("ft", "an object"))?
            .clone(),
        "ft.",
    );
    let fallbacks = match object.optional("fallbacks") {
        None => Vec::new(),
        Some(value) => value
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| DecodeError::wrong_type("ft.fallbacks", "an array of strings"))?,
    };
    Ok(FaultTolerance {
        outbox_seq_opt: object.optional_i64("outbox_seq")?,
        degraded: match object.optional("degraded") {
            None => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| DecodeError::wrong_type("ft.degraded", "a boolean"))?,
        },
        fallbacks,
        clock_skew_ms_opt: object.optional_i64("clock_skew_ms")?,
    })
}

/// RFC 3339 `date-time` with a zone. The `time` crate also takes a space for the `T` (the RFC's
/// note allows it); the grammar does not, and neither do we.
fn check_rfc3339(text: &str) -> Result<(), DecodeError> {
    let bad = |detail: String| DecodeError::BadValue {
        key: "sent_at".to_owned(),
        problem: format!("must be an RFC 3339 timestamp with a zone ({detail})"),
    };
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(bad("date and time must be separated by `T`".to_owned()));
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|error| bad(error.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    const GOLDEN_1: &str = include_str!("../../tests/vectors/golden/pcs_tiny_case_1.json");

    fn golden_with(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut value: Value = serde_json::from_str(GOLDEN_1).unwrap();
        edit(value.as_object_mut().unwrap());
        serde_json::to_vec(&value).unwrap()
    }

    fn key_of(body: &[u8]) -> Option<String> {
        Pcs::from_json_bytes(body)
            .unwrap_err()
            .key()
            .map(str::to_owned)
    }

    #[test]
    fn golden_decodes() {
        let pcs = Pcs::from_json_bytes(GOLDEN_1.as_bytes()).unwrap();
        assert_eq!(pcs.scales, vec![2, 4, 8, 16]);
        assert_eq!(pcs.n_j["16"], 15);
        assert_eq!(pcs.epoch, 1);
        assert!(!pcs.degraded());
    }

    #[test]
    fn epoch_must_be_an_integer() {
        let body = golden_with(|map| {
            map.insert("epoch".into(), serde_json::json!(1.0));
        });
        assert_eq!(key_of(&body).as_deref(), Some("epoch"));
        let huge = String::from_utf8(golden_with(|_| {}))
            .unwrap()
            .replace("\"epoch\":1", "\"epoch\":18446744073709551615");
        assert_eq!(key_of(huge.as_bytes()).as_deref(), Some("epoch"));
    }

    #[test]
    fn bad_sent_at_is_rejected() {
        for bad in ["2025-01-19T12:00:00", "yesterday", "2025-01-19 12:00:00Z"] {
            let body = golden_with(|map| {
                map.insert("sent_at".into(), Value::String(bad.into()));
            });
            assert_eq!(key_of(&body).as_deref(), Some("sent_at"), "{bad}");
        }
        let body = golden_with(|map| {
            map.insert(
                "sent_at".into(),
                Value::String("2025-01-19T12:00:00+05:30".into()),
            );
        });
        assert!(Pcs::from_json_bytes(&body).is_ok());
    }

    #[test]
    fn step_one_keys_decode_as_empty() {
        let body = golden_with(|map| {
            map.remove("pcs_id");
            map.remove("scales");
        });
        let pcs = Pcs::from_json_bytes(&body).unwrap();
        assert!(pcs.pcs_id.is_empty() && pcs.scales.is_empty());
    }

    #[test]
    fn other_required_keys_must_be_present() {
        for key in ["epoch", "N_j", "coh_star", "D_hat", "regime", "budget"] {
            let body = golden_with(|map| {
                map.remove(key);
            });
            assert_eq!(key_of(&body).as_deref(), Some(key));
        }
    }

    #[test]
    fn nested_and_typed_errors_name_the_key() {
        let body = golden_with(|map| {
            map.insert("ft".into(), serde_json::json!({"degraded": "yes"}));
        });
        assert_eq!(key_of(&body).as_deref(), Some("ft.degraded"));
        let body = golden_with(|map| {
            map.insert("N_j".into(), serde_json::json!({"2": 1.5}));
        });
        assert_eq!(key_of(&body).as_deref(), Some("N_j.2"));
        let body = golden_with(|map| {
            map.insert("scales".into(), serde_json::json!([2, 0]));
        });
        assert_eq!(key_of(&body).as_deref(), Some("scales"));
        assert_eq!(
            Pcs::from_json_bytes(b"[1]").unwrap_err(),
            DecodeError::NotAnObject
        );
        assert!(matches!(
            Pcs::from_json_bytes(b"{\"D_hat\": 1e400}").unwrap_err(),
            DecodeError::NotJson(_)
        ));
    }
}
