//! The OpenAPI document lists exactly the routes the router serves, and its schemas match the
//! JSON the API really sends.

#![allow(clippy::unwrap_used)]

mod suite;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_http::AuthConfig;
use serde_json::Value;

const SERVED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/jobs"),
    ("get", "/jobs/{id}"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/readyz"),
    ("post", "/jobs"),
    ("post", "/jobs/batch"),
    ("post", "/jobs/enqueue"),
    ("post", "/jobs/{id}/cancel"),
    ("post", "/jobs/{id}/retry"),
];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    [
                        "get", "post", "put", "patch", "delete", "head", "options", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn document_lists_exactly_the_served_routes() {
    let api = suite::api(
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        AuthConfig::open(),
    );
    let r = api.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["openapi"].as_str().map(|v| v.starts_with('3')),
        Some(true)
    );
    let listed = documented(&r.json);
    let expected: BTreeSet<_> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(serde_json::to_value(jobs_http::openapi()).unwrap(), r.json);

    // Every documented route is served (not the 404/405 fallbacks) ...
    let id = uuid::Uuid::now_v7();
    for (method, path) in &listed {
        let uri = path.replace("{id}", &id.to_string());
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = api.call(m, &uri, None, None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND {
            assert_ne!(
                r.json["error"]["message"], "no such route",
                "{method} {path}"
            );
        }
    }
    // ... and every other method on those paths is not.
    for path in listed.iter().map(|(_, p)| p).collect::<BTreeSet<_>>() {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if listed.contains(&(m.as_str().to_lowercase(), path.clone())) {
                continue;
            }
            let uri = path.replace("{id}", &id.to_string());
            let r = api.call(m.clone(), &uri, None, None).await;
            assert_eq!(
                r.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} should not be served"
            );
        }
    }
}

fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn schemas_match_the_wire_types() {
    let doc = serde_json::to_value(jobs_http::openapi()).unwrap();
    let api = suite::api(
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        AuthConfig::open(),
    );
    let mut job = api.enqueue("a").await;
    // Every optional key present: as a job enqueued with a traceparent.
    job.trace_context = Some(
        jobs_core::TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap()
            .with_tracestate("k=v"),
    );
    let tc_wire: BTreeSet<String> = serde_json::to_value(&job.trace_context)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(properties(&doc, "TraceContext"), tc_wire);
    let wire: BTreeSet<String> = serde_json::to_value(&job)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(properties(&doc, "Job"), wire);
    // A list page's job is the same object, its payload present only when asked for.
    assert_eq!(properties(&doc, "ListedJob"), wire);
    let required = |schema: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(required("Job").contains("payload"));
    let mut listed = required("ListedJob");
    assert!(
        listed.insert("payload".to_owned()),
        "payload is optional in a list"
    );
    assert_eq!(listed, required("Job"));
    assert_eq!(
        doc["components"]["schemas"]["JobList"]["properties"]["jobs"]["items"]["$ref"],
        "#/components/schemas/ListedJob"
    );
    let backoff: BTreeSet<String> = serde_json::to_value(job.backoff)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(properties(&doc, "Backoff"), backoff);
    let mut full = jobs_core::EnqueueRequest::new("a", "b", "c", serde_json::json!({}))
        .max_attempts(1)
        .priority(1)
        .idempotency_key("k")
        .timeout(std::time::Duration::from_secs(1))
        .delay_tolerance(std::time::Duration::from_secs(1))
        .backoff(jobs_core::Backoff::default())
        .run_at(chrono::Utc::now());
    full.queue = Some("q".into());
    let wire: BTreeSet<String> = serde_json::to_value(&full)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(properties(&doc, "EnqueueRequest"), wire);
    let statuses: BTreeSet<String> = doc["components"]["schemas"]["JobStatus"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let real: BTreeSet<String> = jobs_core::JobStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(statuses, real);
}

#[test]
fn every_jobs_operation_documents_the_store_503s() {
    let doc = serde_json::to_value(jobs_http::openapi()).unwrap();
    let mut checked = 0;
    for (method, path) in documented(&doc) {
        if !path.starts_with("/jobs") {
            continue;
        }
        let description = doc["paths"][&path][&method]["responses"]["503"]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} documents no 503"));
        for code in ["store_unavailable", "store_timeout"] {
            assert!(description.contains(code), "{method} {path}: {description}");
        }
        checked += 1;
    }
    assert_eq!(checked, 7);
}

/// The enqueue routes read `traceparent` / `tracestate` (documented as header parameters) and
/// store them with each job; an invalid `traceparent` is ignored, not refused.
#[tokio::test]
async fn trace_headers_are_documented_and_stored() {
    let doc = serde_json::to_value(jobs_http::openapi()).unwrap();
    for path in ["/jobs", "/jobs/enqueue", "/jobs/batch"] {
        let names: BTreeSet<String> = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            names.contains("traceparent") && names.contains("tracestate"),
            "{path}: {names:?}"
        );
    }
    let api = suite::api(
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        AuthConfig::open(),
    );
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let post = |path: &'static str, body: Value, headers: Vec<(&'static str, &'static str)>| {
        let api = &api;
        async move {
            let mut req = axum::http::Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("content-type", "application/json");
            for (k, v) in headers {
                req = req.header(k, v);
            }
            api.raw(req.body(axum::body::Body::from(body.to_string())).unwrap())
                .await
        }
    };
    let r = post(
        "/jobs",
        suite::req("a"),
        vec![
            ("traceparent", TP),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["trace_context"]["traceparent"], TP);
    assert_eq!(r.json["trace_context"]["tracestate"], "a=1,b=2");
    let stored = api.jobs().await;
    assert_eq!(stored[0].trace_context.as_ref().unwrap().traceparent(), TP);
    let r = post(
        "/jobs/batch",
        serde_json::json!({"jobs": [suite::req("b"), suite::req("b")]}),
        vec![("traceparent", TP)],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    for job in r.json["jobs"].as_array().unwrap() {
        assert_eq!(job["trace_context"]["traceparent"], TP);
    }
    for bad in [
        "",
        "junk",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let r = post("/jobs", suite::req("c"), vec![("traceparent", bad)]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{bad:?}: {r:?}");
        assert!(r.json.get("trace_context").is_none(), "{bad:?}");
    }
}
