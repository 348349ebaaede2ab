//! The decision event and its versioned binary envelope (the value of `flk.decisions` records).
//!
//! Layout: `b"FLKD"` magic, schema version (u16 big-endian), CRC-32 of the body (u32 big-endian),
//! then the body: the [`DecisionEvent`] in bincode's standard configuration. Decoding checks all
//! four and caps the body size, so a wrong version, a truncated record or a flipped bit is an error,
//! never a panic and never a silently wrong event.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::decide::Verdict;

/// Magic bytes that start every envelope.
pub const ENVELOPE_MAGIC: &[u8; 4] = b"FLKD";
/// The schema version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;
/// Largest body we agree to decode (a decision is a few hundred bytes; this bounds a hostile record).
pub const MAX_ENVELOPE_BODY: usize = 64 * 1024;
const HEADER_LEN: usize = 4 + 2 + 4;

/// Where a submission sits in the write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceCoordinates {
    /// Topic name, prefix included.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// How a submission reached the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmissionSource {
    /// Through the HTTP gateway.
    Gateway,
    /// Produced straight to Kafka.
    Kafka,
    /// Mirrored from another region.
    Replica {
        /// Region that first logged it.
        origin_region: String,
        /// Partition in the origin's topic.
        origin_partition: i32,
        /// Offset in the origin's topic.
        origin_offset: i64,
        /// How many times it has been mirrored.
        hops: u32,
    },
}

/// One decision per submission: the event the projections fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    /// The submission this decides.
    pub source: SourceCoordinates,
    /// How the submission arrived.
    pub submission_source: SubmissionSource,
    /// Tenant the submission was scoped to.
    pub tenant: String,
    /// Claimed `pcs_id`, when the body decoded.
    pub pcs_id_opt: Option<String>,
    /// SHA-256 of the canonical signed payload, when the body decoded.
    pub signed_digest_opt: Option<[u8; 32]>,
    /// The decision.
    pub verdict: Verdict,
    /// Version of the tenant's verification parameters that applied.
    pub params_version: u32,
    /// Id of the key that verified the signature.
    pub key_id_opt: Option<String>,
    /// Region that decided.
    pub region: String,
    /// When the submission was received, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// When the decision was made, ms since the Unix epoch.
    pub decided_at_ms: i64,
    /// W3C trace context carried from the submission.
    pub traceparent_opt: Option<String>,
}

/// Why bytes are not a decision envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// Shorter than the fixed header.
    #[error("envelope truncated: {0} bytes")]
    Truncated(usize),
    /// Does not start with the magic bytes.
    #[error("not a decision envelope (bad magic)")]
    BadMagic,
    /// Written by a schema version this build does not read.
    #[error("unsupported envelope version {0} (this build reads {ENVELOPE_VERSION})")]
    UnsupportedVersion(u16),
    /// Body larger than [`MAX_ENVELOPE_BODY`].
    #[error("envelope body too large: {0} bytes")]
    TooLarge(usize),
    /// The body does not match its checksum.
    #[error("envelope checksum mismatch")]
    ChecksumMismatch,
    /// The body does not decode as a decision event.
    #[error("envelope body does not decode: {0}")]
    Body(String),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENVELOPE_BODY>()
}

impl DecisionEvent {
    /// Encodes into the versioned envelope.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let body = bincode::serde::encode_to_vec(self, bincode_config())
            .map_err(|error| EnvelopeError::Body(error.to_string()))?;
        if body.len() > MAX_ENVELOPE_BODY {
            return Err(EnvelopeError::TooLarge(body.len()));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.extend_from_slice(&ENVELOPE_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes an envelope; any defect is an [`EnvelopeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() < HEADER_LEN {
            return Err(EnvelopeError::Truncated(bytes.len()));
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if &header[..4] != ENVELOPE_MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = u16::from_be_bytes([header[4], header[5]]);
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        if body.len() > MAX_ENVELOPE_BODY {
            return Err(EnvelopeError::TooLarge(body.len()));
        }
        let checksum = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
        if crc32fast::hash(body) != checksum {
            return Err(EnvelopeError::ChecksumMismatch);
        }
        let (event, used) = bincode::serde::decode_from_slice(body, bincode_config())
            .map_err(|error| EnvelopeError::Body(error.to_string()))?;
        if used != body.len() {
            return Err(EnvelopeError::Body(format!(
                "{} trailing bytes",
                body.len() - used
            )));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Outcome;
    use proptest::prelude::*;

    fn sample() -> DecisionEvent {
        DecisionEvent {
            source: SourceCoordinates {
                topic: "flk.submissions".into(),
                partition: 3,
                offset: 42,
            },
            submission_source: SubmissionSource::Replica {
                origin_region: "eu".into(),
                origin_partition: 1,
                origin_offset: 7,
                hops: 1,
            },
            tenant: "acme".into(),
            pcs_id_opt: Some("abc".into()),
            signed_digest_opt: Some([7; 32]),
            verdict: Verdict::Verified {
                outcome: Outcome {
                    accepted: true,
                    escalated: true,
                    recomputed_d_hat_opt: Some(1.0),
                    recomputed_budget_opt: None,
                    reason_opt: Some("regime mismatch: claimed=sticky, expected=mixed".into()),
                },
            },
            params_version: 2,
            key_id_opt: Some("k1".into()),
            region: "us".into(),
            received_at_ms: 1_700_000_000_000,
            decided_at_ms: 1_700_000_000_005,
            traceparent_opt: None,
        }
    }

    #[test]
    fn round_trip() {
        let event = sample();
        assert_eq!(
            DecisionEvent::decode(&event.encode().unwrap()).unwrap(),
            event
        );
    }

    #[test]
    fn defects_are_errors() {
        let bytes = sample().encode().unwrap();
        assert_eq!(
            DecisionEvent::decode(&bytes[..5]),
            Err(EnvelopeError::Truncated(5))
        );
        let mut wrong_version = bytes.clone();
        wrong_version[5] = 9;
        assert_eq!(
            DecisionEvent::decode(&wrong_version),
            Err(EnvelopeError::UnsupportedVersion(9))
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            DecisionEvent::decode(&flipped),
            Err(EnvelopeError::ChecksumMismatch)
        );
        let mut magic = bytes;
        magic[0] = b'X';
        assert_eq!(DecisionEvent::decode(&magic), Err(EnvelopeError::BadMagic));
    }

    /// `sample()` as encoded by the build before outcome classes (commit 9c3f5cc). The decision
    /// event did not change (the class is derived from the verdict, never carried), so version 1
    /// is still what this build writes, byte for byte, and it reads what the old build wrote.
    const V1_SAMPLE_HEX: &str = "464c4b440001a8de74c60f666c6b2e7375626d697373696f6e730654020265\
        75020e010461636d65010361626301070707070707070707070707070707070707070707070707070707070707\
        070703010101000000000000f03f00012f726567696d65206d69736d617463683a20636c61696d65643d737469\
        636b792c2065787065637465643d6d697865640201026b31027573fd00d0ca9f17030000fd0ad0ca9f1703000000";

    #[test]
    fn version_1_bytes_from_the_previous_build_still_decode_and_encode() {
        let old_bytes = hex::decode(V1_SAMPLE_HEX).unwrap();
        assert_eq!(ENVELOPE_VERSION, 1);
        assert_eq!(DecisionEvent::decode(&old_bytes).unwrap(), sample());
        assert_eq!(sample().encode().unwrap(), old_bytes);
        assert_eq!(
            sample().verdict.class(),
            crate::outcome::OutcomeClass::Escalated
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = DecisionEvent::decode(&bytes);
        }

        #[test]
        fn any_truncation_is_an_error(cut in 0usize..200) {
            let bytes = sample().encode().unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(DecisionEvent::decode(&bytes[..cut]).is_err());
        }
    }
}
