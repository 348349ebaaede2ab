//! Shard actor: turns every submission of its assigned partitions into exactly one decision event
//! on `flk.decisions` (same partition: the topics are co-partitioned), rejections included.
//!
//! At-least-once: a submission's offset is stored for commit only after its decision is acked by
//! Kafka, in order. A crash in between re-decides the submission; the projector ignores the second
//! decision because the audit log is unique on source coordinates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events::{DecisionEvent, SourceCoordinates, SubmissionSource, TenantPolicy, decide};
use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use infra::config::KafkaConfig;
use infra::failpoints::{Failpoints, points};
use infra::kafka::{self, headers};
use infra::metrics::Metrics;
use infra::tracing_context;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, DefaultConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureRecord;
use tracing::Instrument as _;

use crate::supervision::Heartbeat;

/// Most decisions awaiting their Kafka ack at once (bounds memory and redelivery after a crash).
const MAX_IN_FLIGHT: usize = 2_048;

/// What a shard needs; cloned into each (re)start.
#[derive(Debug, Clone)]
pub struct ShardDeps {
    /// Kafka settings (topics, group prefix).
    pub kafka: KafkaConfig,
    /// Region recorded in decisions.
    pub region: String,
    /// Tenants by name.
    pub tenants: Arc<HashMap<String, TenantPolicy>>,
    /// Largest body decided as a PCS; larger direct-Kafka records are decided malformed.
    pub max_body_bytes: usize,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the supervisor.
    pub heartbeat: Heartbeat,
    /// Fault injection (tests).
    pub failpoints: Failpoints,
}

/// The shard loop: runs until a Kafka error; the supervisor restarts it.
pub async fn run(deps: ShardDeps) -> anyhow::Result<()> {
    let submissions = deps.kafka.submissions_topic();
    let decisions = deps.kafka.decisions_topic();
    let consumer = kafka::consumer(
        &deps.kafka,
        &deps.kafka.group("flk-shard"),
        DefaultConsumerContext,
    )?;
    consumer
        .subscribe(&[&submissions])
        .context("subscribing to submissions")?;
    let producer = kafka::producer(&deps.kafka)?;
    tracing::info!(topic = %submissions, "shard consuming");
    let mut in_flight = FuturesOrdered::new();
    let mut idle = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            received = consumer.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let message = received.context("consuming submissions")?;
                deps.failpoints.hit(points::SHARD_BEFORE_PRODUCE).await?;
                let span = decide_span(&message);
                let event = span.in_scope(|| decide_message(&message, &deps));
                deps.metrics
                    .decisions_produced
                    .with_label_values(&[event.verdict.code()])
                    .inc();
                let payload = event.encode()?;
                let key = format!("{}/{}", event.source.partition, event.source.offset);
                let record = FutureRecord::to(&decisions)
                    .partition(message.partition())
                    .key(&key)
                    .payload(&payload);
                let delivery = producer
                    .send_result(record)
                    .map_err(|(error, _)| anyhow::anyhow!("queueing decision: {error}"))?;
                let (partition, offset) = (message.partition(), message.offset());
                // The span lasts until Kafka acks the decision.
                in_flight.push_back(
                    async move { (partition, offset, delivery.await) }.instrument(span),
                );
            }
            Some((partition, offset, delivered)) = in_flight.next() => {
                match delivered {
                    Ok(Ok(_)) => {
                        consumer.store_offset(&submissions, partition, offset)?;
                        deps.heartbeat.beat();
                    }
                    Ok(Err((error, _))) => anyhow::bail!("decision not delivered: {error}"),
                    Err(_) => anyhow::bail!("decision delivery cancelled"),
                }
            }
            _ = idle.tick() => deps.heartbeat.beat(),
        }
    }
}

/// One span per submission, continuing the trace its record carries (`traceparent` header).
fn decide_span(message: &BorrowedMessage<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "shard.decide",
        otel.kind = "consumer",
        partition = message.partition(),
        offset = message.offset(),
    );
    tracing_context::continue_context(&span, tracing_context::context_from_message(message));
    span
}

/// Builds the decision event of one submission record (pure apart from the clock). Runs inside
/// the submission's span, whose context the event carries on to the projector.
fn decide_message(message: &BorrowedMessage<'_>, deps: &ShardDeps) -> DecisionEvent {
    let tenant = kafka::header_str(message, headers::TENANT)
        .unwrap_or("default")
        .to_owned();
    let body = message.payload().unwrap_or_default();
    let policy_opt = deps.tenants.get(&tenant);
    let decision = if body.len() > deps.max_body_bytes {
        events::Decision {
            verdict: events::Verdict::Malformed {
                error: format!(
                    "body is {} bytes, over the {} byte limit",
                    body.len(),
                    deps.max_body_bytes
                ),
            },
            pcs_id_opt: None,
            signed_digest_opt: None,
            key_id_opt: None,
        }
    } else {
        decide(body, &tenant, policy_opt)
    };
    let kafka_timestamp_ms = message.timestamp().to_millis().unwrap_or_default();
    let received_at_ms = kafka::header_str(message, headers::RECEIVED_AT)
        .and_then(|text| text.parse().ok())
        .unwrap_or(kafka_timestamp_ms);
    DecisionEvent {
        source: SourceCoordinates {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        submission_source: submission_source(message),
        tenant,
        pcs_id_opt: decision.pcs_id_opt,
        signed_digest_opt: decision.signed_digest_opt,
        verdict: decision.verdict,
        params_version: policy_opt.map_or(0, |policy| policy.params_version),
        key_id_opt: decision.key_id_opt,
        region: deps.region.clone(),
        received_at_ms,
        decided_at_ms: now_ms(),
        traceparent_opt: tracing_context::outgoing_traceparent(
            &tracing::Span::current(),
            kafka::header_str(message, headers::TRACEPARENT),
        ),
    }
}

fn submission_source(message: &BorrowedMessage<'_>) -> SubmissionSource {
    match kafka::header_str(message, headers::SOURCE) {
        Some("gateway") => SubmissionSource::Gateway,
        Some("replica") => SubmissionSource::Replica {
            origin_region: kafka::header_str(message, headers::ORIGIN_REGION)
                .unwrap_or_default()
                .to_owned(),
            origin_partition: kafka::header_str(message, headers::ORIGIN_PARTITION)
                .and_then(|text| text.parse().ok())
                .unwrap_or(-1),
            origin_offset: kafka::header_str(message, headers::ORIGIN_OFFSET)
                .and_then(|text| text.parse().ok())
                .unwrap_or(-1),
            hops: kafka::header_str(message, headers::HOPS)
                .and_then(|text| text.parse().ok())
                .unwrap_or(1),
        },
        _ => SubmissionSource::Kafka,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
