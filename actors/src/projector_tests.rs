//! The projector's logic against an in-memory log and a fake store that fences like Postgres:
//! claims, lanes, group commit, batch limits, fencing with re-buffering, revocation. No services.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use events::{DecisionEvent, SourceCoordinates, SubmissionSource, Verdict};
use futures::FutureExt as _;
use infra::failpoints::Failpoints;
use infra::log::memory::SourceControl;
use infra::metrics::Metrics;
use projections::{Applied, Claim, DedupResult, StoreError};
use tokio::sync::oneshot;

use super::*;
use crate::contract::StatusBoard;
use crate::decision_bus::DecisionBus;
use crate::supervision::Heartbeat;
use crate::test_support::{Sources, eventually, quick_policy, status_until, supervision};

/// A store that keeps epochs and positions like `projection_offsets` and can hold transactions.
#[derive(Debug, Default)]
struct FakeStore {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    /// Current owner epoch per partition.
    epochs: HashMap<i32, i64>,
    /// Next offset to apply per partition.
    next_offset: BTreeMap<i32, i64>,
    /// Every committed transaction: (partition, events) per batch.
    transactions: Vec<Vec<(i32, usize)>>,
    /// Offsets applied, per partition, in order.
    applied: BTreeMap<i32, Vec<i64>>,
    /// While set, transactions wait for `release_held`.
    hold: bool,
    /// Held transactions' gates.
    held: Vec<oneshot::Sender<()>>,
}

impl FakeStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn hold(&self, hold: bool) {
        self.lock().hold = hold;
    }

    fn held(&self) -> usize {
        self.lock().held.len()
    }

    fn release_held(&self) {
        for gate in self.lock().held.drain(..) {
            let _ = gate.send(());
        }
    }

    /// Another process claims `partition` (fencing us).
    fn claim_elsewhere(&self, partition: i32) {
        *self.lock().epochs.entry(partition).or_insert(0) += 1;
    }

    fn transactions(&self) -> Vec<Vec<(i32, usize)>> {
        self.lock().transactions.clone()
    }

    fn applied(&self, partition: i32) -> Vec<i64> {
        self.lock()
            .applied
            .get(&partition)
            .cloned()
            .unwrap_or_default()
    }
}

impl ProjectionTarget for Arc<FakeStore> {
    fn claim(
        &self,
        _topic: &str,
        partition: i32,
    ) -> LocalBoxFuture<'static, Result<Claim, StoreError>> {
        let mut state = self.lock();
        let epoch = state.epochs.entry(partition).or_insert(0);
        *epoch += 1;
        let claim = Claim {
            owner_epoch: *epoch,
            next_offset: state.next_offset.get(&partition).copied().unwrap_or(0),
        };
        async move { Ok(claim) }.boxed_local()
    }

    fn apply(&self, topic: &str, batches: Vec<LaneBatch>) -> LocalBoxFuture<'static, Committed> {
        let store = self.clone();
        let topic = topic.to_owned();
        let gate_opt = {
            let mut state = store.lock();
            state.hold.then(|| {
                let (gate, waiting) = oneshot::channel();
                state.held.push(gate);
                waiting
            })
        };
        async move {
            if let Some(gate) = gate_opt {
                let _ = gate.await;
            }
            let result = store.commit(&topic, &batches);
            Committed { batches, result }
        }
        .boxed_local()
    }
}

impl FakeStore {
    fn commit(&self, topic: &str, batches: &[LaneBatch]) -> Result<Vec<Vec<Applied>>, StoreError> {
        let mut state = self.lock();
        for batch in batches {
            let current = state.epochs.get(&batch.partition).copied();
            if current != Some(batch.epoch) {
                return Err(StoreError::Fenced {
                    consumer: CONSUMER.into(),
                    topic: topic.into(),
                    partition: batch.partition,
                    claimed_epoch: batch.epoch,
                    current_epoch_opt: current,
                });
            }
        }
        let mut answers = Vec::new();
        let mut shape = Vec::new();
        for batch in batches {
            let next = state
                .next_offset
                .get(&batch.partition)
                .copied()
                .unwrap_or(0);
            let fresh: Vec<&(i64, DecisionEvent)> = batch
                .events
                .iter()
                .filter(|(offset, _)| *offset >= next)
                .collect();
            if let Some((last, _)) = fresh.last() {
                state.next_offset.insert(batch.partition, last + 1);
            }
            state
                .applied
                .entry(batch.partition)
                .or_default()
                .extend(fresh.iter().map(|(offset, _)| *offset));
            shape.push((batch.partition, batch.events.len()));
            answers.push(
                fresh
                    .iter()
                    .map(|(offset, event)| applied(*offset, event))
                    .collect(),
            );
        }
        state.transactions.push(shape);
        Ok(answers)
    }
}

fn applied(decisions_offset: i64, event: &DecisionEvent) -> Applied {
    Applied {
        source: event.source.clone(),
        decisions_offset,
        tenant: event.tenant.clone(),
        pcs_id_opt: None,
        signed_digest_opt: None,
        outcome_class: events::OutcomeClass::Malformed,
        dedup_result: DedupResult::NotDeduplicated,
        body: serde_json::json!({}),
        replayed: false,
        dedup_expires_at_ms_opt: None,
    }
}

fn decision(partition: i32, offset: i64) -> Vec<u8> {
    DecisionEvent {
        source: SourceCoordinates {
            topic: "flk.submissions".into(),
            partition,
            offset,
        },
        submission_source: SubmissionSource::Kafka,
        tenant: "acme".into(),
        pcs_id_opt: None,
        signed_digest_opt: None,
        verdict: Verdict::Malformed {
            error: "test".into(),
        },
        params_version: 0,
        key_id_opt: None,
        region: "test".into(),
        received_at_ms: 0,
        decided_at_ms: 0,
        traceparent_opt: None,
    }
    .encode()
    .unwrap()
}

struct Harness {
    projector: Addr<Projector>,
    sources: Sources,
    store: Arc<FakeStore>,
    bus: DecisionBus,
}

fn start(max_batch: usize, max_transactions: usize) -> Harness {
    let sources = Sources::default();
    let store = Arc::new(FakeStore::default());
    let bus = DecisionBus::default();
    let deps = ProjectorDeps {
        open_source: sources.opener("flk.decisions"),
        topic: "flk.decisions".into(),
        store: Arc::new(store.clone()),
        max_batch,
        max_transactions,
        bus: bus.clone(),
        after_commit_opt: None,
        metrics: Metrics::new(),
        heartbeat: Heartbeat::default(),
        board: StatusBoard::default(),
        failpoints: Failpoints::default(),
    };
    let supervision = supervision("projector", quick_policy(), Arc::default());
    let projector = Supervisor::start(move |_| Projector::new(deps, supervision));
    Harness {
        projector,
        sources,
        store,
        bus,
    }
}

/// Pushes `count` decisions to `partition` (the fake store keys on the decision offsets the
/// log gives them; the events' contents do not matter here).
async fn push(log: &SourceControl, partition: i32, count: usize) {
    for _ in 0..count {
        log.push(partition, &decision(partition, 0), &[]).await;
    }
}

/// A projector owning `partitions`, with commits held and the first transaction (one event of
/// partition 0) in flight.
async fn first_transaction_held(
    max_batch: usize,
    max_transactions: usize,
    partitions: &[i32],
) -> (Harness, SourceControl) {
    let harness = start(max_batch, max_transactions);
    let log = harness.sources.latest().await;
    log.assign(partitions).await;
    status_until(&harness.projector, |status| {
        status.partitions.len() == partitions.len()
    })
    .await;
    harness.store.hold(true);
    push(&log, 0, 1).await;
    eventually("first transaction in flight", || {
        (harness.store.held() == 1).then_some(())
    })
    .await;
    (harness, log)
}

#[actix_rt::test]
async fn claims_then_applies_and_stores_positions_after_the_commit() {
    let harness = start(100, 1);
    let log = harness.sources.latest().await;
    log.assign(&[0, 1]).await;
    push(&log, 0, 3).await;
    push(&log, 1, 2).await;
    eventually("every event applied", || {
        (harness.store.applied(0).len() == 3 && harness.store.applied(1).len() == 2).then_some(())
    })
    .await;
    eventually("positions stored", || {
        (log.stored() == [(0, 2), (1, 1)].into_iter().collect()).then_some(())
    })
    .await;
    assert_eq!(harness.store.applied(0), vec![0, 1, 2]);
    let status = status_until(&harness.projector, |status| status.buffered == 0).await;
    assert_eq!(status.partitions.len(), 2);
    let _ = &harness.bus;
}

#[actix_rt::test]
async fn one_transaction_takes_every_idle_lane_with_events_after_a_stall() {
    let (harness, log) = first_transaction_held(100, 1, &[0, 1, 2]).await;
    push(&log, 1, 2).await;
    push(&log, 2, 3).await;
    push(&log, 0, 1).await;
    status_until(&harness.projector, |status| status.buffered == 6).await;
    harness.store.hold(false);
    harness.store.release_held();
    eventually("all applied", || {
        (harness.store.transactions().len() == 2).then_some(())
    })
    .await;
    let transactions = harness.store.transactions();
    assert_eq!(transactions[0], vec![(0, 1)]);
    let mut second = transactions[1].clone();
    second.sort_unstable();
    assert_eq!(
        second,
        vec![(0, 1), (1, 2), (2, 3)],
        "the backlog of three partitions in one commit"
    );
}

#[actix_rt::test]
async fn a_second_transaction_starts_only_when_a_full_batch_waits() {
    let (harness, log) = first_transaction_held(4, 2, &[0, 1, 2]).await;
    // Three waiting events are less than a batch: they wait for the first commit.
    push(&log, 1, 3).await;
    status_until(&harness.projector, |status| status.buffered == 3).await;
    assert_eq!(
        harness.store.held(),
        1,
        "a second transaction for a partial batch"
    );
    // The fourth fills a batch: a second transaction takes it beside the first.
    push(&log, 2, 1).await;
    eventually("second transaction in flight", || {
        (harness.store.held() == 2).then_some(())
    })
    .await;
    harness.store.hold(false);
    harness.store.release_held();
    eventually("all applied", || {
        (harness.store.transactions().len() == 2).then_some(())
    })
    .await;
    let mut sizes: Vec<Vec<(i32, usize)>> = harness.store.transactions();
    for transaction in &mut sizes {
        transaction.sort_unstable();
    }
    sizes.sort_unstable();
    assert_eq!(sizes, vec![vec![(0, 1)], vec![(1, 3), (2, 1)]]);
}

#[actix_rt::test]
async fn max_batch_bounds_a_transaction_and_the_rest_follows() {
    let (harness, log) = first_transaction_held(4, 1, &[0]).await;
    push(&log, 0, 10).await;
    status_until(&harness.projector, |status| status.buffered == 10).await;
    harness.store.hold(false);
    harness.store.release_held();
    eventually("all eleven applied", || {
        (harness.store.applied(0).len() == 11).then_some(())
    })
    .await;
    let sizes: Vec<usize> = harness
        .store
        .transactions()
        .iter()
        .map(|transaction| transaction.iter().map(|(_, events)| events).sum())
        .collect();
    assert_eq!(sizes, vec![1, 4, 4, 2]);
    assert_eq!(harness.store.applied(0), (0..11).collect::<Vec<i64>>());
}

#[actix_rt::test]
async fn a_transaction_fenced_by_a_partition_taken_away_returns_the_other_lanes_events() {
    let harness = start(100, 1);
    let log = harness.sources.latest().await;
    log.assign(&[0, 1]).await;
    status_until(&harness.projector, |status| status.partitions.len() == 2).await;
    harness.store.hold(true);
    push(&log, 0, 1).await;
    eventually("first in flight", || {
        (harness.store.held() == 1).then_some(())
    })
    .await;
    push(&log, 0, 2).await;
    push(&log, 1, 2).await;
    status_until(&harness.projector, |status| status.buffered == 4).await;
    harness.store.release_held();
    eventually("second transaction (both lanes) in flight", || {
        (harness.store.held() == 1).then_some(())
    })
    .await;
    // Partition 1 is taken without waiting for our release (the rebalance timed out) and its
    // new owner claims it: our transaction, which holds both lanes, is fenced.
    let revoked = actix::spawn({
        let log = log.clone();
        async move { log.revoke(&[1], Duration::from_millis(50)).await }
    });
    assert!(
        !revoked.await.unwrap(),
        "not released: a transaction was in flight"
    );
    harness.store.claim_elsewhere(1);
    harness.store.hold(false);
    harness.store.release_held();
    eventually(
        "partition 0's events applied again in a later transaction",
        || (harness.store.applied(0).len() == 3).then_some(()),
    )
    .await;
    assert!(
        harness.store.applied(1).is_empty(),
        "nothing applied under the stale claim"
    );
    let status = status_until(&harness.projector, |status| status.partitions.len() == 1).await;
    assert_eq!(
        status.restarts, 0,
        "a fenced lane that is no longer ours is not a failure"
    );
}

#[actix_rt::test]
async fn revocation_waits_for_the_transaction_in_flight_then_releases() {
    let harness = start(100, 1);
    let log = harness.sources.latest().await;
    log.assign(&[0, 1]).await;
    status_until(&harness.projector, |status| status.partitions.len() == 2).await;
    harness.store.hold(true);
    push(&log, 0, 2).await;
    eventually("in flight", || (harness.store.held() == 1).then_some(())).await;
    let revoking = actix::spawn({
        let log = log.clone();
        async move { log.revoke(&[0], Duration::from_secs(10)).await }
    });
    status_until(&harness.projector, |status| {
        status
            .partitions
            .iter()
            .any(|p| p.partition == 0 && p.revoking)
    })
    .await;
    assert!(!revoking.is_finished());
    harness.store.hold(false);
    harness.store.release_held();
    assert!(
        revoking.await.unwrap(),
        "released once the transaction committed"
    );
    // The first event was in the transaction; the second was only buffered and is left to the
    // next owner, which starts after the stored position.
    assert_eq!(harness.store.applied(0), vec![0]);
    assert_eq!(
        log.stored().get(&0),
        Some(&0),
        "position stored before the release"
    );
    let status = status_until(&harness.projector, |status| status.partitions.len() == 1).await;
    assert_eq!(status.partitions[0].partition, 1);
    assert_eq!(status.restarts, 0);
}

#[actix_rt::test]
async fn a_claim_by_another_owner_of_a_lane_we_still_hold_restarts_and_claims_again() {
    let harness = start(100, 1);
    let log = harness.sources.latest().await;
    log.assign(&[0]).await;
    status_until(&harness.projector, |status| status.partitions.len() == 1).await;
    harness.store.claim_elsewhere(0);
    push(&log, 0, 1).await;
    eventually("restarted with a new source", || {
        (harness.sources.opened() == 2).then_some(())
    })
    .await;
    let log = harness.sources.latest().await;
    log.assign(&[0]).await;
    push(&log, 0, 1).await;
    eventually("applied after claiming again", || {
        (harness.store.applied(0).len() == 1).then_some(())
    })
    .await;
}
