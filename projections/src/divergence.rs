//! Where two regions' dedup state differs, found the way Cassandra repair and Vitess VDiff do it:
//! compare digests of key ranges, and descend only into the ranges that differ.
//!
//! A range is every key of a tenant whose `pcs_id` starts with a prefix. Each side answers, for
//! a prefix, the count and a 64-bit XOR of per-row hashes of every child range (the prefix plus
//! one more character), in one query that reads the rows once and holds nothing in memory. Equal
//! children are done; a differing child is split again, until it holds at most `leaf_keys` keys
//! on either side, and then both sides' keys are compared one by one. Converged regions cost one
//! query per tenant and side; one differing key costs about log16(keys / leaf_keys) more.
//!
//! What counts as a difference: a key only one side has, the same key with a different signed
//! record (a split brain: the two regions took different first records), or the same record with
//! a different outcome. Keys received within the last `settle_ms` are left out on both sides,
//! so records still on their way between the regions are not reported.
//!
//! The cross-region rule (docs/contract.md) says which side of a different record wins: the
//! earlier received-at, then the smaller origin region id. Both regions apply it the same way, so
//! a reconcile converges (a write-once register ordered by (received-at, region)).
//!
//! Scope: the warm tier (`dedup`); keys the demoter moved to the cold tier are not compared.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::store::ProjectionStore;

/// Default largest range compared key by key.
pub const DEFAULT_LEAF_KEYS: i64 = 256;

/// Default age under which keys are left out (still replicating).
pub const DEFAULT_SETTLE_MS: i64 = 60_000;

/// Longest prefix descended to (a `pcs_id` is 64 hex characters).
const MAX_PREFIX_CHARS: usize = 64;

/// One region's dedup state, and what it needs to name where each row came from.
#[derive(Debug, Clone, Copy)]
pub struct RegionView<'a> {
    /// Its projection store.
    pub store: &'a ProjectionStore,
    /// Its region id.
    pub region: &'a str,
    /// Its Kafka topic prefix (mirrored topics are `<prefix><origin>.flk.submissions`).
    pub topic_prefix: &'a str,
}

/// One key as one region holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The key.
    pub pcs_id: String,
    /// SHA-256 of the signed payload of the first record.
    pub signed_digest: Vec<u8>,
    /// The first outcome's class.
    pub outcome_code: String,
    /// When the first record was received, by its origin region's gateway (ms).
    pub received_at_ms: i64,
    /// The region whose gateway or Kafka received the first record.
    pub origin: String,
    /// Where the first record is in this region's log (topic, partition, offset).
    pub first_source: events::SourceCoordinates,
}

/// Which side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The region running the comparison.
    Here,
    /// The other region.
    There,
}

impl Side {
    /// `here` or `there`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Here => "here",
            Side::There => "there",
        }
    }
}

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Only the other region has the key.
    MissingHere,
    /// Only this region has the key.
    MissingThere,
    /// The regions took different first records for the key.
    DifferentRecord,
    /// Same record, different outcome (different parameters or key versions).
    DifferentOutcome,
}

impl FindingKind {
    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingHere => "missing_here",
            FindingKind::MissingThere => "missing_there",
            FindingKind::DifferentRecord => "different_record",
            FindingKind::DifferentOutcome => "different_outcome",
        }
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Its tenant.
    pub tenant: String,
    /// The key.
    pub pcs_id: String,
    /// How it differs.
    pub kind: FindingKind,
    /// This region's row.
    pub here_opt: Option<KeyState>,
    /// The other region's row.
    pub there_opt: Option<KeyState>,
    /// The side the cross-region rule keeps, when both have the key.
    pub winner_opt: Option<Side>,
}

/// What a comparison found and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Differing keys, by tenant then key.
    pub findings: Vec<Finding>,
    /// Keys compared here (settled ones).
    pub keys_here: i64,
    /// Keys compared there.
    pub keys_there: i64,
    /// Ranges whose digests were compared.
    pub buckets_compared: i64,
    /// Ranges compared key by key.
    pub leaves_compared: i64,
    /// Tenants compared.
    pub tenants: Vec<String>,
}

/// The cross-region rule: the earlier received-at wins, then the smaller origin region id, then
/// the smaller signed digest (two records of one region received in the same millisecond).
pub fn winner(here: &KeyState, there: &KeyState) -> Side {
    let rank = |key: &KeyState| {
        (
            key.received_at_ms,
            key.origin.clone(),
            key.signed_digest.clone(),
        )
    };
    if rank(here) <= rank(there) {
        Side::Here
    } else {
        Side::There
    }
}

/// Compares two sorted key lists of one range.
pub fn compare_keys(tenant: &str, here: &[KeyState], there: &[KeyState]) -> Vec<Finding> {
    let mut by_key: BTreeMap<&str, (Option<&KeyState>, Option<&KeyState>)> = BTreeMap::new();
    for key in here {
        by_key.entry(&key.pcs_id).or_default().0 = Some(key);
    }
    for key in there {
        by_key.entry(&key.pcs_id).or_default().1 = Some(key);
    }
    by_key
        .into_iter()
        .filter_map(|(pcs_id, pair)| {
            let (kind, winner_opt) = match pair {
                (Some(_), None) => (FindingKind::MissingThere, None),
                (None, Some(_)) => (FindingKind::MissingHere, None),
                (Some(a), Some(b)) if a.signed_digest != b.signed_digest => {
                    (FindingKind::DifferentRecord, Some(winner(a, b)))
                }
                (Some(a), Some(b)) if a.outcome_code != b.outcome_code => {
                    (FindingKind::DifferentOutcome, Some(winner(a, b)))
                }
                _ => return None,
            };
            Some(Finding {
                tenant: tenant.to_owned(),
                pcs_id: pcs_id.to_owned(),
                kind,
                here_opt: pair.0.cloned(),
                there_opt: pair.1.cloned(),
                winner_opt,
            })
        })
        .collect()
}

/// The origin region of a row from the topic its first record came from.
pub fn origin_of(first_topic: &str, view: &RegionView<'_>) -> String {
    first_topic
        .strip_prefix(view.topic_prefix)
        .and_then(|rest| rest.strip_suffix(".flk.submissions"))
        .filter(|origin| !origin.is_empty())
        .unwrap_or(view.region)
        .to_owned()
}

/// `prefix` as a LIKE pattern matching every string that starts with it.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

/// Count and XOR of row hashes of each child range of `prefix`.
async fn buckets(
    view: &RegionView<'_>,
    tenant: &str,
    prefix: &str,
    settled_before_ms: i64,
) -> Result<BTreeMap<String, (i64, i64)>, StoreError> {
    let client = view.store.client().await?;
    let child_chars = i32::try_from(prefix.chars().count() + 1).unwrap_or(i32::MAX);
    let rows = client
        .query(
            "SELECT substr(pcs_id, 1, $3) AS bucket, count(*)::bigint, \
             bit_xor(('x' || substr(encode(sha256(convert_to(pcs_id, 'UTF8') || '\\x00'::bytea \
               || signed_digest || convert_to(outcome_code, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint) \
             FROM dedup WHERE tenant = $1 AND pcs_id LIKE $2 AND received_at_ms < $4 \
             GROUP BY 1",
            &[&tenant, &like_prefix(prefix), &child_chars, &settled_before_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect())
}

/// Every settled key of one range, sorted.
async fn keys(
    view: &RegionView<'_>,
    tenant: &str,
    prefix: &str,
    settled_before_ms: i64,
) -> Result<Vec<KeyState>, StoreError> {
    let client = view.store.client().await?;
    let rows = client
        .query(
            "SELECT pcs_id, signed_digest, outcome_code, received_at_ms, first_topic, \
             first_partition, first_offset FROM dedup \
             WHERE tenant = $1 AND pcs_id LIKE $2 AND received_at_ms < $3 ORDER BY pcs_id",
            &[&tenant, &like_prefix(prefix), &settled_before_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| KeyState {
            pcs_id: row.get(0),
            signed_digest: row.get(1),
            outcome_code: row.get(2),
            received_at_ms: row.get(3),
            origin: origin_of(row.get(4), view),
            first_source: events::SourceCoordinates {
                topic: row.get(4),
                partition: row.get(5),
                offset: row.get(6),
            },
        })
        .collect())
}

/// Fails with a clear error when `view`'s schema holds no dedup table (a wrong schema or
/// database), rather than on the first comparison query.
pub async fn check_dedup_table(view: &RegionView<'_>) -> Result<(), StoreError> {
    let client = view.store.client().await?;
    let found: Option<String> = client
        .query_one("SELECT to_regclass('dedup')::text", &[])
        .await?
        .get(0);
    if found.is_none() {
        return Err(StoreError::InvalidInput(format!(
            "region {}: schema {} has no dedup table (is it that region's projection schema?)",
            view.region,
            view.store.schema()
        )));
    }
    Ok(())
}

async fn tenants(view: &RegionView<'_>) -> Result<Vec<String>, StoreError> {
    let client = view.store.client().await?;
    let rows = client
        .query("SELECT DISTINCT tenant FROM dedup ORDER BY 1", &[])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Compares the dedup state of `here` and `there` (one tenant, or every tenant either has),
/// leaving out keys received at or after `settled_before_ms`.
pub async fn diff(
    here: &RegionView<'_>,
    there: &RegionView<'_>,
    tenant_opt: Option<&str>,
    settled_before_ms: i64,
    leaf_keys: i64,
) -> Result<DiffReport, StoreError> {
    let tenants = match tenant_opt {
        Some(tenant) => vec![tenant.to_owned()],
        None => {
            let mut all = tenants(here).await?;
            all.extend(tenants(there).await?);
            all.sort();
            all.dedup();
            all
        }
    };
    let mut report = DiffReport {
        tenants,
        ..DiffReport::default()
    };
    for tenant in report.tenants.clone().iter() {
        let mut pending = vec![String::new()];
        let mut top = true;
        while let Some(prefix) = pending.pop() {
            let ours = buckets(here, tenant, &prefix, settled_before_ms).await?;
            let theirs = buckets(there, tenant, &prefix, settled_before_ms).await?;
            if top {
                report.keys_here += ours.values().map(|(count, _)| count).sum::<i64>();
                report.keys_there += theirs.values().map(|(count, _)| count).sum::<i64>();
                top = false;
            }
            let mut children: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
            children.sort();
            children.dedup();
            for child in children {
                report.buckets_compared += 1;
                let a = ours.get(child).copied().unwrap_or((0, 0));
                let b = theirs.get(child).copied().unwrap_or((0, 0));
                if a == b {
                    continue;
                }
                // A child as long as its parent: keys shorter than the prefix; compare them here.
                let exhausted = child.chars().count() <= prefix.chars().count()
                    || child.chars().count() >= MAX_PREFIX_CHARS;
                if a.0.max(b.0) <= leaf_keys || exhausted {
                    report.leaves_compared += 1;
                    let ours = keys(here, tenant, child, settled_before_ms).await?;
                    let theirs = keys(there, tenant, child, settled_before_ms).await?;
                    report.findings.extend(compare_keys(tenant, &ours, &theirs));
                } else {
                    pending.push(child.clone());
                }
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| (&a.tenant, &a.pcs_id).cmp(&(&b.tenant, &b.pcs_id)));
    report
        .findings
        .dedup_by(|a, b| a.tenant == b.tenant && a.pcs_id == b.pcs_id);
    Ok(report)
}

/// Stores a run and its findings in `store` (this region's); returns the run id.
pub async fn record_run(
    store: &ProjectionStore,
    remote_region: &str,
    report: &DiffReport,
    started_at_ms: i64,
    finished_at_ms: i64,
) -> Result<i64, StoreError> {
    let mut client = store.client().await?;
    let transaction = client.transaction().await?;
    let findings = i64::try_from(report.findings.len()).unwrap_or(i64::MAX);
    let run_id: i64 = transaction
        .query_one(
            "INSERT INTO geo_divergence_runs (remote_region, started_at_ms, finished_at_ms, \
             keys_here, keys_there, buckets_compared, findings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING run_id",
            &[
                &remote_region,
                &started_at_ms,
                &finished_at_ms,
                &report.keys_here,
                &report.keys_there,
                &report.buckets_compared,
                &findings,
            ],
        )
        .await?
        .get(0);
    let insert = transaction
        .prepare(
            "INSERT INTO geo_divergence_findings (run_id, tenant, pcs_id, kind, digest_here, \
             digest_there, received_at_ms_here, received_at_ms_there, origin_here, origin_there, \
             winner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    for finding in &report.findings {
        let here = finding.here_opt.as_ref();
        let there = finding.there_opt.as_ref();
        transaction
            .execute(
                &insert,
                &[
                    &run_id,
                    &finding.tenant,
                    &finding.pcs_id,
                    &finding.kind.as_str(),
                    &here.map(|key| key.signed_digest.clone()),
                    &there.map(|key| key.signed_digest.clone()),
                    &here.map(|key| key.received_at_ms),
                    &there.map(|key| key.received_at_ms),
                    &here.map(|key| key.origin.clone()),
                    &there.map(|key| key.origin.clone()),
                    &finding.winner_opt.map(Side::as_str),
                ],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(run_id)
}

/// Notes what `flk regions reconcile` did about one finding of a run.
pub async fn record_action(
    store: &ProjectionStore,
    run_id: i64,
    finding: &Finding,
    action: &str,
) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "UPDATE geo_divergence_findings SET action = $4 \
             WHERE run_id = $1 AND tenant = $2 AND pcs_id = $3",
            &[&run_id, &finding.tenant, &finding.pcs_id, &action],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pcs_id: &str, digest: u8, received_at_ms: i64, origin: &str) -> KeyState {
        KeyState {
            pcs_id: pcs_id.into(),
            signed_digest: vec![digest; 32],
            outcome_code: "accepted".into(),
            received_at_ms,
            origin: origin.into(),
            first_source: events::SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
        }
    }

    #[test]
    fn the_earlier_record_wins_then_the_smaller_region() {
        assert_eq!(
            winner(&key("k", 1, 10, "b"), &key("k", 2, 11, "a")),
            Side::Here
        );
        assert_eq!(
            winner(&key("k", 1, 12, "a"), &key("k", 2, 11, "b")),
            Side::There
        );
        assert_eq!(
            winner(&key("k", 1, 10, "b"), &key("k", 2, 10, "a")),
            Side::There
        );
        // The same answer from the other side: both regions converge on one record.
        assert_eq!(
            winner(&key("k", 2, 10, "a"), &key("k", 1, 10, "b")),
            Side::Here
        );
    }

    #[test]
    fn each_kind_of_difference_is_named_and_equal_keys_are_not() {
        let here = [
            key("a", 1, 1, "x"),
            key("b", 1, 1, "x"),
            key("c", 1, 5, "x"),
            key("d", 1, 1, "x"),
        ];
        let mut changed_outcome = key("d", 1, 1, "x");
        changed_outcome.outcome_code = "escalated".into();
        let there = [
            key("b", 1, 1, "x"),
            key("c", 2, 3, "y"),
            changed_outcome,
            key("e", 1, 1, "y"),
        ];
        let found: Vec<(String, FindingKind, Option<Side>)> = compare_keys("t", &here, &there)
            .into_iter()
            .map(|finding| (finding.pcs_id, finding.kind, finding.winner_opt))
            .collect();
        assert_eq!(
            found,
            vec![
                ("a".into(), FindingKind::MissingThere, None),
                ("c".into(), FindingKind::DifferentRecord, Some(Side::There)),
                ("d".into(), FindingKind::DifferentOutcome, Some(Side::Here)),
                ("e".into(), FindingKind::MissingHere, None),
            ]
        );
    }

    #[test]
    fn rows_name_their_origin_from_the_topic() {
        let store = ProjectionStore::connect_lazy(
            "postgres://localhost/x",
            "s",
            crate::store::StoreOptions::default(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let view = RegionView {
            store: &store,
            region: "a",
            topic_prefix: "p.",
        };
        assert_eq!(origin_of("p.flk.submissions", &view), "a");
        assert_eq!(origin_of("p.b.flk.submissions", &view), "b");
    }

    #[test]
    fn like_patterns_match_the_prefix_literally() {
        assert_eq!(like_prefix("ab"), "ab%");
        assert_eq!(like_prefix("a_%\\"), "a\\_\\%\\\\%");
    }
}
