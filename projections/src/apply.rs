//! `apply_batch`: folds decision events of one decisions partition into offsets, dedup and the
//! audit log in ONE transaction (I4).
//!
//! Steps, in the transaction:
//! 1. lock the offsets row; a different `owner_epoch` than the caller's claim is
//!    [`StoreError::Fenced`] (a stale owner after a rebalance) and nothing changes;
//! 2. skip events whose decisions offset is below `next_offset` (applied before: replays are
//!    no-ops);
//! 3. an event whose source coordinates already have an audit entry (the shard decided the same
//!    submission twice, at-least-once) gets the stored answer and no second entry;
//! 4. verified events with a key fold into the dedup table (see [`crate::dedup`]): first write
//!    wins, same digest is a duplicate (stored status and body, `replayed`), a different digest is
//!    a 409 conflict with the stored body, a row expired before the event's `received_at_ms` is
//!    replaced; rejections (400/401/403) never touch it (I2);
//! 5. every new event gets a hash-chained audit entry, rejections included;
//! 6. `next_offset` = last batch offset + 1, `pg_notify` of the new sources, commit.
//!
//! A transient race (deadlock, serialization failure, a concurrent insert of the same key or
//! source) rolls back and retries the whole transaction a few times, then reports
//! [`StoreError::Unavailable`].

use std::collections::HashMap;
use std::time::Duration;

use events::{DecisionEvent, SourceCoordinates, Verdict};
use serde_json::{Value, json};

use crate::audit::{self, AuditEntry, GENESIS_HASH};
use crate::dedup::{DedupBatch, DedupKey, DedupRow};
use crate::error::{AttemptError, StoreError};
use crate::model::{Applied, DedupResult, TenantTtl};
use crate::sanitize::{pg_json, pg_text};
use crate::store::ProjectionStore;
use crate::{notify, offsets};

/// Attempts of one batch before a transient race is reported as unavailable.
const MAX_ATTEMPTS: u32 = 5;

pub(crate) async fn apply_batch(
    store: &ProjectionStore,
    consumer: &str,
    topic: &str,
    partition: i32,
    claim_epoch: i64,
    batch: &[(i64, DecisionEvent)],
) -> Result<Vec<Applied>, StoreError> {
    if let Some(pair) = batch.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
        return Err(StoreError::InvalidInput(format!(
            "batch offsets must be strictly ascending ({} then {})",
            pair[0].0, pair[1].0
        )));
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut attempt = 1;
    loop {
        let result = attempt_batch(store, consumer, topic, partition, claim_epoch, batch).await;
        match result {
            Ok(applied) => return Ok(applied),
            Err(AttemptError::Postgres(error))
                if StoreError::is_transient_conflict(&error) && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(consumer, topic, partition, attempt, %error, "retrying batch after a transient conflict");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            Err(AttemptError::Postgres(error)) if StoreError::is_transient_conflict(&error) => {
                return Err(StoreError::Unavailable(format!(
                    "batch kept conflicting after {MAX_ATTEMPTS} attempts: {error}"
                )));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

async fn attempt_batch(
    store: &ProjectionStore,
    consumer: &str,
    topic: &str,
    partition: i32,
    claim_epoch: i64,
    batch: &[(i64, DecisionEvent)],
) -> Result<Vec<Applied>, AttemptError> {
    let mut client = store.client().await?;
    let transaction = client.transaction().await?;
    // Round trips, not statements, are what a small batch pays for: the four reads go out in one
    // pipeline (tokio-postgres sends concurrent queries without waiting), as do the writes below.
    // Postgres still runs them in order, so the reads run after the offsets row is locked. They
    // cover the whole batch, a superset of what is applied: rows of events applied before are
    // read (and dedup rows locked) but left alone.
    let normalized: Vec<(i64, Normalized)> = batch
        .iter()
        .map(|(offset, event)| (*offset, Normalized::from_event(event)))
        .collect();
    let sources: Vec<&SourceCoordinates> = normalized.iter().map(|(_, n)| &n.source).collect();
    let keys: Vec<DedupKey> = normalized
        .iter()
        .filter_map(|(_, n)| n.dedup_key())
        .collect();
    let (next_offset, audited, mut dedup, (mut seq, mut prev_hash)) = futures::try_join!(
        offsets::lock_and_check_owner(&transaction, consumer, topic, partition, claim_epoch),
        audit::find_by_sources(&transaction, &sources),
        DedupBatch::load_for_update(&transaction, &keys),
        audit::head(&transaction, partition),
    )?;
    drop(sources);
    let pending: Vec<(i64, Normalized)> = normalized
        .into_iter()
        .filter(|(offset, _)| *offset >= next_offset)
        .collect();
    let Some(last_offset) = pending.last().map(|(offset, _)| *offset) else {
        // Everything was applied before: nothing to write, nothing to answer.
        transaction.rollback().await?;
        return Ok(Vec::new());
    };
    debug_assert!(seq > 0 || prev_hash == GENESIS_HASH);

    let ttl = &store.options().dedup_ttl;
    let mut results = Vec::with_capacity(pending.len());
    let mut entries: Vec<AuditEntry> = Vec::with_capacity(pending.len());
    let mut applied_in_batch: HashMap<SourceCoordinates, usize> = HashMap::new();
    for (offset, event) in pending {
        if let Some(stored) = audited.get(&event.source) {
            results.push(stored.clone());
            continue;
        }
        if let Some(&index) = applied_in_batch.get(&event.source) {
            let again = results.get(index).cloned();
            if let Some(again) = again {
                results.push(again);
            }
            continue;
        }
        let applied = fold_one(&mut dedup, &event, offset, ttl);
        let mut entry = event.audit_entry(partition, seq, offset, &applied);
        entry.seal(prev_hash);
        prev_hash = entry.entry_hash;
        seq += 1;
        entries.push(entry);
        applied_in_batch.insert(event.source.clone(), results.len());
        results.push(applied);
    }

    let channel = store.channel();
    futures::try_join!(
        dedup.write(&transaction),
        audit::insert(&transaction, &entries),
        async {
            offsets::advance(&transaction, consumer, topic, partition, last_offset + 1)
                .await
                .map_err(AttemptError::from)
        },
        notify::send(
            &transaction,
            &channel,
            entries.iter().map(|entry| &entry.source)
        ),
    )?;
    transaction.commit().await?;
    tracing::debug!(
        consumer,
        topic,
        partition,
        appended = entries.len(),
        answered = results.len(),
        next_offset = last_offset + 1,
        "applied decision batch"
    );
    Ok(results)
}

/// The fields of a decision event as they will be stored (NUL-free, see [`crate::sanitize`]).
#[derive(Debug)]
struct Normalized {
    source: SourceCoordinates,
    tenant: String,
    pcs_id_opt: Option<String>,
    signed_digest_opt: Option<[u8; 32]>,
    verdict_code: &'static str,
    /// `(status, body)` of the verdict alone, before dedup.
    status: u16,
    body: Value,
    /// Present for verified events: they are the ones deduplicated.
    verified: bool,
    key_id_opt: Option<String>,
    params_version: i64,
    region: String,
    received_at_ms: i64,
    decided_at_ms: i64,
}

impl Normalized {
    fn from_event(event: &DecisionEvent) -> Self {
        let (body, verified) = match &event.verdict {
            Verdict::Verified { outcome } => (outcome.to_json(), true),
            Verdict::Malformed { error } => (error_body(&event.verdict, error), false),
            Verdict::TenantRefused { reason } | Verdict::SignatureRejected { reason } => {
                (error_body(&event.verdict, reason), false)
            }
        };
        Normalized {
            source: SourceCoordinates {
                topic: pg_text(&event.source.topic).into_owned(),
                partition: event.source.partition,
                offset: event.source.offset,
            },
            tenant: pg_text(&event.tenant).into_owned(),
            pcs_id_opt: event.pcs_id_opt.as_deref().map(|p| pg_text(p).into_owned()),
            signed_digest_opt: event.signed_digest_opt,
            verdict_code: event.verdict.code(),
            status: event.verdict.http_status(),
            body: pg_json(body),
            verified,
            key_id_opt: event.key_id_opt.as_deref().map(|k| pg_text(k).into_owned()),
            params_version: i64::from(event.params_version),
            region: pg_text(&event.region).into_owned(),
            received_at_ms: event.received_at_ms,
            decided_at_ms: event.decided_at_ms,
        }
    }

    /// The dedup key, for verified events that carry a `pcs_id` and a digest.
    fn dedup_key(&self) -> Option<DedupKey> {
        match (&self.pcs_id_opt, &self.signed_digest_opt) {
            (Some(pcs_id), Some(_)) if self.verified => Some((self.tenant.clone(), pcs_id.clone())),
            _ => None,
        }
    }

    fn audit_entry(
        &self,
        partition: i32,
        seq: i64,
        decisions_offset: i64,
        applied: &Applied,
    ) -> AuditEntry {
        AuditEntry {
            partition,
            seq,
            source: self.source.clone(),
            decisions_offset,
            tenant: self.tenant.clone(),
            pcs_id_opt: self.pcs_id_opt.clone(),
            verdict: self.verdict_code.to_owned(),
            status: applied.status,
            dedup_result: applied.dedup_result,
            outcome: applied.body.clone(),
            signed_digest_opt: self.signed_digest_opt,
            key_id_opt: self.key_id_opt.clone(),
            params_version: self.params_version,
            region: self.region.clone(),
            received_at_ms: self.received_at_ms,
            decided_at_ms: self.decided_at_ms,
            prev_hash: GENESIS_HASH,
            entry_hash: GENESIS_HASH,
        }
    }
}

/// The contract's error body for a 4xx verdict.
fn error_body(verdict: &Verdict, message: &str) -> Value {
    json!({"error": verdict.code(), "message": message})
}

/// The answer for one new event (dedup folded in memory; written later in the transaction).
fn fold_one(
    dedup: &mut DedupBatch,
    event: &Normalized,
    decisions_offset: i64,
    ttl: &TenantTtl,
) -> Applied {
    let mut applied = Applied {
        source: event.source.clone(),
        decisions_offset,
        tenant: event.tenant.clone(),
        pcs_id_opt: event.pcs_id_opt.clone(),
        signed_digest_opt: event.signed_digest_opt,
        status: event.status,
        dedup_result: DedupResult::NotDeduplicated,
        body: event.body.clone(),
        replayed: false,
        dedup_expires_at_ms_opt: None,
    };
    let (Some(key), Some(signed_digest)) = (event.dedup_key(), event.signed_digest_opt) else {
        return applied;
    };
    let candidate = DedupRow {
        signed_digest,
        status: event.status,
        outcome: event.body.clone(),
        first_source: event.source.clone(),
        received_at_ms: event.received_at_ms,
        decided_at_ms: event.decided_at_ms,
        expires_at_ms: event
            .received_at_ms
            .saturating_add(ttl.ttl_ms(&event.tenant)),
    };
    let answer = dedup.decide(key, candidate);
    applied.status = answer.status;
    applied.dedup_result = answer.result;
    applied.body = answer.body;
    applied.replayed = answer.result == DedupResult::Duplicate;
    applied.dedup_expires_at_ms_opt = answer.expires_at_ms_opt;
    applied
}
