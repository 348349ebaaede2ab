//! Shard actor: turns every submission of its assigned partitions into exactly one decision event
//! on `flk.decisions` (same partition: the topics are co-partitioned), rejections included.
//!
//! One group consumer per process dispatches records to one partition worker per assigned
//! partition (its own task and bounded mailbox), created on first record or assignment and aborted
//! on revocation; any worker failure restarts the whole shard under its supervisor.
//!
//! At-least-once: a submission's offset is stored for commit only after its decision is acked by
//! Kafka, in order. A crash in between re-decides the submission; the projector ignores the second
//! decision because the audit log is unique on source coordinates.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::rebalance::{PartitionChange, RebalanceForwarder};
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

/// Messages a partition worker may hold before the dispatcher waits (backpressure).
const PARTITION_MAILBOX: usize = 1_024;

/// What every partition worker of one shard loop shares.
struct ShardContext {
    /// Dependencies.
    deps: ShardDeps,
    /// The group consumer (workers store their offsets through it).
    consumer: StreamConsumer<RebalanceForwarder>,
    /// Producer of decisions.
    producer: FutureProducer,
    /// `flk.submissions` with prefix.
    submissions: String,
    /// `flk.decisions` with prefix.
    decisions: String,
}

/// A running partition worker: its mailbox and its task (aborted when dropped).
struct PartitionWorker {
    /// Where the dispatcher puts the partition's records.
    mailbox: mpsc::Sender<OwnedMessage>,
    /// Records dispatched but not yet acked. The idle tick beats the heartbeat only while every
    /// worker is drained, and workers beat on each ack, so a stuck worker stops the heartbeat.
    pending: Rc<AtomicUsize>,
    /// The worker's task.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PartitionWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shard loop: one consumer for the group, dispatching each assigned partition's records to a
/// partition worker of its own (one actor per partition: a slow or failing partition never blocks
/// another's ordering). Runs until an error; the supervisor restarts it, which drops and aborts
/// every worker.
pub async fn run(deps: ShardDeps) -> anyhow::Result<()> {
    let submissions = deps.kafka.submissions_topic();
    let (forwarder, mut changes) = RebalanceForwarder::channel();
    let consumer = kafka::consumer(&deps.kafka, &deps.kafka.group("flk-shard"), forwarder)?;
    consumer
        .subscribe(&[&submissions])
        .context("subscribing to submissions")?;
    let context = Rc::new(ShardContext {
        producer: kafka::producer(&deps.kafka)?,
        decisions: deps.kafka.decisions_topic(),
        submissions: submissions.clone(),
        consumer,
        deps,
    });
    tracing::info!(topic = %submissions, "shard consuming");
    let (failures_tx, mut failures) = mpsc::unbounded_channel::<anyhow::Error>();
    let mut workers: HashMap<i32, PartitionWorker> = HashMap::new();
    let mut idle = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            received = context.consumer.recv() => {
                let message = received.context("consuming submissions")?.detach();
                apply_changes(&mut changes, &mut workers);
                let partition = message.partition();
                let worker = workers.entry(partition).or_insert_with(|| {
                    spawn_worker(partition, context.clone(), failures_tx.clone())
                });
                worker.pending.fetch_add(1, Ordering::Relaxed);
                if worker.mailbox.send(message).await.is_err() {
                    anyhow::bail!("partition {partition} worker stopped");
                }
            }
            Some(error) = failures.recv() => return Err(error),
            _ = idle.tick() => {
                apply_changes(&mut changes, &mut workers);
                if workers.values().all(|worker| worker.pending.load(Ordering::Relaxed) == 0) {
                    context.deps.heartbeat.beat();
                }
            }
        }
    }
}

/// Starts workers for assigned partitions and drops (aborts) those of revoked ones. A revoked
/// partition's unacked decisions are decided again by its next owner (at-least-once).
fn apply_changes(
    changes: &mut mpsc::UnboundedReceiver<PartitionChange>,
    workers: &mut HashMap<i32, PartitionWorker>,
) {
    while let Ok(change) = changes.try_recv() {
        match change {
            PartitionChange::Assigned(partitions) => {
                tracing::info!(?partitions, "shard partitions assigned");
            }
            PartitionChange::Revoked(partitions) => {
                tracing::info!(?partitions, "shard partitions revoked");
                for partition in partitions {
                    workers.remove(&partition);
                }
            }
        }
    }
}

fn spawn_worker(
    partition: i32,
    context: Rc<ShardContext>,
    failures: mpsc::UnboundedSender<anyhow::Error>,
) -> PartitionWorker {
    let (mailbox, inbox) = mpsc::channel(PARTITION_MAILBOX);
    let pending = Rc::new(AtomicUsize::new(0));
    let worker_pending = pending.clone();
    let task = tokio::task::spawn_local(async move {
        if let Err(error) = partition_worker(partition, inbox, &context, &worker_pending).await {
            let _ = failures.send(error.context(format!("partition {partition}")));
        }
    });
    PartitionWorker {
        mailbox,
        pending,
        task,
    }
}

/// Decides one partition's records in order: decide, produce, and store each offset only after
/// its decision is acked, in offset order.
async fn partition_worker(
    partition: i32,
    mut inbox: mpsc::Receiver<OwnedMessage>,
    context: &ShardContext,
    pending: &AtomicUsize,
) -> anyhow::Result<()> {
    let deps = &context.deps;
    let mut in_flight = FuturesOrdered::new();
    loop {
        tokio::select! {
            received = inbox.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(message) = received else { return Ok(()) };
                deps.failpoints.hit(points::SHARD_BEFORE_PRODUCE).await?;
                let span = decide_span(&message);
                let event = span.in_scope(|| decide_message(&message, deps));
                deps.metrics
                    .decisions_produced
                    .with_label_values(&[event.verdict.code()])
                    .inc();
                let payload = event.encode()?;
                let key = format!("{}/{}", event.source.partition, event.source.offset);
                let record = FutureRecord::to(&context.decisions)
                    .partition(partition)
                    .key(&key)
                    .payload(&payload);
                let delivery = context
                    .producer
                    .send_result(record)
                    .map_err(|(error, _)| anyhow::anyhow!("queueing decision: {error}"))?;
                let offset = message.offset();
                // The span lasts until Kafka acks the decision.
                in_flight.push_back(async move { (offset, delivery.await) }.instrument(span));
            }
            Some((offset, delivered)) = in_flight.next() => {
                match delivered {
                    Ok(Ok(_)) => {
                        context.consumer.store_offset(&context.submissions, partition, offset)?;
                        pending.fetch_sub(1, Ordering::Relaxed);
                        deps.heartbeat.beat();
                    }
                    Ok(Err((error, _))) => anyhow::bail!("decision not delivered: {error}"),
                    Err(_) => anyhow::bail!("decision delivery cancelled"),
                }
            }
        }
    }
}

/// One span per submission, continuing the trace its record carries (`traceparent` header).
fn decide_span<M: Message>(message: &M) -> tracing::Span {
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
fn decide_message<M: Message>(message: &M, deps: &ShardDeps) -> DecisionEvent {
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

fn submission_source<M: Message>(message: &M) -> SubmissionSource {
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
