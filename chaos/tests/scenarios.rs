//! The short chaos run: every scenario of `flk-chaos` (`make chaos`) in its short form, one after
//! the other, each on a fresh deployment under a paced load with the history checker and a replay
//! at the end: no acknowledged record lost, none decided twice, no client told another outcome
//! than the first, the stores in agreement, and the replayed state hash equal to the live one.
//!
//! The scenarios kill and freeze shared services (the broker, Postgres, Redis), so they live in
//! their own test binary with one test: cargo runs test binaries one after another, so no other
//! service test sees the faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chaos::faults::Fault;
use chaos::scenario::{self, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_in_its_short_form_loses_nothing() {
    let plan = Plan::short();
    let mut rows = Vec::new();
    for fault in Fault::ALL {
        let row = scenario::run(fault, &plan)
            .await
            .unwrap_or_else(|error| panic!("{}: {error:#}", fault.name()));
        println!("{}: {}", row.name, row.note);
        rows.push(row);
    }
    println!("{}", scenario::table(&rows));
    for row in &rows {
        assert!(row.is_clean(), "{}: {:?}", row.name, row.examples);
        assert!(row.records as u64 >= plan.records, "{}: {row:?}", row.name);
        // The fault was really on while records were in flight.
        assert!(row.records_during_fault > 0, "{}: {row:?}", row.name);
        if let Some((name, rise)) = row.metric_rise_opt {
            assert!(rise > 0.0, "{}: {name} did not rise", row.name);
        }
    }
    // A lost Redis shard costs at most 1 % of the submissions and of the lookups made while it
    // was gone (the lookups fall back to Postgres).
    let shard_loss = rows
        .iter()
        .find(|row| row.name == Fault::RedisShardLoss.name())
        .unwrap();
    assert!(shard_loss.error_rate_during_fault <= 0.01, "{shard_loss:?}");
    let (lookups, lookup_errors, _) = shard_loss.lookups_opt.unwrap();
    assert!(lookups > 0 && lookup_errors <= 0.01, "{shard_loss:?}");
}
