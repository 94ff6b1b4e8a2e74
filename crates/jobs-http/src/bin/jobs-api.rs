//! `jobs-api`: the standalone async-jobs HTTP API.
//!
//! Configuration comes from the environment (see `docs/http-api.md`): `ASYNC_JOBS_API_ADDR`
//! (default `127.0.0.1:8080`), the platform settings read by `PlatformConfig::from_env`, and the
//! credentials read by `AuthConfig::from_env`. A bad setting exits with status 2 and one line
//! naming the variable. SIGTERM or SIGINT stops accepting connections and lets in-flight
//! requests finish.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_core::{JobService, JobStore, PlatformConfig};
use jobs_http::{AppState, AuthConfig};

/// The async-jobs HTTP API server.
#[derive(Debug, Parser)]
#[command(name = "jobs-api", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ASYNC_JOBS_API_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "ASYNC_JOBS_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// A setting that stops the server from starting.
struct BadSetting(String);

fn init_tracing(format: &str) -> Result<(), BadSetting> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        "text" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => {
            return Err(BadSetting(format!(
                "invalid ASYNC_JOBS_LOG_FORMAT: expected text or json, got {other:?}"
            )))
        }
    };
    // Already initialised (cannot happen in this binary) is not worth stopping for.
    let _ = result;
    Ok(())
}

/// Chooses the job store.
///
/// The Postgres store when `ASYNC_JOBS_DB_DSN` is set (schema `ASYNC_JOBS_DB_SCHEMA`, default
/// `async_jobs`; migrations applied unless `ASYNC_JOBS_AUTO_MIGRATE=false`), else the in-memory
/// store for local development.
async fn build_store() -> anyhow::Result<Arc<dyn JobStore>> {
    if let Ok(dsn) = std::env::var("ASYNC_JOBS_DB_DSN") {
        let schema = std::env::var("ASYNC_JOBS_DB_SCHEMA")
            .unwrap_or_else(|_| jobs_postgres::DEFAULT_SCHEMA.to_owned());
        let store = jobs_postgres::PgStore::connect(&dsn, &schema)?;
        if std::env::var("ASYNC_JOBS_AUTO_MIGRATE").map_or(true, |v| v != "false") {
            store.migrate().await?;
        }
        tracing::info!(schema, "using the Postgres job store");
        return Ok(Arc::new(store));
    }
    tracing::warn!(
        "ASYNC_JOBS_DB_DSN is not set: using the in-memory job store; jobs are NOT durable and are lost when the process exits"
    );
    Ok(Arc::new(MemoryStore::new(Arc::new(SystemClock))))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let addr: SocketAddr = args.addr.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid ASYNC_JOBS_API_ADDR: expected host:port like 127.0.0.1:8080, got {:?}",
            args.addr
        )
    })?;
    let config = PlatformConfig::from_env()?;
    let auth = AuthConfig::from_env()?;
    if auth.is_open() {
        tracing::warn!("no ASYNC_JOBS_ENQUEUE_AUTH_TOKEN or ASYNC_JOBS_API_KEYS: the API is open to anyone who can reach it");
    }
    let store = build_store().await?;
    let service = JobService::new(store, Arc::new(config));
    let app = jobs_http::router(AppState::new(service, auth));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on ASYNC_JOBS_API_ADDR={addr}"))?;
    tracing::info!(%addr, "jobs-api listening");
    jobs_http::server::serve(listener, app, jobs_http::server::shutdown_signal()).await?;
    tracing::info!("jobs-api stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(BadSetting(line)) = init_tracing(&args.log_format) {
        eprintln!("jobs-api: {line}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("jobs-api: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error names the variable.
            eprintln!("jobs-api: {err:#}");
            ExitCode::from(2)
        }
    }
}
