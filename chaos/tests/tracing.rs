//! Traces across the pipeline, read back from the trace backend a user opens: Jaeger, fed by the
//! local stack's OpenTelemetry Collector (`infra/scripts/stack.sh up jaeger otel`).
//!
//! A record submitted with a W3C `traceparent` yields one trace whose spans run gateway.submit ->
//! gateway.produce -> shard.decide -> shard.produce_decision -> projector.apply_batch (the Postgres
//! transaction) -> projector.redis_fill, each a child of the one before, each from the process
//! running that role, joined over both Kafka hops. A record produced straight into Kafka with a
//! `traceparent` header starts the same chain at the shard. The spans carry the tenant and the
//! pcs_id, and nothing of the record's body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use chaos::deployment::{Deployment, TestTenant};
use chaos::process::FlkProcess;
use chaos::records::{pcs_id, signed_record};
use chaos::wait_until;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

const SECRET: &str = "testsecret";

/// One span of a trace, as Jaeger's query API returns it.
#[derive(Debug, Clone)]
struct JaegerSpan {
    /// Operation name (`gateway.submit`, ...).
    name: String,
    /// Its id (16 hex digits).
    span_id: String,
    /// Its parent's id (the `CHILD_OF` reference); empty for a root span.
    parent_span_id: String,
    /// The span's tags (attributes), as text.
    tags: HashMap<String, String>,
    /// The `flk.roles` resource attribute of the process that exported it.
    roles: String,
    /// `service.name` of that process.
    service: String,
}

impl JaegerSpan {
    fn tag(&self, key: &str) -> &str {
        self.tags.get(key).map_or("", String::as_str)
    }
}

/// Jaeger's base URL from the stack's env file; the test fails (it does not skip) without it.
fn jaeger_url() -> String {
    std::env::var("FLK_JAEGER_URL").unwrap_or_else(|_| {
        panic!(
            "FLK_JAEGER_URL is not set: start the trace backend with \
             `infra/scripts/stack.sh up` (or `up jaeger otel`) and `. .local/stack/env.sh`"
        )
    })
}

fn collector_endpoint() -> String {
    std::env::var("FLK_OTLP_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "FLK_OTLP_ENDPOINT is not set: start the collector with `infra/scripts/stack.sh up` \
             (or `up jaeger otel`) and `. .local/stack/env.sh`"
        )
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn tags_of(tags: &Value) -> HashMap<String, String> {
    tags.as_array()
        .into_iter()
        .flatten()
        .map(|tag| (text(&tag["key"]), text(&tag["value"])))
        .collect()
}

/// The trace `trace_id` as Jaeger returns it (`None` while Jaeger does not know it yet).
async fn fetch_trace(client: &reqwest::Client, trace_id: &str) -> Option<Value> {
    let response = client
        .get(format!("{}/api/traces/{trace_id}", jaeger_url()))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["data"].as_array()?.first().cloned()
}

fn spans_of(trace: &Value) -> Vec<JaegerSpan> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| {
            let process = tags_of(&processes[text(&span["processID"])]["tags"]);
            let parent_span_id = span["references"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|reference| reference["refType"] == "CHILD_OF")
                .map(|reference| text(&reference["spanID"]))
                .unwrap_or_default();
            JaegerSpan {
                name: text(&span["operationName"]),
                span_id: text(&span["spanID"]),
                parent_span_id,
                tags: tags_of(&span["tags"]),
                roles: process.get("flk.roles").cloned().unwrap_or_default(),
                service: text(&processes[text(&span["processID"])]["serviceName"]),
            }
        })
        .collect()
}

/// Waits until Jaeger holds every span named in `wanted` for `trace_id`; returns the trace.
async fn wait_for_trace(trace_id: &str, wanted: &[&str], logs: impl Fn() -> String) -> Value {
    let client = reqwest::Client::new();
    wait_until(
        "the trace's spans in Jaeger",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let trace = fetch_trace(&client, trace_id).await?;
                let spans = spans_of(&trace);
                wanted
                    .iter()
                    .all(|name| spans.iter().any(|span| span.name == *name))
                    .then_some(trace)
            }
        },
    )
    .await
    .unwrap_or_else(|error| {
        panic!(
            "{error}: trace {trace_id} at {}/api/traces/{trace_id}\n{}",
            jaeger_url(),
            logs()
        )
    })
}

/// Checks that `chain` is a parent -> child line of spans, each from the process of `role`,
/// starting under `first_parent`, with the tenant and pcs_id on each.
fn assert_chain(
    spans: &[JaegerSpan],
    chain: &[(&str, &str)],
    first_parent: &str,
    tenant: &str,
    pcs_id: &str,
) {
    let mut parent = first_parent.to_owned();
    for (name, role) in chain {
        let span = spans
            .iter()
            .find(|span| span.name == *name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"));
        assert_eq!(span.parent_span_id, parent, "{name}'s parent\n{spans:#?}");
        assert_eq!(span.roles, *role, "{name} comes from the {role} process");
        assert_eq!(span.service, "flk");
        assert_eq!(span.tag("tenant"), tenant, "{name}'s tenant\n{span:#?}");
        assert_eq!(span.tag("pcs_id"), pcs_id, "{name}'s pcs_id\n{span:#?}");
        parent = span.span_id.clone();
    }
}

/// Nothing of the body beyond the pcs_id reaches the trace: not the Merkle root, not the signature.
fn assert_no_payload(trace: &Value, record: &Value) {
    let exported = trace.to_string();
    for field in ["merkle_root", "sig"] {
        let value = record[field].as_str().unwrap();
        assert!(
            !exported.contains(value),
            "the record's {field} is in the trace: {exported}"
        );
    }
}

fn random_traceparent() -> (String, String, String) {
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span_id = format!("{:016x}", rand::random::<u64>() | 1);
    let traceparent = format!("00-{trace_id}-{caller_span_id}-01");
    (trace_id, caller_span_id, traceparent)
}

/// Each role in its own process, so the trace context can only travel through Kafka.
fn start_roles(deployment: &Deployment) -> (FlkProcess, FlkProcess, FlkProcess) {
    let endpoint = collector_endpoint();
    let env = [
        ("FLK_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 100 ms instead of every 5 s, so the test waits less.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let shard = FlkProcess::start_with_env(deployment, "shard", "shard", &env).unwrap();
    let projector = FlkProcess::start_with_env(deployment, "projector", "projector", &env).unwrap();
    let gateway = FlkProcess::start_with_env(deployment, "gateway", "gateway", &env).unwrap();
    (gateway, shard, projector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_submission_is_one_trace_in_jaeger_from_request_to_redis() {
    let mut deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    deployment.decision_timeout_ms = 30_000;
    let (gateway, shard, projector) = start_roles(&deployment);
    let (trace_id, caller_span_id, traceparent) = random_traceparent();
    let record = signed_record(11, SECRET);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/pcs/submit", gateway.url()))
        .header("traceparent", &traceparent)
        .json(&record)
        .send()
        .await
        .unwrap();
    let logs = || {
        format!(
            "gateway log:\n{}\nshard log:\n{}\nprojector log:\n{}",
            gateway.log(),
            shard.log(),
            projector.log()
        )
    };
    assert_eq!(response.status().as_u16(), 200, "{}", logs());

    let chain = [
        ("gateway.submit", "gateway"),
        ("gateway.produce", "gateway"),
        ("shard.decide", "shard"),
        ("shard.produce_decision", "shard"),
        ("projector.apply_batch", "projector"),
        ("projector.redis_fill", "projector"),
    ];
    let names: Vec<&str> = chain.iter().map(|(name, _)| *name).collect();
    let trace = wait_for_trace(&trace_id, &names, logs).await;
    let spans = spans_of(&trace);
    assert_chain(&spans, &chain, &caller_span_id, "default", &pcs_id(&record));
    let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap();
    assert_eq!(
        find("gateway.submit").tag("http.response.status_code"),
        "200"
    );
    assert_eq!(find("shard.decide").tag("verdict"), "accepted");
    assert_eq!(
        find("gateway.produce").tag("messaging.destination.name"),
        deployment.submissions_topic()
    );
    assert_eq!(
        find("shard.produce_decision").tag("messaging.destination.name"),
        deployment.decisions_topic()
    );
    assert_no_payload(&trace, &record);

    drop((gateway, shard, projector));
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_produced_straight_to_kafka_with_a_traceparent_is_traced_from_the_shard() {
    let deployment = Deployment::new(vec![TestTenant::signed("default", SECRET)]).unwrap();
    let (gateway, shard, projector) = start_roles(&deployment);
    let (trace_id, caller_span_id, traceparent) = random_traceparent();
    let record = signed_record(12, SECRET);
    let body = serde_json::to_vec(&record).unwrap();
    let key = format!("default/{}", pcs_id(&record));
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &deployment.stack.brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let topic = deployment.submissions_topic();
    let message =
        FutureRecord::to(&topic)
            .payload(&body)
            .key(&key)
            .headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(traceparent.as_str()),
            }));
    producer
        .send(message, Duration::from_secs(10))
        .await
        .unwrap();
    let logs = || {
        format!(
            "shard log:\n{}\nprojector log:\n{}",
            shard.log(),
            projector.log()
        )
    };

    let chain = [
        ("shard.decide", "shard"),
        ("shard.produce_decision", "shard"),
        ("projector.apply_batch", "projector"),
        ("projector.redis_fill", "projector"),
    ];
    let names: Vec<&str> = chain.iter().map(|(name, _)| *name).collect();
    let trace = wait_for_trace(&trace_id, &names, logs).await;
    let spans = spans_of(&trace);
    assert_chain(&spans, &chain, &caller_span_id, "default", &pcs_id(&record));
    assert!(
        spans.iter().all(|span| !span.name.starts_with("gateway.")),
        "no gateway span for a record that skipped the gateway: {spans:#?}"
    );
    assert_no_payload(&trace, &record);

    drop((gateway, shard, projector));
    deployment.cleanup().await;
}
