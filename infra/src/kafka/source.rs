//! The Kafka implementation of [`LogSource`]: a group consumer polled on a thread of its own.
//!
//! Why a thread: librdkafka runs rebalance callbacks inside `poll`. Polling on a dedicated thread
//! lets the revoke callback block until the actor has released the partitions (see
//! [`crate::log`]); the actor meanwhile keeps running on its own thread and stores its last
//! positions while the partitions are still assigned, so librdkafka never refuses a store
//! ("Erroneous state") and no in-flight work is decided twice by the next owner.
//!
//! The thread ends when the actor drops its [`LogSource`] (the event channel closes); it drops
//! the consumer itself, which leaves the group cleanly. The position store holds only a weak
//! reference, so the consumer is never closed on the actor's thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use events::replication_checkpoint::start_offset;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::requests::RequestTally;
use super::{KafkaClientError, consumer_config};
use crate::config::KafkaConfig;
use crate::log::{LogError, LogSource, Positions, Release, SourceEvent};

/// Records read ahead of the actor (backpressure: the poll thread waits when the actor lags).
const READ_AHEAD: usize = 1_024;

/// Longest wait for the group's committed positions or a partition's end at an assignment.
const CHECKPOINT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one poll waits before checking whether the actor is still there.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Lag per partition, from librdkafka's statistics.
type LagTable = Arc<Mutex<HashMap<i32, i64>>>;

/// Subscribes `group` to `topic` and starts polling. `revoke_timeout` bounds how long a rebalance
/// waits for the actor to release revoked partitions (past it, they are taken anyway).
pub fn subscribe(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    revoke_timeout: Duration,
) -> Result<LogSource, KafkaClientError> {
    subscribe_from(config, group, topic, revoke_timeout, BTreeMap::new())
}

/// Like [`subscribe`], but an assigned partition with an entry in `checkpoints` (partition ->
/// next offset, kept outside the group) starts at the later of that and the group's committed
/// position (`events::replication_checkpoint::start_offset`). The replicator passes the
/// checkpoints it keeps in the target cluster, so losing its group positions neither re-ships
/// everything nor skips anything.
pub fn subscribe_from(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    revoke_timeout: Duration,
    checkpoints: BTreeMap<i32, i64>,
) -> Result<LogSource, KafkaClientError> {
    let (events, receiver) = mpsc::channel(READ_AHEAD);
    let lag: LagTable = Arc::default();
    let context = ForwardingContext {
        events: events.clone(),
        lag: lag.clone(),
        topic: topic.to_owned(),
        revoke_timeout,
        checkpoints,
        requests: RequestTally::default(),
    };
    let consumer: BaseConsumer<ForwardingContext> =
        consumer_config(config, group).create_with_context(context)?;
    consumer.subscribe(&[topic])?;
    let consumer = Arc::new(consumer);
    let positions = Arc::new(KafkaPositions {
        consumer: Arc::downgrade(&consumer),
        topic: topic.to_owned(),
        lag,
    });
    let (closing, closed) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("poll-{group}"))
        .spawn(move || {
            poll_until_closed(consumer, events);
            let _ = closing.send(());
        })
        .map_err(|error| KafkaClientError::Fatal(format!("starting the poll thread: {error}")))?;
    Ok(LogSource {
        events: receiver,
        positions,
        closed,
    })
}

/// Polls and forwards records until the actor drops its end, then drops the consumer here (which
/// leaves the group and commits the stored positions).
fn poll_until_closed(
    consumer: Arc<BaseConsumer<ForwardingContext>>,
    events: mpsc::Sender<SourceEvent>,
) {
    while !events.is_closed() {
        let event = match consumer.poll(POLL_INTERVAL) {
            None => continue,
            Some(Ok(message)) => SourceEvent::Record(super::record_of(&message)),
            // librdkafka reports transient trouble (a broker disconnect, a request timeout) as
            // non-fatal error events and recovers by itself; restarting the actor for them would
            // turn a blip into a rebalance. Only a fatal error ends the source.
            Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                SourceEvent::Failed(LogError::Fatal(error.to_string()))
            }
            Some(Err(error)) => {
                tracing::warn!(error = %error, "kafka consumer error; librdkafka retries");
                continue;
            }
        };
        if events.blocking_send(event).is_err() {
            break;
        }
    }
    tracing::debug!("poll thread leaving the group");
    drop(consumer);
}

/// Consumer context that turns rebalances into [`SourceEvent`]s and keeps the lag table.
struct ForwardingContext {
    /// Where events go (the same channel as records, so the actor sees them in order).
    events: mpsc::Sender<SourceEvent>,
    /// Filled from statistics.
    lag: LagTable,
    /// The subscribed topic (statistics cover every topic of the client).
    topic: String,
    /// Longest wait for a release.
    revoke_timeout: Duration,
    /// Start positions kept outside the group (see [`subscribe_from`]).
    checkpoints: BTreeMap<i32, i64>,
    /// Requests sent, for `flk_kafka_requests_total`.
    requests: RequestTally,
}

impl ForwardingContext {
    /// Sends from the poll thread. Dropping the consumer elsewhere (inside a runtime, where a
    /// blocking send would panic) only tries: the actor is gone then anyway.
    fn forward(&self, event: SourceEvent) -> bool {
        if tokio::runtime::Handle::try_current().is_ok() {
            return self.events.try_send(event).is_ok();
        }
        self.events.blocking_send(event).is_ok()
    }
}

impl ForwardingContext {
    /// Sets the start offset of each newly assigned partition whose checkpoint is past the
    /// group's committed position (librdkafka starts from an offset set in the assignment
    /// instead of the committed one). When the group position cannot be read, nothing is
    /// changed: the group position may re-ship some records but never skips one.
    fn start_at_checkpoints(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        if self.checkpoints.is_empty() || list.count() == 0 {
            return;
        }
        let committed = match consumer.committed_offsets(list.clone(), CHECKPOINT_LOOKUP_TIMEOUT) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(error = %error, topic = %self.topic, "group positions unreadable; checkpoints not applied");
                return;
            }
        };
        for mut element in list.elements() {
            let partition = element.partition();
            let committed_opt =
                committed
                    .find_partition(&self.topic, partition)
                    .and_then(|found| match found.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    });
            let end_opt = consumer
                .fetch_watermarks(&self.topic, partition, CHECKPOINT_LOOKUP_TIMEOUT)
                .ok()
                .map(|(_, high)| high);
            let checkpoint_opt = self.checkpoints.get(&partition).copied();
            if checkpoint_opt
                .zip(end_opt)
                .is_some_and(|(checkpoint, end)| checkpoint > end)
            {
                tracing::warn!(
                    topic = %self.topic,
                    partition,
                    checkpoint = checkpoint_opt,
                    end = end_opt,
                    "checkpoint is past the end of the partition (the topic was made again); ignored"
                );
            }
            let Some(start) = start_offset(committed_opt, checkpoint_opt, end_opt) else {
                continue;
            };
            match element.set_offset(Offset::Offset(start)) {
                Ok(()) => tracing::info!(
                    topic = %self.topic,
                    partition,
                    start,
                    committed = committed_opt,
                    "starting at the checkpoint kept in the target cluster"
                ),
                Err(error) => tracing::warn!(partition, error = %error, "checkpoint not applied"),
            }
        }
    }
}

impl ClientContext for ForwardingContext {
    fn stats(&self, statistics: Statistics) {
        self.requests.record(&statistics);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let table: HashMap<i32, i64> = topic
            .partitions
            .values()
            .filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0)
            .map(|partition| (partition.partition, partition.consumer_lag))
            .collect();
        *self
            .lag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = table;
    }
}

impl ConsumerContext for ForwardingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let list = match rebalance {
            Rebalance::Assign(list) => return self.start_at_checkpoints(consumer, list),
            Rebalance::Revoke(list) => list,
            Rebalance::Error(_) => return,
        };
        let partitions = partitions(list);
        let (release, wait) = Release::new();
        let sent = self.forward(SourceEvent::Revoked {
            partitions: partitions.clone(),
            release,
        });
        if sent && !wait.wait(self.revoke_timeout) {
            tracing::warn!(
                ?partitions,
                timeout_ms = self.revoke_timeout.as_millis() as u64,
                "revoked partitions not released in time; taking them anyway"
            );
        }
        let mut lag = self
            .lag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for partition in &partitions {
            lag.remove(partition);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                self.forward(SourceEvent::Assigned(partitions(list)));
            }
            Rebalance::Error(error) => {
                tracing::warn!(error = %error, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// Stores positions through the poll thread's consumer (weakly held, see the module doc).
#[derive(Debug)]
struct KafkaPositions {
    /// The consumer, while the poll thread has it.
    consumer: Weak<BaseConsumer<ForwardingContext>>,
    /// The subscribed topic.
    topic: String,
    /// Lag per partition.
    lag: LagTable,
}

impl std::fmt::Debug for ForwardingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardingContext")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Positions for KafkaPositions {
    fn store(&self, partition: i32, offset: i64) -> Result<(), LogError> {
        let Some(consumer) = self.consumer.upgrade() else {
            return Err(LogError::NotAssigned(partition));
        };
        consumer
            .store_offset(&self.topic, partition, offset)
            .map_err(|error| match error {
                KafkaError::StoreOffset(RDKafkaErrorCode::State) => {
                    LogError::NotAssigned(partition)
                }
                other => LogError::Unavailable(other.to_string()),
            })
    }

    fn lag(&self) -> HashMap<i32, i64> {
        self.lag
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
