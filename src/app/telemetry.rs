//! Logs and span export of a process.
//!
//! [`init`] installs the process's `tracing` subscriber from [`TelemetrySettings`]: logs to stderr
//! (JSON lines with `ASYNC_JOBS_LOG_FORMAT=json`, filter from `RUST_LOG`, default `info`) and —
//! only when an OTLP endpoint is configured — an OpenTelemetry layer that exports spans over
//! OTLP/HTTP (protobuf) through a batch span processor. Without an endpoint no OpenTelemetry
//! layer exists and nothing else changes.
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector base URL, e.g. `http://localhost:4318` (spans go to `/v1/traces`) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full traces URL; wins over the above |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute (default `async-jobs-<command>`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes (`key=value,…`) |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` | exporter headers and timeout (ms, default 10 000); read by the SDK |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | the batch processor (read by the SDK): bounded queue (default 2048 spans; more are dropped), export interval (5000 ms), batch size (512) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no exporter even with an endpoint (`OTEL_TRACES_EXPORTER` takes `otlp` or `none`; anything else is a setting error) |
//!
//! The SDK reads its own variables raw: an empty `OTEL_EXPORTER_OTLP_TRACES_HEADERS` replaces the
//! general headers there (unset it rather than leaving it empty), and `OTEL_TRACES_SAMPLER` is
//! the SDK's.
//!
//! Only `http/protobuf` is spoken (no gRPC): point it at the collector's OTLP/HTTP port (4318);
//! another `OTEL_EXPORTER_OTLP_*PROTOCOL` is a setting error. Sampling is parent-based: a request
//! whose `traceparent` says "not sampled" is not recorded. The returned [`TracingGuard`] flushes
//! the queue when the process ends (keep it until after SIGTERM's drain). The trace context
//! across the enqueue → handler hop is `jobs_http::telemetry`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::settings::{LogFormat, TelemetrySettings, OTLP_ENDPOINT_VAR, OTLP_TRACES_ENDPOINT_VAR};

/// The OTLP exporter could not be built from valid settings.
#[derive(Debug, thiserror::Error)]
#[error("{OTLP_ENDPOINT_VAR} / {OTLP_TRACES_ENDPOINT_VAR}: cannot set up the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Keeps the span exporter of [`init`] alive; dropping it (or [`TracingGuard::shutdown`])
/// flushes the spans still queued and stops the exporter. Without an exporter it does nothing.
#[derive(Debug)]
#[must_use = "dropping the guard stops the span exporter"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// True if spans are exported (an OTLP endpoint is configured).
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the queued spans and stops the exporter (bounded by the exporter's timeout).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "flushing spans at shutdown failed");
            }
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tracer provider exporting to `traces_url` over OTLP/HTTP with a batch processor.
fn provider(traces_url: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the process's tracing subscriber as `settings` say (see the module docs). Keep the
/// guard until the process ends. A second call installs nothing and returns an idle guard.
/// `Err` when the exporter cannot be built (then logs are installed without export).
pub fn init(settings: &TelemetrySettings) -> Result<TracingGuard, TelemetryError> {
    // Validated when the settings were read; `info` only if that was skipped.
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = settings.log_format == LogFormat::Json;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (provider, failure) = match &settings.traces {
        Some(export) => match provider(&export.traces_url, &settings.service_name) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("async-jobs"))
            .with_threads(false)
    });
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
    });
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(json_layer)
        .with(text_layer)
        .try_init()
        .is_ok();
    if let Some(e) = failure {
        return Err(e);
    }
    let provider = provider.filter(|_| installed);
    if provider.is_some() {
        tracing::info!(service = %settings.service_name, "exporting spans over OTLP/HTTP");
    }
    Ok(TracingGuard { provider })
}
