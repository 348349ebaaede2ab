//! The pure decision function a shard applies to every submission: parse, tenant, signature, verify.
//!
//! It never fails: every body, however broken, yields a [`Verdict`], so the audit log can account for
//! every record of the write-ahead log (ARCHITECTURE section 2).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::outcome::OutcomeClass;
use crate::pcs::Pcs;
use crate::signing::{SignatureError, VerifyingSecret};
use crate::verify::{Outcome, VerifyParams, verify};

/// One verification key of a tenant; several may be active at once so keys rotate without rejecting
/// records signed with the previous one.
#[derive(Debug, Clone)]
pub struct TenantKey {
    /// Stable identifier recorded in decisions (never the secret).
    pub id: String,
    /// The key material.
    pub secret: VerifyingSecret,
}

/// What the decider needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    /// Disabled tenants are refused but their submissions are still logged and decided.
    pub enabled: bool,
    /// Verification keys; empty means signing is off for this tenant.
    pub keys: Vec<TenantKey>,
    /// Also accept the legacy `HMAC(key, SHA-256(payload))` signatures.
    pub accept_legacy_prehash: bool,
    /// Verification parameters.
    pub params: VerifyParams,
    /// Version of `params`, recorded in every decision so a replay can tell which rules applied.
    pub params_version: u32,
}

/// The decision about one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// The body is not a PCS.
    Malformed {
        /// Human-readable error; names the key.
        error: String,
    },
    /// Unknown or disabled tenant.
    TenantRefused {
        /// Why.
        reason: String,
    },
    /// Signature missing or invalid; never cached, never deduplicated.
    SignatureRejected {
        /// Why.
        reason: String,
    },
    /// Verified (accepted, escalated or rejected by the outcome).
    Verified {
        /// The verification outcome.
        outcome: Outcome,
    },
}

impl Verdict {
    /// The class of this verdict (the gateway maps it to a status; dedup may still turn a verified
    /// record into a conflict).
    pub fn class(&self) -> OutcomeClass {
        match self {
            Verdict::Malformed { .. } => OutcomeClass::Malformed,
            Verdict::TenantRefused { .. } => OutcomeClass::TenantRefused,
            Verdict::SignatureRejected { .. } => OutcomeClass::SignatureRejected,
            Verdict::Verified { outcome } => outcome.class(),
        }
    }

    /// Short machine code for metrics and error bodies: the class's stable code.
    pub fn code(&self) -> &'static str {
        self.class().as_str()
    }
}

/// Everything the decider derives from one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The claimed `pcs_id`, when the body decoded.
    pub pcs_id_opt: Option<String>,
    /// SHA-256 of the canonical payload, when the body decoded.
    pub signed_digest_opt: Option<[u8; 32]>,
    /// Id of the key that verified the signature.
    pub key_id_opt: Option<String>,
}

/// Decides one submission body for a tenant (`None` when the tenant is unknown).
pub fn decide(body: &[u8], tenant_name: &str, policy_opt: Option<&TenantPolicy>) -> Decision {
    let pcs = match Pcs::from_json_bytes(body) {
        Ok(pcs) => pcs,
        Err(error) => {
            return Decision {
                verdict: Verdict::Malformed {
                    error: error.to_string(),
                },
                pcs_id_opt: None,
                signed_digest_opt: None,
                key_id_opt: None,
            };
        }
    };
    let payload = pcs.signed_fields().canonical_payload();
    let (verdict, key_id_opt) = match policy_opt {
        None => (
            Verdict::TenantRefused {
                reason: format!("unknown tenant {tenant_name:?}"),
            },
            None,
        ),
        Some(policy) if !policy.enabled => (
            Verdict::TenantRefused {
                reason: format!("tenant {tenant_name:?} is disabled"),
            },
            None,
        ),
        Some(policy) => match check_signature(&pcs, &payload, policy) {
            Err(error) => (
                Verdict::SignatureRejected {
                    reason: error.to_string(),
                },
                None,
            ),
            Ok(key_id_opt) => (
                Verdict::Verified {
                    outcome: verify(&pcs, &policy.params),
                },
                key_id_opt,
            ),
        },
    };
    Decision {
        verdict,
        pcs_id_opt: Some(pcs.pcs_id),
        signed_digest_opt: Some(Sha256::digest(&payload).into()),
        key_id_opt,
    }
}

/// Returns the id of the key that verified, `None` when the tenant does not sign.
fn check_signature(
    pcs: &Pcs,
    payload: &[u8],
    policy: &TenantPolicy,
) -> Result<Option<String>, SignatureError> {
    if policy.keys.is_empty() {
        return Ok(None);
    }
    let sig = pcs
        .sig_opt
        .as_deref()
        .filter(|sig| !sig.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut last_error = SignatureError::Mismatch;
    for key in &policy.keys {
        match key
            .secret
            .verify(payload, sig, policy.accept_legacy_prehash)
        {
            Ok(()) => return Ok(Some(key.id.clone())),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_1: &[u8] = include_bytes!("../../tests/vectors/golden/pcs_tiny_case_1.json");

    fn policy(secrets: &[&str]) -> TenantPolicy {
        TenantPolicy {
            enabled: true,
            keys: secrets
                .iter()
                .enumerate()
                .map(|(index, secret)| TenantKey {
                    id: format!("k{index}"),
                    secret: VerifyingSecret::Hmac(secret.as_bytes().to_vec()),
                })
                .collect(),
            accept_legacy_prehash: false,
            params: VerifyParams::default(),
            params_version: 1,
        }
    }

    #[test]
    fn golden_is_accepted_with_the_rotated_key() {
        let decision = decide(GOLDEN_1, "default", Some(&policy(&["old", "testsecret"])));
        assert_eq!(decision.verdict.class(), OutcomeClass::Accepted);
        assert_eq!(decision.key_id_opt.as_deref(), Some("k1"));
    }

    #[test]
    fn signature_is_checked_before_verification() {
        let decision = decide(GOLDEN_1, "default", Some(&policy(&["wrong"])));
        assert_eq!(decision.verdict.class(), OutcomeClass::SignatureRejected);
        let unsigned = String::from_utf8_lossy(GOLDEN_1).replace("\"sig\"", "\"unsigned\"");
        let decision = decide(
            unsigned.as_bytes(),
            "default",
            Some(&policy(&["testsecret"])),
        );
        assert_eq!(
            decision.verdict,
            Verdict::SignatureRejected {
                reason: "signature missing".into()
            }
        );
    }

    #[test]
    fn tenants_and_malformed_bodies() {
        assert_eq!(
            decide(GOLDEN_1, "nobody", None).verdict.class(),
            OutcomeClass::TenantRefused
        );
        let mut disabled = policy(&[]);
        disabled.enabled = false;
        assert_eq!(
            decide(GOLDEN_1, "t", Some(&disabled)).verdict.class(),
            OutcomeClass::TenantRefused
        );
        let decision = decide(b"not json", "t", None);
        assert_eq!(decision.verdict.class(), OutcomeClass::Malformed);
        assert_eq!(decision.verdict.code(), "malformed");
        assert_eq!(decision.pcs_id_opt, None);
    }
}
