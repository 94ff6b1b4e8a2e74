//! Logs and traces of every process, and the trace context across the enqueue → handler hop.
//!
//! [`init_tracing`] installs the process's `tracing` subscriber: logs to stderr (JSON lines with
//! `ASYNC_JOBS_LOG_FORMAT=json`, filter from `RUST_LOG`, default `info`) and — only when an OTLP
//! endpoint is configured with the standard OpenTelemetry variables — an OpenTelemetry layer
//! that exports spans over OTLP/HTTP (protobuf) through a batch span processor. Without an
//! endpoint no OpenTelemetry layer exists and nothing else changes.
//!
//! The standard variables honoured:
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector base URL, e.g. `http://localhost:4318` (spans go to `/v1/traces`) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full traces URL; wins over the above |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute (default: the process, e.g. `async-jobs-worker`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes (`key=value,…`) |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT` | exporter headers and timeout (ms, default 10 000) |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | the batch processor: bounded queue (default 2048 spans; more are dropped), export interval (default 5000 ms), batch size (512) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | no exporter even with an endpoint |
//!
//! Only `http/protobuf` is spoken (no gRPC): point it at the collector's OTLP/HTTP port (4318).
//! Sampling is parent-based: a request whose `traceparent` says "not sampled" is not recorded.
//! The returned [`TracingGuard`] flushes the queue when the process ends (the binaries keep it
//! until after SIGTERM's drain).
//!
//! The hop: the API reads `traceparent` / `tracestate` ([`trace_context_from_headers`]), makes its
//! request span a child of it ([`set_parent`]) and stores the request span's context with the job
//! ([`span_trace_context`]; the incoming header itself when no exporter is installed); the worker
//! makes each attempt's `job` span a child of the stored context. One trace then runs from the
//! enqueuing service through the API to every attempt of the handler.
//!
//! A service that enqueues through the library (`JobService`, `PgStore::enqueue_in`) passes its
//! own span along: `EnqueueRequest::trace_context` / `NewJob::trace_context` set from
//! [`span_trace_context`]`(&tracing::Span::current())`.

use std::str::FromStr;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use jobs_core::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The `traceparent` request header (W3C Trace Context).
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The `tracestate` request header (W3C Trace Context).
pub const TRACESTATE_HEADER: &str = "tracestate";

const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// The OpenTelemetry settings could not be used.
#[derive(Debug, thiserror::Error)]
#[error("OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cannot set up the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Keeps the span exporter of [`init_tracing`] alive; dropping it (or [`TracingGuard::shutdown`])
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

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// True when the environment asks for span export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise.
pub fn otlp_configured() -> bool {
    (env_set(ENDPOINT) || env_set(TRACES_ENDPOINT))
        && !env_is("OTEL_SDK_DISABLED", "true")
        && !env_is("OTEL_TRACES_EXPORTER", "none")
}

/// The tracer provider exporting over OTLP/HTTP with a batch processor.
fn provider(default_service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(var) {
            if !p.trim().is_empty() && p.trim() != "http/protobuf" {
                eprintln!("{var}={p}: only http/protobuf is supported; using it");
            }
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let named = env_set(SERVICE_NAME)
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let resource = if named {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(default_service.to_owned())
            .build()
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the process's tracing subscriber (see the module docs): logs to stderr, plus span
/// export over OTLP when [`otlp_configured`]. `service_name` is the default `service.name`
/// (`OTEL_SERVICE_NAME` wins). Keep the guard until the process ends. A second call installs
/// nothing and returns an idle guard. `Err` when an endpoint is set but unusable (then logs are
/// installed without export).
pub fn init_tracing(service_name: &str) -> Result<TracingGuard, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("ASYNC_JOBS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (provider, failure) = if otlp_configured() {
        match provider(service_name) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
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
        tracing::info!(service = service_name, "exporting spans over OTLP/HTTP");
    }
    Ok(TracingGuard { provider })
}

/// The trace context of a request's `traceparent` and `tracestate` headers; `None` when there is
/// no `traceparent`, more than one, or an invalid one (W3C: ignored, not refused). Several
/// `tracestate` headers are joined with commas.
pub fn trace_context_from_headers(headers: &HeaderMap) -> Option<TraceContext> {
    let mut parents = headers.get_all(TRACEPARENT_HEADER).iter();
    let parent = parents.next()?.to_str().ok()?;
    if parents.next().is_some() {
        return None;
    }
    let states: Vec<&str> = headers
        .get_all(TRACESTATE_HEADER)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let state = (!states.is_empty()).then(|| states.join(","));
    TraceContext::from_headers(Some(parent), state.as_deref())
}

/// The OpenTelemetry context whose remote parent is `trace`; the empty context (a new root)
/// for `None`.
pub fn otel_context(trace: Option<&TraceContext>) -> Context {
    let Some(tc) = trace else {
        return Context::new();
    };
    let state = tc
        .tracestate()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(tc.trace_id()),
        SpanId::from_bytes(tc.parent_id()),
        TraceFlags::new(tc.flags()),
        true,
        state,
    ))
}

/// Makes `span` a child of `trace` (a new root for `None`) for OpenTelemetry. Call it before the
/// span is first entered. Without an OpenTelemetry layer (no OTLP endpoint) it does nothing.
pub fn set_parent(span: &tracing::Span, trace: Option<&TraceContext>) {
    // Errors only say there is no OpenTelemetry layer, or the span is disabled or already
    // started: nothing to do in each case.
    let _ = span.set_parent(otel_context(trace));
}

/// The trace context naming `span` as the parent, when spans are exported (an OpenTelemetry layer
/// is installed and the span is enabled); `None` otherwise.
pub fn span_trace_context(span: &tracing::Span) -> Option<TraceContext> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let tc = TraceContext::from_parts(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.trace_flags().to_u8(),
    )?;
    let state = sc.trace_state().header();
    Some(if state.is_empty() {
        tc
    } else {
        tc.with_tracestate(&state)
    })
}

/// Middleware: every API request but the operations routes runs in an `http_request` span (a
/// server span whose parent is the request's `traceparent`, a new root without one), with the
/// method, the route template and the response status. Handlers read the span with
/// [`span_trace_context`]`(&Span::current())`.
pub(crate) async fn trace_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    if ["/healthz", "/readyz", "/metrics", "/openapi.json"]
        .iter()
        .any(|ops| route.ends_with(ops))
    {
        return next.run(req).await;
    }
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{} {route}", crate::metrics::method_label(req.method())),
        otel.kind = "server",
        http.request.method = crate::metrics::method_label(req.method()),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    set_parent(&span, trace_context_from_headers(req.headers()).as_ref());
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn headers_give_a_context_or_none() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_context_from_headers(&h), None);
        h.insert(TRACEPARENT_HEADER, HeaderValue::from_static("bogus"));
        assert_eq!(trace_context_from_headers(&h), None);
        h.insert(TRACEPARENT_HEADER, HeaderValue::from_static(VALID));
        h.append(TRACESTATE_HEADER, HeaderValue::from_static("a=1"));
        h.append(TRACESTATE_HEADER, HeaderValue::from_static("b=2"));
        let tc = trace_context_from_headers(&h).unwrap();
        assert_eq!(tc.traceparent(), VALID);
        assert_eq!(tc.tracestate(), Some("a=1,b=2"));
        h.append(TRACEPARENT_HEADER, HeaderValue::from_static(VALID));
        assert_eq!(trace_context_from_headers(&h), None, "two traceparents");
    }

    #[test]
    fn otel_context_carries_the_ids() {
        let tc = TraceContext::parse(VALID).unwrap().with_tracestate("k=v");
        let cx = otel_context(Some(&tc));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_bytes(), tc.trace_id());
        assert_eq!(sc.span_id().to_bytes(), tc.parent_id());
        assert_eq!(sc.trace_state().header(), "k=v");
        assert!(!otel_context(None).span().span_context().is_valid());
    }

    #[test]
    fn without_a_layer_spans_have_no_context() {
        let span = tracing::info_span!("x");
        set_parent(&span, Some(&TraceContext::parse(VALID).unwrap()));
        assert_eq!(span_trace_context(&span), None);
    }
}
