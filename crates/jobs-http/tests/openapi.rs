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
    ("post", "/jobs/bulk/retry"),
    ("post", "/jobs/bulk/cancel"),
    ("get", "/pauses"),
    ("get", "/rate-limits"),
    ("put", "/pauses/{use_case}"),
    ("delete", "/pauses/{use_case}"),
    ("put", "/pauses/{use_case}/tenants/{tenant_id}"),
    ("delete", "/pauses/{use_case}/tenants/{tenant_id}"),
    ("get", "/schedules"),
    ("post", "/schedules"),
    ("get", "/schedules/{name}"),
    ("put", "/schedules/{name}"),
    ("delete", "/schedules/{name}"),
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
    // The router serves the document of its own configuration (open here: no security).
    assert_eq!(
        jobs_http::openapi_for(&suite::config(), &AuthConfig::open()),
        r.json
    );

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
    // A single enqueue's and GET /jobs/{id}'s job: the same, with its predicted start.
    let view = jobs_core::JobView {
        job: job.clone(),
        prediction: jobs_core::Prediction::default(),
    };
    let view_wire: BTreeSet<String> = serde_json::to_value(&view)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(properties(&doc, "PredictedJob"), view_wire);
    assert!(view_wire.contains("predicted_start_at") && view_wire.contains("at_risk"));
    for path in ["/jobs", "/jobs/enqueue"] {
        assert_eq!(
            doc["paths"][path]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/PredictedJob"
        );
    }
    assert_eq!(
        doc["paths"]["/jobs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/PredictedJob"
    );
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
        .expire_at_deadline(true)
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

    // A schedule as the API sends it, and the template with every optional key.
    let mut template =
        jobs_core::JobTemplate::new("a", "notifications", "t", serde_json::json!({}));
    template.delay_tolerance_seconds = Some(1.0);
    template.priority = Some(1);
    template.max_attempts = Some(1);
    template.timeout_seconds = Some(1.0);
    template.expire_at_deadline = Some(true);
    let created = api
        .call(
            Method::POST,
            "/schedules",
            None,
            Some(serde_json::json!({
                "name": "s", "cron": "* * * * *", "template": template,
                "missed": {"policy": "catch_up", "max": 2}
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(properties(&doc, "Schedule"), keys(&created.json));
    assert_eq!(
        properties(&doc, "JobTemplate"),
        keys(&created.json["template"])
    );
    let new = jobs_core::NewSchedule {
        name: "n".into(),
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        template,
        missed: jobs_core::MissedPolicy::Skip,
    };
    let new_wire = serde_json::to_value(&new).unwrap();
    assert_eq!(properties(&doc, "NewSchedule"), keys(&new_wire));
    assert_eq!(
        properties(&doc, "ScheduleDefinition"),
        keys(&serde_json::to_value(new.definition()).unwrap())
    );
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
    assert_eq!(checked, 9);
}

/// Every status code each operation can answer, as the handlers, extractors and auth produce
/// them: the document must list exactly these (Schemathesis' status_code_conformance).
const ANSWERS: &[(&str, &str, &[u16])] = &[
    (
        "post",
        "/jobs",
        &[200, 201, 400, 401, 403, 408, 413, 415, 429, 500, 503],
    ),
    (
        "post",
        "/jobs/enqueue",
        &[200, 201, 400, 401, 403, 408, 413, 415, 429, 500, 503],
    ),
    (
        "post",
        "/jobs/batch",
        &[200, 201, 400, 401, 403, 408, 413, 415, 429, 500, 503],
    ),
    ("get", "/jobs", &[200, 400, 401, 500, 503]),
    ("get", "/jobs/{id}", &[200, 400, 401, 404, 500, 503]),
    (
        "post",
        "/jobs/{id}/cancel",
        &[200, 400, 401, 404, 409, 500, 503],
    ),
    (
        "post",
        "/jobs/{id}/retry",
        &[200, 400, 401, 404, 409, 429, 500, 503],
    ),
    (
        "post",
        "/jobs/bulk/retry",
        &[200, 400, 401, 408, 413, 415, 500, 503],
    ),
    (
        "post",
        "/jobs/bulk/cancel",
        &[200, 400, 401, 408, 413, 415, 500, 503],
    ),
    ("get", "/pauses", &[200, 401, 500, 503]),
    ("get", "/rate-limits", &[200, 401, 500, 503]),
    ("put", "/pauses/{use_case}", &[200, 400, 401, 403, 500, 503]),
    (
        "delete",
        "/pauses/{use_case}",
        &[200, 400, 401, 403, 500, 503],
    ),
    (
        "put",
        "/pauses/{use_case}/tenants/{tenant_id}",
        &[200, 400, 401, 403, 500, 503],
    ),
    (
        "delete",
        "/pauses/{use_case}/tenants/{tenant_id}",
        &[200, 400, 401, 403, 500, 503],
    ),
    ("get", "/schedules", &[200, 401, 500, 503]),
    (
        "post",
        "/schedules",
        &[201, 400, 401, 403, 408, 409, 413, 415, 500, 503],
    ),
    ("get", "/schedules/{name}", &[200, 400, 401, 404, 500, 503]),
    (
        "put",
        "/schedules/{name}",
        &[200, 400, 401, 403, 404, 408, 409, 413, 415, 500, 503],
    ),
    (
        "delete",
        "/schedules/{name}",
        &[200, 400, 401, 404, 409, 500, 503],
    ),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
    ("get", "/metrics", &[200]),
    ("get", "/openapi.json", &[200]),
];

/// True for the paths behind the bearer credentials (every other path is an ops path).
fn guarded(path: &str) -> bool {
    ["/jobs", "/pauses", "/rate-limits", "/schedules"]
        .iter()
        .any(|p| path.starts_with(p))
}

fn statuses(doc: &Value, method: &str, path: &str) -> BTreeSet<u16> {
    doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} has no responses"))
        .keys()
        .map(|k| k.parse().unwrap())
        .collect()
}

#[test]
fn every_operation_documents_exactly_the_codes_it_answers() {
    let doc = jobs_http::openapi();
    assert_eq!(ANSWERS.len(), SERVED.len());
    for (method, path, codes) in ANSWERS {
        let expected: BTreeSet<u16> = codes.iter().copied().collect();
        assert_eq!(statuses(&doc, method, path), expected, "{method} {path}");
        for code in codes.iter().filter(|c| **c >= 400) {
            assert_eq!(
                doc["paths"][path][method]["responses"][code.to_string()]["content"]
                    ["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} {code}"
            );
        }
        let secured = doc["paths"][path][method]["security"] == serde_json::json!([{"bearer": []}]);
        let guarded = guarded(path);
        assert_eq!(secured, guarded, "{method} {path}");
    }
}

#[tokio::test]
async fn documented_codes_are_really_answered() {
    // The 400 invalid_id of every id route, the 401 of every /jobs route: what Schemathesis
    // first found undocumented.
    let api = suite::api(
        Arc::new(MemoryStore::new(Arc::new(SystemClock))),
        AuthConfig::operator_token("root"),
    );
    for (method, path, codes) in ANSWERS.iter().filter(|(_, p, _)| guarded(p)) {
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = api.call(m.clone(), path, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(codes.contains(&401));
        if path.contains("{id}") {
            let r = api.call(m, path, Some("root"), None).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::BAD_REQUEST, "invalid_id"),
                "{method} {path}"
            );
            assert!(codes.contains(&400));
        }
    }
}

#[test]
fn document_follows_the_configuration() {
    use jobs_core::{PlatformConfig, UseCaseConfig};
    let mut config = PlatformConfig::default();
    config.use_cases.insert(
        "billing".into(),
        UseCaseConfig::new("billing", 3, std::time::Duration::from_secs(60)),
    );
    config.limits.max_batch = 7;
    config.limits.max_tenant_len = 40;
    let open = jobs_http::openapi_for(&config, &AuthConfig::open());
    let secured = jobs_http::openapi_for(&config, &AuthConfig::operator_token("t"));
    for doc in [&open, &secured] {
        let schemas = &doc["components"]["schemas"];
        let use_cases: BTreeSet<&str> = schemas["EnqueueRequest"]["properties"]["use_case"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            use_cases,
            config.use_cases.keys().map(String::as_str).collect()
        );
        assert_eq!(schemas["BatchRequest"]["properties"]["jobs"]["maxItems"], 7);
        assert_eq!(schemas["BatchRequest"]["properties"]["jobs"]["minItems"], 1);
        assert_eq!(
            schemas["EnqueueRequest"]["properties"]["tenant_id"]["maxLength"],
            40
        );
        for name in ["EnqueueRequest", "BatchRequest", "BackoffRequest"] {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
    }
    // Open: no security anywhere, no 401 documented.
    assert!(open["components"].get("securitySchemes").is_none());
    for (method, path) in documented(&open) {
        assert!(open["paths"][&path][&method].get("security").is_none());
        assert!(!statuses(&open, &method, &path).contains(&401));
    }
    assert_eq!(
        statuses(&secured, "get", "/jobs/{id}"),
        [200, 400, 401, 404, 500, 503].into()
    );
}

#[test]
fn request_schemas_state_the_validation_limits() {
    let doc = jobs_http::openapi();
    let limits = jobs_core::Limits::default();
    let p = &doc["components"]["schemas"]["EnqueueRequest"]["properties"];
    assert_eq!(p["run_at"]["format"], "date-time");
    assert_eq!(p["tenant_id"]["minLength"], 1);
    assert_eq!(p["tenant_id"]["maxLength"], limits.max_tenant_len);
    assert_eq!(p["type"]["maxLength"], limits.max_kind_len);
    assert_eq!(
        p["idempotency_key"]["maxLength"],
        limits.max_idempotency_key_len
    );
    assert_eq!(p["max_attempts"]["minimum"], 1);
    assert_eq!(p["max_attempts"]["maximum"], limits.max_attempts);
    assert_eq!(p["timeout_seconds"]["minimum"], 0.001);
    assert_eq!(
        p["timeout_seconds"]["maximum"],
        limits.max_timeout.as_secs()
    );
    assert_eq!(p["delay_tolerance_seconds"]["minimum"], 0);
    assert_eq!(p["priority"]["minimum"], i16::MIN);
    // A schedule's template is validated as an enqueue request, without the slot's fields.
    let t = &doc["components"]["schemas"]["JobTemplate"];
    assert_eq!(t["additionalProperties"], false);
    assert_eq!(t["properties"]["tenant_id"], p["tenant_id"]);
    assert_eq!(t["properties"]["use_case"], p["use_case"]);
    assert!(t["properties"].get("run_at").is_none());
    assert!(t["properties"].get("idempotency_key").is_none());
    for schema in ["NewSchedule", "ScheduleDefinition"] {
        let s = &doc["components"]["schemas"][schema];
        assert_eq!(s["additionalProperties"], false, "{schema}");
        let zones = s["properties"]["timezone"]["enum"].as_array().unwrap();
        assert!(zones.contains(&Value::from("Europe/Berlin")), "{schema}");
        assert!(zones.contains(&Value::from("UTC")), "{schema}");
        assert_eq!(
            s["properties"]["missed"]["$ref"],
            "#/components/schemas/MissedPolicy"
        );
    }
    let missed = &doc["components"]["schemas"]["MissedPolicy"]["oneOf"];
    assert_eq!(missed[0]["additionalProperties"], false);
    assert_eq!(missed[1]["properties"]["max"]["maximum"], 1000);
    let name = doc["components"]["schemas"]["NewSchedule"]["properties"]["name"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(name, "^[A-Za-z0-9._-]{1,128}$");
    let params = doc["paths"]["/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["schema"]
            .clone()
    };
    assert_eq!(param("status")["$ref"], "#/components/schemas/JobStatus");
    assert_eq!(param("limit")["type"], "integer");
    assert_eq!(param("limit")["maximum"], 500);
    assert_eq!(param("created_after")["format"], "date-time");
    assert_eq!(param("include_payload")["type"], "boolean");
    // The cursor pattern accepts exactly what the API issues.
    let cursor = jobs_http::extract::encode_cursor(uuid::Uuid::now_v7());
    let pattern = param("cursor")["pattern"].as_str().unwrap().to_owned();
    assert_eq!(pattern, r"^[A-Za-z0-9_-]{21}[AQgw]$");
    assert_eq!(cursor.len(), 22);
    assert!("AQgw".contains(cursor.chars().last().unwrap()), "{cursor}");
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
