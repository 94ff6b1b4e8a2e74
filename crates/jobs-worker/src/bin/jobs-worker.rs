//! The reference worker process for ECS: the sample handlers, configured from the environment,
//! running until SIGTERM/SIGINT and exiting 0 after draining.
//!
//! Environment: the platform's (`ASYNC_JOBS_DB_DSN`, `ASYNC_JOBS_SQS_QUEUE_<USE_CASE>`, …), the
//! worker's (`ASYNC_JOBS_WORKER_CONCURRENCY`, `ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS`, … — see
//! `jobs_worker::config`), `ASYNC_JOBS_HEALTH_ADDR` for `/healthz`, `/readyz` and `/metrics`,
//! `ASYNC_JOBS_LOG_FORMAT=json` for JSON logs and `RUST_LOG` for levels. A bad setting exits 1 with
//! one line naming the variable. For fault tests, `ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN`
//! (+ `ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA`) makes the sample handlers record every run (see
//! `jobs_worker::samples::SideEffectLog`); off by default.

use std::process::ExitCode;
use std::sync::Arc;

use jobs_worker::samples::{install_side_effect_log, SideEffectLog};

#[tokio::main]
async fn main() -> ExitCode {
    let tracing = match jobs_http::server::init_tracing("async-jobs-worker") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("jobs-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        if let Some(log) = SideEffectLog::from_env()? {
            tracing::info!("sample handlers record their runs (side-effect log on)");
            install_side_effect_log(Arc::new(log));
        }
        jobs_worker::app::run_from_env(
            jobs_worker::sample_registry(),
            jobs_http::server::shutdown_signal(),
        )
        .await
    };
    let code = match run.await {
        Ok(_report) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobs-worker: {e}");
            ExitCode::FAILURE
        }
    };
    // The last attempts' spans go out after the drain.
    tracing.shutdown();
    code
}
