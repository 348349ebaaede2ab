//! The shard's logic against an in-memory log: ordering, positions after acks, revocation,
//! failures and the supervisor's backoff. No services; each test runs in milliseconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use events::DecisionEvent;
use infra::failpoints::Failpoints;
use infra::log::LogError;
use infra::log::memory::{AckMode, MemorySink};
use infra::metrics::Metrics;

use super::*;
use crate::contract::{GetStatus, StatusBoard};
use crate::supervision::{Heartbeat, SupervisorPolicy};
use crate::test_support::{Sources, eventually, quick_policy, status_until, supervision};

/// A started shard over in-memory sources and `sink`.
struct Harness {
    shard: Addr<Shard>,
    sources: Sources,
    sink: Arc<MemorySink>,
}

fn start(sink: Arc<MemorySink>, policy: SupervisorPolicy, failpoints: Failpoints) -> Harness {
    let sources = Sources::default();
    let deps = ShardDeps {
        role: "shard".into(),
        open_source: sources.opener("flk.submissions"),
        sink: sink.clone(),
        decisions_topic: "flk.decisions".into(),
        region: "test".into(),
        tenants: Arc::new(HashMap::new()),
        max_body_bytes: 1 << 20,
        metrics: Metrics::new(),
        heartbeat: Heartbeat::default(),
        board: StatusBoard::default(),
        failpoints,
    };
    let supervision = supervision("shard", policy, Arc::default());
    let shard = Supervisor::start(move |_| Shard::new(deps, supervision));
    Harness {
        shard,
        sources,
        sink,
    }
}

fn decided(sink: &MemorySink) -> Vec<(i32, i64)> {
    sink.produced()
        .iter()
        .map(|record| {
            let event = DecisionEvent::decode(&record.payload).unwrap();
            assert_eq!(record.partition_opt, Some(event.source.partition));
            (event.source.partition, event.source.offset)
        })
        .collect()
}

async fn status(shard: &Addr<Shard>) -> ActorStatus {
    shard.send(GetStatus).await.unwrap()
}

#[actix_rt::test]
async fn decides_each_record_once_in_order_and_stores_positions_only_after_acks() {
    let harness = start(
        MemorySink::new(AckMode::Held),
        quick_policy(),
        Failpoints::default(),
    );
    let log = harness.sources.latest().await;
    log.assign(&[0, 1]).await;
    for body in [&b"{}"[..], b"not json", b"[]"] {
        log.push(0, body, &[("flk-tenant", "acme")]).await;
        log.push(1, body, &[]).await;
    }
    eventually("six decisions produced", || {
        (harness.sink.produced().len() == 6).then_some(())
    })
    .await;
    let order = decided(&harness.sink);
    let partition_0: Vec<i64> = order
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(partition_0, vec![0, 1, 2], "decided in log order");
    assert!(log.stored().is_empty(), "nothing stored before an ack");
    assert_eq!(status(&harness.shard).await.in_flight, 6);

    harness.sink.ack_held(3);
    eventually("positions after three acks", || {
        (log.stored().values().sum::<i64>() == 1).then_some(())
    })
    .await;
    harness.sink.ack_held(3);
    eventually("every position stored", || {
        (log.stored() == [(0, 2), (1, 2)].into_iter().collect()).then_some(())
    })
    .await;
    let status = status(&harness.shard).await;
    assert_eq!(status.in_flight, 0);
    assert_eq!(status.partitions.len(), 2);
    assert_eq!(status.partitions[0].position_opt, Some(2));
}

#[actix_rt::test]
async fn a_decision_keeps_the_record_coordinates_tenant_and_source() {
    let harness = start(
        MemorySink::new(AckMode::Immediate),
        quick_policy(),
        Failpoints::default(),
    );
    let log = harness.sources.latest().await;
    log.assign(&[3]).await;
    log.push(
        3,
        b"{}",
        &[
            ("flk-tenant", "acme"),
            ("flk-source", "gateway"),
            ("flk-received-at", "42"),
        ],
    )
    .await;
    eventually("a decision", || {
        (harness.sink.produced().len() == 1).then_some(())
    })
    .await;
    let record = &harness.sink.produced()[0];
    assert_eq!(record.topic, "flk.decisions");
    assert_eq!(record.key, b"3/0");
    let event = DecisionEvent::decode(&record.payload).unwrap();
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.received_at_ms, 42);
    assert_eq!(event.submission_source, events::SubmissionSource::Gateway);
    assert_eq!(event.verdict.code(), "malformed");
}

#[actix_rt::test]
async fn revocation_waits_for_unacked_decisions_then_releases_and_decides_nothing_more() {
    let harness = start(
        MemorySink::new(AckMode::Held),
        quick_policy(),
        Failpoints::default(),
    );
    let log = harness.sources.latest().await;
    log.assign(&[0, 1]).await;
    for _ in 0..3 {
        log.push(0, b"{}", &[]).await;
    }
    log.push(1, b"{}", &[]).await;
    eventually("four decisions in flight", || {
        (harness.sink.held() == 4).then_some(())
    })
    .await;

    let revoking = actix::spawn({
        let log = log.clone();
        async move { log.revoke(&[0], Duration::from_secs(10)).await }
    });
    status_until(&harness.shard, |status| {
        status
            .partitions
            .iter()
            .any(|p| p.partition == 0 && p.revoking)
    })
    .await;
    // A record of the revoked partition that was already read is left to the next owner.
    log.push(0, b"{}", &[]).await;
    assert!(!revoking.is_finished(), "released with decisions unacked");

    harness.sink.ack_held(4);
    assert!(
        revoking.await.unwrap(),
        "released after the acks, within the timeout"
    );
    assert_eq!(
        log.stored().get(&0),
        Some(&2),
        "last position stored before the release"
    );
    let after = status(&harness.shard).await;
    assert_eq!(
        after
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(
        decided(&harness.sink).len(),
        4,
        "nothing decided after the revocation"
    );
    assert_eq!(harness.sources.opened(), 1, "no restart");
}

#[actix_rt::test]
async fn revoking_an_idle_partition_releases_at_once() {
    let harness = start(
        MemorySink::new(AckMode::Immediate),
        quick_policy(),
        Failpoints::default(),
    );
    let log = harness.sources.latest().await;
    log.assign(&[0, 1, 2]).await;
    assert!(log.revoke(&[1, 2], Duration::from_secs(10)).await);
    let status = status(&harness.shard).await;
    assert_eq!(status.partitions.len(), 1);
}

#[actix_rt::test]
async fn a_failed_delivery_restarts_the_shard_which_decides_again_from_the_stored_position() {
    let harness = start(
        MemorySink::new(AckMode::Held),
        quick_policy(),
        Failpoints::default(),
    );
    let log = harness.sources.latest().await;
    log.assign(&[0]).await;
    log.push(0, b"{}", &[]).await;
    log.push(0, b"{}", &[]).await;
    eventually("two in flight", || (harness.sink.held() == 2).then_some(())).await;
    harness.sink.ack_held(1);
    eventually("first stored", || {
        (log.stored().get(&0) == Some(&0)).then_some(())
    })
    .await;
    harness
        .sink
        .fail_held(LogError::Unavailable("broker gone".into()));
    eventually("a second source after the restart", || {
        (harness.sources.opened() == 2).then_some(())
    })
    .await;
    assert!(log.is_closed(), "the failed run's source is closed");
    assert_eq!(status(&harness.shard).await.restarts, 1);
}

#[actix_rt::test]
async fn a_refused_produce_fails_the_shard() {
    let sink = MemorySink::new(AckMode::RefuseQueue(LogError::Unavailable(
        "queue full".into(),
    )));
    let harness = start(sink, quick_policy(), Failpoints::default());
    let log = harness.sources.latest().await;
    log.assign(&[0]).await;
    log.push(0, b"{}", &[]).await;
    eventually("restarted", || {
        (harness.sources.opened() == 2).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_stalled_handler_stops_the_heartbeat_and_reads_nothing_more() {
    let failpoints = Failpoints::parse("shard.before_produce=stall_once").unwrap();
    let harness = start(
        MemorySink::new(AckMode::Immediate),
        quick_policy(),
        failpoints,
    );
    let log = harness.sources.latest().await;
    log.assign(&[0]).await;
    log.push(0, b"{}", &[]).await;
    log.push(0, b"{}", &[]).await;
    status_until(&harness.shard, |status| status.state == "stalled").await;
    assert!(harness.sink.produced().is_empty());
    // The watchdog's Restart brings it back with a fresh source.
    harness.shard.do_send(crate::supervision::Restart);
    let fresh = eventually("a fresh source", || {
        (harness.sources.opened() == 2).then_some(())
    });
    fresh.await;
}

/// Supervision measured, not read from logs: an actor whose source never opens is restarted
/// with delays that double within their jitter band, then the budget runs out and the process
/// is told to exit.
#[actix_rt::test]
async fn restarts_back_off_exponentially_with_jitter_until_the_budget_is_spent() {
    let policy = SupervisorPolicy {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(320),
        jitter: 0.5,
        healthy_after: Duration::from_secs(60),
        budget: 5,
        window: Duration::from_secs(60),
    };
    let sources = Sources::default();
    sources.refuse(100);
    let exhausted = Arc::new(Mutex::new(0));
    let deps = ShardDeps {
        role: "shard".into(),
        open_source: sources.opener("flk.submissions"),
        sink: MemorySink::new(AckMode::Immediate),
        decisions_topic: "flk.decisions".into(),
        region: "test".into(),
        tenants: Arc::new(HashMap::new()),
        max_body_bytes: 1 << 20,
        metrics: Metrics::new(),
        heartbeat: Heartbeat::default(),
        board: StatusBoard::default(),
        failpoints: Failpoints::default(),
    };
    let supervision = supervision("shard", policy.clone(), exhausted.clone());
    let shard = Supervisor::start(move |_| Shard::new(deps, supervision));
    eventually("the budget spent", || {
        (*exhausted.lock().unwrap() == 1).then_some(())
    })
    .await;
    let attempts = sources.attempts();
    assert_eq!(
        attempts.len(),
        6,
        "the first start and five restarts, then none"
    );
    for (restart, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let ceiling = policy.ceiling(restart as u32 + 1);
        assert!(
            gap >= ceiling / 2,
            "restart {}: waited {gap:?}, less than half of {ceiling:?}",
            restart + 1
        );
        assert!(
            gap <= ceiling + Duration::from_millis(250),
            "restart {}: waited {gap:?}, far over {ceiling:?}",
            restart + 1
        );
    }
    let status = shard.send(GetStatus).await.unwrap();
    assert_eq!(status.state, "gave_up");
    assert_eq!(sources.attempts().len(), 6, "no start after giving up");
}
