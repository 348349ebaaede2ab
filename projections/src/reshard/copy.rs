//! `flk migrate copy`: copies the keys that move, with their TTLs, chunk by chunk (one chunk of
//! every source node at a time), throttled, and checkpoints a cursor per source node (by default
//! every 200 ms), so a copy killed at any point (kill -9, Ctrl-C, a node down) resumes where its
//! last checkpoint says and copies at most that much again. Copying a key twice writes the same value (hot tier values never change).
//!
//! Listing is resumable because the cursor is all the state a listing has (Redis SCAN: a key
//! present for the whole listing is returned at least once, whatever happens in between). Keys
//! written after the listing passed them reach the target by the dual write, which must be on
//! before the copy starts (`flk migrate` refuses otherwise).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hot_cache::CacheError;
use crate::redis_nodes::KeyValue;

use super::{KeyNode, KeyNodes, Rings};

/// Where the copy of one source node stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// The listing cursor to resume from (0 with `done`: finished; 0 without: not started).
    pub cursor: u64,
    /// The listing reached its end.
    pub done: bool,
    /// Keys listed.
    pub scanned: u64,
    /// Keys copied (written on their target).
    pub copied: u64,
}

/// Where a copy stands, per source node (stored in `ring_migrations.copy_progress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// By source node id.
    pub nodes: BTreeMap<String, NodeProgress>,
}

impl CopyProgress {
    /// Keys copied in all.
    pub fn copied(&self) -> u64 {
        self.nodes.values().map(|node| node.copied).sum()
    }

    /// Keys listed in all.
    pub fn scanned(&self) -> u64 {
        self.nodes.values().map(|node| node.scanned).sum()
    }

    /// True when every node of `rings` is done.
    pub fn finished(&self, rings: &Rings) -> bool {
        rings
            .nodes()
            .iter()
            .all(|node| self.nodes.get(node).is_some_and(|progress| progress.done))
    }
}

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEnd {
    /// Every source node listed to its end.
    Finished,
    /// Stopped on request (Ctrl-C) after a checkpoint.
    Interrupted,
}

/// Copy settings.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Keys to list (`<prefix>:*`).
    pub pattern: String,
    /// Keys per listing step.
    pub chunk_keys: usize,
    /// Upper bound on keys written per second (0: no bound).
    pub max_keys_per_second: u64,
    /// Least time between two checkpoints (zero: after every round). A killed copy repeats at
    /// most this much work (plus a round); the end of the copy and a stop always checkpoint.
    pub checkpoint_every: Duration,
}

/// The checkpoint interval `flk migrate copy` uses: a Postgres write five times a second costs
/// nothing next to the copy, and a kill -9 repeats at most a fifth of a second of copying.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Keeps the copy under `max_keys_per_second` over the whole run.
#[derive(Debug)]
struct Throttle {
    started: Instant,
    max_keys_per_second: u64,
    keys: u64,
}

impl Throttle {
    /// How long to pause after `keys` more keys so the average stays under the bound.
    fn pause_after(&mut self, keys: u64) -> Option<Duration> {
        self.keys += keys;
        if self.max_keys_per_second == 0 {
            return None;
        }
        let due = Duration::from_secs_f64(self.keys as f64 / self.max_keys_per_second as f64);
        due.checked_sub(self.started.elapsed())
    }
}

/// Copies what moves from every node of `rings`, resuming from `progress`. It works in rounds:
/// one chunk from every source node not done yet, all at once (each node lists, reads and writes
/// its own chunk concurrently with the others). After a round, once `options.checkpoint_every`
/// has passed since the last one, it awaits `checkpoint(progress)` (which must persist it); it
/// stops cleanly, checkpointing first, when `stop` is set.
///
/// Why rounds: a chunk's cost is mostly round trips (list, read, write), so working the nodes
/// one after another left each of them idle most of the time. Why not a checkpoint per chunk:
/// it was a Postgres round trip per chunk, for a resume point finer than anyone needs.
pub async fn copy<N, F, Fut>(
    nodes: &N,
    rings: &Rings,
    progress: &mut CopyProgress,
    options: &CopyOptions,
    stop: &AtomicBool,
    mut checkpoint: F,
) -> Result<CopyEnd, CacheError>
where
    N: KeyNodes,
    F: FnMut(&CopyProgress) -> Fut,
    Fut: Future<Output = Result<(), CacheError>>,
{
    let mut throttle = Throttle {
        started: Instant::now(),
        max_keys_per_second: options.max_keys_per_second,
        keys: 0,
    };
    let mut last_checkpoint = Instant::now();
    let mut unsaved = false;
    loop {
        let pending: Vec<(String, u64)> = rings
            .nodes()
            .into_iter()
            .filter_map(|node_id| {
                let state = progress.nodes.entry(node_id.clone()).or_default();
                (!state.done).then_some((node_id, state.cursor))
            })
            .collect();
        let end_opt = if pending.is_empty() {
            Some(CopyEnd::Finished)
        } else if stop.load(Ordering::SeqCst) {
            Some(CopyEnd::Interrupted)
        } else {
            None
        };
        if let Some(end) = end_opt {
            if unsaved {
                checkpoint(progress).await?;
            }
            return Ok(end);
        }
        let chunks = futures::future::try_join_all(
            pending
                .iter()
                .map(|(node_id, cursor)| copy_chunk(nodes, rings, node_id, *cursor, options)),
        )
        .await?;
        let mut copied_in_round = 0;
        for ((node_id, _), chunk) in pending.iter().zip(chunks) {
            let state = progress.nodes.entry(node_id.clone()).or_default();
            state.scanned += chunk.scanned;
            state.copied += chunk.copied;
            state.cursor = chunk.next_cursor;
            state.done = chunk.next_cursor == 0;
            copied_in_round += chunk.copied;
        }
        unsaved = true;
        if last_checkpoint.elapsed() >= options.checkpoint_every {
            checkpoint(progress).await?;
            last_checkpoint = Instant::now();
            unsaved = false;
        }
        if let Some(pause) = throttle.pause_after(copied_in_round) {
            tokio::time::sleep(pause).await;
        }
    }
}

/// What one chunk of one source node did.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// The listing cursor after the chunk (0: the node is done).
    next_cursor: u64,
    /// Keys listed.
    scanned: u64,
    /// Keys written on their targets.
    copied: u64,
}

/// Lists one chunk of `node_id` from `cursor` and copies the keys of it that move (the reads and
/// writes for different targets run concurrently).
async fn copy_chunk<N: KeyNodes>(
    nodes: &N,
    rings: &Rings,
    node_id: &str,
    cursor: u64,
    options: &CopyOptions,
) -> Result<Chunk, CacheError> {
    let node = nodes.node(node_id)?;
    let (next_cursor, keys) = node
        .scan(cursor, &options.pattern, options.chunk_keys)
        .await?;
    let mut writes = Vec::new();
    for (target_id, moving) in rings.moving(node_id, &keys) {
        let moving: Vec<String> = moving.into_iter().cloned().collect();
        let (source, target) = (&node, nodes.node(&target_id)?);
        writes.push(async move {
            let entries: Vec<KeyValue> = source.read_many(&moving).await?;
            target.write_many(&entries).await
        });
    }
    let copied: usize = futures::future::try_join_all(writes)
        .await?
        .into_iter()
        .sum();
    Ok(Chunk {
        next_cursor,
        scanned: keys.len() as u64,
        copied: copied as u64,
    })
}

/// Copies exactly `keys` from `source` to `target` (verify's fix); returns the keys written.
pub async fn copy_keys<N: KeyNodes>(
    nodes: &N,
    source: &str,
    target: &str,
    keys: &[String],
) -> Result<usize, CacheError> {
    let entries = nodes.node(source)?.read_many(keys).await?;
    nodes.node(target)?.write_many(&entries).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::memory::MemoryNodes;
    use crate::reshard::memory::ring;

    fn filled(rings: &Rings, count: usize) -> MemoryNodes {
        let nodes = MemoryNodes::default();
        for index in 0..count {
            let key = format!("p:t:{index:05}");
            nodes.insert(
                rings.from.node_for(key.as_bytes()),
                &key,
                key.as_bytes(),
                Some(60_000),
            );
        }
        nodes
    }

    fn options() -> CopyOptions {
        CopyOptions {
            pattern: "p:*".into(),
            chunk_keys: 50,
            max_keys_per_second: 0,
            checkpoint_every: Duration::ZERO,
        }
    }

    fn assert_every_key_on_its_target(nodes: &MemoryNodes, rings: &Rings, count: usize) {
        for index in 0..count {
            let key = format!("p:t:{index:05}");
            let target = rings.to.node_for(key.as_bytes());
            assert_eq!(
                nodes.get(target, &key).as_deref(),
                Some(key.as_bytes()),
                "{key} on {target}"
            );
        }
    }

    #[tokio::test]
    async fn copies_every_moving_key_to_its_target() {
        let rings = Rings {
            from: ring(&["a", "b", "c"]),
            to: ring(&["a", "b", "c", "d"]),
        };
        let nodes = filled(&rings, 2_000);
        let mut progress = CopyProgress::default();
        let end = copy(
            &nodes,
            &rings,
            &mut progress,
            &options(),
            &AtomicBool::new(false),
            |_| async { Ok(()) },
        )
        .await
        .unwrap();
        assert_eq!(end, CopyEnd::Finished);
        assert!(progress.finished(&rings));
        assert_eq!(progress.copied(), nodes.keys("d").len() as u64);
        assert_every_key_on_its_target(&nodes, &rings, 2_000);
    }

    #[tokio::test]
    async fn a_copy_stopped_midway_resumes_from_its_checkpoint() {
        let rings = Rings {
            from: ring(&["a", "b", "c", "d"]),
            to: ring(&["a", "b", "c"]),
        };
        let nodes = filled(&rings, 2_000);
        let stop = AtomicBool::new(false);
        let mut saved = CopyProgress::default();
        let mut checkpoints = 0;
        let mut progress = CopyProgress::default();
        let end = copy(&nodes, &rings, &mut progress, &options(), &stop, |state| {
            saved = state.clone();
            checkpoints += 1;
            if checkpoints == 7 {
                stop.store(true, Ordering::SeqCst);
            }
            async { Ok(()) }
        })
        .await
        .unwrap();
        assert_eq!(end, CopyEnd::Interrupted);
        assert!(!saved.finished(&rings));
        // Resume from what was persisted, as a new process would.
        let mut resumed = saved.clone();
        stop.store(false, Ordering::SeqCst);
        let end = copy(&nodes, &rings, &mut resumed, &options(), &stop, |_| async {
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(end, CopyEnd::Finished);
        assert_every_key_on_its_target(&nodes, &rings, 2_000);
        // The resumed run did not start over: it listed each key at most once in all. Keys copied
        // onto a node whose listing had not passed them yet are listed there too (SCAN does the
        // same), hence the copied count on top; starting over would list ~1,400 keys again.
        assert!(saved.scanned() > 1_000);
        assert!(
            resumed.scanned() <= 2_000 + resumed.copied(),
            "listed {} keys, copied {}",
            resumed.scanned(),
            resumed.copied()
        );
    }

    #[tokio::test]
    async fn a_node_down_fails_the_copy_and_keeps_the_checkpoint() {
        let rings = Rings {
            from: ring(&["a", "b", "c"]),
            to: ring(&["a", "b", "c", "d"]),
        };
        let nodes = filled(&rings, 500);
        nodes.set_failing("d", true);
        let mut progress = CopyProgress::default();
        let error = copy(
            &nodes,
            &rings,
            &mut progress,
            &options(),
            &AtomicBool::new(false),
            |_| async { Ok(()) },
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("d"), "{error}");
        nodes.set_failing("d", false);
        copy(
            &nodes,
            &rings,
            &mut progress,
            &options(),
            &AtomicBool::new(false),
            |_| async { Ok(()) },
        )
        .await
        .unwrap();
        assert_every_key_on_its_target(&nodes, &rings, 500);
    }

    #[test]
    fn the_throttle_spreads_keys_over_time() {
        let mut throttle = Throttle {
            started: Instant::now(),
            max_keys_per_second: 1_000,
            keys: 0,
        };
        let pause = throttle.pause_after(500).unwrap();
        assert!(pause > Duration::from_millis(400) && pause <= Duration::from_millis(500));
        let mut unbounded = Throttle {
            started: Instant::now(),
            max_keys_per_second: 0,
            keys: 0,
        };
        assert_eq!(unbounded.pause_after(1_000_000), None);
    }
}
