//! The replicator's logic against an in-memory log: what a mirrored record carries, what is never
//! shipped, positions only after the remote ack and in order with skipped records, and a
//! restart that ships the unacked records again. No services; each test runs in milliseconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use events::replication_checkpoint::ReplicationCheckpoint;
use infra::log::LogError;
use infra::log::memory::{AckMode, MemorySink};
use infra::metrics::Metrics;

use std::collections::BTreeSet;

use super::*;
use crate::contract::{GetStatus, StatusBoard};
use crate::supervision::Heartbeat;
use crate::test_support::{Sources, eventually, quick_policy, supervision};

/// One answer of the target cluster to a starting replicator (its checkpoints, or a refusal).
type Answer = Result<BTreeMap<i32, i64>, LogError>;

/// What the target cluster answers a starting replicator, and what each source was opened with.
#[derive(Clone, Default)]
struct Target {
    /// The answers to the next starts (`Ok(empty)` once they run out).
    answers: Arc<Mutex<VecDeque<Answer>>>,
    /// The checkpoints each opened source started from.
    opened_with: Arc<Mutex<Vec<BTreeMap<i32, i64>>>>,
}

impl Target {
    fn answer(&self, answer: Answer) {
        self.answers.lock().unwrap().push_back(answer);
    }

    fn opened_with(&self) -> Vec<BTreeMap<i32, i64>> {
        self.opened_with.lock().unwrap().clone()
    }
}

fn deps(sources: &Sources, sink: Arc<MemorySink>, tenants: TenantFilter) -> ReplicatorDeps {
    deps_with(sources, sink, tenants, &Target::default())
}

fn deps_with(
    sources: &Sources,
    sink: Arc<MemorySink>,
    tenants: TenantFilter,
    target: &Target,
) -> ReplicatorDeps {
    let open = sources.opener("flk.submissions");
    let (opened_with, answers) = (target.opened_with.clone(), target.answers.clone());
    ReplicatorDeps {
        open_source: Arc::new(move |checkpoints| {
            opened_with.lock().unwrap().push(checkpoints);
            open()
        }),
        prepare: Arc::new(move || {
            let answer = answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(BTreeMap::new()));
            Box::pin(async move { answer })
        }),
        open_sink: Arc::new(move || Ok(sink.clone() as Arc<dyn LogSink>)),
        local_region: "a".into(),
        remote_region: "b".into(),
        stream: "submissions",
        remote_topic: "a.flk.submissions".into(),
        checkpoint_topic: "a.flk.checkpoints".into(),
        tenants,
        metrics: Metrics::new(),
        heartbeat: Heartbeat::default(),
        board: StatusBoard::default(),
    }
}

fn record(headers: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        topic: "flk.submissions".into(),
        partition: 7,
        offset: 41,
        key_opt: Some(b"acme/pcs-1".to_vec()),
        payload: b"{\"signed\":true}".to_vec(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect(),
        timestamp_ms_opt: Some(5),
    }
}

/// A supervised replicator with a quick restart policy.
fn start(deps: ReplicatorDeps) -> Addr<Replicator> {
    Supervisor::start(move |_| {
        Replicator::new(
            deps,
            supervision("replicator", quick_policy(), Arc::default()),
        )
    })
}

/// The mirrored records produced (checkpoints left out).
fn shipped(sink: &MemorySink) -> Vec<OutgoingRecord> {
    sink.produced()
        .into_iter()
        .filter(|record| record.topic == "a.flk.submissions")
        .collect()
}

/// The checkpoints produced, in order.
fn checkpoints(sink: &MemorySink) -> Vec<ReplicationCheckpoint> {
    sink.produced()
        .into_iter()
        .filter(|record| record.topic == "a.flk.checkpoints")
        .map(|record| {
            let checkpoint = ReplicationCheckpoint::decode(&record.payload).unwrap();
            assert_eq!(record.key, checkpoint.key().into_bytes());
            assert_eq!(record.partition_opt, Some(0));
            checkpoint
        })
        .collect()
}

fn header<'a>(record: &'a OutgoingRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| std::str::from_utf8(value).unwrap())
}

#[test]
fn a_mirrored_record_keeps_body_key_partition_and_headers_and_says_where_it_came_from() {
    let sources = Sources::default();
    let deps = deps(
        &sources,
        MemorySink::new(AckMode::Immediate),
        TenantFilter::All,
    );
    let local = record(&[
        ("flk-tenant", "acme"),
        ("flk-received-at", "1234"),
        ("flk-source", "gateway"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ]);
    let Mirror::Ship(mirrored) = mirror(&local, &deps) else {
        panic!("a local record is shipped");
    };
    assert_eq!(mirrored.topic, "a.flk.submissions");
    assert_eq!(mirrored.partition_opt, Some(7));
    assert_eq!(mirrored.key, b"acme/pcs-1");
    assert_eq!(
        mirrored.payload, local.payload,
        "the body is shipped untouched"
    );
    assert_eq!(header(&mirrored, "flk-tenant"), Some("acme"));
    assert_eq!(header(&mirrored, "flk-received-at"), Some("1234"));
    assert!(header(&mirrored, "traceparent").is_some());
    assert_eq!(header(&mirrored, "flk-source"), Some("replica"));
    let sources: Vec<_> = mirrored
        .headers
        .iter()
        .filter(|(name, _)| name == "flk-source")
        .collect();
    assert_eq!(sources.len(), 1, "the gateway source header is replaced");
    assert_eq!(header(&mirrored, "flk-origin-region"), Some("a"));
    assert_eq!(header(&mirrored, "flk-origin-partition"), Some("7"));
    assert_eq!(header(&mirrored, "flk-origin-offset"), Some("41"));
    assert_eq!(header(&mirrored, "flk-hops"), Some("1"));
}

#[test]
fn replicas_and_tenants_outside_a_selective_replication_stay() {
    let sources = Sources::default();
    let only_acme = TenantFilter::Only(["acme".to_owned()].into_iter().collect());
    let deps = deps(&sources, MemorySink::new(AckMode::Immediate), only_acme);
    assert_eq!(
        mirror(
            &record(&[("flk-tenant", "acme"), ("flk-source", "replica")]),
            &deps
        ),
        Mirror::FromReplica
    );
    // A record carrying an origin is a replica even if its source header was lost.
    assert_eq!(
        mirror(
            &record(&[("flk-tenant", "acme"), ("flk-origin-region", "b")]),
            &deps
        ),
        Mirror::FromReplica
    );
    assert_eq!(
        mirror(&record(&[("flk-tenant", "other")]), &deps),
        Mirror::TenantNotReplicated
    );
    // No tenant header means the default tenant.
    assert_eq!(mirror(&record(&[]), &deps), Mirror::TenantNotReplicated);
    assert!(matches!(
        mirror(&record(&[("flk-tenant", "acme")]), &deps),
        Mirror::Ship(_)
    ));
}

#[actix_rt::test]
async fn positions_move_only_after_the_remote_ack_and_skipped_records_keep_their_turn() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Held);
    let deps = deps(&sources, sink.clone(), TenantFilter::All);
    let replicator = start(deps);
    let log = sources.latest().await;
    log.assign(&[0]).await;
    log.push(0, b"one", &[("flk-tenant", "acme")]).await;
    log.push(0, b"mirrored back", &[("flk-source", "replica")])
        .await;
    log.push(0, b"three", &[("flk-tenant", "acme")]).await;
    eventually("two records shipped", || {
        (shipped(&sink).len() == 2).then_some(())
    })
    .await;
    assert!(
        log.stored().is_empty(),
        "nothing stored before the remote ack"
    );

    sink.ack_held(1);
    // Offset 1 (the replica) is done already, so the first ack moves the position past it.
    eventually("position after the first ack", || {
        (log.stored().get(&0) == Some(&1)).then_some(())
    })
    .await;
    sink.ack_held(1);
    eventually("every position stored", || {
        (log.stored().get(&0) == Some(&2)).then_some(())
    })
    .await;
    let status = replicator.send(GetStatus).await.unwrap();
    assert_eq!(status.role, "replicator-b");
    assert_eq!(status.in_flight, 0);
    let bodies: Vec<Vec<u8>> = shipped(&sink).into_iter().map(|r| r.payload).collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"three".to_vec()]);
}

#[actix_rt::test]
async fn a_failed_delivery_restarts_and_ships_the_unacked_record_again() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Held);
    let deps = deps(&sources, sink.clone(), TenantFilter::All);
    let _replicator = start(deps);
    let first = sources.latest().await;
    first.assign(&[0]).await;
    first.push(0, b"lost in transit", &[]).await;
    eventually("shipped once", || (shipped(&sink).len() == 1).then_some(())).await;
    sink.fail_held(LogError::Unavailable("remote cluster down".into()));
    eventually("a new source after the restart", || {
        (sources.opened() == 2).then_some(())
    })
    .await;
    assert!(
        first.stored().is_empty(),
        "the failed record's position was never stored"
    );
    // The consumer group hands the partition back from the last stored position: the record
    // comes again and is shipped again.
    sink.set_mode(AckMode::Immediate);
    let second = sources.latest().await;
    second.assign(&[0]).await;
    second.push(0, b"lost in transit", &[]).await;
    eventually("shipped again and stored", || {
        (second.stored().get(&0) == Some(&0)).then_some(())
    })
    .await;
    assert_eq!(shipped(&sink).len(), 2);
}

#[actix_rt::test]
async fn a_checkpoint_follows_the_shipped_position_into_the_target_cluster() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Immediate);
    let deps = deps(&sources, sink.clone(), TenantFilter::All);
    let replicator = start(deps);
    let log = sources.latest().await;
    log.assign(&[0, 3]).await;
    log.push(0, b"one", &[("flk-tenant", "acme")]).await;
    log.push(3, b"two", &[("flk-tenant", "acme")]).await;
    log.push(3, b"mirrored back", &[("flk-source", "replica")])
        .await;
    let written = eventually("a checkpoint of each partition", || {
        let written = checkpoints(&sink);
        let partitions: BTreeSet<i32> = written.iter().map(|c| c.partition).collect();
        (partitions.len() == 2).then_some(written)
    })
    .await;
    for checkpoint in &written {
        assert_eq!(checkpoint.origin_region, "a");
        assert_eq!(checkpoint.stream, "submissions");
        // The next offset to ship: one past the stored position (a skipped replica counts).
        let stored = log.stored()[&checkpoint.partition];
        assert_eq!(checkpoint.next_offset, stored + 1);
    }
    // Nothing moved since: no new checkpoint however many ticks pass.
    let count = written.len();
    replicator.send(Tick).await.unwrap();
    replicator.send(Tick).await.unwrap();
    assert_eq!(checkpoints(&sink).len(), count);

    // The last position goes out before the shutdown completes.
    log.push(0, b"three", &[("flk-tenant", "acme")]).await;
    eventually("the third record shipped", || {
        (shipped(&sink).len() == 3).then_some(())
    })
    .await;
    replicator.send(Shutdown).await.unwrap();
    let last = checkpoints(&sink)
        .into_iter()
        .rfind(|c| c.partition == 0)
        .unwrap();
    assert_eq!(last.next_offset, 2);
}

#[actix_rt::test]
async fn a_start_reads_the_checkpoints_first_and_retries_while_the_target_refuses() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Immediate);
    let target = Target::default();
    target.answer(Err(LogError::Fatal(
        "partition counts differ: flk.submissions has 12 here, a.flk.submissions has 6".into(),
    )));
    let kept: BTreeMap<i32, i64> = [(0, 500), (5, 17)].into_iter().collect();
    target.answer(Ok(kept.clone()));
    let deps = deps_with(&sources, sink.clone(), TenantFilter::All, &target);
    let _replicator = start(deps);
    sources.latest().await;
    // The refused start opened nothing; the next one started from the target's checkpoints.
    assert_eq!(target.opened_with(), vec![kept]);
    assert_eq!(sources.opened(), 1);
}

#[actix_rt::test]
async fn a_shutdown_while_the_checkpoints_are_read_opens_nothing() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Immediate);
    let mut deps = deps(&sources, sink, TenantFilter::All);
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<()>();
    let answer_rx = Arc::new(Mutex::new(Some(answer_rx)));
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked_in_prepare = asked.clone();
    deps.prepare = Arc::new(move || {
        asked_in_prepare.store(true, std::sync::atomic::Ordering::SeqCst);
        let answer_rx = answer_rx.lock().unwrap().take();
        Box::pin(async move {
            // The target cluster answers only when the test says so.
            if let Some(answer_rx) = answer_rx {
                let _ = answer_rx.await;
            }
            Ok(BTreeMap::new())
        })
    });
    let replicator = start(deps);
    eventually("the checkpoints asked for", || {
        asked
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    })
    .await;
    replicator.send(Shutdown).await.unwrap();
    answer_tx.send(()).unwrap();
    // The answer is handled on the actor's loop; a few round trips through its mailbox let it.
    for _ in 0..3 {
        replicator.send(GetStatus).await.unwrap();
    }
    let status = replicator.send(GetStatus).await.unwrap();
    assert_eq!(status.state, "stopped");
    assert_eq!(sources.opened(), 0, "no source opened after the shutdown");
}
