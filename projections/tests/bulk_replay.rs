//! The replay's rebuild (merge, in-memory fold, binary COPY under a bulk load) against
//! `apply_batch` on a real Postgres: for random decision streams over several partitions, both
//! leave the same state hash, the same dedup columns the hash leaves out, the same offsets and an
//! intact audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::*;
use events::{DecisionEvent, SubmissionSource, Verdict};
use projections::{
    PartitionBatch, PartitionMerge, ProjectionStore, ReplayFold, StoreOptions, TenantTtl,
};
use proptest::prelude::*;

/// Decisions partitions of every stream (each is claimed, even without events).
const PARTITIONS: i32 = 4;

/// TTLs short enough that the generated time steps expire rows.
fn options() -> StoreOptions {
    StoreOptions {
        pool_size: 4,
        dedup_ttl: TenantTtl {
            default_ms: 300,
            per_tenant_ms: [("globex".to_owned(), 120)].into_iter().collect(),
        },
        ..StoreOptions::default()
    }
}

/// One generated decision.
#[derive(Debug, Clone)]
struct Spec {
    partition: i32,
    /// 0 malformed, 1 bad signature, 2 tenant refused, else verified.
    kind: u8,
    globex: bool,
    pcs: u8,
    digest: u8,
    accepted: bool,
    escalated: bool,
    /// Time since the previous decision: small (duplicates and conflicts) or past a TTL.
    step_ms: i64,
    /// `decided_at_ms - received_at_ms` (orders the partitions in the merge).
    lag_ms: i64,
    /// Replicated from region b (the cross-region rule applies to it).
    replica: bool,
    /// Decides an earlier submission again (same source coordinates).
    again_opt: Option<prop::sample::Index>,
    /// Leaves a hole in the partition's offsets.
    gap: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0..PARTITIONS, 0u8..12, any::<bool>(), 0u8..5, 1u8..4),
        (any::<bool>(), any::<bool>()),
        (prop_oneof![4 => 0i64..40, 1 => 100i64..400], 0i64..60),
        (
            prop::bool::weighted(0.2),
            prop::option::weighted(0.08, any::<prop::sample::Index>()),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (partition, kind, globex, pcs, digest),
                (accepted, escalated),
                (step_ms, lag_ms),
                (replica, again_opt, gap),
            )| Spec {
                partition,
                kind,
                globex,
                pcs,
                digest,
                accepted,
                escalated,
                step_ms,
                lag_ms,
                replica,
                again_opt,
                gap,
            },
        )
}

/// The events of each partition in offset order. With `shared_keys`, `pcs_id`s and repeated
/// sources cross partitions (outside I6's assumption: the merge order decides); without, each
/// key and source lives in one partition, as the topic key makes it.
fn build(specs: &[Spec], shared_keys: bool) -> BTreeMap<i32, Vec<(i64, DecisionEvent)>> {
    let mut partitions: BTreeMap<i32, Vec<(i64, DecisionEvent)>> = BTreeMap::new();
    let mut all: Vec<DecisionEvent> = Vec::new();
    let mut received_at_ms = T0;
    for (index, spec) in specs.iter().enumerate() {
        received_at_ms += spec.step_ms;
        let tenant = if spec.globex { "globex" } else { "acme" };
        let pcs_id = match (shared_keys, spec.pcs) {
            // A NUL is stored as U+FFFD, by COPY as by INSERT.
            (_, 4) => format!("pcs-{}-\0", spec.partition),
            (true, pcs) => format!("pcs-{pcs}"),
            (false, pcs) => format!("pcs-{}-{pcs}", spec.partition),
        };
        let source_offset = index as i64;
        let mut event = match spec.kind {
            0 => malformed(source_offset, tenant),
            1 => bad_signature(source_offset, tenant, &pcs_id, spec.digest),
            2 => refused(source_offset, tenant, &pcs_id),
            _ => verified(
                source_offset,
                tenant,
                &pcs_id,
                spec.digest,
                outcome(spec.accepted, spec.escalated),
            ),
        };
        event.source = source(spec.partition, source_offset);
        event.received_at_ms = received_at_ms;
        event.decided_at_ms = received_at_ms + spec.lag_ms;
        if spec.replica {
            event.submission_source = SubmissionSource::Replica {
                origin_region: "b".into(),
                origin_partition: spec.partition,
                origin_offset: source_offset,
                hops: 1,
            };
        }
        if let Verdict::Verified { outcome } = &mut event.verdict {
            outcome.recomputed_d_hat_opt = Some(0.1 * f64::from(spec.digest) + 1e-9);
        }
        let candidates: Vec<&DecisionEvent> = all
            .iter()
            .filter(|earlier| shared_keys || earlier.source.partition == spec.partition)
            .collect();
        if let Some(pick) = &spec.again_opt {
            if !candidates.is_empty() {
                // The shard decided that submission again, maybe differently.
                let earlier = candidates[pick.index(candidates.len())];
                event.source = earlier.source.clone();
            }
        }
        all.push(event.clone());
        let events = partitions.entry(spec.partition).or_default();
        let offset = events.last().map_or(0, |(last, _)| last + 1) + i64::from(spec.gap);
        events.push((offset, event));
    }
    partitions
}

/// The replay's order of every event: `(partition, offset, event)`.
fn merged(partitions: &BTreeMap<i32, Vec<(i64, DecisionEvent)>>) -> Vec<(i32, i64, DecisionEvent)> {
    let mut merge = PartitionMerge::new(partitions.keys().copied());
    for (partition, events) in partitions {
        for (offset, event) in events {
            merge.push(*partition, *offset, event.clone());
        }
        merge.close(*partition);
    }
    std::iter::from_fn(|| merge.pop()).collect()
}

async fn claim_all(store: &ProjectionStore) -> Vec<i64> {
    let mut epochs = Vec::new();
    for partition in 0..PARTITIONS {
        let claim = store
            .claim_partition(CONSUMER, DECISIONS, partition)
            .await
            .unwrap();
        epochs.push(claim.owner_epoch);
    }
    epochs
}

/// `flk replay`'s rebuild without Kafka: fold in merged order, COPY what the fold hands out in
/// chunks, delete the replaced dedup rows, build the keys.
async fn rebuild_by_copy(
    store: &ProjectionStore,
    partitions: &BTreeMap<i32, Vec<(i64, DecisionEvent)>>,
    chunk: usize,
) {
    claim_all(store).await;
    let bulk_load = store.begin_bulk_load().await.unwrap();
    let mut fold = ReplayFold::new(store.options().dedup_ttl.clone());
    let mut audit_copy = store.copy_audit().await.unwrap();
    let mut dedup_copy = store.copy_dedup().await.unwrap();
    let (mut entries, mut versions) = (Vec::new(), Vec::new());
    for (partition, offset, event) in merged(partitions) {
        let folded = fold.fold(partition, offset, event).unwrap();
        entries.extend(folded.audit_entry_opt);
        versions.extend(folded.dedup_row_opt);
        if entries.len() >= chunk {
            audit_copy.write(&mut entries).await.unwrap();
            entries.clear();
        }
        if versions.len() >= chunk {
            dedup_copy.write(&versions).await.unwrap();
            versions.clear();
        }
    }
    audit_copy.write(&mut entries).await.unwrap();
    dedup_copy.write(&versions).await.unwrap();
    assert_eq!(audit_copy.finish().await.unwrap(), fold.audit_entry_count());
    assert_eq!(
        dedup_copy.finish().await.unwrap(),
        fold.dedup_version_count()
    );
    let deleted = store.delete_replaced_dedup_rows(&fold).await.unwrap();
    assert_eq!(deleted, fold.dedup_version_count() - fold.dedup_row_count());
    store
        .set_next_offsets(CONSUMER, DECISIONS, &fold.next_offsets())
        .await
        .unwrap();
    store.finish_bulk_load(bulk_load).await.unwrap();
}

/// What two rebuilds must agree on: the state hash, the dedup columns it leaves out, the
/// offsets, and the audit chain of every partition (verified).
async fn state(schema: &TestSchema, store: &ProjectionStore) -> (String, Vec<String>) {
    let raw = schema.raw().await;
    let mut rows: Vec<String> = raw
        .query(
            &format!(
                "SELECT format('dedup %s %s %s %s %s', tenant, pcs_id, tier, \
                     coalesce(origin_region, '<null>'), coalesce(promoted_at_ms::text, '<null>')) \
                 FROM \"{0}\".dedup \
                 UNION ALL SELECT format('offsets %s %s %s %s %s', consumer, topic, partition, \
                     next_offset, owner_epoch) FROM \"{0}\".projection_offsets \
                 ORDER BY 1",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for partition in store.audit_partitions().await.unwrap() {
        let report = store.verify_audit_chain(partition).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        rows.push(format!("chain {partition} {}", report.entries));
    }
    (store.state_hash().await.unwrap(), rows)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Chunk sizes, used in turn.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..12, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        max_shrink_iters: 40,
        ..ProptestConfig::default()
    })]

    /// Keys and sources shared across partitions: `apply_batch` in the replay's order, in
    /// batches of random sizes, gives what the fold and COPY give.
    #[test]
    fn the_copied_rebuild_equals_apply_batch_in_the_same_order(
        specs in prop::collection::vec(spec(), 0..120),
        sizes in chunks(),
        copy_chunk in 1usize..50,
    ) {
        runtime().block_on(async {
            let partitions = build(&specs, true);
            let applied = TestSchema::new();
            let applied_store = applied.store_with(options()).await;
            let epochs = claim_all(&applied_store).await;
            let order = merged(&partitions);
            let mut size = sizes.iter().cycle();
            let mut start = 0;
            while start < order.len() {
                // A batch holds one partition: the run of it that comes next, cut to a size.
                let partition = order[start].0;
                let run = order[start..].iter().take_while(|(p, _, _)| *p == partition).count();
                let take = run.min(*size.next().unwrap());
                let batch: Vec<(i64, DecisionEvent)> = order[start..start + take]
                    .iter()
                    .map(|(_, offset, event)| (*offset, event.clone()))
                    .collect();
                applied_store
                    .apply_batch(CONSUMER, DECISIONS, partition, epochs[partition as usize], &batch)
                    .await
                    .unwrap();
                start += take;
            }

            let copied = TestSchema::new();
            let copied_store = copied.store_with(options()).await;
            rebuild_by_copy(&copied_store, &partitions, copy_chunk).await;
            assert_eq!(state(&copied, &copied_store).await, state(&applied, &applied_store).await);
        });
    }

    /// Keys and sources in one partition each (I6): the live projector's interleaving, here
    /// random transactions over several partitions, does not matter.
    #[test]
    fn with_keys_in_one_partition_any_interleaving_gives_the_copied_rebuild(
        specs in prop::collection::vec(spec(), 0..120),
        sizes in chunks(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..8),
    ) {
        runtime().block_on(async {
            let partitions = build(&specs, false);
            let applied = TestSchema::new();
            let applied_store = applied.store_with(options()).await;
            let epochs = claim_all(&applied_store).await;
            let mut next: BTreeMap<i32, usize> = partitions.keys().map(|p| (*p, 0)).collect();
            let mut size = sizes.iter().cycle();
            let mut pick = picks.iter().cycle();
            loop {
                let pending: Vec<i32> = next
                    .iter()
                    .filter(|(p, start)| **start < partitions[p].len())
                    .map(|(p, _)| *p)
                    .collect();
                if pending.is_empty() {
                    break;
                }
                // One transaction: a rotation of the pending partitions, a chunk of each.
                let first = pick.next().unwrap().index(pending.len());
                let mut batches = Vec::new();
                for partition in pending[first..].iter().chain(&pending[..first]) {
                    let start = next[partition];
                    let end = (start + *size.next().unwrap()).min(partitions[partition].len());
                    batches.push(PartitionBatch {
                        partition: *partition,
                        claim_epoch: epochs[*partition as usize],
                        events: &partitions[partition][start..end],
                    });
                    next.insert(*partition, end);
                }
                applied_store.apply_batches(CONSUMER, DECISIONS, &batches).await.unwrap();
            }

            let copied = TestSchema::new();
            let copied_store = copied.store_with(options()).await;
            rebuild_by_copy(&copied_store, &partitions, 7).await;
            assert_eq!(state(&copied, &copied_store).await, state(&applied, &applied_store).await);
        });
    }
}

/// Names and definitions of the constraints and indexes of the bulk-loaded tables, sorted.
async fn definitions(schema: &TestSchema) -> Vec<String> {
    let client = schema.raw().await;
    let mut found: Vec<String> = client
        .query(
            "SELECT format('index %s %s', indexname, indexdef) FROM pg_indexes \
             WHERE schemaname = $1 AND tablename IN ('audit_log', 'dedup') \
             UNION ALL \
             SELECT format('constraint %s %s %s', t.relname, c.conname, pg_get_constraintdef(c.oid)) \
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             WHERE t.relnamespace = $1::regnamespace AND t.relname IN ('audit_log', 'dedup')",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_bulk_load_drops_keys_and_indexes_and_builds_them_again() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let before = definitions(&schema).await;
    for expected in [
        "audit_log_pkey",
        "audit_log_tenant_pcs",
        "audit_log_outcome_code_known",
        "dedup_pkey",
        "dedup_due",
        "dedup_outcome_code_verified",
    ] {
        assert!(
            before.iter().any(|line| line.contains(expected)),
            "{expected} in {before:#?}"
        );
    }
    let bulk_load = store.begin_bulk_load().await.unwrap();
    let during = definitions(&schema).await;
    // Checks stay (Postgres 18 also lists NOT NULL in pg_constraint; older versions do not).
    assert!(
        during.iter().all(|line| line.starts_with("constraint ")
            && (line.contains(" CHECK ") || line.contains(" NOT NULL "))),
        "only checks stay while loading: {during:#?}"
    );
    assert!(
        during
            .iter()
            .any(|line| line.contains("audit_log_outcome_code_known")),
        "{during:#?}"
    );
    rebuild_by_copy_events(&store).await;
    store.finish_bulk_load(bulk_load).await.unwrap();
    assert_eq!(
        definitions(&schema).await,
        before,
        "the same definitions again"
    );
}

/// A short stream copied into a store already under a bulk load.
async fn rebuild_by_copy_events(store: &ProjectionStore) {
    let mut fold = ReplayFold::new(store.options().dedup_ttl.clone());
    let mut audit_copy = store.copy_audit().await.unwrap();
    let mut dedup_copy = store.copy_dedup().await.unwrap();
    for (offset, event) in stream(0, 30) {
        let folded = fold.fold(0, offset, event).unwrap();
        let mut entries: Vec<_> = folded.audit_entry_opt.into_iter().collect();
        audit_copy.write(&mut entries).await.unwrap();
        let versions: Vec<_> = folded.dedup_row_opt.into_iter().collect();
        dedup_copy.write(&versions).await.unwrap();
    }
    audit_copy.finish().await.unwrap();
    dedup_copy.finish().await.unwrap();
    store.delete_replaced_dedup_rows(&fold).await.unwrap();
}

#[tokio::test]
async fn a_copied_row_that_breaks_a_key_fails_the_bulk_load() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let bulk_load = store.begin_bulk_load().await.unwrap();
    let mut fold = ReplayFold::new(TenantTtl::default());
    let entry = fold
        .fold(0, 0, accepted(1, "acme", "pcs", 1))
        .unwrap()
        .audit_entry_opt
        .unwrap();
    let mut copy = store.copy_audit().await.unwrap();
    copy.write(&mut [entry.clone(), entry]).await.unwrap();
    copy.finish().await.unwrap();
    let error = store.finish_bulk_load(bulk_load).await.unwrap_err();
    assert!(error.to_string().contains("23505"), "{error}");
}
