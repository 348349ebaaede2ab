//! Anchorer actor: appends the audit log's new entries to the region's Merkle log and signs a
//! checkpoint over the result. `anchor_interval` is the promise: an entry is covered by a signed
//! checkpoint within about that long of being projected. To keep it at the tail too (the
//! projector's commit already eats into it), the anchorer looks for new entries
//! [`ROUNDS_PER_INTERVAL`] times per interval; a look that finds entries runs a round and signs a
//! checkpoint, a look that finds none signs nothing, and a full round is followed by the next at
//! once. So the gap between two checkpoints under load is half an interval, and never more than
//! an interval while entries keep arriving.
//!
//! A round: read the audit entries after each partition's watermark (partitions ascending, seq
//! order, at most `max_round_leaves`), turn each into a leaf, append it to the in-memory
//! [`Frontier`], check the new tree is consistent with the last checkpoint (a consistency proof
//! from the stored and new subtree hashes, verified against both roots), sign the checkpoint and
//! commit leaves, subtree hashes and checkpoint in one transaction. The checkpoint's
//! `previous_size` is unique in the store, so two anchorers can never fork the tree (the loser of
//! a race writes nothing and reloads its head; not a failure), and a crash
//! anywhere before the commit leaves nothing behind: the next run redoes the round from the
//! stored head. Only one round runs at a time. After the commit the checkpoint is written to
//! the object store as an immutable object (`<schema>/audit/checkpoints/<size>`); a store that
//! is down delays that, never the anchoring.
//!
//! On start (and every restart) the head is reloaded: the newest checkpoint, the frontier of its
//! tree from the stored subtrees, and a check that the frontier's root is the signed root. A
//! store that does not match its own checkpoint is never extended (the actor fails and its
//! supervisor gives up after the restart budget, which stops the process).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use events::checkpoint::{Checkpoint, NoteSigner};
use events::merkle::{self, Frontier, Hash, NodeId};
use infra::log::LogSink;
use infra::metrics::Metrics;
use infra::objects::{Objects, put_once};
use projections::ProjectionStore;
use projections::merkle_log::{Round, StoredCheckpoint, StoredLeaf};
use tokio::sync::oneshot;

use crate::audit_task_kinds::task_record;
use crate::contract::{ActorStatus, GetStatus, Shutdown, StatusBoard, Tick, now_ms};
use crate::supervision::{Heartbeat, Restart, Supervision, schedule_start};

// ---------------------------------------------------------------------------------------------
// Messages (besides the contract's Tick, Shutdown, GetStatus and the watchdog's Restart).
// ---------------------------------------------------------------------------------------------

/// The head was loaded from the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HeadLoaded(pub Result<Head, String>);

/// A round finished: the new head, `None` when there was nothing to append, or why it failed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RoundDone(pub Result<RoundOutcome, String>);

// ---------------------------------------------------------------------------------------------
// State.
// ---------------------------------------------------------------------------------------------

/// What an anchorer needs; kept across restarts.
#[derive(Clone)]
pub struct AnchorerDeps {
    /// Where the audit log and the Merkle log live.
    pub store: ProjectionStore,
    /// Signs checkpoints (its name is the log's origin).
    pub signer: Arc<NoteSigner>,
    /// The log's origin line.
    pub origin: String,
    /// The longest an entry should wait for a covering checkpoint; rounds run
    /// [`ROUNDS_PER_INTERVAL`] times per interval.
    pub interval: Duration,
    /// Most leaves per round.
    pub max_round_leaves: usize,
    /// Metrics.
    pub metrics: Metrics,
    /// Progress heartbeat watched by the watchdog.
    pub heartbeat: Heartbeat,
    /// Where the status goes.
    pub board: StatusBoard,
    /// Where signed checkpoints are published as immutable objects (`None`: not published).
    pub objects_opt: Option<Objects>,
    /// Object name prefix (the deployment's schema), so deployments sharing a bucket stay apart.
    pub object_prefix: String,
    /// Where `attest_external` tasks go (`flk.audit.tasks`), when a TSA is configured.
    pub attest_tasks_opt: Option<(Arc<dyn LogSink>, String)>,
}

impl std::fmt::Debug for AnchorerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorerDeps")
            .field("origin", &self.origin)
            .field("interval", &self.interval)
            .field("max_round_leaves", &self.max_round_leaves)
            .finish_non_exhaustive()
    }
}

/// The tree as last checkpointed.
#[derive(Debug, Clone)]
pub struct Head {
    /// Right edge of the tree (its size is the checkpoint's).
    pub frontier: Frontier,
    /// Next seq per partition already in the tree.
    pub watermarks: BTreeMap<i32, i64>,
}

/// What a round did.
#[derive(Debug)]
pub enum RoundOutcome {
    /// The round committed (or had nothing to append): the head after it.
    Extended {
        /// The head after the round (unchanged when nothing was appended).
        head: Head,
        /// Leaves appended.
        appended: usize,
    },
    /// Another anchorer extended the tree first; nothing was written. The head is reloaded
    /// (not a failure: two anchorers only race, they never fork the tree).
    LostRace,
}

/// The anchorer actor.
#[derive(Debug)]
pub struct Anchorer {
    /// Dependencies.
    deps: AnchorerDeps,
    /// Restart policy state (survives restarts on purpose).
    supervision: Supervision,
    // Working state: reset by `restarting()`.
    /// The loaded head; taken by a round while it runs.
    head_opt: Option<Head>,
    /// True while a load or a round runs.
    busy: bool,
    /// `starting`, `running`, `backing_off`, `stopping`, `stopped` or `gave_up`.
    state: &'static str,
    /// Leaves in the tree (for the status while a round holds the head).
    tree_size: u64,
    /// Milliseconds since the epoch of the last progress.
    last_progress_ms: i64,
    /// Answers a shutdown once no round runs.
    stopped_opt: Option<oneshot::Sender<()>>,
}

impl Anchorer {
    /// An anchorer that loads its head when started under a supervisor.
    pub fn new(deps: AnchorerDeps, supervision: Supervision) -> Self {
        Anchorer {
            deps,
            supervision,
            head_opt: None,
            busy: false,
            state: "starting",
            tree_size: 0,
            last_progress_ms: 0,
            stopped_opt: None,
        }
    }

    fn open(&mut self, ctx: &mut Context<Self>) {
        self.state = "running";
        self.busy = true;
        let store = self.deps.store.clone();
        ctx.spawn(
            async move { load_head(&store).await }
                .into_actor(self)
                .map(|result, actor, ctx| actor.handle(HeadLoaded(result), ctx)),
        );
    }

    fn fail(&mut self, ctx: &mut Context<Self>, error: &str) {
        tracing::error!(actor = "anchorer", error, "anchorer stopped; restarting");
        ctx.stop();
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.state != "running" {
            return;
        }
        let Some(head) = self.head_opt.take() else {
            return;
        };
        self.busy = true;
        let deps = self.deps.clone();
        ctx.spawn(
            async move { round(&deps, head).await }
                .into_actor(self)
                .map(|result, actor, ctx| actor.handle(RoundDone(result), ctx)),
        );
    }

    fn publish(&self) {
        self.deps.board.publish(self.status(), &self.deps.metrics);
    }

    fn status(&self) -> ActorStatus {
        let mut status = ActorStatus::new("anchorer", self.state, Vec::new());
        status.last_progress_ms = self.last_progress_ms;
        status.restarts = self.supervision.restarts_total();
        status.in_flight = usize::from(self.busy);
        status
    }

    fn progressed(&mut self) {
        self.deps.heartbeat.beat();
        self.last_progress_ms = now_ms();
    }

    fn finish_shutdown_if_idle(&mut self) {
        if !self.busy && self.state == "stopping" {
            self.state = "stopped";
            if let Some(stopped) = self.stopped_opt.take() {
                let _ = stopped.send(());
            }
            self.publish();
        }
    }
}

impl Actor for Anchorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.deps.interval / ROUNDS_PER_INTERVAL).max(Duration::from_millis(1));
        ctx.run_interval(every, |actor, ctx| actor.handle(Tick, ctx));
        self.state = schedule_start(&mut self.supervision, ctx, Self::open);
        self.publish();
    }
}

impl Supervised for Anchorer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.head_opt = None;
        self.busy = false;
        self.tree_size = 0;
        self.stopped_opt = None;
        self.deps.heartbeat.beat();
    }
}

impl Handler<HeadLoaded> for Anchorer {
    type Result = ();

    fn handle(&mut self, HeadLoaded(result): HeadLoaded, ctx: &mut Self::Context) {
        self.busy = false;
        match result {
            Ok(head) => {
                self.tree_size = head.frontier.size();
                self.deps
                    .metrics
                    .audit_tree_size
                    .with_label_values(&[] as &[&str])
                    .set(i64::try_from(self.tree_size).unwrap_or(i64::MAX));
                tracing::info!(tree_size = self.tree_size, "anchorer head loaded");
                self.head_opt = Some(head);
                self.progressed();
                self.finish_shutdown_if_idle();
                self.start_round(ctx);
            }
            Err(error) => self.fail(ctx, &format!("loading the merkle log head: {error}")),
        }
        self.publish();
    }
}

impl Handler<RoundDone> for Anchorer {
    type Result = ();

    fn handle(&mut self, RoundDone(result): RoundDone, ctx: &mut Self::Context) {
        self.busy = false;
        match result {
            Ok(RoundOutcome::Extended { head, appended }) => {
                self.tree_size = head.frontier.size();
                self.head_opt = Some(head);
                self.progressed();
                self.finish_shutdown_if_idle();
                // A full round means a backlog: go on without waiting for the next tick.
                if appended >= self.deps.max_round_leaves {
                    self.start_round(ctx);
                }
            }
            Ok(RoundOutcome::LostRace) => {
                tracing::info!("another anchorer extended the tree first; reloading the head");
                self.progressed();
                self.open(ctx);
            }
            Err(error) => self.fail(ctx, &format!("anchoring round: {error}")),
        }
        self.publish();
    }
}

impl Handler<Tick> for Anchorer {
    type Result = ();

    fn handle(&mut self, _tick: Tick, ctx: &mut Self::Context) {
        if !self.busy && self.head_opt.is_none() && self.state == "running" {
            // Loading failed without a restart (should not happen); the heartbeat stops.
            return;
        }
        if !self.busy {
            self.progressed();
        }
        self.start_round(ctx);
        self.publish();
    }
}

impl Handler<Restart> for Anchorer {
    type Result = ();

    fn handle(&mut self, _restart: Restart, ctx: &mut Self::Context) {
        tracing::warn!(actor = "anchorer", "heartbeat stale; restarting");
        ctx.stop();
    }
}

impl Handler<Shutdown> for Anchorer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _shutdown: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.state = "stopping";
        let (stopped, answer) = oneshot::channel();
        self.stopped_opt = Some(stopped);
        self.finish_shutdown_if_idle();
        Box::pin(async move {
            let _ = answer.await;
        })
    }
}

impl Handler<GetStatus> for Anchorer {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _get: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Asks the audit workers for an RFC 3161 time stamp of the new checkpoint. Best effort: the
/// checkpoint is already committed; a task that cannot be produced within a few seconds is
/// logged, and `flk audit attest --missing` asks again for every checkpoint without a token.
async fn enqueue_attestation(deps: &AnchorerDeps, tree_size: u64) {
    let Some((sink, topic)) = &deps.attest_tasks_opt else {
        return;
    };
    let task = events::audit_task::AuditTask::attest_external(&deps.origin, tree_size, now_ms());
    let acked = match sink.produce(task_record(topic, &task)) {
        Ok(ack) => tokio::time::timeout(ENQUEUE_TIMEOUT, ack)
            .await
            .unwrap_or_else(|_| Err(infra::log::LogError::Unavailable("timed out".into()))),
        Err(error) => Err(error),
    };
    if let Err(error) = acked {
        tracing::warn!(error = %error, tree_size, "attestation task not enqueued");
    }
}

/// Looks for new entries per `anchor_interval`. One look per interval put the p99 of decision ->
/// checkpoint at the interval plus the projector's commit tail (1,072 ms at 1,000/s with a 1 s
/// interval); two leave half the interval for the commit and the round. Four cost the gateway
/// about a tenth of its throughput on a saturated two-core machine (docs/benchmarks.md).
pub const ROUNDS_PER_INTERVAL: u32 = 2;

/// Longest wait for the log to take an attestation task (the round holds the heartbeat).
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checkpoints published per round at most (a long outage catches up over several rounds).
const PUBLISH_PER_ROUND: i64 = 100;

/// The object name of the checkpoint of `tree_size`.
pub fn checkpoint_object(prefix: &str, tree_size: u64) -> String {
    format!("{prefix}/audit/checkpoints/{tree_size}")
}

/// Writes committed checkpoints the object store does not have yet. Best effort: an unavailable
/// store delays publication (the gauge shows the backlog) and never stops anchoring.
async fn publish_checkpoints(deps: &AnchorerDeps) {
    let Some(objects) = &deps.objects_opt else {
        return;
    };
    let pending = match deps.store.unpublished_checkpoints(PUBLISH_PER_ROUND).await {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(error = %error, "cannot list unpublished checkpoints");
            return;
        }
    };
    let mut left = pending.len();
    for checkpoint in pending {
        let key = checkpoint_object(&deps.object_prefix, checkpoint.tree_size);
        if let Err(error) = put_once(objects, &key, checkpoint.note.clone().into_bytes()).await {
            tracing::warn!(error = %error, tree_size = checkpoint.tree_size, "checkpoint not published; retrying next round");
            break;
        }
        if let Err(error) = deps
            .store
            .record_checkpoint_published(checkpoint.tree_size, &key, now_ms())
            .await
        {
            tracing::warn!(error = %error, "checkpoint publication not recorded; retrying next round");
            break;
        }
        left -= 1;
    }
    deps.metrics
        .audit_checkpoints_unpublished
        .with_label_values(&[] as &[&str])
        .set(i64::try_from(left).unwrap_or(i64::MAX));
}

/// Loads the newest checkpoint and the frontier of its tree, and checks they agree.
async fn load_head(store: &ProjectionStore) -> Result<Head, String> {
    let Some(checkpoint) = store
        .latest_checkpoint()
        .await
        .map_err(|error| error.to_string())?
    else {
        return Ok(Head {
            frontier: Frontier::new(),
            watermarks: BTreeMap::new(),
        });
    };
    let nodes = store
        .merkle_nodes(&merkle::root_plan(checkpoint.tree_size))
        .await
        .map_err(|error| error.to_string())?;
    let frontier =
        Frontier::load(checkpoint.tree_size, &nodes).map_err(|error| error.to_string())?;
    if frontier.root() != checkpoint.root {
        return Err(format!(
            "the stored subtrees give a root other than the signed checkpoint of size {}",
            checkpoint.tree_size
        ));
    }
    Ok(Head {
        frontier,
        watermarks: checkpoint.watermarks.into_iter().collect(),
    })
}

/// One round (see the module header), then the object store catches up with every committed
/// checkpoint (this round's, and any left over from an outage or a restart).
async fn round(deps: &AnchorerDeps, head: Head) -> Result<RoundOutcome, String> {
    let outcome = extend(deps, head).await;
    publish_checkpoints(deps).await;
    outcome
}

/// Appends the new audit entries and commits the signed checkpoint. Returns the head unchanged
/// when nothing is new.
async fn extend(deps: &AnchorerDeps, mut head: Head) -> Result<RoundOutcome, String> {
    let store = &deps.store;
    for partition in store
        .projected_partitions()
        .await
        .map_err(|error| error.to_string())?
    {
        head.watermarks.entry(partition).or_insert(0);
    }
    if head.watermarks.is_empty() {
        return Ok(RoundOutcome::Extended { head, appended: 0 });
    }
    let watermarks: Vec<(i32, i64)> = head.watermarks.iter().map(|(p, s)| (*p, *s)).collect();
    let per_partition = deps.max_round_leaves.div_ceil(watermarks.len()).max(1);
    let entries = store
        .audit_entries_after(
            &watermarks,
            i64::try_from(per_partition).unwrap_or(i64::MAX),
        )
        .await
        .map_err(|error| error.to_string())?;
    if entries.is_empty() {
        return Ok(RoundOutcome::Extended { head, appended: 0 });
    }
    let old_size = head.frontier.size();
    let old_root = head.frontier.root();
    // The head is this round's to change: on any failure the actor reloads it from the store.
    let Head {
        mut frontier,
        mut watermarks,
    } = head;
    let mut created: HashMap<NodeId, Hash> = HashMap::new();
    let mut leaves = Vec::with_capacity(entries.len());
    let mut decided_at = Vec::with_capacity(entries.len());
    for entry in &entries {
        let expected = watermarks.get(&entry.partition).copied().unwrap_or(0);
        if entry.seq != expected {
            // Chains are gapless, so this should not happen; the partition's watermark stays put,
            // so the rest of it waits for the next round.
            tracing::warn!(
                partition = entry.partition,
                seq = entry.seq,
                expected,
                "audit chain gap"
            );
            continue;
        }
        let leaf = StoredLeaf::of(entry, frontier.size());
        created.extend(frontier.append(merkle::leaf_hash(&leaf.entry)));
        watermarks.insert(entry.partition, entry.seq + 1);
        decided_at.push(entry.decided_at_ms);
        leaves.push(leaf);
    }
    let new_size = frontier.size();
    let new_root = frontier.root();
    // Prove the new tree extends the signed one before signing it.
    let plan = merkle::consistency_plan(old_size, new_size).map_err(|error| error.to_string())?;
    let missing: Vec<NodeId> = plan
        .iter()
        .filter(|id| !created.contains_key(id))
        .copied()
        .collect();
    let mut nodes = store
        .merkle_nodes(&missing)
        .await
        .map_err(|error| error.to_string())?;
    nodes.extend(created.iter().map(|(id, hash)| (*id, *hash)));
    let proof = merkle::consistency_proof(old_size, new_size, &nodes)
        .map_err(|error| format!("consistency proof: {error}"))?;
    merkle::verify_consistency(old_size, new_size, &old_root, &new_root, &proof).map_err(
        |error| format!("the new tree is not consistent with the last checkpoint: {error}"),
    )?;
    let note = deps
        .signer
        .sign(
            &Checkpoint {
                origin: deps.origin.clone(),
                size: new_size,
                root: new_root,
            }
            .body(),
        )
        .map_err(|error| error.to_string())?;
    let created_at_ms = now_ms();
    let appended = leaves.len();
    let round = Round {
        leaves,
        nodes: created.into_iter().collect(),
        checkpoint: StoredCheckpoint {
            tree_size: new_size,
            previous_size: old_size,
            root: new_root,
            note,
            watermarks: watermarks.iter().map(|(p, s)| (*p, *s)).collect(),
            created_at_ms,
        },
    };
    if !store
        .append_round(&round)
        .await
        .map_err(|error| error.to_string())?
    {
        return Ok(RoundOutcome::LostRace);
    }
    let metrics = &deps.metrics;
    metrics
        .audit_tree_size
        .with_label_values(&[] as &[&str])
        .set(i64::try_from(new_size).unwrap_or(i64::MAX));
    metrics
        .audit_leaves
        .with_label_values(&[] as &[&str])
        .inc_by(appended as u64);
    metrics
        .audit_checkpoints
        .with_label_values(&[] as &[&str])
        .inc();
    let delay = metrics.audit_anchor_delay.with_label_values(&[] as &[&str]);
    for decided_at_ms in decided_at {
        delay.observe((created_at_ms - decided_at_ms).max(0) as f64 / 1000.0);
    }
    tracing::info!(tree_size = new_size, appended, "checkpoint signed");
    enqueue_attestation(deps, new_size).await;
    Ok(RoundOutcome::Extended {
        head: Head {
            frontier,
            watermarks,
        },
        appended,
    })
}
