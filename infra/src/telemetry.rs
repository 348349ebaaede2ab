//! Logging and tracing set-up: JSON or pretty logs through `tracing`, filtered by `RUST_LOG`, and,
//! when `[telemetry] otlp_endpoint_opt` (or `FLK_OTLP_ENDPOINT`) is set, FLK's spans exported over
//! OTLP/HTTP (protobuf) by a batch exporter.
//!
//! Log lines carry structured fields only; payloads and secrets are never logged.
//!
//! The two outputs are filtered apart: `RUST_LOG` shapes the logs only, and the exporter sees only
//! the spans of FLK's own crates at info level and above. So a quiet `RUST_LOG=warn` still exports
//! traces, and the exporter's own HTTP client never traces itself into a feedback loop.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use thiserror::Error;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::TelemetryConfig;

/// Crates whose spans are exported (module-path prefixes of span targets).
const TRACED_CRATES: [&str; 4] = ["gateway", "actors", "projections", "infra"];

/// Longest one export request may take before the batch is dropped (the collector is down).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (local use).
    Pretty,
}

/// Why trace export could not be set up. Logs work regardless.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its settings (fix `telemetry.otlp_endpoint_opt`).
    #[error("cannot set up the OTLP span exporter for {endpoint}: {problem}")]
    Exporter {
        /// URL spans would be posted to.
        endpoint: String,
        /// What the exporter said.
        problem: String,
    },
}

/// Keeps trace export running; dropping it flushes the spans still queued and stops the exporter.
/// Hold it until the process is about to exit, outside any async runtime.
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    /// The tracer provider, when spans are exported.
    provider_opt: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// True when spans leave the process.
    pub fn exporting(&self) -> bool {
        self.provider_opt.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider_opt.take() {
            // Flushes the batch; a collector that is gone costs at most the export timeout.
            if let Err(error) = provider.shutdown() {
                tracing::warn!(error = %error, "trace export did not shut down cleanly");
            }
        }
    }
}

/// Installs the global subscriber (logs only); later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat, default_filter: &str) {
    let _ = install(format, default_filter, None);
}

/// Installs the global subscriber: logs, plus span export when `telemetry` names an OTLP endpoint.
/// `resource_attributes` describe the process (its roles, for instance) on every exported span.
/// When a subscriber is already installed (tests), nothing changes and the guard exports nothing.
pub fn init_with_traces(
    format: LogFormat,
    default_filter: &str,
    telemetry: &TelemetryConfig,
    resource_attributes: &[(&'static str, String)],
) -> Result<TelemetryGuard, TelemetryError> {
    let Some(endpoint) = telemetry.traces_url_opt() else {
        init(format, default_filter);
        return Ok(TelemetryGuard::default());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            problem: error.to_string(),
        })?;
    let resource = Resource::builder()
        .with_service_name(telemetry.service_name.clone())
        .with_attributes(
            resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(*key, value.clone())),
        )
        .build();
    // The batch processor exports from its own thread (every 5 s or 512 spans by default; the
    // OTEL_BSP_* variables tune it) and drops spans rather than block when its queue is full.
    // New traces are sampled at the ratio; continued ones follow the caller's decision.
    let sampler =
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(telemetry.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    if install(format, default_filter, Some(&provider)) {
        tracing::info!(endpoint = %endpoint, service = %telemetry.service_name, "exporting traces over otlp");
        Ok(TelemetryGuard {
            provider_opt: Some(provider),
        })
    } else {
        let _ = provider.shutdown();
        Ok(TelemetryGuard::default())
    }
}

/// Builds and installs the subscriber; false when one was already installed.
fn install(
    format: LogFormat,
    default_filter: &str,
    provider_opt: Option<&SdkTracerProvider>,
) -> bool {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json_format = crate::log_trace_ids::JsonWithTraceIds::new();
    let dispatch_slot = json_format.dispatch_slot();
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(json_format)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(log_filter);
    let traces_opt = provider_opt.map(|provider| {
        let traced = TRACED_CRATES.iter().fold(Targets::new(), |targets, name| {
            targets.with_target(*name, LevelFilter::INFO)
        });
        // Span names say where they come from; file, line, thread and busy/idle times would only
        // multiply the bytes of every span (the shard makes one per record).
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("flk"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(traced)
    });
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(logs).with(traces_opt));
    let _ = dispatch_slot.set(dispatch.downgrade());
    dispatch.try_init().is_ok()
}
