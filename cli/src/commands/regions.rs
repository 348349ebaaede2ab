//! `flk regions diff`: compares this region's dedup state with another region's (range digests,
//! then the differing keys; `projections::divergence`), prints every differing key with the side
//! the cross-region rule keeps, and records the run and its findings in this region's database.
//! Exit 0 when the regions agree, 1 when they differ, 2 on a usage error.
//!
//! `flk regions reconcile` (in [`reconcile`]) runs the same comparison, then ships each differing
//! key's winning record to the region that lacks it, where it is decided like any mirrored record.

use anyhow::Context as _;
use clap::Subcommand;
use infra::clock::now_ms;
use projections::divergence::{
    DEFAULT_LEAF_KEYS, DEFAULT_SETTLE_MS, DiffReport, RegionView, check_dedup_table, diff,
    record_run,
};
use projections::store::{ProjectionStore, StoreOptions};

use super::service::{ConfigArgs, load};

mod reconcile;

/// `flk regions` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegionsCommand {
    /// Compare this region's dedup state with another region's and list the differing keys.
    Diff(DiffArgs),
    /// Make two regions agree: ship each differing key's winning record (by the cross-region
    /// rule) to the region that lacks it, then wait until they agree. Safe to run again.
    Reconcile(reconcile::ReconcileArgs),
}

/// `flk regions diff` arguments.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The other region's id.
    #[arg(long)]
    pub remote_region: String,
    /// The other region's Postgres (read only: nothing is written there).
    #[arg(long)]
    pub remote_postgres_url: String,
    /// The other region's projection schema.
    #[arg(long)]
    pub remote_schema: String,
    /// The other region's Kafka topic prefix (names where its rows came from); by default the
    /// `[[replication.targets]]` entry of that region, else this region's prefix.
    #[arg(long)]
    pub remote_topic_prefix: Option<String>,
    /// Only this tenant (default: every tenant either region has).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Leave out keys received in the last this many milliseconds (still replicating).
    #[arg(long, default_value_t = DEFAULT_SETTLE_MS)]
    pub settle_ms: i64,
    /// Largest key range compared key by key.
    #[arg(long, default_value_t = DEFAULT_LEAF_KEYS)]
    pub leaf_keys: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Config and logging.
    #[command(flatten)]
    pub common: ConfigArgs,
}

/// Runs a `flk regions` command.
pub fn run(command: RegionsCommand) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match command {
        RegionsCommand::Diff(args) => {
            if args.settle_ms < 0 || args.leaf_keys < 1 {
                eprintln!("flk regions diff: --settle-ms must be >= 0 and --leaf-keys >= 1");
                return Ok(2);
            }
            let (config, _telemetry) = load(&args.common, "warn", "regions")?;
            runtime.block_on(run_diff(&config, &args))
        }
        RegionsCommand::Reconcile(args) => {
            if args.diff.settle_ms < 0 || args.diff.leaf_keys < 1 {
                eprintln!("flk regions reconcile: --settle-ms must be >= 0 and --leaf-keys >= 1");
                return Ok(2);
            }
            let (config, _telemetry) = load(&args.diff.common, "warn", "regions")?;
            runtime.block_on(reconcile::run(&config, &args))
        }
    }
}

/// Both regions' stores, opened for a comparison.
pub(crate) struct Stores {
    /// This region's.
    pub local: ProjectionStore,
    /// The other region's (read only).
    pub remote: ProjectionStore,
    /// The other region's topic prefix.
    pub remote_prefix: String,
}

impl Stores {
    /// Opens both, checking the other region's schema holds a dedup table.
    pub async fn open(config: &infra::config::Config, args: &DiffArgs) -> anyhow::Result<Self> {
        let local = crate::serve::open_store(config, &config.postgres.schema).await?;
        let remote = ProjectionStore::connect_lazy(
            &args.remote_postgres_url,
            &args.remote_schema,
            StoreOptions::default(),
        )
        .with_context(|| format!("opening region {}'s store", args.remote_region))?;
        let remote_prefix = args.remote_topic_prefix.clone().unwrap_or_else(|| {
            config
                .replication
                .target(&args.remote_region)
                .map(|target| target.kafka(&config.kafka).topic_prefix)
                .unwrap_or_else(|| config.kafka.topic_prefix.clone())
        });
        let stores = Stores {
            local,
            remote,
            remote_prefix,
        };
        check_dedup_table(&stores.there(args))
            .await
            .with_context(|| format!("reading region {}", args.remote_region))?;
        Ok(stores)
    }

    /// This region's view.
    pub fn here<'a>(&'a self, config: &'a infra::config::Config) -> RegionView<'a> {
        RegionView {
            store: &self.local,
            region: &config.region,
            topic_prefix: &config.kafka.topic_prefix,
        }
    }

    /// The other region's view.
    pub fn there<'a>(&'a self, args: &'a DiffArgs) -> RegionView<'a> {
        RegionView {
            store: &self.remote,
            region: &args.remote_region,
            topic_prefix: &self.remote_prefix,
        }
    }
}

/// Compares the regions now and records the run; returns the report and the run id.
pub(crate) async fn compare(
    config: &infra::config::Config,
    args: &DiffArgs,
    stores: &Stores,
) -> anyhow::Result<(DiffReport, i64, i64)> {
    let started_at_ms = now_ms();
    let report = diff(
        &stores.here(config),
        &stores.there(args),
        args.tenant.as_deref(),
        started_at_ms - args.settle_ms,
        args.leaf_keys,
    )
    .await
    .context("comparing the regions")?;
    let finished_at_ms = now_ms();
    let run_id = record_run(
        &stores.local,
        &args.remote_region,
        &report,
        started_at_ms,
        finished_at_ms,
    )
    .await
    .context("recording the findings")?;
    Ok((report, run_id, finished_at_ms - started_at_ms))
}

async fn run_diff(config: &infra::config::Config, args: &DiffArgs) -> anyhow::Result<u8> {
    if args.remote_region == config.region {
        eprintln!(
            "flk regions diff: --remote-region {} is this region; name the other one",
            args.remote_region
        );
        return Ok(2);
    }
    let stores = Stores::open(config, args).await?;
    let (report, run_id, took_ms) = compare(config, args, &stores).await?;
    if args.json {
        println!("{}", report_json(&report, run_id, config, args));
    } else {
        print_table(&report, run_id, config, args, took_ms);
    }
    Ok(if report.findings.is_empty() { 0 } else { 1 })
}

pub(crate) fn print_table(
    report: &DiffReport,
    run_id: i64,
    config: &infra::config::Config,
    args: &DiffArgs,
    took_ms: i64,
) {
    println!(
        "regions {} (here) and {} (there): {} and {} settled keys, {} ranges compared, \
         {} compared key by key, {} ms (run {run_id})",
        config.region,
        args.remote_region,
        report.keys_here,
        report.keys_there,
        report.buckets_compared,
        report.leaves_compared,
        took_ms
    );
    if report.findings.is_empty() {
        println!("no differences");
        return;
    }
    println!(
        "{:<16} {:<66} {:<18} {:<6}",
        "tenant", "pcs_id", "difference", "keeps"
    );
    for finding in &report.findings {
        println!(
            "{:<16} {:<66} {:<18} {:<6}",
            finding.tenant,
            finding.pcs_id,
            finding.kind.as_str(),
            finding.winner_opt.map_or("-", |side| side.as_str())
        );
    }
    println!(
        "{} differing keys; 'keeps' is the side the cross-region rule keeps (earliest \
         received-at, then region id); missing keys catch up by replication",
        report.findings.len()
    );
}

fn report_json(
    report: &DiffReport,
    run_id: i64,
    config: &infra::config::Config,
    args: &DiffArgs,
) -> serde_json::Value {
    let side = |key_opt: &Option<projections::divergence::KeyState>| {
        key_opt.as_ref().map(|key| {
            serde_json::json!({
                "signed_digest": hex::encode(&key.signed_digest),
                "outcome_code": key.outcome_code,
                "received_at_ms": key.received_at_ms,
                "origin_region": key.origin,
            })
        })
    };
    serde_json::json!({
        "run_id": run_id,
        "here": config.region,
        "there": args.remote_region,
        "keys_here": report.keys_here,
        "keys_there": report.keys_there,
        "buckets_compared": report.buckets_compared,
        "leaves_compared": report.leaves_compared,
        "findings": report.findings.iter().map(|finding| serde_json::json!({
            "tenant": finding.tenant,
            "pcs_id": finding.pcs_id,
            "kind": finding.kind.as_str(),
            "here": side(&finding.here_opt),
            "there": side(&finding.there_opt),
            "winner": finding.winner_opt.map(|side| side.as_str()),
        })).collect::<Vec<_>>(),
    })
}
