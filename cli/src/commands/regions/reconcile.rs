//! `flk regions reconcile`: makes two regions agree by the cross-region rule. It compares them
//! (as `flk regions diff` does, recording the run), then for each differing key ships the record
//! that should be first to the region that does not hold it: the winner of a split brain to the
//! loser, a key only one region has to the other. The record is read from the log of the region
//! that holds it, at the coordinates its dedup row names, and produced to the other region's
//! `<origin>.flk.submissions` with the replicator's provenance headers, so the receiving region
//! verifies and decides it like any mirrored record: its projector applies the rule (a winner
//! from another region supersedes), and its audit log records the decision. Then it waits until
//! the regions agree.
//!
//! Running it again changes nothing: a shipped record that already arrived is a duplicate, and
//! regions that agree leave nothing to ship. A key whose two records differ only in outcome
//! (different tenant parameters in the two regions' configs) cannot be fixed by shipping and is
//! reported. Exit 0 when the regions agree at the end, 1 when keys still differ, 2 on a usage
//! error.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use infra::config::{Config, KafkaConfig};
use infra::kafka::sink::KafkaSink;
use infra::log::{LogSink as _, OutgoingRecord};
use projections::divergence::{Finding, FindingKind, KeyState, Side, record_action};

use super::{DiffArgs, Stores, compare, print_table};

/// How long a record may take to arrive from the other region's log.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `flk regions reconcile` arguments.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The other region's Kafka bootstrap servers (default: its `[[replication.targets]]` entry).
    #[arg(long)]
    pub remote_brokers: Option<String>,
    /// Print what would be shipped, ship nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the regions to agree after shipping.
    #[arg(long, default_value_t = 30_000)]
    pub wait_ms: u64,
    /// The comparison (same flags as `flk regions diff`).
    #[command(flatten)]
    pub diff: DiffArgs,
}

/// What to do about one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Ship the record `from` holds to the other side.
    Ship {
        /// The side holding the record that should be first.
        from: Side,
        /// That record, as its region holds it.
        key: KeyState,
    },
    /// Nothing shipping can do.
    Leave(&'static str),
}

/// The repair of one finding (pure): ship the winner, or the only copy.
pub fn repair(finding: &Finding) -> Repair {
    let pick = |side: Side| {
        let key_opt = match side {
            Side::Here => finding.here_opt.clone(),
            Side::There => finding.there_opt.clone(),
        };
        key_opt.map_or(Repair::Leave("no row to ship"), |key| Repair::Ship {
            from: side,
            key,
        })
    };
    match finding.kind {
        FindingKind::MissingHere => pick(Side::There),
        FindingKind::MissingThere => pick(Side::Here),
        FindingKind::DifferentRecord => finding.winner_opt.map_or(Repair::Leave("no winner"), pick),
        FindingKind::DifferentOutcome => Repair::Leave(
            "same record, different outcome: compare the tenant's parameters in both regions' configs",
        ),
    }
}

/// Runs `flk regions reconcile`.
pub async fn run(config: &Config, args: &ReconcileArgs) -> anyhow::Result<u8> {
    let diff_args = &args.diff;
    if diff_args.remote_region == config.region {
        eprintln!(
            "flk regions reconcile: --remote-region {} is this region; name the other one",
            diff_args.remote_region
        );
        return Ok(2);
    }
    let Some(remote_kafka) = remote_kafka(config, args) else {
        eprintln!(
            "flk regions reconcile: no Kafka brokers for region {}: pass --remote-brokers or add \
             a [[replication.targets]] entry for it",
            diff_args.remote_region
        );
        return Ok(2);
    };
    let stores = Stores::open(config, diff_args).await?;
    let (report, run_id, took_ms) = compare(config, diff_args, &stores).await?;
    print_table(&report, run_id, config, diff_args, took_ms);
    if report.findings.is_empty() {
        println!("nothing to reconcile");
        return Ok(0);
    }
    let here_sink = KafkaSink::new(&config.kafka, "flk-reconcile")?;
    let there_sink = KafkaSink::new(&remote_kafka, "flk-reconcile")?;
    let mut shipped = 0usize;
    let mut unfixable = 0usize;
    for finding in &report.findings {
        let action = match repair(finding) {
            Repair::Leave(reason) => {
                unfixable += 1;
                format!("left: {reason}")
            }
            Repair::Ship { from, key } => {
                let (from_kafka, to_kafka, to_region, to_sink) = match from {
                    Side::Here => (
                        &config.kafka,
                        &remote_kafka,
                        diff_args.remote_region.as_str(),
                        &there_sink,
                    ),
                    Side::There => (
                        &remote_kafka,
                        &config.kafka,
                        config.region.as_str(),
                        &here_sink,
                    ),
                };
                if key.origin == to_region {
                    unfixable += 1;
                    "left: the record came from the receiving region itself; replay its own log"
                        .to_owned()
                } else if args.dry_run {
                    format!("would ship from {} to {to_region}", from.as_str())
                } else {
                    ship(&key, from_kafka, to_kafka, to_sink)
                        .await
                        .with_context(|| {
                            format!(
                                "shipping {}/{} to region {to_region}",
                                finding.tenant, finding.pcs_id
                            )
                        })?;
                    shipped += 1;
                    format!("shipped from {} to {to_region}", from.as_str())
                }
            }
        };
        println!("{:<16} {:<66} {action}", finding.tenant, finding.pcs_id);
        if !args.dry_run {
            record_action(&stores.local, run_id, finding, &action)
                .await
                .context("recording the action")?;
        }
    }
    if args.dry_run || shipped == 0 {
        return Ok(1);
    }
    println!("shipped {shipped} records; waiting for the regions to agree");
    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    loop {
        let (report, run_id, _) = compare(config, diff_args, &stores).await?;
        let left = report.findings.len();
        if left <= unfixable || Instant::now() >= deadline {
            println!("{left} keys still differ (run {run_id})");
            return Ok(if left == 0 { 0 } else { 1 });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn remote_kafka(config: &Config, args: &ReconcileArgs) -> Option<KafkaConfig> {
    let mut kafka = match config.replication.target(&args.diff.remote_region) {
        Some(target) => target.kafka(&config.kafka),
        None => KafkaConfig {
            brokers: args.remote_brokers.clone()?,
            ..config.kafka.clone()
        },
    };
    if let Some(brokers) = &args.remote_brokers {
        kafka.brokers = brokers.clone();
    }
    if let Some(prefix) = &args.diff.remote_topic_prefix {
        kafka.topic_prefix = prefix.clone();
    }
    Some(kafka)
}

/// Reads `key`'s first record from `from_kafka` and produces it to `to_kafka`'s
/// `<origin>.flk.submissions`, as the replicator would have.
async fn ship(
    key: &KeyState,
    from_kafka: &KafkaConfig,
    to_kafka: &KafkaConfig,
    to_sink: &KafkaSink,
) -> anyhow::Result<()> {
    let source = &key.first_source;
    let record = infra::kafka::fetch::record_at(
        from_kafka,
        &source.topic,
        source.partition,
        source.offset,
        FETCH_TIMEOUT,
    )
    .await?;
    // A record that is itself a replica keeps the provenance it has.
    let headers = if record
        .header_str(infra::kafka::headers::ORIGIN_REGION)
        .is_some()
    {
        record.headers.clone()
    } else {
        actors::replicator::mirrored_headers(&record, &key.origin)
    };
    let ack = to_sink.produce(OutgoingRecord {
        topic: to_kafka.mirrored_submissions_topic(&key.origin),
        partition_opt: Some(record.partition),
        key: record.key_opt.clone().unwrap_or_default(),
        payload: record.payload.clone(),
        headers,
    })?;
    ack.await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digest: u8) -> KeyState {
        KeyState {
            pcs_id: "p".into(),
            signed_digest: vec![digest; 32],
            outcome_code: "accepted".into(),
            received_at_ms: 1,
            origin: "a".into(),
            first_source: events::SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
        }
    }

    fn finding(
        kind: FindingKind,
        here: Option<u8>,
        there: Option<u8>,
        winner: Option<Side>,
    ) -> Finding {
        Finding {
            tenant: "t".into(),
            pcs_id: "p".into(),
            kind,
            here_opt: here.map(key),
            there_opt: there.map(key),
            winner_opt: winner,
        }
    }

    #[test]
    fn the_winner_or_the_only_copy_is_shipped() {
        assert_eq!(
            repair(&finding(FindingKind::MissingHere, None, Some(2), None)),
            Repair::Ship {
                from: Side::There,
                key: key(2)
            }
        );
        assert_eq!(
            repair(&finding(FindingKind::MissingThere, Some(1), None, None)),
            Repair::Ship {
                from: Side::Here,
                key: key(1)
            }
        );
        assert_eq!(
            repair(&finding(
                FindingKind::DifferentRecord,
                Some(1),
                Some(2),
                Some(Side::There)
            )),
            Repair::Ship {
                from: Side::There,
                key: key(2)
            }
        );
        assert!(matches!(
            repair(&finding(
                FindingKind::DifferentOutcome,
                Some(1),
                Some(1),
                Some(Side::Here)
            )),
            Repair::Leave(_)
        ));
    }
}
