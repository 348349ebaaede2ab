//! Signed checkpoints in the C2SP formats (`tlog-checkpoint` inside a `signed-note`), so any
//! verifier of transparency logs (Go's `golang.org/x/mod/sumdb/note`, Sigstore, witnesses) reads
//! them.
//!
//! A checkpoint body is three lines, each ending in a newline: the log's origin (a name that says
//! which log this is), the tree size in decimal, and the root hash in standard base64. A signed
//! note is the body, one empty line, and one line per signature:
//! `"\u{2014} " + key name + " " + base64(key hash (4 bytes) || Ed25519 signature (64 bytes))`.
//! The key hash is the first four bytes of `SHA-256(key name || "\n" || 0x01 || public key)`; a
//! verifier key is written `name+<8 hex digits of the key hash>+base64(0x01 || public key)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::Hash;

/// The algorithm byte of Ed25519 keys in signed notes.
const ED25519: u8 = 0x01;

/// Starts every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The text is not a well-formed checkpoint or note.
    #[error("malformed: {0}")]
    Malformed(String),
    /// No signature by the expected key, or the signature does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// A key string could not be read.
    #[error("key: {0}")]
    Key(String),
}

/// What a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The body text (what is signed).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Reads a body. Extension lines after the root are refused (this log writes none).
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint body must end with a newline"))?
            .split('\n')
            .collect();
        let [origin, size, root] = lines.as_slice() else {
            return Err(malformed("checkpoint body must have exactly three lines"));
        };
        if origin.is_empty() {
            return Err(malformed("checkpoint origin is empty"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(malformed("checkpoint tree size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| malformed("checkpoint tree size is too large"))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed("checkpoint root is not 32 bytes of base64"))?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
        })
    }
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CheckpointError::Key(
            "key name must be non-empty, without '+', whitespace or control characters".into(),
        ));
    }
    Ok(())
}

/// Signs notes with an Ed25519 key. Its `Debug` never shows the key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    hash: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_hash", &hex::encode(self.hash))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` (usually the log's origin) from a 32-byte Ed25519 seed.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            hash,
        })
    }

    /// The verifier key string (`name+hash+base64`) that [`NoteVerifier::parse`] reads and Go's
    /// `note.NewVerifier` accepts.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            BASE64.encode(key)
        )
    }

    /// Signs `body` (which must end in a newline) and returns the whole signed note.
    pub fn sign(&self, body: &str) -> Result<String, CheckpointError> {
        check_body(body)?;
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.hash.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }
}

fn check_body(body: &str) -> Result<(), CheckpointError> {
    if !body.ends_with('\n') {
        return Err(CheckpointError::Malformed(
            "note text must end with a newline".into(),
        ));
    }
    if body.contains("\n\n") || body.starts_with('\n') {
        return Err(CheckpointError::Malformed(
            "note text must not contain an empty line".into(),
        ));
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CheckpointError::Malformed(
            "note text must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Checks notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    hash: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads a verifier key string `name+hash+base64(0x01 || public key)`.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(why.to_owned());
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("verifier key must be name+hash+key"));
        };
        check_key_name(name)?;
        let key_bytes = BASE64
            .decode(key_b64)
            .map_err(|_| bad("verifier key is not base64"))?;
        let [alg, public @ ..] = key_bytes.as_slice() else {
            return Err(bad("verifier key is empty"));
        };
        if *alg != ED25519 {
            return Err(bad("verifier key is not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("Ed25519 public key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("invalid Ed25519 key"))?;
        let hash = key_hash(name, &public);
        if hex::encode(hash) != hash_hex.to_ascii_lowercase() {
            return Err(bad("verifier key hash does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            hash,
            key,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `note` carries a valid signature by this key; returns its text (the signed body).
    /// Signatures by other keys are allowed and ignored (witness cosignatures, for instance).
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("note has no signature block"))?;
        let (body, signatures) = (&note[..=split], &note[split + 2..]);
        check_body(body)?;
        if !signatures.ends_with('\n') {
            return Err(malformed("signature block must end with a newline"));
        }
        let mut found_name = false;
        for line in signatures
            .strip_suffix('\n')
            .unwrap_or(signatures)
            .split('\n')
        {
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
                malformed("signature line must start with an em dash and a space")
            })?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("signature line must be name and signature"))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| malformed("signature is not base64"))?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.hash {
                found_name |= name == self.name;
                continue;
            }
            let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::Signature("signature is not 64 bytes".into()))?;
            return self
                .key
                .verify_strict(body.as_bytes(), &signature)
                .map(|()| body)
                .map_err(|_| {
                    CheckpointError::Signature(format!(
                        "the signature by {} does not verify",
                        self.name
                    ))
                });
        }
        Err(CheckpointError::Signature(if found_name {
            format!("signed by a different key named {}", self.name)
        } else {
            format!("no signature by {}", self.name)
        }))
    }

    /// Opens a signed checkpoint and checks its origin is this key's name.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = Checkpoint::parse(self.open(note)?)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::Signature(format!(
                "checkpoint origin {:?} is not the key's log {:?}",
                checkpoint.origin, self.name
            )));
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::new("flk.test/local", &[7u8; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "flk.test/local".into(),
            size: 12,
            root: [9u8; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key() {
        let signer = signer();
        let note = signer.sign(&checkpoint().body()).unwrap();
        assert!(note.starts_with("flk.test/local\n12\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} flk.test/local "));
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(verifier.open_checkpoint(&note).unwrap(), checkpoint());
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        let signer = signer();
        let note = signer.sign(&checkpoint().body()).unwrap();
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        let tampered = note.replacen("\n12\n", "\n13\n", 1);
        assert!(matches!(
            verifier.open(&tampered),
            Err(CheckpointError::Signature(_))
        ));
        let other = NoteSigner::new("flk.test/local", &[8u8; 32]).unwrap();
        let other_verifier = NoteVerifier::parse(&other.verifier_key()).unwrap();
        assert!(other_verifier.open(&note).is_err());
        assert!(verifier.open("flk.test/local\n12\n").is_err());
    }

    #[test]
    fn verifier_keys_are_checked() {
        let key = signer().verifier_key();
        let wrong_hash = key.replacen('+', "+0", 1);
        assert!(NoteVerifier::parse(&wrong_hash).is_err());
        assert!(NoteVerifier::parse("no-plus-signs").is_err());
    }

    #[test]
    fn bodies_must_be_well_formed() {
        for body in [
            "o\n12\n",
            "o\n012\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n12\nshort\n",
            "o\n12\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
        ] {
            assert!(Checkpoint::parse(body).is_err(), "{body:?}");
        }
        assert!(signer().sign("two\n\nparagraphs\n").is_err());
    }
}
