//! The subcommand groups of `flk` (the load generators live in the `bench` crate).

pub mod audit;
pub mod migrate;
mod migrate_log;
pub mod migrate_steps;
mod migrate_view;
pub mod pcs;
pub mod regions;
pub mod service;
pub mod shards;
pub mod tier;
pub mod top;
