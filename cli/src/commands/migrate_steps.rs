//! The steps of `flk migrate` (see `migrate.rs` for the commands and exit codes). Each step reads
//! the migration's row, refuses a step its phase does not allow (saying which phase it needs),
//! does its work, records the result, and prints what to do next.

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use infra::clock::now_ms;
use infra::config::Config;
use projections::ProjectionStore;
use projections::redis_nodes::{RedisNodes, node_id};
use projections::reshard::copy::{CopyEnd, CopyOptions, CopyProgress};
use projections::reshard::{Rings, pattern_of};
use projections::ring::{DEFAULT_VIRTUAL_NODES, RingSpec, WeightedNode};
use projections::ring_follower::LIVE_WINDOW;
use projections::ring_store::{MigrationRecord, Phase};
use serde::Deserialize;
use serde_json::json;

use super::migrate::{ConfirmArgs, EXIT_DIFFERENCES, EXIT_INTERRUPTED, EXIT_REFUSED};
use super::migrate_view as view;

/// Default throttle of copy and cleanup (keys per second).
pub const DEFAULT_MAX_KEYS_PER_SECOND: u64 = 50_000;

/// How long a step waits for every live process to follow a ring change.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on one Redis command of a migration step (larger than the serving one: chunks).
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// A migration spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationSpec {
    /// Migration id (default: `m-<unix seconds>`).
    #[serde(default)]
    name: Option<String>,
    /// The node set the migration starts from; when given it must be the current ring.
    #[serde(default)]
    source: Option<NodeSet>,
    /// The node set to move to.
    target: NodeSet,
}

/// A set of Redis nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSet {
    /// Nodes: a URL, or `{ url, weight }`.
    nodes: Vec<SpecNode>,
    /// Ring points per unit of weight (default: the current ring's, so only the node changes
    /// move keys; a different count moves keys between nodes that stay, about half of them).
    #[serde(default)]
    virtual_nodes: Option<u32>,
}

/// One node of a spec.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SpecNode {
    /// Weight 1.
    Url(String),
    /// With a weight.
    Weighted {
        /// Redis URL (credentials are dropped: the id is the URL without them).
        url: String,
        /// Relative share of keys.
        weight: u32,
    },
}

impl NodeSet {
    fn ring_spec(&self, current: &RingSpec) -> anyhow::Result<RingSpec> {
        let nodes = self
            .nodes
            .iter()
            .map(|node| match node {
                SpecNode::Url(url) => WeightedNode::unweighted(node_id(url)),
                SpecNode::Weighted { url, weight } => WeightedNode {
                    id: node_id(url),
                    weight: *weight,
                },
            })
            .collect();
        let spec = RingSpec::new(nodes, self.virtual_nodes.unwrap_or(current.virtual_nodes));
        spec.validate()?;
        for node in &spec.nodes {
            if !node.id.starts_with("redis://") && !node.id.starts_with("rediss://") {
                bail!("node {:?} is not a redis:// URL", node.id);
            }
        }
        Ok(spec)
    }
}

fn read_spec(path: &str) -> anyhow::Result<MigrationSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let spec: MigrationSpec = if path.ends_with(".json") {
        serde_json::from_str(&text).with_context(|| format!("{path}: not a migration spec"))?
    } else {
        toml::from_str(&text).with_context(|| format!("{path}: not a migration spec"))?
    };
    if let Some(name) = &spec.name {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            bail!("{path}: name {name:?} must be 1 to 64 of [A-Za-z0-9._-]");
        }
    }
    Ok(spec)
}

/// The ring the configuration names (what every process uses before a ring is recorded).
fn config_spec(config: &Config) -> RingSpec {
    RingSpec::new(
        config
            .redis
            .urls
            .iter()
            .map(|url| WeightedNode::unweighted(node_id(url)))
            .collect(),
        DEFAULT_VIRTUAL_NODES,
    )
}

pub(super) struct Context {
    pub(super) store: ProjectionStore,
    /// Where ring changes are appended as events.
    pub(super) kafka: infra::config::KafkaConfig,
    pub(super) nodes: RedisNodes,
    pub(super) pattern: String,
}

async fn context(config: &Config) -> anyhow::Result<Context> {
    let store = crate::serve::open_store(config, &config.postgres.schema).await?;
    let nodes = RedisNodes::new(&config.redis.urls, NODE_TIMEOUT)?;
    Ok(Context {
        store,
        kafka: config.kafka.clone(),
        nodes,
        pattern: pattern_of(&config.redis.key_prefix),
    })
}

fn rings_of(migration: &MigrationRecord) -> anyhow::Result<Rings> {
    Ok(Rings {
        from: migration.from_spec.build()?,
        to: migration.to_spec.build()?,
    })
}

async fn migration(context: &Context, id: &str) -> anyhow::Result<MigrationRecord> {
    context
        .store
        .ring_migration(id)
        .await?
        .with_context(|| format!("no migration {id:?} (`flk migrate status` lists them)"))
}

/// Refuses (exit 2) unless the migration is in one of `allowed`.
fn require_phase(migration: &MigrationRecord, allowed: &[Phase], step: &str) -> Option<u8> {
    if allowed.contains(&migration.phase) {
        return None;
    }
    let names: Vec<&str> = allowed.iter().map(|phase| phase.as_str()).collect();
    eprintln!(
        "refused: {step} needs migration {} to be {}, and it is {}",
        migration.migration_id,
        names.join(" or "),
        migration.phase
    );
    Some(EXIT_REFUSED)
}

/// Waits until every live process has applied `state_version`; returns how long it took.
async fn wait_for_followers(
    store: &ProjectionStore,
    state_version: i64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let live_since = now_ms() - LIVE_WINDOW.as_millis() as i64;
        let followers = store.ring_followers(live_since).await?;
        let behind: Vec<_> = followers
            .iter()
            .filter(|follower| follower.state_version < state_version)
            .collect();
        if behind.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > FOLLOW_TIMEOUT {
            let names: Vec<String> = behind
                .iter()
                .map(|follower| format!("{} (at {})", follower.follower_id, follower.state_version))
                .collect();
            bail!(
                "the ring state is {state_version}, but after {} s these processes still use an \
                 older one: {}. They may be stuck; `flk migrate status` shows them",
                FOLLOW_TIMEOUT.as_secs(),
                names.join(", ")
            );
        }
        // Short, so the printed switch time is the followers' and not this loop's.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Moves to `phase` and waits for every process; prints the switch time.
async fn switch(
    context: &Context,
    migration: &MigrationRecord,
    allowed: &[Phase],
    phase: Phase,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let state_version = context
        .store
        .set_ring_phase(
            &migration.migration_id,
            allowed,
            phase,
            &json!({"by": "flk migrate"}),
            now_ms(),
        )
        .await?;
    let followed = wait_for_followers(&context.store, state_version).await;
    let took = started.elapsed();
    // After the wait, so the switch time printed is the ring's alone; before the wait's error,
    // since the change is in effect either way.
    super::migrate_log::publish(&context.kafka, &context.store, Some(phase)).await;
    followed?;
    Ok(took)
}

fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} keys, {{per_sec}}, ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub async fn plan(
    config: &Config,
    spec_path: &str,
    max_keys_per_second: u64,
    dry_run: bool,
    json_output: bool,
) -> anyhow::Result<u8> {
    let spec = read_spec(spec_path)?;
    let context = context(config).await?;
    let recorded_opt = context.store.ring_state().await?;
    let current = match &recorded_opt {
        Some(state) => state
            .writes
            .iter()
            .find(|(version, _)| *version == state.read_version)
            .map(|(_, spec)| spec.clone())
            .context("the recorded ring state names no read ring")?,
        None => config_spec(config),
    };
    let target = spec.target.ring_spec(&current)?;
    if let Some(source) = &spec.source {
        let source = source.ring_spec(&current)?;
        if source != current {
            eprintln!(
                "refused: the spec's source is not the current ring.\ncurrent: {}\nsource:  {}",
                serde_json::to_string(&current)?,
                serde_json::to_string(&source)?
            );
            return Ok(EXIT_REFUSED);
        }
    }
    if target == current {
        eprintln!("refused: the target is the current ring; nothing would move");
        return Ok(EXIT_REFUSED);
    }
    let rings = Rings {
        from: current.build()?,
        to: target.build()?,
    };
    let progress = ProgressBar::new_spinner();
    let plan = projections::reshard::plan::plan(
        &context.nodes,
        &rings,
        &context.pattern,
        projections::reshard::DEFAULT_CHUNK_KEYS,
        max_keys_per_second,
        |scanned| progress.set_message(format!("scanning: {scanned} keys")),
    )
    .await?;
    progress.finish_and_clear();
    let id = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("m-{}", now_ms() / 1000));
    let plan_json = serde_json::to_value(&plan)?;
    if !dry_run {
        if recorded_opt.is_none() {
            context.store.bootstrap_ring(&current, now_ms()).await?;
            super::migrate_log::publish(&context.kafka, &context.store, None).await;
        }
        context
            .store
            .create_ring_migration(&id, &target, &plan_json, now_ms())
            .await?;
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "migration_id": id,
                "recorded": !dry_run,
                "plan": plan_json,
                "next_steps": view::next_steps(&id, Phase::Planned),
            }))?
        );
    } else {
        view::print_plan(&id, &plan, dry_run);
    }
    Ok(0)
}

pub async fn dual_write(config: &Config, id: &str, dry_run: bool) -> anyhow::Result<u8> {
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    if let Some(code) = require_phase(&migration, &[Phase::Planned], "dual-write") {
        return Ok(code);
    }
    if dry_run {
        println!(
            "would switch every process to write ring versions {} and {} (reads stay on {})",
            migration.from_version, migration.to_version, migration.from_version
        );
        return Ok(0);
    }
    let took = switch(&context, &migration, &[Phase::Planned], Phase::DualWrite).await?;
    println!(
        "dual write on: every live process writes both rings ({} ms to reach them all)",
        took.as_millis()
    );
    view::print_next(id, Phase::DualWrite);
    Ok(0)
}

pub async fn copy(
    config: &Config,
    id: &str,
    dry_run: bool,
    max_keys_per_second: u64,
    chunk: usize,
) -> anyhow::Result<u8> {
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    let allowed = [Phase::DualWrite, Phase::Copied, Phase::Verified];
    if let Some(code) = require_phase(&migration, &allowed, "copy") {
        return Ok(code);
    }
    let rings = rings_of(&migration)?;
    let mut progress: CopyProgress =
        serde_json::from_value(migration.copy_progress.clone()).unwrap_or_default();
    // A finished copy starts over (a new run, for a new verify); an unfinished one resumes.
    let resuming = !progress.nodes.is_empty() && !progress.finished(&rings);
    if !resuming {
        progress = CopyProgress::default();
    }
    let total = migration.plan["moving"]["keys"].as_u64().unwrap_or(0);
    if dry_run {
        println!(
            "would copy about {total} keys at up to {max_keys_per_second} keys/s{}",
            if resuming { " (resuming)" } else { "" }
        );
        return Ok(0);
    }
    context
        .store
        .save_copy_progress(id, &serde_json::to_value(&progress)?, !resuming, now_ms())
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::SeqCst);
        }
    });
    let progress_bar = bar(total.max(progress.copied()), "copy");
    progress_bar.set_position(progress.copied());
    let started = Instant::now();
    let copied_before = progress.copied();
    let options = CopyOptions {
        pattern: context.pattern.clone(),
        chunk_keys: chunk.max(1),
        max_keys_per_second,
        checkpoint_every: projections::reshard::copy::DEFAULT_CHECKPOINT_EVERY,
    };
    let store = context.store.clone();
    let end = projections::reshard::copy::copy(
        &context.nodes,
        &rings,
        &mut progress,
        &options,
        &stop,
        |state| {
            progress_bar.set_position(state.copied());
            let (store, value) = (store.clone(), serde_json::to_value(state));
            async move {
                let value =
                    value.map_err(|error| projections::CacheError::Decode(error.to_string()))?;
                store
                    .save_copy_progress(id, &value, false, now_ms())
                    .await
                    .map(|_| ())
                    .map_err(|error| projections::CacheError::Config(error.to_string()))
            }
        },
    )
    .await;
    progress_bar.finish_and_clear();
    let copied = progress.copied() - copied_before;
    let rate = copied as f64 / started.elapsed().as_secs_f64().max(1e-9);
    match end {
        Ok(CopyEnd::Finished) => {
            context
                .store
                .set_ring_phase(
                    id,
                    &allowed,
                    Phase::Copied,
                    &json!({"copied": progress.copied(), "keys_per_second": rate}),
                    now_ms(),
                )
                .await?;
            super::migrate_log::publish(&context.kafka, &context.store, Some(Phase::Copied)).await;
            println!(
                "copied {} keys ({copied} in this run, {rate:.0} keys/s)",
                progress.copied()
            );
            view::print_next(id, Phase::Copied);
            Ok(0)
        }
        Ok(CopyEnd::Interrupted) => {
            eprintln!(
                "interrupted after {} keys; run `flk migrate copy {id}` again to resume",
                progress.copied()
            );
            Ok(EXIT_INTERRUPTED)
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "copy stopped after {} keys (progress saved; run `flk migrate copy {id}` again to \
             resume)",
            progress.copied()
        ))),
    }
}

pub async fn verify(config: &Config, id: &str, fix: bool, dry_run: bool) -> anyhow::Result<u8> {
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    let allowed = [Phase::Copied, Phase::Verified, Phase::CutOver];
    if let Some(code) = require_phase(&migration, &allowed, "verify") {
        return Ok(code);
    }
    let rings = rings_of(&migration)?;
    let total = migration.plan["moving"]["keys"].as_u64().unwrap_or(0);
    let progress = ProgressBar::new_spinner();
    let mut report = projections::reshard::verify::verify(
        &context.nodes,
        &rings,
        &context.pattern,
        projections::reshard::DEFAULT_CHUNK_KEYS,
        |scanned| progress.set_message(format!("verifying: {scanned} keys listed")),
    )
    .await?;
    progress.finish_and_clear();
    if !report.clean() && fix && !dry_run {
        let mut fixed = 0;
        for ((source, target), keys) in report.by_pair() {
            fixed += projections::reshard::copy::copy_keys(&context.nodes, &source, &target, &keys)
                .await?;
        }
        println!("re-copied {fixed} differing keys; checking again");
        report = projections::reshard::verify::verify(
            &context.nodes,
            &rings,
            &context.pattern,
            projections::reshard::DEFAULT_CHUNK_KEYS,
            |_| {},
        )
        .await?;
    }
    if !dry_run {
        let clean_run = report.clean().then_some(migration.copy_run);
        context
            .store
            .save_verify_report(id, &serde_json::to_value(&report)?, clean_run, now_ms())
            .await?;
    }
    view::print_verify(&report, total);
    if report.clean() {
        view::print_next(id, Phase::Verified);
        Ok(0)
    } else {
        Ok(EXIT_DIFFERENCES)
    }
}

pub async fn cutover(config: &Config, args: &ConfirmArgs) -> anyhow::Result<u8> {
    let id = args.step.id.as_str();
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    if let Some(code) = require_phase(&migration, &[Phase::Verified], "cutover") {
        return Ok(code);
    }
    if migration.verified_copy_run_opt != Some(migration.copy_run) {
        eprintln!("refused: the last copy was not verified; run `flk migrate verify {id}`");
        return Ok(EXIT_REFUSED);
    }
    if args.step.dry_run {
        println!(
            "would switch reads to ring version {} (writes keep reaching {} and {})",
            migration.to_version, migration.to_version, migration.from_version
        );
        return Ok(0);
    }
    if !confirm(
        &format!(
            "switch reads of every process to ring version {}?",
            migration.to_version
        ),
        args.yes,
    )? {
        eprintln!("cutover cancelled; nothing changed");
        return Ok(EXIT_REFUSED);
    }
    let took = switch(&context, &migration, &[Phase::Verified], Phase::CutOver).await?;
    println!(
        "cut over: every live process reads ring version {} ({} ms from the switch to the last \
         process)",
        migration.to_version,
        took.as_millis()
    );
    view::print_next(id, Phase::CutOver);
    Ok(0)
}

pub async fn rollback(config: &Config, args: &ConfirmArgs) -> anyhow::Result<u8> {
    let id = args.step.id.as_str();
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    let allowed = [
        Phase::Planned,
        Phase::DualWrite,
        Phase::Copied,
        Phase::Verified,
        Phase::CutOver,
    ];
    if let Some(code) = require_phase(&migration, &allowed, "rollback") {
        return Ok(code);
    }
    if args.step.dry_run {
        println!(
            "would put every process back on ring version {} alone",
            migration.from_version
        );
        return Ok(0);
    }
    if !confirm(
        &format!("go back to ring version {}?", migration.from_version),
        args.yes,
    )? {
        eprintln!("rollback cancelled; nothing changed");
        return Ok(EXIT_REFUSED);
    }
    let took = switch(&context, &migration, &allowed, Phase::RolledBack).await?;
    println!(
        "rolled back: every live process reads and writes ring version {} ({} ms)",
        migration.from_version,
        took.as_millis()
    );
    Ok(0)
}

pub async fn cleanup(
    config: &Config,
    args: &ConfirmArgs,
    max_keys_per_second: u64,
) -> anyhow::Result<u8> {
    let id = args.step.id.as_str();
    let context = context(config).await?;
    let migration = migration(&context, id).await?;
    // Cleaned too: a cleanup that failed midway is run again.
    let allowed = [Phase::CutOver, Phase::Cleaned];
    if let Some(code) = require_phase(&migration, &allowed, "cleanup") {
        return Ok(code);
    }
    let rings = rings_of(&migration)?;
    if args.step.dry_run {
        println!(
            "would stop writing ring version {} and delete about {} moved keys from the nodes \
             that no longer own them",
            migration.from_version,
            migration.plan["moving"]["keys"].as_u64().unwrap_or(0)
        );
        return Ok(0);
    }
    if !confirm(
        "delete moved keys from their old nodes? (no rollback after this)",
        args.yes,
    )? {
        eprintln!("cleanup cancelled; nothing changed");
        return Ok(EXIT_REFUSED);
    }
    if migration.phase == Phase::CutOver {
        switch(&context, &migration, &[Phase::CutOver], Phase::Cleaned).await?;
    }
    let total = migration.plan["moving"]["keys"].as_u64().unwrap_or(0);
    let progress = bar(total, "cleanup");
    let deleted = projections::reshard::cleanup::cleanup(
        &context.nodes,
        &rings,
        &context.pattern,
        projections::reshard::DEFAULT_CHUNK_KEYS,
        max_keys_per_second,
        |deleted| progress.set_position(deleted),
    )
    .await?;
    progress.finish_and_clear();
    context
        .store
        .record_ring_event(id, "cleanup", &json!({ "deleted": deleted }), now_ms())
        .await?;
    for (node, count) in &deleted {
        println!("{node}: deleted {count} keys it no longer owns");
    }
    println!("migration {id} is complete");
    Ok(0)
}

pub async fn status(
    config: &Config,
    id_opt: Option<&str>,
    json_output: bool,
) -> anyhow::Result<u8> {
    let context = context(config).await?;
    let live_since = now_ms() - LIVE_WINDOW.as_millis() as i64;
    let followers = context.store.ring_followers(live_since).await?;
    let state = context.store.ring_state().await?;
    match id_opt {
        None => {
            let migrations = context.store.ring_migrations().await?;
            view::print_list(&migrations, state.as_ref(), &followers, json_output)
        }
        Some(id) => {
            let migration = migration(&context, id).await?;
            let events = context.store.ring_events(id).await?;
            view::print_status(&migration, &events, state.as_ref(), &followers, json_output)
        }
    }
}
