//! The load generators of `flk`: [`demo`] (`flk load`, a mixed demo load with answers by
//! status) and, in this module, `flk bench`: a load generator and latency meter for a running
//! `flk serve`.
//!
//! It builds signed PCS records from generated point clouds (`records`), several tenants and a
//! chosen share of duplicates, all before the clock starts, then drives them through the gateway
//! over HTTP/1.1 keep-alive connections (`http_load`) or straight into the submissions topic
//! (`kafka_load`), open loop at a target rate or closed loop for the maximum, and reports HDR
//! histogram percentiles, throughput and answers by status (`report`).
//!
//! The tenants, their HMAC secrets and verification parameters, the topic prefix and the Postgres
//! schema come from the same config file `flk serve` runs with. The benchmark measures; it gates
//! nothing (the exit code is 0 even when requests failed: the table says so).

mod cold_load;
pub mod demo;
mod history;
mod http_load;
mod kafka_load;
mod proof_load;
mod records;
mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use infra::config::Config;

use records::{Plan, Shape, SigningTenant};
use report::{LatencySummary, Live, Report};

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `POST /v1/pcs/submit` on the gateway; measures submit latency (the answer carries the
    /// committed decision, so it is end to end as a client sees it).
    Gateway,
    /// Produce to `<prefix>flk.submissions`; measures produce-to-committed-decision latency.
    Kafka,
    /// `GET /v1/audit/proof` for sampled leaves of the newest checkpoint, closed loop over
    /// `connections`; measures proof generation (a tenth of the answers are verified).
    Proofs,
    /// `GET /v1/pcs/{pcs_id}` once for sampled keys of the cold tier (10 per segment, up to
    /// `count` segments, default 200); measures a read that fetches and verifies a segment and a
    /// read served from the gateway's cache of verified segments.
    ColdReads,
}

/// `flk bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// TOML config `flk serve` runs with (tenants, keys, topics, schema); `FLK_*` override it.
    #[arg(long, short = 'c', env = "FLK_CONFIG")]
    pub config: Option<String>,
    /// Where the load goes.
    #[arg(long, value_enum, default_value_t = Target::Gateway)]
    pub target: Target,
    /// Gateway base URL (default: `http://` + `gateway.listen` of the config).
    #[arg(long)]
    pub url: Option<String>,
    /// Offered submissions per second (open loop); 0 runs closed loop for the maximum.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Submissions to prepare (default: rate x duration, or 5,000/s x duration in closed loop);
    /// sending stops at whichever of count and duration comes first.
    #[arg(long)]
    pub count: Option<usize>,
    /// HTTP keep-alive connections (gateway target).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Most records produced but not yet decided (Kafka target).
    #[arg(long, default_value_t = 5_000)]
    pub window: usize,
    /// Producer linger for the Kafka target (default: `kafka.linger_ms` of the config).
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Share of submissions that repeat a recent record (answered from dedup).
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_ratio: f64,
    /// Tenants to spread records over (default: every enabled tenant of the config).
    #[arg(long, value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// Point-cloud shapes to draw from (default: all; `sparse` records are answered 202).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub shapes: Vec<Shape>,
    /// Seed of the record generator (default: from the clock, so reruns are not duplicates).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per-request timeout in seconds (gateway target).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// After the last produce, seconds to wait for the remaining decisions (Kafka target).
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Record every submission attempt (gateway target) as a JSON line in this file: the history
    /// `flk-chaos check-history` judges against the stores.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Label carried into the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Only build the records and print their mean size in bytes (to size other load tools).
    #[arg(long)]
    pub prepare_only: bool,
}

/// Runs `flk bench`; returns the exit code.
pub fn run(args: BenchArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.history.is_none() || matches!(args.target, Target::Gateway),
        "--history records what the gateway answered each submission; with --target kafka there \
         is no per-record answer to record (use --target gateway)"
    );
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("FLK_"))
        .collect();
    let config = Config::load(args.config.as_deref(), &env)?;
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        anyhow::bail!("--rate must be a non-negative number");
    }
    if !(0.0..1.0).contains(&args.duplicate_ratio) {
        anyhow::bail!("--duplicate-ratio must be in [0, 1)");
    }
    if args.target == Target::Proofs {
        return run_proofs(&args, &config);
    }
    if args.target == Target::ColdReads {
        return run_cold_reads(&args, &config);
    }
    let tenants = signing_tenants(&config, &args.tenants)?;
    let rate_opt = (args.rate > 0.0).then_some(args.rate);
    let count = args.count.unwrap_or(match rate_opt {
        Some(rate) => (rate * args.duration).ceil() as usize,
        // Enough for 5,000/s over the duration; a faster run ends early (throughput still holds).
        None => ((args.duration * 5_000.0).ceil() as usize).clamp(1_000, 300_000),
    });
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64)
    });
    let plan = Arc::new(build_plan(&args, tenants, count, seed));
    eprintln!(
        "flk bench: {} submissions prepared ({} duplicates), record size {:.0} B mean",
        plan.submissions.len(),
        plan.duplicates,
        plan.mean_record_bytes()
    );
    if args.prepare_only {
        println!("{:.0}", plan.mean_record_bytes());
        return Ok(0);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let report = runtime.block_on(drive(&args, &config, plan, rate_opt))?;
    print!("{}", report.table());
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(0)
}

/// `--target proofs`.
fn run_proofs(args: &BenchArgs, config: &Config) -> anyhow::Result<u8> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.gateway.listen));
    let tenants: Vec<String> = config.tenants.keys().cloned().collect();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let load_before = report::load_average();
    let run = runtime.block_on(proof_load::run(
        &base,
        &tenants,
        args.connections,
        Duration::from_secs_f64(args.duration.max(0.0)),
    ))?;
    let rate = run.proofs as f64 / run.elapsed.as_secs_f64().max(1e-9);
    println!(
        "flk bench proofs: tree size {}, {} connections, {:.1} s; {} proofs ({rate:.0}/s), {} errors, {} verified",
        run.tree_size,
        args.connections,
        run.elapsed.as_secs_f64(),
        run.proofs,
        run.errors,
        run.verified
    );
    println!(
        "latency ms: p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}; load {:?} before, {:?} after",
        run.latency.p50_ms,
        run.latency.p95_ms,
        run.latency.p99_ms,
        run.latency.max_ms,
        load_before,
        report::load_average()
    );
    Ok(u8::from(run.errors > 0))
}

/// `--target cold-reads`.
fn run_cold_reads(args: &BenchArgs, config: &Config) -> anyhow::Result<u8> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.gateway.listen));
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let load_before = report::load_average();
    let run = runtime.block_on(async {
        let store = projections::open::store(config, &config.postgres.schema)
            .await
            .context("opening the projection store")?;
        let segments = args.count.unwrap_or(200);
        cold_load::run(
            &base,
            &store,
            args.connections,
            i64::try_from(segments).unwrap_or(i64::MAX),
            10,
        )
        .await
    })?;
    println!(
        "flk bench cold-reads: {} segments, {} connections, {:.1} s; {} cold reads, {} other answers",
        run.segments,
        args.connections,
        run.elapsed.as_secs_f64(),
        run.reads,
        run.other
    );
    for (label, summary) in [
        ("object (fetch + verify)", &run.object),
        ("cache (verified copy)", &run.cache),
    ] {
        println!(
            "{label}: {} reads, latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
            summary.count, summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms
        );
    }
    println!(
        "load {:?} before, {:?} after",
        load_before,
        report::load_average()
    );
    Ok(u8::from(run.other > 0))
}

/// The tenants to sign for: the named ones, or every enabled tenant. A tenant's first HMAC key
/// signs; a tenant with only Ed25519 keys cannot be signed for (the config has no private key).
fn signing_tenants(config: &Config, wanted: &[String]) -> anyhow::Result<Vec<SigningTenant>> {
    let mut tenants = Vec::new();
    for (name, tenant) in &config.tenants {
        if !(wanted.is_empty() && tenant.enabled || wanted.contains(name)) {
            continue;
        }
        let hmac_secret_opt = tenant
            .keys
            .iter()
            .find_map(|key| key.hmac_secret.as_ref())
            .map(|secret| secret.as_bytes().to_vec());
        if hmac_secret_opt.is_none() && !tenant.keys.is_empty() {
            if wanted.contains(name) {
                anyhow::bail!("tenant {name} has no HMAC key to sign with");
            }
            continue;
        }
        tenants.push(SigningTenant {
            name: name.clone(),
            hmac_secret_opt,
            params: tenant.params,
        });
    }
    if let Some(missing) = wanted
        .iter()
        .find(|name| !config.tenants.contains_key(*name))
    {
        anyhow::bail!("tenant {missing} is not in the config");
    }
    if tenants.is_empty() {
        anyhow::bail!("no tenant to sign for: configure a tenant with an HMAC key");
    }
    Ok(tenants)
}

/// Builds the plan on every core, in chunks with their own seeds (deterministic for a seed).
fn build_plan(args: &BenchArgs, tenants: Vec<SigningTenant>, count: usize, seed: u64) -> Plan {
    let bar = progress_bar(args.quiet, count as u64, "preparing records");
    let parts = std::thread::available_parallelism().map_or(1, usize::from);
    let per_part = count.div_ceil(parts.max(1));
    let built: Vec<Plan> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..parts)
            .map(|part| {
                let (tenants, bar) = (tenants.clone(), bar.clone());
                let part_count = per_part.min(count.saturating_sub(part * per_part));
                scope.spawn(move || {
                    records::plan(
                        tenants,
                        &args.shapes,
                        part_count,
                        args.duplicate_ratio,
                        seed.wrapping_add(part as u64 * 0x9e37_79b9),
                        |_| bar.inc(1_000),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .collect()
    });
    bar.finish_and_clear();
    let mut plan = Plan {
        tenants,
        submissions: Vec::with_capacity(count),
        duplicates: 0,
    };
    // Interleave the parts, so every stretch of the run mixes them.
    let mut iterators: Vec<_> = built
        .into_iter()
        .map(|part| {
            plan.duplicates += part.duplicates;
            part.submissions.into_iter()
        })
        .collect();
    while plan.submissions.len() < count {
        let before = plan.submissions.len();
        for iterator in &mut iterators {
            plan.submissions.extend(iterator.next());
        }
        if plan.submissions.len() == before {
            break;
        }
    }
    plan
}

fn progress_bar(quiet: bool, length: u64, prefix: &'static str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length).with_prefix(prefix);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn drive(
    args: &BenchArgs,
    config: &Config,
    plan: Arc<Plan>,
    rate_opt: Option<f64>,
) -> anyhow::Result<Report> {
    let live = Arc::new(Live::default());
    let bar = progress_bar(args.quiet, plan.submissions.len() as u64, "sending");
    let ticker = {
        let (bar, live) = (bar.clone(), live.clone());
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                bar.set_position(live.done.load(std::sync::atomic::Ordering::Relaxed));
                bar.set_message(live.message());
            }
        })
    };
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let load_before = report::load_average();
    let mut report = Report {
        label: args.label.clone(),
        target: String::new(),
        mode: if rate_opt.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        }
        .to_owned(),
        offered_rate_opt: rate_opt,
        concurrency: 0,
        tenants: plan.tenants.iter().map(|t| t.name.clone()).collect(),
        planned: plan.submissions.len(),
        sent: 0,
        duplicates_planned: plan.duplicates,
        record_bytes_mean: plan.mean_record_bytes(),
        shapes: plan.shape_counts(),
        elapsed_s: 0.0,
        throughput_per_s: 0.0,
        produce_rate_per_s_opt: None,
        statuses: Default::default(),
        latencies: Default::default(),
        load_before,
        load_after: [0.0; 3],
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
    };
    match args.target {
        Target::Gateway => {
            let base = args
                .url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.gateway.listen));
            let options = http_load::HttpOptions {
                submit_url: format!("{}/v1/pcs/submit", base.trim_end_matches('/')),
                connections: args.connections.max(1),
                rate_opt,
                duration,
                request_timeout: Duration::from_secs_f64(args.request_timeout.max(0.001)),
                record_history: args.history.is_some(),
            };
            let mut result = http_load::run(plan.clone(), options, live.clone()).await?;
            if let Some(path) = &args.history {
                history::write(path, &plan, &mut result.attempts)?;
            }
            report.target = "gateway".to_owned();
            report.concurrency = args.connections.max(1);
            report.sent = result.sent;
            report.elapsed_s = result.elapsed.as_secs_f64();
            report.throughput_per_s = result.sent as f64 / report.elapsed_s.max(1e-9);
            report.statuses = result.statuses;
            report
                .latencies
                .insert("submit".to_owned(), LatencySummary::of(&result.submit));
        }
        Target::Proofs | Target::ColdReads => {
            anyhow::bail!("the {:?} target has no submission plan", args.target)
        }
        Target::Kafka => {
            let mut kafka = config.kafka.clone();
            if let Some(linger) = args.linger_ms {
                kafka.linger_ms = linger;
            }
            let store = projections::open::store(config, &config.postgres.schema)
                .await
                .context("opening the projection store")?;
            let options = kafka_load::KafkaOptions {
                kafka,
                rate_opt,
                window: args.window.max(1),
                duration,
                drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
            };
            let result = kafka_load::run(plan.clone(), options, store, live.clone()).await?;
            report.target = "kafka".to_owned();
            report.concurrency = args.window.max(1);
            report.sent = result.sent;
            report.elapsed_s = result.elapsed.as_secs_f64();
            let decided = result.end_to_end.len();
            report.throughput_per_s = decided as f64 / report.elapsed_s.max(1e-9);
            report.produce_rate_per_s_opt = Some(
                result.produce_ack.len() as f64 / result.produce_elapsed.as_secs_f64().max(1e-9),
            );
            report.statuses = result.statuses;
            report
                .latencies
                .insert("e2e".to_owned(), LatencySummary::of(&result.end_to_end));
            report.latencies.insert(
                "produce_ack".to_owned(),
                LatencySummary::of(&result.produce_ack),
            );
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    report.load_after = report::load_average();
    Ok(report)
}
