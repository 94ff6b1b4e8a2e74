//! The API as a process: choosing the store from the environment and serving the router. Used by
//! the `jobs-api` binary and `async-jobs api`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_core::{JobService, JobStore, PlatformConfig};

use crate::auth::{ResolvedAuth, Serving};
use crate::AppState;

/// Why the process could not start or serve (each message names the setting at fault).
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The store a process runs on.
#[derive(Debug, Clone)]
pub struct StoreChoice {
    /// The store.
    pub store: Arc<dyn JobStore>,
    /// `(dsn, schema)` when it is Postgres.
    pub postgres: Option<(String, String)>,
}

impl StoreChoice {
    /// The `(dsn, schema)` of a Postgres store, or the one-line error processes that need
    /// Postgres (scheduler, worker) stop with.
    pub fn require_postgres(&self) -> Result<(&str, &str), AppError> {
        self.postgres
            .as_ref()
            .map(|(dsn, schema)| (dsn.as_str(), schema.as_str()))
            .ok_or_else(|| {
                "invalid ASYNC_JOBS_DB_DSN: expected a Postgres connection string, got nothing"
                    .into()
            })
    }

    /// `postgres` or a warning that the store is not durable.
    pub fn describe(&self) -> &'static str {
        match self.postgres {
            Some(_) => "postgres",
            None => "in-memory (NOT durable: jobs are lost when the process exits)",
        }
    }
}

/// Postgres when `ASYNC_JOBS_DB_DSN` is set (schema `ASYNC_JOBS_DB_SCHEMA`, default `async_jobs`;
/// migrated unless `ASYNC_JOBS_AUTO_MIGRATE=false`), else the in-memory store.
pub async fn store_from_env() -> Result<StoreChoice, AppError> {
    let Some(dsn) = std::env::var("ASYNC_JOBS_DB_DSN")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(StoreChoice {
            store: Arc::new(MemoryStore::new(Arc::new(SystemClock))),
            postgres: None,
        });
    };
    let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
        .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
    let store = jobs_postgres::PgStore::connect(&dsn, &schema)?;
    if std::env::var("ASYNC_JOBS_AUTO_MIGRATE").map_or(true, |v| v.trim() != "false") {
        store
            .migrate()
            .await
            .map_err(|e| format!("applying migrations: {e}"))?;
    }
    Ok(StoreChoice {
        store: Arc::new(store),
        postgres: Some((dsn, schema)),
    })
}

/// Serves the API on `addr` until `shutdown`: platform settings from the environment, credentials
/// from [`ResolvedAuth::from_env`] (refuses to start without one unless `ASYNC_JOBS_AUTH=none`),
/// connection limits from [`crate::ServerLimits::from_env`], the store from [`store_from_env`],
/// Prometheus metrics installed.
pub async fn run_from_env(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let platform = Arc::new(PlatformConfig::from_env()?);
    let limits = crate::ServerLimits::from_env()?;
    let auth = ResolvedAuth::from_env(Serving::Api { addr })?;
    auth.log();
    let auth = auth.into_config();
    let choice = store_from_env().await?;
    if choice.postgres.is_none() {
        tracing::warn!("ASYNC_JOBS_DB_DSN is not set: {}", choice.describe());
    }
    let service = JobService::new(choice.store, platform);
    let state =
        AppState::new(service, auth).with_metrics_handle(crate::metrics::prometheus_handle());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("invalid ASYNC_JOBS_API_ADDR: cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, ?limits, "API listening");
    crate::server::serve_with(listener, crate::router(state), limits, shutdown).await?;
    tracing::info!("API stopped");
    Ok(())
}
