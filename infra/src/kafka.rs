//! Kafka clients: the idempotent producer of the log, consumers tuned for low latency, topic
//! creation, and the header names of ARCHITECTURE section 2. [`source`] and [`sink`] implement
//! the actors' log seam ([`crate::log`]) over them.

pub mod checkpoints;
pub mod fetch;
pub mod reader;
pub mod requests;
pub mod sink;
pub mod source;
pub mod tail;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};
use thiserror::Error;

use crate::config::KafkaConfig;

/// Header names carried on `flk.submissions` records.
pub mod headers {
    /// Tenant of the submission (absent means `default`).
    pub const TENANT: &str = "flk-tenant";
    /// Milliseconds since the epoch when the gateway received the body.
    pub const RECEIVED_AT: &str = "flk-received-at";
    /// `gateway`, `kafka` (when absent) or `replica`.
    pub const SOURCE: &str = "flk-source";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Region that first logged a mirrored record.
    pub const ORIGIN_REGION: &str = "flk-origin-region";
    /// Partition in the origin region.
    pub const ORIGIN_PARTITION: &str = "flk-origin-partition";
    /// Offset in the origin region.
    pub const ORIGIN_OFFSET: &str = "flk-origin-offset";
    /// Times a record has been mirrored.
    pub const HOPS: &str = "flk-hops";
}

/// Kafka failures, classified by what the caller must do.
#[derive(Debug, Error)]
pub enum KafkaClientError {
    /// The cluster is unreachable or the request timed out: retry later (HTTP 503).
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    /// A setting or topic is wrong: fix the configuration.
    #[error("kafka misconfigured: {0}")]
    Fatal(String),
}

impl From<KafkaError> for KafkaClientError {
    fn from(error: KafkaError) -> Self {
        match &error {
            KafkaError::ClientCreation(_) => KafkaClientError::Fatal(error.to_string()),
            _ => KafkaClientError::Unavailable(error.to_string()),
        }
    }
}

impl From<KafkaClientError> for crate::log::LogError {
    fn from(error: KafkaClientError) -> Self {
        match error {
            KafkaClientError::Unavailable(message) => crate::log::LogError::Unavailable(message),
            KafkaClientError::Fatal(message) => crate::log::LogError::Fatal(message),
        }
    }
}

/// The producer every write to the log goes through, counting its requests
/// ([`requests::RequestTally`]).
pub type Producer = FutureProducer<CountingContext>;

/// The idempotent, acks=all producer every write to the log goes through (I1). `client_id`
/// names it to the broker and in `flk_kafka_requests_total` (a role, such as `flk-gateway`).
pub fn producer(config: &KafkaConfig, client_id: &str) -> Result<Producer, KafkaClientError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java-compatible key hashing, so a key lands in the same partition whichever client wrote it.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", config.linger_ms.to_string())
        .set("message.timeout.ms", "30000")
        .set("socket.nagle.disable", "true")
        .set("statistics.interval.ms", requests::STATISTICS_INTERVAL_MS)
        .create_with_context(CountingContext::default())?)
}

/// Client context that only counts requests (see [`requests`]).
#[derive(Debug, Default)]
pub struct CountingContext {
    /// Totals last reported.
    tally: requests::RequestTally,
}

impl ClientContext for CountingContext {
    fn stats(&self, statistics: Statistics) {
        self.tally.record(&statistics);
    }
}

/// Records per partition a consumer tries to keep queued (librdkafka's default is 100,000; the
/// byte bound applies first either way).
const QUEUED_MIN_RECORDS: u32 = 10_000;

/// The settings of every group consumer: positions are stored by the caller after its work is
/// done and committed in the background (at-least-once); cooperative rebalancing, so a member
/// joining or leaving moves only the partitions that change hands.
fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group)
        .set("client.id", group)
        .set("statistics.interval.ms", requests::STATISTICS_INTERVAL_MS)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
        .set("fetch.min.bytes", config.fetch_min_bytes.to_string())
        // Bounded in bytes, not only in records: a backlog of large records must not fill the
        // memory before the actors take them (docs/benchmarks.md, backlog drain).
        .set(
            "queued.max.messages.kbytes",
            config.consumer_queue_max_kbytes.to_string(),
        )
        .set("queued.min.messages", QUEUED_MIN_RECORDS.to_string())
        .set(
            "fetch.max.bytes",
            (u64::from(config.consumer_queue_max_kbytes) * 1024).to_string(),
        )
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("socket.nagle.disable", "true");
    client
}

/// Creates the topics if missing: submissions and decisions with the same partition count
/// (co-partitioned), the audit task and DLQ topics, and the one-partition ring topic.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), KafkaClientError> {
    let topics = [
        (config.submissions_topic(), config.partitions),
        (config.decisions_topic(), config.partitions),
        (config.audit_tasks_topic(), config.partitions),
        (config.audit_dlq_topic(), config.partitions),
        (config.ring_topic(), 1),
        (config.heartbeats_topic(), 1),
    ];
    create_topics(config, &topics).await
}

/// Creates each `(name, partitions)` topic on `config`'s cluster unless it exists.
pub async fn create_topics(
    config: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<(), KafkaClientError> {
    create_topics_with(config, topics, &[]).await
}

/// Creates each `(name, partitions)` topic on `config`'s cluster unless it exists, compacted:
/// the broker keeps the newest record of each key (for state kept as records, such as the
/// replication checkpoints).
pub async fn create_compacted_topics(
    config: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<(), KafkaClientError> {
    create_topics_with(config, topics, &[("cleanup.policy", "compact")]).await
}

/// Creates the topics that are missing, each with `topic_config`.
async fn create_topics_with(
    config: &KafkaConfig,
    topics: &[(String, i32)],
    topic_config: &[(&str, &str)],
) -> Result<(), KafkaClientError> {
    if topics.is_empty() {
        // The admin API refuses an empty request.
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            topic_config.iter().fold(
                NewTopic::new(
                    name,
                    *partitions,
                    TopicReplication::Fixed(config.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new_topics, &options).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaClientError::Fatal(format!(
                    "cannot create topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// An owned [`LogRecord`] of a consumed message (what the actors and replay see).
pub(crate) fn record_of<M: Message>(message: &M) -> crate::log::LogRecord {
    crate::log::LogRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key_opt: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            header.value.unwrap_or_default().to_vec(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        timestamp_ms_opt: message.timestamp().to_millis(),
    }
}

/// The value of header `name` as UTF-8, if present and valid.
pub fn header_str<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
}
