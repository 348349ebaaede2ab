//! Metrics from every role: processes without a gateway serve `/metrics` and `/debug/actors` on
//! `[telemetry] metrics_listen_opt`, behind the same Basic Auth as the gateway's, with the actors'
//! per-partition lag, transaction times, batch sizes and progress age.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaos::deployment::{Deployment, TestTenant};
use chaos::http::{metric_sum, submit_json};
use chaos::process::FlkProcess;
use chaos::records::signed_record;
use chaos::wait_until;

const SECRET: &str = "testsecret";
const AUTH: &str = "scraper:s3cret";

async fn scrape(client: &reqwest::Client, base: &str) -> (u16, String) {
    let response = client
        .get(format!("{base}/metrics"))
        .header("Authorization", format!("Basic {}", BASE64.encode(AUTH)))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_without_a_gateway_are_scraped_with_their_actors_metrics() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.extra_toml =
        "[telemetry]\nmetrics_listen_opt = \"127.0.0.1:0\"\n[tiering]\ndemote_interval_ms = 200\n"
            .to_owned();
    // The gateway's own [gateway] section is written by the deployment; its Basic Auth comes from
    // the environment, the way an operator sets a secret.
    let env = [("FLK_METRICS_BASIC_AUTH", AUTH)];
    let gateway = FlkProcess::start_with_env(&deployment, "gateway", "gateway", &env).unwrap();
    let workers =
        FlkProcess::start_with_env(&deployment, "shard,projector", "workers", &env).unwrap();
    let demoter = FlkProcess::start_with_env(&deployment, "demoter", "demoter", &env).unwrap();
    let client = reqwest::Client::new();
    for seed in 0..20 {
        let answer = submit_json(
            &client,
            gateway.url(),
            Some("default"),
            &signed_record(97_000 + seed, SECRET),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }

    let workers_url = workers.metrics_url().unwrap();
    // Without credentials: 401, like the gateway's /metrics.
    let refused = client
        .get(format!("{workers_url}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let text = wait_until(
        "the projector's metrics",
        Duration::from_secs(30),
        || async {
            let (status, text) = scrape(&client, &workers_url).await;
            // Lag is known once the consumer reports its partitions' ends (a statistics interval).
            (status == 200
                && metric_sum(&text, "flk_projector_batch_events_count", &[]) > 0.0
                && text.contains(
                    "flk_actor_partition_lag_records{partition=\"0\",role=\"projector\"}",
                )
                && text.contains("flk_actor_progress_age_seconds{role=\"shard\"}"))
            .then_some(text)
        },
    )
    .await
    .unwrap();
    assert!(
        metric_sum(&text, "flk_projector_batch_events_sum", &[]) >= 20.0,
        "{text}"
    );
    assert!(metric_sum(&text, "flk_projector_transaction_seconds_count", &[]) > 0.0);
    assert!(metric_sum(&text, "flk_decisions_produced_total", &[]) >= 20.0);
    let actors = client
        .get(format!("{workers_url}/debug/actors"))
        .header("Authorization", format!("Basic {}", BASE64.encode(AUTH)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(actors.contains("\"role\":\"projector\""), "{actors}");

    // A singleton's process: the demoter's cycles and state.
    let demoter_url = demoter.metrics_url().unwrap();
    let text = wait_until(
        "the demoter's progress",
        Duration::from_secs(30),
        || async {
            let (status, text) = scrape(&client, &demoter_url).await;
            (status == 200 && text.contains("flk_actor_progress_age_seconds{role=\"demoter\"}"))
                .then_some(text)
        },
    )
    .await
    .unwrap();
    assert!(text.contains("flk_tier_demote_errors_total 0"), "{text}");
    assert!(
        text.contains("flk_tier_cold_misses_total{reason=\"unreadable\"} 0"),
        "{text}"
    );
    assert_eq!(
        client
            .get(format!("{demoter_url}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    drop((gateway, workers, demoter));
    deployment.cleanup().await;
}
