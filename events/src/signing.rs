//! PCS signatures (CONTRACT section 2, steps 4 to 7).
//!
//! - HMAC-SHA256 over the canonical payload, keyed by the UTF-8 bytes of the secret (any string,
//!   including the empty one, is a valid key).
//! - Ed25519 over SHA-256 of the payload (the 32-byte digest is the signed message).
//! - Legacy "pre-hash" HMAC over SHA-256 of the payload, accepted only when a tenant opts in.
//!
//! Signatures are standard base64 with padding. Comparisons are constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Why a key or signature could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The record carries no `sig` but the tenant requires one.
    #[error("signature missing")]
    Missing,
    /// `sig` is not standard base64 with padding.
    #[error("signature is not valid base64")]
    NotBase64,
    /// No configured key accepts the signature.
    #[error("signature does not match any key of the tenant")]
    Mismatch,
    /// A configured key is unusable (wrong length, not base64).
    #[error("invalid key material: {0}")]
    BadKey(String),
}

/// A key that can check PCS signatures.
#[derive(Clone)]
pub enum VerifyingSecret {
    /// Shared HMAC secret (the UTF-8 bytes of the configured string).
    Hmac(Vec<u8>),
    /// Ed25519 public key.
    Ed25519(VerifyingKey),
}

impl std::fmt::Debug for VerifyingSecret {
    // Never print secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyingSecret::Hmac(_) => f.write_str("Hmac(<redacted>)"),
            VerifyingSecret::Ed25519(key) => {
                write!(f, "Ed25519({})", BASE64.encode(key.as_bytes()))
            }
        }
    }
}

impl VerifyingSecret {
    /// An Ed25519 verifying key from standard base64 of its raw 32 bytes.
    pub fn ed25519_from_base64(public_b64: &str) -> Result<Self, SignatureError> {
        let bytes = decode_32(public_b64, "Ed25519 public key")?;
        VerifyingKey::from_bytes(&bytes)
            .map(VerifyingSecret::Ed25519)
            .map_err(|_| SignatureError::BadKey("not a valid Ed25519 public key".to_owned()))
    }

    /// Checks `sig_b64` over `payload`. `accept_prehash` also accepts the legacy
    /// `HMAC(key, SHA-256(payload))` form for HMAC keys.
    pub fn verify(
        &self,
        payload: &[u8],
        sig_b64: &str,
        accept_prehash: bool,
    ) -> Result<(), SignatureError> {
        let signature = BASE64
            .decode(sig_b64)
            .map_err(|_| SignatureError::NotBase64)?;
        let verified = match self {
            VerifyingSecret::Hmac(secret) => {
                hmac_verify(secret, payload, &signature)
                    || (accept_prehash && hmac_verify(secret, &Sha256::digest(payload), &signature))
            }
            VerifyingSecret::Ed25519(key) => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(&signature) else {
                    return Err(SignatureError::Mismatch);
                };
                key.verify_strict(&Sha256::digest(payload), &signature)
                    .is_ok()
            }
        };
        if verified {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn hmac_verify(secret: &[u8], message: &[u8], signature: &[u8]) -> bool {
    // `new_from_slice` accepts keys of any length for HMAC.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], SignatureError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| SignatureError::BadKey(format!("{what} is not valid base64")))?;
    bytes
        .try_into()
        .map_err(|_| SignatureError::BadKey(format!("{what} must be 32 bytes")))
}

/// `base64(HMAC_SHA256(secret, payload))`.
pub fn sign_hmac(secret: &[u8], payload: &[u8]) -> String {
    BASE64.encode(hmac_raw(secret, payload))
}

/// Legacy pre-hash form: `base64(HMAC_SHA256(secret, SHA-256(payload)))`.
pub fn sign_hmac_prehash(secret: &[u8], payload: &[u8]) -> String {
    BASE64.encode(hmac_raw(secret, &Sha256::digest(payload)))
}

fn hmac_raw(secret: &[u8], message: &[u8]) -> Vec<u8> {
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of every length; this arm exists only to avoid a panic path.
        Err(_) => Vec::new(),
    }
}

/// An Ed25519 signer built from a 32-byte seed.
#[derive(Clone)]
pub struct Ed25519Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Signer(<redacted>)")
    }
}

impl Ed25519Signer {
    /// From standard base64 of the 32-byte seed.
    pub fn from_seed_base64(seed_b64: &str) -> Result<Self, SignatureError> {
        Ok(Self::from_seed(&decode_32(seed_b64, "Ed25519 seed")?))
    }

    /// From the raw 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Ed25519Signer {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// `base64(Ed25519_sign(seed, SHA-256(payload)))`.
    pub fn sign(&self, payload: &[u8]) -> String {
        BASE64.encode(self.key.sign(&Sha256::digest(payload)).to_bytes())
    }

    /// Standard base64 of the raw public key.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// The matching verifying key.
    pub fn verifying_secret(&self) -> VerifyingSecret {
        VerifyingSecret::Ed25519(self.key.verifying_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD_1: &[u8] = br#"{"D_hat":0.528320834,"budget":0.317807017,"coh_star":0.066666667,"epoch":1,"merkle_root":"e966b52c992aefad3c3d0196db02554f30d10d55e8a6e5e3038f88e79e414112","pcs_id":"c50bb25a7aff94164147b73c846f0e5e10890d75df204875ca70c448f52c6edf","r":0.318421053,"shard_id":"test-shard-001"}"#;

    fn seed() -> [u8; 32] {
        std::array::from_fn(|index| index as u8)
    }

    #[test]
    fn contract_golden_one() {
        assert_eq!(
            sign_hmac(b"testsecret", PAYLOAD_1),
            "x5KLRpKb75Oy1oxLA+3V+bgY/HL/3ZYOk1rw3pCiSm4="
        );
        assert_eq!(
            sign_hmac_prehash(b"testsecret", PAYLOAD_1),
            "ie8rdnp+3qXnlMVyHmSdjFT3Unk6sZmoVxun71x2/X4="
        );
        let signer = Ed25519Signer::from_seed(&seed());
        assert_eq!(
            signer.public_key_base64(),
            "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
        );
        assert_eq!(
            signer.sign(PAYLOAD_1),
            "YDbe81WZAVDIv6klWR8QtDAu4tYwBAix8fFppjAzOfASRss2q4DdWVC6UT54Q4eXs37HOiJJRHzYk3FyXVZlAg=="
        );
    }

    #[test]
    fn prehash_only_when_opted_in() {
        let key = VerifyingSecret::Hmac(b"testsecret".to_vec());
        let legacy = sign_hmac_prehash(b"testsecret", PAYLOAD_1);
        assert_eq!(
            key.verify(PAYLOAD_1, &legacy, false),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(key.verify(PAYLOAD_1, &legacy, true), Ok(()));
        let modern = sign_hmac(b"testsecret", PAYLOAD_1);
        assert_eq!(key.verify(PAYLOAD_1, &modern, false), Ok(()));
    }

    #[test]
    fn ed25519_verifies_and_rejects() {
        let signer = Ed25519Signer::from_seed(&seed());
        let key = VerifyingSecret::ed25519_from_base64(&signer.public_key_base64()).unwrap();
        let sig = signer.sign(PAYLOAD_1);
        assert_eq!(key.verify(PAYLOAD_1, &sig, false), Ok(()));
        assert_eq!(
            key.verify(b"other", &sig, false),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(PAYLOAD_1, "not base64!", false),
            Err(SignatureError::NotBase64)
        );
        assert_eq!(
            key.verify(PAYLOAD_1, "AAAA", false),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn empty_and_unicode_hmac_keys_work() {
        for secret in ["", "ключ", "🔑"] {
            let sig = sign_hmac(secret.as_bytes(), PAYLOAD_1);
            let key = VerifyingSecret::Hmac(secret.as_bytes().to_vec());
            assert_eq!(key.verify(PAYLOAD_1, &sig, false), Ok(()));
        }
    }
}
