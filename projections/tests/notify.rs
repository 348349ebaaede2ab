//! Commit notifications against a real Postgres: a listener hears about every applied source, only
//! once it is visible, and only for its own schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_listener_hears_each_commit_after_it_is_visible() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let mut listener = store.listen_decided().await.unwrap();
    assert_eq!(listener.channel(), format!("{}_decided", schema.name));

    // Another schema's commits are not ours.
    let other = TestSchema::new();
    let other_store = other.store().await;
    let claim = other_store
        .claim_partition(CONSUMER, DECISIONS, 0)
        .await
        .unwrap();
    other_store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(0, vec![malformed(500, "acme")]),
        )
        .await
        .unwrap();

    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(0, vec![accepted(1, "acme", "p", 1), malformed(2, "acme")]),
        )
        .await
        .unwrap();
    for expected in [source(0, 1), source(0, 2)] {
        let heard = tokio::time::timeout(DEADLINE, listener.next())
            .await
            .expect("notification within the deadline")
            .expect("listener still connected");
        assert_eq!(heard, expected);
        // Delivered after commit: the answer is readable by anyone who hears it.
        assert!(store.result_for_source(&heard).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_large_batch_is_announced_in_chunks() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let mut listener = store.listen_decided().await.unwrap();
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let events = numbered(
        0,
        (0..1_500)
            .map(|i| accepted(1_000_000_000 + i, "acme", &format!("p{i}"), 1))
            .collect(),
    );
    let applied = store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &events)
        .await
        .unwrap();
    assert_eq!(applied.len(), 1_500);
    let mut expected: HashSet<_> = events.iter().map(|(_, e)| e.source.clone()).collect();
    while !expected.is_empty() {
        let heard = tokio::time::timeout(DEADLINE, listener.next())
            .await
            .expect("every notification within the deadline")
            .expect("listener still connected");
        assert!(expected.remove(&heard), "unexpected or repeated {heard:?}");
    }
    // A replay of the same batch commits nothing and announces nothing new.
    store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &events)
        .await
        .unwrap();
    store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(1_500, vec![malformed(7, "acme")]),
        )
        .await
        .unwrap();
    let heard = tokio::time::timeout(DEADLINE, listener.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(heard, source(0, 7), "the replay announced nothing");
}
