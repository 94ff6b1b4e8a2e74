//! The `async-jobs` command line: subcommands and the wiring they share.

mod config;
mod dev;
mod ports;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use jobs_http::server::shutdown_signal;

/// Why a command failed (the message names the setting or service at fault).
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Durable background jobs for Rust services on AWS ECS.
#[derive(Debug, Parser)]
#[command(name = "async-jobs", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Print the configuration the command would run with (secrets redacted) and exit.
    #[arg(long, global = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API, scheduler and a worker with the sample handlers in one process. In-memory store and
    /// transport unless ASYNC_JOBS_DB_DSN / ASYNC_JOBS_SQS_QUEUE_* are set (then Postgres / SQS).
    Dev {
        /// Address of the HTTP API.
        #[arg(long, env = "ASYNC_JOBS_API_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// The HTTP API on Postgres (ASYNC_JOBS_DB_DSN; refuses to start without it unless
    /// ASYNC_JOBS_STORE=memory asks for the in-memory store).
    Api {
        /// Address to listen on.
        #[arg(long, env = "ASYNC_JOBS_API_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// The scheduler: reaps, leases due jobs earliest-deadline-first under the caps, sends them to
    /// SQS. Needs ASYNC_JOBS_DB_DSN and the queue URLs.
    Scheduler,
    /// The reference worker running the sample handlers (send_email, send_sms, label_message).
    /// Needs ASYNC_JOBS_DB_DSN and the queue URLs.
    Worker,
    /// Applies the database migrations to ASYNC_JOBS_DB_SCHEMA (safe to run concurrently).
    Migrate,
    /// Exits 0 if the URL answers with a 2xx status within 5 s (container health checks).
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
    },
}

pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    if cli.print_config {
        println!(
            "{}",
            config::describe(command_name(&cli.command), api_addr(&cli.command))?
        );
        return Ok(());
    }
    match cli.command {
        Command::Dev { addr } => dev::run(addr, shutdown_signal()).await,
        Command::Api { addr } => jobs_http::app::run_from_env(addr, shutdown_signal()).await,
        Command::Scheduler => jobs_scheduler::app::run_from_env(shutdown_signal()).await,
        Command::Worker => {
            // Fault tests and demos: record each sample-handler run when configured.
            if let Some(log) = jobs_worker::samples::SideEffectLog::from_env()? {
                jobs_worker::samples::install_side_effect_log(std::sync::Arc::new(log));
            }
            jobs_worker::app::run_from_env(jobs_worker::sample_registry(), shutdown_signal())
                .await
                .map(|_| ())
        }
        Command::Migrate => migrate().await,
        Command::Healthcheck { url } => healthcheck(&url).await,
    }
}

/// The default OpenTelemetry `service.name` of a command: `async-jobs-<command>`
/// (`OTEL_SERVICE_NAME` wins).
pub(crate) fn service_name(cli: &Cli) -> String {
    format!("async-jobs-{}", command_name(&cli.command))
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Dev { .. } => "dev",
        Command::Api { .. } => "api",
        Command::Scheduler => "scheduler",
        Command::Worker => "worker",
        Command::Migrate => "migrate",
        Command::Healthcheck { .. } => "healthcheck",
    }
}

/// The API address of the commands that serve it.
fn api_addr(c: &Command) -> Option<SocketAddr> {
    match c {
        Command::Dev { addr } | Command::Api { addr } => Some(*addr),
        _ => None,
    }
}

async fn migrate() -> Result<(), CliError> {
    let dsn = std::env::var("ASYNC_JOBS_DB_DSN")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or("invalid ASYNC_JOBS_DB_DSN: expected a Postgres connection string, got nothing")?;
    let schema = config::schema();
    let connector = jobs_postgres::PgConnector::from_env_ca(&dsn)?;
    let store = jobs_postgres::PgStore::connect_using(
        &connector,
        &schema,
        jobs_postgres::PoolOptions::default(),
    )?;
    let report = store.migrate().await?;
    println!("schema {schema}: {report:?}");
    Ok(())
}

async fn healthcheck(url: &str) -> Result<(), CliError> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let status = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("healthcheck: {url}: {e}"))?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("healthcheck: {url} answered {status}").into())
    }
}
