//! The `flk` command line (clap). Each subcommand group lives in its own module under `cli/`.

mod pcs;

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
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Pcs(command) => pcs::run(command),
    }
}
