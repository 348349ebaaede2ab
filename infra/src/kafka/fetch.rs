//! Reads the one record at given coordinates, outside any consumer group (for
//! `flk regions reconcile`, which re-ships a region's first record of a key to the other region).

use std::time::Duration;

use rdkafka::consumer::{Consumer as _, DefaultConsumerContext, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaClientError;
use crate::config::KafkaConfig;
use crate::log::LogRecord;

/// The record at (`topic`, `partition`, `offset`), or an error saying why not (gone by retention,
/// not there yet, cluster down) within `timeout`.
pub async fn record_at(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<LogRecord, KafkaClientError> {
    let consumer: StreamConsumer<DefaultConsumerContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}flk-fetch", config.topic_prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Past the end or before the start: an error, not a silent jump elsewhere.
        .set("auto.offset.reset", "error")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let message = tokio::time::timeout(timeout, consumer.recv())
        .await
        .map_err(|_| {
            KafkaClientError::Unavailable(format!(
                "no record at {topic}[{partition}]@{offset} within {timeout:?} \
                 (deleted by retention, or the cluster is unreachable)"
            ))
        })??;
    let record = super::record_of(&message);
    if record.offset != offset {
        return Err(KafkaClientError::Unavailable(format!(
            "{topic}[{partition}]@{offset} is gone (the next record is at {})",
            record.offset
        )));
    }
    Ok(record)
}
