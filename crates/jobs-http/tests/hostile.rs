//! Hostile input against the real router (fault suite, scenario 12): a seeded fuzz run of
//! generated requests — random methods, paths, headers, bodies, sizes, encodings, auth values and
//! cursors — asserting no 5xx except 503 while the store is down, no panic, and a jobs table
//! changed only by valid requests; plus the tenant isolation matrix, every endpoint × (own tenant,
//! other tenant, no key, bad key).
//!
//! `ASYNC_JOBS_FUZZ_REQUESTS` (default 12000) and `ASYNC_JOBS_FUZZ_SEED` reproduce a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "suite/flaky.rs"]
mod flaky;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use flaky::{all_jobs, flaky, FlakyStore};
use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_core::{EnqueueRequest, Job, JobId, JobService, JobStatus, PlatformConfig};
use jobs_http::{AppState, AuthConfig};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// Deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const OPERATOR: &str = "op-secret";
const KEY_A: &str = "key-a";
const KEY_B: &str = "key-b";

fn auth() -> AuthConfig {
    AuthConfig::operator_token(OPERATOR)
        .with_tenant_key(KEY_A, "tenant-a")
        .with_tenant_key(KEY_B, "tenant-b")
}

struct Api {
    router: Router,
    store: Arc<FlakyStore>,
}

fn api() -> Api {
    let store = flaky(Arc::new(MemoryStore::new(Arc::new(SystemClock))));
    let service = JobService::new(store.clone(), Arc::new(PlatformConfig::default()));
    Api {
        router: jobs_http::router(AppState::new(service, auth())),
        store,
    }
}

impl Api {
    fn down(&self, down: bool) {
        let f = self.store.interceptor();
        f.reads_unavailable.store(down, Ordering::SeqCst);
        f.ping_fails.store(down, Ordering::SeqCst);
        f.enqueue_unavailable_before
            .store(if down { u32::MAX } else { 0 }, Ordering::SeqCst);
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn jobs(&self) -> BTreeMap<JobId, Job> {
        all_jobs(self.store.inner().as_ref())
            .await
            .into_iter()
            .map(|j| (j.id, j))
            .collect()
    }

    async fn seed(&self, tenant: &str) -> Job {
        let service = JobService::new(
            self.store.inner().clone(),
            Arc::new(PlatformConfig::default()),
        );
        service
            .enqueue(EnqueueRequest::new(
                tenant,
                "notifications",
                "send_email",
                json!({"to": "a@b.c"}),
            ))
            .await
            .unwrap()
            .job
    }
}

fn valid_job(tenant: &str) -> Value {
    json!({"tenant_id": tenant, "use_case": "notifications", "type": "send_email", "payload": {"to": "a@b.c"}})
}

/// A JSON value of some hostile shape.
fn junk_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(f64::from_bits(rng.next() & 0x7fef_ffff_ffff_ffff)),
        5 => json!(*rng.pick(&[
            "",
            " ",
            "\u{0}",
            "notifications",
            "send_email",
            "tenant-a",
            "tenant-b",
            "../..",
            "'; DROP TABLE jobs; --",
            "\u{202e}evil",
            "2026-01-01T00:00:00Z",
            "-1",
            "1e309"
        ])),
        6 => json!("x".repeat(rng.below(5000))),
        7 => Value::Array(
            (0..rng.below(4))
                .map(|_| junk_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                let k = rng
                    .pick(&[
                        "tenant_id",
                        "use_case",
                        "type",
                        "payload",
                        "priority",
                        "max_attempts",
                        "timeout_seconds",
                        "run_at",
                        "delay_tolerance_seconds",
                        "idempotency_key",
                        "backoff",
                        "jobs",
                        "x",
                    ])
                    .to_string();
                m.insert(k, junk_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A request body: valid jobs, mutated jobs, junk JSON, random bytes, or huge.
fn body(rng: &mut Rng, tenant: &str) -> Vec<u8> {
    match rng.below(11) {
        0 => Vec::new(),
        1 | 2 | 9 | 10 => {
            let mut job = valid_job(tenant);
            if rng.chance(60) {
                let field = *rng.pick(&[
                    "tenant_id",
                    "use_case",
                    "type",
                    "payload",
                    "priority",
                    "max_attempts",
                    "timeout_seconds",
                    "run_at",
                    "idempotency_key",
                    "backoff",
                ]);
                job[field] = junk_value(rng, 1);
            }
            job.to_string().into_bytes()
        }
        3 => {
            let n = rng.below(4);
            json!({"jobs": (0..n).map(|_| if rng.chance(70) { valid_job(tenant) } else { junk_value(rng, 1) }).collect::<Vec<_>>()})
                .to_string()
                .into_bytes()
        }
        4 => junk_value(rng, 0).to_string().into_bytes(),
        5 => {
            let n = rng.below(300);
            rng.bytes(n)
        }
        6 => {
            let mut s = valid_job(tenant).to_string().into_bytes();
            let cut = rng.below(s.len());
            s.truncate(cut);
            s
        }
        7 => {
            // Deep nesting and big payloads around the limits.
            if rng.chance(50) {
                let d = 1 + rng.below(3000);
                format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()
            } else {
                let n = *rng.pick(&[256 * 1024, 1024 * 1024 + 1, 300_000]);
                let mut job = valid_job(tenant);
                job["payload"]["body"] = json!("y".repeat(n));
                job.to_string().into_bytes()
            }
        }
        _ => {
            let mut s = valid_job(tenant).to_string().into_bytes();
            for _ in 0..3 {
                let i = rng.below(s.len());
                s[i] = rng.next() as u8;
            }
            s
        }
    }
}

fn path(rng: &mut Rng, ids: &[JobId]) -> String {
    let id = match rng.below(6) {
        0..=2 if !ids.is_empty() => rng.pick(ids).to_string(),
        3 => uuid::Uuid::new_v4().to_string(),
        4 => rng
            .pick(&[
                "",
                "not-a-uuid",
                "00000000-0000-0000-0000-000000000000",
                "%00",
                "..",
                "%2e%2e",
                "💥",
                "1;DROP",
            ])
            .to_string(),
        _ => "x".repeat(rng.below(10_000)),
    };
    let base = match rng.below(12) {
        0 | 1 => "/jobs".to_owned(),
        2 => "/jobs/batch".to_owned(),
        3 => "/jobs/enqueue".to_owned(),
        4 | 5 => format!("/jobs/{id}"),
        6 => format!("/jobs/{id}/cancel"),
        7 => format!("/jobs/{id}/retry"),
        8 => rng
            .pick(&[
                "/healthz",
                "/readyz",
                "/metrics",
                "/openapi.json",
                "/",
                "//jobs",
                "/jobs/",
                "/JOBS",
            ])
            .to_string(),
        9 => format!("/jobs/{id}/{id}"),
        10 => format!(
            "/{}",
            rng.pick(&[
                "%ff%fe",
                "jobs%2fbatch",
                "jobs/../jobs",
                "a".repeat(3000).as_str()
            ])
        ),
        _ => "/jobs".to_owned(),
    };
    if !rng.chance(40) {
        return base;
    }
    let mut q = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let key = *rng.pick(&[
            "status",
            "tenant_id",
            "use_case",
            "kind",
            "limit",
            "cursor",
            "after",
            "before",
            "created_after",
            "x",
        ]);
        let val = rng
            .pick(&[
                "pending",
                "succeeded",
                "bogus",
                "",
                "0",
                "-1",
                "1000000",
                "18446744073709551616",
                "abc",
                "%00",
                "tenant-a",
                "tenant-b",
                "eyJpZCI6IjEifQ",
                "AAAA",
                "%ff",
                "2026-13-45",
                "00000000-0000-0000-0000-000000000000",
            ])
            .to_string();
        q.push(format!("{key}={val}"));
    }
    format!("{base}?{}", q.join("&"))
}

/// The tenant a credential is confined to (`Some(None)` = every tenant, `None` = refused).
fn scope_of(auth: Option<&str>) -> Option<Option<&'static str>> {
    match auth {
        Some(OPERATOR) => Some(None),
        Some(KEY_A) => Some(Some("tenant-a")),
        Some(KEY_B) => Some(Some("tenant-b")),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_5xx_panic_or_corrupt() {
    let n: usize = std::env::var("ASYNC_JOBS_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12_000);
    let seed: u64 = std::env::var("ASYNC_JOBS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    let mut rng = Rng(seed | 1);
    let api = api();
    let mut ids = Vec::new();
    for t in ["tenant-a", "tenant-a", "tenant-b", "tenant-c"] {
        ids.push(api.seed(t).await.id);
    }
    let before = api.jobs().await;
    let mut created: BTreeMap<JobId, Option<&'static str>> = BTreeMap::new();
    let mut changed: BTreeSet<JobId> = BTreeSet::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut down = false;
    for i in 0..n {
        // The store goes down now and then, for a stretch of requests.
        if i % 500 == 0 {
            down = (i / 500) % 4 == 3;
            api.down(down);
        }
        let uri = path(&mut rng, &ids);
        // Mostly the method the route expects, so requests get past routing to the handlers.
        let expected = if uri.starts_with("/jobs")
            && (uri.contains("/cancel")
                || uri.contains("/retry")
                || uri.starts_with("/jobs/batch")
                || uri.starts_with("/jobs/enqueue")
                || rng.chance(50))
        {
            Method::POST
        } else {
            Method::GET
        };
        let method = if rng.chance(75) {
            expected
        } else {
            rng.pick(&[
                Method::GET,
                Method::GET,
                Method::POST,
                Method::POST,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
                Method::HEAD,
                Method::OPTIONS,
                Method::from_bytes(b"BREW").unwrap(),
            ])
            .clone()
        };
        let auth: Option<String> = match rng.below(13) {
            0 => None,
            1 | 9 => Some(format!("Bearer {OPERATOR}")),
            2 | 3 | 10 | 11 => Some(format!("Bearer {KEY_A}")),
            4 | 12 => Some(format!("bearer   {KEY_B} ")),
            5 => Some(format!("Basic {KEY_A}")),
            6 => Some("Bearer ".to_owned()),
            7 => Some(format!("Bearer {}", "k".repeat(rng.below(9000)))),
            _ => Some(format!("Bearer {}x", KEY_A)),
        };
        let key = auth.as_deref().and_then(|a| {
            let (scheme, secret) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        });
        let tenant = match (scope_of(key), rng.chance(70)) {
            (Some(Some(own)), true) => own,
            _ => *rng.pick(&["tenant-a", "tenant-b", "tenant-c", ""]),
        };
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        if uri.parse::<axum::http::Uri>().is_err() {
            continue;
        }
        if let Some(a) = &auth {
            req = req.header("authorization", a.as_str());
        }
        match rng.below(6) {
            0 => {}
            1 => req = req.header("content-type", "text/plain"),
            2 => req = req.header("content-type", "application/x-www-form-urlencoded"),
            3 => req = req.header("content-type", "application/json; charset=latin1"),
            _ => req = req.header("content-type", "application/json"),
        }
        if rng.chance(10) {
            req = req.header(
                "content-encoding",
                *rng.pick(&["gzip", "br", "identity", "x"]),
            );
        }
        if rng.chance(15) {
            let v = rng
                .pick(&["k1", "", "k".repeat(300).as_str(), "a b"])
                .to_string();
            req = req.header("idempotency-key", v);
        }
        if rng.chance(3) {
            req = req.header("content-length", "999999999");
        }
        let req = match req.body(Body::from(body(&mut rng, tenant))) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let (status, json) = api.send(req).await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        assert!(
            !status.is_server_error() || (down && status == StatusCode::SERVICE_UNAVAILABLE),
            "request {i} (seed {seed}): {method} {uri} -> {status} {json} (store down: {down})"
        );
        if status.is_success() && method == Method::POST {
            let scope = scope_of(key);
            let mut record = |job: &Value| {
                let id: JobId = job["id"].as_str().unwrap().parse().unwrap();
                let job_tenant = job["tenant_id"].as_str().unwrap().to_owned();
                if let Some(Some(t)) = scope {
                    assert_eq!(job_tenant, t, "a tenant key enqueued for another tenant");
                }
                created.entry(id).or_insert(None);
                ids.push(id);
            };
            if uri.starts_with("/jobs/batch") {
                json["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .for_each(&mut record);
            } else if uri.ends_with("/cancel")
                || uri.ends_with("/retry")
                || uri.contains("/cancel?")
                || uri.contains("/retry?")
            {
                let id: JobId = json["id"].as_str().unwrap().parse().unwrap();
                if let Some(Some(t)) = scope {
                    assert_eq!(
                        json["tenant_id"].as_str(),
                        Some(t),
                        "changed another tenant's job"
                    );
                }
                changed.insert(id);
            } else {
                record(&json);
            }
        }
    }
    api.down(false);
    let after = api.jobs().await;
    for (id, job) in &after {
        match before.get(id) {
            None => assert!(
                created.contains_key(id),
                "job {id} appeared without a 2xx enqueue"
            ),
            Some(old) if !changed.contains(id) => assert_eq!(
                serde_json::to_value(old).unwrap(),
                serde_json::to_value(job).unwrap(),
                "job {id} changed without a 2xx cancel/retry"
            ),
            Some(_) => {}
        }
    }
    assert!(
        before.keys().all(|id| after.contains_key(id)),
        "a job vanished"
    );
    let total: usize = statuses.values().sum();
    assert!(total >= n * 9 / 10, "{total} of {n} requests were sent");
    assert!(
        statuses.get(&503).is_some_and(|n| *n > 100),
        "the store-down windows were exercised: {statuses:?}"
    );
    assert!(
        created.len() > 50,
        "valid enqueues got through: {} {statuses:?}",
        created.len()
    );
    eprintln!(
        "hostile HTTP: {total} requests (seed {seed}), statuses {statuses:?}, {} jobs created, {} changed",
        created.len(),
        changed.len()
    );
}

/// Every endpoint × (own tenant, other tenant, no key, bad key).
#[tokio::test]
async fn tenant_isolation_matrix() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Who {
        Own,
        Other,
        NoKey,
        BadKey,
    }
    let api = api();
    for who in [Who::Own, Who::Other, Who::NoKey, Who::BadKey] {
        // Fresh jobs of tenant-a for every caller: a pending one and a cancelled one.
        let pending = api.seed("tenant-a").await;
        let cancelled = api.seed("tenant-a").await;
        let service = JobService::new(
            api.store.inner().clone(),
            Arc::new(PlatformConfig::default()),
        );
        service
            .cancel(cancelled.id, &jobs_core::TenantScope::All)
            .await
            .unwrap();
        let before = api.jobs().await;
        let auth = match who {
            Who::Own => Some(KEY_A),
            Who::Other => Some(KEY_B),
            Who::NoKey => None,
            Who::BadKey => Some("not-a-key"),
        };
        let call = |method: Method, uri: String, body: Option<Value>| {
            let api = &api;
            async move {
                let mut req = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", "application/json");
                if let Some(k) = auth {
                    req = req.header("authorization", format!("Bearer {k}"));
                }
                let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
                api.send(req.body(body).unwrap()).await
            }
        };
        let endpoints: Vec<(&str, Method, String, Option<Value>)> = vec![
            (
                "enqueue",
                Method::POST,
                "/jobs".into(),
                Some(valid_job("tenant-a")),
            ),
            (
                "enqueue alias",
                Method::POST,
                "/jobs/enqueue".into(),
                Some(valid_job("tenant-a")),
            ),
            (
                "batch",
                Method::POST,
                "/jobs/batch".into(),
                Some(json!({"jobs": [valid_job("tenant-a")]})),
            ),
            ("get", Method::GET, format!("/jobs/{}", pending.id), None),
            ("list", Method::GET, "/jobs?tenant_id=tenant-a".into(), None),
            (
                "cancel",
                Method::POST,
                format!("/jobs/{}/cancel", pending.id),
                None,
            ),
            (
                "retry",
                Method::POST,
                format!("/jobs/{}/retry", cancelled.id),
                None,
            ),
        ];
        let mut created = 0;
        for (name, method, uri, body) in endpoints {
            let (status, json) = call(method, uri, body).await;
            let expected = match (who, name) {
                (Who::NoKey | Who::BadKey, _) => StatusCode::UNAUTHORIZED,
                (Who::Own, "enqueue" | "enqueue alias" | "batch") => StatusCode::CREATED,
                (Who::Own, _) => StatusCode::OK,
                (Who::Other, "enqueue" | "enqueue alias" | "batch") => StatusCode::FORBIDDEN,
                (Who::Other, "list") => StatusCode::OK,
                (Who::Other, _) => StatusCode::NOT_FOUND,
            };
            assert_eq!(status, expected, "{who:?} {name}: {json}");
            if who == Who::Other && name == "list" {
                assert_eq!(json["jobs"].as_array().map(Vec::len), Some(0), "{json}");
            }
            if who == Who::Own && name == "list" {
                assert!(json["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|j| j["tenant_id"] == "tenant-a"));
            }
            if !status.is_success() {
                assert!(
                    json["error"]["code"].is_string(),
                    "{who:?} {name}: JSON error {json}"
                );
            }
            created += usize::from(status == StatusCode::CREATED);
        }
        let after = api.jobs().await;
        if who == Who::Own {
            assert_eq!(after.len(), before.len() + created);
            assert_eq!(after[&pending.id].status, JobStatus::Cancelled);
            assert_eq!(after[&cancelled.id].status, JobStatus::Pending);
        } else {
            assert_eq!(
                serde_json::to_value(&before).unwrap(),
                serde_json::to_value(&after).unwrap(),
                "{who:?} changed the jobs table"
            );
        }
    }
}
