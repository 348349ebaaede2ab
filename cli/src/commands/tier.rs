//! `flk tier ...`: where entries live (hot Redis, warm Postgres, cold object store), one manual
//! demotion cycle, and a check of every cold segment against its manifest.

use std::time::{Duration, Instant};

use actors::demotion::{CycleError, CycleReport, run_cycle, take_lease};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use infra::clock::now_ms;
use infra::config::Config;
use infra::metrics::Metrics;
use projections::cold_objects::{ColdReadError, read_segment};

use super::service::{ConfigArgs, load};

/// `flk tier` subcommands.
#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Entries and bytes per tenant and tier, and the cold tier's compression ratio.
    Stats {
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Where one entry is, why, and when it moves next.
    Explain {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// The record's id.
        #[arg(long)]
        pcs_id: String,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Run demotion now, cycle after cycle until nothing is due, with progress; unlike the
    /// demoter's cycles it also writes segments below the target size (every due row moves).
    /// Refused while a running demoter holds the lease (it is doing the same thing).
    Demote {
        /// Required: run now (the only mode, named for clarity).
        #[arg(long, required = true)]
        now: bool,
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
    /// Read every sealed cold segment and check it against its manifest and the key index.
    /// Prints each segment that fails; exit 0 when all pass, 1 otherwise.
    Verify {
        /// Config and logging.
        #[command(flatten)]
        common: ConfigArgs,
    },
}

/// Runs a `flk tier` command.
pub fn run(command: TierCommand) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match command {
        TierCommand::Stats { common } => {
            let (config, _telemetry) = load(&common, "warn", "tier")?;
            runtime.block_on(stats(&config))
        }
        TierCommand::Explain {
            tenant,
            pcs_id,
            common,
        } => {
            let (config, _telemetry) = load(&common, "warn", "tier")?;
            runtime.block_on(explain(&config, &tenant, &pcs_id))
        }
        TierCommand::Demote { now: _, common } => {
            let (config, _telemetry) = load(&common, "warn", "tier")?;
            runtime.block_on(demote_now(&config))
        }
        TierCommand::Verify { common } => {
            let (config, _telemetry) = load(&common, "warn", "tier")?;
            runtime.block_on(verify(&config))
        }
    }
}

async fn stats(config: &Config) -> anyhow::Result<u8> {
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let stats = store
        .tier_stats()
        .await
        .context("reading tier statistics")?;
    println!(
        "{:<24} {:<5} {:>12} {:>14} {:>14} {:>9} {:>7}",
        "tenant", "tier", "entries", "bytes", "raw bytes", "segments", "ratio"
    );
    for row in &stats {
        let ratio = if row.raw_bytes > 0 {
            format!("{:.3}", row.bytes as f64 / row.raw_bytes as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<24} {:<5} {:>12} {:>14} {:>14} {:>9} {:>7}",
            row.tenant, row.tier, row.entries, row.bytes, row.raw_bytes, row.segments, ratio
        );
    }
    if stats.is_empty() {
        println!("(no entries)");
    }
    println!("warm bytes are Postgres' row sizes; cold ratio = compressed / original bytes");
    Ok(0)
}

fn when(ms: i64) -> String {
    let now = now_ms();
    let secs = (ms - now) / 1000;
    if secs >= 0 {
        format!("{ms} (in {secs} s)")
    } else {
        format!("{ms} ({} s ago)", -secs)
    }
}

async fn explain(config: &Config, tenant: &str, pcs_id: &str) -> anyhow::Result<u8> {
    let Some(tenant_config) = config.tenants.get(tenant) else {
        bail!("tenant {tenant:?} is not configured");
    };
    let policy = &tenant_config.tiering;
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let cache = projections::open::hot_cache(config).context("configuring the redis hot tier")?;
    // Look where serving processes look: the ring `flk migrate` recorded, if any.
    projections::ring_follower::install_recorded(&store, &cache)
        .await
        .context("reading the hot tier's ring")?;
    let hot = cache.get(tenant, pcs_id).await;
    match hot {
        Ok(Some(_)) => println!(
            "hot:  in Redis (a cache of the warm or cold entry, for up to {} s after it was filled)",
            tenant_config.hot_ttl_secs
        ),
        Ok(None) => println!("hot:  not in Redis"),
        Err(error) => println!("hot:  unknown (Redis: {error})"),
    }
    if let Some(row) = store
        .warm_rows(tenant, &[pcs_id.to_owned()])
        .await
        .context("reading the warm tier")?
        .into_iter()
        .next()
    {
        let due = row.due_since_ms.saturating_add(policy.warm_ttl_ms());
        println!(
            "warm: in Postgres since {} ({}), decided {}",
            row.due_since_ms,
            if row.due_since_ms == row.entry.decided_at_ms {
                "its decision"
            } else {
                "its promotion by a read"
            },
            row.entry.decided_at_ms
        );
        println!(
            "next: moves to the cold tier at {} (warm_ttl_secs {}), at the first demotion cycle after that",
            when(due),
            policy.warm_ttl_secs
        );
        println!("dedup window ends {}", when(row.entry.expires_at_ms));
        return Ok(0);
    }
    match store
        .cold_key(tenant, pcs_id)
        .await
        .context("reading the cold index")?
    {
        Some(key) => {
            let manifest = &key.segment.manifest;
            println!(
                "cold: in segment {} ({} entries, {} bytes compressed of {})",
                key.segment.segment_key,
                manifest.entries,
                manifest.compressed_bytes,
                manifest.raw_bytes
            );
            match policy.cold_retention_ms_opt() {
                Some(retention) => println!(
                    "next: deleted with its segment at {} (cold_retention_secs_opt {})",
                    when(manifest.max_decided_at_ms.saturating_add(retention)),
                    retention / 1000
                ),
                None => println!(
                    "next: kept forever (no cold_retention_secs_opt); a read promotes it to warm"
                ),
            }
            println!("dedup window ends {}", when(key.expires_at_ms));
            Ok(0)
        }
        None => {
            println!("not found in any tier for tenant {tenant:?}");
            Ok(1)
        }
    }
}

async fn demote_now(config: &Config) -> anyhow::Result<u8> {
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let mut deps = crate::serve::demotion_deps(config, store, Metrics::new())?;
    // An operator asking for demotion now wants every due row moved, small tails included.
    deps.tiering.segment_max_wait_ms = 0;
    let owner = format!("flk-tier-demote-{}", std::process::id());
    let lease = match take_lease(&deps, &owner).await {
        Ok(lease) => lease,
        Err(CycleError::Standby) => bail!(
            "a running demoter holds the lease and demotes every {} ms; wait for it, or stop it \
             (its lease runs out {} s after it stops)",
            config.tiering.demote_interval_ms,
            actors::demotion::lease_duration(&config.tiering).as_secs()
        ),
        Err(error) => return Err(anyhow::anyhow!(error)).context("taking the demoter lease"),
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} demote {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let mut total = CycleReport::default();
    loop {
        let before = total.clone();
        let progress_bar = bar.clone();
        let report = run_cycle(&deps, &lease, &move |report: &CycleReport| {
            let entries = before.entries + report.entries;
            let rate = entries as f64 / started.elapsed().as_secs_f64().max(0.001);
            progress_bar.set_message(format!(
                "{entries} entries in {} segments ({rate:.0} entries/s)",
                before.segments + report.segments
            ));
        })
        .await
        .map_err(|error| anyhow::anyhow!(error))
        .context("demotion cycle")?;
        total.add(&report);
        if !report.more_due {
            break;
        }
        // Keep the lease while the backlog lasts.
        take_lease(&deps, &owner)
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
    }
    bar.finish_and_clear();
    if let Err(error) = deps.store.release_tier_lease(&owner).await {
        eprintln!("the demoter lease was not released ({error}); it runs out by itself");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "demoted {} entries in {} segments in {seconds:.1} s ({:.0} entries/s); {} compressed bytes \
         of {} (ratio {:.3}); {} resumed, {} abandoned, {} expired by retention",
        total.entries,
        total.segments,
        total.entries as f64 / seconds.max(0.001),
        total.compressed_bytes,
        total.raw_bytes,
        if total.raw_bytes > 0 {
            total.compressed_bytes as f64 / total.raw_bytes as f64
        } else {
            0.0
        },
        total.resumed,
        total.abandoned,
        total.expired
    );
    Ok(0)
}

async fn verify(config: &Config) -> anyhow::Result<u8> {
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let objects = infra::objects::open(&config.object_store).context("opening the object store")?;
    let mut after = String::new();
    let (mut checked, mut failed, mut entries) = (0_u64, 0_u64, 0_u64);
    loop {
        let page = store
            .sealed_segments(&after, 100)
            .await
            .context("listing cold segments")?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.segment_key.clone();
        for segment in &page {
            checked += 1;
            match read_segment(&objects, segment).await {
                Ok(read) => {
                    let indexed = store
                        .cold_key_digests(&segment.segment_key)
                        .await
                        .context("reading the cold key index")?;
                    let mismatched = indexed
                        .iter()
                        .filter(|(pcs_id, digest)| {
                            read.binary_search_by(|entry| entry.pcs_id.as_str().cmp(pcs_id))
                                .map(|index| read[index].signed_digest != hex::encode(digest))
                                .unwrap_or(true)
                        })
                        .count();
                    entries += read.len() as u64;
                    if mismatched > 0 {
                        failed += 1;
                        println!(
                            "FAIL {}: {mismatched} indexed keys are missing from it or differ",
                            segment.segment_key
                        );
                    }
                }
                Err(ColdReadError::Unavailable(error)) => {
                    bail!("the object store is unavailable: {error}")
                }
                Err(error) => {
                    failed += 1;
                    println!("FAIL {}: {error}", segment.segment_key);
                }
            }
        }
    }
    println!("{checked} cold segments checked ({entries} entries): {failed} failed");
    Ok(u8::from(failed > 0))
}
