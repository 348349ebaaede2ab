//! Replay (`flk replay`): rebuilds every projection from offset 0 of `flk.decisions` into a fresh
//! schema, then swaps it in for the live one, proving that the projections are a pure function of
//! the log (I6). Not an actor: a job the command line runs to completion. Run it with the projector role stopped: a projector
//! that keeps writing the old schema during the swap would have its later writes fenced or lost
//! to the rebuilt copy (see docs/runbooks/projection-rebuild.md).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use events::DecisionEvent;
use infra::config::Config;
use infra::kafka::reader::TopicReader;
use projections::ProjectionStore;

use crate::projector::CONSUMER;

/// Told how many decisions a replay will read, then how many it has applied so far (the
/// command line draws a progress bar with it).
pub trait Progress: Send + Sync {
    /// The replay will read `total` decisions.
    fn start(&self, total: u64);
    /// `count` more decisions were applied.
    fn advance(&self, count: u64);
    /// The replay is over.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _total: u64) {}
    fn advance(&self, _count: u64) {}
    fn finish(&self) {}
}

async fn open_store(config: &Config, schema: &str) -> anyhow::Result<ProjectionStore> {
    projections::open::store(config, schema)
        .await
        .with_context(|| format!("opening the projection store (schema {schema})"))
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    /// Decisions applied.
    pub decisions: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// State hash of the rebuilt projections.
    pub state_hash: String,
}

/// Rebuilds, optionally swaps in, and prints a summary.
pub async fn replay(
    config: &Config,
    batch_size: usize,
    swap: bool,
    progress: std::sync::Arc<dyn Progress>,
) -> anyhow::Result<ReplayReport> {
    let live = &config.postgres.schema;
    let rebuild_schema = ProjectionStore::rebuild_schema_name(live);
    ProjectionStore::drop_schema(&config.postgres.url, &rebuild_schema).await?;
    let rebuild = open_store(config, &rebuild_schema).await?;
    let bulk_load = rebuild.begin_bulk_load().await?;
    let topic = config.kafka.decisions_topic();

    let reader = TopicReader::open(&config.kafka, &topic, "flk-replay")
        .context("opening the decisions topic for replay")?;
    let mut ends: HashMap<i32, i64> = reader.ends.iter().map(|(p, e)| (*p, *e)).collect();
    let partitions = reader.partitions.clone();
    for &partition in &partitions {
        rebuild.claim_partition(CONSUMER, &topic, partition).await?;
    }
    let mut epochs = HashMap::new();
    for &partition in &partitions {
        if let Some(claim) = rebuild
            .partition_offsets(CONSUMER, &topic, partition)
            .await?
        {
            epochs.insert(partition, claim.owner_epoch);
        }
    }
    progress.start(reader.total);
    let started = Instant::now();
    // One applier task per partition, fed through a short queue: a partition's batches apply in
    // order (each waits for the one before), partitions apply concurrently, and the loop keeps
    // consuming while Postgres works. It waits only when a partition has QUEUED_BATCHES waiting.
    let mut appliers: HashMap<i32, PartitionApplier> = HashMap::new();
    let mut pending: BTreeMap<i32, Vec<(i64, DecisionEvent)>> = BTreeMap::new();
    while !ends.is_empty() {
        let record = tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .context("no decision arrived for 30 s during replay")??;
        let (partition, offset) = (record.partition, record.offset);
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if offset >= end {
            continue;
        }
        match DecisionEvent::decode(&record.payload) {
            Ok(event) => pending.entry(partition).or_default().push((offset, event)),
            Err(error) => {
                tracing::error!(partition, offset, error = %error, "undecodable decision record skipped");
            }
        }
        let done = offset + 1 >= end;
        let batch_full = pending
            .get(&partition)
            .is_some_and(|batch| batch.len() >= batch_size);
        if done || batch_full {
            if let Some(batch) = pending.remove(&partition) {
                let applier = appliers.entry(partition).or_insert_with(|| {
                    let epoch = epochs.get(&partition).copied().unwrap_or_default();
                    PartitionApplier::spawn(
                        rebuild.clone(),
                        topic.clone(),
                        partition,
                        epoch,
                        progress.clone(),
                    )
                });
                if applier.batches.send(batch).await.is_err() {
                    // The applier stopped on an error; joining it below reports that error.
                    if let Some(applier) = appliers.remove(&partition) {
                        applier.task.await.context("replay task")??;
                    }
                    bail!("replay of partition {partition} stopped");
                }
            }
        }
        if done {
            ends.remove(&partition);
        }
    }
    let mut applied = 0u64;
    for (_, applier) in appliers.drain() {
        let PartitionApplier { batches, task } = applier;
        drop(batches);
        applied += task.await.context("replay task")??;
    }
    progress.finish();
    rebuild.finish_bulk_load(bulk_load).await?;
    let elapsed = started.elapsed();
    let state_hash = rebuild.state_hash().await?;
    let rate = applied as f64 / elapsed.as_secs_f64().max(1e-9);
    say(format_args!(
        "replayed {applied} decisions in {:.2} s ({rate:.0}/s)",
        elapsed.as_secs_f64()
    ));
    say(format_args!("rebuilt state hash: {state_hash}"));
    // The Merkle log is signed: the rebuild must give the same tree at every signed size, or it
    // is not swapped in (the live checkpoints would no longer match).
    let live_store = open_store(config, live).await?;
    let tree = projections::merkle_check::rebuild_tree(&live_store, &rebuild)
        .await
        .context("rebuilding the audit merkle log")?;
    say(format_args!(
        "rebuilt the audit merkle log: {} checkpoints, {} leaves, every signed root equal",
        tree.checkpoints, tree.tree_size
    ));
    if swap {
        ProjectionStore::swap_in(&config.postgres.url, &rebuild_schema, live).await?;
        say(format_args!(
            "swapped the rebuilt projections into schema {live}"
        ));
    } else {
        let live_hash = open_store(config, live).await?.state_hash().await?;
        say(format_args!("live state hash:    {live_hash}"));
    }
    Ok(ReplayReport {
        decisions: applied,
        elapsed,
        state_hash,
    })
}

/// Batches a partition may have queued behind the one Postgres is applying.
const QUEUED_BATCHES: usize = 2;

/// Applies one partition's batches in order, on its own task.
struct PartitionApplier {
    /// Where the replay loop sends the partition's batches.
    batches: tokio::sync::mpsc::Sender<Vec<(i64, DecisionEvent)>>,
    /// Ends with the number of decisions applied, or the first error.
    task: tokio::task::JoinHandle<Result<u64, projections::StoreError>>,
}

impl PartitionApplier {
    fn spawn(
        store: ProjectionStore,
        topic: String,
        partition: i32,
        epoch: i64,
        progress: std::sync::Arc<dyn Progress>,
    ) -> Self {
        let (batches, mut receiver) =
            tokio::sync::mpsc::channel::<Vec<(i64, DecisionEvent)>>(QUEUED_BATCHES);
        let task = tokio::spawn(async move {
            let mut applied = 0u64;
            while let Some(batch) = receiver.recv().await {
                store
                    .apply_batch(CONSUMER, &topic, partition, epoch, &batch)
                    .await?;
                applied += batch.len() as u64;
                progress.advance(batch.len() as u64);
            }
            Ok(applied)
        });
        PartitionApplier { batches, task }
    }
}

/// Prints one line of the report. A closed stdout (`flk replay | head -1`) must not stop the
/// replay halfway, before the swap, so a failed write is ignored (the rest is in the logs).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}
