//! The ring change as an event of the log: `flk migrate` appends a [`RingChanged`] to
//! `<prefix>flk.ring` after each change it commits to `ring_state`, so the history of the hot
//! tier's shape sits in Kafka beside the records it placed, readable by any consumer (`kcat -C -t
//! flk.ring`), and survives the Postgres schema it was made in.
//!
//! Postgres stays the source of truth that processes follow; the event is its record. Each event
//! carries the whole state (every ring it names, in full), so a consumer needs only the latest
//! one, and an event that failed to reach Kafka is made good by the next. Encoding: JSON with a
//! type and a schema version, keyed by the Postgres schema whose ring changed.

use serde::{Deserialize, Serialize};

use crate::ring::RingSpec;
use crate::ring_store::{Phase, RingState};

/// The `type` of a [`RingChanged`].
pub const RING_CHANGED_TYPE: &str = "flk.ring.changed";

/// The schema version this code writes and reads.
pub const RING_CHANGED_VERSION: u32 = 1;

/// The ring state after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingChanged {
    /// Always [`RING_CHANGED_TYPE`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// Always [`RING_CHANGED_VERSION`] for events this code writes.
    pub schema_version: u32,
    /// The Postgres schema whose ring changed (also the record key).
    pub store_schema: String,
    /// `ring_state.state_version` after the change (grows by one per change).
    pub state_version: i64,
    /// Ring version reads go through.
    pub read_version: i64,
    /// Ring versions writes go through (read version first), each with its spec.
    pub writes: Vec<RingVersion>,
    /// The migration that made the change (`None` for the first recorded ring).
    pub migration_id_opt: Option<String>,
    /// The phase the migration entered (`None` for the first recorded ring).
    pub phase_opt: Option<Phase>,
    /// When the change was committed, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// One ring version and its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingVersion {
    /// The version number.
    pub version: i64,
    /// Its nodes, weights and points.
    pub spec: RingSpec,
}

/// Why bytes are not a [`RingChanged`] this code can read.
#[derive(Debug, thiserror::Error)]
pub enum RingEventError {
    /// Not JSON of the expected shape.
    #[error("not a ring event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A different event type, or a schema version this code does not know.
    #[error("unsupported ring event {event_type} version {schema_version}")]
    Unsupported {
        /// The type it claims.
        event_type: String,
        /// The version it claims.
        schema_version: u32,
    },
}

impl RingChanged {
    /// The event of `state`, just committed in `store_schema` by `phase_opt`'s step.
    pub fn of(state: &RingState, store_schema: &str, phase_opt: Option<Phase>, at_ms: i64) -> Self {
        RingChanged {
            event_type: RING_CHANGED_TYPE.to_owned(),
            schema_version: RING_CHANGED_VERSION,
            store_schema: store_schema.to_owned(),
            state_version: state.state_version,
            read_version: state.read_version,
            writes: state
                .writes
                .iter()
                .map(|(version, spec)| RingVersion {
                    version: *version,
                    spec: spec.clone(),
                })
                .collect(),
            migration_id_opt: state.migration_id_opt.clone(),
            phase_opt,
            at_ms,
        }
    }

    /// The record value.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and vectors always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record value, refusing other types and unknown versions.
    pub fn decode(bytes: &[u8]) -> Result<Self, RingEventError> {
        let event: RingChanged = serde_json::from_slice(bytes)?;
        if event.event_type != RING_CHANGED_TYPE || event.schema_version != RING_CHANGED_VERSION {
            return Err(RingEventError::Unsupported {
                event_type: event.event_type,
                schema_version: event.schema_version,
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::WeightedNode;

    fn state() -> RingState {
        let spec = |ids: &[&str]| {
            RingSpec::new(
                ids.iter().map(|id| WeightedNode::unweighted(*id)).collect(),
                64,
            )
        };
        RingState {
            state_version: 7,
            read_version: 2,
            writes: vec![(2, spec(&["a", "b"])), (3, spec(&["a", "b", "c"]))],
            migration_id_opt: Some("m-1".into()),
        }
    }

    #[test]
    fn round_trips_and_names_its_type() {
        let event = RingChanged::of(&state(), "flk", Some(Phase::DualWrite), 1_000);
        let bytes = event.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""type":"flk.ring.changed""#), "{text}");
        assert!(text.contains(r#""phase_opt":"dual_write""#), "{text}");
        assert_eq!(RingChanged::decode(&bytes).unwrap(), event);
    }

    #[test]
    fn refuses_other_types_versions_and_garbage() {
        let mut event = RingChanged::of(&state(), "flk", None, 1);
        event.schema_version = 2;
        assert!(matches!(
            RingChanged::decode(&event.encode()),
            Err(RingEventError::Unsupported { .. })
        ));
        event.schema_version = RING_CHANGED_VERSION;
        event.event_type = "flk.other".into();
        assert!(RingChanged::decode(&event.encode()).is_err());
        assert!(matches!(
            RingChanged::decode(b"{\"type\":"),
            Err(RingEventError::Malformed(_))
        ));
    }
}
