//! The Kafka implementation of [`LogSink`]: the idempotent, acks=all producer.

use futures::FutureExt as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{KafkaClientError, Producer};
use crate::config::KafkaConfig;
use crate::log::{Ack, LogError, LogSink, OutgoingRecord};

/// Produces through [`super::producer`].
#[derive(Clone)]
pub struct KafkaSink {
    /// The producer.
    producer: Producer,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A sink with a producer of its own; `client_id` names it (see [`super::producer`]).
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, KafkaClientError> {
        Ok(KafkaSink {
            producer: super::producer(config, client_id)?,
        })
    }
}

impl LogSink for KafkaSink {
    fn produce(&self, record: OutgoingRecord) -> Result<Ack, LogError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut future_record = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.payload)
            .headers(headers);
        if let Some(partition) = record.partition_opt {
            future_record = future_record.partition(partition);
        }
        let delivery = self
            .producer
            .send_result(future_record)
            .map_err(|(error, _)| LogError::Unavailable(format!("queueing: {error}")))?;
        Ok(delivery
            .map(|delivered| match delivered {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => {
                    Err(LogError::Unavailable(format!("not delivered: {error}")))
                }
                Err(_) => Err(LogError::Unavailable("delivery cancelled".into())),
            })
            .boxed())
    }
}
