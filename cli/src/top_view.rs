//! What `flk top` shows, computed from two scrapes of Prometheus text (pure; no I/O): per process
//! and role, the rates between the scrapes, lag, in-flight work, restarts and progress age; per
//! process, submit rate, error rate and the p99 submit latency of the interval.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric (series) name, e.g. `flk_submit_latency_seconds_bucket`.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses the Prometheus text exposition format (the subset FLK writes: no timestamps, label
/// values without escaped quotes). Lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split("\",")
                    .filter_map(|pair| {
                        let (key, value) = pair.split_once("=\"")?;
                        Some((key.to_owned(), value.trim_end_matches('"').to_owned()))
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn sum(samples: &[Sample], name: &str, filter: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name && filter(sample))
        .map(|sample| sample.value)
        .sum()
}

/// One role of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    /// Process (the URL scraped).
    pub process: String,
    /// Role.
    pub role: String,
    /// Records per second the role finished in the interval (decisions produced, decisions
    /// applied, audit task attempts, leaves, entries demoted).
    pub rate: f64,
    /// Records behind.
    pub lag: f64,
    /// Records in flight.
    pub in_flight: f64,
    /// Restarts so far.
    pub restarts: f64,
    /// Seconds since the last progress.
    pub progress_age_opt: Option<f64>,
}

/// One process's gateway figures for the interval.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayRow {
    /// Process.
    pub process: String,
    /// Submissions answered per second.
    pub rate: f64,
    /// 5xx answers per second.
    pub errors: f64,
    /// p99 submit latency of the interval (ms), from the histogram's buckets.
    pub p99_ms_opt: Option<f64>,
}

fn role_rate(role: &str, before: &[Sample], after: &[Sample], seconds: f64) -> f64 {
    let name = match role {
        "shard" => "flk_decisions_produced_total",
        "projector" => "flk_decisions_applied_total",
        "anchorer" => "flk_audit_leaves_total",
        "audit_worker" => "flk_audit_task_attempts_total",
        "demoter" => "flk_tier_demoted_entries_total",
        _ => return 0.0,
    };
    ((sum(after, name, |_| true) - sum(before, name, |_| true)) / seconds).max(0.0)
}

/// The roles of one process, from two scrapes `seconds` apart.
pub fn role_rows(process: &str, before: &[Sample], after: &[Sample], seconds: f64) -> Vec<RoleRow> {
    let mut roles: Vec<String> = after
        .iter()
        .filter(|sample| sample.name == "flk_actor_in_flight_records")
        .filter_map(|sample| sample.label("role").map(str::to_owned))
        .collect();
    roles.sort();
    roles.dedup();
    roles
        .into_iter()
        .map(|role| {
            let of_role = |sample: &Sample| sample.label("role") == Some(role.as_str());
            let restarts = sum(after, "flk_actor_restarts_total", |sample| {
                sample.label("actor") == Some(role.as_str())
            });
            let progress_age_opt = after
                .iter()
                .find(|sample| sample.name == "flk_actor_progress_age_seconds" && of_role(sample))
                .map(|sample| sample.value);
            RoleRow {
                process: process.to_owned(),
                rate: role_rate(&role, before, after, seconds),
                lag: sum(after, "flk_actor_lag_records", of_role),
                in_flight: sum(after, "flk_actor_in_flight_records", of_role),
                restarts,
                progress_age_opt,
                role,
            }
        })
        .collect()
}

/// The gateway figures of one process, when it answered submissions.
pub fn gateway_row(
    process: &str,
    before: &[Sample],
    after: &[Sample],
    seconds: f64,
) -> Option<GatewayRow> {
    if !after
        .iter()
        .any(|sample| sample.name == "flk_http_responses_total")
    {
        return None;
    }
    let answered = sum(after, "flk_http_responses_total", |_| true)
        - sum(before, "flk_http_responses_total", |_| true);
    let server_error = |sample: &Sample| {
        sample
            .label("status")
            .is_some_and(|status| status.starts_with('5'))
    };
    let errors = sum(after, "flk_http_responses_total", server_error)
        - sum(before, "flk_http_responses_total", server_error);
    Some(GatewayRow {
        process: process.to_owned(),
        rate: (answered / seconds).max(0.0),
        errors: (errors / seconds).max(0.0),
        p99_ms_opt: interval_quantile(before, after, "flk_submit_latency_seconds_bucket", 0.99)
            .map(|seconds| seconds * 1000.0),
    })
}

/// The `quantile` of the observations made between the scrapes, from cumulative buckets summed
/// over every label but `le` (the bucket's upper bound, as Prometheus' histogram_quantile).
pub fn interval_quantile(
    before: &[Sample],
    after: &[Sample],
    bucket: &str,
    quantile: f64,
) -> Option<f64> {
    let cumulative = |samples: &[Sample]| {
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for sample in samples.iter().filter(|sample| sample.name == bucket) {
            let Some(le) = sample.label("le") else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            if bound.is_nan() {
                continue;
            }
            by_le.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sample.value;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|left, right| left.0.total_cmp(&right.0));
        buckets
    };
    let (old, new) = (cumulative(before), cumulative(after));
    let deltas: Vec<(f64, f64)> = new
        .iter()
        .map(|(bound, count)| {
            let earlier = old
                .iter()
                .find(|(other, _)| other == bound)
                .map_or(0.0, |(_, count)| *count);
            (*bound, count - earlier)
        })
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = quantile * total;
    deltas
        .iter()
        .find(|(_, count)| *count >= rank)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
        .or_else(|| {
            deltas
                .iter()
                .rev()
                .find(|(bound, _)| bound.is_finite())
                .map(|(bound, _)| *bound)
        })
}

/// The screen: a gateway table and a roles table.
pub fn render(gateways: &[GatewayRow], roles: &[RoleRow], interval_secs: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "flk top: every {interval_secs:.0} s (Ctrl-C quits)");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:>12} {:>10} {:>12}",
        "gateway", "submits/s", "5xx/s", "p99 ms"
    );
    for row in gateways {
        let p99 = row
            .p99_ms_opt
            .map_or("-".to_owned(), |ms| format!("{ms:.1}"));
        let _ = writeln!(
            out,
            "{:<28} {:>12.1} {:>10.1} {:>12}",
            row.process, row.rate, row.errors, p99
        );
    }
    if gateways.is_empty() {
        let _ = writeln!(out, "(no gateway among the processes)");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:<13} {:>10} {:>10} {:>10} {:>9} {:>10}",
        "process", "role", "records/s", "lag", "in flight", "restarts", "progress"
    );
    for row in roles {
        let age = row
            .progress_age_opt
            .map_or("-".to_owned(), |age| format!("{age:.1}s ago"));
        let _ = writeln!(
            out,
            "{:<28} {:<13} {:>10.1} {:>10} {:>10} {:>9} {:>10}",
            row.process, row.role, row.rate, row.lag, row.in_flight, row.restarts, age
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x\nflk_decisions_produced_total{verdict=\"verified\"} 100\n\
        flk_actor_in_flight_records{role=\"shard\"} 1\nflk_actor_lag_records{role=\"shard\"} 5\n\
        flk_http_responses_total{status=\"200\"} 10\nflk_http_responses_total{status=\"503\"} 0\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"0.01\"} 10\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"0.1\"} 10\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"+Inf\"} 10\n";
    const AFTER: &str = "flk_decisions_produced_total{verdict=\"verified\"} 300\n\
        flk_actor_in_flight_records{role=\"shard\"} 2\nflk_actor_lag_records{role=\"shard\"} 7\n\
        flk_actor_restarts_total{actor=\"shard\"} 1\nflk_actor_progress_age_seconds{role=\"shard\"} 0.5\n\
        flk_http_responses_total{status=\"200\"} 110\nflk_http_responses_total{status=\"503\"} 4\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"0.01\"} 60\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"0.1\"} 109\n\
        flk_submit_latency_seconds_bucket{status=\"200\",le=\"+Inf\"} 110\n";

    #[test]
    fn rates_lag_and_the_interval_p99_come_from_two_scrapes() {
        let (before, after) = (parse(BEFORE), parse(AFTER));
        let roles = role_rows("p", &before, &after, 2.0);
        assert_eq!(roles.len(), 1);
        assert_eq!(roles[0].role, "shard");
        assert_eq!(roles[0].rate, 100.0);
        assert_eq!(
            (roles[0].lag, roles[0].in_flight, roles[0].restarts),
            (7.0, 2.0, 1.0)
        );
        assert_eq!(roles[0].progress_age_opt, Some(0.5));
        let gateway = gateway_row("p", &before, &after, 2.0).expect("a gateway");
        assert_eq!((gateway.rate, gateway.errors), (52.0, 2.0));
        // 100 observations in the interval: 50 under 10 ms, 49 more under 100 ms, 1 above.
        assert_eq!(gateway.p99_ms_opt, Some(100.0));
        let screen = render(&[gateway], &roles, 2.0);
        assert!(screen.contains("shard"), "{screen}");
    }

    #[test]
    fn no_observations_means_no_quantile_and_junk_lines_are_skipped() {
        let samples = parse("garbage\nflk_x{a=\"b\"} not-a-number\nflk_y 3\n");
        assert_eq!(samples.len(), 1);
        assert_eq!(
            interval_quantile(
                &samples,
                &samples,
                "flk_submit_latency_seconds_bucket",
                0.99
            ),
            None
        );
    }
}
