//! Appends each ring change `flk migrate` commits to the Kafka log (`<prefix>flk.ring`; see
//! `projections::ring_event` for why and what the event holds).
//!
//! The change is already in effect when this runs (Postgres is what processes follow), so a
//! failure here does not fail the step: it is printed, and the next change's event carries the
//! whole state again.

use infra::clock::now_ms;
use infra::config::KafkaConfig;
use infra::kafka::sink::KafkaSink;
use infra::log::{LogSink as _, OutgoingRecord};
use projections::ProjectionStore;
use projections::ring_event::RingChanged;
use projections::ring_store::Phase;

/// Appends the current ring state as entered by `phase_opt` (`None`: the first recorded ring).
pub(super) async fn publish(
    kafka: &KafkaConfig,
    store: &ProjectionStore,
    phase_opt: Option<Phase>,
) {
    if let Err(error) = try_publish(kafka, store, phase_opt).await {
        eprintln!(
            "warning: the ring change is in effect, but its event could not be appended to {}: \
             {error:#}. The next ring change appends the whole state again",
            kafka.ring_topic()
        );
    }
}

async fn try_publish(
    kafka: &KafkaConfig,
    store: &ProjectionStore,
    phase_opt: Option<Phase>,
) -> anyhow::Result<()> {
    let state = store
        .ring_state()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no ring is recorded"))?;
    let event = RingChanged::of(&state, store.schema(), phase_opt, now_ms());
    infra::kafka::ensure_topics(kafka).await?;
    // The producer's delivery timeout (30 s) bounds the wait for the acknowledgement.
    KafkaSink::new(kafka, "flk-migrate")?
        .produce(OutgoingRecord {
            topic: kafka.ring_topic(),
            partition_opt: None,
            key: store.schema().as_bytes().to_vec(),
            payload: event.encode(),
            headers: Vec::new(),
        })?
        .await?;
    Ok(())
}
