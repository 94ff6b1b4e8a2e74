//! Your own handlers as a production worker: Postgres store, SQS transport, `/healthz`,
//! `/readyz` and `/metrics`, SIGTERM drain — the same environment as `async-jobs worker`, with
//! your registry instead of the samples. Copy this file into your service's crate as its worker
//! binary (`src/bin/worker.rs`), or build it into the image with
//! `docker build -f deploy/Dockerfile --build-arg WORKER_EXAMPLE=own_worker .`
//!
//! ```sh
//! eval "$(scripts/moto.sh start)"        # an SQS emulator with the two queues
//! export ASYNC_JOBS_DB_DSN=postgres://postgres@127.0.0.1:5432/async_jobs_test
//! cargo run --example own_worker         # plus `async-jobs scheduler` beside it
//! ```
//!
//! The handlers: `resize_image` ({"image": "...", "width": n}: width 0 is a permanent error, the
//! job goes `dead` at once) and `count_words` ({"text": "..."}: an empty text is a retryable
//! error). `tests/own_worker.rs` runs this binary against Postgres and moto.

use async_jobs::app;
use jobs_core::{HandlerError, HandlerRegistry, JobContext};

#[derive(serde::Deserialize)]
struct ResizeImage {
    image: String,
    width: u32,
}

#[derive(serde::Deserialize)]
struct CountWords {
    text: String,
}

/// The registry: one entry per job type, each with its payload type.
fn handlers() -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn(
        "resize_image",
        |ctx: JobContext, p: ResizeImage| async move {
            if p.width == 0 {
                return Err(HandlerError::permanent("width must be at least 1"));
            }
            tracing::info!(job_id = %ctx.job_id, image = %p.image, width = p.width, "resized");
            Ok(())
        },
    );
    handlers.register_fn("count_words", |ctx: JobContext, p: CountWords| async move {
        let words = p.text.split_whitespace().count();
        if words == 0 {
            return Err(HandlerError::retryable("nothing to count yet"));
        }
        tracing::info!(job_id = %ctx.job_id, words, "counted");
        Ok(())
    });
    handlers
}

fn main() -> std::process::ExitCode {
    // The same life as `async-jobs worker`: settings read once from the environment (a bad one
    // exits 2 naming the variable; `--print-config` prints them), logs and span export, SIGTERM
    // drain, exit 1 if the store or the queues fail.
    let launch = app::Launch::from_args(app::Process::Worker);
    app::main_with(launch, |settings| async move {
        let report = app::worker::run(settings, handlers(), app::shutdown_signal()).await?;
        tracing::info!(?report, "worker stopped");
        Ok(())
    })
}
