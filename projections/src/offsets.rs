//! `projection_offsets`: the next decisions offset to apply per (consumer, topic, partition), and
//! the owner epoch that fences a stale owner after a rebalance.

use std::collections::HashMap;

use crate::error::{AttemptError, StoreError};
use crate::model::Claim;

/// Bumps the owner epoch of a partition (inserting it at offset 0, epoch 1, when missing).
pub(crate) async fn claim(
    client: &deadpool_postgres::Client,
    consumer: &str,
    topic: &str,
    partition: i32,
) -> Result<Claim, StoreError> {
    let row = client
        .query_one(
            "INSERT INTO projection_offsets (consumer, topic, partition, next_offset, owner_epoch) \
             VALUES ($1, $2, $3, 0, 1) \
             ON CONFLICT (consumer, topic, partition) \
             DO UPDATE SET owner_epoch = projection_offsets.owner_epoch + 1 \
             RETURNING next_offset, owner_epoch",
            &[&consumer, &topic, &partition],
        )
        .await?;
    let claim = Claim {
        next_offset: row.try_get(0)?,
        owner_epoch: row.try_get(1)?,
    };
    tracing::info!(
        consumer,
        topic,
        partition,
        next_offset = claim.next_offset,
        owner_epoch = claim.owner_epoch,
        "claimed decisions partition"
    );
    Ok(claim)
}

/// Reads a partition's offsets row.
pub(crate) async fn read(
    client: &deadpool_postgres::Client,
    consumer: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<Claim>, StoreError> {
    let row_opt = client
        .query_opt(
            "SELECT next_offset, owner_epoch FROM projection_offsets \
             WHERE consumer = $1 AND topic = $2 AND partition = $3",
            &[&consumer, &topic, &partition],
        )
        .await?;
    row_opt
        .map(|row| {
            Ok(Claim {
                next_offset: row.try_get(0)?,
                owner_epoch: row.try_get(1)?,
            })
        })
        .transpose()
}

/// Locks the offsets rows of `claims` (partition, claimed epoch) for the rest of the transaction,
/// in partition order (so concurrent transactions never deadlock on them), and checks the caller
/// still owns each. Returns the stored `next_offset` of each partition.
pub(crate) async fn lock_and_check_owners(
    transaction: &deadpool_postgres::Transaction<'_>,
    consumer: &str,
    topic: &str,
    claims: &[(i32, i64)],
) -> Result<HashMap<i32, i64>, AttemptError> {
    let partitions: Vec<i32> = claims.iter().map(|(partition, _)| *partition).collect();
    let statement = transaction
        .prepare_cached(
            "SELECT partition, next_offset, owner_epoch FROM projection_offsets \
             WHERE consumer = $1 AND topic = $2 AND partition = ANY($3) \
             ORDER BY partition FOR UPDATE",
        )
        .await?;
    let mut stored: HashMap<i32, (i64, i64)> = HashMap::with_capacity(claims.len());
    for row in transaction
        .query(&statement, &[&consumer, &topic, &partitions])
        .await?
    {
        stored.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    let mut next_offsets = HashMap::with_capacity(claims.len());
    for &(partition, claim_epoch) in claims {
        match stored.get(&partition) {
            Some(&(next_offset, owner_epoch)) if owner_epoch == claim_epoch => {
                next_offsets.insert(partition, next_offset);
            }
            other => {
                return Err(StoreError::Fenced {
                    consumer: consumer.to_owned(),
                    topic: topic.to_owned(),
                    partition,
                    claimed_epoch: claim_epoch,
                    current_epoch_opt: other.map(|(_, owner_epoch)| *owner_epoch),
                }
                .into());
            }
        }
    }
    Ok(next_offsets)
}

/// Moves `next_offset` forward for each (partition, next offset) inside the batch transaction.
pub(crate) async fn advance(
    transaction: &deadpool_postgres::Transaction<'_>,
    consumer: &str,
    topic: &str,
    next_offsets: &[(i32, i64)],
) -> Result<(), tokio_postgres::Error> {
    let partitions: Vec<i32> = next_offsets
        .iter()
        .map(|(partition, _)| *partition)
        .collect();
    let offsets: Vec<i64> = next_offsets.iter().map(|(_, offset)| *offset).collect();
    let statement = transaction
        .prepare_cached(
            "UPDATE projection_offsets SET next_offset = u.next_offset \
             FROM unnest($3::int4[], $4::int8[]) AS u(partition, next_offset) \
             WHERE consumer = $1 AND topic = $2 AND projection_offsets.partition = u.partition",
        )
        .await?;
    transaction
        .execute(&statement, &[&consumer, &topic, &partitions, &offsets])
        .await?;
    Ok(())
}
