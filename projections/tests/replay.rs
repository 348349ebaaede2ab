//! I4 and I6 against a real Postgres: replays are no-ops, stale owners are fenced, a rebuild from
//! the same events has the same state hash and can be swapped in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use events::DecisionEvent;
use projections::{PartitionBatch, ProjectionStore, StoreError};

async fn apply_in_chunks(
    store: &ProjectionStore,
    partition: i32,
    events: &[(i64, DecisionEvent)],
    chunk: usize,
) {
    let claim = store
        .claim_partition(CONSUMER, DECISIONS, partition)
        .await
        .unwrap();
    for batch in events.chunks(chunk) {
        store
            .apply_batch(CONSUMER, DECISIONS, partition, claim.owner_epoch, batch)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn replaying_batches_changes_nothing() {
    let events = stream(0, 40);
    let one_pass = TestSchema::new();
    let one_store = one_pass.store().await;
    apply_in_chunks(&one_store, 0, &events, events.len()).await;
    let expected = one_store.state_hash().await.unwrap();

    // The same batch twice: the second apply answers nothing and changes nothing.
    let claim = one_store
        .claim_partition(CONSUMER, DECISIONS, 0)
        .await
        .unwrap();
    let again = one_store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &events)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(one_store.state_hash().await.unwrap(), expected);

    // Overlapping batches, as after a crash between commit and the consumer's position update.
    let overlapping = TestSchema::new();
    let store = overlapping.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    for (start, end) in [(0, 10), (5, 20), (0, 25), (18, events.len())] {
        store
            .apply_batch(
                CONSUMER,
                DECISIONS,
                0,
                claim.owner_epoch,
                &events[start..end],
            )
            .await
            .unwrap();
    }
    assert_eq!(store.state_hash().await.unwrap(), expected);

    // One event per transaction, too.
    let singles = TestSchema::new();
    let store = singles.store().await;
    apply_in_chunks(&store, 0, &events, 1).await;
    assert_eq!(store.state_hash().await.unwrap(), expected);
    assert!(store.verify_audit_chain(0).await.unwrap().is_intact());
}

#[tokio::test]
async fn batches_out_of_order_are_refused() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let mut events = numbered(0, vec![malformed(1, "a"), malformed(2, "a")]);
    events.swap(0, 1);
    let error = store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &events)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_stale_owner_is_fenced_and_changes_nothing() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let events = stream(0, 10);

    // Never claimed: fenced.
    let error = store
        .apply_batch(CONSUMER, DECISIONS, 0, 1, &events[..2])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        StoreError::Fenced {
            current_epoch_opt: None,
            ..
        }
    ));

    let old = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    store
        .apply_batch(CONSUMER, DECISIONS, 0, old.owner_epoch, &events[..4])
        .await
        .unwrap();
    let before = store.state_hash().await.unwrap();

    // A rebalance: a new owner claims; the old one's next batch must not land.
    let new = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    assert_eq!(new.next_offset, 4);
    assert_eq!(new.owner_epoch, old.owner_epoch + 1);
    let error = store
        .apply_batch(CONSUMER, DECISIONS, 0, old.owner_epoch, &events[4..])
        .await
        .unwrap_err();
    match &error {
        StoreError::Fenced {
            claimed_epoch,
            current_epoch_opt,
            ..
        } => {
            assert_eq!(*claimed_epoch, old.owner_epoch);
            assert_eq!(*current_epoch_opt, Some(new.owner_epoch));
        }
        other => panic!("expected fenced, got {other}"),
    }
    assert!(!error.is_retryable());
    assert_eq!(store.state_hash().await.unwrap(), before);
    let offsets = store
        .partition_offsets(CONSUMER, DECISIONS, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets.next_offset, 4);

    // The new owner continues where the last commit ended.
    let applied = store
        .apply_batch(CONSUMER, DECISIONS, 0, new.owner_epoch, &events[4..])
        .await
        .unwrap();
    assert_eq!(applied.len(), events.len() - 4);
}

#[tokio::test]
async fn a_rebuild_has_the_same_hash_and_swaps_in() {
    let live = TestSchema::new();
    let live_store = live.store().await;
    let p0 = stream(0, 30);
    let p1 = stream(1, 25);
    apply_in_chunks(&live_store, 0, &p0, 7).await;
    apply_in_chunks(&live_store, 1, &p1[..20], 3).await;
    let live_hash = live_store.state_hash().await.unwrap();

    // Rebuild by replay from offset 0 into <live>_rebuild, in different batch sizes.
    let rebuild_name = ProjectionStore::rebuild_schema_name(&live.name);
    let rebuild_store = ProjectionStore::connect(&live.url, &rebuild_name)
        .await
        .unwrap();
    apply_in_chunks(&rebuild_store, 1, &p1[..20], 100).await;
    apply_in_chunks(&rebuild_store, 0, &p0, 1).await;
    assert_eq!(rebuild_store.state_hash().await.unwrap(), live_hash, "I6");

    // Live moves on while the rebuild is being checked.
    let stale_claim = live_store
        .claim_partition(CONSUMER, DECISIONS, 1)
        .await
        .unwrap();
    live_store
        .apply_batch(CONSUMER, DECISIONS, 1, stale_claim.owner_epoch, &p1[20..])
        .await
        .unwrap();
    let live_hash_ahead = live_store.state_hash().await.unwrap();

    let report = ProjectionStore::swap_in(&live.url, &rebuild_name, &live.name)
        .await
        .unwrap();
    assert_eq!(report.live_schema, live.name);
    let old = report.old_schema_opt.clone().unwrap();
    assert!(old.starts_with(&format!("{}_old_", live.name)));

    // The old schema is kept for inspection, intact.
    let old_store = ProjectionStore::connect(&live.url, &old).await.unwrap();
    assert_eq!(old_store.state_hash().await.unwrap(), live_hash_ahead);

    // The swapped-in schema is the rebuild (it has not seen p1[20..] yet).
    let new_live = ProjectionStore::connect(&live.url, &live.name)
        .await
        .unwrap();
    assert_eq!(new_live.state_hash().await.unwrap(), live_hash);

    // The pre-swap owner is fenced (through its old store object, too).
    let error = live_store
        .apply_batch(CONSUMER, DECISIONS, 1, stale_claim.owner_epoch, &p1[20..])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Fenced { .. }), "{error}");

    // Re-claiming seeks to the rebuild's offset; replaying catches up to the old live state.
    let claim = new_live
        .claim_partition(CONSUMER, DECISIONS, 1)
        .await
        .unwrap();
    assert_eq!(claim.next_offset, 20);
    new_live
        .apply_batch(CONSUMER, DECISIONS, 1, claim.owner_epoch, &p1[20..])
        .await
        .unwrap();
    assert_eq!(new_live.state_hash().await.unwrap(), live_hash_ahead);
    for partition in [0, 1] {
        assert!(
            new_live
                .verify_audit_chain(partition)
                .await
                .unwrap()
                .is_intact()
        );
    }

    // The store opened before the swap resolves the live name again.
    assert_eq!(live_store.state_hash().await.unwrap(), live_hash_ahead);

    ProjectionStore::drop_schema(&live.url, &old).await.unwrap();
    assert!(
        ProjectionStore::drop_schema(&live.url, "public")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn two_processes_migrating_at_once_both_succeed() {
    let schema = TestSchema::new();
    let (first, second) = tokio::join!(
        ProjectionStore::connect(&schema.url, &schema.name),
        ProjectionStore::connect(&schema.url, &schema.name),
    );
    first.unwrap();
    second.unwrap();
    let raw = schema.raw().await;
    let versions: Vec<i32> = raw
        .query(
            &format!(
                "SELECT version FROM \"{}\".schema_migrations ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = projections::migrations::MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn partitions_applied_in_one_transaction_end_like_separate_ones() {
    let streams: Vec<Vec<(i64, DecisionEvent)>> = (0..3).map(|p| stream(p, 30)).collect();
    let separate = TestSchema::new();
    let separate_store = separate.store().await;
    for (partition, events) in streams.iter().enumerate() {
        apply_in_chunks(&separate_store, partition as i32, events, 7).await;
    }

    let shared = TestSchema::new();
    let store = shared.store().await;
    let mut epochs = Vec::new();
    for partition in 0..3 {
        let claim = store
            .claim_partition(CONSUMER, DECISIONS, partition)
            .await
            .unwrap();
        epochs.push(claim.owner_epoch);
    }
    // Chunks of different sizes per partition in each transaction, and one overlap (a replay).
    for (start, end) in [(0, 5), (5, 12), (3, 20), (20, 31)] {
        let batches: Vec<PartitionBatch<'_>> = streams
            .iter()
            .enumerate()
            .map(|(partition, events)| PartitionBatch {
                partition: partition as i32,
                claim_epoch: epochs[partition],
                events: &events[start.min(events.len())..(end + partition).min(events.len())],
            })
            .collect();
        let answers = store
            .apply_batches(CONSUMER, DECISIONS, &batches)
            .await
            .unwrap();
        assert_eq!(answers.len(), 3, "one answer list per partition");
    }
    assert_eq!(
        store.state_hash().await.unwrap(),
        separate_store.state_hash().await.unwrap()
    );
    for partition in 0..3 {
        assert!(
            store
                .verify_audit_chain(partition)
                .await
                .unwrap()
                .is_intact()
        );
    }

    // One fenced partition rolls back the whole transaction.
    let before = store.state_hash().await.unwrap();
    let more = numbered(31, vec![malformed(100, "acme")]);
    let error = store
        .apply_batches(
            CONSUMER,
            DECISIONS,
            &[
                PartitionBatch {
                    partition: 0,
                    claim_epoch: epochs[0],
                    events: &more,
                },
                PartitionBatch {
                    partition: 1,
                    claim_epoch: epochs[1] + 1,
                    events: &more,
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Fenced { partition: 1, .. }),
        "{error}"
    );
    assert_eq!(store.state_hash().await.unwrap(), before);

    // The same partition twice in one transaction is refused.
    let twice = [PartitionBatch {
        partition: 2,
        claim_epoch: epochs[2],
        events: &more,
    }; 2];
    let error = store
        .apply_batches(CONSUMER, DECISIONS, &twice)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)), "{error}");
}
