//! Reads what a replicator needs from the target region's cluster before it starts: its
//! checkpoints (`<origin>.flk.checkpoints`, see `events::replication_checkpoint`) and partition
//! counts (a replicator keeps each record's partition, so both sides must have the same).
//!
//! librdkafka's metadata and watermark calls block; each function here runs on tokio's blocking
//! pool, so a target cluster that does not answer (a cut link) never stalls the actors' thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use events::replication_checkpoint::ReplicationCheckpoint;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::KafkaClientError;
use crate::config::KafkaConfig;

/// Newest checkpoint of each partition of `origin_region`'s `stream` in `topic`
/// (partition -> next offset). Records of other origins or streams are passed over; records that
/// do not decode are logged and passed over (a stranger's record must not stop replication). An
/// empty topic gives an empty map; a missing topic is an error.
pub async fn read(
    config: &KafkaConfig,
    topic: &str,
    origin_region: &str,
    stream: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, KafkaClientError> {
    let (config, topic, origin_region, stream) = (
        config.clone(),
        topic.to_owned(),
        origin_region.to_owned(),
        stream.to_owned(),
    );
    blocking(move || read_blocking(&config, &topic, &origin_region, &stream, timeout)).await
}

/// The number of partitions of `topic`, or `None` when the cluster does not have it.
pub async fn partition_count(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, KafkaClientError> {
    let (config, topic) = (config.clone(), topic.to_owned());
    blocking(move || {
        let consumer = plain_consumer(&config)?;
        partition_count_of(&consumer, &topic, timeout)
    })
    .await
}

/// Fails unless `local_topic` (this region) and `remote_topic` (the target region) have the same
/// number of partitions: a mirrored record keeps its partition, so a difference would either
/// fail every record of the extra partitions or leave part of the target topic unused. A topic
/// that does not exist yet is `Unavailable` (retry), a difference `Fatal` (fix the settings).
pub async fn check_partitions(
    local: &KafkaConfig,
    local_topic: &str,
    remote: &KafkaConfig,
    remote_topic: &str,
    timeout: Duration,
) -> Result<(), KafkaClientError> {
    let local_count = partition_count(local, local_topic, timeout).await?;
    let remote_count = partition_count(remote, remote_topic, timeout).await?;
    match (local_count, remote_count) {
        (Some(local_count), Some(remote_count)) => {
            match partition_mismatch(local_topic, local_count, remote_topic, remote_count) {
                Some(message) => Err(KafkaClientError::Fatal(message)),
                None => Ok(()),
            }
        }
        (None, _) => Err(KafkaClientError::Unavailable(format!(
            "topic {local_topic} does not exist on {}",
            local.brokers
        ))),
        (_, None) => Err(KafkaClientError::Unavailable(format!(
            "topic {remote_topic} does not exist on {} yet (the target region creates it when \
             its `flk serve` starts with this region among its replication origins)",
            remote.brokers
        ))),
    }
}

/// What is wrong when the two topics' partition counts differ (`None` when they agree).
pub fn partition_mismatch(
    local_topic: &str,
    local_count: usize,
    remote_topic: &str,
    remote_count: usize,
) -> Option<String> {
    (local_count != remote_count).then(|| {
        format!(
            "partition counts differ: {local_topic} has {local_count} here, {remote_topic} has \
             {remote_count} in the target region; a mirrored record keeps its partition, so both \
             regions need the same kafka.partitions (add partitions to the smaller topic with \
             kafka-topics.sh --alter --partitions {})",
            local_count.max(remote_count)
        )
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KafkaClientError> + Send + 'static,
) -> Result<T, KafkaClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| KafkaClientError::Unavailable(format!("blocking read failed: {error}")))?
}

/// A consumer outside any group (assigns partitions itself, commits nothing).
fn plain_consumer(config: &KafkaConfig) -> Result<BaseConsumer, KafkaClientError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set(
            "group.id",
            format!("{}flk-checkpoint-reader", config.topic_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?)
}

fn partition_count_of(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, KafkaClientError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Ok(None);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(found.partitions().len()))
}

fn read_blocking(
    config: &KafkaConfig,
    topic: &str,
    origin_region: &str,
    stream: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, KafkaClientError> {
    let deadline = Instant::now() + timeout;
    let consumer = plain_consumer(config)?;
    let partitions = partition_count_of(&consumer, topic, timeout)?.ok_or_else(|| {
        KafkaClientError::Unavailable(format!(
            "topic {topic} does not exist on {} (the target region creates it when its \
             `flk serve` starts with this region among its replication origins)",
            config.brokers
        ))
    })?;
    let mut assignment = TopicPartitionList::new();
    let mut open = 0usize;
    for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            open += 1;
        }
    }
    let mut newest = BTreeMap::new();
    if open == 0 {
        return Ok(newest);
    }
    consumer.assign(&assignment)?;
    while open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaClientError::Unavailable(format!(
                "reading {topic} took longer than {timeout:?}"
            )));
        }
        match consumer.poll(left) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(message)) => {
                match ReplicationCheckpoint::decode(message.payload().unwrap_or_default()) {
                    Ok(checkpoint)
                        if checkpoint.origin_region == origin_region
                            && checkpoint.stream == stream =>
                    {
                        // Read in order (written to partition 0 only): the last one wins.
                        newest.insert(checkpoint.partition, checkpoint.next_offset);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(
                        topic,
                        offset = message.offset(),
                        error = %error,
                        "record in the checkpoints topic is not a checkpoint; passed over"
                    ),
                }
            }
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_mismatch_names_both_topics_and_the_fix() {
        assert_eq!(
            partition_mismatch("flk.submissions", 12, "a.flk.submissions", 12),
            None
        );
        let message =
            partition_mismatch("flk.submissions", 12, "a.flk.submissions", 6).unwrap_or_default();
        assert!(message.contains("flk.submissions has 12 here"), "{message}");
        assert!(message.contains("a.flk.submissions has 6"), "{message}");
        assert!(message.contains("--partitions 12"), "{message}");
    }
}
