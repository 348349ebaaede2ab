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
