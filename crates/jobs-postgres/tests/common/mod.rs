//! Test support: a fresh, migrated schema per test in the test database.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobs_core::backoff::Backoff;
use jobs_core::{Clock, NewJob};
use jobs_postgres::{PgStore, PoolOptions};
use tokio_postgres::NoTls;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/async_jobs_test";
const PREFIX: &str = "ajt_";

pub fn database_url() -> String {
    std::env::var("ASYNC_JOBS_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Creates the test database if it is missing. Panics (fails the test) if the server is not
/// reachable: a missing database is a failure, never a skip.
pub async fn ensure_database() {
    let url = database_url();
    let config = tokio_postgres::Config::from_str(&url)
        .expect("ASYNC_JOBS_TEST_DATABASE_URL is not a valid DSN");
    let db = config.get_dbname().unwrap_or("postgres").to_owned();
    if connect(&config).await.is_ok() {
        return;
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await.unwrap_or_else(|e| {
        panic!("cannot reach PostgreSQL at {url} (set ASYNC_JOBS_TEST_DATABASE_URL): {e}")
    });
    if let Err(e) = client
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .await
    {
        let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
        // 42P04: another test created it first; 23505: the same race seen in the catalog.
        assert!(
            code == "42P04" || code == "23505",
            "creating database {db}: {e}"
        );
    }
}

pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub async fn admin_client() -> tokio_postgres::Client {
    ensure_database().await;
    connect(&tokio_postgres::Config::from_str(&database_url()).unwrap())
        .await
        .unwrap()
}

/// A fresh schema name; its creation time is in the name so stale ones can be swept.
pub fn fresh_schema() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{PREFIX}{secs}_{:016x}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    // uuid v4 is random enough and already a dependency.
    let b = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Drops test schemas older than an hour (left by tests that panicked or by the conformance
/// suite, whose stores outlive the test body).
async fn sweep_stale(client: &tokio_postgres::Client) {
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_sub(3600);
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ajt\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let secs = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if secs.is_some_and(|s| s < cutoff) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

/// One test's schema and store.
pub struct TestDb {
    pub schema: String,
    pub url: String,
    pub store: PgStore,
}

impl TestDb {
    pub async fn new() -> TestDb {
        TestDb::with_options(PoolOptions::default()).await
    }

    pub async fn with_options(options: PoolOptions) -> TestDb {
        let admin = admin_client().await;
        sweep_stale(&admin).await;
        let schema = fresh_schema();
        let url = url_with_app_name(&schema);
        let store = PgStore::connect_with(&url, &schema, options).unwrap();
        store.migrate().await.unwrap();
        TestDb { schema, url, store }
    }

    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> PgStore {
        self.store.clone().with_clock(clock)
    }

    /// Another store (own pool) on the same schema.
    pub fn other_store(&self, options: PoolOptions) -> PgStore {
        PgStore::connect_with(&self.url, &self.schema, options).unwrap()
    }

    /// This test's URL with sessions defaulting to REPEATABLE READ, as a database or role
    /// configured with `default_transaction_isolation = 'repeatable read'` would give.
    pub fn repeatable_read_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20default_transaction_isolation%3Drepeatable%5C%20read",
            self.url
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&tokio_postgres::Config::from_str(&database_url()).unwrap())
            .await
            .unwrap()
    }

    /// Terminates every backend whose application_name is this test's (the store pools and
    /// LISTEN connections), waiting until they are gone.
    pub async fn kill_backends(&self) -> u64 {
        let client = self.client().await;
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.schema],
            )
            .await
            .unwrap();
        rows.len() as u64
    }

    pub async fn drop(self) {
        let client = self.client().await;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .unwrap();
    }
}

/// The test database URL with `application_name` set to `name`, to find our backends.
pub fn url_with_app_name(name: &str) -> String {
    let url = database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        format!("{url}{sep}application_name={name}")
    } else {
        format!("{url} application_name={name}")
    }
}

/// A job for `tenant` in `use_case`, due now.
pub fn new_job(tenant: &str, use_case: &str) -> NewJob {
    NewJob {
        id: jobs_core::job::new_job_id(),
        tenant_id: tenant.to_owned(),
        use_case: use_case.to_owned(),
        kind: "send_email".to_owned(),
        payload: serde_json::json!({"to": "a@example.com"}),
        priority: 0,
        max_attempts: 3,
        backoff: Backoff::default(),
        run_at: None,
        delay_tolerance: Duration::from_secs(300),
        timeout: Duration::from_secs(30),
        idempotency_key: None,
        quota: None,
        trace_context: None,
    }
}

/// Polls `f` until it returns `Some`, for up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
