//! Serving the router on a socket with graceful shutdown (used by `jobs-api` and by tests).

use std::future::Future;

use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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

/// Installs the process's tracing subscriber: JSON lines when `ASYNC_JOBS_LOG_FORMAT=json` (the
/// container images set it), human-readable text otherwise; filter from `RUST_LOG` (default
/// `info`). Logs go to stderr. A second call is a no-op.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("ASYNC_JOBS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _already_installed = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The address of a process's operations endpoints: `ASYNC_JOBS_HEALTH_ADDR` (default
/// `0.0.0.0:9090`; `off` disables them). `Err` names the variable.
pub fn ops_addr_from_env() -> Result<Option<std::net::SocketAddr>, jobs_core::ConfigError> {
    const VAR: &str = "ASYNC_JOBS_HEALTH_ADDR";
    match std::env::var(VAR) {
        Ok(v) if v.trim().eq_ignore_ascii_case("off") => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| jobs_core::ConfigError {
                variable: VAR.to_owned(),
                expected: "host:port like 0.0.0.0:9090, or off".to_owned(),
                got: v.chars().take(200).collect(),
            }),
        Err(_) => Ok(Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9090)))),
    }
}

/// Starts the operations endpoints in the background when `addr` is set. Binding fails loudly
/// (returned), serving errors are logged; the task ends with the process.
pub async fn spawn_ops(
    addr: Option<std::net::SocketAddr>,
    service: jobs_core::JobService,
) -> std::io::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let state = crate::AppState::new(service, crate::AuthConfig::open())
        .with_metrics_handle(crate::metrics::prometheus_handle());
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /healthz, /readyz and /metrics");
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = serve(
            listener,
            crate::routes::ops_router(state),
            std::future::pending(),
        )
        .await
        {
            tracing::error!(error = %e, "operations endpoint stopped");
        }
    })))
}
