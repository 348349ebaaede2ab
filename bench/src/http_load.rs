//! Drives the plan through the gateway: `connections` HTTP/1.1 keep-alive connections, each a
//! worker that takes the next submission from a shared counter.
//!
//! Open loop (`rate_opt = Some(r)`): submission `i` is due at `start + i / r` whatever happened to
//! earlier ones, and its latency is measured from that due time, so a stalled server shows up as
//! queueing delay instead of silently slowing the offered load (no coordinated omission). Closed
//! loop: every worker sends its next submission as soon as the previous answer arrived, and latency
//! is measured from the actual send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::history::{Attempt, outcome_code};
use super::records::Plan;
use super::report::{Live, histogram, record};

/// How to drive the gateway.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `POST` target: `<base>/v1/pcs/submit`.
    pub submit_url: String,
    /// Keep-alive connections (one worker each).
    pub connections: usize,
    /// Offered rate per second; `None` for closed loop.
    pub rate_opt: Option<f64>,
    /// Stop sending after this long.
    pub duration: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Keep every attempt for the history file (`--history`).
    pub record_history: bool,
}

/// What the drive measured.
#[derive(Debug)]
pub struct HttpResult {
    /// Answers by label.
    pub statuses: BTreeMap<String, u64>,
    /// Submit latency (due time or send to full answer), microseconds.
    pub submit: Histogram<u64>,
    /// Requests sent.
    pub sent: u64,
    /// From the first due time to the last answer.
    pub elapsed: Duration,
    /// Every attempt, when the history is recorded.
    pub attempts: Vec<Attempt>,
}

/// Sends the plan and waits for every answer.
pub async fn run(
    plan: Arc<Plan>,
    options: HttpOptions,
    live: Arc<Live>,
) -> anyhow::Result<HttpResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.connections.max(1) {
        // One client per worker with at most one idle connection: exactly one keep-alive
        // connection per worker.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(options.request_timeout)
            .tcp_nodelay(true)
            .build()?;
        let (plan, options, next, live) =
            (plan.clone(), options.clone(), next.clone(), live.clone());
        workers.push(tokio::spawn(async move {
            worker(client, &plan, &options, &next, &live, started).await
        }));
    }
    let mut result = HttpResult {
        statuses: BTreeMap::new(),
        submit: histogram(),
        sent: 0,
        elapsed: Duration::ZERO,
        attempts: Vec::new(),
    };
    for worker in workers {
        let part = worker.await?;
        for (label, count) in part.statuses {
            *result.statuses.entry(label).or_default() += count;
        }
        result.submit.add(&part.submit).ok();
        result.sent += part.sent;
        result.attempts.extend(part.attempts);
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

async fn worker(
    client: reqwest::Client,
    plan: &Plan,
    options: &HttpOptions,
    next: &AtomicUsize,
    live: &Live,
    started: Instant,
) -> HttpResult {
    let mut result = HttpResult {
        statuses: BTreeMap::new(),
        submit: histogram(),
        sent: 0,
        elapsed: Duration::ZERO,
        attempts: Vec::new(),
    };
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(submission) = plan.submissions.get(index) else {
            break;
        };
        let due = match options.rate_opt {
            Some(rate) => started + Duration::from_secs_f64(index as f64 / rate),
            None => Instant::now(),
        };
        if due.duration_since(started) > options.duration {
            break;
        }
        if due > Instant::now() {
            // Only when early: even a past deadline costs a timer tick (1 ms) in tokio.
            tokio::time::sleep_until(due.into()).await;
        }
        let send_at = match options.rate_opt {
            Some(_) => due,
            None => Instant::now(),
        };
        live.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        result.sent += 1;
        let tenant = &plan.tenants[submission.tenant].name;
        let sent = client
            .post(&options.submit_url)
            .header("X-Tenant-Id", tenant)
            .header("Content-Type", "application/json")
            .body(submission.body.to_vec())
            .send()
            .await;
        let mut answer_opt = None;
        let label = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let replayed = response.headers().contains_key("Idempotent-Replayed");
                // Read the whole body so the connection is reused.
                match response.bytes().await {
                    Ok(body) => {
                        if options.record_history {
                            answer_opt = Some((status, outcome_code(&body)));
                        }
                        if replayed {
                            format!("{status} replayed")
                        } else {
                            status.to_string()
                        }
                    }
                    Err(error) if error.is_timeout() => "timeout".to_owned(),
                    Err(_) => "connection error".to_owned(),
                }
            }
            Err(error) if error.is_timeout() => "timeout".to_owned(),
            Err(_) => "connection error".to_owned(),
        };
        let elapsed = send_at.elapsed();
        if options.record_history {
            let since_start = |at: Instant| at.duration_since(started).as_millis() as u64;
            result.attempts.push(Attempt {
                index,
                invoked_at_ms: since_start(send_at),
                completed_at_ms: since_start(Instant::now()),
                status_opt: answer_opt.as_ref().map(|(status, _)| *status),
                outcome_code_opt: answer_opt.and_then(|(_, code)| code),
            });
        }
        record(&mut result.submit, elapsed);
        live.finished(elapsed);
        if !(label.starts_with('2') || label.starts_with("409")) {
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
        *result.statuses.entry(label).or_default() += 1;
    }
    result
}
