//! JSON log lines that name their trace: each line written inside a span that is exported carries
//! `"trace_id"` and `"span_id"` (lowercase hex, as W3C `traceparent` and Jaeger show them), so a
//! log line leads to its trace and a trace to its log lines. Lines outside exported spans (or with
//! trace export off) are unchanged.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// `tracing_subscriber`'s JSON format with the current span's trace and span ids added.
///
/// The OpenTelemetry layer keeps each span's ids in the subscriber; reading them needs the
/// subscriber's `Dispatch`, which a formatter cannot ask for while it formats (tracing answers
/// with a no-op one to stop recursion). So the dispatch is handed in once it exists:
/// [`JsonWithTraceIds::dispatch_slot`].
#[derive(Debug)]
pub struct JsonWithTraceIds {
    inner: Format<Json>,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl Default for JsonWithTraceIds {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonWithTraceIds {
    /// The JSON format FLK always wrote, plus the ids.
    pub fn new() -> Self {
        JsonWithTraceIds {
            inner: Format::default().json(),
            dispatch: Arc::new(OnceLock::new()),
        }
    }

    /// Where the subscriber's dispatch goes once it is built (set it before the first event).
    pub fn dispatch_slot(&self) -> Arc<OnceLock<WeakDispatch>> {
        self.dispatch.clone()
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let dispatch_opt = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let ids_opt = match (ctx.lookup_current(), dispatch_opt) {
            (Some(span), Some(dispatch)) => {
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
            }
            _ => None,
        };
        let ids_opt = ids_opt.and_then(|context| {
            let span = context.span();
            let span_context = span.span_context();
            span_context
                .is_valid()
                .then(|| (span_context.trace_id(), span_context.span_id()))
        });
        match (ids_opt, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => {
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
                )
            }
            _ => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Captures what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_inside_an_exported_span_name_its_trace_and_others_do_not() {
        let captured = Captured::default();
        let writer = captured.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let format = JsonWithTraceIds::new();
        let slot = format.dispatch_slot();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(format)
                    .with_writer(move || writer.clone()),
            );
        let dispatch = tracing::Dispatch::new(subscriber);
        slot.set(dispatch.downgrade()).unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("outside");
            tracing::info_span!("submit").in_scope(|| tracing::info!(tenant = "acme", "inside"));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[0]["fields"]["message"], "outside");
        let trace_id = lines[1]["trace_id"].as_str().unwrap();
        let span_id = lines[1]["span_id"].as_str().unwrap();
        assert_eq!((trace_id.len(), span_id.len()), (32, 16), "{text}");
        assert!(trace_id.chars().all(|ch| ch.is_ascii_hexdigit()) && trace_id != "0".repeat(32));
        assert_eq!(lines[1]["fields"]["tenant"], "acme");
    }
}
