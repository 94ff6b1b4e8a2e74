//! Prometheus metrics: the recorder, the request counter middleware and the metric names.
//!
//! The router records through the [`metrics`] facade. [`prometheus_handle`] installs the
//! Prometheus recorder as the process's global recorder the first time it is called; if the host
//! application already installed a recorder of its own, it logs that and returns `None` (the
//! counters then go to the host's recorder, and the host can pass its own
//! [`PrometheusHandle`] to [`crate::AppState::with_metrics_handle`]). It never panics.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Counter: HTTP requests, labelled `method` (a standard method or `other`), `route` (the matched
/// route template, or `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "async_jobs_http_requests_total";
/// Histogram: HTTP request duration in seconds, labelled `method` and `route`.
pub const HTTP_DURATION: &str = "async_jobs_http_request_duration_seconds";
/// Counter: jobs created through the API, labelled `use_case`.
pub const JOBS_ENQUEUED: &str = "async_jobs_enqueued_total";
/// Counter: enqueues answered from an existing job (idempotent replay), labelled `use_case`.
pub const JOBS_DEDUPLICATED: &str = "async_jobs_enqueue_deduplicated_total";
/// Gauge: connections the HTTP servers of this process hold.
pub const HTTP_CONNECTIONS: &str = "async_jobs_http_connections";
/// Counter: connections the server closed because of a limit, labelled `reason`:
/// `header_timeout`, `idle_timeout`, `send_stalled` (a response the client stopped reading),
/// `evicted` (replaced at the connection cap), `shutdown` (past the shutdown grace), or
/// `body_timeout` (answered 408).
pub const HTTP_CONNECTIONS_CLOSED: &str = "async_jobs_http_connections_closed_total";
/// Gauge: jobs in the store by `use_case` and `status`, refreshed on each scrape.
pub const JOBS: &str = "async_jobs_jobs";
/// Gauge: 1 while a use case is paused for every tenant, else 0 (label `use_case`).
pub const USE_CASE_PAUSED: &str = "async_jobs_use_case_paused";
/// Gauge: how many tenants are paused within a use case (label `use_case`).
pub const TENANTS_PAUSED: &str = "async_jobs_tenants_paused";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first call; `None` when another
/// global recorder was installed first.
pub fn prometheus_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(err) => {
                tracing::warn!(error = %err, "a metrics recorder is already installed; /metrics will not render jobs-http's own");
                None
            }
        })
        .clone()
}

/// The `method` label of a request: one of the standard methods, or `other`. Every label value
/// comes from a fixed set, so no request can create series (a made-up method such as `FOOBAR`
/// used to add a series per spelling, never dropped).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware counting every request by method ([`method_label`]), route template (or
/// `unmatched`: the route set is the router's own) and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Middleware marking every response `X-Content-Type-Options: nosniff`: error bodies echo parts
/// of the request, and no browser may read one as anything but its declared type.
pub(crate) async fn nosniff(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::POST), "POST");
        for made_up in ["FOOBAR", "GETX", "get", "PROPFIND", &"X".repeat(500)] {
            let m = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
    }
}
