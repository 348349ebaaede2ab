//! Shared helpers of the service tests: the stack's URLs, a schema per test (dropped at the end,
//! even when the test fails), a Redis prefix per test, and decision-event builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use events::{DecisionEvent, Outcome, SourceCoordinates, SubmissionSource, Verdict};
use projections::{ProjectionStore, StoreOptions};

const HOW_TO_START: &str = "start the local stack first: `infra/scripts/stack.sh up postgres redis` \
     then `source .local/stack/env.sh` (these service tests never skip silently)";

/// `FLK_POSTGRES_URL`, or a failure that says how to start the stack.
pub fn pg_url() -> String {
    match std::env::var("FLK_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("FLK_POSTGRES_URL is not set: {HOW_TO_START}"),
    }
}

/// `FLK_REDIS_URLS` split on commas, or a failure that says how to start the stack.
pub fn redis_urls() -> Vec<String> {
    match std::env::var("FLK_REDIS_URLS") {
        Ok(urls) if !urls.is_empty() => urls.split(',').map(str::to_owned).collect(),
        _ => panic!("FLK_REDIS_URLS is not set: {HOW_TO_START}"),
    }
}

/// A name no other test (or run) uses: `<prefix>_<16 hex>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{prefix}_{:016x}", hasher.finish())
}

/// A schema owned by one test. Dropping it drops the schema and every schema whose name starts
/// with it (`_rebuild`, `_old_<ms>`), from a helper thread so it also runs when the test panics.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    pub fn new() -> Self {
        TestSchema {
            url: pg_url(),
            name: unique_name("flk_t"),
        }
    }

    pub async fn store(&self) -> ProjectionStore {
        ProjectionStore::connect(&self.url, &self.name)
            .await
            .expect("connect to the test schema")
    }

    pub async fn store_with(&self, options: StoreOptions) -> ProjectionStore {
        ProjectionStore::connect_with(&self.url, &self.name, options)
            .await
            .expect("connect to the test schema")
    }

    /// A raw superuser connection (for tampering and catalog checks).
    pub async fn raw(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                let rows = client
                    .query(
                        "SELECT nspname::text FROM pg_namespace \
                         WHERE left(nspname, length($1::text)) = $1::text",
                        &[&name],
                    )
                    .await?;
                for row in rows {
                    let schema: String = row.get(0);
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await?;
                }
                Ok::<(), tokio_postgres::Error>(())
            })
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

pub const SUBMISSIONS: &str = "test.flk.submissions";
pub const DECISIONS: &str = "test.flk.decisions";
pub const CONSUMER: &str = "flk-projector";
pub const T0: i64 = 1_700_000_000_000;

pub fn source(partition: i32, offset: i64) -> SourceCoordinates {
    SourceCoordinates {
        topic: SUBMISSIONS.into(),
        partition,
        offset,
    }
}

fn base(source_offset: i64, tenant: &str, verdict: Verdict) -> DecisionEvent {
    DecisionEvent {
        source: source(0, source_offset),
        submission_source: SubmissionSource::Gateway,
        tenant: tenant.into(),
        pcs_id_opt: None,
        signed_digest_opt: None,
        verdict,
        params_version: 1,
        key_id_opt: None,
        region: "local".into(),
        received_at_ms: T0 + source_offset,
        decided_at_ms: T0 + source_offset + 3,
        traceparent_opt: None,
    }
}

pub fn outcome(accepted: bool, escalated: bool) -> Outcome {
    Outcome {
        accepted,
        escalated,
        recomputed_d_hat_opt: Some(0.528_320_834),
        recomputed_budget_opt: if escalated { Some(0.3) } else { None },
        reason_opt: escalated.then(|| "regime mismatch".to_owned()),
    }
}

/// A verified decision for (tenant, pcs_id) whose signed digest is `[digest; 32]`.
pub fn verified(
    source_offset: i64,
    tenant: &str,
    pcs_id: &str,
    digest: u8,
    outcome: Outcome,
) -> DecisionEvent {
    let mut event = base(source_offset, tenant, Verdict::Verified { outcome });
    event.pcs_id_opt = Some(pcs_id.into());
    event.signed_digest_opt = Some([digest; 32]);
    event.key_id_opt = Some("k1".into());
    event
}

pub fn accepted(source_offset: i64, tenant: &str, pcs_id: &str, digest: u8) -> DecisionEvent {
    verified(source_offset, tenant, pcs_id, digest, outcome(true, false))
}

pub fn malformed(source_offset: i64, tenant: &str) -> DecisionEvent {
    base(
        source_offset,
        tenant,
        Verdict::Malformed {
            error: "`epoch` must be an integer".into(),
        },
    )
}

pub fn bad_signature(source_offset: i64, tenant: &str, pcs_id: &str, digest: u8) -> DecisionEvent {
    let mut event = base(
        source_offset,
        tenant,
        Verdict::SignatureRejected {
            reason: "signature mismatch".into(),
        },
    );
    event.pcs_id_opt = Some(pcs_id.into());
    event.signed_digest_opt = Some([digest; 32]);
    event
}

pub fn refused(source_offset: i64, tenant: &str, pcs_id: &str) -> DecisionEvent {
    let mut event = base(
        source_offset,
        tenant,
        Verdict::TenantRefused {
            reason: format!("unknown tenant {tenant:?}"),
        },
    );
    event.pcs_id_opt = Some(pcs_id.into());
    event.signed_digest_opt = Some([9; 32]);
    event
}

/// Numbers events with consecutive decisions offsets from `first`.
pub fn numbered(first: i64, events: Vec<DecisionEvent>) -> Vec<(i64, DecisionEvent)> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| (first + index as i64, event))
        .collect()
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub async fn wait_for<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A mixed stream of one partition (replay and legacy-store tests): firsts, duplicates, conflicts, rejections, a repeat of one source.
pub fn stream(partition: i32, count: i64) -> Vec<(i64, DecisionEvent)> {
    let mut events = Vec::new();
    for i in 0..count {
        let pcs = format!("pcs-{}-{}", partition, i % 7);
        let mut event = match i % 5 {
            0 => malformed(i, "acme"),
            1 => bad_signature(i, "acme", &pcs, 1),
            2 => verified(
                i,
                "acme",
                &pcs,
                (i % 3) as u8,
                outcome(i % 2 == 0, i % 4 == 0),
            ),
            3 => accepted(i, "globex", &pcs, 1),
            _ => accepted(i, "acme", &pcs, 1),
        };
        event.source = source(partition, i);
        events.push(event);
    }
    // The shard decided offset 3 twice.
    events.push(events[3].clone());
    numbered(0, events)
}
