//! Test support: a fresh, migrated schema per test in the test database.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::backoff::Backoff;
use jobs_core::{Clock, NewJob};
use jobs_postgres::{PgStore, PoolOptions};

#[allow(unused_imports)] // each test binary uses its own share of these
pub use jobs_testdb::{admin_client, connect, database_url, ensure_database};

/// A fresh schema for a store test (swept by `jobs_testdb` when stale).
pub fn fresh_schema() -> String {
    jobs_testdb::fresh_schema("pg")
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
        let _admin = admin_client().await;
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
    jobs_testdb::with_application_name(&database_url(), name)
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
        expire_at_deadline: false,
        timeout: Duration::from_secs(30),
        idempotency_key: None,
        quota: None,
        fair_weight: Some(1),
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
