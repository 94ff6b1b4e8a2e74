//! The scheduler process for ECS: one leader dispatches, standbys wait.
//!
//! Configuration is environment only (see [`jobs_scheduler::app::run_from_env`] and the README's
//! table). Exits 0 after SIGTERM/SIGINT, releasing the leader lock; exits 1 with one line naming
//! the bad setting or the unreachable service.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let tracing = match jobs_http::server::init_tracing("async-jobs-scheduler") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("jobs-scheduler: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match jobs_scheduler::app::run_from_env(jobs_http::server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobs-scheduler: {e}");
            ExitCode::FAILURE
        }
    };
    tracing.shutdown();
    code
}
