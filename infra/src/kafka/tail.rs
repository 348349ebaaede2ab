//! Follows the end of a one-partition topic outside any consumer group, keeping no position: for
//! signals every process reads for itself, such as mirrored heartbeats. Records written before
//! the stream opened are skipped on purpose (a stale heartbeat says nothing about the link now).

use futures::StreamExt as _;
use futures::stream::BoxStream;
use rdkafka::consumer::{Consumer as _, DefaultConsumerContext, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::log::{LogError, LogRecord};

/// Records of partition 0 of `topic` from its end on; `client_id` names the reader to the broker.
pub fn follow(
    config: &KafkaConfig,
    topic: &str,
    client_id: &str,
) -> Result<BoxStream<'static, Result<LogRecord, LogError>>, LogError> {
    let fatal = |error: rdkafka::error::KafkaError| LogError::Fatal(error.to_string());
    let consumer: StreamConsumer<DefaultConsumerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // Required by the client, never joined: the partition is assigned directly.
        .set("group.id", format!("{}{client_id}", config.topic_prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(fatal)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::End)
        .map_err(fatal)?;
    consumer.assign(&assignment).map_err(fatal)?;
    Ok(futures::stream::unfold(consumer, |consumer| async move {
        let item = consumer
            .recv()
            .await
            .map(|message| super::record_of(&message))
            .map_err(|error| LogError::Unavailable(error.to_string()));
        Some((item, consumer))
    })
    .boxed())
}
