//! The bytes of one leaf of the audit Merkle log: a small JSON object per audit entry.
//!
//! A verifier hashes the bytes as they are served (`SHA-256(0x00 || bytes)`, see
//! [`crate::merkle`]) and only *parses* them, so no other language has to reproduce this
//! serialization; the writer is this module alone, and replays produce the same bytes because
//! every field comes from the decision event and the dedup state the log builds. Keys are written
//! in this fixed order (the top level alphabetical), without spaces:
//!
//! `decided_at_ms`, `dedup` (`first`, `duplicate`, `conflict`, `superseded` or
//! `not_deduplicated` for records that never reached the dedup table), `entry_hash` (hex of the audit chain entry, which commits
//! to every stored field), `outcome` (the verdict code), `partition`, `pcs_id` (or null),
//! `region`, `seq` (position in the partition's chain), `signed_digest` (hex of SHA-256 of the
//! canonical signing payload whenever the body decoded, whether or not its signature verified;
//! else null), `source` (`topic`, `partition`, `offset` of the submission, in that order),
//! `tenant`, `v` (1).
//!
//! An auditor holding a PCS checks `pcs_id` and `signed_digest` against the record (and reads
//! `tenant` and `outcome` for what the log decided), and the inclusion proof against a signed
//! checkpoint.

use serde::{Deserialize, Serialize};

/// Version written in `v`.
pub const LEAF_VERSION: u32 = 1;

/// Where the submission was in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafSource {
    /// Submissions topic (with prefix).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// One audit entry as a Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLeaf {
    /// Decided at, ms since the epoch.
    pub decided_at_ms: i64,
    /// Relation to the first write of its (tenant, pcs_id).
    pub dedup: String,
    /// Hex of the audit chain entry's hash.
    pub entry_hash: String,
    /// Verdict code of the decision.
    pub outcome: String,
    /// Decisions partition (the audit chain).
    pub partition: i32,
    /// `pcs_id`, when the body decoded.
    pub pcs_id: Option<String>,
    /// Region that decided.
    pub region: String,
    /// Position in the partition's chain.
    pub seq: i64,
    /// Hex of the signed digest, when the signature was checked.
    pub signed_digest: Option<String>,
    /// The submission's coordinates.
    pub source: LeafSource,
    /// Tenant.
    pub tenant: String,
    /// Format version ([`LEAF_VERSION`]).
    pub v: u32,
}

impl AuditLeaf {
    /// The leaf bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads leaf bytes (unknown fields and other versions are refused).
    pub fn decode(bytes: &[u8]) -> Result<AuditLeaf, String> {
        // serde would also read a struct from an array of its fields; a leaf is an object only.
        if bytes.first() != Some(&b'{') {
            return Err("a leaf is a JSON object".into());
        }
        let leaf: AuditLeaf = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        if leaf.v != LEAF_VERSION {
            return Err(format!("leaf version {} is not {LEAF_VERSION}", leaf.v));
        }
        Ok(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_fixed_and_round_trip() {
        let leaf = AuditLeaf {
            decided_at_ms: 1_700_000_000_000,
            dedup: "first".into(),
            entry_hash: "ab".repeat(32),
            outcome: "accepted".into(),
            partition: 3,
            pcs_id: Some("p-1".into()),
            region: "local".into(),
            seq: 17,
            signed_digest: Some("cd".repeat(32)),
            source: LeafSource {
                topic: "flk.submissions".into(),
                partition: 3,
                offset: 41,
            },
            tenant: "alpha".into(),
            v: 1,
        };
        let bytes = leaf.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"decided_at_ms\":1700000000000,\"dedup\":\"first\","));
        assert!(text.ends_with("\"tenant\":\"alpha\",\"v\":1}"));
        assert_eq!(AuditLeaf::decode(&bytes).unwrap(), leaf);
        assert!(AuditLeaf::decode(text.replace("\"v\":1", "\"v\":2").as_bytes()).is_err());
    }
}
