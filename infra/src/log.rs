//! The seam between actors and the partitioned log: records from assigned partitions, positions
//! to commit, and produce with an acknowledgement.
//!
//! Actors see only these types, never rdkafka's: [`crate::kafka::source`] and
//! [`crate::kafka::sink`] implement them over Kafka, [`memory`] in memory, so an actor's logic
//! (batching, lanes, fencing, revocation) is unit-tested in milliseconds without a broker.
//!
//! Revocation is synchronous: a [`SourceEvent::Revoked`] carries a [`Release`], and the log does
//! not take the partitions away until the actor drops or releases it (or a timeout passes). An
//! actor therefore finishes or abandons its work on a partition and stores its last position while
//! the partition is still its own; after the release it never touches that partition again.

pub mod memory;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;

/// One record read from a partition of the log (owned; no client types leak out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key, when it has one.
    pub key_opt: Option<Vec<u8>>,
    /// Record value (empty when the record has none).
    pub payload: Vec<u8>,
    /// Headers in record order (a name may repeat; lookups take the first).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Log timestamp in milliseconds since the epoch, when the record has one.
    pub timestamp_ms_opt: Option<i64>,
}

/// The tenant a record with an unreadable (non-UTF-8) tenant header names. Tenant names never
/// contain `/`, so no configured tenant has it and the record is refused, rather than being
/// taken for the default tenant's.
pub const UNREADABLE_TENANT: &str = "/unreadable";

impl LogRecord {
    /// The tenant the record names: its tenant header, `default` when it has none,
    /// [`UNREADABLE_TENANT`] when the header is not UTF-8.
    pub fn tenant(&self) -> &str {
        match self
            .headers
            .iter()
            .find(|(key, _)| key == crate::kafka::headers::TENANT)
        {
            None => "default",
            Some((_, value)) => std::str::from_utf8(value).unwrap_or(UNREADABLE_TENANT),
        }
    }

    /// The value of header `name` as UTF-8, if present and valid.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// What a source tells its actor, in the order it happened.
#[derive(Debug)]
pub enum SourceEvent {
    /// Partitions newly assigned to this consumer; their records follow.
    Assigned(Vec<i32>),
    /// Partitions about to be taken away. The log waits until `release` is released or dropped.
    Revoked {
        /// The partitions.
        partitions: Vec<i32>,
        /// Release it once nothing of these partitions is in flight any more.
        release: Release,
    },
    /// A record of an assigned partition.
    Record(LogRecord),
    /// The source failed; the actor should stop (its supervisor restarts it with a new source).
    Failed(LogError),
}

/// Hands partitions back to the log; dropping it releases too (a dead actor never blocks a
/// rebalance longer than the timeout).
#[derive(Debug)]
pub struct Release {
    /// Signalled (or dropped) when released.
    done: mpsc::SyncSender<()>,
}

impl Release {
    /// A release and the waiting end the log blocks on.
    pub fn new() -> (Release, ReleaseWait) {
        let (done, waiting) = mpsc::sync_channel(1);
        (Release { done }, ReleaseWait { waiting })
    }

    /// Gives the partitions back now.
    pub fn release(self) {
        let _ = self.done.try_send(());
    }
}

/// The log's side of a [`Release`].
#[derive(Debug)]
pub struct ReleaseWait {
    /// Receives the release.
    waiting: mpsc::Receiver<()>,
}

impl ReleaseWait {
    /// Blocks the calling thread until released (or dropped); `false` when `timeout` passed first.
    pub fn wait(self, timeout: Duration) -> bool {
        !matches!(
            self.waiting.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// Whether it has been released (or dropped) already, without blocking.
    pub fn is_released(&self) -> bool {
        !matches!(self.waiting.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

/// Where an actor stores the positions it has finished (committed to the log later, in the
/// background: at-least-once).
pub trait Positions: Send + Sync + std::fmt::Debug {
    /// Marks every record of `partition` up to and including `offset` as done.
    fn store(&self, partition: i32, offset: i64) -> Result<(), LogError>;

    /// Records behind the end of each assigned partition, as last reported by the log.
    fn lag(&self) -> HashMap<i32, i64>;
}

/// An open subscription: its events, and where to store positions.
#[derive(Debug)]
pub struct LogSource {
    /// Assignments, revocations and records, in order; closed when the source stops.
    pub events: tokio::sync::mpsc::Receiver<SourceEvent>,
    /// Position store of this subscription.
    pub positions: std::sync::Arc<dyn Positions>,
    /// Resolves once the source has fully stopped after `events` was dropped (for Kafka: the
    /// consumer left its group and committed its stored positions). Shutdown waits on it.
    pub closed: tokio::sync::oneshot::Receiver<()>,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// Destination topic.
    pub topic: String,
    /// Destination partition (`None`: chosen by key).
    pub partition_opt: Option<i32>,
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Acknowledgement of one produced record: resolves when the log has it (acks=all) or failed.
pub type Ack = BoxFuture<'static, Result<(), LogError>>;

/// Produces records with acknowledgement.
pub trait LogSink: Send + Sync + std::fmt::Debug {
    /// Queues `record`; the returned [`Ack`] resolves when it is durable. An `Err` here means it
    /// was not even queued (the local queue is full or the client is broken).
    fn produce(&self, record: OutgoingRecord) -> Result<Ack, LogError>;
}

/// Log failures, classified by what the caller must do.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LogError {
    /// The cluster is unreachable, a request timed out or a queue is full: retry later.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The partition is not assigned to this consumer (any more).
    #[error("partition {0} is not assigned to this consumer")]
    NotAssigned(i32),
    /// A setting is wrong or the client is broken: stop and fix the configuration.
    #[error("log client failed: {0}")]
    Fatal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_tenant_and_an_unreadable_header_names_none() {
        let record = |headers: Vec<(String, Vec<u8>)>| LogRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key_opt: None,
            payload: Vec::new(),
            headers,
            timestamp_ms_opt: None,
        };
        assert_eq!(record(Vec::new()).tenant(), "default");
        assert_eq!(
            record(vec![("flk-tenant".into(), b"acme".to_vec())]).tenant(),
            "acme"
        );
        assert_eq!(
            record(vec![("flk-tenant".into(), b"caf\xe9".to_vec())]).tenant(),
            UNREADABLE_TENANT
        );
    }

    #[test]
    fn a_release_ends_the_wait_and_so_does_dropping_it() {
        let (release, wait) = Release::new();
        assert!(!wait.is_released());
        release.release();
        assert!(wait.wait(Duration::from_secs(5)));

        let (release, wait) = Release::new();
        drop(release);
        assert!(wait.is_released());

        let (_release, wait) = Release::new();
        assert!(!wait.wait(Duration::from_millis(1)), "nobody released it");
    }

    #[test]
    fn header_lookup_takes_the_first_valid_value() {
        let record = LogRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key_opt: None,
            payload: Vec::new(),
            headers: vec![
                ("a".into(), b"1".to_vec()),
                ("a".into(), b"2".to_vec()),
                ("bad".into(), vec![0xff]),
            ],
            timestamp_ms_opt: None,
        };
        assert_eq!(record.header_str("a"), Some("1"));
        assert_eq!(record.header_str("bad"), None);
        assert_eq!(record.header_str("missing"), None);
    }
}
