//! `apply_batches`: folds decision events of one or more decisions partitions into offsets,
//! dedup and the audit log in ONE transaction (I4). Each partition keeps its own offsets row,
//! fencing and audit chain; sharing the transaction only shares its cost (one commit, one set of
//! round trips for all), which is what lets the projector batch across partitions.
//!
//! Steps, in the transaction:
//! 1. lock the offsets rows (in partition order); a different `owner_epoch` than the caller's
//!    claim on any of them is [`StoreError::Fenced`] (a stale owner after a rebalance) and nothing
//!    changes;
//! 2. skip events whose decisions offset is below `next_offset` (applied before: replays are
//!    no-ops);
//! 3. an event whose source coordinates already have an audit entry (the shard decided the same
//!    submission twice, at-least-once) gets the stored answer and no second entry;
//! 4. verified events with a key fold into the dedup table (see [`crate::dedup`]): first write
//!    wins, same digest is a duplicate (stored outcome class and body, `replayed`), a different
//!    digest is a conflict answered with the stored body, a row expired before the event's
//!    `received_at_ms` is replaced; malformed, refused and badly signed records never touch it
//!    (I2);
//! 5. every new event gets a hash-chained audit entry, rejections included;
//! 6. `next_offset` = last batch offset + 1, `pg_notify` of the new sources, commit.
//!
//! A transient race (deadlock, serialization failure, a concurrent insert of the same key or
//! source) rolls back and retries the whole transaction a few times, then reports
//! [`StoreError::Unavailable`].

use std::collections::HashMap;
use std::time::Duration;

use events::{DecisionEvent, SourceCoordinates};
use futures::TryFutureExt as _;

use crate::audit::{self, AuditEntry, GENESIS_HASH};
use crate::dedup::{DedupBatch, DedupKey, DedupRow};
use crate::error::{AttemptError, StoreError};
use crate::model::{Applied, DedupResult, TenantTtl};
use crate::normalized::Normalized;
use crate::plan_mode::{self, PlanMode};
use crate::{notify, offsets};

/// Attempts of one batch before a transient race is reported as unavailable.
const MAX_ATTEMPTS: u32 = 5;

/// The events of one decisions partition to fold, under the caller's claim on it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionBatch<'a> {
    /// Decisions partition.
    pub partition: i32,
    /// The caller's claim epoch on it.
    pub claim_epoch: i64,
    /// `(decisions offset, event)` in strictly ascending offset order.
    pub events: &'a [(i64, DecisionEvent)],
}

/// What a fold needs from the store: handed in by [`crate::store`], so this module does not
/// depend on it (the store calls the fold, not the other way round).
pub(crate) struct Target<'a> {
    /// Connections.
    pub pool: &'a deadpool_postgres::Pool,
    /// Dedup TTL per tenant.
    pub dedup_ttl: &'a TenantTtl,
    /// The `pg_notify` channel of the schema.
    pub channel: String,
}

pub(crate) async fn apply_batches(
    store: &Target<'_>,
    consumer: &str,
    topic: &str,
    batches: &[PartitionBatch<'_>],
) -> Result<Vec<Vec<Applied>>, StoreError> {
    for batch in batches {
        if let Some(pair) = batch.events.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(StoreError::InvalidInput(format!(
                "batch offsets of partition {} must be strictly ascending ({} then {})",
                batch.partition, pair[0].0, pair[1].0
            )));
        }
    }
    let mut partitions: Vec<i32> = batches.iter().map(|batch| batch.partition).collect();
    partitions.sort_unstable();
    if let Some(pair) = partitions.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StoreError::InvalidInput(format!(
            "partition {} appears twice in one transaction",
            pair[0]
        )));
    }
    if batches.iter().all(|batch| batch.events.is_empty()) {
        return Ok(vec![Vec::new(); batches.len()]);
    }
    let mut attempt = 1;
    loop {
        match attempt_batches(store, consumer, topic, batches).await {
            Ok(applied) => return Ok(applied),
            Err(AttemptError::Postgres(error))
                if StoreError::is_transient_conflict(&error) && attempt < MAX_ATTEMPTS =>
            {
                tracing::debug!(consumer, topic, ?partitions, attempt, %error, "retrying batch after a transient conflict");
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

async fn attempt_batches(
    store: &Target<'_>,
    consumer: &str,
    topic: &str,
    batches: &[PartitionBatch<'_>],
) -> Result<Vec<Vec<Applied>>, AttemptError> {
    let mut client = store.pool.get().await?;
    let transaction = client.transaction().await?;
    // Round trips, not statements, are what a small batch pays for: the four reads go out in one
    // pipeline (tokio-postgres sends concurrent queries without waiting), as do the writes below.
    // Postgres still runs them in order, so the reads run after the offsets rows are locked. They
    // cover the whole batch, a superset of what is applied: rows of events applied before are
    // read (and dedup rows locked) but left alone.
    let normalized: Vec<Vec<(i64, Normalized)>> = batches
        .iter()
        .map(|batch| {
            batch
                .events
                .iter()
                .map(|(offset, event)| (*offset, Normalized::from_event(event)))
                .collect()
        })
        .collect();
    let all = || normalized.iter().flatten().map(|(_, n)| n);
    let sources: Vec<&SourceCoordinates> = all().map(|n| &n.source).collect();
    let keys: Vec<DedupKey> = all().filter_map(Normalized::dedup_key).collect();
    let claims: Vec<(i32, i64)> = batches
        .iter()
        .map(|batch| (batch.partition, batch.claim_epoch))
        .collect();
    let partitions: Vec<i32> = claims.iter().map(|(partition, _)| *partition).collect();
    // Statements are planned once per connection, but for the dedup lookup (crate::plan_mode).
    let ((), next_offsets, audited, mut heads, mut dedup) = futures::try_join!(
        plan_mode::set(&transaction, PlanMode::Cached).err_into(),
        offsets::lock_and_check_owners(&transaction, consumer, topic, &claims),
        audit::find_by_sources(&transaction, &sources),
        audit::heads(&transaction, &partitions),
        DedupBatch::load_for_update(&transaction, &keys),
    )?;

    let ttl = store.dedup_ttl;
    let mut answers: Vec<Vec<Applied>> = Vec::with_capacity(batches.len());
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut advanced: Vec<(i32, i64)> = Vec::new();
    let mut applied_in_batch: HashMap<SourceCoordinates, Applied> = HashMap::new();
    for (batch, events) in batches.iter().zip(normalized) {
        let partition = batch.partition;
        let next_offset = next_offsets.get(&partition).copied().unwrap_or_default();
        let (seq, prev_hash) = heads.entry(partition).or_insert((0, GENESIS_HASH));
        debug_assert!(*seq > 0 || *prev_hash == GENESIS_HASH);
        let mut results = Vec::new();
        let mut last_offset_opt = None;
        for (offset, event) in events
            .into_iter()
            .filter(|(offset, _)| *offset >= next_offset)
        {
            last_offset_opt = Some(offset);
            if let Some(stored) = audited.get(&event.source) {
                results.push(stored.clone());
                continue;
            }
            if let Some(again) = applied_in_batch.get(&event.source) {
                results.push(again.clone());
                continue;
            }
            let applied = fold_one(&mut dedup, &event, offset, ttl);
            applied_in_batch.insert(event.source.clone(), applied.clone());
            let mut entry = event.into_audit_entry(
                partition,
                *seq,
                offset,
                applied.outcome_class,
                applied.dedup_result,
                applied.body.clone(),
            );
            entry.seal(*prev_hash);
            *prev_hash = entry.entry_hash;
            *seq += 1;
            entries.push(entry);
            results.push(applied);
        }
        if let Some(last_offset) = last_offset_opt {
            advanced.push((partition, last_offset + 1));
        }
        answers.push(results);
    }
    if advanced.is_empty() {
        // Everything was applied before: nothing to write, nothing to answer.
        transaction.rollback().await?;
        return Ok(answers);
    }

    let channel = store.channel.as_str();
    futures::try_join!(
        plan_mode::set(&transaction, PlanMode::Cached).err_into(),
        dedup.write(&transaction),
        audit::insert(&transaction, &entries),
        async {
            offsets::advance(&transaction, consumer, topic, &advanced)
                .await
                .map_err(AttemptError::from)
        },
        notify::send(
            &transaction,
            channel,
            entries.iter().map(|entry| &entry.source)
        ),
    )?;
    transaction.commit().await?;
    tracing::debug!(
        consumer,
        topic,
        ?advanced,
        appended = entries.len(),
        "applied decision batch"
    );
    Ok(answers)
}

/// The answer for one new event (dedup folded in memory; written later in the transaction).
pub(crate) fn fold_one(
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
        outcome_class: event.outcome_class,
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
        outcome_class: event.outcome_class,
        outcome: event.body.clone(),
        first_source: event.source.clone(),
        received_at_ms: event.received_at_ms,
        decided_at_ms: event.decided_at_ms,
        expires_at_ms: event.expires_at_ms(ttl),
        origin_region: event.origin_region.clone(),
    };
    let answer = dedup.decide(key, candidate);
    applied.outcome_class = answer.outcome_class;
    applied.dedup_result = answer.result;
    applied.body = answer.body;
    applied.replayed = answer.result == DedupResult::Duplicate;
    applied.dedup_expires_at_ms_opt = answer.expires_at_ms_opt;
    applied
}
