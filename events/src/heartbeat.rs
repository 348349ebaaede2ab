//! Replication heartbeats: one small record a second per region in `flk.heartbeats`, mirrored to
//! the other regions like data (MirrorMaker 2 keeps a `heartbeats` topic for the same reason).
//! The receiving region subtracts the emission time from its own clock to measure how far behind
//! the link is, and notices a link that went quiet because heartbeats stop arriving.
//!
//! The record is JSON with a type and a schema version, so a reader can refuse what it does not
//! understand instead of guessing.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `type` every heartbeat carries.
pub const HEARTBEAT_TYPE: &str = "flk.heartbeat";

/// The schema version this code writes and reads.
pub const HEARTBEAT_SCHEMA_VERSION: u32 = 1;

/// Largest heartbeat record accepted (a real one is under 100 bytes).
pub const MAX_HEARTBEAT_BYTES: usize = 1_024;

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Always [`HEARTBEAT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Always [`HEARTBEAT_SCHEMA_VERSION`] for records this code writes.
    pub schema_version: u32,
    /// The region that emitted it.
    pub region: String,
    /// Emission time, milliseconds since the Unix epoch, by the emitting region's clock.
    pub emitted_at_ms: i64,
}

/// Why bytes are not a heartbeat.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeartbeatError {
    /// Larger than [`MAX_HEARTBEAT_BYTES`].
    #[error("heartbeat of {0} bytes is over the {MAX_HEARTBEAT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not the JSON of a heartbeat.
    #[error("not a heartbeat: {0}")]
    Malformed(String),
    /// A type or schema version this code does not read.
    #[error("unsupported heartbeat: type {kind}, schema version {schema_version}")]
    Unsupported {
        /// The `type` found.
        kind: String,
        /// The `schema_version` found.
        schema_version: u32,
    },
}

impl Heartbeat {
    /// A heartbeat of `region` emitted at `emitted_at_ms`.
    pub fn new(region: &str, emitted_at_ms: i64) -> Self {
        Heartbeat {
            kind: HEARTBEAT_TYPE.to_owned(),
            schema_version: HEARTBEAT_SCHEMA_VERSION,
            region: region.to_owned(),
            emitted_at_ms,
        }
    }

    /// The record value.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record value, refusing oversized, malformed and unknown-version records.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeartbeatError> {
        if bytes.len() > MAX_HEARTBEAT_BYTES {
            return Err(HeartbeatError::TooLarge(bytes.len()));
        }
        let heartbeat: Heartbeat = serde_json::from_slice(bytes)
            .map_err(|error| HeartbeatError::Malformed(error.to_string()))?;
        if heartbeat.kind != HEARTBEAT_TYPE || heartbeat.schema_version != HEARTBEAT_SCHEMA_VERSION
        {
            return Err(HeartbeatError::Unsupported {
                kind: heartbeat.kind,
                schema_version: heartbeat.schema_version,
            });
        }
        Ok(heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reads_back_as_written() {
        let heartbeat = Heartbeat::new("eu-west", 1_796_000_000_123);
        assert_eq!(
            String::from_utf8(heartbeat.encode()).unwrap_or_default(),
            r#"{"type":"flk.heartbeat","schema_version":1,"region":"eu-west","emitted_at_ms":1796000000123}"#
        );
        assert_eq!(Heartbeat::decode(&heartbeat.encode()), Ok(heartbeat));
    }

    #[test]
    fn other_records_are_refused_with_the_reason() {
        assert!(matches!(
            Heartbeat::decode(b"{\"pcs_id\":\"x\"}"),
            Err(HeartbeatError::Malformed(_))
        ));
        assert_eq!(
            Heartbeat::decode(
                br#"{"type":"flk.heartbeat","schema_version":2,"region":"a","emitted_at_ms":1}"#
            ),
            Err(HeartbeatError::Unsupported {
                kind: "flk.heartbeat".into(),
                schema_version: 2
            })
        );
        assert_eq!(
            Heartbeat::decode(&vec![b' '; MAX_HEARTBEAT_BYTES + 1]),
            Err(HeartbeatError::TooLarge(MAX_HEARTBEAT_BYTES + 1))
        );
    }
}
