//! Supervised actix actors, one per file, and the contract they share.
//!
//! - [`contract`]: the actor contract (typed messages, status board, the inlet that reads a log
//!   source with backpressure, synchronous revocation); read it first, then `docs/actors.md`;
//! - [`supervision`]: restart backoff with jitter, the restart budget, the heartbeat watchdog;
//! - [`shard`]: submissions -> decisions (pure decider, at-least-once);
//! - [`projector`]: decisions -> Postgres (group commit) -> Redis, then wakes waiters;
//! - [`anchorer`]: audit entries -> Merkle log leaves -> signed checkpoints (one round per tick);
//! - [`audit_worker`]: runs `flk.audit.tasks` (retries with backoff, then the DLQ); the kinds are
//!   in [`audit_task_kinds`];
//! - [`replicator`]: local submissions -> another region's cluster (MirrorMaker 2 style, with
//!   provenance headers; never re-ships a replica);
//! - [`heartbeat_emitter`], [`heartbeat_observer`]: one heartbeat a second per region, mirrored by
//!   a replicator, read in the other region as replication lag and liveness;
//! - [`divergence_checker`]: compares this region's dedup state with another region's on a
//!   timer and exports the differing keys as metrics (findings stored in Postgres);
//! - [`demoter`]: warm rows past their tenant's TTL -> verified cold segments (a lease makes it a
//!   singleton); one cycle is [`demotion`], shared with `flk tier demote --now`;
//! - [`lanes`]: per-partition positions stored in order for actors that finish out of order;
//! - [`hot_cache_fill`]: the projector's after-commit side effect that fills Redis;
//! - [`decision_bus`]: where gateways wait for the committed decision of their own record;
//! - [`replay`]: the rebuild job behind `flk replay` (not an actor).
//!
//! Actors talk to the log only through `infra::log` (Kafka in production, in memory in the unit
//! tests beside each actor), so their logic is tested without a broker.

pub mod anchorer;
pub mod audit_task_kinds;
pub mod audit_worker;
pub mod contract;
pub mod decision_bus;
pub mod demoter;
pub mod demotion;
pub mod divergence_checker;
pub mod heartbeat_emitter;
pub mod heartbeat_observer;
pub mod hot_cache_fill;
pub mod lanes;
pub mod projector;
pub mod replay;
pub mod replicator;
pub mod shard;
pub mod supervision;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod test_support;
