//! The HTTP API test suite. Every test body takes the store to run against (`Arc<dyn JobStore>`,
//! fresh and empty), so the same suite runs over the in-memory store (`tests/memory.rs`) and over
//! any real store: add a file that calls `api_suite!` with a function making a fresh store.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod flaky;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use jobs_core::config::QuotaConfig;
use jobs_core::{
    ApiStore, DispatchStore, Job, JobService, JobStatus, JobStore, PickRequest, PlatformConfig,
};
use jobs_http::{AppState, AuthConfig};
use serde_json::{json, Value};
use tower::ServiceExt as _;

pub use flaky::{all_jobs, flaky, FlakyStore};

/// Generates one `#[tokio::test]` per suite test, each over a fresh store from `$make` (an async
/// or sync expression yielding `Arc<dyn JobStore>`).
#[macro_export]
macro_rules! api_suite {
    // The suite owns its case list: a backend names only how to make its store, so no backend
    // can miss a case. `every_case_of_the_suite_is_listed` keeps the list complete.
    ($make:expr) => {
        api_suite!(@cases $make;
            enqueue_get_and_idempotent_replay,
            single_enqueue_and_get_answer_the_predicted_start,
            batch_enqueue_is_all_or_none,
            list_filters_and_pages,
            list_rejects_bad_parameters,
            list_leaves_payloads_out_and_stops_at_the_byte_budget,
            list_scan_bound_gives_short_pages_with_a_cursor,
            cancel_and_retry,
            bad_bodies_are_json_errors,
            json_errors_name_the_field_and_follow_the_schema,
            bad_ids_and_routes_are_json_errors,
            quota_exceeded_is_429_with_retry_after,
            request_labels_are_bounded_and_responses_nosniff,
            fencing_tokens_stay_internal,
            metrics_scrapes_read_the_store_at_most_once_per_interval,
            retry_over_quota_is_429_with_retry_after,
            store_failures_map_to_503_and_500,
            bearer_token_guards_jobs_but_not_ops,
            tenant_keys_are_confined,
            metrics_count_enqueues_and_requests,
            nests_under_a_prefix,
            pauses_hold_the_pick_and_follow_the_caller,
            rate_limits_are_listed_as_the_store_enforces_them,
            a_job_set_to_expire_ends_expired_and_can_be_retried,
            bulk_actions_work_in_batches_and_keep_quotas,
            schedules_crud_codes_and_tenant_scope,
        );
    };
    (@cases $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store: std::sync::Arc<dyn jobs_core::JobStore> = $make;
                suite::$name(store).await;
            }
        )*

        /// Every `pub async fn case(store: Arc<dyn JobStore>)` of the suite's source is a case
        /// of the list above, and nothing else is.
        #[test]
        fn every_case_of_the_suite_is_listed() {
            let source = include_str!("suite/mod.rs");
            let defined: std::collections::BTreeSet<&str> = source
                .lines()
                .filter_map(|l| l.strip_prefix("pub async fn "))
                .filter(|l| l.contains("(store: Arc<dyn JobStore>)"))
                .filter_map(|l| l.split('(').next())
                .collect();
            let listed: std::collections::BTreeSet<&str> = [$(stringify!($name)),*].into();
            assert_eq!(defined, listed);
        }
    };
}

/// The tenant with a quota of 2 notifications.
pub const QUOTA_TENANT: &str = "quota-tenant";

pub fn config() -> PlatformConfig {
    PlatformConfig::default().with_quotas(QuotaConfig::unlimited().with_limit(
        QUOTA_TENANT,
        "notifications",
        2,
    ))
}

/// A router over `store` (wrapped for fault injection) with `auth`.
pub struct Api {
    pub router: Router,
    pub store: Arc<FlakyStore>,
}

pub fn api(store: Arc<dyn JobStore>, auth: AuthConfig) -> Api {
    api_with(store, auth, jobs_http::HttpSettings::default())
}

/// [`api`] with `settings`.
pub fn api_with(
    store: Arc<dyn JobStore>,
    auth: AuthConfig,
    settings: jobs_http::HttpSettings,
) -> Api {
    let store = flaky(store);
    let service = JobService::new(store.clone(), Arc::new(config()));
    Api {
        router: jobs_http::router(AppState::new(service, auth).with_settings(settings)),
        store,
    }
}

/// A response, its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// The error code, asserting the JSON error shape.
    pub fn code(&self) -> &str {
        assert!(
            self.headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
            "error is not JSON: {self:?}"
        );
        let msg = self.json["error"]["message"].as_str();
        assert!(msg.is_some_and(|m| !m.is_empty()), "no message: {self:?}");
        self.json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {self:?}"))
    }

    pub fn job(&self) -> Job {
        serde_json::from_value(self.json.clone())
            .unwrap_or_else(|e| panic!("not a job ({e}): {self:?}"))
    }
}

impl Api {
    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.raw(req.unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, None, Some(body)).await
    }

    pub async fn jobs(&self) -> Vec<Job> {
        let mut jobs = all_jobs(self.store.inner().as_ref()).await;
        jobs.sort_by_key(|j| j.id);
        jobs
    }

    pub async fn enqueue(&self, tenant: &str) -> Job {
        let r = self.post("/jobs", req(tenant)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.job()
    }
}

pub fn req(tenant: &str) -> Value {
    json!({"tenant_id": tenant, "use_case": "notifications", "type": "send_email", "payload": {"to": "a@b.c"}})
}

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

pub async fn enqueue_get_and_idempotent_replay(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let created = api.post("/jobs", req("acme")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let job = created.job();
    assert_eq!(
        (job.tenant_id.as_str(), job.kind.as_str(), job.status),
        ("acme", "send_email", JobStatus::Pending)
    );
    assert_eq!(
        created.json["type"], "send_email",
        "wire name of kind is `type`"
    );

    let got = api.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.job(), job);

    // The alias path.
    let alias = api.post("/jobs/enqueue", req("acme")).await;
    assert_eq!(alias.status, StatusCode::CREATED);

    // Idempotency via the header; then the same key in the body; then a conflicting pair.
    let with_header = |key: &str| {
        Request::post("/jobs")
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
    };
    let first = api
        .raw(
            with_header("k-1")
                .body(Body::from(req("acme").to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = api
        .raw(
            with_header("k-1")
                .body(Body::from(req("acme").to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "replay is 200");
    assert_eq!(again.job(), first.job());
    let mut body_key = req("acme");
    body_key["idempotency_key"] = json!("k-1");
    let via_body = api.post("/jobs", body_key.clone()).await;
    assert_eq!(
        (via_body.status, via_body.job().id),
        (StatusCode::OK, first.job().id)
    );
    let before = api.jobs().await;
    let mismatch = api
        .raw(
            with_header("k-2")
                .body(Body::from(body_key.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (mismatch.status, mismatch.code()),
        (StatusCode::BAD_REQUEST, "idempotency_key_mismatch")
    );
    assert_eq!(api.jobs().await, before);
    assert_eq!(before.len(), 3);
}

pub async fn single_enqueue_and_get_answer_the_predicted_start(store: Arc<dyn JobStore>) {
    use chrono::{DateTime, Utc};
    let api = api(store, AuthConfig::open());
    let time = |v: &Value| -> Option<DateTime<Utc>> {
        v.as_str()
            .map(|s| DateTime::parse_from_rfc3339(s).unwrap().to_utc())
    };
    // A place is free under the cap (10): the job starts at once, in time.
    let r = api.post("/jobs", req("a")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let job = r.job();
    let predicted = time(&r.json["predicted_start_at"]).expect("a prediction");
    assert!(
        predicted >= job.created_at && predicted <= job.deadline_at,
        "{r:?}"
    );
    assert_eq!(r.json["at_risk"], false);
    let g = api.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(time(&g.json["predicted_start_at"]).is_some());
    assert_eq!(g.json["at_risk"], false);
    // Fill the cap; one more waits. No drain rate recorded: no prediction (both null).
    for _ in 0..10 {
        api.enqueue("a").await;
    }
    let pick = PickRequest {
        cap: 10,
        limit: 10,
        lease: std::time::Duration::from_secs(60),
    };
    assert_eq!(
        api.store
            .lease_due("notifications", pick)
            .await
            .unwrap()
            .len(),
        10
    );
    let r = api.post("/jobs", req("b")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        r.json["predicted_start_at"].is_null() && r.json["at_risk"].is_null(),
        "{r:?}"
    );
    let waiting = r.job();
    // With the drain rate the scheduler records: after the job ahead of it, at 2 jobs/s.
    api.store
        .record_drain_rate("notifications", 2.0)
        .await
        .unwrap();
    let g = api.get(&format!("/jobs/{}", waiting.id)).await;
    let predicted = time(&g.json["predicted_start_at"]).expect("a prediction");
    let wait = predicted - waiting.created_at;
    assert!(
        wait >= chrono::TimeDelta::milliseconds(900) && wait <= chrono::TimeDelta::seconds(60),
        "{g:?}"
    );
    assert_eq!(g.json["at_risk"], false);
    // A job in flight has no predicted start.
    let g = api.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(g.json["status"], "dispatched");
    assert!(g.json["predicted_start_at"].is_null() && g.json["at_risk"].is_null());
    // A failed prediction read does not fail the enqueue: the job, with nulls.
    api.store
        .interceptor()
        .position_unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = api.post("/jobs", req("c")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert!(r.json["predicted_start_at"].is_null() && r.json["at_risk"].is_null());
    api.store
        .interceptor()
        .position_unavailable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Batch enqueue and list answer jobs without a prediction.
    let b = api.post("/jobs/batch", json!({"jobs": [req("d")]})).await;
    assert_eq!(b.status, StatusCode::CREATED);
    assert!(
        b.json["jobs"][0].get("predicted_start_at").is_none(),
        "{b:?}"
    );
    let l = api.get("/jobs").await;
    assert!(
        l.json["jobs"][0].get("predicted_start_at").is_none(),
        "{l:?}"
    );
}

pub async fn batch_enqueue_is_all_or_none(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let r = api
        .post("/jobs/batch", json!({"jobs": [req("a"), req("b")]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let jobs = r.json["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0]["tenant_id"].as_str(), jobs[1]["tenant_id"].as_str()),
        (Some("a"), Some("b"))
    );
    let before = api.jobs().await;

    let r = api.post("/jobs/batch", json!({"jobs": []})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_batch_size")
    );
    let mut bad = req("c");
    bad["use_case"] = json!("nope");
    let r = api
        .post("/jobs/batch", json!({"jobs": [req("c"), bad]}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "unknown_use_case")
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job 1"),
        "{r:?}"
    );
    let r = api.post("/jobs/batch", json!([req("c")])).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    assert_eq!(api.jobs().await, before, "refused batches change nothing");

    // A replayed batch (every job keyed) is 200 with the same jobs.
    let mut keyed = req("d");
    keyed["idempotency_key"] = json!("batch-key");
    let first = api
        .post("/jobs/batch", json!({"jobs": [keyed.clone()]}))
        .await;
    let second = api.post("/jobs/batch", json!({"jobs": [keyed]})).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::CREATED, StatusCode::OK)
    );
    assert_eq!(first.json, second.json);
}

pub async fn list_filters_and_pages(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    for i in 0..5 {
        let mut r = req(if i % 2 == 0 { "even" } else { "odd" });
        if i == 4 {
            r["use_case"] = json!("message_labeling");
            r["type"] = json!("label_message");
        }
        assert_eq!(api.post("/jobs", r).await.status, StatusCode::CREATED);
    }
    let count = |r: &Reply| {
        r.json["jobs"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(usize::MAX)
    };
    assert_eq!(count(&api.get("/jobs").await), 5);
    assert_eq!(count(&api.get("/jobs?tenant_id=even").await), 3);
    assert_eq!(
        count(&api.get("/jobs?tenant_id=even&use_case=notifications").await),
        2
    );
    assert_eq!(count(&api.get("/jobs?type=label_message").await), 1);
    assert_eq!(count(&api.get("/jobs?status=pending").await), 5);
    assert_eq!(count(&api.get("/jobs?status=dead").await), 0);
    assert_eq!(
        count(&api.get("/jobs?created_after=2000-01-01T00:00:00Z").await),
        5
    );
    assert_eq!(
        count(
            &api.get("/jobs?created_before=2000-01-01T00:00:00%2B02:00")
                .await
        ),
        0
    );

    // Walk every page of 2: each job exactly once, newest first.
    let mut seen = Vec::new();
    let mut uri = "/jobs?limit=2".to_owned();
    loop {
        let page = api.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        seen.extend(
            page.json["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page.json["next_cursor"].as_str() {
            Some(c) => uri = format!("/jobs?limit=2&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len(), 5);

    // SQL-looking and odd values are just values.
    for uri in [
        "/jobs?tenant_id=%27%20OR%201%3D1%20--",
        "/jobs?use_case=notifications%27%3B%20DROP%20TABLE%20jobs%3B--",
        "/jobs?type=%25",
        "/jobs?tenant_id=%00",
    ] {
        let r = api.get(uri).await;
        assert_eq!((r.status, count(&r)), (StatusCode::OK, 0), "{uri}: {r:?}");
    }
    assert_eq!(api.jobs().await.len(), 5);
}

/// Every page of `uri` (which has a `?`), following `next_cursor`: the pages' JSON and body sizes.
async fn walk_pages(api: &Api, uri: &str) -> Vec<(Value, usize)> {
    let mut pages = Vec::new();
    let mut next = uri.to_owned();
    loop {
        let page = api.get(&next).await;
        assert_eq!(page.status, StatusCode::OK, "{next}: {}", page.text);
        let cursor = page.json["next_cursor"].as_str().map(str::to_owned);
        pages.push((page.json, page.text.len()));
        assert!(pages.len() < 100, "the walk does not end");
        match cursor {
            Some(c) => next = format!("{uri}&cursor={c}"),
            None => return pages,
        }
    }
}

fn page_ids(pages: &[(Value, usize)]) -> Vec<String> {
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|(p, _)| p["jobs"].as_array().unwrap().clone())
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.reverse();
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no repeats");
    ids
}

/// Issue 13, item 3: `GET /jobs?limit=500` over 250 KB payloads answered 128 MB. A list leaves
/// payloads out unless asked; with them, a page stops at the byte budget with a cursor.
pub async fn list_leaves_payloads_out_and_stops_at_the_byte_budget(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let blob = "x".repeat(250_000);
    for n in 0..20 {
        let mut r = req("big");
        r["payload"] = json!({"blob": blob, "n": n});
        assert_eq!(api.post("/jobs", r).await.status, StatusCode::CREATED);
    }
    // Without payloads: 20 jobs in well under 64 KiB, no `payload` key at all.
    for uri in ["/jobs?limit=500", "/jobs?limit=500&include_payload=false"] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.text.len() < 64 * 1024,
            "{uri}: {} bytes for 20 jobs without payloads",
            r.text.len()
        );
        let jobs = r.json["jobs"].as_array().unwrap();
        assert_eq!((jobs.len(), &r.json["next_cursor"]), (20, &Value::Null));
        assert!(
            jobs.iter()
                .all(|j| j.get("payload").is_none() && j["id"].is_string()),
            "{uri}: the payload key is left out"
        );
    }
    // With payloads: pages of at most the budget (4 MiB) plus the jobs' other fields, each cut
    // before the job that would not fit, and the cursors reach every job once.
    let budget = jobs_http::HttpSettings::default().list_max_bytes as usize;
    let pages = walk_pages(&api, "/jobs?limit=500&include_payload=true").await;
    assert!(pages.len() >= 2, "20 × 250 KB does not fit one page");
    for (i, (page, size)) in pages.iter().enumerate() {
        assert!(
            *size <= budget + 64 * 1024,
            "page {i}: {size} bytes over the {budget}-byte budget"
        );
        let jobs = page["jobs"].as_array().unwrap();
        assert!(!jobs.is_empty());
        assert!(jobs
            .iter()
            .all(|j| j["payload"]["blob"].as_str().map(str::len) == Some(250_000)));
    }
    // 16 payloads of ~250 KB fit 4 MiB, a 17th does not.
    assert_eq!(pages[0].0["jobs"].as_array().unwrap().len(), 16);
    assert_eq!(page_ids(&pages).len(), 20);
}

/// Issue 13, item 6: one call examines at most `list_max_scanned` candidate jobs, so a sparse
/// filter comes in short or empty pages with a cursor, and the walk still reaches every match.
pub async fn list_scan_bound_gives_short_pages_with_a_cursor(store: Arc<dyn JobStore>) {
    let settings = jobs_http::HttpSettings {
        list_max_scanned: 4,
        ..jobs_http::HttpSettings::default()
    };
    let api = api_with(store, AuthConfig::open(), settings);
    let mut rare = Vec::new();
    for i in 0..12 {
        let mut r = req("a");
        if i < 2 {
            r["type"] = json!("rare_kind");
        }
        let created = api.post("/jobs", r).await;
        assert_eq!(created.status, StatusCode::CREATED);
        if i < 2 {
            rare.push(created.job().id.to_string());
        }
        api.enqueue("b").await; // another tenant's jobs are not candidates of a's list
    }
    rare.reverse();
    let first = api.get("/jobs?tenant_id=a&type=rare_kind").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.json["jobs"].as_array().unwrap().is_empty() && first.json["next_cursor"].is_string(),
        "the newest 4 of a's jobs hold no match: an empty page with a cursor: {}",
        first.text
    );
    let pages = walk_pages(&api, "/jobs?tenant_id=a&type=rare_kind").await;
    assert_eq!(page_ids(&pages), rare);
    assert!(
        pages.len() >= 3,
        "12 candidates, 4 per call: {}",
        pages.len()
    );
    // Without a tenant the candidates are every job (24): status filters walk them the same way.
    let pages = walk_pages(&api, "/jobs?status=pending&limit=500").await;
    assert_eq!(page_ids(&pages).len(), 24);
    assert!(pages.len() >= 6);
}

pub async fn list_rejects_bad_parameters(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    api.enqueue("a").await;
    for (uri, code) in [
        ("/jobs?limit=0", "invalid_limit"),
        ("/jobs?limit=501", "invalid_limit"),
        ("/jobs?limit=-1", "invalid_limit"),
        ("/jobs?limit=99999999999999999999999", "invalid_limit"),
        ("/jobs?limit=ten", "invalid_limit"),
        ("/jobs?cursor=not-a-cursor", "invalid_cursor"),
        ("/jobs?cursor=AAAA", "invalid_cursor"),
        ("/jobs?cursor=%27%20OR%201%3D1", "invalid_cursor"),
        ("/jobs?status=exploded", "invalid_status"),
        ("/jobs?created_after=yesterday", "invalid_timestamp"),
        (
            "/jobs?created_before=2020-13-45T99:00:00Z",
            "invalid_timestamp",
        ),
        ("/jobs?tenant=a", "invalid_query"),
        ("/jobs?limit=1&limit=2", "invalid_query"),
        ("/jobs?include_payload=yes", "invalid_query"),
        ("/jobs?include_payload=1", "invalid_query"),
        (
            "/jobs?include_payload=true&include_payload=false",
            "invalid_query",
        ),
    ] {
        let r = api.get(uri).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{uri}"
        );
    }
    assert_eq!(api.get("/jobs?limit=500").await.status, StatusCode::OK);
    assert_eq!(api.get("/jobs?limit=1").await.status, StatusCode::OK);
}

pub async fn cancel_and_retry(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let job = api.enqueue("a").await;
    let other = api.enqueue("a").await;
    let r = api
        .call(Method::POST, &format!("/jobs/{}/retry", job.id), None, None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "illegal_transition")
    );
    let r = api
        .call(
            Method::POST,
            &format!("/jobs/{}/cancel", job.id),
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, JobStatus::Cancelled)
    );
    let r = api
        .call(
            Method::POST,
            &format!("/jobs/{}/cancel", job.id),
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, JobStatus::Cancelled),
        "cancel is idempotent"
    );
    let r = api
        .call(Method::POST, &format!("/jobs/{}/retry", job.id), None, None)
        .await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, JobStatus::Pending)
    );
    let unknown = uuid::Uuid::now_v7();
    for action in ["cancel", "retry"] {
        let r = api
            .call(
                Method::POST,
                &format!("/jobs/{unknown}/{action}"),
                None,
                None,
            )
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    }
    let r = api.get(&format!("/jobs/{unknown}")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(
        api.store.get(other.id).await.unwrap().unwrap(),
        other,
        "the other job is untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input: right status, JSON error, nothing changed
// ---------------------------------------------------------------------------------------------

fn post_bytes(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

pub async fn bad_bodies_are_json_errors(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let existing = api.enqueue("a").await;
    let before = api.jobs().await;
    let json = Some("application/json");
    let mut nested = String::new();
    for _ in 0..100_000 {
        nested.push_str("{\"a\":");
    }
    nested.push('1');
    for _ in 0..100_000 {
        nested.push('}');
    }
    let deep_payload = format!(
        r#"{{"tenant_id":"a","use_case":"notifications","type":"k","payload":{}{}{}}}"#,
        "[".repeat(5000),
        "1",
        "]".repeat(5000)
    );
    let mut bad_utf8 = br#"{"tenant_id":"a"#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc0]);
    bad_utf8.extend_from_slice(br#"","use_case":"notifications","type":"k"}"#);
    let ten_mb = format!(
        r#"{{"tenant_id":"a","use_case":"notifications","type":"k","payload":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let big_payload = json!({"tenant_id":"a","use_case":"notifications","type":"k","payload": "x".repeat(300 * 1024)}).to_string();

    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        ("empty body", post_bytes("/jobs", json, ""), StatusCode::BAD_REQUEST, "invalid_json"),
        ("no content type", post_bytes("/jobs", None, req("a").to_string()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("text/plain", post_bytes("/jobs", Some("text/plain"), req("a").to_string()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("form", post_bytes("/jobs", Some("application/x-www-form-urlencoded"), "tenant_id=a"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("not json", post_bytes("/jobs", json, "{nope"), StatusCode::BAD_REQUEST, "invalid_json"),
        ("array", post_bytes("/jobs", json, "[]"), StatusCode::BAD_REQUEST, "invalid_json"),
        ("wrong types", post_bytes("/jobs", json, r#"{"tenant_id":1,"use_case":"notifications","type":"k"}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        ("unknown field", post_bytes("/jobs", json, r#"{"tenant_id":"a","use_case":"notifications","type":"k","evil":1}"#), StatusCode::BAD_REQUEST, "invalid_json"),
        ("deeply nested", post_bytes("/jobs", json, nested), StatusCode::BAD_REQUEST, "invalid_json"),
        ("deeply nested payload", post_bytes("/jobs", json, deep_payload), StatusCode::BAD_REQUEST, "invalid_json"),
        ("invalid utf-8", post_bytes("/jobs", json, bad_utf8), StatusCode::BAD_REQUEST, "invalid_json"),
        ("10 MB", post_bytes("/jobs", json, ten_mb.clone()), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ("10 MB batch", post_bytes("/jobs/batch", json, format!(r#"{{"jobs":[{ten_mb}]}}"#)), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        ("payload over 256 KiB", post_bytes("/jobs", json, big_payload), StatusCode::BAD_REQUEST, "payload_too_large"),
        ("unknown use case", post_bytes("/jobs", json, json!({"tenant_id":"a","use_case":"x","type":"k"}).to_string()), StatusCode::BAD_REQUEST, "unknown_use_case"),
        ("empty tenant", post_bytes("/jobs", json, req("").to_string()), StatusCode::BAD_REQUEST, "empty_tenant"),
        ("zero attempts", post_bytes("/jobs", json, json!({"tenant_id":"a","use_case":"notifications","type":"k","max_attempts":0}).to_string()), StatusCode::BAD_REQUEST, "max_attempts_zero"),
        ("NaN-ish tolerance", post_bytes("/jobs", json, json!({"tenant_id":"a","use_case":"notifications","type":"k","delay_tolerance_seconds":1e300}).to_string()), StatusCode::BAD_REQUEST, "delay_tolerance_overflow"),
        ("batch wrong ct", post_bytes("/jobs/batch", Some("text/plain"), "{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    ];
    for (name, request, status, code) in cases {
        let r = api.raw(request).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{name}: {}",
            &r.text[..r.text.len().min(300)]
        );
    }
    // The 10 MB body without a Content-Length (streamed) is cut off at the limit too.
    let chunks = futures_stream(ten_mb.into_bytes());
    let r = api
        .raw(post_bytes("/jobs", json, Body::from_stream(chunks)))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_eq!(api.jobs().await, before, "no bad request changed anything");
    assert_eq!(api.store.get(existing.id).await.unwrap().unwrap(), existing);
}

/// The contract as Schemathesis checks it (scripts/schemathesis.sh): JSON errors name the field
/// in plain words, JSON Schema's integers (`3.0`) are integers, lengths count characters, and
/// what the document's schemas refuse the API refuses.
pub async fn json_errors_name_the_field_and_follow_the_schema(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let with = |extra: Value| {
        let mut body = req("a");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, code, message) in [
        (
            with(json!({"run_at": ""})),
            "invalid_json",
            "run_at: expected an RFC 3339 date-time (like 2026-01-31T12:00:00Z), got an empty string",
        ),
        (
            with(json!({"run_at": "2026-01-31 12:00:00+0000"})),
            "invalid_json",
            "run_at: expected an RFC 3339 date-time (like 2026-01-31T12:00:00Z), got \"2026-01-31 12:00:00+0000\"",
        ),
        (
            with(json!({"run_at": 5})),
            "invalid_json",
            "run_at: invalid type: integer `5`, expected an RFC 3339 date-time (like 2026-01-31T12:00:00Z)",
        ),
        (
            with(json!({"max_attempts": 1.5})),
            "invalid_json",
            "max_attempts: expected a whole number from 0 to 4294967295, got 1.5",
        ),
        (
            with(json!({"priority": 40000})),
            "invalid_json",
            "priority: expected a whole number from -32768 to 32767, got 40000",
        ),
        (
            with(json!({"tenant_id": 7})),
            "invalid_json",
            "tenant_id: invalid type: integer `7`, expected a string",
        ),
        (
            with(json!({"backoff": {"base_seconds": 1, "cap_seconds": 2, "jiter": "none"}})),
            "invalid_json",
            "backoff.jiter: unknown field `jiter`, expected one of `strategy`, `base_seconds`, `cap_seconds`, `jitter`",
        ),
        (
            with(json!({"backoff": {"base_seconds": -1, "cap_seconds": 2}})),
            "invalid_json",
            "backoff.base_seconds: seconds must not be negative",
        ),
        (
            json!({"use_case": "notifications", "type": "k"}),
            "invalid_json",
            "body: missing field `tenant_id`",
        ),
        (
            with(json!({"timeout_seconds": 0.0005})),
            "invalid_timeout",
            "timeout_seconds must be from 0.001 to 86400",
        ),
        (
            with(json!({"tenant_id": "x".repeat(129)})),
            "tenant_too_long",
            "tenant_id is 129 characters; the limit is 128",
        ),
    ] {
        let r = api.post("/jobs", body.clone()).await;
        assert_eq!(
            (r.status, r.code(), r.json["error"]["message"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, code, message),
            "{body}"
        );
    }
    let r = api
        .post(
            "/jobs/batch",
            json!({"jobs": [req("a"), with(json!({"run_at": ""}))]}),
        )
        .await;
    assert_eq!(r.code(), "invalid_json");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("jobs[1].run_at: expected an RFC 3339 date-time"),
        "{r:?}"
    );
    let r = api
        .raw(post_bytes("/jobs", Some("application/json"), ""))
        .await;
    assert_eq!(
        r.json["error"]["message"],
        "the request body is empty: expected a JSON object"
    );
    let r = api
        .raw(post_bytes(
            "/jobs",
            Some("application/json"),
            "{\"tenant_id\": }",
        ))
        .await;
    assert_eq!(r.code(), "invalid_json");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body at line 1 column 15"),
        "{r:?}"
    );
    let r = api
        .raw(post_bytes(
            "/jobs",
            Some("application/json"),
            format!("{} x", req("a")),
        ))
        .await;
    assert_eq!(r.code(), "invalid_json");

    // Accepted: whole numbers written as floats, 128 multi-byte characters, a 1 ms timeout,
    // a lower-case RFC 3339 date-time.
    let ok = with(json!({
        "tenant_id": "é".repeat(128),
        "max_attempts": 3.0,
        "priority": -2e0,
        "timeout_seconds": 0.001,
        "run_at": "2026-01-31t12:00:00z",
        "idempotency_key": "ü".repeat(255),
    }));
    let r = api.post("/jobs", ok).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let job = r.job();
    assert_eq!((job.max_attempts, job.priority), (3, -2));

    // The list refuses what its parameters' schemas refuse.
    for (uri, code) in [
        ("/jobs?limit=%205", "invalid_limit"),
        ("/jobs?limit=%2B5", "invalid_limit"),
        ("/jobs?limit=", "invalid_limit"),
        (
            "/jobs?created_after=2026-01-31%2012:00:00%2B0000",
            "invalid_timestamp",
        ),
        ("/jobs?status=", "invalid_status"),
    ] {
        let r = api.get(uri).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{uri}"
        );
    }
    let r = api.get("/jobs?created_after=x").await;
    assert_eq!(
        r.json["error"]["message"],
        "created_after: expected an RFC 3339 date-time (like 2026-01-31T12:00:00Z), got \"x\""
    );
}

/// A body stream in 64 KiB chunks (no Content-Length).
fn futures_stream(bytes: Vec<u8>) -> futures_core_stream::Chunks {
    futures_core_stream::chunks(bytes)
}

mod futures_core_stream {
    //! A minimal chunked stream without a futures dependency.
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Chunks {
        bytes: Vec<u8>,
        pos: usize,
    }

    pub fn chunks(bytes: Vec<u8>) -> Chunks {
        Chunks { bytes, pos: 0 }
    }

    impl futures_util::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.pos >= self.bytes.len() {
                return Poll::Ready(None);
            }
            let end = (self.pos + 64 * 1024).min(self.bytes.len());
            let chunk = self.bytes[self.pos..end].to_vec();
            self.pos = end;
            Poll::Ready(Some(Ok(chunk)))
        }
    }
}

pub async fn bad_ids_and_routes_are_json_errors(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let existing = api.enqueue("a").await;
    let before = api.jobs().await;
    for (method, uri, status, code) in [
        (
            Method::GET,
            "/jobs/not-a-uuid",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::GET,
            "/jobs/..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::POST,
            "/jobs/..%2F..%2Fetc%2Fpasswd/cancel",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::POST,
            "/jobs/%27%20OR%201%3D1/retry",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::GET,
            "/jobs/%00",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::GET,
            "/jobs/../../etc/passwd",
            StatusCode::NOT_FOUND,
            "unknown_route",
        ),
        (Method::GET, "/nope", StatusCode::NOT_FOUND, "unknown_route"),
        (
            Method::DELETE,
            "/jobs",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            &format!("/jobs/{}", existing.id),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            &format!("/jobs/{}/cancel", existing.id),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ] {
        let r = api.call(method.clone(), uri, None, None).await;
        assert_eq!((r.status, r.code()), (status, code), "{method} {uri}");
    }
    assert_eq!(api.jobs().await, before);
}

// ---------------------------------------------------------------------------------------------
// Quotas and store failures
// ---------------------------------------------------------------------------------------------

pub async fn quota_exceeded_is_429_with_retry_after(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    api.enqueue(QUOTA_TENANT).await;
    api.enqueue(QUOTA_TENANT).await;
    let before = api.jobs().await;
    let r = api.post("/jobs", req(QUOTA_TENANT)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
    let after: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1);
    assert_eq!(api.jobs().await, before);
    // Another use case and another tenant are not affected.
    assert_eq!(
        api.post("/jobs", req("someone-else")).await.status,
        StatusCode::CREATED
    );
}

/// The review's repro: quota 2, enqueue a and b, cancel a, enqueue c, retry a → refused as an
/// enqueue would be, and the tenant still holds 2 unfinished jobs.
pub async fn retry_over_quota_is_429_with_retry_after(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let a = api.enqueue(QUOTA_TENANT).await;
    api.enqueue(QUOTA_TENANT).await;
    let cancelled = api
        .call(Method::POST, &format!("/jobs/{}/cancel", a.id), None, None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    api.enqueue(QUOTA_TENANT).await;
    let before = api.jobs().await;
    let r = api
        .call(Method::POST, &format!("/jobs/{}/retry", a.id), None, None)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
        "{r:?}"
    );
    let after: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1);
    assert_eq!(api.jobs().await, before);
    // Once a place frees up, the same retry goes through.
    let other = before
        .iter()
        .find(|j| j.id != a.id && j.status == JobStatus::Pending)
        .unwrap();
    api.call(
        Method::POST,
        &format!("/jobs/{}/cancel", other.id),
        None,
        None,
    )
    .await;
    let r = api
        .call(Method::POST, &format!("/jobs/{}/retry", a.id), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.job().status, JobStatus::Pending);
}

pub async fn store_failures_map_to_503_and_500(store: Arc<dyn JobStore>) {
    use std::sync::atomic::Ordering::SeqCst;
    let api = api(store, AuthConfig::open());
    assert_eq!(api.get("/readyz").await.status, StatusCode::OK);
    api.store
        .interceptor()
        .enqueue_unavailable_before
        .store(1, SeqCst);
    let r = api.post("/jobs", req("a")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    api.store.interceptor().enqueue_internal.store(1, SeqCst);
    let r = api.post("/jobs", req("a")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    assert!(
        !r.text.contains("secret"),
        "internal details are not sent: {}",
        r.text
    );
    api.store.interceptor().enqueue_timeout.store(1, SeqCst);
    let r = api.post("/jobs", req("a")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_timeout")
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("took too long"));
    api.store
        .interceptor()
        .reads_unavailable
        .store(true, SeqCst);
    let r = api.get("/jobs").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    let r = api.get(&format!("/jobs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    api.store
        .interceptor()
        .reads_unavailable
        .store(false, SeqCst);
    api.store.interceptor().ping_fails.store(true, SeqCst);
    let r = api.get("/readyz").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    );
    assert_eq!(
        api.get("/healthz").await.status,
        StatusCode::OK,
        "liveness does not depend on the store"
    );
    assert!(api.jobs().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Authentication and tenant confinement
// ---------------------------------------------------------------------------------------------

pub async fn bearer_token_guards_jobs_but_not_ops(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::operator_token("op-secret"));
    for token in [None, Some("wrong"), Some("op-secre"), Some("op-secret ")] {
        let r = api.call(Method::POST, "/jobs", token, Some(req("a"))).await;
        // "op-secret " is trimmed by the header parser and therefore valid.
        if token == Some("op-secret ") {
            assert_eq!(r.status, StatusCode::CREATED);
            continue;
        }
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{token:?}"
        );
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    let r = api
        .raw(
            Request::get("/jobs")
                .header(header::AUTHORIZATION, "Basic b3A6c2VjcmV0")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    for uri in ["/jobs", &format!("/jobs/{}", uuid::Uuid::now_v7())] {
        assert_eq!(api.get(uri).await.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // An unauthenticated 10 MB body is refused for the credentials, not read.
    let r = api
        .raw(post_bytes(
            "/jobs",
            Some("application/json"),
            vec![b' '; 10 * 1024 * 1024],
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(
            Method::POST,
            "/jobs",
            Some("op-secret"),
            Some(req("anyone")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = api
        .call(Method::GET, "/jobs", Some("op-secret"), None)
        .await;
    assert_eq!(
        r.json["jobs"].as_array().unwrap().len(),
        2,
        "the operator sees every tenant"
    );
    for uri in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(
            api.get(uri).await.status,
            StatusCode::OK,
            "{uri} needs no auth"
        );
    }
}

pub async fn tenant_keys_are_confined(store: Arc<dyn JobStore>) {
    let auth = AuthConfig::operator_token("op")
        .with_tenant_key("key-a", "tenant-a")
        .with_tenant_key_hash(&jobs_http::auth::hash_key("key-b"), "tenant-b")
        .unwrap();
    let api = api(store, auth);
    let call = |m: Method, uri: String, key: &'static str, body: Option<Value>| {
        let api = &api;
        async move { api.call(m, &uri, Some(key), body).await }
    };
    let a_job = call(Method::POST, "/jobs".into(), "key-a", Some(req("tenant-a")))
        .await
        .job();
    let b_job = call(Method::POST, "/jobs".into(), "key-b", Some(req("tenant-b")))
        .await
        .job();
    let mut b_dead = call(Method::POST, "/jobs".into(), "key-b", Some(req("tenant-b")))
        .await
        .job();
    b_dead = call(
        Method::POST,
        format!("/jobs/{}/cancel", b_dead.id),
        "key-b",
        None,
    )
    .await
    .job();
    let before = api.jobs().await;

    // A cannot read B's job.
    let r = call(Method::GET, format!("/jobs/{}", b_job.id), "key-a", None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // A cannot list B's jobs, with or without asking for them.
    let r = call(
        Method::GET,
        "/jobs?tenant_id=tenant-b".into(),
        "key-a",
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let r = call(Method::GET, "/jobs".into(), "key-a", None).await;
    let ids: Vec<_> = r.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![a_job.id.to_string()]);
    // A cannot enqueue for B (one job or in a batch).
    let r = call(Method::POST, "/jobs".into(), "key-a", Some(req("tenant-b"))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_tenant")
    );
    let r = call(
        Method::POST,
        "/jobs/enqueue".into(),
        "key-a",
        Some(req("tenant-b")),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_tenant")
    );
    let r = call(
        Method::POST,
        "/jobs/batch".into(),
        "key-a",
        Some(json!({"jobs": [req("tenant-a"), req("tenant-b")]})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_tenant")
    );
    // A cannot cancel or retry B's jobs.
    let r = call(
        Method::POST,
        format!("/jobs/{}/cancel", b_job.id),
        "key-a",
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = call(
        Method::POST,
        format!("/jobs/{}/retry", b_dead.id),
        "key-a",
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(api.jobs().await, before, "nothing of B changed");

    // B still can; the operator sees all.
    let r = call(
        Method::POST,
        format!("/jobs/{}/retry", b_dead.id),
        "key-b",
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, JobStatus::Pending)
    );
    let r = call(Method::GET, "/jobs".into(), "op", None).await;
    assert_eq!(r.json["jobs"].as_array().unwrap().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Operations: metrics, OpenAPI, mounting
// ---------------------------------------------------------------------------------------------

pub async fn metrics_count_enqueues_and_requests(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    api.enqueue("metrics-tenant").await;
    api.get("/jobs/not-a-uuid").await;
    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(
        r.text
            .contains("async_jobs_enqueued_total{use_case=\"notifications\"}"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("async_jobs_http_requests_total{"),
        "{}",
        r.text
    );
    assert!(r.text.contains("route=\"/jobs/{id}\""), "{}", r.text);
    assert!(r.text.contains("status=\"400\""), "{}", r.text);
    assert!(r.text.contains("async_jobs_jobs{"), "{}", r.text);
}

/// Made-up methods and paths cannot create metric series: methods outside the standard set
/// count as `other`, paths that match no route as `unmatched` (issue: 1,000 invented methods
/// took RSS from 10 MB to 227 MB). Every response carries `X-Content-Type-Options: nosniff`.
pub async fn request_labels_are_bounded_and_responses_nosniff(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let marker = format!("INVENTED{}", fastrand_suffix());
    for i in 0..30 {
        let method = Method::from_bytes(format!("{marker}{i}").as_bytes()).unwrap();
        let r = api
            .call(method, &format!("/jobs/{marker}/{i}"), None, None)
            .await;
        assert!(r.status.is_client_error(), "{r:?}");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let r = api
            .call(
                Method::from_bytes(format!("{marker}{i}").as_bytes()).unwrap(),
                "/jobs",
                None,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}");
    }
    for uri in ["/jobs", "/healthz", "/nope", "/openapi.json"] {
        let r = api.get(uri).await;
        assert_eq!(
            r.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
    }
    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !r.text.contains(&marker),
        "a request's own text became a label"
    );
    assert!(r.text.contains("method=\"other\""), "{}", r.text);
    assert!(r.text.contains("route=\"unmatched\""), "{}", r.text);
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Fencing tokens stay internal: a dispatched job's JSON (get, list, cancel) has no
/// `lease_token`, so no caller can present another actor's token.
pub async fn fencing_tokens_stay_internal(store: Arc<dyn JobStore>) {
    let api = api(store, AuthConfig::open());
    let job = api.enqueue("token-tenant").await;
    let leased = api
        .store
        .inner()
        .lease_due(
            "notifications",
            PickRequest {
                cap: 100,
                limit: 100,
                lease: std::time::Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
    assert!(leased.iter().any(|d| d.job_id == job.id));
    let r = api.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "dispatched");
    assert!(r.json.get("lease_token").is_none(), "{}", r.text);
    assert!(
        !r.text.contains(&leased[0].lease_token.to_string()),
        "{}",
        r.text
    );
    let r = api.get("/jobs?tenant_id=token-tenant").await;
    assert!(!r.text.contains("lease_token"), "{}", r.text);
    let r = api
        .call(
            Method::POST,
            &format!("/jobs/{}/cancel", job.id),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("lease_token").is_none(), "{}", r.text);
}

/// `/metrics` needs no credentials, so its job counts are read from the store at most once per
/// `job_counts_max_age`, however many scrapes arrive (issue: a full-table count per scrape).
pub async fn metrics_scrapes_read_the_store_at_most_once_per_interval(store: Arc<dyn JobStore>) {
    use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    #[derive(Debug, Default)]
    struct CountReads(AtomicU32);

    #[async_trait::async_trait]
    impl Interceptor for CountReads {
        async fn before(&self, op: StoreOp, _: usize) -> Result<(), jobs_core::StoreError> {
            if op == StoreOp::Counts {
                self.0.fetch_add(1, SeqCst);
                // A slow count: concurrent scrapes must wait for it, not start their own.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(())
        }
    }

    let reads = Arc::new(CountReads::default());
    let counted: Arc<dyn JobStore> = Arc::new(InterceptedStore::new(store, Arc::clone(&reads)));
    let service = JobService::new(counted, Arc::new(config()));
    let settings = jobs_http::HttpSettings {
        job_counts_max_age: std::time::Duration::from_millis(400),
        ..jobs_http::HttpSettings::default()
    };
    let router =
        jobs_http::router(AppState::new(service, AuthConfig::open()).with_settings(settings));
    let scrape = || {
        let router = router.clone();
        async move {
            let req = Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    };
    let started = tokio::time::Instant::now();
    let mut scrapes = Vec::new();
    for _ in 0..40 {
        scrapes.push(tokio::spawn(scrape()));
    }
    for s in scrapes {
        s.await.unwrap();
    }
    // One count per started interval at most (one, unless this host stalled the 40 scrapes).
    let intervals = 1 + started.elapsed().as_millis() / 400;
    let read = u128::from(reads.0.load(SeqCst));
    assert!(
        (1..=intervals).contains(&read),
        "40 concurrent scrapes in {intervals} interval(s) counted {read} times"
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    scrape().await;
    assert!(
        reads.0.load(SeqCst) >= 2,
        "the sample is refreshed after the interval"
    );
}

pub async fn nests_under_a_prefix(store: Arc<dyn JobStore>) {
    let inner = api(store, AuthConfig::open());
    let api = Api {
        router: Router::new().nest("/api/v1", inner.router.clone()),
        store: inner.store.clone(),
    };
    let r = api.post("/api/v1/jobs", req("a")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id = r.job().id;
    assert_eq!(api.get(&format!("/api/v1/jobs/{id}")).await.job().id, id);
    let r = api.get("/api/v1/jobs/x").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    assert_eq!(api.get("/api/v1/healthz").await.status, StatusCode::OK);
}

/// `expire_at_deadline`: travels in the request and the job; a job not started by its deadline
/// ends `expired` (listed under that status) and a retry brings it back; a non-boolean is a 400.
pub async fn a_job_set_to_expire_ends_expired_and_can_be_retried(store: Arc<dyn JobStore>) {
    let api = api(store.clone(), AuthConfig::operator_token("op"));
    let mut body = req("tenant-a");
    body["expire_at_deadline"] = json!(true);
    body["delay_tolerance_seconds"] = json!(0);
    let r = api
        .call(Method::POST, "/jobs", Some("op"), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["expire_at_deadline"], true);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let plain = api
        .call(Method::POST, "/jobs", Some("op"), Some(req("tenant-a")))
        .await;
    assert_eq!(
        plain.json["expire_at_deadline"], false,
        "the use case's default"
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: std::time::Duration::from_secs(60),
    };
    let leased = store.lease_due("notifications", pick).await.unwrap();
    assert_eq!(leased.len(), 1, "only the job that may run late");
    let r = api
        .call(Method::GET, &format!("/jobs/{id}"), Some("op"), None)
        .await;
    assert_eq!(r.json["status"], "expired", "{}", r.json);
    let r = api
        .call(Method::GET, "/jobs?status=expired", Some("op"), None)
        .await;
    assert_eq!(r.json["jobs"].as_array().unwrap().len(), 1, "{}", r.json);
    let r = api
        .call(Method::POST, &format!("/jobs/{id}/retry"), Some("op"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "pending");
    let r = api
        .call(
            Method::POST,
            &format!("/jobs/{id}/cancel"),
            Some("op"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let mut bad = req("tenant-a");
    bad["expire_at_deadline"] = json!("yes");
    let r = api.call(Method::POST, "/jobs", Some("op"), Some(bad)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
}

/// `/rate-limits`: what the store enforces (written by the scheduler leader); the operator sees
/// every limit, a tenant key the every-tenant limits and its own.
pub async fn rate_limits_are_listed_as_the_store_enforces_them(store: Arc<dyn JobStore>) {
    let auth = AuthConfig::operator_token("op").with_tenant_key("key-a", "tenant-a");
    let api = api(store.clone(), auth);
    let r = api
        .call(Method::GET, "/rate-limits", Some("op"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({"rate_limits": []}));
    let limits = [
        jobs_core::RateLimit::new("notifications", None, 50.0, 50).unwrap(),
        jobs_core::RateLimit::new("notifications", Some("tenant-a".into()), 2.5, 5).unwrap(),
        jobs_core::RateLimit::new("notifications", Some("tenant-b".into()), 1.0, 1).unwrap(),
    ];
    store.set_rate_limits(&limits).await.unwrap();
    let r = api
        .call(Method::GET, "/rate-limits", Some("op"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["rate_limits"].as_array().unwrap().len(),
        3,
        "{}",
        r.json
    );
    assert_eq!(
        r.json["rate_limits"][1],
        json!({"use_case": "notifications", "tenant_id": "tenant-a", "per_second": 2.5, "burst": 5})
    );
    let r = api
        .call(Method::GET, "/rate-limits", Some("key-a"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["rate_limits"],
        json!([
            {"use_case": "notifications", "tenant_id": null, "per_second": 50.0, "burst": 50},
            {"use_case": "notifications", "tenant_id": "tenant-a", "per_second": 2.5, "burst": 5},
        ]),
        "a tenant sees the every-tenant limit and its own"
    );
    let r = api.call(Method::GET, "/rate-limits", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    store.set_rate_limits(&[]).await.unwrap();
}

/// `/pauses`: the operator pauses and resumes a use case or a tenant; the pick passes paused jobs
/// over; a tenant key acts on its own tenant only and sees only what holds its jobs; bad scopes
/// are JSON errors.
pub async fn pauses_hold_the_pick_and_follow_the_caller(store: Arc<dyn JobStore>) {
    let auth = AuthConfig::operator_token("op").with_tenant_key("key-a", "tenant-a");
    let api = api(store.clone(), auth);
    let call = |m: Method, uri: &'static str, key: &'static str| {
        let api = &api;
        async move { api.call(m, uri, Some(key), None).await }
    };
    let pick = jobs_core::PickRequest {
        cap: 100,
        limit: 100,
        lease: std::time::Duration::from_secs(60),
    };
    for tenant in ["tenant-a", "tenant-b"] {
        let r = api
            .call(Method::POST, "/jobs", Some("op"), Some(req(tenant)))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }

    // The operator pauses the whole use case: nothing is picked; pausing again keeps the pause.
    let r = call(Method::PUT, "/pauses/notifications", "op").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["use_case"], "notifications");
    assert!(r.json["tenant_id"].is_null(), "{}", r.json);
    let since = r.json["paused_at"].clone();
    let again = call(Method::PUT, "/pauses/notifications", "op").await;
    assert_eq!(again.json["paused_at"], since);
    assert!(store
        .lease_due("notifications", pick)
        .await
        .unwrap()
        .is_empty());

    // A tenant key may not pause or resume anything, not even its own tenant (an operator's
    // pause on it must hold).
    for (m, uri) in [
        (Method::PUT, "/pauses/notifications"),
        (Method::DELETE, "/pauses/notifications"),
        (Method::PUT, "/pauses/notifications/tenants/tenant-b"),
        (Method::PUT, "/pauses/notifications/tenants/tenant-a"),
        (Method::DELETE, "/pauses/notifications/tenants/tenant-a"),
    ] {
        let r = call(m, uri, "key-a").await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden_tenant"),
            "{uri}"
        );
    }
    // The operator pauses both tenants; tenant a's key sees the use case's pause and its own.
    let r = call(Method::PUT, "/pauses/notifications/tenants/tenant-a", "op").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["tenant_id"], "tenant-a");
    let r = call(Method::PUT, "/pauses/notifications/tenants/tenant-b", "op").await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = call(Method::GET, "/pauses", "key-a").await;
    let scopes: Vec<Value> = seen.json["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tenant_id"].clone())
        .collect();
    assert_eq!(scopes, vec![Value::Null, json!("tenant-a")]);
    let all = call(Method::GET, "/pauses", "op").await;
    assert_eq!(all.json["pauses"].as_array().unwrap().len(), 3);

    // Resuming the use case leaves the tenants' own pauses: nothing is picked yet.
    let r = call(Method::DELETE, "/pauses/notifications", "op").await;
    assert_eq!(
        (r.status, r.json["resumed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let r = call(Method::DELETE, "/pauses/notifications", "op").await;
    assert_eq!(
        r.json["resumed"], false,
        "a second resume says it was not paused"
    );
    assert!(store
        .lease_due("notifications", pick)
        .await
        .unwrap()
        .is_empty());
    // Tenant b resumed by the operator: its job is picked; tenant a's waits.
    let r = call(
        Method::DELETE,
        "/pauses/notifications/tenants/tenant-b",
        "op",
    )
    .await;
    assert_eq!(r.json["resumed"], true);
    let leased = store.lease_due("notifications", pick).await.unwrap();
    assert_eq!(
        leased
            .iter()
            .map(|d| d.tenant_id.as_str())
            .collect::<Vec<_>>(),
        ["tenant-b"]
    );
    let r = call(
        Method::DELETE,
        "/pauses/notifications/tenants/tenant-a",
        "op",
    )
    .await;
    assert_eq!(r.json["resumed"], true);
    assert_eq!(
        store.lease_due("notifications", pick).await.unwrap().len(),
        1
    );

    // Bad scopes are 400 JSON errors with their codes; no credentials is 401.
    for (uri, code) in [
        ("/pauses/nope", "unknown_use_case"),
        ("/pauses/nope/tenants/tenant-a", "unknown_use_case"),
        ("/pauses/notifications/tenants/%01x", "control_characters"),
        ("/pauses/notifications/tenants/%FF", "invalid_path"),
    ] {
        let r = call(Method::PUT, uri, "op").await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{uri}"
        );
    }
    let r = api.call(Method::GET, "/pauses", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// `POST /jobs/bulk/{retry,cancel}`: every matching job, in calls of at most `limit`, with a
/// cursor; quotas hold for a bulk retry (skipped and counted, never 429); a tenant key touches
/// only its own jobs; bad bodies are 400 with their codes.
pub async fn bulk_actions_work_in_batches_and_keep_quotas(store: Arc<dyn JobStore>) {
    let auth = AuthConfig::operator_token("op").with_tenant_key("key-q", QUOTA_TENANT);
    let api = api(store, auth);
    let post = |uri: &'static str, key: &'static str, body: Value| {
        let api = &api;
        async move { api.call(Method::POST, uri, Some(key), Some(body)).await }
    };
    for tenant in [
        QUOTA_TENANT,
        QUOTA_TENANT,
        "tenant-b",
        "tenant-b",
        "tenant-b",
    ] {
        let r = post("/jobs", "op", req(tenant)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    // Cancel every pending job, two per call, following the cursor.
    let (mut changed, mut calls, mut cursor) = (0, 0, Value::Null);
    loop {
        let mut body = json!({"status": "pending", "limit": 2});
        if !cursor.is_null() {
            body["cursor"] = cursor.clone();
        }
        let r = post("/jobs/bulk/cancel", "op", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert!(r.json["matched"].as_u64().unwrap() <= 2);
        changed += r.json["changed"].as_u64().unwrap();
        calls += 1;
        match r.json.get("next_cursor") {
            Some(next) => cursor = next.clone(),
            None => break,
        }
    }
    assert_eq!(changed, 5);
    assert!(calls >= 3, "{calls} calls");
    // The quota tenant (quota 2) enqueues one more; a bulk retry of its two cancelled jobs fits
    // one and skips the other, without a 429.
    let r = post("/jobs", "op", req(QUOTA_TENANT)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = post(
        "/jobs/bulk/retry",
        "op",
        json!({"tenant_id": QUOTA_TENANT, "status": "cancelled"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (
            r.json["matched"].clone(),
            r.json["changed"].clone(),
            r.json["skipped_quota"].clone()
        ),
        (json!(2), json!(1), json!(1)),
        "{}",
        r.json
    );
    assert!(r.json.get("next_cursor").is_none(), "{}", r.json);
    // A tenant key's bulk cancel touches its own jobs only.
    let r = post("/jobs/bulk/cancel", "key-q", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["changed"], 2, "its two pending jobs: {}", r.json);
    let others: Vec<Job> = api
        .jobs()
        .await
        .into_iter()
        .filter(|j| j.tenant_id == "tenant-b")
        .collect();
    assert!(others.iter().all(|j| j.status == JobStatus::Cancelled));
    let r = post(
        "/jobs/bulk/retry",
        "key-q",
        json!({"tenant_id": "tenant-b"}),
    )
    .await;
    assert_eq!(
        r.json["matched"], 0,
        "another tenant's jobs are invisible: {}",
        r.json
    );
    // Bad bodies.
    for (body, code) in [
        (json!({"status": "nope"}), "invalid_json"),
        (json!({"limit": 0}), "invalid_limit"),
        (json!({"limit": 10001}), "invalid_limit"),
        (json!({"cursor": "x"}), "invalid_cursor"),
        (json!({"created_after": "yesterday"}), "invalid_timestamp"),
        (json!({"unknown": 1}), "invalid_json"),
    ] {
        let r = post("/jobs/bulk/retry", "op", body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
}

/// `/schedules`: create, read (with `next_run_at`), update, delete; stable codes for bad input;
/// a tenant key sees and manages only its own tenant's schedules.
pub async fn schedules_crud_codes_and_tenant_scope(store: Arc<dyn JobStore>) {
    let auth = AuthConfig::operator_token("op").with_tenant_key("key-a", "tenant-a");
    let api = api(store, auth);
    let call = |m: Method, uri: &'static str, key: &'static str, body: Option<Value>| {
        let api = &api;
        async move { api.call(m, uri, Some(key), body).await }
    };
    let new = |name: &str, tenant: &str| {
        json!({
            "name": name, "cron": "*/10 * * * * *", "timezone": "Europe/Berlin",
            "template": {"tenant_id": tenant, "use_case": "notifications", "type": "send_email",
                         "payload": {"to": "x@y.z"}, "delay_tolerance_seconds": 30},
            "missed": {"policy": "catch_up", "max": 3}
        })
    };
    let r = call(
        Method::POST,
        "/schedules",
        "op",
        Some(new("b-nightly", "tenant-b")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json["source"], "api");
    assert_eq!(r.json["timezone"], "Europe/Berlin");
    assert_eq!(r.json["missed"], json!({"policy": "catch_up", "max": 3}));
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(r.json["next_run_at"].clone()).unwrap();
    assert!(next > chrono::Utc::now() - chrono::Duration::seconds(1));
    assert!(next <= chrono::Utc::now() + chrono::Duration::seconds(10));
    let r = call(
        Method::POST,
        "/schedules",
        "op",
        Some(new("b-nightly", "tenant-b")),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "schedule_exists")
    );

    // Bad input: one stable code each.
    for (body, code) in [
        (
            json!({"name": "x", "cron": "61 * * * *", "template": new("x", "tenant-a")["template"]}),
            "invalid_cron",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "timezone": "Mars/Base", "template": new("x", "tenant-a")["template"]}),
            "unknown_time_zone",
        ),
        (
            json!({"name": "bad name", "cron": "* * * * *", "template": new("x", "tenant-a")["template"]}),
            "invalid_schedule_name",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "template": {"tenant_id": "a", "use_case": "nope", "type": "t"}}),
            "unknown_use_case",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "missed": {"policy": "catch_up", "max": 5000}, "template": new("x", "tenant-a")["template"]}),
            "invalid_missed_policy",
        ),
        (
            json!({"name": "x", "cron": "* * * * *", "extra": 1, "template": new("x", "tenant-a")["template"]}),
            "invalid_json",
        ),
    ] {
        let r = call(Method::POST, "/schedules", "op", Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{r:?}"
        );
    }

    // A tenant key: its own schedules only.
    let r = call(
        Method::POST,
        "/schedules",
        "key-a",
        Some(new("a-hourly", "tenant-b")),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden_tenant")
    );
    let r = call(
        Method::POST,
        "/schedules",
        "key-a",
        Some(new("a-hourly", "tenant-a")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = call(Method::GET, "/schedules", "key-a", None).await;
    let names: Vec<&str> = r.json["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a-hourly"]);
    let r = call(Method::GET, "/schedules", "op", None).await;
    assert_eq!(r.json["schedules"].as_array().unwrap().len(), 2);
    let r = call(Method::GET, "/schedules/b-nightly", "key-a", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "schedule_not_found")
    );
    let r = call(Method::DELETE, "/schedules/b-nightly", "key-a", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "schedule_not_found")
    );

    // Update: a new payload keeps next_run_at; a new cron moves it.
    let r = call(Method::GET, "/schedules/a-hourly", "key-a", None).await;
    let before = r.json["next_run_at"].clone();
    let mut def = new("a-hourly", "tenant-a");
    def.as_object_mut().unwrap().remove("name");
    def["template"]["payload"] = json!({"to": "new@y.z"});
    let r = call(
        Method::PUT,
        "/schedules/a-hourly",
        "key-a",
        Some(def.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["next_run_at"], before);
    assert_eq!(r.json["template"]["payload"], json!({"to": "new@y.z"}));
    def["cron"] = json!("0 0 1 1 *");
    let r = call(
        Method::PUT,
        "/schedules/a-hourly",
        "key-a",
        Some(def.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_ne!(r.json["next_run_at"], before);
    let r = call(Method::PUT, "/schedules/missing", "op", Some(def)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "schedule_not_found")
    );

    // Delete.
    let r = call(Method::DELETE, "/schedules/a-hourly", "key-a", None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json, json!({"name": "a-hourly", "deleted": true}));
    let r = call(Method::GET, "/schedules/a-hourly", "op", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "schedule_not_found")
    );

    // A configured schedule is read-only here.
    let draft = jobs_core::schedule::check(
        serde_json::from_value(new("from-config", "tenant-a")).unwrap(),
        jobs_core::ScheduleSource::Config,
        &config(),
        chrono::Utc::now(),
    )
    .unwrap();
    api.store
        .inner()
        .sync_config_schedules(vec![draft])
        .await
        .unwrap();
    let r = call(Method::DELETE, "/schedules/from-config", "op", None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "schedule_from_config")
    );
    let r = call(Method::GET, "/schedules/from-config", "key-a", None).await;
    assert_eq!(r.json["source"], "config");
}
