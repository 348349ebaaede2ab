//! The history checker: after any run, however many processes were killed on the way, every
//! acknowledged record must be decided exactly once and the audit log must account for every record
//! of the write-ahead log, with no gap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};

use crate::checker::{Anomaly, AuditEntry, Observed, Operation, Stored, analyse};
use crate::deployment::Deployment;
use crate::load::LoadResult;
use crate::wait_until;

/// A submission the gateway acknowledged with a decision.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    /// Tenant.
    pub tenant: String,
    /// The record's id.
    pub pcs_id: String,
    /// Status answered (200 or 202 for a verified record).
    pub status: u16,
}

/// What the checker counted.
#[derive(Debug)]
pub struct HistoryReport {
    /// Records in the write-ahead log.
    pub wal_records: i64,
    /// Audit log entries.
    pub audit_entries: i64,
    /// Stored first decisions: dedup rows and keys in the cold tier.
    pub dedup_rows: i64,
}

/// Total records in the deployment's submissions topic (sum of high watermarks).
pub fn wal_record_count(deployment: &Deployment) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &deployment.stack.brokers)
        .set("group.id", format!("{}history", deployment.topic_prefix))
        .create()?;
    let topic = deployment.submissions_topic();
    let mut total = 0;
    for partition in 0..deployment.partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// Waits until the audit log holds one entry per WAL record, then checks the history.
pub async fn check(
    deployment: &Deployment,
    acknowledged: &[Acknowledged],
) -> anyhow::Result<HistoryReport> {
    let client = deployment.postgres().await?;
    let wal_records = wal_record_count(deployment)?;
    let audit_entries = wait_until(
        "the audit log to cover the WAL",
        Duration::from_secs(60),
        || async {
            let count: i64 = client
                .query_one("SELECT count(*) FROM audit_log", &[])
                .await
                .ok()?
                .get(0);
            (count >= wal_records).then_some(count)
        },
    )
    .await?;
    anyhow::ensure!(
        audit_entries == wal_records,
        "audit log has {audit_entries} entries for {wal_records} WAL records"
    );
    // Every WAL record decided exactly once: one audit entry per source offset, all present.
    let per_partition = client
        .query(
            "SELECT source_partition, count(*), count(DISTINCT source_offset), min(source_offset), max(source_offset) \
             FROM audit_log GROUP BY source_partition",
            &[],
        )
        .await?;
    for row in per_partition {
        let (partition, count, distinct, min, max): (i32, i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        anyhow::ensure!(
            count == distinct,
            "partition {partition}: a submission was audited twice"
        );
        anyhow::ensure!(
            max - min + 1 == count,
            "partition {partition}: gap in audited offsets"
        );
    }
    // Hash-chain sequence without gaps.
    let chains = client
        .query(
            "SELECT partition, count(*), min(seq), max(seq) FROM audit_log GROUP BY partition",
            &[],
        )
        .await?;
    for row in chains {
        let (partition, count, min, max): (i32, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        anyhow::ensure!(
            min == 0 && max + 1 == count,
            "audit partition {partition}: sequence gap"
        );
    }
    // Every acknowledged record: exactly one dedup row whose outcome gives the status the client
    // was told.
    // Warm rows and the keys demoted to the cold tier: both are stored first decisions.
    let rows = client
        .query(
            "SELECT tenant, pcs_id, outcome_code FROM dedup \
             UNION ALL SELECT tenant, pcs_id, outcome_code FROM cold_keys",
            &[],
        )
        .await?;
    let dedup: HashMap<(String, String), String> = rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    for ack in acknowledged {
        match dedup.get(&(ack.tenant.clone(), ack.pcs_id.clone())) {
            None => anyhow::bail!(
                "acknowledged record {} of {} is lost",
                ack.pcs_id,
                ack.tenant
            ),
            Some(outcome_code) => anyhow::ensure!(
                contract_status(outcome_code) == Some(ack.status),
                "record {} acknowledged {} but stored {outcome_code}",
                ack.pcs_id,
                ack.status,
            ),
        }
        let firsts: i64 = client
            .query_one(
                "SELECT count(*) FROM audit_log WHERE tenant = $1 AND pcs_id = $2 AND dedup_result = 'first'",
                &[&ack.tenant, &ack.pcs_id],
            )
            .await?
            .get(0);
        anyhow::ensure!(
            firsts == 1,
            "record {} applied {firsts} times as first",
            ack.pcs_id
        );
    }
    Ok(HistoryReport {
        wal_records,
        audit_entries,
        dedup_rows: dedup.len() as i64,
    })
}

/// A finished load checked against its deployment: every record it sent got a decision, each is
/// stored exactly once with the status its client was told, and the audit log covers the WAL
/// (see [`check`]). Shared by the crash and scaling suites.
pub async fn check_load(
    deployment: &Deployment,
    result: &LoadResult,
) -> anyhow::Result<HistoryReport> {
    anyhow::ensure!(
        result.undecided.is_empty(),
        "{} records without a decision: {:?}",
        result.undecided.len(),
        result.undecided
    );
    let report = check(deployment, &result.acknowledged).await?;
    let observed = observe(deployment, &result.operations).await?;
    let anomalies = analyse(&result.operations, &observed);
    anyhow::ensure!(
        anomalies.is_empty(),
        "the history checker found {} anomalies over {} operations:\n{}",
        anomalies.len(),
        result.operations.len(),
        describe(&anomalies)
    );
    anyhow::ensure!(
        report.dedup_rows as usize == result.acknowledged.len(),
        "{} records acknowledged but {report:?}",
        result.acknowledged.len()
    );
    anyhow::ensure!(
        report.wal_records as usize >= result.acknowledged.len(),
        "{} records acknowledged but {report:?}",
        result.acknowledged.len()
    );
    Ok(report)
}

/// What the stores of `deployment` hold, for the history checker: dedup rows, the cold tier's
/// key index, the audit log,
/// every decision event of the decisions topic, and the hot cache entries of the keys
/// `operations` touched.
pub async fn observe(
    deployment: &Deployment,
    operations: &[Operation],
) -> anyhow::Result<Observed> {
    let client = deployment.postgres().await?;
    let dedup = stored_decisions(&client, "dedup").await?;
    let cold = stored_decisions(&client, "cold_keys").await?;
    let audit = client
        .query(
            "SELECT source_topic, source_partition, source_offset, tenant, pcs_id, \
             encode(signed_digest, 'hex'), dedup_result FROM audit_log",
            &[],
        )
        .await?
        .iter()
        .map(|row| AuditEntry {
            source: (row.get(0), row.get(1), row.get(2)),
            tenant: row.get(3),
            pcs_id_opt: row.get(4),
            digest_opt: row.get(5),
            dedup_result: row.get(6),
        })
        .collect();
    let cache = projections::HotCache::new(projections::HotCacheConfig::new(
        deployment.stack.redis_urls.clone(),
        deployment.id.clone(),
    ))?;
    let keys: BTreeSet<(String, String)> = operations
        .iter()
        .map(|operation| (operation.tenant.clone(), operation.pcs_id.clone()))
        .collect();
    let mut cached = BTreeMap::new();
    for (tenant, pcs_id) in keys {
        if let Some(entry) = cache.get(&tenant, &pcs_id).await? {
            cached.insert(
                (tenant, pcs_id),
                Stored {
                    digest: entry.signed_digest,
                    outcome_code: entry.outcome_class.as_str().to_owned(),
                },
            );
        }
    }
    Ok(Observed {
        dedup,
        cold,
        cache: cached,
        audit,
        decisions: decision_sources(deployment).await?,
        state_hashes_opt: None,
    })
}

/// The first decisions `table` holds (`dedup`, the warm tier, or `cold_keys`, the cold tier's
/// index: both keep the tenant, id, signed digest and outcome code of each).
async fn stored_decisions(
    client: &tokio_postgres::Client,
    table: &str,
) -> anyhow::Result<BTreeMap<(String, String), Stored>> {
    Ok(client
        .query(
            &format!(
                "SELECT tenant, pcs_id, encode(signed_digest, 'hex'), outcome_code FROM {table}"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            (
                (row.get(0), row.get(1)),
                Stored {
                    digest: row.get(2),
                    outcome_code: row.get(3),
                },
            )
        })
        .collect())
}

/// Source coordinates of every event in the deployment's decisions topic.
async fn decision_sources(deployment: &Deployment) -> anyhow::Result<BTreeSet<(String, i32, i64)>> {
    let kafka = infra::config::KafkaConfig {
        brokers: deployment.stack.brokers.clone(),
        topic_prefix: deployment.topic_prefix.clone(),
        ..infra::config::KafkaConfig::default()
    };
    let reader = infra::kafka::reader::TopicReader::open(
        &kafka,
        &deployment.decisions_topic(),
        "history-checker",
    )?;
    let mut sources = BTreeSet::new();
    for _ in 0..reader.total {
        let record = tokio::time::timeout(Duration::from_secs(30), reader.next()).await??;
        let event = events::envelope::DecisionEvent::decode(&record.payload)
            .map_err(|error| anyhow::anyhow!("decision at offset {}: {error}", record.offset))?;
        sources.insert((
            event.source.topic,
            event.source.partition,
            event.source.offset,
        ));
    }
    Ok(sources)
}

/// One line per anomaly (at most 50).
pub fn describe(anomalies: &[Anomaly]) -> String {
    anomalies
        .iter()
        .take(50)
        .map(|anomaly| format!("{anomaly:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The status CONTRACT section 4 gives a stored first outcome, seen from a client: the checker
/// observes the service from outside, so it holds the contract's table, not the gateway's code.
fn contract_status(outcome_code: &str) -> Option<u16> {
    match outcome_code {
        "accepted" => Some(200),
        "escalated" | "rejected" => Some(202),
        _ => None,
    }
}
