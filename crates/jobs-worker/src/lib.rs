//! # jobs-worker — run your handlers for async-jobs
//!
//! A [`Worker`] long-polls one queue per use case, claims each job in the store before running
//! it, runs the registered handler with the job's timeout (panics and hangs contained), keeps the
//! lease alive with heartbeats, and records the outcome — success, a retry with backoff, dead, or
//! cancelled. On shutdown it stops receiving, lets in-flight jobs finish within a grace period and
//! returns the rest to `pending` without penalty.
//!
//! This crate is the runtime alone: it depends on `jobs-core` and runs over any
//! [`JobStore`](jobs_core::JobStore) and [`Transport`](jobs_core::Transport). On ECS, run your
//! registry with `async_jobs::app::worker::run_from_env` (Postgres, SQS, `/healthz`, settings
//! from the environment — what `async-jobs worker` runs with the sample handlers); or compose the
//! runtime yourself, as below.
//!
//! ## Your own worker
//!
//! ```no_run
//! use std::sync::Arc;
//! use jobs_core::{clock::SystemClock, memory::{MemoryStore, MemoryTransport}};
//! use jobs_core::{HandlerError, HandlerRegistry, JobContext, JobService, PlatformConfig};
//! use jobs_worker::{Worker, WorkerConfig};
//!
//! #[derive(serde::Deserialize)]
//! struct Resize { image: String, width: u32 }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut handlers = HandlerRegistry::new();
//!     handlers.register_fn("resize", |ctx: JobContext, p: Resize| async move {
//!         if p.width == 0 { return Err(HandlerError::permanent("width is 0")); }
//!         tracing::info!(job_id = %ctx.job_id, image = %p.image, "resized");
//!         Ok(())
//!     });
//!     let config = Arc::new(PlatformConfig::from_env()?);
//!     // In production: jobs_postgres's store and jobs_sqs's transport.
//!     let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
//!     let transport = Arc::new(MemoryTransport::new(config.use_cases.keys().cloned()));
//!     let worker = Worker::new(JobService::new(store, config), transport, handlers, WorkerConfig::from_env()?);
//!     let report = worker.run(async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
//!     println!("{report:?}");
//!     Ok(())
//! }
//! ```
//!
//! The same program is `examples/custom_worker.rs`. Unit-test handlers without a worker with
//! `jobs_core::testkit` (`run_handler`, `TestPlatform::work_until_idle`).
//!
//! ## The life of a message
//!
//! ```text
//!  transport.receive (only while a slot is free; up to min(transport batch limit, free slots):
//!     │               10 on SQS, 250 in process)
//!     │
//!     ├─ body is not a dispatch message ───────────────► delete, warn, metric (malformed)
//!     ├─ names another use case ───────────────────────► delete, warn, metric (use_case_mismatch)
//!     ├─ store.claim_many(the batch's jobs and tokens, heartbeat lease), one round trip
//!     │     ├─ lease lost (duplicate, reaped, cancelled) ► delete, debug, metric (stale)
//!     │     ├─ store error ─────────────────────────────► keep the message (redelivered), back off
//!     │     └─ ok ──► delete the message: the store holds the lease from now on
//!     ▼
//!  run_guarded(handler, ctx)        heartbeat every lease/3 ─┬─ cancel requested → ctx.cancel fires
//!     │                                                     ├─ lease lost → ctx.cancel fires, the
//!     │                                                     │  handler is dropped, nothing recorded
//!     │                                                     └─ lease still unconfirmed at its
//!     ▼                                                        expiry − lease/6 → the same
//!  the slot is freed for the next job; the outcome is recorded under a recording permit,
//!  heartbeats going on until it is written (or the lease is lost or no longer confirmed):
//!  succeeded → batched with the successes waiting meanwhile (one complete_many at a time)
//!  pending (+backoff) │ dead │ cancelled → service.record_outcome, one job at a time
//! ```
//!
//! The message is a wake-up hint, never the authority: every write after the claim is fenced by
//! the lease token, so a duplicate or late message can never run a job twice or overwrite a newer
//! state.
//!
//! ## Concepts
//!
//! - **Slots.** [`WorkerConfig::concurrency`] slots are shared by every use case; a use case
//!   polls only while one is free, and a claimed job holds its slot while its handler runs. Then
//!   it swaps the slot for one of as many *recording* permits while its outcome is written, so
//!   the next job starts without waiting for the store, and a store that falls behind still
//!   stops the receiving once every recording permit waits on it.
//! - **Leases and heartbeats.** A claim takes [`WorkerConfig::heartbeat_lease`]; a heartbeat
//!   renews it every third of that (a second after a failed renewal) from the claim until the
//!   outcome is recorded: while the handler runs, for at most the job's timeout plus
//!   [`WorkerConfig::lease_margin`]; while the outcome is recorded (waiting for a permit, the
//!   completion batch, retries of a failing store), until it is written, the lease is lost, or
//!   the lease is no longer confirmed, for at most [`WorkerConfig::recording_limit`] (ten
//!   leases; each batched completion call is bounded by it too). So a store slower than the lease
//!   but answering within that limit cannot let the lease of a job whose handler succeeded lapse
//!   and have the job run again. Past the limit, and when the worker is stopped (its shutdown
//!   bound passed) with an outcome still unwritten, the lease lapses and the reaper retries the
//!   job: at least once, as when a worker dies. The worker knows until when each lease is
//!   *confirmed* (the local instant the claim or last successful renewal was sent, plus the
//!   lease); a handler still running a [safety margin](WorkerConfig::lease_safety_margin)
//!   (lease/6) before that instant is cancelled and dropped rather than left to run unfenced, and
//!   recording gives up once the instant has passed. A worker that dies loses its jobs to the
//!   scheduler's reaper within one lease (the attempt counts).
//! - **Failures.** Handler errors, panics and timeouts go through
//!   [`JobService::record_outcome`](jobs_core::JobService::record_outcome): retryable → back to
//!   `pending` after backoff until `max_attempts`, then `dead`; permanent → `dead` at once.
//! - **Cancellation.** A cancel request on a running job reaches the handler through
//!   `ctx.cancel`; when the handler stops, the job ends `cancelled`.
//! - **Shutdown.** See [`Worker::run`]. Keep [`WorkerConfig::shutdown_grace`] below the ECS
//!   `stopTimeout`.
//! - **Observability.** Every log line of a job carries its id, tenant, use case, kind and attempt
//!   (the [`JobContext`](jobs_core::JobContext) span). With a span parent set
//!   ([`Worker::with_span_parent`]; `async_jobs::app` sets `jobs_http::telemetry::set_parent`), that `job` span
//!   is a child of the trace context stored with the job ([`jobs_core::Job::trace_context`], from
//!   the enqueuer's `traceparent`), so with OTLP export on each attempt joins the enqueuer's
//!   trace; without it nothing changes. Metrics (via the `metrics` facade, a no-op
//!   until a recorder is installed): [`METRIC_MESSAGES_DROPPED`](report::METRIC_MESSAGES_DROPPED),
//!   [`METRIC_JOBS`](report::METRIC_JOBS), [`METRIC_LEASE_LOST`](report::METRIC_LEASE_LOST),
//!   [`METRIC_JOB_SECONDS`](report::METRIC_JOB_SECONDS).
//!
//! ## Modules
//!
//! - [`config`]: [`WorkerConfig`] and its environment variables.
//! - [`runtime`]: [`Worker`], its errors and live stats.
//! - [`report`]: [`WorkerReport`] and metric names.
//! - The sample handlers live in the `jobs-samples` crate, the process wiring in `async_jobs::app`.

mod complete;
pub mod config;
mod execute;
mod heartbeat;
mod receive;
pub mod report;
pub mod runtime;

pub use config::WorkerConfig;
pub use report::WorkerReport;
pub use runtime::{Worker, WorkerError, WorkerStats};
