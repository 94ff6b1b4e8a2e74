//! End to end: use cases in stores of their own (`ASYNC_JOBS_<USE_CASE>_DB_DSN`, issue 16).
//!
//! Two databases are created on the test server (`async_jobs_route_a_…`, `…_b_…`, dropped at the
//! end), `notifications` is kept in the first and `message_labeling` in the second, while the
//! default store (`ASYNC_JOBS_DB_DSN`: the test database, the test's schema) holds the
//! scheduler's leader lock and no job. The real binaries run on them: `migrate`, then `api`,
//! `scheduler` and `worker` over SQS (moto). Jobs of both use cases are enqueued over HTTP and
//! the test checks that each ran exactly once (the sample handlers' side-effect log), that each
//! job's row is in its use case's database only, that each cap held (no two runs of the capped
//! use case overlapped beyond it), that `GET /jobs/{id}` and the listing see both databases, and
//! that a batch across the two is refused whole. The scheduler's tick is 20 s, so the jobs start
//! only on the wake-ups of both databases (LISTEN on each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use common::{database_url, free_port, World};
use jobs_core::{ApiStore, JobId};
use jobs_postgres::PgStore;
use serde_json::{json, Value};

const TOKEN: &str = "routing-operator-token";
/// Prefix of the databases this test creates (older leftovers are dropped at start).
const PREFIX: &str = "async_jobs_route_";

/// The URL of database `name` on the test server.
fn url_of(name: &str) -> String {
    let mut url = reqwest::Url::parse(&database_url()).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Two fresh databases, dropped when this is dropped (after the processes using them).
struct Databases {
    names: [String; 2],
}

impl Databases {
    async fn create() -> Databases {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let client = admin().await;
        // Leftovers of crashed runs (named with their creation time) older than an hour.
        for row in client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'async\\_jobs\\_route\\_%'",
                &[],
            )
            .await
            .unwrap()
        {
            let name: String = row.get(0);
            let born = name.rsplit('_').nth(1).and_then(|s| s.parse::<u64>().ok());
            if born.is_some_and(|b| b + 3600 < secs) {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        }
        let names = [
            format!("{PREFIX}a_{secs}_{tag}"),
            format!("{PREFIX}b_{secs}_{tag}"),
        ];
        for name in &names {
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap();
        }
        Databases { names }
    }

    fn url(&self, i: usize) -> String {
        url_of(&self.names[i])
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let names = self.names.clone();
        // Drop runs inside the test's runtime: a thread of its own blocks on the drop.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = admin().await;
                for name in names {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

struct Api {
    port: u16,
    http: reqwest::Client,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(TOKEN).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        self.send(self.http.post(url).json(&body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        self.send(self.http.get(url)).await
    }

    async fn ready(&self, within: Duration) {
        let start = Instant::now();
        loop {
            let url = format!("http://127.0.0.1:{}/readyz", self.port);
            if let Ok(r) = self.http.get(url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(start.elapsed() < within, "the API is not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn email() -> Value {
    json!({"tenant_id": "acme", "use_case": "notifications", "type": "send_email",
           "payload": {"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 150}})
}

fn label() -> Value {
    json!({"tenant_id": "globex", "use_case": "message_labeling", "type": "label_message",
           "payload": {"message_id": "m1", "text": "invoice overdue", "sleep_ms": 150}})
}

fn time(job: &Value, field: &str) -> DateTime<Utc> {
    job[field]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {job}"))
}

/// The most intervals open at once.
fn max_overlap(intervals: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (start, end) in intervals {
        edges.push((*start, 1));
        edges.push((*end, -1));
    }
    // An end before a start at the same instant: touching runs do not overlap.
    edges.sort();
    let (mut open, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        max = max.max(open);
    }
    max as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_cases_in_their_own_databases_run_end_to_end() {
    let dbs = Databases::create().await;
    let mut w = World::new("route").await;
    faults::enable_side_effects(&mut w).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    for (k, v) in [
        ("ASYNC_JOBS_NOTIFICATIONS_DB_DSN", dbs.url(0)),
        ("ASYNC_JOBS_MESSAGE_LABELING_DB_DSN", dbs.url(1)),
        ("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "2".into()),
        ("ASYNC_JOBS_MESSAGE_LABELING_MAX_CONCURRENT", "1".into()),
        // Only wake-ups start jobs within the test's time.
        ("ASYNC_JOBS_SCHEDULER_TICK_MS", "20000".into()),
        ("ASYNC_JOBS_AUTO_MIGRATE", "false".into()),
        ("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", TOKEN.into()),
        ("ASYNC_JOBS_API_ADDR", addr.clone()),
    ] {
        w.env.insert(k.to_owned(), v);
    }

    // `migrate` migrates every store.
    let mut migrate = std::process::Command::new(common::binary("async-jobs"));
    migrate.arg("migrate").envs(&w.env);
    let out = common::output_within(migrate, Duration::from_secs(60), "async-jobs migrate");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for store in [
        "the default store",
        "the store of use case 'notifications'",
        "the store of use case 'message_labeling'",
    ] {
        assert!(line.contains(store), "{line}");
    }

    w.spawn("api", "api", &[]);
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let api = Api {
        port,
        http: reqwest::Client::new(),
    };
    api.ready(Duration::from_secs(30)).await;

    // A batch across the two stores is refused whole; one within a store is taken.
    let (status, body) = api
        .post("/jobs/batch", json!({"jobs": [email(), label()]}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("batch_spans_stores")),
        "{body}"
    );
    let (status, body) = api
        .post("/jobs/batch", json!({"jobs": [label(), label()]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ids: BTreeMap<JobId, &str> = BTreeMap::new();
    for job in body["jobs"].as_array().unwrap() {
        ids.insert(
            job["id"].as_str().unwrap().parse().unwrap(),
            "message_labeling",
        );
    }
    for i in 0..10 {
        let (uc, body) = match i % 3 {
            2 => ("message_labeling", label()),
            _ => ("notifications", email()),
        };
        let (status, job) = api.post("/jobs", body).await;
        assert_eq!(status, 201, "{job}");
        ids.insert(job["id"].as_str().unwrap().parse().unwrap(), uc);
    }

    // Every job succeeds, read through GET /jobs/{id} whichever database holds it.
    let start = Instant::now();
    let mut jobs: BTreeMap<JobId, Value> = BTreeMap::new();
    while jobs.len() < ids.len() {
        for id in ids.keys() {
            if jobs.contains_key(id) {
                continue;
            }
            let (status, job) = api.get(&format!("/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if job["status"] == "succeeded" {
                jobs.insert(*id, job);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{} of {} jobs succeeded within 15 s (the tick is 20 s: only wake-ups start jobs)",
            jobs.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = api.get(&format!("/jobs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, 404, "{body}");

    // Each ran exactly once.
    let runs = faults::executions(&w.schema).await;
    for (id, job) in &jobs {
        assert_eq!(runs.get(id), Some(&1), "handler runs of {id}");
        assert_eq!(job["attempts"], 1, "{job}");
        assert_eq!(job["use_case"], ids[id], "{job}");
    }

    // Each row is in its use case's database only (the default store holds none).
    let schema = &w.schema;
    let stores = [
        PgStore::connect(&dbs.url(0), schema).unwrap(),
        PgStore::connect(&dbs.url(1), schema).unwrap(),
    ];
    for (id, uc) in &ids {
        let home = match *uc {
            "notifications" => 0,
            _ => 1,
        };
        assert!(
            stores[home].get(*id).await.unwrap().is_some(),
            "{id} in its store"
        );
        assert!(
            stores[1 - home].get(*id).await.unwrap().is_none(),
            "{id} not in the other"
        );
        assert!(
            w.store.get(*id).await.unwrap().is_none(),
            "{id} not in the default"
        );
    }

    // Each cap held: runs of a use case never overlapped beyond it (and notifications used it).
    for (uc, cap) in [("notifications", 2), ("message_labeling", 1)] {
        let runs: Vec<_> = jobs
            .values()
            .filter(|j| j["use_case"] == uc)
            .map(|j| (time(j, "started_at"), time(j, "finished_at")))
            .collect();
        let overlap = max_overlap(&runs);
        assert!(overlap <= cap, "{uc}: {overlap} ran at once, cap {cap}");
        if uc == "notifications" {
            assert_eq!(overlap, cap, "{uc}: the cap was used");
        }
    }

    // The listing merges both databases: every job once, newest first, across small pages.
    let mut listed: Vec<JobId> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/jobs?limit=3&cursor={c}"),
            None => "/jobs?limit=3".to_owned(),
        };
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for job in page["jobs"].as_array().unwrap() {
            listed.push(job["id"].as_str().unwrap().parse().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(listed.len() <= ids.len(), "the walk ends");
    }
    let expected: Vec<JobId> = ids.keys().rev().copied().collect();
    assert_eq!(listed, expected, "every job once, newest first");
    let (_, only) = api.get("/jobs?use_case=message_labeling&limit=100").await;
    let only: BTreeSet<&str> = only["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["use_case"].as_str().unwrap())
        .collect();
    assert_eq!(only, BTreeSet::from(["message_labeling"]));

    drop(stores);
    w.cleanup().await;
    drop(dbs);
}

/// The settings of a migrate process with `notifications` in a store of its own at `own`.
fn own_store_settings(own: &str) -> async_jobs::app::settings::Settings {
    use async_jobs::app::settings::{Overrides, Process, Settings};
    Settings::from_snapshot(
        &jobs_core::Env::from_pairs([
            ("ASYNC_JOBS_DB_DSN".to_owned(), database_url()),
            ("ASYNC_JOBS_NOTIFICATIONS_DB_DSN".to_owned(), own.to_owned()),
        ]),
        Process::Migrate,
        Overrides::default(),
    )
    .unwrap()
}

/// Nothing is served before every store has answered the check that no two are one database: a
/// store that does not answer is waited for, then the start is refused naming its variable;
/// one database under two names is refused naming both variables.
#[tokio::test]
async fn every_store_is_checked_before_anything_is_served() {
    use async_jobs::app::store::{check_distinct, connect_all};
    let check = |own: String| async move {
        let settings = own_store_settings(&own);
        let pg = settings.require_postgres().unwrap();
        let routes = connect_all(pg, jobs_postgres::PoolOptions::default()).unwrap();
        assert_eq!(routes.stores().len(), 2);
        check_distinct(&routes, pg, Duration::from_millis(700))
            .await
            .map_err(|e| e.to_string())
    };
    let started = Instant::now();
    let e = check("postgres://postgres@127.0.0.1:1/nowhere".to_owned())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "waited first"
    );
    assert!(
        e.contains("ASYNC_JOBS_NOTIFICATIONS_DB_DSN") && !e.contains('\n') && !e.contains("  "),
        "{e}"
    );
    // The test database under another host name: one database, two stores.
    let url = reqwest::Url::parse(&database_url()).unwrap();
    let alias = match url.host_str() {
        Some("localhost") => database_url().replacen("localhost", "127.0.0.1", 1),
        _ => database_url().replacen(url.host_str().unwrap(), "localhost", 1),
    };
    let e = check(alias).await.unwrap_err();
    assert!(
        e.contains("ASYNC_JOBS_NOTIFICATIONS_DB_DSN")
            && e.contains("ASYNC_JOBS_DB_DSN")
            && e.contains("same database")
            && !e.contains("  "),
        "{e}"
    );
}
