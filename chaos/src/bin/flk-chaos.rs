//! `flk-chaos`: every chaos scenario back to back on the local stack, one table at the end
//! (`make chaos`). Each scenario gets a fresh deployment, a paced load through the gateway, its
//! fault, the history checker and a replay; the exit code is non-zero when any finds anything.
//!
//! Usage: `flk-chaos [--records N] [--only NAME,NAME...]` (N records per scenario, default
//! 10,000: eleven scenarios make over 100,000 records). Needs the stack
//! (`infra/scripts/stack.sh up` and `. .local/stack/env.sh`) and a built `flk`
//! (`$FLK_BIN` or `target/debug/flk`).

use std::time::Instant;

use chaos::faults::Fault;
use chaos::scenario::{self, Plan, Row};

fn usage() -> ! {
    let names: Vec<&str> = Fault::ALL.iter().map(|fault| fault.name()).collect();
    eprintln!(
        "usage: flk-chaos [--records N] [--only NAME,NAME...]\nscenarios: {}",
        names.join(", ")
    );
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
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
