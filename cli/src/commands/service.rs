//! `flk serve`, `flk replay`, `flk state-hash`: commands that talk to the running stack.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actors::replay::{Progress, Quiet, Stage};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use anyhow::Context as _;
use clap::Args;
use infra::config::Config;
use infra::telemetry::{self, LogFormat};

use crate::serve::Role;

/// Options every service command takes.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML config file (defaults apply without one); `FLK_*` environment variables override it.
    #[arg(long, short = 'c', env = "FLK_CONFIG")]
    pub config: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Pretty)]
    pub log_format: LogFormatArg,
}

/// Log formats on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// `flk serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config and logging.
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Roles to run (comma-separated); all by default. Scale shard and projector roles by starting
    /// more processes: they share partitions through Kafka consumer groups.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub roles: Vec<Role>,
}

/// `flk replay` options.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Config and logging.
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Rows of a table (audit entries, dedup rows) handed to the rebuild's COPY at a time (a
    /// few chunks are in flight).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Build the fresh projections but do not swap them in (prints both state hashes).
    #[arg(long)]
    pub no_swap: bool,
    /// Hide the progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
}

/// Reads the configuration, then sets up logs and, when configured, trace export. The guard
/// flushes queued spans when dropped: keep it until the command returns.
pub(crate) fn load(
    common: &ConfigArgs,
    default_filter: &str,
    roles: &str,
) -> anyhow::Result<(Config, telemetry::TelemetryGuard)> {
    let format = match common.log_format {
        LogFormatArg::Json => LogFormat::Json,
        LogFormatArg::Pretty => LogFormat::Pretty,
    };
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("FLK_") || name.starts_with("AWS_"))
        .collect();
    let config = Config::load(common.config.as_deref(), &env)?;
    infra::clock::set_offset_ms(config.clock_offset_ms);
    let guard = telemetry::init_with_traces(
        format,
        default_filter,
        &config.telemetry,
        &[
            ("flk.roles", roles.to_owned()),
            ("flk.region", config.region.clone()),
        ],
    )?;
    if config.clock_offset_ms != 0 {
        tracing::warn!(
            clock_offset_ms = config.clock_offset_ms,
            "this process's clock is shifted (clock_offset_ms): for fault tests only"
        );
    }
    Ok((config, guard))
}

/// Runs `flk serve` until interrupted.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let explicit = !args.roles.is_empty();
    let mut roles: HashSet<Role> = if explicit {
        args.roles.into_iter().collect()
    } else {
        [
            Role::Gateway,
            Role::Shard,
            Role::Projector,
            Role::Anchorer,
            Role::AuditWorker,
            Role::Demoter,
            Role::Replicator,
            Role::DivergenceChecker,
        ]
        .into_iter()
        .collect()
    };
    let mut role_names: Vec<String> = roles
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|value| value.get_name().to_owned())
        .collect();
    role_names.sort();
    let (config, _telemetry) = load(&args.common, "info,rdkafka=warn", &role_names.join(","))?;
    if roles.contains(&Role::Anchorer) && config.audit.signing_key_file_opt.is_none() {
        if explicit {
            anyhow::bail!(
                "the anchorer role needs audit.signing_key_file_opt (or FLK_AUDIT_SIGNING_KEY_FILE); \
                 `flk audit keygen --out FILE` writes a key"
            );
        }
        tracing::info!("audit anchoring off: no audit signing key configured");
        roles.remove(&Role::Anchorer);
    }
    if roles.contains(&Role::Replicator) && config.replication.targets.is_empty() {
        if explicit {
            anyhow::bail!(
                "the replicator role needs at least one [[replication.targets]] (the regions to \
                 ship submissions to; docs/runbooks/geo-dr.md)"
            );
        }
        roles.remove(&Role::Replicator);
    }
    if roles.contains(&Role::DivergenceChecker) && !config.divergence.enabled() {
        if explicit {
            anyhow::bail!(
                "the divergence-checker role needs [divergence] remote_region,                  remote_postgres_url and remote_schema (docs/runbooks/geo-dr.md)"
            );
        }
        roles.remove(&Role::DivergenceChecker);
    }
    // Fault injection for tests; never set in production.
    let failpoints =
        infra::failpoints::Failpoints::parse(&std::env::var("FLK_FAILPOINTS").unwrap_or_default())
            .map_err(|problem| anyhow::anyhow!("FLK_FAILPOINTS: {problem}"))?;
    actix_rt::System::new().block_on(crate::serve::serve(config, roles, failpoints))?;
    Ok(0)
}

/// Runs `flk replay`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<u8> {
    let (config, _telemetry) = load(&args.common, "warn", "replay")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let progress: Arc<dyn Progress> = if args.quiet {
        Arc::new(Quiet)
    } else {
        Arc::new(ProgressLine::new())
    };
    runtime.block_on(actors::replay::replay(
        &config,
        args.batch,
        !args.no_swap,
        progress,
    ))?;
    Ok(0)
}

/// Runs `flk state-hash`.
pub fn state_hash(args: ConfigArgs) -> anyhow::Result<u8> {
    let (config, _telemetry) = load(&args, "warn", "state-hash")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let hash = runtime.block_on(async {
        let store = crate::serve::open_store(&config, &config.postgres.schema).await?;
        anyhow::Ok(store.state_hash().await?)
    })?;
    println!("{hash}");
    Ok(0)
}

/// The replay's progress bars on the terminal: decisions folded, rows copied.
#[derive(Debug)]
struct ProgressLine {
    /// Draws the two bars together.
    _bars: MultiProgress,
    /// Decisions read and folded.
    fold: ProgressBar,
    /// Audit and dedup rows copied into the rebuild schema.
    copy: ProgressBar,
}

impl ProgressLine {
    fn new() -> Self {
        let bars = MultiProgress::new();
        let bar = |template: &str| {
            let bar = bars.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        };
        let (fold, copy) = (
            bar("{spinner} fold [{bar:40}] {pos}/{len} decisions ({per_sec}, eta {eta})"),
            bar("{spinner} copy [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})"),
        );
        ProgressLine {
            _bars: bars,
            fold,
            copy,
        }
    }

    fn bar(&self, stage: Stage) -> &ProgressBar {
        match stage {
            Stage::Fold => &self.fold,
            Stage::Copy => &self.copy,
        }
    }
}

impl Progress for ProgressLine {
    fn start(&self, stage: Stage, total: u64) {
        self.bar(stage).set_length(total);
    }

    fn advance(&self, stage: Stage, count: u64) {
        self.bar(stage).inc(count);
    }

    fn finish(&self) {
        self.fold.finish_and_clear();
        self.copy.finish_and_clear();
    }
}
