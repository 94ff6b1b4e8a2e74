//! The reference worker process for ECS: the sample handlers, configured from the environment,
//! running until SIGTERM/SIGINT and exiting 0 after draining.
//!
//! Environment: the platform's (`ASYNC_JOBS_DB_DSN`, `ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, …), the
//! worker's (`ASYNC_JOBS_WORKER_CONCURRENCY`, `ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS`, … — see
//! `jobs_worker::config`), `ASYNC_JOBS_LOG_FORMAT=json` for JSON logs and `RUST_LOG` for levels.
//! A bad setting exits 1 with one line naming the variable.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use jobs_core::{JobService, JobStore, PlatformConfig, Transport};
use jobs_worker::{sample_registry, Worker, WorkerConfig};
use tracing_subscriber::EnvFilter;

/// Builds the store and the transport the worker runs on.
async fn build_ports(
    platform: &PlatformConfig,
) -> anyhow::Result<(Arc<dyn JobStore>, Arc<dyn Transport>)> {
    let dsn = std::env::var("ASYNC_JOBS_DB_DSN").map_err(|_| {
        anyhow::anyhow!(
            "invalid ASYNC_JOBS_DB_DSN: expected a Postgres connection string, got nothing"
        )
    })?;
    let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
        .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
    let store: Arc<dyn JobStore> = Arc::new(jobs_postgres::PgStore::connect(&dsn, &schema)?);
    let urls = jobs_sqs::queue_urls_from_config(platform)?;
    let transport: Arc<dyn Transport> = Arc::new(jobs_sqs::SqsTransport::from_env(urls).await?);
    Ok((store, transport))
}

fn install_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ASYNC_JOBS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// Completes on SIGTERM (ECS stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(platform: PlatformConfig, worker_config: WorkerConfig) -> anyhow::Result<()> {
    let (store, transport) = build_ports(&platform)
        .await
        .context("building the store and transport")?;
    let service = JobService::new(store, Arc::new(platform));
    let worker = Worker::new(service, transport, sample_registry(), worker_config);
    let report = worker.run(shutdown_signal()).await?;
    tracing::info!(?report, "drained; exiting");
    Ok(())
}

fn main() -> ExitCode {
    // Settings first, so a bad one is one plain line on stderr before any logging starts.
    let platform = match PlatformConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jobs-worker: {e}");
            return ExitCode::from(1);
        }
    };
    let worker_config = match WorkerConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jobs-worker: {e}");
            return ExitCode::from(1);
        }
    };
    install_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobs-worker: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(platform, worker_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "jobs-worker failed");
            eprintln!("jobs-worker: {e:#}");
            ExitCode::from(1)
        }
    }
}
