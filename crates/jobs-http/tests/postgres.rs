//! The HTTP API suite over the real Postgres store (one fresh schema per test).

#![allow(clippy::unwrap_used)]

mod suite;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use jobs_http::AuthConfig;
use jobs_postgres::{PgStore, PoolOptions};

use jobs_testdb::database_url as url;

/// A fresh schema for an API test; stale ones are swept on the way (see `jobs_testdb`).
async fn fresh_schema() -> String {
    jobs_testdb::admin_client().await;
    jobs_testdb::fresh_schema("http")
}

async fn postgres() -> Arc<dyn jobs_core::JobStore> {
    let store = PgStore::connect(&url(), &fresh_schema().await).unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

api_suite!(postgres().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_statement_timeout_is_503_store_timeout() {
    let schema = fresh_schema().await;
    let setup = PgStore::connect(&url(), &schema).unwrap();
    setup.migrate().await.unwrap();
    let store = PgStore::connect_with(
        &url(),
        &schema,
        PoolOptions {
            // Long enough that the other requests below never hit it on a loaded machine.
            statement_timeout: Some(Duration::from_millis(1000)),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let api = suite::api(Arc::new(store), AuthConfig::open());
    let locked = api.enqueue("a").await;
    let free = api.enqueue("a").await;

    // Another session holds the job's row lock in an open transaction.
    let mut holder = setup.pool().get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        &format!("SELECT id FROM {schema}.jobs WHERE id = $1 FOR UPDATE"),
        &[&locked.id],
    )
    .await
    .unwrap();

    let api = &api;
    let cancel = move |id: uuid::Uuid| async move {
        api.call(Method::POST, &format!("/jobs/{id}/cancel"), None, None)
            .await
    };
    let r = tokio::time::timeout(Duration::from_secs(10), cancel(locked.id))
        .await
        .expect("the request waited for the lock instead of being cut");
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "store_timeout"),
        "{r:?}"
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER), "{r:?}");
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("took too long"));

    // Other requests are unaffected, and the cut cancel changed nothing.
    let r = api.get(&format!("/jobs/{}", locked.id)).await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, jobs_core::JobStatus::Pending)
    );
    assert_eq!(cancel(free.id).await.status, StatusCode::OK);
    assert_eq!(api.get("/jobs").await.status, StatusCode::OK);
    tx.rollback().await.unwrap();
    let r = cancel(locked.id).await;
    assert_eq!(
        (r.status, r.job().status),
        (StatusCode::OK, jobs_core::JobStatus::Cancelled)
    );
    drop(holder);
    setup
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
