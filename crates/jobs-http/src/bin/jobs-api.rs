//! `jobs-api`: the standalone async-jobs HTTP API.
//!
//! Configuration comes from the environment (see `docs/http-api.md` and the README):
//! `ASYNC_JOBS_API_ADDR` (default `127.0.0.1:8080`), the platform settings, the credentials
//! (required: `ASYNC_JOBS_ENQUEUE_AUTH_TOKEN` and/or `ASYNC_JOBS_API_KEYS`, unless
//! `ASYNC_JOBS_AUTH=none`), and `ASYNC_JOBS_DB_DSN` for the Postgres store (required, unless
//! `ASYNC_JOBS_STORE=memory` asks for the in-memory store, not durable). A bad setting, no
//! credential or no store exits with status 2 and one line naming the variables. SIGTERM or SIGINT stops accepting
//! connections and lets in-flight requests finish.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// The async-jobs HTTP API server.
#[derive(Debug, Parser)]
#[command(name = "jobs-api", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ASYNC_JOBS_API_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let tracing = match jobs_http::server::init_tracing("async-jobs-api") {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("jobs-api: {err}");
            return ExitCode::from(2);
        }
    };
    let code =
        match jobs_http::app::run_from_env(args.addr, jobs_http::server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("jobs-api: {err}");
                ExitCode::from(2)
            }
        };
    tracing.shutdown();
    code
}
