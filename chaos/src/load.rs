//! A test load: distinct signed records submitted concurrently, each retried on 503 or a
//! transport error until it gets a decision (retrying is safe by contract: the retry is a
//! duplicate and gets the first decision back).
//!
//! Two shapes share one submit loop: [`run`] sends a fixed number of records as fast as its
//! tasks go (crash tests), [`run_with`] can also pace them at a steady rate and stop on request
//! (scaling tests, where the load must keep going while processes join and leave).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::checker::{Answer, Operation};
use crate::history::Acknowledged;
use crate::http::submit_json;
use crate::records::{pcs_id, signed_record};
use crate::wait_until;

/// Outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Records acknowledged with a decision (200/202, first or replayed).
    pub acknowledged: Vec<Acknowledged>,
    /// 503 answers seen on the way (retried).
    pub unavailable: usize,
    /// Transport errors seen on the way (retried).
    pub transport_errors: usize,
    /// 429 answers seen on the way (backpressure; retried after a pause).
    pub throttled: usize,
    /// Records that never got a decision before the deadline.
    pub undecided: Vec<String>,
    /// Time from a record's first send to its decision (retries included), one entry per
    /// acknowledged record.
    pub latencies: Vec<Duration>,
    /// Every attempt, for the history checker ([`crate::checker`]).
    pub operations: Vec<Operation>,
}

impl LoadResult {
    /// The `quantile` (0..=1) of the acknowledged records' latencies; zero without any.
    pub fn latency_quantile(&self, quantile: f64) -> Duration {
        quantile_of(&self.latencies, quantile)
    }

    /// Adds another load's (or task's) outcome to this one.
    pub fn merge(&mut self, part: LoadResult) {
        self.acknowledged.extend(part.acknowledged);
        self.unavailable += part.unavailable;
        self.transport_errors += part.transport_errors;
        self.throttled += part.throttled;
        self.undecided.extend(part.undecided);
        self.latencies.extend(part.latencies);
        self.operations.extend(part.operations);
    }
}

/// The `quantile` (0..=1) of `durations` (nearest rank); zero when there are none.
pub fn quantile_of(durations: &[Duration], quantile: f64) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let index = ((last as f64) * quantile.clamp(0.0, 1.0)).round() as usize;
    sorted[index.min(last)]
}

/// The shape of a load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Seed of the first record (`first_seed..first_seed + count`): distinct seeds per load keep
    /// two loads of one deployment apart.
    pub first_seed: u64,
    /// Most records sent (the load may stop earlier, see [`run_with`]).
    pub count: u64,
    /// Submitting tasks (records in flight at most).
    pub concurrency: usize,
    /// Records started per second; `None` sends as fast as the tasks go.
    pub rate_per_second_opt: Option<f64>,
    /// Past this, a record still without a decision is given up (reported undecided).
    pub deadline: Duration,
}

/// Submits `count` records (seeds `first_seed..`) with `concurrency` tasks; `progress` counts
/// acknowledged records so a test can act mid-load.
pub async fn run(
    url: String,
    secret: &str,
    first_seed: u64,
    count: u64,
    concurrency: usize,
    deadline: Duration,
    progress: Arc<AtomicUsize>,
) -> LoadResult {
    let options = LoadOptions {
        first_seed,
        count,
        concurrency,
        rate_per_second_opt: None,
        deadline,
    };
    run_with(
        url,
        secret,
        options,
        progress,
        Arc::new(AtomicBool::new(false)),
    )
    .await
}

/// Submits up to `options.count` records, paced when `rate_per_second_opt` is set, until `stop`
/// is raised; records already started still run to their decision, so every record sent ends up
/// acknowledged or undecided (none is abandoned mid-way, which would make the history checker's
/// counts meaningless).
pub async fn run_with(
    url: String,
    secret: &str,
    options: LoadOptions,
    progress: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let end = start + options.deadline;
    // Record `index` starts no earlier than `start + index * interval`: a steady rate whatever
    // the answers' latency (up to `concurrency` records in flight).
    let interval_opt = options
        .rate_per_second_opt
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (client, url, next, progress, stop) = (
            client.clone(),
            url.clone(),
            next.clone(),
            progress.clone(),
            stop.clone(),
        );
        let (secret, first_seed, count) = (secret.to_owned(), options.first_seed, options.count);
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            loop {
                if stop.load(Ordering::SeqCst) {
                    return result;
                }
                let index = next.fetch_add(1, Ordering::SeqCst) as u64;
                if index >= count {
                    return result;
                }
                if let Some(interval) = interval_opt {
                    let slot = start + interval.saturating_mul(index.min(u32::MAX as u64) as u32);
                    tokio::time::sleep_until(slot.into()).await;
                }
                let record = signed_record(first_seed + index, &secret);
                if submit_until_decided(&client, &url, &record, (start, end), &mut result).await {
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        if let Ok(part) = task.await {
            total.merge(part);
        }
    }
    total
}

/// Sends `record` until it is decided or the run's end passes, recording each attempt and the
/// outcome in `result`; true when it was acknowledged.
async fn submit_until_decided(
    client: &reqwest::Client,
    url: &str,
    record: &serde_json::Value,
    (run_start, end): (Instant, Instant),
    result: &mut LoadResult,
) -> bool {
    let started = Instant::now();
    let since_start = || run_start.elapsed().as_millis() as u64;
    while Instant::now() < end {
        let invoked_at_ms = since_start();
        let answered = submit_json(client, url, None, record).await;
        result.operations.push(operation_of(
            record,
            "default",
            (invoked_at_ms, since_start()),
            &answered,
        ));
        match answered {
            Ok(answer) if answer.status == 200 || answer.status == 202 => {
                result.acknowledged.push(Acknowledged {
                    tenant: "default".into(),
                    pcs_id: pcs_id(record),
                    status: answer.status,
                });
                result.latencies.push(started.elapsed());
                return true;
            }
            Ok(answer) if answer.status == 503 => result.unavailable += 1,
            // Backpressure: refused at the door, never logged; the client slows down and retries.
            Ok(answer) if answer.status == 429 => result.throttled += 1,
            Ok(answer) => {
                // Any other status is a wrong answer for a valid record: report it.
                result.undecided.push(format!(
                    "{}: {} {:?}",
                    pcs_id(record),
                    answer.status,
                    answer.body
                ));
                return false;
            }
            Err(_) => result.transport_errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result.undecided.push(pcs_id(record));
    false
}

/// The history checker's record of one attempt to submit `record` as `tenant`: sent and answered
/// at `(invoked, completed)` ms since the run started, told `answered`. For tests that drive
/// their own submissions (the geo drills).
pub fn operation_of(
    record: &serde_json::Value,
    tenant: &str,
    (invoked_at_ms, completed_at_ms): (u64, u64),
    answered: &anyhow::Result<crate::http::Answer>,
) -> Operation {
    Operation {
        invoked_at_ms,
        completed_at_ms,
        tenant: tenant.to_owned(),
        pcs_id: pcs_id(record),
        digest: signed_digest(record),
        answer: match answered {
            Ok(answer) if [200, 202, 409].contains(&answer.status) => Answer::Ok {
                status: answer.status,
                outcome_code: outcome_code(&answer.body),
            },
            Ok(answer) if answer.status == 503 => Answer::Unknown,
            Ok(answer) => Answer::Fail {
                status: answer.status,
            },
            Err(_) => Answer::Unknown,
        },
    }
}

/// Lowercase hex of a record's signed digest (what the stores keep of it).
fn signed_digest(record: &serde_json::Value) -> String {
    serde_json::to_vec(record)
        .ok()
        .and_then(|bytes| events::Pcs::from_json_bytes(&bytes).ok())
        .map(|pcs| hex::encode(pcs.signed_fields().signed_digest()))
        .unwrap_or_default()
}

/// The outcome code of a decision body (for a 409, of the first outcome it carries).
fn outcome_code(body: &serde_json::Value) -> String {
    let outcome = if body["outcome"].is_object() {
        &body["outcome"]
    } else {
        body
    };
    match (
        outcome["accepted"].as_bool(),
        outcome["escalated"].as_bool(),
    ) {
        (Some(true), Some(false)) => "accepted",
        (Some(true), Some(true)) => "escalated",
        (Some(false), _) => "rejected",
        _ => "unreadable",
    }
    .to_owned()
}

/// Waits until `progress` (acknowledged records) reaches `at_least`.
pub async fn wait_for_progress(
    progress: &AtomicUsize,
    at_least: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until(
        &format!("{at_least} acknowledged records"),
        timeout,
        || async { (progress.load(Ordering::SeqCst) >= at_least).then_some(()) },
    )
    .await
}
