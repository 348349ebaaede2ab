//! Requests each Kafka client sends to the brokers, by type (`Produce`, `Fetch`, `OffsetCommit`,
//! ...), taken from librdkafka's statistics into `flk_kafka_requests_total`. This is what a record
//! costs in broker round trips: `infra/scripts/bench.sh` divides it by the records decided.
//!
//! librdkafka reports cumulative counts per client and per broker connection once per
//! `statistics.interval.ms`; each client keeps the totals it last saw and adds only the growth,
//! so the counter survives clients being made again (an actor restart opens a new consumer).

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::statistics::Statistics;

use crate::metrics;

/// How often librdkafka reports, in ms (the counter lags the truth by at most this much).
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// The totals one client last reported, per request type.
#[derive(Debug, Default)]
pub struct RequestTally {
    /// Request type -> requests sent so far over every broker connection of the client.
    last_totals: Mutex<HashMap<String, i64>>,
}

impl RequestTally {
    /// Adds what `statistics` reports beyond the previous report to the process's counter,
    /// labelled with the client's `client.id`.
    pub fn record(&self, statistics: &Statistics) {
        let mut totals: HashMap<&str, i64> = HashMap::new();
        for broker in statistics.brokers.values() {
            for (request, count) in &broker.req {
                *totals.entry(request.as_str()).or_default() += count;
            }
        }
        let mut last_totals = self
            .last_totals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (request, total) in totals {
            let last = last_totals.entry(request.to_owned()).or_default();
            // A broker connection that went away takes its counts with it: the total can
            // shrink, and then there is nothing new to add.
            if let Ok(grown) = u64::try_from(total - *last)
                && grown > 0
            {
                metrics::kafka_requests()
                    .with_label_values(&[statistics.client_id.as_str(), request])
                    .inc_by(grown);
            }
            *last = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statistics(client_id: &str, brokers: &[&[(&str, i64)]]) -> Statistics {
        Statistics {
            client_id: client_id.to_owned(),
            brokers: brokers
                .iter()
                .enumerate()
                .map(|(index, requests)| {
                    let broker = rdkafka::statistics::Broker {
                        req: requests
                            .iter()
                            .map(|(name, count)| ((*name).to_owned(), *count))
                            .collect(),
                        ..Default::default()
                    };
                    (format!("broker-{index}"), broker)
                })
                .collect(),
            ..Default::default()
        }
    }

    fn count(client_id: &str, request: &str) -> u64 {
        metrics::kafka_requests()
            .with_label_values(&[client_id, request])
            .get()
    }

    #[test]
    fn adds_the_growth_summed_over_brokers_and_never_goes_back() {
        let client = "tally-test-growth";
        let tally = RequestTally::default();
        tally.record(&statistics(
            client,
            &[&[("Fetch", 10), ("Produce", 0)], &[("Fetch", 5)]],
        ));
        assert_eq!(count(client, "Fetch"), 15);
        assert_eq!(count(client, "Produce"), 0);
        tally.record(&statistics(
            client,
            &[&[("Fetch", 12), ("Produce", 3)], &[("Fetch", 5)]],
        ));
        assert_eq!(count(client, "Fetch"), 17);
        assert_eq!(count(client, "Produce"), 3);
        // The second broker's connection went away: its five fetches leave the total.
        tally.record(&statistics(client, &[&[("Fetch", 13), ("Produce", 3)]]));
        assert_eq!(count(client, "Fetch"), 17);
        tally.record(&statistics(client, &[&[("Fetch", 20), ("Produce", 3)]]));
        assert_eq!(count(client, "Fetch"), 24);
    }

    #[test]
    fn a_new_client_of_the_same_name_adds_to_the_same_counter() {
        let client = "tally-test-restart";
        RequestTally::default().record(&statistics(client, &[&[("Fetch", 4)]]));
        RequestTally::default().record(&statistics(client, &[&[("Fetch", 6)]]));
        assert_eq!(count(client, "Fetch"), 10);
    }
}
