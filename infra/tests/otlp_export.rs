//! Trace export without a collector: a stand-in OTLP/HTTP receiver on `127.0.0.1:0` records what
//! `flk` posts. Dropping the telemetry guard must flush the queued spans (no waiting for the batch
//! timer), as protobuf to `<endpoint>/v1/traces`; only FLK's own spans are exported, and a caller's
//! sampled trace is kept even when the sample ratio drops new traces.
//!
//! One test per file: it installs the process-wide subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use infra::config::TelemetryConfig;
use infra::telemetry::{LogFormat, init_with_traces};
use infra::tracing_context;

/// One HTTP request as received: request line, lower-cased headers, body.
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Accepts connections, answers 200 to each request, and forwards what it read.
fn receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap();
                        headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(name, _)| name == "content-length")
                        .map_or(0, |(_, value)| value.parse().unwrap());
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let mut writer = &stream;
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                    let _ = sender.send(Received {
                        request_line: request_line.trim_end().to_owned(),
                        headers,
                        body,
                    });
                }
            });
        }
    });
    (format!("http://{address}"), receiver)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn spans_are_posted_as_protobuf_and_flushed_when_the_guard_drops() {
    let (endpoint, received) = receiver();
    let telemetry = TelemetryConfig {
        otlp_endpoint_opt: Some(endpoint),
        service_name: "flk-test".to_owned(),
        // New traces are all dropped; continued ones follow the caller's sampled flag.
        sample_ratio: 0.0,
        ..TelemetryConfig::default()
    };
    let guard = init_with_traces(
        LogFormat::Json,
        "warn",
        &telemetry,
        &[("flk.roles", "gateway".to_owned())],
    )
    .unwrap();
    assert!(guard.exporting());

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let outgoing = {
        // Span targets are module paths: this test's spans are `otlp_export`, not FLK crates,
        // so name an FLK target explicitly, as the gateway's spans have.
        let span = tracing::info_span!(target: "gateway::http::submit", "gateway.submit");
        tracing_context::continue_trace(&span, Some(incoming));
        let _entered = span.enter();
        tracing_context::outgoing_traceparent(&tracing::Span::current(), Some(incoming)).unwrap()
    };
    assert!(outgoing.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_ne!(outgoing, incoming, "the span's own id goes downstream");
    // Not an FLK crate: filtered out of the export (whatever RUST_LOG says).
    tracing::info_span!(target: "hyper::client", "not.exported").in_scope(|| {});
    // A new trace (no caller): not sampled at ratio 0, yet its context still propagates.
    let unsampled = tracing::info_span!(target: "actors::shard", "shard.decide");
    tracing_context::continue_trace(&unsampled, None);
    let unsampled_parent = tracing_context::outgoing_traceparent(&unsampled, None).unwrap();
    assert!(unsampled_parent.ends_with("-00"), "{unsampled_parent}");
    drop(unsampled);

    // The batch timer (5 s) has not fired: only the flush on drop can deliver the span now.
    drop(guard);
    let request = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
    let content_type = request
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.as_str());
    assert_eq!(content_type, Some("application/x-protobuf"));
    // Protobuf keeps strings as raw UTF-8: the span name, service and role are in the body.
    assert!(contains(&request.body, "gateway.submit"));
    assert!(contains(&request.body, "flk-test"));
    assert!(contains(&request.body, "flk.roles"));
    assert!(!contains(&request.body, "not.exported"));
    assert!(!contains(&request.body, "shard.decide"));
}
