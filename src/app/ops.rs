//! What every process has: the operations endpoints and the shutdown signal.

use std::net::SocketAddr;

use jobs_core::JobService;
use tokio::net::TcpListener;

/// Starts `/healthz`, `/readyz` and `/metrics` ([`jobs_http::ops_router`]) in the background when
/// `addr` is set, under the default [`jobs_http::ServerLimits`]. Binding fails loudly (returned,
/// naming `ASYNC_JOBS_HEALTH_ADDR`); serving errors are logged; the task ends with the process.
pub async fn spawn_ops(
    addr: Option<SocketAddr>,
    service: JobService,
) -> Result<Option<tokio::task::JoinHandle<()>>, super::AppError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let state = jobs_http::AppState::new(service, jobs_http::AuthConfig::open())
        .with_metrics_handle(jobs_http::metrics::prometheus_handle());
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("ASYNC_JOBS_HEALTH_ADDR: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /healthz, /readyz and /metrics");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = jobs_http::server::serve(
            listener,
            jobs_http::ops_router(state),
            std::future::pending(),
        )
        .await
        {
            tracing::error!(error = %e, "operations endpoint stopped");
        }
    })))
}

/// Completes on SIGINT or (on Unix) SIGTERM. If a handler cannot be installed, that signal is
/// ignored with a log line (the other still works).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
