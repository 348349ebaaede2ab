//! `flk migrate ...`: change the set of Redis nodes of the hot tier while everything runs, in
//! eight resumable steps (plan, dual-write, copy, verify, cutover, rollback, cleanup, status),
//! like Vitess Reshard + VDiff. The workflow state lives in Postgres (`ring_migrations`), so any
//! step can run from any machine, again after a failure, or after a kill -9.
//!
//! Exit codes: 0 done; 1 verify found keys that differ; 2 refused (bad spec, wrong phase, a
//! process did not follow the new ring in time, declined prompt); 130 interrupted (Ctrl-C; run
//! the same command again to resume).

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::migrate_steps as steps;
use super::service::{ConfigArgs, load};

/// Exit code: verify found differences.
pub const EXIT_DIFFERENCES: u8 = 1;
/// Exit code: the step was refused.
pub const EXIT_REFUSED: u8 = 2;
/// Exit code: interrupted (resume by running it again).
pub const EXIT_INTERRUPTED: u8 = 130;

/// `flk migrate` subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Scan the real keys and report exactly what moves (keys, bytes, per source and target
    /// node) and how long the copy takes at the throttle; record the migration.
    Plan {
        /// Migration spec (TOML or JSON): `name`, optional `source`, and `target` node sets.
        spec: String,
        /// Throttle the duration estimate assumes (the copy's default).
        #[arg(long, default_value_t = steps::DEFAULT_MAX_KEYS_PER_SECOND)]
        max_keys_per_second: u64,
        /// Print the plan without recording anything.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// From now on every process writes moved keys to both rings (old and new); waits until
    /// every live process does.
    DualWrite(StepArgs),
    /// Copy the keys that move, with their TTLs, in throttled chunks, with progress and ETA;
    /// resumable after kill -9 or Ctrl-C (run it again).
    Copy {
        #[command(flatten)]
        step: StepArgs,
        /// Upper bound on keys written per second.
        #[arg(long, default_value_t = steps::DEFAULT_MAX_KEYS_PER_SECOND)]
        max_keys_per_second: u64,
        /// Keys each node lists per round (SCAN COUNT); progress is saved every 200 ms.
        #[arg(long, default_value_t = projections::reshard::DEFAULT_CHUNK_KEYS)]
        chunk: usize,
    },
    /// Compare both sides by chunk checksums, then name the exact keys that differ; exit 1 if
    /// any does.
    Verify {
        #[command(flatten)]
        step: StepArgs,
        /// Copy the differing keys again, then check them again.
        #[arg(long)]
        fix: bool,
    },
    /// Switch reads to the new ring (one version bump); only after a clean verify of the last
    /// copy. Writes keep reaching both rings until cleanup, so a rollback loses nothing.
    Cutover(ConfirmArgs),
    /// Go back to the old ring at any phase before cleanup; nothing is lost.
    Rollback(ConfirmArgs),
    /// Stop writing the old ring, then delete moved keys from the nodes that no longer own them.
    Cleanup {
        #[command(flatten)]
        confirm: ConfirmArgs,
        /// Upper bound on keys deleted per second.
        #[arg(long, default_value_t = steps::DEFAULT_MAX_KEYS_PER_SECOND)]
        max_keys_per_second: u64,
    },
    /// Phase, counts, copy progress, verify result, followers and history: of one migration,
    /// or a line per migration.
    Status {
        /// Migration id (all migrations when absent).
        id: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: ConfigArgs,
    },
}

/// A step on one migration.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// Migration id (as `plan` printed it).
    pub id: String,
    /// Say what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: ConfigArgs,
}

/// A step that asks before it acts.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub step: StepArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// Runs a `flk migrate` command.
pub fn run(command: MigrateCommand) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match command {
        MigrateCommand::Plan {
            spec,
            max_keys_per_second,
            dry_run,
            json,
            common,
        } => {
            let (config, _telemetry) = load(&common, "warn", "migrate")?;
            runtime.block_on(steps::plan(
                &config,
                &spec,
                max_keys_per_second,
                dry_run,
                json,
            ))
        }
        MigrateCommand::DualWrite(step) => {
            let (config, _telemetry) = load(&step.common, "warn", "migrate")?;
            runtime.block_on(steps::dual_write(&config, &step.id, step.dry_run))
        }
        MigrateCommand::Copy {
            step,
            max_keys_per_second,
            chunk,
        } => {
            let (config, _telemetry) = load(&step.common, "warn", "migrate")?;
            runtime.block_on(steps::copy(
                &config,
                &step.id,
                step.dry_run,
                max_keys_per_second,
                chunk,
            ))
        }
        MigrateCommand::Verify { step, fix } => {
            let (config, _telemetry) = load(&step.common, "warn", "migrate")?;
            runtime.block_on(steps::verify(&config, &step.id, fix, step.dry_run))
        }
        MigrateCommand::Cutover(confirm) => {
            let (config, _telemetry) = load(&confirm.step.common, "warn", "migrate")?;
            runtime.block_on(steps::cutover(&config, &confirm))
        }
        MigrateCommand::Rollback(confirm) => {
            let (config, _telemetry) = load(&confirm.step.common, "warn", "migrate")?;
            runtime.block_on(steps::rollback(&config, &confirm))
        }
        MigrateCommand::Cleanup {
            confirm,
            max_keys_per_second,
        } => {
            let (config, _telemetry) = load(&confirm.step.common, "warn", "migrate")?;
            runtime.block_on(steps::cleanup(&config, &confirm, max_keys_per_second))
        }
        MigrateCommand::Status { id, json, common } => {
            let (config, _telemetry) = load(&common, "warn", "migrate")?;
            runtime.block_on(steps::status(&config, id.as_deref(), json))
        }
    }
}
