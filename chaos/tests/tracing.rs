//! Traces across the pipeline: a record submitted with a W3C `traceparent` yields one trace whose
//! spans come from the gateway, the shard and the projector, each in its own process, joined over
//! both Kafka hops (the submission's `traceparent` header, then the decision event's field).
//!
//! The spans are read back from the OpenTelemetry Collector of the local stack
//! (`infra/scripts/stack.sh up otel`), whose file exporter writes OTLP JSON lines to
//! `$FLK_OTEL_FILE`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::records::signed_record;
use chaos::wait_until;
use serde_json::Value;

const SECRET: &str = "testsecret";

/// One exported span, as the collector wrote it.
#[derive(Debug, Clone)]
struct ExportedSpan {
    /// Span name (`gateway.submit`, ...).
    name: String,
    /// Its id (16 hex digits).
    span_id: String,
    /// Its parent's id; empty for a root span.
    parent_span_id: String,
    /// The `flk.roles` resource attribute of the process that exported it.
    roles: String,
    /// `service.name` of that process.
    service: String,
}

fn string_attribute(attributes: &Value, key: &str) -> String {
    attributes
        .as_array()
        .into_iter()
        .flatten()
        .find(|attribute| attribute["key"] == key)
        .and_then(|attribute| attribute["value"]["stringValue"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Every span of `trace_id` in the collector's file (lines still being written are skipped).
fn spans_of_trace(file: &Path, trace_id: &str) -> Vec<ExportedSpan> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut spans = Vec::new();
    for line in text.lines().filter(|line| line.contains(trace_id)) {
        let Ok(export) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for resource_spans in export["resourceSpans"].as_array().into_iter().flatten() {
            let attributes = &resource_spans["resource"]["attributes"];
            let roles = string_attribute(attributes, "flk.roles");
            let service = string_attribute(attributes, "service.name");
            for scope_spans in resource_spans["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for span in scope_spans["spans"].as_array().into_iter().flatten() {
                    if span["traceId"] != trace_id {
                        continue;
                    }
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                    spans.push(ExportedSpan {
                        name: text("name"),
                        span_id: text("spanId"),
                        parent_span_id: text("parentSpanId"),
                        roles: roles.clone(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_gateway_over_kafka_to_the_projector() {
    let Ok(otel_file) = std::env::var("FLK_OTEL_FILE") else {
        eprintln!(
            "skipped: FLK_OTEL_FILE is not set; start the collector with \
             `infra/scripts/stack.sh up otel` and source .local/stack/env.sh"
        );
        return;
    };
    let endpoint =
        std::env::var("FLK_OTLP_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:14318".to_owned());
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 30_000;
    // Each role in its own process: the context can only travel through Kafka.
    let env = [
        ("FLK_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 100 ms instead of every 5 s, so the test waits less.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let shard = FlkProcess::start_with_env(&deployment, "shard", "shard", &env).unwrap();
    let projector =
        FlkProcess::start_with_env(&deployment, "projector", "projector", &env).unwrap();
    let gateway = FlkProcess::start_with_env(&deployment, "gateway", "gateway", &env).unwrap();

    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span_id = format!("{:016x}", rand::random::<u64>() | 1);
    let traceparent = format!("00-{trace_id}-{caller_span_id}-01");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/pcs/submit", gateway.url()))
        .header("traceparent", &traceparent)
        .json(&signed_record(11, SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}\ngateway log:\n{}\nshard log:\n{}\nprojector log:\n{}",
        response.text().await.unwrap_or_default(),
        gateway.log(),
        shard.log(),
        projector.log()
    );

    let wanted = ["gateway.submit", "shard.decide", "projector.apply_batch"];
    let spans = wait_until(
        "the trace's spans from the gateway, the shard and the projector in the collector's file",
        Duration::from_secs(60),
        || {
            let spans = spans_of_trace(Path::new(&otel_file), &trace_id);
            let complete = wanted
                .iter()
                .all(|name| spans.iter().any(|span| span.name == *name));
            async move { complete.then_some(spans) }
        },
    )
    .await
    .unwrap_or_else(|error| {
        panic!(
            "{error}\nspans of the trace so far: {:?}\nshard log:\n{}\nprojector log:\n{}",
            spans_of_trace(Path::new(&otel_file), &trace_id),
            shard.log(),
            projector.log()
        )
    });

    let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap();
    let submit = find("gateway.submit");
    let decide = find("shard.decide");
    let apply = find("projector.apply_batch");
    // Each hop is a child of the one before, starting at the caller's span.
    assert_eq!(submit.parent_span_id, caller_span_id, "{spans:?}");
    assert_eq!(decide.parent_span_id, submit.span_id, "{spans:?}");
    assert_eq!(apply.parent_span_id, decide.span_id, "{spans:?}");
    // ... and each comes from the process running that role.
    assert_eq!(submit.roles, "gateway");
    assert_eq!(decide.roles, "shard");
    assert_eq!(apply.roles, "projector");
    assert!(spans.iter().all(|span| span.service == "flk"), "{spans:?}");

    drop((gateway, shard, projector));
    deployment.cleanup().await;
}
