//! An in-memory log for unit tests of actor logic: the test plays the broker (assigns, pushes
//! records, revokes and waits for the release, holds or fails acknowledgements) and reads back
//! what the actor stored and produced. Like librdkafka, storing a position for a partition that
//! is not assigned fails with [`LogError::NotAssigned`], so a test catches an actor that touches
//! a partition after releasing it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot};

use super::{
    Ack, LogError, LogRecord, LogSink, LogSource, OutgoingRecord, Positions, Release, SourceEvent,
};

/// Events a test may queue before the actor reads them.
const EVENT_CAPACITY: usize = 4_096;

/// The broker side of an in-memory source (cheap to clone).
#[derive(Debug, Clone)]
pub struct SourceControl {
    /// Topic the records claim to come from.
    topic: String,
    /// Where events go to the actor.
    events: mpsc::Sender<SourceEvent>,
    /// Assignment, positions and next offsets, shared with the actor's [`Positions`].
    state: Arc<Mutex<SourceState>>,
}

/// What the in-memory broker knows.
#[derive(Debug, Default)]
struct SourceState {
    /// Partitions currently assigned (stores to others fail).
    assigned: HashSet<i32>,
    /// Last position stored per partition.
    stored: BTreeMap<i32, i64>,
    /// Next offset per partition.
    next_offset: HashMap<i32, i64>,
}

/// The actor side's position store.
#[derive(Debug)]
struct MemoryPositions {
    /// Shared with the control.
    state: Arc<Mutex<SourceState>>,
}

fn lock(state: &Mutex<SourceState>) -> MutexGuard<'_, SourceState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens an in-memory subscription to `topic`: the source for the actor, the control for the test.
pub fn source(topic: &str) -> (LogSource, SourceControl) {
    let (events, receiver) = mpsc::channel(EVENT_CAPACITY);
    let state = Arc::new(Mutex::new(SourceState::default()));
    // Nothing to wind down in memory: closed from the start.
    let (closing, closed) = oneshot::channel();
    let _ = closing.send(());
    let source = LogSource {
        events: receiver,
        positions: Arc::new(MemoryPositions {
            state: state.clone(),
        }),
        closed,
    };
    let control = SourceControl {
        topic: topic.to_owned(),
        events,
        state,
    };
    (source, control)
}

impl Positions for MemoryPositions {
    fn store(&self, partition: i32, offset: i64) -> Result<(), LogError> {
        let mut state = lock(&self.state);
        if !state.assigned.contains(&partition) {
            return Err(LogError::NotAssigned(partition));
        }
        state.stored.insert(partition, offset);
        Ok(())
    }

    fn lag(&self) -> HashMap<i32, i64> {
        let state = lock(&self.state);
        state
            .assigned
            .iter()
            .map(|partition| {
                let end = state.next_offset.get(partition).copied().unwrap_or(0);
                let done = state.stored.get(partition).map_or(0, |offset| offset + 1);
                (*partition, end - done)
            })
            .collect()
    }
}

impl SourceControl {
    /// Assigns `partitions` to the actor.
    pub async fn assign(&self, partitions: &[i32]) {
        lock(&self.state).assigned.extend(partitions);
        self.send(SourceEvent::Assigned(partitions.to_vec())).await;
    }

    /// Appends a record with `payload` and `headers` to `partition`; returns its offset.
    pub async fn push(&self, partition: i32, payload: &[u8], headers: &[(&str, &str)]) -> i64 {
        let offset = {
            let mut state = lock(&self.state);
            let next = state.next_offset.entry(partition).or_insert(0);
            let offset = *next;
            *next += 1;
            offset
        };
        let record = LogRecord {
            topic: self.topic.clone(),
            partition,
            offset,
            key_opt: None,
            payload: payload.to_vec(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
                .collect(),
            timestamp_ms_opt: Some(0),
        };
        self.send(SourceEvent::Record(record)).await;
        offset
    }

    /// Revokes `partitions` and waits (up to `timeout`) until the actor releases them; they are
    /// unassigned either way afterwards, as librdkafka does. Returns whether they were released.
    pub async fn revoke(&self, partitions: &[i32], timeout: Duration) -> bool {
        let (release, wait) = Release::new();
        self.send(SourceEvent::Revoked {
            partitions: partitions.to_vec(),
            release,
        })
        .await;
        let released = tokio::task::spawn_blocking(move || wait.wait(timeout))
            .await
            .unwrap_or(false);
        let mut state = lock(&self.state);
        for partition in partitions {
            state.assigned.remove(partition);
        }
        released
    }

    /// Tells the actor its source failed.
    pub async fn fail(&self, error: LogError) {
        self.send(SourceEvent::Failed(error)).await;
    }

    /// The last position stored per partition.
    pub fn stored(&self) -> BTreeMap<i32, i64> {
        lock(&self.state).stored.clone()
    }

    /// Whether the actor has dropped its source (it stopped).
    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    async fn send(&self, event: SourceEvent) {
        // A closed source means the actor stopped; a test sees that through `is_closed`.
        let _ = self.events.send(event).await;
    }
}

/// How an in-memory sink acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckMode {
    /// Every record is acknowledged at once.
    Immediate,
    /// Acknowledgements wait for [`MemorySink::ack_held`] or [`MemorySink::fail_held`].
    Held,
    /// Every produce fails to queue with this error.
    RefuseQueue(LogError),
}

/// An in-memory sink: keeps what was produced.
#[derive(Debug)]
pub struct MemorySink {
    /// Produced records, acknowledgement mode and held acknowledgements.
    state: Mutex<SinkState>,
}

/// What the sink holds.
#[derive(Debug)]
struct SinkState {
    /// How to acknowledge.
    mode: AckMode,
    /// Every record queued, in order.
    produced: Vec<OutgoingRecord>,
    /// Acknowledgements not yet given, oldest first.
    held: Vec<oneshot::Sender<Result<(), LogError>>>,
}

impl MemorySink {
    /// A sink acknowledging per `mode`.
    pub fn new(mode: AckMode) -> Arc<Self> {
        Arc::new(MemorySink {
            state: Mutex::new(SinkState {
                mode,
                produced: Vec::new(),
                held: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes how later records are acknowledged.
    pub fn set_mode(&self, mode: AckMode) {
        self.lock().mode = mode;
    }

    /// Every record queued so far.
    pub fn produced(&self) -> Vec<OutgoingRecord> {
        self.lock().produced.clone()
    }

    /// Acknowledgements held right now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// Acknowledges the oldest `count` held records.
    pub fn ack_held(&self, count: usize) {
        let mut state = self.lock();
        let count = count.min(state.held.len());
        for sender in state.held.drain(..count) {
            let _ = sender.send(Ok(()));
        }
    }

    /// Fails every held acknowledgement with `error`.
    pub fn fail_held(&self, error: LogError) {
        for sender in self.lock().held.drain(..) {
            let _ = sender.send(Err(error.clone()));
        }
    }
}

impl LogSink for MemorySink {
    fn produce(&self, record: OutgoingRecord) -> Result<Ack, LogError> {
        let mut state = self.lock();
        if let AckMode::RefuseQueue(error) = &state.mode {
            return Err(error.clone());
        }
        state.produced.push(record);
        let (sender, receiver) = oneshot::channel();
        match state.mode {
            AckMode::Held => state.held.push(sender),
            _ => {
                let _ = sender.send(Ok(()));
            }
        }
        Ok(receiver
            .map(|answer| {
                answer.unwrap_or_else(|_| Err(LogError::Unavailable("sink dropped".into())))
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_are_refused_once_a_partition_is_released() {
        let (mut source, control) = source("topic");
        control.assign(&[0, 1]).await;
        assert!(matches!(
            source.events.recv().await,
            Some(SourceEvent::Assigned(_))
        ));
        assert_eq!(control.push(1, b"x", &[("h", "v")]).await, 0);
        assert_eq!(control.push(1, b"y", &[]).await, 1);
        source.positions.store(1, 0).unwrap();
        assert_eq!(source.positions.lag()[&1], 1);

        let revoking = tokio::spawn({
            let control = control.clone();
            async move { control.revoke(&[1], Duration::from_secs(5)).await }
        });
        let mut release_opt = None;
        while let Some(event) = source.events.recv().await {
            if let SourceEvent::Revoked { release, .. } = event {
                release_opt = Some(release);
                break;
            }
        }
        // Still ours until released: the last store goes through.
        source.positions.store(1, 1).unwrap();
        release_opt.unwrap().release();
        assert!(revoking.await.unwrap());
        assert_eq!(source.positions.store(1, 2), Err(LogError::NotAssigned(1)));
        assert_eq!(control.stored().get(&1), Some(&1));
    }

    #[tokio::test]
    async fn held_acks_resolve_in_order_of_release() {
        let sink = MemorySink::new(AckMode::Held);
        let record = OutgoingRecord {
            topic: "t".into(),
            partition_opt: Some(0),
            key: Vec::new(),
            payload: b"p".to_vec(),
            headers: Vec::new(),
        };
        let first = sink.produce(record.clone()).unwrap();
        let second = sink.produce(record.clone()).unwrap();
        assert_eq!(sink.held(), 2);
        sink.ack_held(1);
        assert_eq!(first.await, Ok(()));
        sink.fail_held(LogError::Unavailable("down".into()));
        assert!(second.await.is_err());
        sink.set_mode(AckMode::RefuseQueue(LogError::Unavailable("full".into())));
        assert!(sink.produce(record).is_err());
        assert_eq!(sink.produced().len(), 2);
    }
}
