//! Structured logs as an operator reads them: at debug level for `actors::shard`, one JSON line per
//! decision with the tenant, pcs_id and verdict, carrying the trace id of the submission's trace;
//! at the default level no such line; and never the record's content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::http::submit_json;
use chaos::process::FlkProcess;
use chaos::records::{pcs_id, signed_record};
use chaos::wait_until;
use serde_json::Value;

const SECRET: &str = "testsecret";

fn decided_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "decided")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_debug_line_per_decision_with_its_trace_id_and_no_payload() {
    let otlp = std::env::var("FLK_OTLP_ENDPOINT").unwrap_or_else(|_| {
        panic!("FLK_OTLP_ENDPOINT is not set: start the stack with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`")
    });
    let deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let client = reqwest::Client::new();
    let records: Vec<Value> = (0..6).map(|i| signed_record(99_500 + i, SECRET)).collect();

    let mut debug = FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector",
        "debug",
        &[
            (
                "RUST_LOG",
                "info,rdkafka=warn,actix_server=warn,actors::shard=debug",
            ),
            ("FLK_OTLP_ENDPOINT", otlp.as_str()),
        ],
    )
    .unwrap();
    for record in &records[..3] {
        assert_eq!(
            submit_json(&client, debug.url(), Some("default"), record)
                .await
                .unwrap()
                .status,
            200
        );
    }
    let lines = wait_until(
        "a decided line per record",
        Duration::from_secs(30),
        || async {
            let lines = decided_lines(&debug.log());
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await
    .unwrap();
    for (line, record) in lines.iter().zip(&records[..3]) {
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["fields"]["tenant"], "default");
        assert_eq!(line["fields"]["pcs_id"], pcs_id(record));
        assert_eq!(line["fields"]["verdict"], "accepted");
        let trace_id = line["trace_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no trace id: {line}"));
        assert_eq!(trace_id.len(), 32);
    }
    let log = debug.log();
    for record in &records[..3] {
        // Neither the record's content nor its signature is ever logged.
        assert!(!log.contains(record["merkle_root"].as_str().unwrap()));
        assert!(!log.contains(record["sig"].as_str().unwrap()));
    }
    debug.stop(Duration::from_secs(30)).await.unwrap();

    // At the default level there is no per-decision line.
    let quiet = FlkProcess::start(&deployment, "gateway,shard,projector", "quiet").unwrap();
    for record in &records[3..] {
        assert_eq!(
            submit_json(&client, quiet.url(), Some("default"), record)
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert!(decided_lines(&quiet.log()).is_empty());
    drop(quiet);
    deployment.cleanup().await;
}

/// After a run of the whole bad-input corpus and valid records with every log level on debug and
/// spans exported: no log line, no exported span and no metric holds a tenant's secret, a
/// record's signature or a payload's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_span_or_metric_holds_a_secret_a_signature_or_a_payload() {
    use chaos::bad_input::{self, DISABLED_TENANT};
    let otlp = std::env::var("FLK_OTLP_ENDPOINT").unwrap_or_else(|_| {
        panic!("FLK_OTLP_ENDPOINT is not set: start the stack with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`")
    });
    let span_file = std::env::var("FLK_OTEL_FILE").unwrap_or_else(|_| {
        panic!("FLK_OTEL_FILE is not set: start the stack with `infra/scripts/stack.sh up` and `. .local/stack/env.sh`")
    });
    let mut disabled = TestTenant::signed(DISABLED_TENANT, bad_input::SECRET);
    disabled.enabled = false;
    let deployment = Deployment::new(vec![
        TestTenant::signed("default", bad_input::SECRET),
        disabled,
    ])
    .unwrap();
    let flk = FlkProcess::start_with_env(
        &deployment,
        "gateway,shard,projector",
        "verbose",
        &[
            (
                "RUST_LOG",
                "debug,rdkafka=info,h2=info,hyper=info,tokio_postgres=info",
            ),
            ("FLK_OTLP_ENDPOINT", otlp.as_str()),
        ],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut markers: Vec<String> = vec![bad_input::SECRET.to_owned()];
    let mut trace_ids = Vec::new();
    for (index, case) in bad_input::corpus(950_000)
        .iter()
        .filter(|case| case.declared_only_opt.is_none())
        .enumerate()
    {
        let trace_id = format!("{:032x}", 0xf1c0_0000_u128 + index as u128);
        let mut request = client
            .post(format!("{}/v1/pcs/submit", flk.url()))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .body(case.body.clone());
        if let Some(tenant) = &case.tenant_opt {
            request = request.header(
                "X-Tenant-Id",
                reqwest::header::HeaderValue::from_bytes(tenant).unwrap(),
            );
        }
        request.send().await.unwrap();
        trace_ids.push(trace_id);
        // What only the record carries: its signature and its Merkle root.
        if let Ok(record) = serde_json::from_slice::<Value>(&case.body) {
            for key in ["sig", "merkle_root"] {
                if let Some(text) = record[key].as_str().filter(|text| text.len() >= 16) {
                    markers.push(text.to_owned());
                }
            }
        }
    }
    assert!(markers.len() > 100, "{} markers", markers.len());
    // Spans of the last request exported: the earlier ones were exported before them.
    let last = trace_ids.last().unwrap().clone();
    let spans = wait_until(
        "the run's spans exported",
        Duration::from_secs(60),
        || async {
            let spans = std::fs::read_to_string(&span_file).ok()?;
            spans.contains(&last).then_some(spans)
        },
    )
    .await
    .unwrap();
    let metrics = chaos::http::metrics(&client, flk.url()).await.unwrap();
    let log = flk.log();
    assert!(log.lines().count() > 100, "the debug log is there");
    for marker in &markers {
        let shown: String = marker.chars().take(24).collect();
        assert!(!log.contains(marker.as_str()), "the log holds {shown}");
        assert!(!spans.contains(marker.as_str()), "a span holds {shown}");
        assert!(!metrics.contains(marker.as_str()), "/metrics holds {shown}");
    }
    drop(flk);
    deployment.cleanup().await;
}
