//! Supervised actix actors, one per file, and the wiring module that starts them.
//!
//! - [`shard`]: submissions -> decisions (pure decider, at-least-once);
//! - [`projector`]: decisions -> Postgres (one transaction per batch) -> Redis, then wakes waiters;
//! - [`decision_bus`]: where gateways wait for the committed decision of their own record;
//! - [`supervision`]: restart backoff and the heartbeat watchdog for stuck actors.
//!
//! Every actor keeps its working state inside the future it spawns in `started()`, so an actix
//! restart (same instance) starts from a clean slate and reloads its checkpoint.

pub mod decision_bus;
pub mod projector;
pub mod rebalance;
pub mod shard;
pub mod supervision;
