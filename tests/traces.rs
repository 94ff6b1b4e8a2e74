//! Traces across the hop, end to end: the real `async-jobs api`, `scheduler` and `worker`
//! processes on Postgres and the SQS emulator, exporting spans over OTLP/HTTP to a tiny collector
//! inside the test. A job enqueued with a known `traceparent` runs in a handler span of the same
//! trace whose parent chain leads to the enqueuer's span; without an endpoint nothing is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{free_port, World};
use jobs_core::{JobStatus, TraceContext};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

/// One exported span, as the collector saw it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Seen>>>,
    requests: Arc<Mutex<usize>>,
}

async fn receive(State(c): State<Collector>, body: Bytes) -> &'static str {
    *c.requests.lock().unwrap() += 1;
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP/protobuf trace export");
    let mut spans = c.spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Seen {
                    service: service.clone(),
                    name: s.name,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                });
            }
        }
    }
    ""
}

/// Starts the collector on a free port: `POST /v1/traces` (OTLP/HTTP, protobuf).
async fn collector() -> (Collector, String) {
    let c = Collector::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (c, url)
}

async fn wait_healthy(port: u16) {
    let start = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_err()
    {
        assert!(start.elapsed() < LONG, "the API did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn email() -> serde_json::Value {
    json!({
        "tenant_id": "acme", "use_case": "notifications", "type": "send_email",
        "payload": {"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 10}
    })
}

/// A trace context the test's "enqueuer" owns: random trace id, fixed span id.
fn enqueuer() -> TraceContext {
    let mut trace = [0u8; 16];
    trace.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TraceContext::from_parts(trace, [0x0e, 0x9c, 0x0e, 0x4e, 0x11, 0x22, 0x33, 0x44], 1).unwrap()
}

async fn post_job(
    port: u16,
    trace: &TraceContext,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("traceparent", trace.traceparent())
        .header("tracestate", "enqueuer=yes")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_span_continues_the_enqueuers_trace() {
    let (collector, endpoint) = collector().await;
    let mut w = World::new("traces").await;
    let api_port = free_port();
    let api_addr = format!("127.0.0.1:{api_port}");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let api = w.spawn(
        "api",
        "api",
        &[
            otel[0],
            otel[1],
            ("ASYNC_JOBS_API_ADDR", &api_addr),
            ("ASYNC_JOBS_AUTH", "none"),
        ],
    );
    w.spawn("scheduler", "scheduler", &otel);
    // The worker's spans go out only at its shutdown (the interval is a minute): the flush on
    // SIGTERM is what delivers them.
    let worker = w.worker(
        "worker",
        &[
            otel[0],
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_SERVICE_NAME", "traces-test-worker"),
        ],
    );
    wait_healthy(api_port).await;

    let trace = enqueuer();
    let job = post_job(api_port, &trace, "/jobs", email()).await;
    let batch = post_job(api_port, &trace, "/jobs/batch", json!({"jobs": [email()]})).await;
    let mut ids = vec![job["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()];
    ids.push(batch["jobs"][0]["id"].as_str().unwrap().parse().unwrap());
    // The stored context is the API request span's: same trace, the enqueuer's state kept.
    let stored =
        TraceContext::parse(job["trace_context"]["traceparent"].as_str().unwrap()).unwrap();
    assert_eq!(stored.trace_id(), trace.trace_id());
    assert_eq!(job["trace_context"]["tracestate"], "enqueuer=yes");
    for id in &ids {
        let done = w.wait_status(*id, JobStatus::Succeeded, LONG).await;
        assert_eq!(done.trace_context.unwrap().trace_id(), trace.trace_id());
    }

    // The worker flushes its queued spans when SIGTERM stops it.
    w.proc(worker).signal("TERM");
    assert_eq!(w.proc(worker).wait_exit(LONG), Some(0));
    let start = Instant::now();
    let (jobs, by_id) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let ours: Vec<Seen> = spans
            .into_iter()
            .filter(|s| s.trace_id == trace.trace_id())
            .collect();
        let jobs: Vec<Seen> = ours.iter().filter(|s| s.name == "job").cloned().collect();
        let requests = ours
            .iter()
            .filter(|s| s.service == "async-jobs-api")
            .count();
        if jobs.len() >= 2 && requests >= 2 {
            let by_id: HashMap<Vec<u8>, Seen> =
                ours.into_iter().map(|s| (s.span_id.clone(), s)).collect();
            break (jobs, by_id);
        }
        assert!(
            start.elapsed() < LONG,
            "the handler and request spans did not arrive: {:?}",
            collector.spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for job in &jobs {
        assert_eq!(job.service, "traces-test-worker", "OTEL_SERVICE_NAME wins");
        // job → the API's request span → the enqueuer's span (not exported: it is the caller's).
        let mut chain = vec![job.name.clone()];
        let mut parent = job.parent_span_id.clone();
        while let Some(p) = by_id.get(&parent) {
            chain.push(format!("{} ({})", p.name, p.service));
            parent = p.parent_span_id.clone();
        }
        assert_eq!(
            parent,
            trace.parent_id().to_vec(),
            "the chain {chain:?} ends at the enqueuer's span"
        );
        assert_eq!(chain.len(), 2, "job under the request span: {chain:?}");
        assert!(chain[1].starts_with("POST /jobs"), "{chain:?}");
    }
    // The API's own request spans are exported on their schedule, with the default service name.
    w.proc(api).signal("TERM");
    assert_eq!(w.proc(api).wait_exit(LONG), Some(0));
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_the_header_is_stored() {
    let (collector, endpoint) = collector().await;
    let mut w = World::new("notraces").await;
    let api_port = free_port();
    let api_addr = format!("127.0.0.1:{api_port}");
    // No OTEL_* at all for the API and the scheduler; the worker has an endpoint but
    // OTEL_SDK_DISABLED=true.
    let api = w.spawn(
        "api",
        "api",
        &[
            ("ASYNC_JOBS_API_ADDR", &api_addr),
            ("ASYNC_JOBS_AUTH", "none"),
        ],
    );
    let scheduler = w.scheduler("scheduler");
    let worker = w.worker(
        "worker",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    wait_healthy(api_port).await;
    let trace = enqueuer();
    let job = post_job(api_port, &trace, "/jobs", email()).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    // Without an exporter the API stores the header's context itself.
    let done = w.wait_status(id, JobStatus::Succeeded, LONG).await;
    let stored = done.trace_context.unwrap();
    assert_eq!(stored.traceparent(), trace.traceparent());
    assert_eq!(stored.tracestate(), Some("enqueuer=yes"));
    // An invalid traceparent is ignored, not refused.
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{api_port}/jobs"))
        .header("traceparent", "00-not-a-trace-01")
        .json(&email())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body.get("trace_context").is_none(), "{body}");

    for p in [worker, scheduler, api] {
        w.proc(p).signal("TERM");
        assert_eq!(w.proc(p).wait_exit(LONG), Some(0));
    }
    assert_eq!(*collector.requests.lock().unwrap(), 0, "nothing was sent");
    let log_dir = common::binary("async-jobs")
        .parent()
        .unwrap()
        .join("e2e-logs");
    for name in ["api", "worker"] {
        let log =
            std::fs::read_to_string(log_dir.join(format!("{}-{name}.log", w.schema))).unwrap();
        assert!(!log.contains("exporting spans"), "{name}: {log}");
    }
    w.cleanup().await;
}
