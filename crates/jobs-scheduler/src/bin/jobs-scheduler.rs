//! The scheduler process for ECS: one leader dispatches, standbys wait.
//!
//! Reads `ASYNC_JOBS_DB_DSN` (required), `ASYNC_JOBS_DB_SCHEMA` (default `async_jobs`), the
//! use-case variables (`ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, caps, tolerances), the scheduler pacing
//! variables (see `SchedulerConfig`) and the AWS SDK's standard settings. Applies migrations on
//! start unless `ASYNC_JOBS_AUTO_MIGRATE=false`. Exits 0 after SIGTERM/SIGINT, releasing the leader
//! lock; exits 1 with one line on a bad setting.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use jobs_core::PlatformConfig;
use jobs_postgres::{PgLeaderElection, PgStore};
use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig};
use jobs_sqs::{queue_urls_from_config, SqsTransport};

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobs-scheduler: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let platform = Arc::new(PlatformConfig::from_env()?);
    let config = SchedulerConfig::from_env()?;
    let dsn = std::env::var("ASYNC_JOBS_DB_DSN")
        .context("invalid ASYNC_JOBS_DB_DSN: expected a Postgres connection string, got nothing")?;
    let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
        .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
    let store = PgStore::connect(&dsn, &schema)?;
    if std::env::var("ASYNC_JOBS_AUTO_MIGRATE").map_or(true, |v| v != "false") {
        store.migrate().await.context("applying migrations")?;
    }
    let transport = SqsTransport::from_env(queue_urls_from_config(&platform)?).await?;
    let leader = PgLeaderElection::new(&dsn, &schema)?;
    tracing::info!(schema, use_cases = ?platform.use_cases.keys().collect::<Vec<_>>(), "scheduler starting");
    let dispatcher = Dispatcher::new(Arc::new(store), Arc::new(transport), platform, config);
    Scheduler::new(dispatcher, Arc::new(leader))
        .run(shutdown_signal())
        .await;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Completes on SIGTERM (ECS stop) or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ASYNC_JOBS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
