//! Infrastructure for FLK: configuration, telemetry, metrics, and the clients of Kafka, Postgres,
//! Redis and the object store. Local service scripts live beside this crate in `infra/scripts/`.
//!
//! Nothing here decides anything; it moves bytes and reports failures classified by what the caller
//! must do (bad input, retry later, fatal).

pub mod clock;
pub mod config;
pub mod failpoints;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod telemetry;
pub mod tracing_context;
