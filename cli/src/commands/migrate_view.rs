//! What `flk migrate` prints: plans, verify reports, status, and the next step to run.

use projections::reshard::copy::CopyProgress;
use projections::reshard::plan::Plan;
use projections::reshard::verify::VerifyReport;
use projections::ring_store::{Follower, MigrationRecord, Phase, RingState};
use serde_json::{Value, json};

/// The commands that usually come next in `phase`.
pub fn next_steps(id: &str, phase: Phase) -> Vec<String> {
    let step = |command: &str| format!("flk migrate {command} {id}");
    match phase {
        Phase::Planned => vec![step("dual-write"), step("rollback")],
        Phase::DualWrite => vec![step("copy"), step("rollback")],
        Phase::Copied => vec![step("verify"), step("rollback")],
        Phase::Verified => vec![step("cutover"), step("rollback")],
        Phase::CutOver => vec![step("cleanup"), step("rollback")],
        Phase::RolledBack | Phase::Cleaned => Vec::new(),
    }
}

pub fn print_next(id: &str, phase: Phase) {
    let steps = next_steps(id, phase);
    if !steps.is_empty() {
        println!(
            "next: {}",
            steps.join("   (or: ") + if steps.len() > 1 { ")" } else { "" }
        );
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn print_plan(id: &str, plan: &Plan, dry_run: bool) {
    println!(
        "migration {id}{}",
        if dry_run {
            " (dry run: not recorded)"
        } else {
            ""
        }
    );
    println!(
        "{:<32} {:>10} {:>12} {:>10} {:>12}  to",
        "source node", "keys", "bytes", "moving", "moving bytes"
    );
    for (node, node_plan) in &plan.nodes {
        let moving: u64 = node_plan.moving_to.values().map(|volume| volume.keys).sum();
        let moving_bytes: u64 = node_plan
            .moving_to
            .values()
            .map(|volume| volume.bytes)
            .sum();
        let targets: Vec<String> = node_plan
            .moving_to
            .iter()
            .map(|(target, volume)| format!("{target}: {}", volume.keys))
            .collect();
        println!(
            "{:<32} {:>10} {:>12} {:>10} {:>12}  {}",
            node,
            node_plan.scanned.keys,
            node_plan.scanned.bytes,
            moving,
            moving_bytes,
            targets.join(", ")
        );
    }
    println!(
        "moving {} of {} keys ({:.1} %), {}; copy at {} keys/s takes about {:.1} s",
        plan.moving.keys,
        plan.scanned.keys,
        plan.moved_fraction * 100.0,
        mib(plan.moving.bytes),
        plan.max_keys_per_second,
        plan.expected_copy_seconds
    );
    if !dry_run {
        print_next(id, Phase::Planned);
    }
}

pub fn print_verify(report: &VerifyReport, planned: u64) {
    println!(
        "checked {} moving keys ({} planned) in {} chunks; {} chunks differed; {} keys differ",
        report.checked, planned, report.chunks, report.chunks_differing, report.differences
    );
    for difference in &report.listed {
        println!(
            "  {:?}  {} -> {}  {}",
            difference.kind, difference.source, difference.target, difference.key
        );
    }
    if report.differences > report.listed.len() as u64 {
        println!(
            "  ... and {} more",
            report.differences - report.listed.len() as u64
        );
    }
    if !report.clean() {
        println!("`flk migrate verify --fix` copies them again and checks once more");
    }
}

fn followers_json(followers: &[Follower]) -> Value {
    json!(
        followers
            .iter()
            .map(|follower| json!({
                "process": follower.follower_id,
                "state_version": follower.state_version,
                "seen_at_ms": follower.seen_at_ms,
            }))
            .collect::<Vec<_>>()
    )
}

fn state_line(state_opt: Option<&RingState>) -> String {
    match state_opt {
        None => "ring: the configuration's (none recorded yet)".to_owned(),
        Some(state) => format!(
            "ring state {}: reads version {}, writes versions {:?}",
            state.state_version,
            state.read_version,
            state
                .writes
                .iter()
                .map(|(version, _)| *version)
                .collect::<Vec<_>>()
        ),
    }
}

fn print_followers(followers: &[Follower], state_opt: Option<&RingState>) {
    let current = state_opt.map_or(0, |state| state.state_version);
    println!(
        "processes following the ring (seen in the last 10 s): {}",
        followers.len()
    );
    for follower in followers {
        let mark = if follower.state_version >= current {
            "ok"
        } else {
            "BEHIND"
        };
        println!(
            "  {:<48} state {:>4}  {mark}",
            follower.follower_id, follower.state_version
        );
    }
}

pub fn print_list(
    migrations: &[MigrationRecord],
    state_opt: Option<&RingState>,
    followers: &[Follower],
    json_output: bool,
) -> anyhow::Result<u8> {
    if json_output {
        let list: Vec<Value> = migrations
            .iter()
            .map(|migration| {
                json!({
                    "migration_id": migration.migration_id,
                    "phase": migration.phase,
                    "from_version": migration.from_version,
                    "to_version": migration.to_version,
                    "updated_at_ms": migration.updated_at_ms,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "migrations": list,
                "followers": followers_json(followers),
            }))?
        );
        return Ok(0);
    }
    println!("{}", state_line(state_opt));
    print_followers(followers, state_opt);
    println!(
        "{:<24} {:<12} {:>5} {:>5}",
        "migration", "phase", "from", "to"
    );
    for migration in migrations {
        println!(
            "{:<24} {:<12} {:>5} {:>5}",
            migration.migration_id, migration.phase, migration.from_version, migration.to_version
        );
    }
    if migrations.is_empty() {
        println!("(no migrations)");
    }
    Ok(0)
}

pub fn print_status(
    migration: &MigrationRecord,
    events: &[(String, Value, i64)],
    state_opt: Option<&RingState>,
    followers: &[Follower],
    json_output: bool,
) -> anyhow::Result<u8> {
    let id = migration.migration_id.as_str();
    let copied = serde_json::from_value::<CopyProgress>(migration.copy_progress.clone())
        .unwrap_or_default()
        .copied();
    let planned = migration.plan["moving"]["keys"].as_u64().unwrap_or(0);
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "migration_id": id,
                "phase": migration.phase,
                "from_version": migration.from_version,
                "to_version": migration.to_version,
                "from": migration.from_spec,
                "to": migration.to_spec,
                "plan": migration.plan,
                "copy_progress": migration.copy_progress,
                "copy_run": migration.copy_run,
                "verified_copy_run": migration.verified_copy_run_opt,
                "verify_report": migration.verify_report_opt,
                "followers": followers_json(followers),
                "events": events.iter().map(|(kind, detail, at_ms)| json!({
                    "kind": kind, "detail": detail, "at_ms": at_ms,
                })).collect::<Vec<_>>(),
                "next_steps": next_steps(id, migration.phase),
            }))?
        );
        return Ok(0);
    }
    println!(
        "migration {id}: {} (ring version {} -> {})",
        migration.phase, migration.from_version, migration.to_version
    );
    println!("{}", state_line(state_opt));
    println!(
        "copy: {copied} of {planned} planned keys copied (run {}); verify: {}",
        migration.copy_run,
        match (
            &migration.verify_report_opt,
            migration.verified_copy_run_opt
        ) {
            (None, _) => "not run".to_owned(),
            (Some(report), Some(run)) if run == migration.copy_run => format!(
                "clean for this copy run ({} keys checked)",
                report["checked"].as_u64().unwrap_or(0)
            ),
            (Some(report), _) => format!(
                "{} keys differ (or the copy ran again since)",
                report["differences"].as_u64().unwrap_or(0)
            ),
        }
    );
    print_followers(followers, state_opt);
    println!("history:");
    for (kind, detail, at_ms) in events {
        println!("  {at_ms}  {kind:<12} {detail}");
    }
    print_next(id, migration.phase);
    Ok(0)
}
