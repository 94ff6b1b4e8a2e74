//! `async-jobs dev`: the whole platform in one process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use jobs_core::{JobService, PlatformConfig};
use jobs_http::auth::{ResolvedAuth, Serving};
use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig};
use jobs_worker::{Worker, WorkerConfig};
use tokio::sync::watch;

use super::{ports, CliError};

/// Serves the API on `addr` and runs a scheduler and a worker (sample handlers) beside it until
/// `shutdown`; then stops the API and the scheduler and lets the worker drain.
pub(crate) async fn run(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let platform = Arc::new(PlatformConfig::from_env()?);
    // Open without credentials on a loopback address only; refused elsewhere unless
    // ASYNC_JOBS_AUTH=none.
    let auth = ResolvedAuth::from_env(Serving::Dev { addr })?;
    let scheduler_config = SchedulerConfig::from_env()?;
    let worker_config = WorkerConfig::from_env()?;
    let limits = jobs_http::ServerLimits::from_env()?;
    // One store for all three, with the API's statement timeout (ASYNC_JOBS_API_STATEMENT_TIMEOUT).
    let store = jobs_http::app::store_for(jobs_http::app::StoreRole::Dev).await?;
    let leader = ports::leader_for(&store)?;
    let (transport, transport_kind) = ports::transport_from_env(&platform).await?;
    let service = JobService::new(store.store.clone(), platform.clone());

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("invalid ASYNC_JOBS_API_ADDR: cannot listen on {addr}: {e}"))?;
    tracing::info!(
        api = %format!("http://{addr}"),
        store = store.describe(),
        transport = transport_kind,
        use_cases = ?platform.use_cases.keys().collect::<Vec<_>>(),
        "async-jobs dev: API, scheduler and worker (sample handlers) running in one process"
    );
    if store.postgres.is_none() {
        tracing::warn!("the in-memory store is not durable: set ASYNC_JOBS_DB_DSN to use Postgres");
    }
    auth.log();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let state = jobs_http::AppState::new(service.clone(), auth.into_config())
        .with_metrics_handle(jobs_http::metrics::prometheus_handle());
    let api = tokio::spawn(jobs_http::server::serve_with(
        listener,
        jobs_http::router(state),
        limits,
        stopped(),
    ));
    let dispatcher = Dispatcher::new(
        store.store.clone(),
        transport.clone(),
        platform.clone(),
        scheduler_config,
    );
    let scheduler = tokio::spawn(Scheduler::new(dispatcher, leader).run(stopped()));
    let worker = tokio::spawn(
        Worker::new(
            service,
            transport,
            jobs_worker::sample_registry(),
            worker_config,
        )
        .with_span_parent(jobs_http::telemetry::set_parent)
        .run(stopped()),
    );

    shutdown.await;
    let _ = stop_tx.send(true);
    api.await??;
    scheduler.await?;
    let report = worker.await??;
    tracing::info!(?report, "stopped");
    Ok(())
}
