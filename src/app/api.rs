//! `async-jobs api`: the router over the store, served with the connection limits.

use std::future::Future;

use jobs_core::JobService;

use super::settings::Settings;
use super::{store, AppError};

/// Serves the API `settings` describe until `shutdown`, then lets in-flight requests finish.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let api = settings
        .api
        .clone()
        .ok_or("the settings were not read for the API")?;
    api.auth.log();
    let choice = store::open(&settings.store).await?;
    if choice.postgres.is_none() {
        tracing::warn!("ASYNC_JOBS_STORE=memory: {}", choice.describe());
    }
    let service = JobService::new(choice.store, settings.platform.clone());
    let mut state = jobs_http::AppState::new(service, api.auth.into_config())
        .with_metrics_handle(jobs_http::metrics::prometheus_handle());
    if let Some(key) = api.ui_session_key {
        state = state.with_ui_session_key(key);
    }
    let listener = tokio::net::TcpListener::bind(api.addr)
        .await
        .map_err(|e| format!("ASYNC_JOBS_API_ADDR: cannot listen on {}: {e}", api.addr))?;
    tracing::info!(addr = %api.addr, limits = ?api.limits, "API listening");
    jobs_http::server::serve_with(listener, jobs_http::router(state), api.limits, shutdown).await?;
    tracing::info!("API stopped");
    Ok(())
}
