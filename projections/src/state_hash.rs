//! The state digest (I6): a rebuild by replay must print the same hex as the live store.
//!
//! SHA-256 over, in one repeatable-read snapshot (integers big-endian, `lp` = u32 length + bytes):
//!
//! ```text
//! lp("flk.state.v1")
//! per dedup row in any tier, ordered by (tenant, pcs_id) in "C" collation:
//!   'D' lp(tenant) lp(pcs_id) lp(signed_digest) u16 status lp(canonical JSON of outcome)
//!       lp(first_topic) i32 first_partition i64 first_offset
//!       i64 received_at_ms i64 decided_at_ms i64 expires_at_ms
//! per audit row, ordered by (partition, seq):
//!   'A' lp(audit canonical bytes) prev_hash entry_hash
//! ```
//!
//! `status` is the frozen numeric class of the row's `outcome_code` (always a first record), from
//! [`frozen_status_class`]: version 1 was defined when the row stored an HTTP status, and a log
//! written by an older build must still replay to the same hex.
//!
//! "In any tier": a dedup row is the warm row (`dedup`) or, when the demoter moved it to the cold
//! tier, its `cold_keys` entry with the outcome of its first audit entry (the same JSON the warm
//! row held), so demotion and promotion leave the hash unchanged and a rebuild, which puts every
//! row back in `dedup`, prints the same hex. A warm row shadows a cold entry of the same key.
//!
//! Left out on purpose: `projection_offsets` (epochs count claims, and a live store runs ahead of
//! a rebuild), the tier itself (`dedup.tier`, `promoted_at_ms`, segments: moved by the demoter,
//! not by events), `schema_migrations`, the tier bookkeeping tables. Keys whose cold segment was
//! deleted by retention are gone from the live store but not from a rebuild; compare the two
//! before retention deletes anything, or after `flk tier demote --now` ran on the rebuild.
//! Every included column derives from decision events; none from the projector's clock.

use sha2::{Digest, Sha256};
use tokio_postgres::IsolationLevel;

use crate::audit::{AUDIT_COLUMNS, entry_from_row};
use crate::canonical_json::canonical_json;
use crate::error::StoreError;
use crate::frozen_status::frozen_status_class;
use crate::model::DedupResult;

/// Domain tag and version of the digest.
pub const STATE_TAG: &[u8] = b"flk.state.v1";

/// Rows fetched per round trip.
const FETCH_ROWS: i32 = 2_000;

fn put_lp(hasher: &mut Sha256, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    hasher.update(len.to_be_bytes());
    hasher.update(bytes);
}

pub(crate) async fn state_hash(
    client: &mut deadpool_postgres::Object,
) -> Result<String, StoreError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut hasher = Sha256::new();
    put_lp(&mut hasher, STATE_TAG);

    let dedup_statement = transaction
        .prepare_cached(
            "SELECT tenant, pcs_id, signed_digest, outcome_code, outcome::text, first_topic, \
                 first_partition, first_offset, received_at_ms, decided_at_ms, expires_at_ms \
             FROM dedup \
             UNION ALL \
             SELECT c.tenant, c.pcs_id, c.signed_digest, c.outcome_code, a.outcome::text, \
                 c.first_topic, c.first_partition, c.first_offset, c.received_at_ms, \
                 c.decided_at_ms, c.expires_at_ms \
             FROM cold_keys c JOIN audit_log a ON a.source_topic = c.first_topic \
                 AND a.source_partition = c.first_partition AND a.source_offset = c.first_offset \
             WHERE NOT EXISTS (SELECT 1 FROM dedup d WHERE d.tenant = c.tenant AND d.pcs_id = c.pcs_id) \
             ORDER BY 1, 2",
        )
        .await?;
    let portal = transaction.bind(&dedup_statement, &[]).await?;
    loop {
        let rows = transaction.query_portal(&portal, FETCH_ROWS).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let outcome_text: String = row.try_get(4)?;
            let outcome: serde_json::Value = serde_json::from_str(&outcome_text)
                .map_err(|e| StoreError::Corrupt(format!("dedup outcome is not JSON: {e}")))?;
            let outcome_code: &str = row.try_get(3)?;
            let outcome_class = events::OutcomeClass::parse(outcome_code).ok_or_else(|| {
                StoreError::Corrupt(format!("dedup outcome_code {outcome_code:?}"))
            })?;
            let status = frozen_status_class(outcome_class, DedupResult::First);
            hasher.update(b"D");
            put_lp(&mut hasher, row.try_get::<_, &str>(0)?.as_bytes());
            put_lp(&mut hasher, row.try_get::<_, &str>(1)?.as_bytes());
            put_lp(&mut hasher, row.try_get::<_, &[u8]>(2)?);
            hasher.update(status.to_be_bytes());
            put_lp(&mut hasher, canonical_json(&outcome).as_bytes());
            put_lp(&mut hasher, row.try_get::<_, &str>(5)?.as_bytes());
            hasher.update(row.try_get::<_, i32>(6)?.to_be_bytes());
            for column in 7..=10 {
                hasher.update(row.try_get::<_, i64>(column)?.to_be_bytes());
            }
        }
    }

    let audit_statement = transaction
        .prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY partition, seq"
        ))
        .await?;
    let portal = transaction.bind(&audit_statement, &[]).await?;
    loop {
        let rows = transaction.query_portal(&portal, FETCH_ROWS).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let entry = entry_from_row(row)?;
            hasher.update(b"A");
            put_lp(&mut hasher, &entry.canonical_bytes());
            hasher.update(entry.prev_hash);
            hasher.update(entry.entry_hash);
        }
    }
    transaction.commit().await?;
    Ok(hex::encode(hasher.finalize()))
}
