//! `async-jobs worker`, and your own worker: a registry of handlers run on the Postgres store and
//! SQS, with the operations endpoints, configured like every process.
//!
//! ```no_run
//! use async_jobs::app;
//! use jobs_core::{HandlerRegistry, JobContext};
//!
//! #[derive(serde::Deserialize)]
//! struct Resize { image: String }
//!
//! fn main() -> std::process::ExitCode {
//!     let mut handlers = HandlerRegistry::new();
//!     handlers.register_fn("resize", |_ctx: JobContext, p: Resize| async move {
//!         tracing::info!(image = %p.image, "resized");
//!         Ok(())
//!     });
//!     // The same environment, exit codes and `--print-config` as `async-jobs worker`.
//!     app::main_with(app::Launch::from_args(app::Process::Worker), |settings| async move {
//!         app::worker::run(settings, handlers, app::shutdown_signal()).await.map(|_| ())
//!     })
//! }
//! ```

use std::future::Future;

use jobs_core::{HandlerRegistry, JobService};
use jobs_worker::{Worker, WorkerReport};

use super::settings::{Overrides, Process, Settings};
use super::{ports, store, AppError};

/// Runs a worker with `registry` until `shutdown` completes and the drain is over, as `settings`
/// (read for [`Process::Worker`]) describe: the Postgres store, SQS, `/healthz`, `/readyz` and
/// `/metrics` on `ASYNC_JOBS_HEALTH_ADDR`, span parents from the stored trace context.
pub async fn run(
    settings: Settings,
    registry: HandlerRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerReport, AppError> {
    let config = settings
        .worker
        .clone()
        .ok_or("the settings were not read for a worker")?;
    settings.require_postgres()?;
    // The transport first: a setting it refuses stops the process before the migrations run.
    let (transport, _) = ports::transport(&settings.transport, &settings.platform).await?;
    let choice = store::open(&settings.store).await?;
    let service = JobService::new(choice.store, settings.platform.clone());
    let _ops = super::ops::spawn_ops(settings.health_addr, service.clone()).await?;
    let report = Worker::new(service, transport, registry, config)
        .with_span_parent(jobs_http::telemetry::set_parent)
        .run(shutdown)
        .await?;
    tracing::info!(?report, "drained; exiting");
    Ok(report)
}

/// [`run`] with settings read from the environment now (a bad setting is an `Err` naming the
/// variable). Prefer [`super::main_with`] in a binary: it also installs logging and span export
/// and exits with the platform's exit codes.
pub async fn run_from_env(
    registry: HandlerRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerReport, AppError> {
    let settings = Settings::from_env(Process::Worker, Overrides::default())?;
    run(settings, registry, shutdown).await
}
