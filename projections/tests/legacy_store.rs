//! A store written by the build before outcome codes (commit 9c3f5cc, which stored HTTP statuses)
//! migrates to outcome codes and keeps every hash: the state hash and both audit chain heads
//! below were printed by that build for the same events, and `fixtures/v1_store.json` holds the
//! rows it wrote (`json_agg` of each table).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use projections::migrations::migrate_up_to;
use projections::{DedupResult, OutcomeClass, ProjectionStore};

/// State hash the old build printed after applying [`stream`] of partitions 0 and 1.
const OLD_STATE_HASH: &str = "219a4e62cc5284edc370be9c6cfa97c1150916d04826b33e9aa03d4e083093e0";
/// Audit chain heads the old build printed: (partition, entries, head hash).
const OLD_HEADS: [(i32, u64, &str); 2] = [
    (
        0,
        40,
        "cb84900b3e66e82a49bb4fc5a598602784ba707efd5d35845a295c81a41bfc18",
    ),
    (
        1,
        25,
        "3874f11824041505a5a4e1c19e7c14ef396b400d266c83fb2861e4e34b212415",
    ),
];

const FIXTURE: &str = include_str!("fixtures/v1_store.json");

async fn apply_streams(store: &ProjectionStore) {
    for (partition, events) in [(0, stream(0, 40)), (1, stream(1, 25))] {
        let claim = store
            .claim_partition(CONSUMER, DECISIONS, partition)
            .await
            .unwrap();
        for batch in events.chunks(7) {
            store
                .apply_batch(CONSUMER, DECISIONS, partition, claim.owner_epoch, batch)
                .await
                .unwrap();
        }
    }
}

async fn assert_old_hashes(store: &ProjectionStore) {
    assert_eq!(store.state_hash().await.unwrap(), OLD_STATE_HASH);
    for (partition, entries, head) in OLD_HEADS {
        let report = store.verify_audit_chain(partition).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, entries);
        assert_eq!(hex::encode(report.head_hash), head);
    }
}

#[tokio::test]
async fn replaying_the_same_events_gives_the_old_hashes() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    apply_streams(&store).await;
    assert_old_hashes(&store).await;
}

#[tokio::test]
async fn rows_written_by_the_old_build_migrate_and_keep_their_hashes() {
    let schema = TestSchema::new();
    let mut raw = schema.raw().await;
    // The schema as the old build left it: migrations 1 and 2, its rows.
    assert_eq!(
        migrate_up_to(&mut raw, &schema.name, 2).await.unwrap(),
        vec![1, 2]
    );
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    for table in ["projection_offsets", "dedup", "audit_log"] {
        let rows = fixture[table].to_string();
        raw.execute(
            &format!(
                "INSERT INTO \"{0}\".{table} SELECT * FROM json_populate_recordset(NULL::\"{0}\".{table}, $1::text::json)",
                schema.name
            ),
            &[&rows],
        )
        .await
        .unwrap();
    }

    // The current build migrates it (0003) on connect.
    let store = schema.store().await;
    assert_old_hashes(&store).await;

    // The statuses became outcome codes, 202 split by the stored outcome.
    let stored = store.lookup("acme", "pcs-0-2").await.unwrap().unwrap();
    assert_eq!(stored.outcome_class, OutcomeClass::Accepted);
    let mut seen = std::collections::HashSet::new();
    for partition in [0, 1] {
        for entry in store.audit_entries(partition, 0, 1_000).await.unwrap() {
            seen.insert((entry.outcome_class, entry.dedup_result));
        }
    }
    for expected in [
        (OutcomeClass::Accepted, DedupResult::First),
        (OutcomeClass::Rejected, DedupResult::First),
        (OutcomeClass::Escalated, DedupResult::First),
        (OutcomeClass::Malformed, DedupResult::NotDeduplicated),
        (
            OutcomeClass::SignatureRejected,
            DedupResult::NotDeduplicated,
        ),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }
    assert!(
        seen.iter().any(|(_, d)| *d == DedupResult::Conflict),
        "{seen:?}"
    );

    // The migrated store keeps folding: the same events again are replays and change nothing.
    apply_streams(&store).await;
    assert_old_hashes(&store).await;
}
