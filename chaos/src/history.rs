//! The history checker: after any run, however many processes were killed on the way, every
//! acknowledged record must be decided exactly once and the audit log must account for every record
//! of the write-ahead log, with no gap.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};

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
    /// Dedup rows.
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
    let rows = client
        .query("SELECT tenant, pcs_id, outcome_code FROM dedup", &[])
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

/// The status CONTRACT section 4 gives a stored first outcome, seen from a client: the checker
/// observes the service from outside, so it holds the contract's table, not the gateway's code.
fn contract_status(outcome_code: &str) -> Option<u16> {
    match outcome_code {
        "accepted" => Some(200),
        "escalated" | "rejected" => Some(202),
        _ => None,
    }
}
