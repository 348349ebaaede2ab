//! Dedup rules against a real Postgres: first write wins, duplicates, conflicts, expiry, I2, I7.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use projections::{DedupResult, OutcomeClass, StoreOptions, TenantTtl};
use serde_json::json;

#[tokio::test]
async fn first_write_wins_then_duplicate_then_conflict() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    assert_eq!(claim.next_offset, 0);

    let first = verified(10, "acme", "pcs-1", 1, outcome(true, true));
    let batch = numbered(
        0,
        vec![
            first.clone(),
            accepted(11, "acme", "pcs-1", 1), // same digest: duplicate
            accepted(12, "acme", "pcs-1", 2), // different digest: conflict
        ],
    );
    let applied = store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &batch)
        .await
        .unwrap();
    assert_eq!(applied.len(), 3);

    assert_eq!(applied[0].dedup_result, DedupResult::First);
    assert_eq!(applied[0].outcome_class, OutcomeClass::Escalated);
    assert!(!applied[0].replayed);
    let first_body = applied[0].body.clone();
    assert_eq!(first_body["escalated"], json!(true));

    assert_eq!(applied[1].dedup_result, DedupResult::Duplicate);
    assert_eq!(
        applied[1].outcome_class,
        OutcomeClass::Escalated,
        "duplicate gets the stored first outcome"
    );
    assert_eq!(
        applied[1].body, first_body,
        "duplicate gets the stored body"
    );
    assert!(applied[1].replayed);

    assert_eq!(applied[2].dedup_result, DedupResult::Conflict);
    assert_eq!(applied[2].outcome_class, OutcomeClass::Escalated);
    assert_eq!(
        applied[2].body, first_body,
        "conflict carries the first outcome"
    );
    assert!(!applied[2].replayed);

    // A later batch sees the committed row the same way.
    let later = numbered(3, vec![accepted(13, "acme", "pcs-1", 3)]);
    let applied = store
        .apply_batch(CONSUMER, DECISIONS, 0, claim.owner_epoch, &later)
        .await
        .unwrap();
    assert_eq!(applied[0].dedup_result, DedupResult::Conflict);

    let stored = store.lookup("acme", "pcs-1").await.unwrap().unwrap();
    assert_eq!(stored.signed_digest, [1; 32], "never overwritten (I3)");
    assert_eq!(stored.outcome_class, OutcomeClass::Escalated);
    assert_eq!(stored.body, first_body);
    assert_eq!(stored.first_source, first.source);
    assert_eq!(stored.tier, "hot");
    assert_eq!(
        stored.expires_at_ms,
        first.received_at_ms + projections::DEFAULT_DEDUP_TTL_MS
    );

    // Every record is audited with the answer it got.
    let offsets = store
        .partition_offsets(CONSUMER, DECISIONS, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets.next_offset, 4);
    let answer = store
        .result_for_source(&source(0, 12))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.dedup_result, DedupResult::Conflict);
    assert_eq!(answer.outcome_class, OutcomeClass::Escalated, "the first's");
    let answer = store
        .result_for_source(&source(0, 11))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.replayed);
    assert!(
        store
            .result_for_source(&source(0, 99))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn expired_row_is_replaced_as_a_new_first() {
    let schema = TestSchema::new();
    let mut ttl = TenantTtl::uniform(1_000_000);
    ttl.per_tenant_ms.insert("short".into(), 100);
    let store = schema
        .store_with(StoreOptions {
            dedup_ttl: ttl,
            ..StoreOptions::default()
        })
        .await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();

    let mut old = accepted(1, "short", "p", 1);
    old.received_at_ms = T0;
    let mut within = accepted(2, "short", "p", 2);
    within.received_at_ms = T0 + 100; // expiry is inclusive
    let mut after = accepted(3, "short", "p", 3);
    after.received_at_ms = T0 + 101;
    let mut same_time_other_tenant = accepted(4, "long", "p", 1);
    same_time_other_tenant.received_at_ms = T0;
    let mut long_later = accepted(5, "long", "p", 2);
    long_later.received_at_ms = T0 + 101;

    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(
                0,
                vec![
                    old,
                    within,
                    after.clone(),
                    same_time_other_tenant,
                    long_later,
                ],
            ),
        )
        .await
        .unwrap();
    let results: Vec<_> = applied.iter().map(|a| a.dedup_result).collect();
    assert_eq!(
        results,
        vec![
            DedupResult::First,
            DedupResult::Conflict,
            DedupResult::First,
            DedupResult::First,
            DedupResult::Conflict,
        ]
    );
    let stored = store.lookup("short", "p").await.unwrap().unwrap();
    assert_eq!(stored.signed_digest, [3; 32]);
    assert_eq!(stored.first_source, after.source);
    assert_eq!(stored.expires_at_ms, T0 + 101 + 100);

    // Across batches too: the committed row expires and is replaced by an UPDATE.
    let mut much_later = accepted(6, "short", "p", 4);
    much_later.received_at_ms = T0 + 10_000;
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(5, vec![much_later]),
        )
        .await
        .unwrap();
    assert_eq!(applied[0].dedup_result, DedupResult::First);
    let stored = store.lookup("short", "p").await.unwrap().unwrap();
    assert_eq!(stored.signed_digest, [4; 32]);
}

#[tokio::test]
async fn rejections_never_create_dedup_rows() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(
                0,
                vec![
                    malformed(1, "acme"),
                    bad_signature(2, "acme", "p", 1),
                    refused(3, "nobody", "p"),
                ],
            ),
        )
        .await
        .unwrap();
    let classes: Vec<OutcomeClass> = applied.iter().map(|a| a.outcome_class).collect();
    assert_eq!(
        classes,
        vec![
            OutcomeClass::Malformed,
            OutcomeClass::SignatureRejected,
            OutcomeClass::TenantRefused
        ]
    );
    for answer in &applied {
        assert_eq!(answer.dedup_result, DedupResult::NotDeduplicated);
        assert!(!answer.replayed);
    }
    assert_eq!(applied[0].body["error"], json!("malformed"));
    assert_eq!(applied[1].body["error"], json!("signature_invalid"));
    assert_eq!(applied[1].body["message"], json!("signature mismatch"));
    assert_eq!(applied[2].body["error"], json!("tenant_refused"));
    assert!(store.lookup("acme", "p").await.unwrap().is_none());
    assert!(store.lookup("nobody", "p").await.unwrap().is_none());

    // A correctly signed record afterwards is a plain first (the 401 left no trace in dedup).
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(3, vec![accepted(4, "acme", "p", 2)]),
        )
        .await
        .unwrap();
    assert_eq!(applied[0].dedup_result, DedupResult::First);

    // But every record is in the audit log (rejections included).
    let raw = schema.raw().await;
    let count: i64 = raw
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".audit_log", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4);
    let dedup_rows: i64 = raw
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".dedup", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dedup_rows, 1);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(
                0,
                vec![
                    verified(1, "acme", "same", 1, outcome(true, false)),
                    verified(2, "globex", "same", 2, outcome(false, true)),
                ],
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied[0].dedup_result, DedupResult::First);
    assert_eq!(
        applied[1].dedup_result,
        DedupResult::First,
        "no cross-tenant conflict"
    );
    let acme = store.lookup("acme", "same").await.unwrap().unwrap();
    let globex = store.lookup("globex", "same").await.unwrap().unwrap();
    assert_eq!(acme.signed_digest, [1; 32]);
    assert_eq!(acme.outcome_class, OutcomeClass::Accepted);
    assert_eq!(globex.signed_digest, [2; 32]);
    assert_eq!(globex.outcome_class, OutcomeClass::Rejected);
    assert!(store.lookup("initech", "same").await.unwrap().is_none());
}

#[tokio::test]
async fn a_submission_decided_twice_is_audited_once() {
    // At-least-once shards: the same source coordinates arrive in two decision events.
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let event = accepted(7, "acme", "p", 1);
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(0, vec![event.clone(), event.clone()]),
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0], applied[1], "the repeat gets the stored answer");
    assert_eq!(applied[0].dedup_result, DedupResult::First);

    // In a later batch too, and not as a duplicate of itself.
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(2, vec![event]),
        )
        .await
        .unwrap();
    assert_eq!(applied[0].dedup_result, DedupResult::First);
    assert_eq!(applied[0].outcome_class, OutcomeClass::Accepted);
    let report = store.verify_audit_chain(0).await.unwrap();
    assert_eq!(report.entries, 1);
    assert!(report.is_intact());
}

#[tokio::test]
async fn nul_characters_do_not_wedge_the_projector() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let mut event = malformed(1, "acme");
    event.verdict = events::Verdict::Malformed {
        error: "`a\0b` is required".into(),
    };
    let weird = accepted(2, "acme", "p\0q", 1);
    let applied = store
        .apply_batch(
            CONSUMER,
            DECISIONS,
            0,
            claim.owner_epoch,
            &numbered(0, vec![event, weird]),
        )
        .await
        .unwrap();
    assert_eq!(applied[0].outcome_class, OutcomeClass::Malformed);
    assert_eq!(applied[1].pcs_id_opt.as_deref(), Some("p\u{FFFD}q"));
    assert!(store.verify_audit_chain(0).await.unwrap().is_intact());
}

#[tokio::test]
async fn two_partitions_racing_on_the_same_keys_agree_on_one_first() {
    // Keys are normally co-partitioned, but records produced without a key (or mirrored) can put
    // one (tenant, pcs_id) on two decisions partitions; their projectors must not both win.
    let schema = TestSchema::new();
    let store = schema.store().await;
    let batch = |partition: i32, digest: u8| {
        numbered(
            0,
            (0..200)
                .map(|i| {
                    let mut event = accepted(i, "acme", &format!("k{i}"), digest);
                    event.source = source(partition, i);
                    event
                })
                .collect(),
        )
    };
    let (left, right) = (batch(0, 1), batch(1, 2));
    let claim_left = store.claim_partition(CONSUMER, DECISIONS, 0).await.unwrap();
    let claim_right = store.claim_partition(CONSUMER, DECISIONS, 1).await.unwrap();
    let (left_applied, right_applied) = tokio::join!(
        store.apply_batch(CONSUMER, DECISIONS, 0, claim_left.owner_epoch, &left),
        store.apply_batch(CONSUMER, DECISIONS, 1, claim_right.owner_epoch, &right),
    );
    let (left_applied, right_applied) = (left_applied.unwrap(), right_applied.unwrap());
    for (l, r) in left_applied.iter().zip(&right_applied) {
        let results = [l.dedup_result, r.dedup_result];
        assert!(
            results.contains(&DedupResult::First) && results.contains(&DedupResult::Conflict),
            "{results:?}"
        );
        let stored = store
            .lookup("acme", l.pcs_id_opt.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        let winner = if l.dedup_result == DedupResult::First {
            l
        } else {
            r
        };
        assert_eq!(Some(stored.signed_digest), winner.signed_digest_opt);
    }
}
