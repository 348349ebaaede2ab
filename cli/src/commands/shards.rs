//! `flk shards ...`: the cross-shard views of the hot tier, the same data the gateway serves at
//! `/api/shards/*` ([`projections::shard_stats`]), as aligned tables or JSON (`--json`, the
//! API's bodies). The recorded ring is installed once before asking, so the views follow a live
//! migration exactly as the gateway does.
//!
//! Exit codes: 0 when every node answered; 1 when some node failed (its line says why, the
//! others are still printed).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use infra::config::Config;
use projections::HotCache;
use projections::reshard::plan::Volume;
use projections::shard_stats::{
    self, DEFAULT_SAMPLE_PER_NODE, Distribution, Health, KeyLocation, MAX_SAMPLE_PER_NODE,
    NodeAnswer, NodeReport, RingInfo, Sample, Stats,
};
use serde::Serialize;

use super::service::{ConfigArgs, load};

/// `flk shards` subcommands.
#[derive(Debug, Subcommand)]
pub enum ShardsCommand {
    /// Keys and bytes of this deployment's prefix per Redis node, and the balance (max/mean keys).
    Distribution(OutputArgs),
    /// PING latency per node, and the ring versions in use.
    Health(OutputArgs),
    /// A few key names per node (never values).
    Sample {
        /// Key names per node.
        #[arg(long, default_value_t = DEFAULT_SAMPLE_PER_NODE,
              value_parser = clap::value_parser!(u64).range(1..=MAX_SAMPLE_PER_NODE))]
        per_node: u64,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Where one key should be (read and write rings) and which nodes hold it.
    Find {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// The record's id.
        #[arg(long)]
        pcs_id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Node count, ring versions, total keys and bytes, balance.
    Stats(OutputArgs),
}

/// Output format, config and logging.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the JSON the gateway's `/api/shards/*` answers instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: ConfigArgs,
}

/// Runs a `flk shards` command.
pub fn run(command: ShardsCommand) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let output = match &command {
        ShardsCommand::Distribution(output)
        | ShardsCommand::Health(output)
        | ShardsCommand::Sample { output, .. }
        | ShardsCommand::Find { output, .. }
        | ShardsCommand::Stats(output) => output,
    };
    let json = output.json;
    let (config, _telemetry) = load(&output.common, "warn", "shards")?;
    runtime.block_on(async {
        let cache = open(&config).await?;
        match &command {
            ShardsCommand::Distribution(_) => {
                let distribution = shard_stats::distribution(&cache).await;
                print(json, &distribution, print_distribution)?;
                Ok(exit_code(&distribution.nodes))
            }
            ShardsCommand::Health(_) => {
                let health = shard_stats::health(&cache).await;
                print(json, &health, print_health)?;
                Ok(exit_code(&health.nodes))
            }
            ShardsCommand::Sample { per_node, .. } => {
                let sample = shard_stats::sample(&cache, *per_node).await?;
                print(json, &sample, print_sample)?;
                Ok(exit_code(&sample.nodes))
            }
            ShardsCommand::Find { tenant, pcs_id, .. } => {
                let location = shard_stats::find(&cache, tenant, pcs_id).await?;
                print(json, &location, print_location)?;
                Ok(exit_code(&location.nodes))
            }
            ShardsCommand::Stats(_) => {
                let stats = shard_stats::stats(&cache).await;
                print(json, &stats, print_stats)?;
                Ok(u8::from(!stats.errors.is_empty()))
            }
        }
    })
}

/// The hot cache on the recorded ring (the configuration's until `flk migrate plan` records one).
async fn open(config: &Config) -> anyhow::Result<HotCache> {
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let cache = projections::open::hot_cache(config).context("configuring the redis hot tier")?;
    // Installed without registering as a follower: a one-shot command must not make
    // `flk migrate` wait for it.
    projections::ring_follower::install_recorded(&store, &cache)
        .await
        .context("reading the recorded ring")?;
    Ok(cache)
}

fn exit_code<T>(nodes: &[NodeReport<T>]) -> u8 {
    u8::from(
        nodes
            .iter()
            .any(|report| report.answer.error_opt().is_some()),
    )
}

fn print<T: Serialize>(json: bool, value: &T, table: fn(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table(value);
    }
    Ok(())
}

fn ring_line(ring: &RingInfo) -> String {
    let versions: Vec<String> = ring.write_versions.iter().map(i64::to_string).collect();
    let mut line = format!(
        "ring: state version {}, reads version {}, writes version{} {}",
        ring.state_version,
        ring.read_version,
        if versions.len() == 1 { "" } else { "s" },
        versions.join(" and ")
    );
    if ring.state_version == 0 {
        line.push_str(" (the configuration's; none recorded)");
    }
    if ring.dual_writing {
        line.push_str(", dual-writing");
    }
    if let Some(migration) = &ring.migration_id_opt {
        line.push_str(&format!(", migration {migration}"));
    }
    line
}

/// Width of the node column: the longest node id, at least the header's.
fn node_width<T>(nodes: &[NodeReport<T>]) -> usize {
    nodes
        .iter()
        .map(|report| report.node.len())
        .max()
        .unwrap_or(0)
        .max("node".len())
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn balance_text(balance_opt: Option<f64>) -> String {
    balance_opt.map_or_else(
        || "- (no keys)".to_owned(),
        |balance| format!("{balance:.3}"),
    )
}

fn print_distribution(distribution: &Distribution) {
    println!("{}", ring_line(&distribution.ring));
    println!("prefix: {}", distribution.prefix);
    let width = node_width(&distribution.nodes);
    println!(
        "{:<width$}  {:<5} {:>12} {:>14} {:>7}",
        "node", "reads", "keys", "bytes", "share"
    );
    let share = |keys: u64| {
        if distribution.total.keys == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.1}%",
                keys as f64 * 100.0 / distribution.total.keys as f64
            )
        }
    };
    for report in &distribution.nodes {
        let reads = yes_no(report.in_read_ring);
        match &report.answer {
            NodeAnswer::Answered(Volume { keys, bytes }) => println!(
                "{:<width$}  {reads:<5} {keys:>12} {bytes:>14} {:>7}",
                report.node,
                share(*keys)
            ),
            NodeAnswer::Failed { error } => {
                println!("{:<width$}  {reads:<5} error: {error}", report.node);
            }
        }
    }
    println!(
        "{:<width$}  {:<5} {:>12} {:>14}",
        "total", "", distribution.total.keys, distribution.total.bytes
    );
    println!(
        "balance (max/mean keys): {}",
        balance_text(distribution.balance_opt)
    );
}

fn print_health(health: &Health) {
    println!("{}", ring_line(&health.ring));
    let width = node_width(&health.nodes);
    println!("{:<width$}  {:<5} {:>12}", "node", "reads", "ping");
    for report in &health.nodes {
        let reads = yes_no(report.in_read_ring);
        match &report.answer {
            NodeAnswer::Answered(ping) => println!(
                "{:<width$}  {reads:<5} {:>9.3} ms",
                report.node, ping.latency_ms
            ),
            NodeAnswer::Failed { error } => {
                println!("{:<width$}  {reads:<5} error: {error}", report.node);
            }
        }
    }
    println!("{} of {} nodes answer", health.nodes_up, health.nodes.len());
}

fn print_sample(sample: &Sample) {
    println!(
        "prefix: {} (up to {} keys per node)",
        sample.prefix, sample.per_node
    );
    let width = node_width(&sample.nodes);
    println!("{:<width$}  key", "node");
    for report in &sample.nodes {
        match &report.answer {
            NodeAnswer::Answered(found) if found.keys.is_empty() => {
                println!("{:<width$}  (no keys)", report.node);
            }
            NodeAnswer::Answered(found) => {
                for key in &found.keys {
                    println!("{:<width$}  {key}", report.node);
                }
            }
            NodeAnswer::Failed { error } => println!("{:<width$}  error: {error}", report.node),
        }
    }
}

fn print_location(location: &KeyLocation) {
    println!("{}", ring_line(&location.ring));
    println!("key:          {}", location.key);
    println!("read owner:   {}", location.read_owner);
    println!("write owners: {}", location.write_owners.join(", "));
    let held = if location.held_by.is_empty() {
        "no node (not in the hot tier)".to_owned()
    } else {
        location.held_by.join(", ")
    };
    println!("held by:      {held}");
    let width = node_width(&location.nodes);
    println!(
        "{:<width$}  {:<10} {:<11} holds",
        "node", "read owner", "write owner"
    );
    for report in &location.nodes {
        let read = yes_no(report.node == location.read_owner);
        let write = yes_no(location.write_owners.contains(&report.node));
        let holds = match &report.answer {
            NodeAnswer::Answered(presence) => yes_no(presence.exists).to_owned(),
            NodeAnswer::Failed { error } => format!("error: {error}"),
        };
        println!("{:<width$}  {read:<10} {write:<11} {holds}", report.node);
    }
}

fn print_stats(stats: &Stats) {
    println!("{}", ring_line(&stats.ring));
    println!("prefix:   {}", stats.prefix);
    println!(
        "nodes:    {} ({} answered)",
        stats.node_count, stats.nodes_answered
    );
    println!("keys:     {}", stats.total.keys);
    println!("bytes:    {}", stats.total.bytes);
    println!(
        "balance:  {} (max/mean keys)",
        balance_text(stats.balance_opt)
    );
    for failed in &stats.errors {
        println!("error:    {}: {}", failed.node, failed.error);
    }
}
