//! The `flk` binary: the command line (clap) and the composition root.
//!
//! - [`commands`]: one module per subcommand group (`pcs`, `audit`, `serve`/`replay`/`state-hash`);
//! - [`serve`]: `flk serve`, which starts the roles a process runs (the HTTP gateway from the
//!   `gateway` crate, the actors from `actors`) and stops them gracefully;
//! - `flk load` and `flk bench` come from the `bench` crate (the load generators).
//!
//! Nothing here decides or stores anything: it parses, wires and reports.

pub mod commands;
pub mod serve;
pub mod top_view;

use commands::{audit, migrate, pcs, regions, service, shards, tier, top};

use clap::{Parser, Subcommand};

/// FLK: ingest, verify and keep signed PCS records (Proof-of-Computation Summaries).
#[derive(Debug, Parser)]
#[command(name = "flk", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with single PCS records offline: canonical payload, signing, verification.
    #[command(subcommand)]
    Pcs(pcs::PcsCommand),
    /// The audit log: signing key, offline proof verification.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The storage tiers: statistics, where one entry is, a manual demotion, segment checks.
    #[command(subcommand)]
    Tier(tier::TierCommand),
    /// Run the service: gateway, shard, projector, anchorer, audit worker and demoter roles (all
    /// by default; the anchorer only with an audit signing key).
    Serve(service::ServeArgs),
    /// Rebuild every projection from offset 0 of the decisions topic, then swap it in.
    Replay(service::ReplayArgs),
    /// Print a digest of the dedup and audit state (equal after a faithful rebuild).
    StateHash(service::ConfigArgs),
    /// Send a mixed demo load (accepted, escalated, duplicates, conflicts, bad signatures) to a
    /// gateway and print the answers by status.
    Load(bench::demo::LoadArgs),
    /// Measure a running `flk serve`: signed point-cloud records through the gateway or straight
    /// into Kafka, open or closed loop; prints throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Change the set of Redis nodes of the hot tier live: plan, dual-write, copy, verify,
    /// cutover, rollback, cleanup, status.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// The Redis nodes of the hot tier as they are: keys and bytes per node and the balance, PING
    /// latency, sample key names, where one key is, a summary (the gateway's /api/shards/*).
    #[command(subcommand)]
    Shards(shards::ShardsCommand),
    /// A terminal view of running processes from their /metrics: per role records/s, lag,
    /// in-flight work, restarts, progress age; per gateway submits/s, 5xx/s, p99.
    Top(top::TopArgs),
    /// Two regions: compare their dedup state and list the keys that differ.
    #[command(subcommand)]
    Regions(regions::RegionsCommand),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Pcs(command) => pcs::run(command),
        Command::Audit(command) => audit::run(command),
        Command::Tier(command) => tier::run(command),
        Command::Regions(command) => regions::run(command),
        Command::Serve(args) => service::serve(args),
        Command::Replay(args) => service::replay(args),
        Command::StateHash(args) => service::state_hash(args),
        Command::Load(args) => bench::demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Top(args) => top::run(args),
        Command::Migrate(command) => migrate::run(command),
        Command::Shards(command) => shards::run(command),
    }
}
