//! Replay (`flk replay`): rebuilds every projection from offset 0 of `flk.decisions` into a fresh
//! schema, then swaps it in for the live one, proving that the projections are a pure function of
//! the log (I6). Not an actor: a job the command line runs to completion. Run it with the
//! projector role stopped: a projector that keeps writing the old schema during the swap would
//! have its later writes fenced or lost to the rebuilt copy (see
//! docs/runbooks/projection-rebuild.md).
//!
//! The rebuild does not go through `apply_batch`, whose round trips bound it at ~45,000
//! decisions/s. A reader task reads and decodes the topic up to the ends seen at start; the
//! partitions' events are put in one order ([`PartitionMerge`]) and folded in memory into exactly
//! the rows `apply_batch` would leave ([`ReplayFold`]); a COPY task streams the audit entries and
//! dedup rows the fold hands out into the rebuild schema by binary COPY, while its keys and
//! indexes are dropped ([`projections::bulk_load`]). Once the topic is read, the dedup rows a
//! later record replaced are deleted, the keys and indexes built, the state hash printed and the
//! Merkle log rebuilt; then the swap, as before.
//!
//! Memory: the fold keeps every live dedup key (the audited sources only as runs of offsets),
//! about 420 bytes a decision (see [`projections::replay_fold`]), plus what the reader is ahead
//! by on some partitions and a few chunks of rows on their way to Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use events::DecisionEvent;
use infra::config::Config;
use infra::kafka::reader::TopicReader;
use projections::bulk_copy::{AuditCopy, DedupCopy};
use projections::bulk_load::BulkLoad;
use projections::{
    AuditEntry, DedupRowVersion, Folded, PartitionMerge, ProjectionStore, ReplayFold, StoreError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::projector::CONSUMER;

/// What a replay reports progress on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decisions read from the log and folded in memory.
    Fold,
    /// Rows copied into the rebuild schema: audit entries and dedup rows.
    Copy,
}

/// Told how much a replay will do, then how much it has done (the command line draws progress
/// bars with it).
pub trait Progress: Send + Sync {
    /// `stage` has `total` items to do (called again when the total is known better).
    fn start(&self, stage: Stage, total: u64);
    /// `count` more items of `stage` are done.
    fn advance(&self, stage: Stage, count: u64);
    /// The replay is over.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _stage: Stage, _total: u64) {}
    fn advance(&self, _stage: Stage, _count: u64) {}
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
    /// Decisions folded.
    pub decisions: u64,
    /// Wall time from the first read to the last index built.
    pub elapsed: Duration,
    /// State hash of the rebuilt projections.
    pub state_hash: String,
}

/// Rebuilds, optionally swaps in, and prints a summary. `chunk_size` rows of a table go to its
/// COPY at a time.
pub async fn replay(
    config: &Config,
    chunk_size: usize,
    swap: bool,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<ReplayReport> {
    let live = &config.postgres.schema;
    let rebuild_schema = ProjectionStore::rebuild_schema_name(live);
    ProjectionStore::drop_schema(&config.postgres.url, &rebuild_schema).await?;
    let rebuild = open_store(config, &rebuild_schema).await?;
    let topic = config.kafka.decisions_topic();

    let reader = TopicReader::open(&config.kafka, &topic, "flk-replay")
        .context("opening the decisions topic for replay")?;
    // Every partition gets its offsets row, as the projector's claims give it (epoch 1, offset 0
    // until the fold's next offsets are written).
    for &partition in &reader.partitions {
        rebuild.claim_partition(CONSUMER, &topic, partition).await?;
    }
    let bulk_load = rebuild.begin_bulk_load().await?;
    progress.start(Stage::Fold, reader.total);
    // At most an audit entry and a dedup row per decision; refined as the fold goes.
    progress.start(Stage::Copy, 2 * reader.total);
    let started = Instant::now();

    let mut fold = ReplayFold::new(rebuild.options().dedup_ttl.clone());
    let mut copy = CopyStream::spawn(
        rebuild.copy_audit().await?,
        rebuild.copy_dedup().await?,
        chunk_size.max(1),
        progress.clone(),
    );
    let folded = read_and_fold(reader, &mut fold, &mut copy, progress.as_ref()).await?;
    let read_elapsed = started.elapsed();
    let (audit_rows, dedup_versions) = copy.finish().await?;
    progress.finish();
    let handed_out = (fold.audit_entry_count(), fold.dedup_version_count());
    if (audit_rows, dedup_versions) != handed_out {
        debug_assert!(
            false,
            "copied {audit_rows}/{dedup_versions}, folded {handed_out:?}"
        );
        anyhow::bail!(
            "the COPY took {audit_rows} audit and {dedup_versions} dedup rows, the fold handed \
             out {handed_out:?}"
        );
    }
    let BulkLoad {
        audit_log: audit_load,
        dedup: dedup_load,
    } = bulk_load;
    // Both tables' keys and indexes build at once; the dedup table first drops the rows the fold
    // replaced after they were copied.
    tokio::try_join!(
        async {
            rebuild
                .finish_table_load(audit_load)
                .await
                .context("building the audit log's keys and indexes")
        },
        async {
            rebuild
                .delete_replaced_dedup_rows(&fold)
                .await
                .context("deleting the replaced dedup rows")?;
            rebuild
                .finish_table_load(dedup_load)
                .await
                .context("building the dedup table's keys and indexes")
        },
    )?;
    rebuild
        .set_next_offsets(CONSUMER, &topic, &fold.next_offsets())
        .await?;
    let dedup_rows = fold.dedup_row_count();
    // Freeing millions of rows takes a while and need not hold up the rest.
    tokio::task::spawn_blocking(move || drop(fold));
    let elapsed = started.elapsed();
    tracing::info!(
        decisions = folded,
        audit_rows,
        dedup_rows,
        replaced_dedup_rows = dedup_versions.saturating_sub(dedup_rows),
        read_and_fold_s = read_elapsed.as_secs_f64(),
        loaded_s = elapsed.as_secs_f64(),
        "replay loaded the rebuild schema"
    );
    let state_hash = rebuild.state_hash().await?;
    let rate = folded as f64 / elapsed.as_secs_f64().max(1e-9);
    say(format_args!(
        "replayed {folded} decisions in {:.2} s ({rate:.0}/s)",
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
        let live_hash = live_store.state_hash().await?;
        say(format_args!("live state hash:    {live_hash}"));
    }
    Ok(ReplayReport {
        decisions: folded,
        elapsed,
        state_hash,
    })
}

/// Records handled between two progress reports.
const PROGRESS_EVERY: u64 = 1_024;

/// Records the reader task hands over at a time (small enough to stay clear of the allocator's
/// slow path for large blocks).
const READ_BATCH: usize = 256;

/// Batches of records that may wait for the fold: a few fetches' worth, so that neither side
/// waits for the other's hiccups.
const QUEUED_READS: usize = 32;

/// Records of the reader task: `(partition, offset, event)`, `None` for an undecodable record.
type RecordBatch = Vec<(i32, i64, Option<DecisionEvent>)>;

/// Reads and decodes every partition up to its end at open, on a task of its own (decoding
/// overlaps the fold, and the fold goes on while the next fetch arrives).
fn spawn_reader(
    reader: TopicReader,
) -> (mpsc::Receiver<RecordBatch>, JoinHandle<anyhow::Result<()>>) {
    let (batches, receiver) = mpsc::channel::<RecordBatch>(QUEUED_READS);
    let task = tokio::spawn(async move {
        let mut ends = reader.ends.clone();
        let mut batch = Vec::with_capacity(READ_BATCH);
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
            let event_opt = match DecisionEvent::decode(&record.payload) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::error!(partition, offset, error = %error, "undecodable decision record skipped");
                    None
                }
            };
            batch.push((partition, offset, event_opt));
            if offset + 1 >= end {
                ends.remove(&partition);
            }
            if batch.len() >= READ_BATCH || ends.is_empty() {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
                if batches.send(full).await.is_err() {
                    // The fold stopped; its error is the one to report.
                    break;
                }
            }
        }
        Ok(())
    });
    (receiver, task)
}

/// Folds the records of every partition (up to its end at open) in replay order and streams
/// what the fold hands out to `copy`. Returns the decisions folded.
async fn read_and_fold(
    reader: TopicReader,
    fold: &mut ReplayFold,
    copy: &mut CopyStream,
    progress: &dyn Progress,
) -> anyhow::Result<u64> {
    let (ends, total) = (reader.ends.clone(), reader.total);
    let mut merge = PartitionMerge::new(ends.keys().copied());
    let (mut records, reading) = spawn_reader(reader);
    let (mut folded, mut handled, mut unreported) = (0u64, 0u64, 0u64);
    while let Some(batch) = records.recv().await {
        for (partition, offset, event_opt) in batch {
            match event_opt {
                Some(event) => merge.push(partition, offset, event),
                None => unreported += 1,
            }
            if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
                merge.close(partition);
            }
        }
        while let Some((partition, offset, event)) = merge.pop() {
            let output = fold
                .fold(partition, offset, event)
                .context("folding the decisions")?;
            copy.push(output).await?;
            folded += 1;
            unreported += 1;
        }
        if unreported >= PROGRESS_EVERY {
            progress.advance(Stage::Fold, unreported);
            handled += unreported;
            unreported = 0;
            let rows = fold.audit_entry_count() + fold.dedup_version_count();
            progress.start(Stage::Copy, copy_estimate(total, handled, rows));
        }
    }
    reading.await.context("replay reader task")??;
    debug_assert_eq!(merge.buffered(), 0);
    progress.advance(Stage::Fold, unreported);
    progress.start(
        Stage::Copy,
        fold.audit_entry_count() + fold.dedup_version_count(),
    );
    Ok(folded)
}

/// The rows a replay will copy, from the rows per record so far.
fn copy_estimate(total: u64, handled: u64, rows: u64) -> u64 {
    let remaining = total.saturating_sub(handled);
    rows + (remaining as f64 * rows as f64 / handled.max(1) as f64) as u64
}

/// Chunks that may wait for the COPY task besides the one it writes.
const QUEUED_CHUNKS: usize = 8;

/// Rows on their way to one of the two COPYs.
enum Chunk {
    /// For `audit_log`.
    Audit(Vec<AuditEntry>),
    /// For `dedup`.
    Dedup(Vec<Arc<DedupRowVersion>>),
}

/// The two COPYs of a replay on a task of their own, fed chunks through a short queue: the fold
/// goes on while rows are encoded and Postgres takes them, and waits only when QUEUED_CHUNKS are
/// waiting.
struct CopyStream {
    /// Where full chunks go (`None` once finished).
    chunks_opt: Option<mpsc::Sender<Chunk>>,
    /// Ends with the audit and dedup rows copied, or the first error.
    task: JoinHandle<Result<(u64, u64), StoreError>>,
    /// The audit chunk being filled.
    audit: Vec<AuditEntry>,
    /// The dedup chunk being filled.
    dedup: Vec<Arc<DedupRowVersion>>,
    /// Rows per chunk.
    chunk_size: usize,
}

impl CopyStream {
    fn spawn(
        mut audit: AuditCopy,
        mut dedup: DedupCopy,
        chunk_size: usize,
        progress: Arc<dyn Progress>,
    ) -> Self {
        let (chunks, mut receiver) = mpsc::channel::<Chunk>(QUEUED_CHUNKS);
        let task = tokio::spawn(async move {
            while let Some(chunk) = receiver.recv().await {
                let rows = match chunk {
                    Chunk::Audit(mut entries) => {
                        audit.write(&mut entries).await?;
                        entries.len()
                    }
                    Chunk::Dedup(versions) => {
                        dedup.write(&versions).await?;
                        versions.len()
                    }
                };
                progress.advance(Stage::Copy, rows as u64);
            }
            tokio::try_join!(audit.finish(), dedup.finish())
        });
        CopyStream {
            chunks_opt: Some(chunks),
            task,
            audit: Vec::with_capacity(chunk_size),
            dedup: Vec::with_capacity(chunk_size),
            chunk_size,
        }
    }

    /// Takes what one event added; sends the chunks it fills.
    async fn push(&mut self, folded: Folded) -> anyhow::Result<()> {
        if let Some(entry) = folded.audit_entry_opt {
            self.audit.push(entry);
            if self.audit.len() >= self.chunk_size {
                let chunk = std::mem::replace(&mut self.audit, Vec::with_capacity(self.chunk_size));
                self.send(Chunk::Audit(chunk)).await?;
            }
        }
        if let Some(version) = folded.dedup_row_opt {
            self.dedup.push(version);
            if self.dedup.len() >= self.chunk_size {
                let chunk = std::mem::replace(&mut self.dedup, Vec::with_capacity(self.chunk_size));
                self.send(Chunk::Dedup(chunk)).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, chunk: Chunk) -> anyhow::Result<()> {
        let Some(chunks) = &self.chunks_opt else {
            return Err(anyhow!("the replay's COPY was already finished"));
        };
        if chunks.send(chunk).await.is_err() {
            // The task stopped on an error: joining it reports that error.
            self.chunks_opt = None;
            (&mut self.task).await.context("replay COPY task")??;
            return Err(anyhow!("the replay's COPY stopped early"));
        }
        Ok(())
    }

    /// Sends the last chunks, ends both COPYs and returns the audit and dedup rows copied.
    async fn finish(&mut self) -> anyhow::Result<(u64, u64)> {
        let audit = std::mem::take(&mut self.audit);
        self.send(Chunk::Audit(audit)).await?;
        let dedup = std::mem::take(&mut self.dedup);
        self.send(Chunk::Dedup(dedup)).await?;
        self.chunks_opt = None;
        let rows = (&mut self.task)
            .await
            .context("replay COPY task")?
            .context("copying the rebuilt rows")?;
        Ok(rows)
    }
}

impl Drop for CopyStream {
    /// A replay that fails midway rolls its COPYs back instead of committing half a log.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Prints one line of the report. A closed stdout (`flk replay | head -1`) must not stop the
/// replay halfway, before the swap, so a failed write is ignored (the rest is in the logs).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_estimate_follows_the_rows_per_record_so_far() {
        // Nothing handled yet: only what is known.
        assert_eq!(copy_estimate(1_000, 0, 0), 0);
        // Two rows per record so far, half the records handled.
        assert_eq!(copy_estimate(1_000, 500, 1_000), 2_000);
        // All handled: exact.
        assert_eq!(copy_estimate(1_000, 1_000, 1_900), 1_900);
        // More handled than announced (records appended while opening): never below what is known.
        assert_eq!(copy_estimate(1_000, 1_200, 2_000), 2_000);
    }
}
