//! Cold segments: many dedup entries of one tenant in one compressed object, and the manifest
//! that lets anyone verify that object without the database.
//!
//! Format `flk.cold.v1` (the seed's cold format, made checkable):
//! - an **entry** is one dedup row as compact JSON ([`ColdEntry`], fields in declaration order,
//!   the outcome's keys sorted), so the same row always gives the same bytes;
//! - the **body** is the entries, each followed by `\n` (JSON Lines; JSON has no raw newline),
//!   ordered by `(tenant, pcs_id)`;
//! - the **object** is the body compressed with zlib (RFC 1950) at the configured level;
//! - the **manifest** names the tenant, the entry count, the key range, the decision-time range,
//!   the SHA-256 of the object, the codec, both sizes and the RFC 6962 Merkle root of the entries
//!   (each entry's bytes are one leaf), so a reader checks the object before it trusts a byte of
//!   it, and an auditor can prove one entry belongs to the segment.
//!
//! Decoding is defensive: the object's hash and size are checked first, decompression is capped
//! at the manifest's raw size (and an absolute cap), and every entry must parse and belong to the
//! manifest's tenant and key range.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::{self, Frontier, Hash};

/// The manifest's `format` for this version.
pub const FORMAT_V1: &str = "flk.cold.v1";
/// The only codec of v1.
pub const CODEC_ZLIB: &str = "zlib";
/// No segment body may inflate past this, whatever its manifest says (64 MiB).
pub const MAX_RAW_BYTES: u64 = 64 * 1024 * 1024;

/// One dedup row in the cold tier: everything the warm row held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdEntry {
    /// Tenant (I7: a segment holds one tenant).
    pub tenant: String,
    /// The record's id.
    pub pcs_id: String,
    /// Lowercase hex SHA-256 of the first record's signed payload.
    pub signed_digest: String,
    /// The first outcome's class (`accepted`, `escalated`, `rejected`).
    pub outcome_code: String,
    /// The first outcome, as answered.
    pub outcome: serde_json::Value,
    /// Where the first record was read (submissions topic).
    pub first_topic: String,
    /// Its partition.
    pub first_partition: i32,
    /// Its offset.
    pub first_offset: i64,
    /// When the first record was received, ms since the epoch.
    pub received_at_ms: i64,
    /// When it was decided, ms since the epoch.
    pub decided_at_ms: i64,
    /// End of its dedup window, ms since the epoch.
    pub expires_at_ms: i64,
}

/// What a segment holds, stored beside it and in Postgres.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_V1`].
    pub format: String,
    /// The one tenant of every entry.
    pub tenant: String,
    /// Entries in the body.
    pub entries: u64,
    /// Smallest `pcs_id`.
    pub first_pcs_id: String,
    /// Largest `pcs_id`.
    pub last_pcs_id: String,
    /// Earliest `decided_at_ms`.
    pub min_decided_at_ms: i64,
    /// Latest `decided_at_ms`.
    pub max_decided_at_ms: i64,
    /// [`CODEC_ZLIB`].
    pub codec: String,
    /// zlib level used (0..=9), for the record.
    pub level: u32,
    /// Lowercase hex SHA-256 of the object (the compressed bytes).
    pub object_sha256: String,
    /// Body size before compression.
    pub raw_bytes: u64,
    /// Object size.
    pub compressed_bytes: u64,
    /// Lowercase hex RFC 6962 root over the entries' bytes, in body order.
    pub merkle_root: String,
}

/// Why a segment could not be built or read. Every variant means "do not serve these bytes".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ColdSegmentError {
    /// Nothing to pack.
    #[error("a segment needs at least one entry")]
    Empty,
    /// Entries of more than one tenant.
    #[error("a segment holds one tenant; got {0:?} and {1:?}")]
    MixedTenants(String, String),
    /// The manifest is not one this code writes.
    #[error("unsupported segment manifest: {0}")]
    Unsupported(String),
    /// The object is not the one the manifest describes.
    #[error("segment object does not match its manifest: {0}")]
    Mismatch(String),
    /// The body would inflate past its cap.
    #[error("segment body exceeds {0} bytes")]
    TooLarge(u64),
    /// The bytes do not decode.
    #[error("corrupt segment: {0}")]
    Corrupt(String),
}

/// A packed segment: the object to store and its manifest.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The compressed object.
    pub object: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// The bytes of one entry (one Merkle leaf, one body line without its newline).
pub fn entry_bytes(entry: &ColdEntry) -> Vec<u8> {
    // serde_json's maps are sorted (no `preserve_order`), and struct fields keep their order, so
    // this is a function of the entry's value alone.
    serde_json::to_vec(entry).unwrap_or_default()
}

/// Packs `entries` (one tenant) into a segment compressed at `level` (clamped to 0..=9).
/// The entries are sorted by `pcs_id` first, so the same rows always give the same object.
pub fn pack(entries: &[ColdEntry], level: u32) -> Result<Segment, ColdSegmentError> {
    let Some(first) = entries.first() else {
        return Err(ColdSegmentError::Empty);
    };
    if let Some(other) = entries.iter().find(|entry| entry.tenant != first.tenant) {
        return Err(ColdSegmentError::MixedTenants(
            first.tenant.clone(),
            other.tenant.clone(),
        ));
    }
    let mut sorted: Vec<&ColdEntry> = entries.iter().collect();
    sorted.sort_by(|left, right| left.pcs_id.cmp(&right.pcs_id));
    let mut body = Vec::new();
    let mut frontier = Frontier::new();
    for entry in &sorted {
        let bytes = entry_bytes(entry);
        frontier.append(merkle::leaf_hash(&bytes));
        body.extend_from_slice(&bytes);
        body.push(b'\n');
    }
    let level = level.min(9);
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder
        .write_all(&body)
        .and_then(|()| encoder.finish())
        .map_err(|error| ColdSegmentError::Corrupt(format!("compressing: {error}")))
        .map(|object| {
            let manifest = Manifest {
                format: FORMAT_V1.to_owned(),
                tenant: first.tenant.clone(),
                entries: sorted.len() as u64,
                first_pcs_id: sorted[0].pcs_id.clone(),
                last_pcs_id: sorted[sorted.len() - 1].pcs_id.clone(),
                min_decided_at_ms: sorted.iter().map(|e| e.decided_at_ms).min().unwrap_or(0),
                max_decided_at_ms: sorted.iter().map(|e| e.decided_at_ms).max().unwrap_or(0),
                codec: CODEC_ZLIB.to_owned(),
                level,
                object_sha256: hex::encode(Sha256::digest(&object)),
                raw_bytes: body.len() as u64,
                compressed_bytes: object.len() as u64,
                merkle_root: hex::encode(frontier.root()),
            };
            Segment { object, manifest }
        })
}

/// Checks `object` against `manifest` and returns its entries in body order. Nothing of an
/// object that fails any check is returned.
pub fn unpack(object: &[u8], manifest: &Manifest) -> Result<Vec<ColdEntry>, ColdSegmentError> {
    if manifest.format != FORMAT_V1 {
        return Err(ColdSegmentError::Unsupported(format!(
            "format {:?}",
            manifest.format
        )));
    }
    if manifest.codec != CODEC_ZLIB {
        return Err(ColdSegmentError::Unsupported(format!(
            "codec {:?}",
            manifest.codec
        )));
    }
    if object.len() as u64 != manifest.compressed_bytes {
        return Err(ColdSegmentError::Mismatch(format!(
            "{} bytes, the manifest says {}",
            object.len(),
            manifest.compressed_bytes
        )));
    }
    if hex::encode(Sha256::digest(object)) != manifest.object_sha256 {
        return Err(ColdSegmentError::Mismatch("SHA-256 differs".to_owned()));
    }
    let cap = manifest.raw_bytes.min(MAX_RAW_BYTES);
    if manifest.raw_bytes > MAX_RAW_BYTES {
        return Err(ColdSegmentError::TooLarge(MAX_RAW_BYTES));
    }
    let mut body = Vec::new();
    flate2::read::ZlibDecoder::new(object)
        .take(cap + 1)
        .read_to_end(&mut body)
        .map_err(|error| ColdSegmentError::Corrupt(format!("inflating: {error}")))?;
    if body.len() as u64 > cap {
        return Err(ColdSegmentError::TooLarge(cap));
    }
    if body.len() as u64 != manifest.raw_bytes {
        return Err(ColdSegmentError::Mismatch(format!(
            "body of {} bytes, the manifest says {}",
            body.len(),
            manifest.raw_bytes
        )));
    }
    let Some(lines) = body.strip_suffix(b"\n") else {
        return Err(ColdSegmentError::Corrupt(
            "body does not end with a newline".to_owned(),
        ));
    };
    let mut entries = Vec::new();
    let mut frontier = Frontier::new();
    for line in lines.split(|byte| *byte == b'\n') {
        let entry: ColdEntry = serde_json::from_slice(line).map_err(|error| {
            ColdSegmentError::Corrupt(format!("entry {}: {error}", entries.len()))
        })?;
        if entry_bytes(&entry) != line {
            return Err(ColdSegmentError::Corrupt(format!(
                "entry {} is not in canonical form",
                entries.len()
            )));
        }
        if entry.tenant != manifest.tenant
            || entry.pcs_id < manifest.first_pcs_id
            || entry.pcs_id > manifest.last_pcs_id
        {
            return Err(ColdSegmentError::Mismatch(format!(
                "entry {} is outside the manifest's tenant or key range",
                entries.len()
            )));
        }
        frontier.append(merkle::leaf_hash(line));
        entries.push(entry);
    }
    if entries.len() as u64 != manifest.entries {
        return Err(ColdSegmentError::Mismatch(format!(
            "{} entries, the manifest says {}",
            entries.len(),
            manifest.entries
        )));
    }
    if hex::encode(frontier.root()) != manifest.merkle_root {
        return Err(ColdSegmentError::Mismatch("Merkle root differs".to_owned()));
    }
    Ok(entries)
}

/// The Merkle root of `entries` in the given order (for checks and tests).
pub fn entries_root(entries: &[ColdEntry]) -> Hash {
    let mut frontier = Frontier::new();
    for entry in entries {
        frontier.append(merkle::leaf_hash(&entry_bytes(entry)));
    }
    frontier.root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn entry(tenant: &str, pcs_id: &str, decided_at_ms: i64) -> ColdEntry {
        ColdEntry {
            tenant: tenant.to_owned(),
            pcs_id: pcs_id.to_owned(),
            signed_digest: "ab".repeat(32),
            outcome_code: "accepted".to_owned(),
            outcome: json!({"accepted": true, "escalated": false, "reason": "ok"}),
            first_topic: "flk.submissions".to_owned(),
            first_partition: 3,
            first_offset: 42,
            received_at_ms: decided_at_ms - 5,
            decided_at_ms,
            expires_at_ms: decided_at_ms + 1_000,
        }
    }

    #[test]
    fn a_packed_segment_unpacks_to_its_entries_sorted_by_key() {
        let entries = vec![
            entry("t", "b", 20),
            entry("t", "a", 10),
            entry("t", "c", 30),
        ];
        let segment = pack(&entries, 6).expect("pack");
        let manifest = &segment.manifest;
        assert_eq!(manifest.entries, 3);
        assert_eq!(
            (
                manifest.first_pcs_id.as_str(),
                manifest.last_pcs_id.as_str()
            ),
            ("a", "c")
        );
        assert_eq!(
            (manifest.min_decided_at_ms, manifest.max_decided_at_ms),
            (10, 30)
        );
        assert_eq!(manifest.compressed_bytes, segment.object.len() as u64);
        let back = unpack(&segment.object, manifest).expect("unpack");
        let ids: Vec<&str> = back.iter().map(|e| e.pcs_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(hex::encode(entries_root(&back)), manifest.merkle_root);
        // The same rows in any order give the same object.
        let again = pack(
            &[entries[2].clone(), entries[0].clone(), entries[1].clone()],
            6,
        )
        .expect("pack");
        assert_eq!(again.object, segment.object);
    }

    #[test]
    fn one_segment_holds_one_tenant() {
        assert_eq!(pack(&[], 6).unwrap_err(), ColdSegmentError::Empty);
        assert!(matches!(
            pack(&[entry("t", "a", 1), entry("u", "b", 1)], 6),
            Err(ColdSegmentError::MixedTenants(..))
        ));
    }

    #[test]
    fn a_flipped_bit_or_a_doctored_manifest_is_refused() {
        let segment = pack(&[entry("t", "a", 1), entry("t", "b", 2)], 6).expect("pack");
        let mut object = segment.object.clone();
        let middle = object.len() / 2;
        object[middle] ^= 1;
        assert!(matches!(
            unpack(&object, &segment.manifest),
            Err(ColdSegmentError::Mismatch(_))
        ));
        assert!(matches!(
            unpack(&segment.object[1..], &segment.manifest),
            Err(ColdSegmentError::Mismatch(_))
        ));
        let mut manifest = segment.manifest.clone();
        manifest.merkle_root = "00".repeat(32);
        assert!(matches!(
            unpack(&segment.object, &manifest),
            Err(ColdSegmentError::Mismatch(_))
        ));
        let mut manifest = segment.manifest.clone();
        manifest.tenant = "u".to_owned();
        assert!(matches!(
            unpack(&segment.object, &manifest),
            Err(ColdSegmentError::Mismatch(_))
        ));
        let mut manifest = segment.manifest.clone();
        manifest.codec = "zstd".to_owned();
        assert!(matches!(
            unpack(&segment.object, &manifest),
            Err(ColdSegmentError::Unsupported(_))
        ));
    }

    #[test]
    fn a_body_that_inflates_past_its_manifest_is_refused() {
        // A consistent manifest over a zlib bomb: its claimed size is small, the body is not.
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(9));
        encoder.write_all(&vec![b' '; 1 << 20]).expect("write");
        let object = encoder.finish().expect("finish");
        let manifest = Manifest {
            format: FORMAT_V1.to_owned(),
            tenant: "t".to_owned(),
            entries: 1,
            first_pcs_id: "a".to_owned(),
            last_pcs_id: "a".to_owned(),
            min_decided_at_ms: 0,
            max_decided_at_ms: 0,
            codec: CODEC_ZLIB.to_owned(),
            level: 9,
            object_sha256: hex::encode(Sha256::digest(&object)),
            raw_bytes: 100,
            compressed_bytes: object.len() as u64,
            merkle_root: "00".repeat(32),
        };
        assert_eq!(
            unpack(&object, &manifest).unwrap_err(),
            ColdSegmentError::TooLarge(100)
        );
        let mut huge = manifest.clone();
        huge.raw_bytes = MAX_RAW_BYTES + 1;
        assert_eq!(
            unpack(&object, &huge).unwrap_err(),
            ColdSegmentError::TooLarge(MAX_RAW_BYTES)
        );
    }

    proptest! {
        #[test]
        fn pack_then_unpack_is_the_identity_on_sorted_entries(
            ids in proptest::collection::btree_set("[0-9a-f]{1,64}", 1..40),
            level in 0u32..=9,
            reason in "\\PC{0,40}",
        ) {
            let entries: Vec<ColdEntry> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let mut e = entry("tenant:x", id, i as i64);
                    e.outcome = json!({"accepted": i % 2 == 0, "reason": reason.clone()});
                    e
                })
                .collect();
            let segment = pack(&entries, level).expect("pack");
            let back = unpack(&segment.object, &segment.manifest).expect("unpack");
            prop_assert_eq!(back, entries);
        }
    }
}
