//! `async-jobs`: the platform's one binary.
//!
//! ```text
//! async-jobs dev         API + scheduler + worker in one process (in-memory unless configured)
//! async-jobs api         the HTTP API
//! async-jobs scheduler   the EDF dispatcher (one leader, standbys wait)
//! async-jobs worker      the reference worker with the sample handlers
//! async-jobs migrate     apply the database migrations
//! async-jobs healthcheck exit 0 if a health URL answers 2xx (for slim container images)
//! async-jobs jobs …      operator commands over the HTTP API: list, get, retry, cancel, enqueue
//! ```
//!
//! Every setting comes from the environment (the README lists them), read once into
//! `async_jobs::app::Settings`; `--print-config` prints that value, secrets redacted. Exit
//! status of a process: 0 after a clean stop, 2 for a bad setting (one line naming the variable),
//! 1 for a failure while starting or running (the `jobs` commands add 3, 4 and 5 for not found,
//! refused credentials and a refused request).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::main(cli::Cli::parse())
}
