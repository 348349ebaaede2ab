//! W3C trace context across the pipeline: HTTP `traceparent` -> gateway span -> `traceparent`
//! header of the `flk.submissions` record -> shard span -> `traceparent_opt` of the decision event ->
//! projector batch span. One trace follows a record over both Kafka hops.
//!
//! Extraction and injection go through OpenTelemetry's `TraceContextPropagator`. When no exporter
//! is installed, spans carry no OpenTelemetry context; the incoming `traceparent` is then passed
//! along unchanged, so a trace started upstream still reaches the decision event.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Parsed here before any value reaches the propagator; it lives in the pure core so it can be
/// fuzzed without OpenTelemetry.
pub use events::trace_parent::TraceParent;

/// Links one batch span carries at most (the SDK's default span limit is 128).
const MAX_LINKS: usize = 127;

/// Longest id text a span attribute carries as is.
const MAX_ID_ATTRIBUTE_BYTES: usize = 128;

/// `text` when it looks like an id (at most 128 visible ASCII characters), else a placeholder:
/// a pcs_id read from an unverified body goes into a span attribute, but never a long or binary
/// string that could be part of a payload.
pub fn displayable_id(text: &str) -> &str {
    if text.len() <= MAX_ID_ATTRIBUTE_BYTES && text.bytes().all(|byte| byte.is_ascii_graphic()) {
        text
    } else {
        "(not an id)"
    }
}

/// The remote context named by a `traceparent` value; an empty context when absent or invalid.
pub fn context_from_traceparent(traceparent_opt: Option<&str>) -> Context {
    let mut carrier = HashMap::new();
    if let Some(traceparent) = traceparent_opt.filter(|text| TraceParent::parse(text).is_some()) {
        carrier.insert("traceparent".to_owned(), traceparent.trim().to_owned());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` naming the span of `context`; `None` when it holds no valid span.
pub fn traceparent_of(context: &Context) -> Option<String> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.remove("traceparent")
}

/// True when `context` names a valid span (local or remote).
pub fn is_valid(context: &Context) -> bool {
    context.span().span_context().is_valid()
}

/// Makes `span` continue the trace of `traceparent_opt` (its parent becomes the caller's span).
/// Call it before the span is first entered; without a valid value the span starts a new trace.
pub fn continue_trace(span: &tracing::Span, traceparent_opt: Option<&str>) {
    continue_context(span, context_from_traceparent(traceparent_opt));
}

/// [`continue_trace`] from an extracted context (Kafka headers, for instance).
pub fn continue_context(span: &tracing::Span, parent: Context) {
    if is_valid(&parent) {
        // Fails only without an exporter (no OpenTelemetry layer) or after the span started.
        let _ = span.set_parent(parent);
    }
}

/// The context to hand downstream from inside `span`: the span's own when spans are exported,
/// else the caller's `traceparent` passed through (empty when there was none).
pub fn outgoing_context(span: &tracing::Span, incoming_opt: Option<&str>) -> Context {
    let own = span.context();
    if is_valid(&own) {
        own
    } else {
        context_from_traceparent(incoming_opt)
    }
}

/// [`outgoing_context`] as a `traceparent` value (what a decision event records).
pub fn outgoing_traceparent(span: &tracing::Span, incoming_opt: Option<&str>) -> Option<String> {
    traceparent_of(&outgoing_context(span, incoming_opt))
}

/// Ties a batch span to the traces of its records: the first valid `traceparent` becomes the
/// parent (so a single record's trace runs end to end), the others become links (up to 127).
/// Call it before the span is first entered.
pub fn follow_batch<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut contexts = traceparents
        .into_iter()
        .map(|text| context_from_traceparent(Some(text)))
        .filter(is_valid);
    if let Some(parent) = contexts.next() {
        let _ = span.set_parent(parent);
    }
    for linked in contexts.take(MAX_LINKS) {
        span.add_link(linked.span().span_context().clone());
    }
}

/// Reads trace context from Kafka record headers.
#[derive(Debug)]
pub struct KafkaHeaderExtractor<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for KafkaHeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

/// The remote context in a Kafka record's headers; empty when it has none.
pub fn context_from_message<M: Message>(message: &M) -> Context {
    match message.headers() {
        Some(headers) => TraceContextPropagator::new().extract(&KafkaHeaderExtractor(headers)),
        None => Context::new(),
    }
}

/// The remote context in a log record's headers; empty when it has none.
pub fn context_from_record(record: &crate::log::LogRecord) -> Context {
    TraceContextPropagator::new().extract(&RecordHeaderExtractor(record))
}

/// Reads trace context from a [`crate::log::LogRecord`]'s headers.
#[derive(Debug)]
struct RecordHeaderExtractor<'a>(&'a crate::log::LogRecord);

impl Extractor for RecordHeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Collects the propagator's fields before they become Kafka headers.
#[derive(Debug, Default)]
struct FieldCollector(Vec<(String, String)>);

impl Injector for FieldCollector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Adds `traceparent` (and `tracestate` when set) for `context` to Kafka record headers; leaves
/// them unchanged when the context names no valid span.
pub fn inject_headers(context: &Context, mut headers: OwnedHeaders) -> OwnedHeaders {
    let mut fields = FieldCollector::default();
    TraceContextPropagator::new().inject_context(context, &mut fields);
    // The propagator writes an empty `tracestate` when there is none; that header is noise.
    for (key, value) in fields.0.iter().filter(|(_, value)| !value.is_empty()) {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_str()),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use rdkafka::message::OwnedMessage;
    use rdkafka::{Timestamp, message::Headers as _};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs `body` under a subscriber that records OpenTelemetry contexts (nothing is exported).
    fn with_otel<T>(body: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, body)
    }

    #[test]
    fn span_attributes_take_ids_only() {
        assert_eq!(displayable_id("test-id"), "test-id");
        assert_eq!(displayable_id(&"a".repeat(128)), "a".repeat(128));
        assert_eq!(displayable_id(&"a".repeat(129)), "(not an id)");
        assert_eq!(displayable_id("two words"), "(not an id)");
        assert_eq!(displayable_id("caf\u{e9}"), "(not an id)");
    }

    #[test]
    fn rejects_malformed_traceparents() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for text in bad {
            assert_eq!(TraceParent::parse(text), None, "{text:?}");
            assert!(!is_valid(&context_from_traceparent(Some(text))), "{text:?}");
        }
    }

    #[test]
    fn propagator_round_trips_a_traceparent() {
        let context = context_from_traceparent(Some(INCOMING));
        assert!(is_valid(&context));
        assert_eq!(traceparent_of(&context).as_deref(), Some(INCOMING));
        assert_eq!(traceparent_of(&Context::new()), None);
    }

    #[test]
    fn kafka_headers_carry_the_context_both_ways() {
        let headers = inject_headers(
            &context_from_traceparent(Some(INCOMING)),
            OwnedHeaders::new().insert(Header {
                key: "flk-tenant",
                value: Some("acme"),
            }),
        );
        assert_eq!(headers.count(), 2, "tenant kept, traceparent added");
        let message = OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t".to_owned(),
            Timestamp::NotAvailable,
            0,
            7,
            Some(headers),
        );
        assert_eq!(
            traceparent_of(&context_from_message(&message)).as_deref(),
            Some(INCOMING)
        );
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 8, None);
        assert!(!is_valid(&context_from_message(&bare)));
        let record = crate::log::LogRecord {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key_opt: None,
            payload: Vec::new(),
            headers: vec![("TraceParent".into(), INCOMING.as_bytes().to_vec())],
            timestamp_ms_opt: None,
        };
        assert_eq!(
            traceparent_of(&context_from_record(&record)).as_deref(),
            Some(INCOMING)
        );
        let unchanged = inject_headers(&Context::new(), OwnedHeaders::new());
        assert_eq!(unchanged.count(), 0);
    }

    #[test]
    fn without_an_exporter_the_incoming_traceparent_passes_through() {
        let span = tracing::info_span!("gateway.submit");
        continue_trace(&span, Some(INCOMING));
        assert_eq!(
            outgoing_traceparent(&span, Some(INCOMING)).as_deref(),
            Some(INCOMING)
        );
        assert_eq!(outgoing_traceparent(&span, Some("garbage")), None);
        assert_eq!(outgoing_traceparent(&span, None), None);
    }

    #[test]
    fn a_span_continues_the_incoming_trace_with_its_own_span_id() {
        with_otel(|| {
            let span = tracing::info_span!("gateway.submit");
            continue_trace(&span, Some(INCOMING));
            let outgoing = outgoing_traceparent(&span, Some(INCOMING)).unwrap();
            let parsed = TraceParent::parse(&outgoing).unwrap();
            assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(
                parsed.parent_id_hex(),
                "00f067aa0ba902b7",
                "the span's own id"
            );
            // Downstream: the next hop's span continues the same trace.
            let next = tracing::info_span!("shard.decide");
            continue_trace(&next, Some(&outgoing));
            let next_parsed =
                TraceParent::parse(&outgoing_traceparent(&next, None).unwrap()).unwrap();
            assert_eq!(next_parsed.trace_id, parsed.trace_id);
            assert_ne!(next_parsed.parent_id, parsed.parent_id);
        });
    }

    #[test]
    fn a_span_without_a_caller_starts_a_new_trace() {
        with_otel(|| {
            let span = tracing::info_span!("gateway.submit");
            continue_trace(&span, None);
            let outgoing = outgoing_traceparent(&span, None).unwrap();
            let parsed = TraceParent::parse(&outgoing).unwrap();
            assert_ne!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }

    #[test]
    fn a_batch_span_is_parented_to_the_first_record_and_linked_to_the_others() {
        with_otel(|| {
            let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let span = tracing::info_span!("projector.apply_batch");
            follow_batch(&span, ["not a traceparent", INCOMING, other]);
            let parsed = TraceParent::parse(&outgoing_traceparent(&span, None).unwrap()).unwrap();
            assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }
}
