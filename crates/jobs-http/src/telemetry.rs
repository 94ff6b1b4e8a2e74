//! The trace context across the enqueue → handler hop.
//!
//! Span export (the subscriber, the OTLP exporter and its settings) belongs to the process:
//! `async_jobs::app::telemetry` installs it. This module needs only the OpenTelemetry API and
//! the tracing bridge, and does nothing visible until a process installs an exporting layer.
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
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `traceparent` request header (W3C Trace Context).
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The `tracestate` request header (W3C Trace Context).
pub const TRACESTATE_HEADER: &str = "tracestate";

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
