//! The worker as a process: wiring from the environment to Postgres, SQS and the operations
//! endpoints. Used by the reference `jobs-worker` binary and `async-jobs worker`; your own worker
//! binary can call [`run_from_env`] with its own registry.

use std::future::Future;
use std::sync::Arc;

use jobs_core::{HandlerRegistry, JobService, JobStore, PlatformConfig, Transport};

use crate::{Worker, WorkerConfig, WorkerReport};

/// Why the process could not start or run (each message names the setting or service at fault).
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The production ports: the Postgres store from `ASYNC_JOBS_DB_DSN` (see
/// [`jobs_http::app::store_for`]; no statement timeout,
/// [`StoreRole::Background`](jobs_http::app::StoreRole::Background)) and `SqsTransport` from the
/// use cases' queue URLs and the AWS SDK's environment.
pub async fn ports_from_env(
    platform: &PlatformConfig,
) -> Result<(Arc<dyn JobStore>, Arc<dyn Transport>), AppError> {
    let choice = jobs_http::app::store_for(jobs_http::app::StoreRole::Background).await?;
    choice.require_postgres()?;
    let urls = jobs_sqs::queue_urls_from_config(platform)?;
    let transport: Arc<dyn Transport> = Arc::new(jobs_sqs::SqsTransport::from_env(urls).await?);
    Ok((choice.store, transport))
}

/// Runs a worker with `registry` until `shutdown` completes and the drain is over: settings from
/// [`PlatformConfig::from_env`] and [`WorkerConfig::from_env`], ports from [`ports_from_env`],
/// and `/healthz`, `/readyz`, `/metrics` on `ASYNC_JOBS_HEALTH_ADDR`.
pub async fn run_from_env(
    registry: HandlerRegistry,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerReport, AppError> {
    let platform = PlatformConfig::from_env()?;
    let config = WorkerConfig::from_env()?;
    let ops = jobs_http::server::ops_addr_from_env()?;
    let (store, transport) = ports_from_env(&platform).await?;
    let service = JobService::new(store, Arc::new(platform));
    let _ops = jobs_http::server::spawn_ops(ops, service.clone()).await?;
    let report = Worker::new(service, transport, registry, config)
        .with_span_parent(jobs_http::telemetry::set_parent)
        .run(shutdown)
        .await?;
    tracing::info!(?report, "drained; exiting");
    Ok(report)
}
