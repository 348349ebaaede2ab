//! A bounded test load: distinct signed records submitted concurrently, each retried on 503 or a
//! transport error until it gets a decision (retrying is safe by contract: the retry is a
//! duplicate and gets the first decision back).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::history::Acknowledged;
use crate::http::submit_json;
use crate::records::{pcs_id, signed_record};

/// Outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Records acknowledged with a decision (200/202, first or replayed).
    pub acknowledged: Vec<Acknowledged>,
    /// 503 answers seen on the way (retried).
    pub unavailable: usize,
    /// Transport errors seen on the way (retried).
    pub transport_errors: usize,
    /// Records that never got a decision before the deadline.
    pub undecided: Vec<String>,
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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + deadline;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, progress) =
            (client.clone(), url.clone(), next.clone(), progress.clone());
        let secret = secret.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst) as u64;
                if index >= count {
                    return result;
                }
                let record = signed_record(first_seed + index, &secret);
                let mut decided = false;
                while Instant::now() < end {
                    match submit_json(&client, &url, None, &record).await {
                        Ok(answer) if answer.status == 200 || answer.status == 202 => {
                            result.acknowledged.push(Acknowledged {
                                tenant: "default".into(),
                                pcs_id: pcs_id(&record),
                                status: answer.status,
                            });
                            progress.fetch_add(1, Ordering::SeqCst);
                            decided = true;
                            break;
                        }
                        Ok(answer) if answer.status == 503 => result.unavailable += 1,
                        Ok(answer) => {
                            // Any other status is a wrong answer for a valid record: report it.
                            result.undecided.push(format!(
                                "{}: {} {:?}",
                                pcs_id(&record),
                                answer.status,
                                answer.body
                            ));
                            decided = true;
                            break;
                        }
                        Err(_) => result.transport_errors += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !decided {
                    result.undecided.push(pcs_id(&record));
                }
            }
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        if let Ok(part) = task.await {
            total.acknowledged.extend(part.acknowledged);
            total.unavailable += part.unavailable;
            total.transport_errors += part.transport_errors;
            total.undecided.extend(part.undecided);
        }
    }
    total
}
