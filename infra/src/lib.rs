//! Infrastructure for FLK: configuration (re-exported from the `flk-config` crate), telemetry,
//! metrics, failpoints, the wall clock, the Kafka clients, and the log seam ([`log`]) through which
//! actors read and write the log (Kafka in production, in memory in unit tests). The Postgres and
//! Redis clients live with the projections that own their schema and keys (`projections::store`,
//! `projections::hot_cache`); the object store comes with the cold tier. Local service scripts
//! live beside this crate in `infra/scripts/`.
//!
//! Nothing here decides anything; it moves bytes and reports failures classified by what the caller
//! must do (bad input, retry later, fatal).

pub mod clock;
/// The configuration, kept in its own light crate so it can be fuzzed without the clients here;
/// re-exported so `infra::config::...` stays the one path the other crates use.
pub use flk_config as config;
pub mod failpoints;
pub mod kafka;
pub mod log;
pub mod log_trace_ids;
pub mod metrics;
pub mod objects;
pub mod telemetry;
pub mod tracing_context;
pub mod tsa;
