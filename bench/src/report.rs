//! Measuring and reporting: HDR histograms in microseconds, the live progress line, the final table
//! and the JSON report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram records (longer ones saturate at it): 10 minutes.
const HIGHEST_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
#[allow(
    clippy::expect_used,
    reason = "constant bounds that new_with_bounds accepts (low >= 1, high >= 2 * low, sigfig <= 5)"
)]
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid constant histogram bounds")
}

/// Records `elapsed` into `histogram` (saturating at the highest trackable value).
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Counters a driver updates while it runs, read by the progress line.
#[derive(Debug)]
pub struct Live {
    /// Submissions sent (HTTP requests started, Kafka records handed to the producer).
    pub sent: AtomicU64,
    /// Submissions answered (HTTP) or decided (Kafka).
    pub done: AtomicU64,
    /// Failed submissions (non-2xx/409 answers, transport errors, produce errors).
    pub errors: AtomicU64,
    /// The headline latency so far.
    pub latency: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }
}

impl Live {
    /// Records one finished submission's headline latency.
    pub fn finished(&self, elapsed: Duration) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut histogram) = self.latency.lock() {
            record(&mut histogram, elapsed);
        }
    }

    /// The progress message: counts, current p50/p99 and errors.
    pub fn message(&self) -> String {
        let (p50, p99) = self
            .latency
            .lock()
            .map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
            .unwrap_or((0, 0));
        format!(
            "sent {} done {} p50 {:.1} ms p99 {:.1} ms errors {}",
            self.sent.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0,
            self.errors.load(Ordering::Relaxed)
        )
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarizes a microsecond histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// The machine's 1, 5 and 15 minute load averages (`/proc/loadavg`), zeros where unreadable.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        values.next().unwrap_or(0.0),
        values.next().unwrap_or(0.0),
        values.next().unwrap_or(0.0),
    ]
}

/// Everything one run measured; printed as a table and optionally written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Free-form label (`--label`).
    pub label: String,
    /// `gateway` or `kafka`.
    pub target: String,
    /// `open-loop` or `closed-loop`.
    pub mode: String,
    /// Offered rate for open-loop runs (per second).
    pub offered_rate_opt: Option<f64>,
    /// HTTP connections, or the Kafka in-flight window.
    pub concurrency: usize,
    /// Tenants the records were spread over.
    pub tenants: Vec<String>,
    /// Submissions planned.
    pub planned: usize,
    /// Submissions sent.
    pub sent: u64,
    /// Sent submissions that repeat an earlier record.
    pub duplicates_planned: usize,
    /// Mean body size in bytes.
    pub record_bytes_mean: f64,
    /// Planned submissions by point-cloud shape (`sparse` ones are answered 202).
    pub shapes: BTreeMap<String, u64>,
    /// Seconds from the first send to the last answer or decision.
    pub elapsed_s: f64,
    /// Answered (HTTP) or decided (Kafka) submissions per second over `elapsed_s`.
    pub throughput_per_s: f64,
    /// Kafka only: acknowledged produces per second over the produce phase.
    pub produce_rate_per_s_opt: Option<f64>,
    /// Answers by status (`200`, `202 replayed`, `503`, `timeout`, ...) or Kafka outcomes.
    pub statuses: BTreeMap<String, u64>,
    /// Latency summaries by name (`submit`, `e2e`, `produce_ack`).
    pub latencies: BTreeMap<String, LatencySummary>,
    /// Load averages when the run started.
    pub load_before: [f64; 3],
    /// Load averages when the run ended.
    pub load_after: [f64; 3],
    /// Logical CPUs of the machine.
    pub cpus: usize,
}

impl Report {
    /// Submissions that were not answered with a verdict (2xx or 409).
    pub fn errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(label, _)| !is_success(label))
            .map(|(_, count)| *count)
            .sum()
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rate = self
            .offered_rate_opt
            .map_or_else(String::new, |rate| format!(" at {rate:.0}/s"));
        out.push_str(&format!(
            "flk bench {} ({}{}, concurrency {}){}\n",
            self.target,
            self.mode,
            rate,
            self.concurrency,
            if self.label.is_empty() {
                String::new()
            } else {
                format!(" [{}]", self.label)
            }
        ));
        out.push_str(&format!(
            "record size {:.0} B mean; {} sent ({} planned, {} duplicates planned) over {} tenants\n",
            self.record_bytes_mean,
            self.sent,
            self.planned,
            self.duplicates_planned,
            self.tenants.len()
        ));
        let shapes: Vec<String> = self
            .shapes
            .iter()
            .map(|(shape, count)| format!("{shape} {count}"))
            .collect();
        out.push_str(&format!("shapes: {}\n", shapes.join(", ")));
        out.push_str(&format!(
            "elapsed {:.2} s; throughput {:.0}/s{}\n",
            self.elapsed_s,
            self.throughput_per_s,
            self.produce_rate_per_s_opt
                .map_or_else(String::new, |rate| format!("; produce {rate:.0}/s"))
        ));
        out.push_str(&format!(
            "machine: {} cpus, load {:.2} {:.2} {:.2} before, {:.2} {:.2} {:.2} after\n",
            self.cpus,
            self.load_before[0],
            self.load_before[1],
            self.load_before[2],
            self.load_after[0],
            self.load_after[1],
            self.load_after[2]
        ));
        out.push_str(&format!(
            "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "latency ms", "count", "mean", "p50", "p95", "p99", "p99.9", "max"
        ));
        for (name, summary) in &self.latencies {
            out.push_str(&format!(
                "{:<12} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                name,
                summary.count,
                summary.mean_ms,
                summary.p50_ms,
                summary.p95_ms,
                summary.p99_ms,
                summary.p999_ms,
                summary.max_ms
            ));
        }
        out.push_str(&format!("{:<20} {:>9}\n", "answer", "count"));
        for (label, count) in &self.statuses {
            out.push_str(&format!("{label:<20} {count:>9}\n"));
        }
        out.push_str(&format!("errors {}\n", self.errors()));
        out
    }
}

/// A status label that is a verdict rather than a failure.
fn is_success(label: &str) -> bool {
    label.starts_with('2') || label.starts_with("409") || label == "decided"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_in_milliseconds_and_errors_exclude_verdicts() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let summary = LatencySummary::of(&h);
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        let report = Report {
            label: String::new(),
            target: "gateway".into(),
            mode: "closed-loop".into(),
            offered_rate_opt: None,
            concurrency: 1,
            tenants: vec!["a".into()],
            planned: 5,
            sent: 5,
            duplicates_planned: 0,
            record_bytes_mean: 800.0,
            shapes: BTreeMap::new(),
            elapsed_s: 1.0,
            throughput_per_s: 5.0,
            produce_rate_per_s_opt: None,
            statuses: [
                ("200".to_owned(), 1),
                ("202 replayed".to_owned(), 1),
                ("409".to_owned(), 1),
                ("503".to_owned(), 1),
                ("timeout".to_owned(), 1),
            ]
            .into(),
            latencies: [("submit".to_owned(), summary)].into(),
            load_before: [0.0; 3],
            load_after: [0.0; 3],
            cpus: 2,
        };
        assert_eq!(report.errors(), 2);
        assert!(report.table().contains("submit"));
    }
}
