//! Drives the plan straight into `<prefix>flk.submissions`, as an agent with a Kafka client would,
//! and measures end to end: from the produce call to the decision committed in Postgres.
//!
//! How a decision is seen: the projector's transaction sends `pg_notify('<schema>_decided', ...)`
//! with the source coordinates (submissions topic, partition, offset) of every decision it commits,
//! and Postgres delivers it only after the commit. So we LISTEN on that channel (one dedicated
//! connection, [`projections::DecidedListener`]) and match each notification with the produce time
//! recorded for that (partition, offset) when the delivery report came back. Polling `audit_log`
//! would also work but adds its polling interval to every sample and load on the database being
//! measured; LISTEN costs one notification per batch chunk, which the gateway already pays for.
//!
//! Closed loop (`rate_opt = None`): at most `window` records are produced and not yet decided; a
//! decision frees a slot. This finds the sustained end-to-end throughput without building an
//! unbounded backlog. Open loop: records are due at `start + i / rate` and latency counts from the
//! due time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use infra::config::KafkaConfig;
use infra::kafka::headers;
use projections::ProjectionStore;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::records::Plan;
use super::report::{Live, histogram, record};

/// How to drive Kafka.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Brokers, topic prefix and producer settings (the gateway's producer, I1).
    pub kafka: KafkaConfig,
    /// Offered rate per second; `None` for closed loop.
    pub rate_opt: Option<f64>,
    /// Most records produced but not yet decided.
    pub window: usize,
    /// Stop producing after this long.
    pub duration: Duration,
    /// After the last produce, wait at most this long for the remaining decisions.
    pub drain_timeout: Duration,
}

/// What the drive measured.
#[derive(Debug)]
pub struct KafkaResult {
    /// `decided`, `undecided`, `produce error: ...`.
    pub statuses: BTreeMap<String, u64>,
    /// Produce call to committed decision, microseconds.
    pub end_to_end: Histogram<u64>,
    /// Produce call to broker acknowledgement (acks=all), microseconds.
    pub produce_ack: Histogram<u64>,
    /// Records handed to the producer.
    pub sent: u64,
    /// From the first produce to the last decision.
    pub elapsed: Duration,
    /// From the first produce to the last acknowledgement.
    pub produce_elapsed: Duration,
}

/// A record the broker acknowledged, on its way to the collector.
#[derive(Debug)]
enum Produced {
    /// Landed at (partition, offset).
    Acked {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// When its latency clock started (produce call, or due time in open loop).
        started: Instant,
        /// When the acknowledgement arrived.
        acked: Instant,
        /// The window slot, released when the decision is seen.
        permit: OwnedSemaphorePermit,
    },
    /// The produce failed.
    Failed(String),
}

/// Produces the plan and collects decisions until all are seen or the drain deadline passes.
pub async fn run(
    plan: Arc<Plan>,
    options: KafkaOptions,
    store: ProjectionStore,
    live: Arc<Live>,
) -> anyhow::Result<KafkaResult> {
    let topic = options.kafka.submissions_topic();
    // Listen before the first produce, so no decision can be committed unheard.
    let listener = store.listen_decided().await?;
    let producer = infra::kafka::producer(&options.kafka, "flk-bench")?;
    let window = Arc::new(Semaphore::new(options.window.max(1)));
    let (produced_sender, produced_receiver) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(
        listener,
        topic.clone(),
        produced_receiver,
        live.clone(),
        options.drain_timeout,
    ));

    let started = Instant::now();
    let mut sent = 0u64;
    for (index, submission) in plan.submissions.iter().enumerate() {
        let due = match options.rate_opt {
            Some(rate) => started + Duration::from_secs_f64(index as f64 / rate),
            None => Instant::now(),
        };
        if due.duration_since(started) > options.duration {
            break;
        }
        if due > Instant::now() {
            // Only when early: even a past deadline costs a timer tick (1 ms) in tokio.
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = window.clone().acquire_owned().await?;
        let clock_start = match options.rate_opt {
            Some(_) => due,
            None => Instant::now(),
        };
        let tenant = &plan.tenants[submission.tenant].name;
        let key = format!("{tenant}/{}", submission.pcs_id);
        let record_headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::TENANT,
                value: Some(tenant.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE,
                value: Some("kafka"),
            });
        let mut record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&submission.body[..])
            .headers(record_headers);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break Some(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => {
                    produced_sender
                        .send(Produced::Failed(error.to_string()))
                        .ok();
                    break None;
                }
            }
        };
        sent += 1;
        live.sent.fetch_add(1, Ordering::Relaxed);
        let Some(delivery) = delivery else { continue };
        let sender = produced_sender.clone();
        tokio::spawn(async move {
            let message = match delivery.await {
                Ok(Ok(delivery)) => Produced::Acked {
                    partition: delivery.partition,
                    offset: delivery.offset,
                    started: clock_start,
                    acked: Instant::now(),
                    permit,
                },
                Ok(Err((error, _))) => Produced::Failed(error.to_string()),
                Err(_) => Produced::Failed("delivery canceled".to_owned()),
            };
            sender.send(message).ok();
        });
    }
    drop(produced_sender);
    let mut result = collector.await?;
    result.sent = sent;
    result.elapsed = result.elapsed.max(Duration::from_micros(1));
    Ok(result)
}

/// Matches acknowledgements with decision notifications.
async fn collect(
    mut listener: projections::DecidedListener,
    topic: String,
    mut produced: mpsc::UnboundedReceiver<Produced>,
    live: Arc<Live>,
    drain_timeout: Duration,
) -> KafkaResult {
    let started = Instant::now();
    let mut result = KafkaResult {
        statuses: BTreeMap::new(),
        end_to_end: histogram(),
        produce_ack: histogram(),
        sent: 0,
        elapsed: Duration::ZERO,
        produce_elapsed: Duration::ZERO,
    };
    // Acknowledged, not yet decided: (partition, offset) -> (clock start, window slot).
    let mut pending: HashMap<(i32, i64), (Instant, OwnedSemaphorePermit)> = HashMap::new();
    // Decided before the acknowledgement was processed: (partition, offset) -> when.
    let mut early: HashMap<(i32, i64), Instant> = HashMap::new();
    let mut producing = true;
    let mut drain_deadline = None;
    let mut last_decided = started;
    loop {
        if !producing && pending.is_empty() {
            break;
        }
        let deadline = drain_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            message = produced.recv(), if producing => match message {
                Some(Produced::Acked { partition, offset, started: clock_start, acked, permit }) => {
                    record(&mut result.produce_ack, acked.saturating_duration_since(clock_start));
                    result.produce_elapsed = acked.saturating_duration_since(started);
                    if let Some(decided) = early.remove(&(partition, offset)) {
                        decided_one(&mut result, &live, decided.saturating_duration_since(clock_start));
                        last_decided = last_decided.max(decided);
                        drop(permit);
                    } else {
                        pending.insert((partition, offset), (clock_start, permit));
                    }
                }
                Some(Produced::Failed(error)) => {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    *result.statuses.entry(format!("produce error: {error}")).or_default() += 1;
                }
                None => {
                    producing = false;
                    drain_deadline = Some(Instant::now() + drain_timeout);
                }
            },
            source = listener.next() => match source {
                Some(source) if source.topic == topic => {
                    let now = Instant::now();
                    let key = (source.partition, source.offset);
                    if let Some((clock_start, permit)) = pending.remove(&key) {
                        decided_one(&mut result, &live, now.saturating_duration_since(clock_start));
                        last_decided = now;
                        drop(permit);
                    } else if producing {
                        // Bounded: coordinates of other producers' records are dropped in bulk.
                        if early.len() >= 1_000_000 {
                            early.clear();
                        }
                        early.insert(key, now);
                    }
                }
                Some(_) => {}
                None => {
                    tracing::warn!("decision notifications ended; the remaining records count as undecided");
                    break;
                }
            },
            () = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    if !pending.is_empty() {
        live.errors
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        *result.statuses.entry("undecided".to_owned()).or_default() += pending.len() as u64;
    }
    result.elapsed = last_decided.saturating_duration_since(started);
    result
}

fn decided_one(result: &mut KafkaResult, live: &Live, elapsed: Duration) {
    record(&mut result.end_to_end, elapsed);
    live.finished(elapsed);
    *result.statuses.entry("decided".to_owned()).or_default() += 1;
}
