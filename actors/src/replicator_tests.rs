//! The replicator's logic against an in-memory log: what a mirrored record carries, what is never
//! shipped, positions only after the remote ack and in order with skipped records, and a
//! restart that ships the unacked records again. No services; each test runs in milliseconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use actix::prelude::*;
use infra::log::LogError;
use infra::log::memory::{AckMode, MemorySink};
use infra::metrics::Metrics;

use super::*;
use crate::contract::{GetStatus, StatusBoard};
use crate::supervision::Heartbeat;
use crate::test_support::{Sources, eventually, quick_policy, supervision};

fn deps(sources: &Sources, sink: Arc<MemorySink>, tenants: TenantFilter) -> ReplicatorDeps {
    ReplicatorDeps {
        open_source: sources.opener("flk.submissions"),
        open_sink: Arc::new(move || Ok(sink.clone() as Arc<dyn LogSink>)),
        local_region: "a".into(),
        remote_region: "b".into(),
        stream: "submissions",
        remote_topic: "a.flk.submissions".into(),
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
    let replicator = Supervisor::start(move |_| {
        Replicator::new(
            deps,
            supervision("replicator", quick_policy(), Arc::default()),
        )
    });
    let log = sources.latest().await;
    log.assign(&[0]).await;
    log.push(0, b"one", &[("flk-tenant", "acme")]).await;
    log.push(0, b"mirrored back", &[("flk-source", "replica")])
        .await;
    log.push(0, b"three", &[("flk-tenant", "acme")]).await;
    eventually("two records shipped", || {
        (sink.produced().len() == 2).then_some(())
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
    let bodies: Vec<Vec<u8>> = sink.produced().into_iter().map(|r| r.payload).collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"three".to_vec()]);
}

#[actix_rt::test]
async fn a_failed_delivery_restarts_and_ships_the_unacked_record_again() {
    let sources = Sources::default();
    let sink = MemorySink::new(AckMode::Held);
    let deps = deps(&sources, sink.clone(), TenantFilter::All);
    let _replicator = Supervisor::start(move |_| {
        Replicator::new(
            deps,
            supervision("replicator", quick_policy(), Arc::default()),
        )
    });
    let first = sources.latest().await;
    first.assign(&[0]).await;
    first.push(0, b"lost in transit", &[]).await;
    eventually("shipped once", || {
        (sink.produced().len() == 1).then_some(())
    })
    .await;
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
    assert_eq!(sink.produced().len(), 2);
}
