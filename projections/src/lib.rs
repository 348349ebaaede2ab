//! Read models folded from decision events: the dedup table (first write wins per tenant and
//! `pcs_id`), the append-only hash-chained audit log, consumed offsets (all in one Postgres
//! transaction per batch), and the Redis hot cache filled only after commit.
//!
//! No actix here: projections are plain async functions the actors call.
//!
//! # Layout
//!
//! - [`store`]: [`ProjectionStore`], the deadpool pool bound to one Postgres schema, and its
//!   public operations (each delegating to one module below);
//! - [`migrations`]: numbered SQL files (`migrations/0001_*.sql`, ...) applied at connect time
//!   under an advisory lock;
//! - [`offsets`]: claims and owner epochs (fencing);
//! - [`apply`]: `apply_batch`, the one-transaction fold of a batch;
//! - `normalized`: a decision event as both folds store it (sanitized text, answer body, dedup
//!   key, audit entry);
//! - [`dedup`]: first write wins per (tenant, `pcs_id`);
//! - [`divergence`]: where two regions' dedup state differs (range digests, then keys), and the
//!   cross-region rule that says which first record wins;
//! - [`audit`]: the hash-chained audit log, its canonical bytes and verification;
//! - [`audit_tasks`]: finished audit task ids, the DLQ and time attestations;
//! - [`merkle_check`]: recomputing the Merkle log from the audit rows (`flk audit check`, the
//!   tree half of a replay);
//! - [`merkle_log`]: the audit Merkle log (leaves, subtree hashes, signed checkpoints) and its
//!   operations on the store (its own `impl ProjectionStore` block);
//! - [`notify`]: `pg_notify` after commit, the [`DecidedListener`] and the [`RingListener`];
//! - [`state_hash`]: the digest that proves a rebuild equals the live store;
//! - [`rebuild`]: swapping a rebuilt schema in;
//! - [`replay_merge`], [`replay_fold`], [`bulk_copy`], [`bulk_load`]: the rebuild of `flk
//!   replay`: the order of the partitions' events, the pure in-memory fold that gives the rows
//!   `apply_batch` would leave, the binary COPY of those rows, and the keys and indexes dropped
//!   while they load;
//! - [`open`]: opening the store and the hot cache as the configuration describes them;
//! - [`hot_cache`] and [`ring`]: the Redis hot tier over a consistent hash ring;
//!   [`placement`]: the rings reads and writes go through (two while a migration dual-writes);
//!   [`redis_nodes`]: connections by node id and the per-node commands; [`ring_store`]: ring
//!   versions, the state every process follows, and migrations, in Postgres; [`ring_follower`]:
//!   the loop that keeps a process's hot cache on the recorded ring; [`ring_event`]: the ring
//!   change as an event of the Kafka log;
//! - [`error`]: [`StoreError`], classified by what the caller must do;
//! - `plan_mode`: which statements of the projector's transaction run on cached plans, and why;
//! - [`model`]: the values handed back; [`canonical_json`]: hashing `jsonb` values;
//! - [`frozen_status`]: the legacy numeric class the frozen hash formats still encode, derived
//!   from the stored outcome class (the store keeps outcomes, never HTTP statuses).
//!
//! # Invariants kept here
//!
//! - I2: only verified records touch the dedup table or the cache; malformed, refused and badly
//!   signed records get an audit entry and nothing else.
//! - I3: a dedup row is never overwritten while live; a different digest is a conflict that
//!   answers with the stored first outcome.
//! - I4: offsets, dedup and audit commit in one transaction, fenced by the owner epoch; a replayed
//!   batch (offsets below `next_offset`, or sources already audited) changes nothing.
//! - I5: [`HotCache::put_many`] is called by the projector only after `apply_batch` returned; the
//!   cache is best effort and may be flushed at any time.
//! - I6: [`ProjectionStore::state_hash`] covers only columns derived from events (expiry uses the
//!   event's `received_at_ms`, never a clock), so replaying the decisions from offset 0 into a
//!   fresh schema with the same TTLs gives the same hex. It assumes records of one (tenant,
//!   `pcs_id`) share a decisions partition (the topic key is `<tenant>/<pcs_id>`); otherwise the
//!   interleaving of partitions decides which record is first.
//! - I7: every lookup takes the tenant; cache keys escape it.
//! - I8: the database refuses UPDATE, DELETE and TRUNCATE on `audit_log`.
//!
//! Text values are stored with NUL replaced by U+FFFD (Postgres refuses NUL; see `sanitize`).

pub mod apply;
pub mod audit;
pub mod audit_tasks;
pub mod bulk_copy;
pub mod bulk_load;
pub mod canonical_json;
pub mod cold_objects;
pub mod cold_tier;
pub mod dedup;
pub mod divergence;
pub mod error;
pub mod frozen_status;
pub mod hot_cache;
pub mod merkle_check;
pub mod merkle_log;
pub mod migrations;
pub mod model;
mod normalized;
pub mod notify;
pub mod offsets;
pub mod open;
pub mod placement;
mod plan_mode;
pub mod rebuild;
pub mod redis_nodes;
pub mod replay_fold;
pub mod replay_merge;
pub mod reshard;
pub mod ring;
pub mod ring_algorithms;
pub mod ring_event;
pub mod ring_follower;
pub mod ring_store;
mod sanitize;
pub mod shard_stats;
pub mod state_hash;
pub mod store;

pub use apply::PartitionBatch;
pub use audit::{AuditEntry, GENESIS_HASH, chain_hash};
pub use error::StoreError;
pub use events::OutcomeClass;
pub use hot_cache::{CacheEntry, CacheError, CachedOutcome, HotCache, HotCacheConfig};
pub use model::{
    Applied, ChainBreak, ChainBreakKind, ChainReport, Claim, DEFAULT_DEDUP_TTL_MS, DedupResult,
    StoredOutcome, SwapReport, TenantTtl,
};
pub use notify::{DecidedListener, RingListener};
pub use replay_fold::{AuditChains, DedupRowVersion, Folded, ReplayFold};
pub use replay_merge::PartitionMerge;
pub use ring::{DEFAULT_VIRTUAL_NODES, HashRing};
pub use store::{ProjectionStore, StoreOptions};
