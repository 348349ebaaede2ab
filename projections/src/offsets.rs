//! `projection_offsets`: the next decisions offset to apply per (consumer, topic, partition), and
//! the owner epoch that fences a stale owner after a rebalance.

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

/// Locks the offsets row for the rest of the transaction and checks the caller still owns it.
/// Returns the stored `next_offset`.
pub(crate) async fn lock_and_check_owner(
    transaction: &deadpool_postgres::Transaction<'_>,
    consumer: &str,
    topic: &str,
    partition: i32,
    claim_epoch: i64,
) -> Result<i64, AttemptError> {
    let statement = transaction
        .prepare_cached(
            "SELECT next_offset, owner_epoch FROM projection_offsets \
             WHERE consumer = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
        )
        .await?;
    let row_opt = transaction
        .query_opt(&statement, &[&consumer, &topic, &partition])
        .await?;
    let fenced = |current_epoch_opt| StoreError::Fenced {
        consumer: consumer.to_owned(),
        topic: topic.to_owned(),
        partition,
        claimed_epoch: claim_epoch,
        current_epoch_opt,
    };
    let Some(row) = row_opt else {
        return Err(fenced(None).into());
    };
    let next_offset: i64 = row.try_get(0)?;
    let owner_epoch: i64 = row.try_get(1)?;
    if owner_epoch != claim_epoch {
        return Err(fenced(Some(owner_epoch)).into());
    }
    Ok(next_offset)
}

/// Moves `next_offset` forward inside the batch transaction.
pub(crate) async fn advance(
    transaction: &deadpool_postgres::Transaction<'_>,
    consumer: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> Result<(), tokio_postgres::Error> {
    let statement = transaction
        .prepare_cached(
            "UPDATE projection_offsets SET next_offset = $4 \
             WHERE consumer = $1 AND topic = $2 AND partition = $3",
        )
        .await?;
    transaction
        .execute(&statement, &[&consumer, &topic, &partition, &next_offset])
        .await?;
    Ok(())
}
