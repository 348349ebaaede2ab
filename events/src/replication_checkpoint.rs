//! Replicator checkpoints: where a region's replicator got to, kept in the *target* region's
//! cluster (topic `<origin>.flk.checkpoints`, compacted, one record per stream and partition).
//!
//! Why the target keeps them: the source cluster's consumer-group offsets are the fast path, but
//! they can be lost (an empty group's offsets expire after `offsets.retention.minutes`, an
//! operator deletes the group, a restore brings back old ones). A replicator that lost them would
//! either start from the beginning (flooding the target with repeats) or from the end (skipping
//! records nobody shipped). MirrorMaker 2 keeps its source offsets in the target cluster for the
//! same reason. A checkpoint is written only after the target acked every record before it, so
//! starting from it never skips a record.
//!
//! The record is JSON with a type and a schema version, like the heartbeat, so a reader refuses
//! what it does not understand.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `type` every checkpoint carries.
pub const CHECKPOINT_TYPE: &str = "flk.replication.checkpoint";

/// The schema version this code writes and reads.
pub const CHECKPOINT_SCHEMA_VERSION: u32 = 1;

/// Largest checkpoint record accepted (a real one is under 200 bytes).
pub const MAX_CHECKPOINT_BYTES: usize = 1_024;

/// How far one replicator got in one partition of its local stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationCheckpoint {
    /// Always [`CHECKPOINT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Always [`CHECKPOINT_SCHEMA_VERSION`] for records this code writes.
    pub schema_version: u32,
    /// The region whose log is shipped (the replicator's own region).
    pub origin_region: String,
    /// The shipped stream: `submissions` or `heartbeats`.
    pub stream: String,
    /// Partition of the origin's topic.
    pub partition: i32,
    /// First offset of that partition not yet known to be shipped: every record before it was
    /// acked by the target (or left out on purpose, as a replica's record or an unreplicated
    /// tenant's is).
    pub next_offset: i64,
    /// When it was written, milliseconds since the Unix epoch (for operators reading it).
    pub written_at_ms: i64,
}

/// Why bytes are not a checkpoint.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// Larger than [`MAX_CHECKPOINT_BYTES`].
    #[error("checkpoint of {0} bytes is over the {MAX_CHECKPOINT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not the JSON of a checkpoint.
    #[error("not a replication checkpoint: {0}")]
    Malformed(String),
    /// A type or schema version this code does not read.
    #[error("unsupported replication checkpoint: type {kind}, schema version {schema_version}")]
    Unsupported {
        /// The `type` found.
        kind: String,
        /// The `schema_version` found.
        schema_version: u32,
    },
    /// Decoded, but a partition or offset no log has.
    #[error(
        "replication checkpoint out of range: partition {partition}, next offset {next_offset}"
    )]
    OutOfRange {
        /// The partition found.
        partition: i32,
        /// The offset found.
        next_offset: i64,
    },
}

impl ReplicationCheckpoint {
    /// The checkpoint of `origin_region`'s `stream`, `partition`: shipped up to `next_offset`.
    pub fn new(
        origin_region: &str,
        stream: &str,
        partition: i32,
        next_offset: i64,
        written_at_ms: i64,
    ) -> Self {
        ReplicationCheckpoint {
            kind: CHECKPOINT_TYPE.to_owned(),
            schema_version: CHECKPOINT_SCHEMA_VERSION,
            origin_region: origin_region.to_owned(),
            stream: stream.to_owned(),
            partition,
            next_offset,
            written_at_ms,
        }
    }

    /// The record key: one per stream and partition, so compaction keeps the newest of each.
    pub fn key(&self) -> String {
        checkpoint_key(&self.stream, self.partition)
    }

    /// The record value.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record value, refusing oversized, malformed, unknown-version and out-of-range
    /// records.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        if bytes.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge(bytes.len()));
        }
        let checkpoint: ReplicationCheckpoint = serde_json::from_slice(bytes)
            .map_err(|error| CheckpointError::Malformed(error.to_string()))?;
        if checkpoint.kind != CHECKPOINT_TYPE
            || checkpoint.schema_version != CHECKPOINT_SCHEMA_VERSION
        {
            return Err(CheckpointError::Unsupported {
                kind: checkpoint.kind,
                schema_version: checkpoint.schema_version,
            });
        }
        if checkpoint.partition < 0 || checkpoint.next_offset < 0 {
            return Err(CheckpointError::OutOfRange {
                partition: checkpoint.partition,
                next_offset: checkpoint.next_offset,
            });
        }
        Ok(checkpoint)
    }
}

/// The key of `stream`'s checkpoint for `partition`: `<stream>/<partition>`.
pub fn checkpoint_key(stream: &str, partition: i32) -> String {
    format!("{stream}/{partition}")
}

/// Where a replicator starts reading a partition, given the group's committed position, the
/// target's checkpoint and the partition's current end (all optional: any may be unknown).
///
/// The later of the two positions wins: both only ever point past records the target acked, so
/// the later one skips nothing and re-ships less. A checkpoint past the partition's end cannot
/// belong to this log (the topic was deleted and made again): it is ignored, so a recreated
/// topic is shipped from the group position or its start rather than skipped. `None` means
/// "leave the consumer's own choice" (the group position, or the start when there is none).
pub fn start_offset(
    committed_opt: Option<i64>,
    checkpoint_opt: Option<i64>,
    end_opt: Option<i64>,
) -> Option<i64> {
    let checkpoint = checkpoint_opt.filter(|next| end_opt.is_none_or(|end| *next <= end))?;
    match committed_opt {
        Some(committed) if committed >= checkpoint => None,
        _ => Some(checkpoint),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        let checkpoint = ReplicationCheckpoint::new("eu-west", "submissions", 3, 1_234, 17);
        assert_eq!(checkpoint.key(), "submissions/3");
        assert_eq!(
            String::from_utf8(checkpoint.encode()).unwrap_or_default(),
            r#"{"type":"flk.replication.checkpoint","schema_version":1,"origin_region":"eu-west","stream":"submissions","partition":3,"next_offset":1234,"written_at_ms":17}"#
        );
        assert_eq!(
            ReplicationCheckpoint::decode(&checkpoint.encode()),
            Ok(checkpoint)
        );
    }

    #[test]
    fn other_records_are_refused_with_the_reason() {
        assert!(matches!(
            ReplicationCheckpoint::decode(
                br#"{"type":"flk.heartbeat","schema_version":1,"region":"a","emitted_at_ms":1}"#
            ),
            Err(CheckpointError::Malformed(_))
        ));
        let mut newer = ReplicationCheckpoint::new("a", "submissions", 0, 1, 1);
        newer.schema_version = 2;
        assert_eq!(
            ReplicationCheckpoint::decode(&newer.encode()),
            Err(CheckpointError::Unsupported {
                kind: CHECKPOINT_TYPE.into(),
                schema_version: 2
            })
        );
        let negative = ReplicationCheckpoint::new("a", "submissions", 0, -5, 1);
        assert_eq!(
            ReplicationCheckpoint::decode(&negative.encode()),
            Err(CheckpointError::OutOfRange {
                partition: 0,
                next_offset: -5
            })
        );
        assert_eq!(
            ReplicationCheckpoint::decode(&vec![b' '; MAX_CHECKPOINT_BYTES + 1]),
            Err(CheckpointError::TooLarge(MAX_CHECKPOINT_BYTES + 1))
        );
    }

    #[test]
    fn the_later_position_wins() {
        // Group offsets lost: the checkpoint stops a flood from the start.
        assert_eq!(start_offset(None, Some(500), Some(900)), Some(500));
        // The group position is behind the checkpoint (it commits in the background).
        assert_eq!(start_offset(Some(480), Some(500), Some(900)), Some(500));
        // The group position is ahead (checkpoints are written once a tick): keep it.
        assert_eq!(start_offset(Some(520), Some(500), Some(900)), None);
        // No checkpoint yet: the consumer's own choice.
        assert_eq!(start_offset(Some(10), None, Some(900)), None);
        assert_eq!(start_offset(None, None, None), None);
        // End unknown: the checkpoint still counts.
        assert_eq!(start_offset(None, Some(7), None), Some(7));
    }

    #[test]
    fn a_checkpoint_past_the_end_belongs_to_an_older_topic() {
        assert_eq!(start_offset(None, Some(5_000), Some(40)), None);
        assert_eq!(start_offset(Some(3), Some(5_000), Some(40)), None);
        // Exactly at the end: everything there was shipped.
        assert_eq!(start_offset(None, Some(40), Some(40)), Some(40));
    }

    proptest! {
        #[test]
        fn the_start_never_skips_past_both_positions(
            committed_opt in proptest::option::of(0i64..1_000),
            checkpoint_opt in proptest::option::of(0i64..1_000),
            end in 0i64..1_000,
        ) {
            match start_offset(committed_opt, checkpoint_opt, Some(end)) {
                // Only a checkpoint inside the log moves the start, and only forward.
                Some(start) => {
                    prop_assert_eq!(Some(start), checkpoint_opt);
                    prop_assert!(start <= end);
                    prop_assert!(committed_opt.is_none_or(|committed| committed < start));
                }
                None => prop_assert!(
                    checkpoint_opt.is_none_or(|checkpoint| checkpoint > end
                        || committed_opt.is_some_and(|committed| committed >= checkpoint))
                ),
            }
        }

        #[test]
        fn every_checkpoint_reads_back(
            region in "[a-z0-9-]{1,32}",
            partition in 0i32..10_000,
            next_offset in 0i64..i64::MAX,
            written_at_ms in 0i64..i64::MAX,
        ) {
            let checkpoint =
                ReplicationCheckpoint::new(&region, "submissions", partition, next_offset, written_at_ms);
            prop_assert_eq!(ReplicationCheckpoint::decode(&checkpoint.encode()), Ok(checkpoint));
        }
    }
}
