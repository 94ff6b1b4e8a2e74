//! The `async-jobs` command line: which process to run (everything else comes from the
//! environment, through `async_jobs::app`), and the operator's commands over the HTTP API.

mod jobs;
mod schedules;

use std::net::SocketAddr;
use std::process::ExitCode;

use async_jobs::app::{self, Launch, Overrides, Process};
use clap::{Parser, Subcommand};

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
        /// Address of the HTTP API [default: ASYNC_JOBS_API_ADDR, else 127.0.0.1:8080].
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// The HTTP API on Postgres (ASYNC_JOBS_DB_DSN; refuses to start without it unless
    /// ASYNC_JOBS_STORE=memory asks for the in-memory store).
    Api {
        /// Address to listen on [default: ASYNC_JOBS_API_ADDR, else 127.0.0.1:8080].
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// The scheduler: reaps, leases due jobs earliest-deadline-first under the caps, sends them to
    /// SQS. Needs ASYNC_JOBS_DB_DSN and the queue URLs.
    Scheduler,
    /// The reference worker running the sample handlers (send_email, send_sms, label_message).
    /// Needs ASYNC_JOBS_DB_DSN and the queue URLs.
    Worker,
    /// Applies the database migrations to ASYNC_JOBS_DB_SCHEMA in every store (ASYNC_JOBS_DB_DSN
    /// and each ASYNC_JOBS_<USE_CASE>_DB_DSN; safe to run concurrently).
    Migrate,
    /// Operator commands over the HTTP API: list, get, retry, cancel, enqueue. Exit status: 0 done,
    /// 1 API unreachable or failing, 2 usage, 3 not found, 4 credentials refused, 5 request
    /// refused.
    Jobs {
        #[command(flatten)]
        connection: jobs::Connection,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Pause a use case (every tenant, or --tenant): its pending jobs stay pending; jobs already
    /// dispatched or running finish. Same connection flags and exit status as `jobs`.
    Pause {
        #[command(flatten)]
        connection: jobs::Connection,
        #[command(flatten)]
        scope: jobs::PauseArgs,
    },
    /// Resume a paused use case (or --tenant).
    Resume {
        #[command(flatten)]
        connection: jobs::Connection,
        #[command(flatten)]
        scope: jobs::PauseArgs,
    },
    /// List the pauses in force.
    Pauses {
        #[command(flatten)]
        connection: jobs::Connection,
    },
    /// Cron schedules (periodic jobs): list, get, create, update, delete. Same connection flags,
    /// output formats and exit status as `jobs` (3: no such schedule; 5: refused).
    Schedules {
        #[command(flatten)]
        connection: jobs::Connection,
        #[command(subcommand)]
        command: schedules::SchedulesCommand,
    },
    /// List the rate limits in force (configured in ASYNC_JOBS_PER_TENANT_RATE_LIMITS).
    RateLimits {
        #[command(flatten)]
        connection: jobs::Connection,
    },
    /// Exits 0 if the URL answers with a 2xx status within 5 s (container health checks).
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
    },
}

/// Runs the command line's process and returns its exit code (see `async_jobs::app`).
pub(crate) fn main(cli: Cli) -> ExitCode {
    let (process, addr) = match cli.command {
        Command::Dev { addr } => (Process::Dev, addr),
        Command::Api { addr } => (Process::Api, addr),
        Command::Scheduler => (Process::Scheduler, None),
        Command::Worker => (Process::Worker, None),
        Command::Migrate => (Process::Migrate, None),
        Command::Healthcheck { url } => return healthcheck(&url, cli.print_config),
        Command::Jobs {
            connection,
            command,
        } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return jobs::run(&connection, command);
        }
        Command::Pause { connection, scope } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return jobs::pause(&connection, scope);
        }
        Command::Resume { connection, scope } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return jobs::resume(&connection, scope);
        }
        Command::Schedules {
            connection,
            command,
        } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return schedules::run(&connection, command);
        }
        Command::Pauses { connection } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return jobs::pauses(&connection);
        }
        Command::RateLimits { connection } => {
            if cli.print_config {
                println!("{}", jobs::describe(&connection));
                return ExitCode::SUCCESS;
            }
            return jobs::rate_limits(&connection);
        }
    };
    let launch = Launch {
        overrides: Overrides { api_addr: addr },
        print_config: cli.print_config,
        ..Launch::new(process)
    };
    app::main_with(launch, |settings| {
        app::run(settings, app::shutdown_signal())
    })
}

/// `async-jobs healthcheck`: reads no settings (it runs inside every container, under any
/// environment).
fn healthcheck(url: &str, print_config: bool) -> ExitCode {
    if print_config {
        println!(
            "{}",
            serde_json::json!({"command": "healthcheck", "url": url})
        );
        return ExitCode::SUCCESS;
    }
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| format!("healthcheck: {e}"))?;
        let status = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("healthcheck: {url}: {e}"))?
            .status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("healthcheck: {url} answered {status}"))
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|rt| rt.block_on(probe));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("async-jobs: {e}");
            ExitCode::from(app::EXIT_FAILED)
        }
    }
}
