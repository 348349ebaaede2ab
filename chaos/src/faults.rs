//! The faults a chaos scenario injects, each with its way back: what is done to which process or
//! link, for how long, and how the world is made whole again.
//!
//! A fault acts on shared services (the stack's broker, Postgres and Redis) or on the scenario's
//! own `flk` processes and fault proxies. Faults on shared services must not run beside other
//! tests: the scenario runner runs in its own test binary (cargo runs test binaries one after
//! another) and in `flk-chaos`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::deployment::Deployment;
use crate::fixtures::Fixtures;
use crate::link_proxy::LinkProxy;
use crate::load::{self, LoadOptions, LoadResult};
use crate::process::{FlkProcess, run_flk, stack};
use crate::redis_node::ExtraRedis;
use crate::wait_until;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the Kafka broker, restarted at once (log recovery).
    KillBroker,
    /// The broker frozen with SIGSTOP for the fault's duration, then thawed.
    PauseBroker,
    /// `kill -9` of the Postgres server and its backends, restarted at once (crash recovery).
    KillPostgres,
    /// Postgres frozen with SIGSTOP for the fault's duration.
    PausePostgres,
    /// Postgres reached through a fault proxy that adds 20 ms each way and caps the bandwidth at
    /// 256 KiB/s for the fault's duration.
    SlowPostgres,
    /// The proxy in front of Postgres drops every connection and answers nothing (a blackhole)
    /// for the fault's duration.
    PostgresBlackhole,
    /// `kill -9` of one of the three Redis nodes (a hot-cache shard lost with its data),
    /// restarted empty after the fault's duration.
    RedisShardLoss,
    /// Every Redis node frozen with SIGSTOP for the fault's duration.
    PauseRedis,
    /// A burst at four times the tenant's rate limit for the fault's duration, beside the
    /// steady load: backpressure (429) at the door, nothing logged twice or lost.
    Overload,
    /// The object store frozen with SIGSTOP for the fault's duration while records move to the
    /// cold tier a second after their decision and a reader looks them up: cold reads fail
    /// (counted), ingestion and the warm tier do not.
    ColdTierOutage,
    /// A shard migration to one more Redis node is in its dual-write phase (writes go to the old
    /// and the new ring) when the new node dies (`kill -9`); after the fault's duration the
    /// migration is rolled back. Dual-write errors are counted, the old ring stays whole.
    DualWriteFailure,
    /// Two more processes join the consumer groups, claim partitions, and leave again.
    Rebalance,
    /// A second process sharing the partitions frozen until its partitions moved, then woken
    /// (a zombie owner whose stale writes must be fenced).
    ZombieProjector,
    /// Every Redis node reached through a fault proxy: 50 ms each way and 64 KiB/s for half the
    /// fault's duration, then every connection dropped and new ones held silent (a blackhole).
    RedisLinkFaults,
    /// Kafka reached through a fault proxy (the broker's LINK listener advertises it): 20 ms
    /// each way and 512 KiB/s for half the fault's duration, then a blackhole.
    BrokerLinkFaults,
    /// The disk under the deployment's tables fills up (a ballast file on a small tmpfs
    /// tablespace) for the fault's duration, then is freed.
    PostgresDiskFull,
    /// A process whose clock runs ten minutes ahead (`clock_offset_ms`) joins as shard,
    /// projector and second demoter while records move to the cold tier, and leaves after the
    /// fault's duration. The demoter lease must stay with its holder: expiry is judged by the
    /// database's clock.
    ClockSkew,
}

/// The Redis node a shard-loss scenario kills (one of the stack's three).
const LOST_REDIS_PORT: &str = "16380";

impl Fault {
    /// Every fault, in the order `flk-chaos` runs them.
    pub const ALL: [Fault; 17] = [
        Fault::SlowPostgres,
        Fault::PostgresBlackhole,
        Fault::PausePostgres,
        Fault::KillPostgres,
        Fault::PostgresDiskFull,
        Fault::RedisShardLoss,
        Fault::PauseRedis,
        Fault::RedisLinkFaults,
        Fault::Overload,
        Fault::ColdTierOutage,
        Fault::DualWriteFailure,
        Fault::Rebalance,
        Fault::ZombieProjector,
        Fault::ClockSkew,
        Fault::BrokerLinkFaults,
        Fault::PauseBroker,
        Fault::KillBroker,
    ];

    /// The scenario's name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillBroker => "broker-kill",
            Fault::PauseBroker => "broker-pause",
            Fault::KillPostgres => "postgres-kill",
            Fault::PausePostgres => "postgres-pause",
            Fault::SlowPostgres => "postgres-slow",
            Fault::PostgresBlackhole => "postgres-blackhole",
            Fault::RedisShardLoss => "redis-shard-loss",
            Fault::PauseRedis => "redis-pause",
            Fault::Overload => "overload",
            Fault::ColdTierOutage => "cold-tier-outage",
            Fault::DualWriteFailure => "dual-write-failure",
            Fault::Rebalance => "rebalance",
            Fault::ZombieProjector => "zombie-projector",
            Fault::RedisLinkFaults => "redis-link-faults",
            Fault::BrokerLinkFaults => "broker-link-faults",
            Fault::PostgresDiskFull => "postgres-disk-full",
            Fault::ClockSkew => "clock-skew",
        }
    }

    /// The fault named `name`, if any.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }

    /// Whether records move to the cold tier during the scenario (a one-second hot and warm
    /// life, a demoter running every 200 ms).
    pub fn needs_cold_tier(self) -> bool {
        matches!(self, Fault::ColdTierOutage | Fault::ClockSkew)
    }

    /// The roles of a second process that runs from the start, when the fault needs one: a
    /// `shard,projector` sharing the partitions (the zombie), or the demoter on its own (so the
    /// gateway's cold reads do not find the segments the demoter just wrote in a shared cache:
    /// they must reach the object store; the demoter whose lease a skewed clock must not take).
    pub fn second_process_roles_opt(self) -> Option<&'static str> {
        match self {
            Fault::ZombieProjector => Some("shard,projector"),
            Fault::ColdTierOutage | Fault::ClockSkew => Some("demoter"),
            _ => None,
        }
    }

    /// The counter of the gateway process that shows the fault from outside, when there is one
    /// (the scenario reports how much it rose).
    pub fn watched_metric_opt(self) -> Option<&'static str> {
        match self {
            Fault::Overload => Some("flk_rate_limited_total"),
            Fault::RedisShardLoss | Fault::PauseRedis | Fault::RedisLinkFaults => {
                Some("flk_hot_cache_read_errors_total")
            }
            Fault::ColdTierOutage => Some("flk_tier_cold_misses_total"),
            Fault::DualWriteFailure => Some("flk_dedup_dual_write_errors_total"),
            _ => None,
        }
    }
}

/// What a fault acts on.
#[derive(Debug)]
pub struct Stage<'a> {
    /// The scenario's deployment.
    pub deployment: &'a Deployment,
    /// The process running the gateway (and a shard and projector).
    pub main: &'a FlkProcess,
    /// The second process, for faults that need one.
    pub second_opt: Option<&'a FlkProcess>,
    /// The proxies and the small disk the fault needs.
    pub fixtures: &'a Fixtures,
    /// Acknowledged records of the steady load so far.
    pub progress: &'a AtomicUsize,
    /// How long a timed fault lasts.
    pub hold: Duration,
    /// The tenant's secret (for a burst load).
    pub secret: &'static str,
    /// Rate of the steady load, records per second.
    pub rate_per_second: f64,
}

/// What a fault left behind besides its effect.
#[derive(Debug, Default)]
pub struct FaultOutcome {
    /// A burst load the fault ran itself, to be checked with the steady one.
    pub extra_load_opt: Option<LoadResult>,
    /// Lookups made while the fault lasted, for faults of the read path.
    pub reads_opt: Option<ReadStats>,
    /// One line on what happened (counts, partitions moved).
    pub note: String,
}

/// Injects `fault`, holds it, and makes the world whole again; returns once healed.
pub async fn inject(fault: Fault, stage: &Stage<'_>) -> anyhow::Result<FaultOutcome> {
    let mut outcome = FaultOutcome::default();
    match fault {
        Fault::KillBroker => restart_after_kill("kafka").await?,
        Fault::KillPostgres => restart_after_kill("postgres").await?,
        Fault::PauseBroker => pause_for(&["kafka"], stage.hold).await?,
        Fault::PausePostgres => pause_for(&["postgres"], stage.hold).await?,
        Fault::PauseRedis => {
            let reader = start_reader(stage);
            let paused = pause_for(&["redis"], stage.hold).await;
            outcome.reads_opt = Some(stop_reader(reader).await);
            paused?;
        }
        Fault::SlowPostgres => {
            let proxy = postgres_proxy(stage)?;
            proxy.set_latency(Duration::from_millis(20));
            proxy.set_bandwidth(256 * 1024);
            tokio::time::sleep(stage.hold).await;
            proxy.set_latency(Duration::ZERO);
            proxy.set_bandwidth(0);
        }
        Fault::PostgresBlackhole => {
            let proxy = postgres_proxy(stage)?;
            proxy.cut();
            tokio::time::sleep(stage.hold).await;
            proxy.heal();
        }
        Fault::RedisShardLoss => {
            let node = format!("redis:{LOST_REDIS_PORT}");
            stack(&["kill", &node]).await?;
            let reader = start_reader(stage);
            tokio::time::sleep(stage.hold).await;
            outcome.reads_opt = Some(stop_reader(reader).await);
            stack(&["start", &node]).await?;
        }
        Fault::Overload => {
            let burst = overload(stage).await;
            outcome.note = format!(
                "burst of {} records, {} answers 429 (retried)",
                burst.acknowledged.len(),
                burst.throttled
            );
            outcome.extra_load_opt = Some(burst);
        }
        Fault::ColdTierOutage => {
            let reader = start_reader(stage);
            let paused = pause_for(&["s3"], stage.hold).await;
            outcome.reads_opt = Some(stop_reader(reader).await);
            paused?;
        }
        Fault::DualWriteFailure => outcome.note = dual_write_failure(stage).await?,
        Fault::Rebalance => outcome.note = rebalance(stage).await?,
        Fault::ZombieProjector => outcome.note = zombie(stage).await?,
        Fault::RedisLinkFaults => {
            let proxies: Vec<&LinkProxy> = stage.fixtures.redis_proxies.iter().collect();
            anyhow::ensure!(
                !proxies.is_empty(),
                "this fault needs proxies in front of Redis"
            );
            let reader = start_reader(stage);
            slow_then_silent(&proxies, Duration::from_millis(50), 64 * 1024, stage.hold).await;
            outcome.reads_opt = Some(stop_reader(reader).await);
        }
        Fault::BrokerLinkFaults => {
            let proxy = stage.fixtures.broker_proxy_opt.as_ref().ok_or_else(|| {
                anyhow::anyhow!("this fault needs a proxy in front of the broker")
            })?;
            slow_then_silent(&[proxy], Duration::from_millis(20), 512 * 1024, stage.hold).await;
        }
        Fault::PostgresDiskFull => outcome.note = disk_full(stage).await?,
        Fault::ClockSkew => outcome.note = clock_skew(stage).await?,
    }
    Ok(outcome)
}

/// `kill -9` of a stack service, then its restart (which waits until it serves again).
async fn restart_after_kill(service: &str) -> anyhow::Result<()> {
    stack(&["kill", service]).await?;
    stack(&["start", service]).await
}

/// SIGSTOP of stack services for `hold`, then SIGCONT.
async fn pause_for(services: &[&str], hold: Duration) -> anyhow::Result<()> {
    let mut args = vec!["pause"];
    args.extend_from_slice(services);
    stack(&args).await?;
    tokio::time::sleep(hold).await;
    args[0] = "resume";
    stack(&args).await
}

fn postgres_proxy<'a>(stage: &Stage<'a>) -> anyhow::Result<&'a LinkProxy> {
    stage
        .fixtures
        .postgres_proxy_opt
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("this fault needs a proxy in front of Postgres"))
}

/// Slows every link of `proxies` (latency each way, a bandwidth cap) for half of `hold`, then
/// drops their connections and holds new ones silent for the other half, then heals them.
async fn slow_then_silent(
    proxies: &[&LinkProxy],
    latency: Duration,
    bytes_per_second: u64,
    hold: Duration,
) {
    for proxy in proxies {
        proxy.set_latency(latency);
        proxy.set_bandwidth(bytes_per_second);
    }
    tokio::time::sleep(hold / 2).await;
    for proxy in proxies {
        proxy.cut();
    }
    tokio::time::sleep(hold / 2).await;
    for proxy in proxies {
        proxy.set_latency(Duration::ZERO);
        proxy.set_bandwidth(0);
        proxy.heal();
    }
}

/// Fills the small disk under the deployment's tables for the fault's duration, then frees it.
/// Postgres must have refused to grow a table meanwhile (the main process logged it), or the
/// fault did not happen.
async fn disk_full(stage: &Stage<'_>) -> anyhow::Result<String> {
    let disk = stage
        .fixtures
        .small_disk_opt
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("this fault needs a small disk under Postgres"))?;
    let full_before = no_space_errors(stage.main);
    let ballast = disk.fill()?;
    let refused = wait_until(
        "Postgres to refuse a write for want of space",
        stage.hold.max(Duration::from_secs(30)),
        || async { (no_space_errors(stage.main) > full_before).then_some(()) },
    )
    .await;
    tokio::time::sleep(stage.hold).await;
    disk.free()?;
    refused?;
    Ok(format!(
        "disk under the tables filled ({} MiB of ballast), {} writes refused for want of space",
        ballast / (1024 * 1024),
        no_space_errors(stage.main) - full_before
    ))
}

/// Lines of a process's log that report a full disk.
fn no_space_errors(process: &FlkProcess) -> usize {
    process.log().matches("No space left on device").count()
}

/// How far ahead the skewed process's clock runs: far past the demoter lease (30 s).
const CLOCK_SKEW_MS: i64 = 600_000;

/// A process whose clock runs ahead joins as shard, projector and demoter, works beside the
/// others for the fault's duration, and leaves. The demoter lease must not change hands.
async fn clock_skew(stage: &Stage<'_>) -> anyhow::Result<String> {
    let lease_before = wait_until(
        "the demoter to hold the tier lease",
        Duration::from_secs(60),
        || async { demoter_lease(stage.deployment).await.ok().flatten() },
    )
    .await?;
    let offset = CLOCK_SKEW_MS.to_string();
    let mut skewed = FlkProcess::start_with_env(
        stage.deployment,
        "shard,projector,demoter",
        "skewed",
        &[("FLK_CLOCK_OFFSET_MS", &offset)],
    )?;
    wait_until(
        "the skewed process to claim a partition",
        Duration::from_secs(90),
        || async { skewed.log().contains("partition claimed").then_some(()) },
    )
    .await?;
    wait_for_more(stage.progress, 20).await?;
    tokio::time::sleep(stage.hold).await;
    let lease_after = demoter_lease(stage.deployment).await?;
    skewed.stop(Duration::from_secs(30)).await?;
    anyhow::ensure!(
        skewed.log().contains("clock is shifted"),
        "the skewed process did not report its shifted clock"
    );
    anyhow::ensure!(
        lease_after.as_ref() == Some(&lease_before),
        "the demoter lease changed hands while a process whose clock runs {CLOCK_SKEW_MS} ms \
         ahead was running: {lease_before:?} -> {lease_after:?}"
    );
    Ok(format!(
        "a process {} s ahead decided, projected and stood by as demoter; lease stayed with \
         {} (epoch {})",
        CLOCK_SKEW_MS / 1_000,
        lease_before.0,
        lease_before.1
    ))
}

/// The demoter lease's (owner, epoch), if one was ever taken.
async fn demoter_lease(deployment: &Deployment) -> anyhow::Result<Option<(String, i64)>> {
    Ok(deployment
        .postgres()
        .await?
        .query_opt("SELECT owner, epoch FROM tier_lease", &[])
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// Sends records at four times the tenant's limit for the fault's duration, beside the steady
/// load, and returns that burst's result once all its records are decided.
async fn overload(stage: &Stage<'_>) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let rate = stage.rate_per_second * OVERLOAD_FACTOR * 4.0;
    let options = LoadOptions {
        first_seed: 900_000_000,
        count: (rate * stage.hold.as_secs_f64()).ceil() as u64 + 1,
        concurrency: 32,
        rate_per_second_opt: Some(rate),
        deadline: Duration::from_secs(300),
    };
    let burst = tokio::spawn(load::run_with(
        stage.main.url().to_owned(),
        stage.secret,
        options,
        Arc::new(AtomicUsize::new(0)),
        stop.clone(),
    ));
    tokio::time::sleep(stage.hold).await;
    stop.store(true, Ordering::SeqCst);
    burst.await.unwrap_or_default()
}

/// Looks up the steady load's acknowledged records (`GET /v1/pcs/{id}`, what the hot cache
/// serves) at the load's rate while a Redis fault lasts. Each must still answer 200 with the
/// record's outcome, from whichever tier has it.
fn start_reader(stage: &Stage<'_>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<ReadStats>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (url, known, interval) = (
        stage.main.url().to_owned(),
        stage.progress.load(Ordering::SeqCst).max(1) as u64,
        Duration::from_secs_f64(1.0 / stage.rate_per_second.max(1.0)),
    );
    let stop_reading = stop.clone();
    let handle = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut stats = ReadStats::default();
        let mut seed = 0u64;
        while !stop_reading.load(Ordering::SeqCst) {
            // Seeds 1..=known were sent first; most are acknowledged by now, and a lookup
            // of one still in flight is not an error either way (it is skipped below).
            seed = seed % known + 1;
            let pcs_id = crate::records::pcs_id(&crate::records::signed_record(seed, ""));
            let started = std::time::Instant::now();
            let answered = crate::http::lookup(&client, &url, "default", &pcs_id).await;
            let latency = started.elapsed();
            match answered {
                Ok((404, _)) => {}
                Ok((200, body)) if body["outcome"]["accepted"] == true => {
                    stats.latencies.push(latency);
                }
                _ => {
                    stats.latencies.push(latency);
                    stats.errors += 1;
                }
            }
            tokio::time::sleep(interval).await;
        }
        stats
    });
    (stop, handle)
}

async fn stop_reader(
    (stop, handle): (Arc<AtomicBool>, tokio::task::JoinHandle<ReadStats>),
) -> ReadStats {
    stop.store(true, Ordering::SeqCst);
    handle.await.unwrap_or_default()
}

/// Lookups made while a fault lasted.
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    /// Latency of each answered lookup (not-found ones aside).
    pub latencies: Vec<Duration>,
    /// Lookups answered with anything but the record's outcome (an error status, a wrong
    /// outcome, no answer).
    pub errors: usize,
}

impl ReadStats {
    /// Share of the lookups that failed.
    pub fn error_rate(&self) -> f64 {
        if self.latencies.is_empty() {
            0.0
        } else {
            self.errors as f64 / self.latencies.len() as f64
        }
    }

    /// The `quantile` (0..=1) of the lookups' latency.
    pub fn latency_quantile(&self, quantile: f64) -> Duration {
        load::quantile_of(&self.latencies, quantile)
    }
}

/// The tenant's rate limit in an overload scenario, as a multiple of the steady load's rate:
/// the steady load alone stays under it, the burst goes far past it.
pub const OVERLOAD_FACTOR: f64 = 1.5;

/// Starts a migration to the stack's Redis nodes plus a new one, waits until the running
/// process writes to the new node too (dual write), kills the new node for the fault's
/// duration, then rolls the migration back.
async fn dual_write_failure(stage: &Stage<'_>) -> anyhow::Result<String> {
    let deployment = stage.deployment;
    let extra = ExtraRedis::start()?;
    let mut nodes = deployment.stack.redis_urls.clone();
    nodes.push(extra.url());
    let spec = deployment.dir.join("dual-write.toml");
    std::fs::write(
        &spec,
        format!("name = \"grow\"\n[target]\nnodes = {nodes:?}\n"),
    )?;
    run_flk(deployment, &["migrate", "plan", &spec.to_string_lossy()])?;
    run_flk(deployment, &["migrate", "dual-write", "grow"])?;
    // The process follows the ring: new decisions reach the new node once it has.
    let prefix = format!("{}:*", deployment.id);
    let url = extra.url();
    wait_until(
        "the running process to write to the new node (dual write)",
        Duration::from_secs(60),
        || async { (keys_on(&url, &prefix).await.ok()? > 0).then_some(()) },
    )
    .await?;
    drop(extra);
    tokio::time::sleep(stage.hold).await;
    run_flk(deployment, &["migrate", "rollback", "grow", "--yes"])?;
    Ok("migration to a fourth Redis node in dual write, the node killed, then rolled back".into())
}

/// How many keys matching `pattern` a Redis node holds.
async fn keys_on(url: &str, pattern: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut connection)
        .await?;
    Ok(keys.len())
}

/// Two processes join, each waits for a partition, and both leave with a graceful stop.
async fn rebalance(stage: &Stage<'_>) -> anyhow::Result<String> {
    let mut joined = Vec::new();
    for name in ["join-b", "join-c"] {
        let process = FlkProcess::start(stage.deployment, "shard,projector", name)?;
        wait_until(
            &format!("{name} to claim a partition"),
            Duration::from_secs(90),
            || async { process.log().contains("partition claimed").then_some(()) },
        )
        .await?;
        joined.push(process);
    }
    let during = stage.progress.load(Ordering::SeqCst);
    wait_for_more(stage.progress, 20).await?;
    for process in &mut joined {
        process.stop(Duration::from_secs(30)).await?;
    }
    Ok(format!(
        "2 processes joined and left; {} records acknowledged while they held partitions",
        stage.progress.load(Ordering::SeqCst) - during
    ))
}

/// The second process frozen until the steady load has gone on without it (its partitions
/// moved), then woken.
async fn zombie(stage: &Stage<'_>) -> anyhow::Result<String> {
    let frozen = stage
        .second_opt
        .ok_or_else(|| anyhow::anyhow!("the zombie scenario needs a second process"))?;
    wait_until(
        "the second process to own partitions",
        Duration::from_secs(90),
        || async { frozen.log().contains("partition claimed").then_some(()) },
    )
    .await?;
    frozen.pause()?;
    // Its group session (10 s) ends and its partitions move: the new owner claims them with a
    // higher owner epoch (1 at creation, 2 when the second process took its share).
    let moved = wait_until(
        "the frozen process's partitions to move (owner epoch 3)",
        Duration::from_secs(90),
        || async { (highest_owner_epoch(stage.deployment).await.ok()? >= 3).then_some(()) },
    )
    .await;
    let waited = match moved {
        Ok(()) => wait_for_more(stage.progress, 20).await,
        Err(error) => Err(error),
    };
    frozen.resume()?;
    waited?;
    Ok(
        "second process frozen until its partitions moved (owner epoch 3) and 20 more records \
        were acknowledged, then woken"
            .into(),
    )
}

async fn highest_owner_epoch(deployment: &Deployment) -> anyhow::Result<i64> {
    Ok(deployment
        .postgres()
        .await?
        .query_one(
            "SELECT coalesce(max(owner_epoch), 0) FROM projection_offsets",
            &[],
        )
        .await?
        .get(0))
}

/// Waits until the steady load acknowledges `more` records.
async fn wait_for_more(progress: &AtomicUsize, more: usize) -> anyhow::Result<()> {
    let from = progress.load(Ordering::SeqCst);
    load::wait_for_progress(progress, from + more, Duration::from_secs(120)).await
}
