//! Proof bundles: everything an outsider needs to check, offline, that a record is in the audit
//! log: a signed checkpoint, the leaf bytes, the leaf's index and its inclusion proof. The proof
//! API serves them, `flk audit verify` and every SDK check them in the same order, each failure
//! named by the first check that failed:
//!
//! 1. `checkpoint`: the note carries a valid signature by the trusted key and its origin is the
//!    key's log;
//! 2. `entry`: the entry bytes are base64 of an audit leaf ([`crate::audit_leaf`]);
//! 3. `inclusion`: the bundle's tree size is the checkpoint's and the proof leads from
//!    `SHA-256(0x00 || entry)` at the leaf index to the checkpoint's root;
//! 4. `record` (only when a record is given): the leaf's `pcs_id` and `signed_digest` are the
//!    record's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::audit_leaf::AuditLeaf;
use crate::canonical::SignedFields;
use crate::checkpoint::{Checkpoint, NoteVerifier};
use crate::merkle::{self, Hash};

/// What the proof API returns for one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// The signed checkpoint (a C2SP signed note).
    pub checkpoint: String,
    /// The leaf's global index.
    pub leaf_index: u64,
    /// The tree size the proof is for (the checkpoint's).
    pub tree_size: u64,
    /// Base64 of the leaf bytes.
    pub entry: String,
    /// Base64 of each hash of the RFC 9162 inclusion proof, leaf side first.
    pub inclusion: Vec<String>,
}

/// The first check a bundle failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    /// The checkpoint is not signed by the trusted key (or is malformed).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The entry is not an audit leaf.
    #[error("entry: {0}")]
    Entry(String),
    /// The proof does not tie the entry to the checkpoint.
    #[error("inclusion: {0}")]
    Inclusion(String),
    /// The logged entry is not the given record.
    #[error("record: {0}")]
    Record(String),
}

impl BundleError {
    /// `checkpoint`, `entry`, `inclusion` or `record`.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::Checkpoint(_) => "checkpoint",
            BundleError::Entry(_) => "entry",
            BundleError::Inclusion(_) => "inclusion",
            BundleError::Record(_) => "record",
        }
    }
}

/// Decodes a list of base64 hashes.
pub fn decode_hashes(list: &[String]) -> Result<Vec<Hash>, String> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            BASE64
                .decode(text)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("hash {i} is not 32 bytes of base64"))
        })
        .collect()
}

/// Checks `bundle` against the trusted key and, when given, the record; returns the checkpoint
/// and the leaf.
pub fn verify_bundle(
    bundle: &ProofBundle,
    verifier: &NoteVerifier,
    record_opt: Option<&SignedFields>,
) -> Result<(Checkpoint, AuditLeaf), BundleError> {
    let checkpoint = verifier
        .open_checkpoint(&bundle.checkpoint)
        .map_err(|error| BundleError::Checkpoint(error.to_string()))?;
    let entry = BASE64
        .decode(&bundle.entry)
        .map_err(|_| BundleError::Entry("entry is not base64".into()))?;
    let leaf = AuditLeaf::decode(&entry).map_err(BundleError::Entry)?;
    if bundle.tree_size != checkpoint.size {
        return Err(BundleError::Inclusion(format!(
            "proof is for tree size {} but the checkpoint is for {}",
            bundle.tree_size, checkpoint.size
        )));
    }
    let proof = decode_hashes(&bundle.inclusion).map_err(BundleError::Inclusion)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&entry),
        bundle.leaf_index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    )
    .map_err(|error| BundleError::Inclusion(error.to_string()))?;
    if let Some(record) = record_opt {
        if leaf.pcs_id.as_deref() != Some(record.pcs_id.as_str()) {
            return Err(BundleError::Record(format!(
                "the log holds pcs_id {:?}, the record is {:?}",
                leaf.pcs_id, record.pcs_id
            )));
        }
        let digest = hex::encode(record.signed_digest());
        if leaf.signed_digest.as_deref() != Some(digest.as_str()) {
            return Err(BundleError::Record(
                "the logged signed digest is not the record's (a different record under this pcs_id)"
                    .into(),
            ));
        }
    }
    Ok((checkpoint, leaf))
}
