//! `flk-chaos`: every chaos scenario back to back on the local stack, one table at the end
//! (`make chaos`). Each scenario gets a fresh deployment, a paced load through the gateway, its
//! fault, the history checker and a replay; the exit code is non-zero when any finds anything.
//!
//! Usage: `flk-chaos [--records N] [--only NAME,NAME...]` (N records per scenario, default
//! 10,000: twelve scenarios make over 100,000 records). Needs the stack
//! (`infra/scripts/stack.sh up` and `. .local/stack/env.sh`) and a built `flk`
//! (`$FLK_BIN` or `target/debug/flk`).
//!
//! `flk-chaos check-history --history FILE --config FLK.toml` judges a history that
//! `flk bench --history FILE` recorded against the stores of the deployment the config names
//! (the same checker, then a replay into a side schema); it changes nothing.

use std::time::Instant;

use chaos::faults::Fault;
use chaos::scenario::{self, Plan, Row};

fn usage() -> ! {
    let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
    eprintln!(
        "usage: flk-chaos [--records N] [--only NAME,NAME...]\n       \
         flk-chaos check-history --history FILE --config FLK.toml\nscenarios: {}",
        names.join(", ")
    );
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("check-history") {
        return check_history::main(std::env::args().skip(2).collect());
    }
    let mut records = 10_000u64;
    let mut chosen: Vec<Fault> = Fault::ALL.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => {
                records = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|value| *value >= 100)
                    .unwrap_or_else(|| {
                        eprintln!("--records needs a number of at least 100");
                        usage()
                    });
            }
            "--only" => {
                let list = args.next().unwrap_or_else(|| usage());
                chosen = list
                    .split(',')
                    .map(|name| {
                        Fault::from_name(name).unwrap_or_else(|| {
                            eprintln!("unknown scenario '{name}'");
                            usage()
                        })
                    })
                    .collect();
            }
            _ => usage(),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plan = Plan::long(records);
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    for fault in chosen {
        eprintln!(
            "[{:>6.0} s] {}: {} records at {}/s, faults held {} s",
            started.elapsed().as_secs_f64(),
            fault.name(),
            plan.records,
            plan.rate_per_second,
            plan.hold.as_secs()
        );
        match runtime.block_on(scenario::run(fault, &plan)) {
            Ok(row) => {
                eprintln!(
                    "[{:>6.0} s] {}: {} records, {} lost, {} double, {} first-write-wins \
                     violations, {} other anomalies; {}",
                    started.elapsed().as_secs_f64(),
                    row.name,
                    row.records,
                    row.lost,
                    row.double,
                    row.first_write_wins_violations,
                    row.other_anomalies,
                    row.note
                );
                for example in &row.examples {
                    eprintln!("    {example}");
                }
                rows.push(row);
            }
            Err(error) => {
                eprintln!("{}: failed: {error:#}", fault.name());
                failures.push(format!("{}: {error:#}", fault.name()));
            }
        }
    }
    let total: usize = rows.iter().map(|row| row.records).sum();
    println!(
        "flk-chaos: {} scenarios, {total} records acknowledged, {:.0} s\n",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", scenario::table(&rows));
    let dirty: Vec<&str> = rows
        .iter()
        .filter(|row| !row.is_clean())
        .map(|row| row.name)
        .collect();
    for failure in &failures {
        println!("failed: {failure}");
    }
    if !dirty.is_empty() {
        println!("anomalies in: {}", dirty.join(", "));
    }
    if failures.is_empty() && dirty.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

/// `flk-chaos check-history`: a recorded history judged against a live deployment.
mod check_history {
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;

    use anyhow::Context as _;
    use chaos::checker::{Answer, analyse};
    use chaos::history::{self, Acknowledged};
    use chaos::history_file::{deployment_of, read_operations};

    pub fn main(args: Vec<String>) -> anyhow::Result<()> {
        let (mut history_opt, mut config_opt) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--history" => history_opt = args.next().map(PathBuf::from),
                "--config" | "-c" => config_opt = args.next(),
                _ => super::usage(),
            }
        }
        let (Some(history_path), Some(config_path)) = (history_opt, config_opt) else {
            super::usage()
        };
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("FLK_"))
            .collect();
        let config = infra::config::Config::load(Some(&config_path), &env)
            .with_context(|| format!("loading {config_path}"))?;
        let operations = read_operations(&history_path)?;
        let deployment = deployment_of(&config)?;
        // The first decisions the clients were told (200, 202): each must be stored with that
        // status's outcome, once; the audit log must cover the whole log.
        let acknowledged: Vec<Acknowledged> = operations
            .iter()
            .filter_map(|operation| match operation.answer {
                Answer::Ok { status, .. } if status == 200 || status == 202 => Some(Acknowledged {
                    tenant: operation.tenant.clone(),
                    pcs_id: operation.pcs_id.clone(),
                    status,
                }),
                _ => None,
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // The log-coverage check first (it waits for the audit log to cover the WAL), as a
        // finding rather than a stop: the checker below names every anomaly with its key.
        let (coverage, mut observed) = runtime.block_on(async {
            let coverage = history::check(&deployment, &acknowledged).await;
            let observed = history::observe(&deployment, &operations).await?;
            anyhow::Ok((coverage, observed))
        })?;
        observed.state_hashes_opt = Some(state_hashes(&config_path)?);
        let anomalies = analyse(&operations, &observed);
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for anomaly in &anomalies {
            let kind = format!("{anomaly:?}");
            let kind = kind.split([' ', '{']).next().unwrap_or_default().to_owned();
            *by_kind.entry(kind).or_default() += 1;
        }
        println!(
            "{} operations, {} answered 200 or 202; replay state hash {}",
            operations.len(),
            acknowledged.len(),
            match &observed.state_hashes_opt {
                Some((live, replay)) if live == replay => "equal to the live one".to_owned(),
                Some((live, replay)) => format!("DIFFERS (live {live}, replay {replay})"),
                None => "not computed".to_owned(),
            }
        );
        match &coverage {
            Ok(report) => println!(
                "log coverage: {} WAL records, {} audit entries, {} dedup rows, no gap",
                report.wal_records, report.audit_entries, report.dedup_rows
            ),
            Err(error) => println!("log coverage: {error:#}"),
        }
        if anomalies.is_empty() && coverage.is_ok() {
            println!("no anomaly: nothing lost, decided twice or told wrong; the stores agree");
            return Ok(());
        }
        for (kind, count) in &by_kind {
            println!("{kind}: {count}");
        }
        println!("{}", history::describe(&anomalies));
        std::process::exit(1)
    }

    /// `flk state-hash` and the hash a replay into a side schema rebuilds, with the user's
    /// config (the replay is not swapped in).
    fn state_hashes(config_path: &str) -> anyhow::Result<(String, String)> {
        let flk = chaos::process::flk_binary()?;
        chaos::scenario::live_and_replayed_state_hashes(|args| {
            let output = std::process::Command::new(&flk)
                .args(args)
                .args(["-c", config_path])
                .output()
                .context("running flk")?;
            anyhow::ensure!(
                output.status.success(),
                "flk {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        })
    }
}
