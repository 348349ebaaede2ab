//! The audit log: one append-only, hash-chained entry per decision event, per decisions partition.
//!
//! # Hash chain
//!
//! `entry_hash = SHA-256(prev_hash || canonical_bytes(entry))`; the first entry of a partition has
//! `seq = 0` and `prev_hash` = 32 zero bytes ([`GENESIS_HASH`]); each next entry has `seq + 1` and
//! the previous `entry_hash`. `canonical_bytes` (version 1) concatenates, with integers big-endian,
//! `lp(b)` = u32 length then the bytes, `opt(None)` = `0x00`, `opt(Some(b))` = `0x01 || lp(b)`:
//!
//! ```text
//! lp("flk.audit.v1")
//! i32 partition, i64 seq
//! lp(source_topic), i32 source_partition, i64 source_offset, i64 decisions_offset
//! lp(tenant), opt(pcs_id), lp(verdict), u16 status, lp(dedup_result)
//!                                          -- status: crate::frozen_status, from outcome_code
//! lp(canonical JSON of outcome)            -- see crate::canonical_json
//! opt(signed_digest), opt(key_id), i64 params_version, lp(region)
//! i64 received_at_ms, i64 decided_at_ms
//! ```
//!
//! The entry stores the answered outcome class (`outcome_code`), not an HTTP status; version 1
//! still hashes the number the entry used to store, derived by
//! [`frozen_status_class`](crate::frozen_status::frozen_status_class) because the format is frozen.
//! Escalated and rejected share that number, so [`check_link`] also checks the code against the
//! hashed outcome body ([`ChainBreakKind::OutcomeMismatch`]).
//!
//! Every field is derived from the decision event (and the dedup state the events built), never
//! from the projector's clock, so a replay recomputes identical hashes (I6). The database refuses
//! UPDATE, DELETE and TRUNCATE on the table (I8, migration 0002).

use std::collections::HashMap;

use events::{OutcomeClass, SourceCoordinates};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::{IsolationLevel, Row};

use crate::canonical_json::canonical_json;
use crate::error::{AttemptError, StoreError};
use crate::frozen_status::{class_of_body, frozen_status_class};
use crate::model::{Applied, ChainBreak, ChainBreakKind, ChainReport, DedupResult};

/// `prev_hash` of the first entry of every partition.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Domain tag that starts the canonical bytes (and names their version).
pub const CANONICAL_TAG: &[u8] = b"flk.audit.v1";

/// Rows fetched per round trip when streaming the log.
const FETCH_ROWS: i32 = 2_000;

/// One audit entry, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Decisions partition (the chain this entry belongs to).
    pub partition: i32,
    /// Position in the partition's chain, from 0.
    pub seq: i64,
    /// The submission the decision is about.
    pub source: SourceCoordinates,
    /// Offset of the decision event in the decisions topic.
    pub decisions_offset: i64,
    /// Tenant.
    pub tenant: String,
    /// `pcs_id`, when the body decoded.
    pub pcs_id_opt: Option<String>,
    /// The event's own verdict code (`accepted`, `escalated`, `rejected`, `malformed`,
    /// `tenant_refused`, `signature_invalid`).
    pub verdict: String,
    /// Class of the answered outcome (for a duplicate or a conflict, of the stored first outcome;
    /// the dedup result tells a conflict apart).
    pub outcome_class: OutcomeClass,
    /// Relation to the dedup table.
    pub dedup_result: DedupResult,
    /// Body answered (the first outcome for duplicates and conflicts; an error body for records
    /// that were not verified).
    pub outcome: Value,
    /// The event's signed digest.
    pub signed_digest_opt: Option<[u8; 32]>,
    /// Key that verified the signature.
    pub key_id_opt: Option<String>,
    /// Version of the tenant's verification parameters.
    pub params_version: i64,
    /// Region that decided.
    pub region: String,
    /// Received at, ms since the epoch.
    pub received_at_ms: i64,
    /// Decided at, ms since the epoch.
    pub decided_at_ms: i64,
    /// Previous entry's hash ([`GENESIS_HASH`] for seq 0).
    pub prev_hash: [u8; 32],
    /// SHA-256(prev_hash || canonical bytes).
    pub entry_hash: [u8; 32],
}

fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are bounded by the 64 KiB envelope; a length beyond u32 cannot occur.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes_opt: Option<&[u8]>) {
    match bytes_opt {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_lp(out, bytes);
        }
    }
}

impl AuditEntry {
    /// The canonical bytes the chain hashes (module doc, version 1).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_lp(&mut out, CANONICAL_TAG);
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_lp(&mut out, self.source.topic.as_bytes());
        out.extend_from_slice(&self.source.partition.to_be_bytes());
        out.extend_from_slice(&self.source.offset.to_be_bytes());
        out.extend_from_slice(&self.decisions_offset.to_be_bytes());
        put_lp(&mut out, self.tenant.as_bytes());
        put_opt(&mut out, self.pcs_id_opt.as_deref().map(str::as_bytes));
        put_lp(&mut out, self.verdict.as_bytes());
        out.extend_from_slice(
            &frozen_status_class(self.outcome_class, self.dedup_result).to_be_bytes(),
        );
        put_lp(&mut out, self.dedup_result.as_str().as_bytes());
        put_lp(&mut out, canonical_json(&self.outcome).as_bytes());
        put_opt(
            &mut out,
            self.signed_digest_opt.as_ref().map(|d| d.as_slice()),
        );
        put_opt(&mut out, self.key_id_opt.as_deref().map(str::as_bytes));
        out.extend_from_slice(&self.params_version.to_be_bytes());
        put_lp(&mut out, self.region.as_bytes());
        out.extend_from_slice(&self.received_at_ms.to_be_bytes());
        out.extend_from_slice(&self.decided_at_ms.to_be_bytes());
        out
    }

    /// SHA-256(prev_hash || canonical bytes) of the stored columns.
    pub fn compute_hash(&self) -> [u8; 32] {
        chain_hash(&self.prev_hash, &self.canonical_bytes())
    }

    /// Sets `prev_hash` and recomputes `entry_hash` (used when appending).
    pub(crate) fn seal(&mut self, prev_hash: [u8; 32]) {
        self.prev_hash = prev_hash;
        self.entry_hash = self.compute_hash();
    }

    /// The answer this entry records.
    pub fn to_applied(&self) -> Applied {
        Applied {
            source: self.source.clone(),
            decisions_offset: self.decisions_offset,
            tenant: self.tenant.clone(),
            pcs_id_opt: self.pcs_id_opt.clone(),
            signed_digest_opt: self.signed_digest_opt,
            outcome_class: self.outcome_class,
            dedup_result: self.dedup_result,
            body: self.outcome.clone(),
            replayed: self.dedup_result == DedupResult::Duplicate,
            dedup_expires_at_ms_opt: None,
        }
    }
}

/// SHA-256(prev_hash || entry_bytes).
pub fn chain_hash(prev_hash: &[u8; 32], entry_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(entry_bytes);
    hasher.finalize().into()
}

pub(crate) const AUDIT_COLUMNS: &str = "partition, seq, source_topic, source_partition, \
     source_offset, decisions_offset, tenant, pcs_id, verdict, outcome_code, dedup_result, \
     outcome::text, signed_digest, key_id, params_version, region, received_at_ms, \
     decided_at_ms, prev_hash, entry_hash";

fn digest32(bytes: Vec<u8>, column: &str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        StoreError::Corrupt(format!("audit {column} has {} bytes", bytes.len()))
    })
}

/// Decodes a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn entry_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    let outcome_code: String = row.try_get(9)?;
    let dedup_text: String = row.try_get(10)?;
    let outcome_text: String = row.try_get(11)?;
    let digest_opt: Option<Vec<u8>> = row.try_get(12)?;
    Ok(AuditEntry {
        partition: row.try_get(0)?,
        seq: row.try_get(1)?,
        source: SourceCoordinates {
            topic: row.try_get(2)?,
            partition: row.try_get(3)?,
            offset: row.try_get(4)?,
        },
        decisions_offset: row.try_get(5)?,
        tenant: row.try_get(6)?,
        pcs_id_opt: row.try_get(7)?,
        verdict: row.try_get(8)?,
        outcome_class: OutcomeClass::parse(&outcome_code)
            .ok_or_else(|| StoreError::Corrupt(format!("audit outcome_code {outcome_code:?}")))?,
        dedup_result: DedupResult::parse(&dedup_text)
            .ok_or_else(|| StoreError::Corrupt(format!("audit dedup_result {dedup_text:?}")))?,
        outcome: serde_json::from_str(&outcome_text)
            .map_err(|error| StoreError::Corrupt(format!("audit outcome is not JSON: {error}")))?,
        signed_digest_opt: digest_opt
            .map(|bytes| digest32(bytes, "signed_digest"))
            .transpose()?,
        key_id_opt: row.try_get(13)?,
        params_version: row.try_get(14)?,
        region: row.try_get(15)?,
        received_at_ms: row.try_get(16)?,
        decided_at_ms: row.try_get(17)?,
        prev_hash: digest32(row.try_get(18)?, "prev_hash")?,
        entry_hash: digest32(row.try_get(19)?, "entry_hash")?,
    })
}

/// Next `seq` and the `prev_hash` it chains to, for each of `partitions` that has entries
/// (a partition without entries starts at 0 after [`GENESIS_HASH`]). One index probe each.
pub(crate) async fn heads(
    transaction: &deadpool_postgres::Transaction<'_>,
    partitions: &[i32],
) -> Result<HashMap<i32, (i64, [u8; 32])>, AttemptError> {
    let statement = transaction
        .prepare_cached(
            "SELECT p.partition, h.seq, h.entry_hash FROM unnest($1::int4[]) AS p(partition) \
             JOIN LATERAL (SELECT seq, entry_hash FROM audit_log \
                 WHERE audit_log.partition = p.partition ORDER BY seq DESC LIMIT 1) AS h ON true",
        )
        .await?;
    let mut heads = HashMap::with_capacity(partitions.len());
    for row in transaction.query(&statement, &[&partitions]).await? {
        let partition: i32 = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        heads.insert(
            partition,
            (seq + 1, digest32(row.try_get(2)?, "entry_hash")?),
        );
    }
    Ok(heads)
}

/// Stored answers of the given sources that already have an audit entry. One index probe per
/// source (`LIMIT 1`, a source having one entry, keeps each probe a subquery the planner cannot
/// turn into a join), so a plan cached while the table was empty stays an index scan.
pub(crate) async fn find_by_sources(
    transaction: &deadpool_postgres::Transaction<'_>,
    sources: &[&SourceCoordinates],
) -> Result<HashMap<SourceCoordinates, Applied>, AttemptError> {
    let topics: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
    let partitions: Vec<i32> = sources.iter().map(|s| s.partition).collect();
    let offsets: Vec<i64> = sources.iter().map(|s| s.offset).collect();
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT a.* FROM unnest($1::text[], $2::int4[], $3::int8[]) AS s(topic, part, off) \
             JOIN LATERAL (SELECT {AUDIT_COLUMNS} FROM audit_log \
                 WHERE source_topic = s.topic AND source_partition = s.part \
                     AND source_offset = s.off LIMIT 1) AS a ON true"
        ))
        .await?;
    let mut found = HashMap::new();
    for row in transaction
        .query(&statement, &[&topics, &partitions, &offsets])
        .await?
    {
        let entry = entry_from_row(&row)?;
        found.insert(entry.source.clone(), entry.to_applied());
    }
    Ok(found)
}

/// Appends sealed entries with one multi-row INSERT.
pub(crate) async fn insert(
    transaction: &deadpool_postgres::Transaction<'_>,
    entries: &[AuditEntry],
) -> Result<(), AttemptError> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    let mut partitions = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut topics = Vec::with_capacity(n);
    let mut source_partitions = Vec::with_capacity(n);
    let mut source_offsets = Vec::with_capacity(n);
    let mut decisions_offsets = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut pcs_ids = Vec::with_capacity(n);
    let mut verdicts = Vec::with_capacity(n);
    let mut outcome_codes = Vec::with_capacity(n);
    let mut dedup_results = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut key_ids = Vec::with_capacity(n);
    let mut params_versions = Vec::with_capacity(n);
    let mut regions = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut decided = Vec::with_capacity(n);
    let mut prev_hashes = Vec::with_capacity(n);
    let mut entry_hashes = Vec::with_capacity(n);
    for entry in entries {
        partitions.push(entry.partition);
        seqs.push(entry.seq);
        topics.push(entry.source.topic.as_str());
        source_partitions.push(entry.source.partition);
        source_offsets.push(entry.source.offset);
        decisions_offsets.push(entry.decisions_offset);
        tenants.push(entry.tenant.as_str());
        pcs_ids.push(entry.pcs_id_opt.as_deref());
        verdicts.push(entry.verdict.as_str());
        outcome_codes.push(entry.outcome_class.as_str());
        dedup_results.push(entry.dedup_result.as_str());
        outcomes.push(entry.outcome.to_string());
        digests.push(entry.signed_digest_opt.map(|d| d.to_vec()));
        key_ids.push(entry.key_id_opt.as_deref());
        params_versions.push(entry.params_version);
        regions.push(entry.region.as_str());
        received.push(entry.received_at_ms);
        decided.push(entry.decided_at_ms);
        prev_hashes.push(entry.prev_hash.to_vec());
        entry_hashes.push(entry.entry_hash.to_vec());
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO audit_log (partition, seq, source_topic, source_partition, source_offset, \
                 decisions_offset, tenant, pcs_id, verdict, outcome_code, dedup_result, outcome, \
                 signed_digest, key_id, params_version, region, received_at_ms, decided_at_ms, \
                 prev_hash, entry_hash) \
             SELECT a, b, c, d, e, f, g, h, i, j, k, l::jsonb, m, n, o, p, q, r, s, t \
             FROM unnest($1::int4[], $2::int8[], $3::text[], $4::int4[], $5::int8[], \
                 $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                 $12::text[], $13::bytea[], $14::text[], $15::int8[], $16::text[], $17::int8[], \
                 $18::int8[], $19::bytea[], $20::bytea[]) \
             AS u(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &partitions,
                &seqs,
                &topics,
                &source_partitions,
                &source_offsets,
                &decisions_offsets,
                &tenants,
                &pcs_ids,
                &verdicts,
                &outcome_codes,
                &dedup_results,
                &outcomes,
                &digests,
                &key_ids,
                &params_versions,
                &regions,
                &received,
                &decided,
                &prev_hashes,
                &entry_hashes,
            ],
        )
        .await?;
    Ok(())
}

/// The answer recorded for one source.
pub(crate) async fn result_for_source(
    client: &deadpool_postgres::Client,
    source: &SourceCoordinates,
) -> Result<Option<Applied>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE source_topic = $1 AND source_partition = $2 AND source_offset = $3"
        ))
        .await?;
    let row_opt = client
        .query_opt(
            &statement,
            &[&source.topic, &source.partition, &source.offset],
        )
        .await?;
    row_opt
        .map(|row| entry_from_row(&row).map(|entry| entry.to_applied()))
        .transpose()
}

/// Decisions partitions with at least one entry.
pub(crate) async fn partitions(client: &deadpool_postgres::Client) -> Result<Vec<i32>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT partition FROM audit_log ORDER BY partition",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(StoreError::from))
        .collect()
}

/// Up to `limit` entries of a partition from `from_seq` on, in order.
pub(crate) async fn entries(
    client: &deadpool_postgres::Client,
    partition: i32,
    from_seq: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log \
                 WHERE partition = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
            ),
            &[&partition, &from_seq, &limit],
        )
        .await?;
    rows.iter().map(entry_from_row).collect()
}

/// Checks one entry against the one before it; returns the first defect.
pub fn check_link(
    entry: &AuditEntry,
    expected_seq: i64,
    expected_prev: &[u8; 32],
) -> Option<ChainBreakKind> {
    if entry.seq != expected_seq {
        return Some(ChainBreakKind::SeqGap {
            expected: expected_seq,
        });
    }
    if entry.prev_hash != *expected_prev {
        return Some(ChainBreakKind::PrevHashMismatch);
    }
    if entry.compute_hash() != entry.entry_hash {
        return Some(ChainBreakKind::EntryHashMismatch);
    }
    if class_of_body(&entry.outcome) != Some(entry.outcome_class) {
        return Some(ChainBreakKind::OutcomeMismatch);
    }
    None
}

/// Recomputes a partition's chain in one consistent snapshot, streaming the rows.
pub(crate) async fn verify_chain(
    client: &mut deadpool_postgres::Object,
    partition: i32,
) -> Result<ChainReport, StoreError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE partition = $1 ORDER BY seq"
        ))
        .await?;
    let portal = transaction.bind(&statement, &[&partition]).await?;
    let mut report = ChainReport {
        partition,
        entries: 0,
        last_seq_opt: None,
        head_hash: GENESIS_HASH,
        break_opt: None,
    };
    let mut expected_seq = 0;
    let mut expected_prev = GENESIS_HASH;
    loop {
        let rows = transaction.query_portal(&portal, FETCH_ROWS).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let entry = entry_from_row(row)?;
            if report.break_opt.is_none() {
                if let Some(kind) = check_link(&entry, expected_seq, &expected_prev) {
                    report.break_opt = Some(ChainBreak {
                        seq: entry.seq,
                        kind,
                    });
                }
            }
            report.entries += 1;
            report.last_seq_opt = Some(entry.seq);
            report.head_hash = entry.entry_hash;
            expected_seq = entry.seq + 1;
            expected_prev = entry.entry_hash;
        }
    }
    transaction.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: i64) -> AuditEntry {
        let mut entry = AuditEntry {
            partition: 3,
            seq,
            source: SourceCoordinates {
                topic: "flk.submissions".into(),
                partition: 3,
                offset: 100 + seq,
            },
            decisions_offset: 200 + seq,
            tenant: "acme".into(),
            pcs_id_opt: Some("abc".into()),
            verdict: "accepted".into(),
            outcome_class: OutcomeClass::Accepted,
            dedup_result: DedupResult::First,
            outcome: json!({"accepted": true, "escalated": false, "recomputed_D_hat": 1.5}),
            signed_digest_opt: Some([7; 32]),
            key_id_opt: Some("k1".into()),
            params_version: 2,
            region: "us".into(),
            received_at_ms: 1_700_000_000_000,
            decided_at_ms: 1_700_000_000_005,
            prev_hash: GENESIS_HASH,
            entry_hash: GENESIS_HASH,
        };
        entry.seal(GENESIS_HASH);
        entry
    }

    #[test]
    fn canonical_bytes_are_pinned() {
        // Pins version 1 of the format: changing it breaks every stored chain.
        let bytes = entry(0).canonical_bytes();
        assert_eq!(&bytes[..4], &12u32.to_be_bytes());
        assert_eq!(&bytes[4..16], b"flk.audit.v1");
        assert_eq!(
            hex::encode(chain_hash(&GENESIS_HASH, &bytes)),
            hex::encode(entry(0).entry_hash)
        );
        assert_eq!(
            hex::encode(entry(0).entry_hash),
            "d7b4c3f2dc8ba405afb6f866084abe21c63f40fc81990f54c46710440909f93a",
            "update this pin only with a new CANONICAL_TAG version"
        );
    }

    /// Entry hashes printed by the build that stored HTTP statuses (commit 9c3f5cc) for
    /// `entry(0)` with these answers: the frozen status class keeps every stored chain valid.
    #[test]
    fn hashes_match_the_build_that_stored_statuses() {
        use OutcomeClass::*;
        let verified = |accepted: bool, escalated: bool| {
            let mut body = json!({"accepted": accepted, "escalated": escalated});
            if escalated {
                body["reason"] = json!("r");
            }
            body
        };
        let error = |code: &str| json!({"error": code, "message": "m"});
        let cases = [
            // (old status, dedup result, verdict, class, body, old entry hash)
            (
                200,
                DedupResult::First,
                "accepted",
                Accepted,
                json!({"accepted": true, "escalated": false}),
                "4523d92df96623c79f599653453f9ad144d8be6b7e8bfc58f68ee255196b6343",
            ),
            (
                202,
                DedupResult::First,
                "escalated",
                Escalated,
                verified(true, true),
                "4a903ab57a76cb4afbfd8f1a3c9edd41b5d62739f3bec486f2913d7c87804a46",
            ),
            (
                202,
                DedupResult::Duplicate,
                "rejected",
                Rejected,
                verified(false, true),
                "15abe5f12ed405a04f882062faab3572c9aa4d892a77fdd6bfa5fdbfdecf1ad6",
            ),
            (
                409,
                DedupResult::Conflict,
                "accepted",
                Accepted,
                json!({"accepted": true, "escalated": false}),
                "ff0891c6e6a32dee9076560b030877884a1660d51b31023d3c8291d2e13837c0",
            ),
            (
                400,
                DedupResult::NotDeduplicated,
                "malformed",
                Malformed,
                error("malformed"),
                "e03f17674e00ec572c456e24c9326fa3e637f039606a6b7522ab172c9835aa36",
            ),
            (
                401,
                DedupResult::NotDeduplicated,
                "signature_invalid",
                SignatureRejected,
                error("signature_invalid"),
                "84295f9f220d99411a5e7f404987237354a88fb7153e270dc609374d7875f9e5",
            ),
            (
                403,
                DedupResult::NotDeduplicated,
                "tenant_refused",
                TenantRefused,
                error("tenant_refused"),
                "0777900ff279f17df6dad5b5ec9582d71be0d6b945662d7eba644589072a1091",
            ),
        ];
        for (old_status, dedup_result, verdict, class, body, old_hash) in cases {
            let mut e = entry(0);
            e.outcome_class = class;
            e.dedup_result = dedup_result;
            e.verdict = verdict.into();
            e.outcome = body;
            e.seal(GENESIS_HASH);
            assert_eq!(frozen_status_class(class, dedup_result), old_status);
            assert_eq!(
                hex::encode(e.entry_hash),
                old_hash,
                "{old_status} {verdict}"
            );
            assert_eq!(check_link(&e, 0, &GENESIS_HASH), None);
        }
    }

    #[test]
    fn an_outcome_code_that_disagrees_with_the_body_breaks_the_chain() {
        // Escalated and rejected hash the same frozen number; the body tells them apart.
        let mut e = entry(0);
        e.outcome_class = OutcomeClass::Escalated;
        e.outcome = json!({"accepted": false, "escalated": true});
        e.seal(GENESIS_HASH);
        assert_eq!(
            check_link(&e, 0, &GENESIS_HASH),
            Some(ChainBreakKind::OutcomeMismatch)
        );
        e.outcome_class = OutcomeClass::Rejected;
        assert_eq!(check_link(&e, 0, &GENESIS_HASH), None);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = entry(0);
        let mut variants = Vec::new();
        let mut e = base.clone();
        e.pcs_id_opt = None;
        variants.push(e);
        let mut e = base.clone();
        e.dedup_result = DedupResult::Conflict;
        variants.push(e);
        let mut e = base.clone();
        e.outcome = json!({"accepted": false});
        variants.push(e);
        let mut e = base.clone();
        e.key_id_opt = Some(String::new());
        variants.push(e);
        let mut e = base.clone();
        e.tenant = "acmf".into();
        variants.push(e);
        let mut e = base.clone();
        e.decided_at_ms += 1;
        variants.push(e);
        for variant in variants {
            assert_ne!(variant.compute_hash(), base.entry_hash, "{variant:?}");
        }
    }

    #[test]
    fn check_link_finds_each_kind_of_break() {
        let first = entry(0);
        assert_eq!(check_link(&first, 0, &GENESIS_HASH), None);
        let mut second = entry(1);
        second.seal(first.entry_hash);
        assert_eq!(check_link(&second, 1, &first.entry_hash), None);
        assert_eq!(
            check_link(&second, 2, &first.entry_hash),
            Some(ChainBreakKind::SeqGap { expected: 2 })
        );
        assert_eq!(
            check_link(&second, 1, &GENESIS_HASH),
            Some(ChainBreakKind::PrevHashMismatch)
        );
        let mut tampered = second.clone();
        tampered.outcome_class = OutcomeClass::Escalated;
        assert_eq!(
            check_link(&tampered, 1, &first.entry_hash),
            Some(ChainBreakKind::EntryHashMismatch)
        );
    }
}
