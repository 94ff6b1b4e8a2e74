//! The scheduler as a process: wiring from the environment to Postgres, SQS, leader election and
//! the operations endpoints. Used by the `jobs-scheduler` binary and `async-jobs scheduler`.

use std::future::Future;
use std::sync::Arc;

use jobs_core::{JobService, PlatformConfig};
use jobs_postgres::PgLeaderElection;
use jobs_sqs::{queue_urls_from_config, SqsTransport};

use crate::{Dispatcher, Scheduler, SchedulerConfig};

/// Why the process could not start (each message names the setting or service at fault).
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the production scheduler until `shutdown` completes: the Postgres store from
/// `ASYNC_JOBS_DB_DSN` (see [`jobs_http::app::store_for`]; no statement timeout,
/// [`StoreRole::Background`](jobs_http::app::StoreRole::Background)), `SqsTransport` from the use
/// cases' queue URLs and the AWS SDK's environment, a Postgres leader lock, and `/healthz`,
/// `/readyz`, `/metrics` on `ASYNC_JOBS_HEALTH_ADDR`.
pub async fn run_from_env(shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let platform = Arc::new(PlatformConfig::from_env()?);
    let config = SchedulerConfig::from_env()?;
    let ops = jobs_http::server::ops_addr_from_env()?;
    let choice = jobs_http::app::store_for(jobs_http::app::StoreRole::Background).await?;
    let (connector, schema) = choice.require_postgres()?;
    let transport = Arc::new(SqsTransport::from_env(queue_urls_from_config(&platform)?).await?);
    // The leader lock connects like the store (same settings and TLS).
    let leader = Arc::new(PgLeaderElection::with_connector(connector.clone(), schema));
    let _ops =
        jobs_http::server::spawn_ops(ops, JobService::new(choice.store.clone(), platform.clone()))
            .await?;
    tracing::info!(schema, use_cases = ?platform.use_cases.keys().collect::<Vec<_>>(), "scheduler starting");
    let dispatcher = Dispatcher::new(choice.store, transport, platform, config);
    Scheduler::new(dispatcher, leader).run(shutdown).await;
    tracing::info!("scheduler stopped");
    Ok(())
}
