//! I8 against a real Postgres: the audit log refuses UPDATE, DELETE and TRUNCATE; its hash chain
//! verifies and detects tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use projections::{ChainBreakKind, GENESIS_HASH};

async fn filled(schema: &TestSchema) -> projections::ProjectionStore {
    let store = schema.store().await;
    let claim = store.claim_partition(CONSUMER, DECISIONS, 2).await.unwrap();
    let events = numbered(
        0,
        vec![
            accepted(1, "acme", "a", 1),
            malformed(2, "acme"),
            accepted(3, "acme", "a", 2),
            bad_signature(4, "acme", "b", 1),
            accepted(5, "acme", "a", 1),
        ],
    );
    store
        .apply_batch(CONSUMER, DECISIONS, 2, claim.owner_epoch, &events[..2])
        .await
        .unwrap();
    store
        .apply_batch(CONSUMER, DECISIONS, 2, claim.owner_epoch, &events[2..])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn the_database_refuses_to_change_the_audit_log() {
    let schema = TestSchema::new();
    let _store = filled(&schema).await;
    let raw = schema.raw().await;
    let table = format!("\"{}\".audit_log", schema.name);
    for statement in [
        format!("UPDATE {table} SET outcome_code = 'accepted'"),
        format!("DELETE FROM {table} WHERE seq = 0"),
        format!("TRUNCATE {table}"),
    ] {
        let error = raw.batch_execute(&statement).await.unwrap_err();
        let message = error.as_db_error().unwrap().message().to_owned();
        assert!(
            message.contains("audit_log is append-only (I8)"),
            "{statement}: {message}"
        );
    }
    let count: i64 = raw
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5);
}

#[tokio::test]
async fn the_chain_verifies_and_detects_tampering() {
    let schema = TestSchema::new();
    let store = filled(&schema).await;
    assert_eq!(store.audit_partitions().await.unwrap(), vec![2]);
    let report = store.verify_audit_chain(2).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.entries, 5);
    assert_eq!(report.last_seq_opt, Some(4));

    let entries = store.audit_entries(2, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].entry_hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert_eq!(report.head_hash, entries[4].entry_hash);
    // Batches append in decision order, chained across transactions.
    let offsets: Vec<i64> = entries.iter().map(|e| e.decisions_offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    // An empty partition is trivially intact.
    let empty = store.verify_audit_chain(9).await.unwrap();
    assert!(empty.is_intact());
    assert_eq!(empty.entries, 0);

    // Tamper as a superuser who disables the trigger: turn the conflict at seq 2 into a first.
    let raw = schema.raw().await;
    let table = format!("\"{}\".audit_log", schema.name);
    raw.batch_execute(&format!(
        "ALTER TABLE {table} DISABLE TRIGGER USER; \
         UPDATE {table} SET dedup_result = 'first' WHERE partition = 2 AND seq = 2; \
         ALTER TABLE {table} ENABLE TRIGGER USER;"
    ))
    .await
    .unwrap();
    let report = store.verify_audit_chain(2).await.unwrap();
    let broken = report.break_opt.unwrap();
    assert_eq!(broken.seq, 2);
    assert_eq!(broken.kind, ChainBreakKind::EntryHashMismatch);

    // Recomputing that entry's hash does not help: the next link breaks instead.
    let mut forged = store.audit_entries(2, 2, 1).await.unwrap().remove(0);
    forged.entry_hash = forged.compute_hash();
    raw.batch_execute(&format!(
        "ALTER TABLE {table} DISABLE TRIGGER USER; \
         UPDATE {table} SET entry_hash = '\\x{}' WHERE partition = 2 AND seq = 2; \
         ALTER TABLE {table} ENABLE TRIGGER USER;",
        hex::encode(forged.entry_hash)
    ))
    .await
    .unwrap();
    let broken = store
        .verify_audit_chain(2)
        .await
        .unwrap()
        .break_opt
        .unwrap();
    assert_eq!(broken.seq, 3);
    assert_eq!(broken.kind, ChainBreakKind::PrevHashMismatch);

    // Deleting an entry leaves a gap.
    raw.batch_execute(&format!(
        "ALTER TABLE {table} DISABLE TRIGGER USER; \
         DELETE FROM {table} WHERE partition = 2 AND seq = 0; \
         ALTER TABLE {table} ENABLE TRIGGER USER;"
    ))
    .await
    .unwrap();
    let broken = store
        .verify_audit_chain(2)
        .await
        .unwrap()
        .break_opt
        .unwrap();
    assert_eq!(broken.seq, 1);
    assert_eq!(broken.kind, ChainBreakKind::SeqGap { expected: 0 });
}
