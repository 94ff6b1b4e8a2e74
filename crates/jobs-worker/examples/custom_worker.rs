//! Your own worker in a few lines: register handlers, pick the ports, run until Ctrl-C.
//!
//! `cargo run -p jobs-worker --example custom_worker` (in-memory ports: it idles until Ctrl-C; in
//! production use jobs_postgres's store and jobs_sqs's transport, or your own adapters). It needs
//! nothing but the runtime: it builds against `jobs-worker` without default features, which
//! `scripts/test.sh` checks.

use std::sync::Arc;

use jobs_core::{
    clock::SystemClock,
    memory::{MemoryStore, MemoryTransport},
};
use jobs_core::{HandlerError, HandlerRegistry, JobContext, JobService, PlatformConfig};
use jobs_worker::{Worker, WorkerConfig};

#[derive(serde::Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("resize", |ctx: JobContext, p: Resize| async move {
        if p.width == 0 {
            return Err(HandlerError::permanent("width is 0"));
        }
        tracing::info!(job_id = %ctx.job_id, image = %p.image, "resized");
        Ok(())
    });
    let config = Arc::new(PlatformConfig::from_env()?);
    // In production: jobs_postgres's store and jobs_sqs's transport.
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let transport = Arc::new(MemoryTransport::new(config.use_cases.keys().cloned()));
    let worker = Worker::new(
        JobService::new(store, config),
        transport,
        handlers,
        WorkerConfig::from_env()?,
    );
    let report = worker
        .run(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    println!("{report:?}");
    Ok(())
}
