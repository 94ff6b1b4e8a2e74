//! `async-jobs dev`: the whole platform in one process.

use std::future::Future;

use jobs_core::{HandlerRegistry, JobService};
use jobs_scheduler::{BacklogMonitor, Dispatcher, Scheduler};
use jobs_worker::Worker;
use tokio::sync::watch;

use super::settings::Settings;
use super::{ports, store, AppError};

/// Serves the API and runs a scheduler and a worker with `registry` beside it, as `settings`
/// (read for `dev`) describe, until `shutdown`; then stops the API and the scheduler and lets
/// the worker drain.
pub async fn run(
    settings: Settings,
    registry: HandlerRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let missing = "the settings were not read for dev";
    let api = settings.api.clone().ok_or(missing)?;
    let scheduler_config = settings.scheduler.clone().ok_or(missing)?;
    let worker_config = settings.worker.clone().ok_or(missing)?;
    let (addr, auth, limits, ui_key) = (api.addr, api.auth, api.limits, api.ui_session_key);
    let platform = settings.platform.clone();
    // One store for all three, with the API's statement timeout (ASYNC_JOBS_API_STATEMENT_TIMEOUT).
    let (transport, transport_kind) = ports::transport(&settings.transport, &platform).await?;
    let store = store::open(&settings.store).await?;
    let leader = ports::leader_for(&store);
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

    let mut state = jobs_http::AppState::new(service.clone(), auth.into_config())
        .with_metrics_handle(jobs_http::metrics::prometheus_handle());
    if let Some(key) = ui_key {
        state = state.with_ui_session_key(key);
    }
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
    let cron = jobs_scheduler::Cron::new(store.store.clone(), platform.clone())
        .with_configured(settings.schedules.clone().unwrap_or_default());
    let backlog = settings
        .backlog
        .clone()
        .map(|config| BacklogMonitor::new(store.store.clone(), platform.clone(), config));
    let mut scheduler = Scheduler::new(dispatcher, leader).with_cron(cron);
    if let Some(backlog) = backlog {
        scheduler = scheduler.with_backlog(backlog);
    }
    let mut scheduler = tokio::spawn(scheduler.run(stopped()));
    let mut worker = tokio::spawn(
        Worker::new(service, transport, registry, worker_config)
            .with_span_parent(jobs_http::telemetry::set_parent)
            .run(stopped()),
    );
    let mut api = api;

    // Until the signal — or until one of the three stops on its own (a failure): then the
    // process stops too, instead of serving an API whose jobs nothing runs.
    let early: Option<AppError> = tokio::select! {
        () = shutdown => None,
        r = &mut api => Some(match r {
            Ok(Ok(())) => "the API stopped".into(),
            Ok(Err(e)) => format!("the API stopped: {e}").into(),
            Err(e) => format!("the API task failed: {e}").into(),
        }),
        r = &mut scheduler => Some(match r {
            Ok(stopped) => format!("the scheduler stopped: {stopped:?}").into(),
            Err(e) => format!("the scheduler task failed: {e}").into(),
        }),
        r = &mut worker => Some(match r {
            Ok(Ok(_)) => "the worker stopped".into(),
            Ok(Err(e)) => format!("the worker stopped: {e}").into(),
            Err(e) => format!("the worker task failed: {e}").into(),
        }),
    };
    let _ = stop_tx.send(true);
    if let Some(e) = early {
        // The finished task's handle is spent; stop the others and report the first failure.
        for handle in [api.abort_handle(), scheduler.abort_handle()] {
            handle.abort();
        }
        worker.abort();
        return Err(e);
    }
    api.await??;
    scheduler.await?;
    let report = worker.await??;
    tracing::info!(?report, "stopped");
    Ok(())
}
