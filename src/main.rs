//! `async-jobs`: the platform's one binary.
//!
//! ```text
//! async-jobs dev         API + scheduler + worker in one process (in-memory unless configured)
//! async-jobs api         the HTTP API
//! async-jobs scheduler   the EDF dispatcher (one leader, standbys wait)
//! async-jobs worker      the reference worker with the sample handlers
//! async-jobs migrate     apply the database migrations
//! async-jobs healthcheck exit 0 if a health URL answers 2xx (for slim container images)
//! ```
//!
//! Every setting comes from the environment (the README lists them); `--print-config` shows what
//! a command would run with, secrets redacted. A bad setting stops the process with one line
//! naming the variable.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let tracing = match jobs_http::server::init_tracing(&cli::service_name(&args)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("async-jobs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("async-jobs: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("async-jobs: {e}");
            ExitCode::FAILURE
        }
    };
    // Spans still queued go out before the process ends.
    tracing.shutdown();
    code
}
