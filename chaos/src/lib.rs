//! Fault scenarios and the history checker: the harness the service tests stand on.
//!
//! - [`bad_input`]: the corpus of malformed and hostile submissions with their exact answers;
//! - [`checker`]: the history checker's judgement (anomalies of a history against the stores), pure;
//! - [`faults`]: the faults a scenario injects (kills, pauses, a slow or silent link, overload,
//!   rebalance, a zombie owner, a full disk, a skewed clock) and how each is healed;
//! - [`fixtures`]: what a fault needs before the processes start (proxies in front of Postgres,
//!   Redis or Kafka; [`small_disk`], a tmpfs tablespace that a scenario fills);
//! - [`scenario`]: one fault under a paced load, judged by the checker and a replay (a row of
//!   `flk-chaos`'s table);
//! - [`deployment`]: a throwaway FLK deployment on the real local stack (its own topic prefix,
//!   Postgres schema and Redis key prefix, so tests run side by side and leave nothing behind);
//! - [`process`]: `flk serve` child processes that can be killed with SIGKILL at any moment;
//! - [`records`]: signed PCS records, unique per call;
//! - [`redis_node`]: an extra Redis node a test owns (shard migrations);
//! - [`prometheus`]: instant queries and scrape-target registration against the stack's Prometheus;
//! - [`link_proxy`]: a TCP fault proxy (cut, reset, latency, bandwidth) for the link between two
//!   regions and in front of a dependency;
//! - [`history_file`]: a history `flk bench --history` recorded, read back for the checker;
//! - [`history`]: checks that every acknowledged record was decided exactly once and that the audit
//!   log accounts for every record of the write-ahead log.
//!
//! The stack's addresses come from the environment `infra/scripts/stack.sh env` prints.

pub mod bad_input;
pub mod checker;
pub mod deployment;
pub mod faults;
pub mod fixtures;
pub mod history;
pub mod history_file;
pub mod http;
pub mod link_proxy;
pub mod load;
pub mod process;
pub mod prometheus;
pub mod records;
pub mod redis_node;
pub mod scenario;
pub mod small_disk;

use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some` or the deadline passes (no fixed sleeps in tests).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
