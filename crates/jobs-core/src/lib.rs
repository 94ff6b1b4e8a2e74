//! # jobs-core — the domain of async-jobs
//!
//! Everything the platform *decides* lives here; everything it *does* over a network lives in the
//! adapter crates. This crate has no database, queue or HTTP dependency.
//!
//! ## The parts
//!
//! - [`status`]: the six job statuses and the one table of legal transitions.
//! - [`job`]: the job record, new jobs, dispatches and lease tokens.
//! - [`deadline`] and [`backoff`]: pure, overflow-free time arithmetic.
//! - [`enqueue`]: enqueue requests and their validation (one typed error per bad input).
//! - [`trace`]: the W3C trace context a job carries from its enqueuer to its handler.
//! - [`config`]: use cases, caps, tolerances, quotas and limits from the environment.
//! - Ports: [`store::JobStore`] (the union of its role traits: API, dispatch, lease,
//!   maintenance), [`transport::Transport`] and [`clock::Clock`], each documenting the contract an
//!   adapter must honour.
//! - [`service::JobService`]: the domain rules over any store.
//! - [`activity`]: recent activity minute by minute (jobs finished, deadlines met and missed),
//!   the rules every store's [`ApiStore::activity`] follows.
//! - Telemetry maths: [`backlog`] (the due pending jobs a store reports, and the age of the
//!   oldest), [`scaling`] (the drain rate and the backlog-seconds scaling signal) and
//!   [`tenant_label`] (the bounded `tenant` label of per-tenant metrics).
//! - [`predict`]: the predicted start of a pending job (an estimate from the jobs ahead of it in
//!   the pick order, the free places and the use case's drain rate) and whether it is at risk.
//! - [`schedule`]: cron schedules (periodic jobs): parsing in IANA zones, slots and the
//!   missed-slot policy, the job template; [`ScheduleStore`] is their port.
//! - [`handler`]: typed handlers, their registry, context and outcomes.
//! - [`job_type`]: [`JobType`], a payload type that declares its job type's name once, for typed
//!   enqueue requests and handlers.
//! - [`route`]: [`RoutedStore`], one store over a default store and per-use-case stores (each
//!   use case's invariants live in one store; calls by job id find the job's store).
//! - [`memory`]: in-memory store and transport with the real adapters' semantics, for unit tests
//!   and the embedded quick start.
//! - `testkit` (feature `testkit`): the conformance suites every store and transport must pass,
//!   and helpers for testing your handlers.
//!
//! ## How a job moves
//!
//! ```text
//!  enqueue ──► pending ──dispatch──► dispatched ──claim──► running ──succeed──► succeeded
//!                ▲  ▲                   │                   │  │
//!                │  └──expire_dispatch──┘                   │  └──fail_dead / expire_run_dead──► dead
//!                └──fail_retry / expire_run_retry / release─┘
//!  pending, dispatched ──cancel──► cancelled ◄──finish_cancelled── running
//!  pending, dispatched ──miss_deadline──► expired   (only jobs set to expire at their deadline)
//!  dead, cancelled, expired ──retry──► pending
//! ```
//!
//! ## Unit-testing a handler
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use jobs_core::{EnqueueRequest, HandlerRegistry, HandlerError, JobContext, JobService, JobStatus, PlatformConfig};
//! use jobs_core::clock::SystemClock;
//! use jobs_core::memory::MemoryStore;
//!
//! let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
//! let service = JobService::new(store.clone(), Arc::new(PlatformConfig::default()));
//! let mut handlers = HandlerRegistry::new();
//! handlers.register_fn("send_sms", |_ctx: JobContext, to: String| async move {
//!     if to.starts_with('+') { Ok(()) } else { Err(HandlerError::permanent("not E.164")) }
//! });
//!
//! let job = service
//!     .enqueue(EnqueueRequest::new("acme", "notifications", "send_sms", serde_json::json!("+4412345")))
//!     .await
//!     .unwrap()
//!     .job;
//! # let _ = job; let _ = JobStatus::Pending; let _ = handlers;
//! # }
//! ```

pub mod activity;
pub mod backlog;
pub mod backoff;
pub mod bulk;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod duration_secs;
pub mod enqueue;
pub mod fair;
pub mod handler;
pub mod intercept;
pub mod job;
pub mod job_type;
pub mod leader;
pub mod memory;
pub mod pause;
pub mod predict;
pub mod rate;
pub mod rfc3339;
pub mod route;
pub mod scaling;
pub mod schedule;
pub mod schedule_store;
pub mod service;
pub mod status;
pub mod store;
pub mod tenant_label;
pub mod trace;
pub mod transport;
pub mod whole;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use activity::{Activity, ActivityQuery, MinuteActivity};
pub use backlog::{Backlog, BacklogGrouping, BacklogRow};
pub use backoff::{Backoff, BackoffStrategy, Jitter};
pub use bulk::{BulkAction, BulkOutcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ConfigError, Env, Limits, PlatformConfig, QuotaConfig, UseCaseConfig, WeightConfig,
};
pub use enqueue::{EnqueueRequest, ValidationError};
pub use handler::{
    run_guarded, CancellationSignal, Handler, HandlerError, HandlerRegistry, HandlerResult,
    JobContext, JobHandler,
};
pub use job::{Dispatch, Enqueued, Job, JobId, LeaseToken, NewJob};
pub use job_type::JobType;
pub use pause::{Pause, PauseError, PauseScope};
pub use predict::{JobView, Prediction, QueuePosition, RecordedRate};
pub use rate::{RateLimit, RateLimitConfig};
pub use route::RoutedStore;
pub use schedule::{
    JobTemplate, MissedPolicy, NewSchedule, Schedule, ScheduleDefinition, ScheduleDraft,
    ScheduleError, ScheduleSource, ScheduleValidationError,
};
pub use schedule_store::{Fired, ScheduleStore};
pub use service::{JobService, TenantScope};
pub use status::{IllegalTransition, JobStatus, Transition};
pub use store::{
    ApiStore, ChangeError, DispatchStore, EnqueueError, Failure, JobFilter, JobStore, LeaseError,
    LeaseStore, MaintenanceStore, Page, PageRequest, PickRequest, SchedulerStore, StoreError,
};
pub use tenant_label::{TenantLabelPolicy, TenantLabeler, TenantLabels};
pub use trace::{TraceContext, TraceParentError};
pub use transport::{DispatchMessage, Transport, TransportError};
