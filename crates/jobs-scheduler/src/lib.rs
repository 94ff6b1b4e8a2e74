//! # jobs-scheduler — dispatch due jobs earliest-deadline-first under each use case's cap
//!
//! The scheduler is the only component that moves jobs from `pending` to `dispatched`. Each tick
//! of its loop:
//!
//! 1. for each use case, leases up to `cap − in_flight` due jobs, earliest deadline first — the
//!    store does the pick atomically, so the cap holds even with two schedulers;
//! 2. sends one wake-up message per job to the use case's queue, in batches;
//! 3. reaps expired leases (dispatched jobs no worker claimed, running jobs whose worker died),
//!    after the pick and at most every 100 ms while ticks come faster (back to back while a reap
//!    fills its batch);
//!
//! While it leads, a task of its own prunes terminal jobs past the retention: batch after batch
//! while batches come back full (at most a quarter of one connection's time), then one look per
//! prune interval.
//!
//! With [`Scheduler::with_cron`] the leader also fires cron schedules ([`Cron`]): it writes the
//! configured schedules when it wins leadership, fires each due slot before the tick's pick (one
//! job per slot, fenced in the store), and sleeps no longer than until the next slot.
//!
//! With [`Scheduler::with_backlog`] the leader also exports the backlog — due pending jobs and
//! the age of the oldest, per use case (and per tenant under a bounded label policy) — and the
//! scaling signal `async_jobs_backlog_seconds` ([`BacklogMonitor`]; the maths is
//! [`jobs_core::scaling`]).
//!
//! It ticks on an interval and whenever the store reports a wake-up (a due job was enqueued,
//! capacity freed), so an idle system starts a job within milliseconds. Only the leader ticks
//! ([`jobs_core::leader`]); standbys poll for leadership and take over when the leader's session
//! ends. Jobs whose message the transport refused go back to `pending` at once
//! ([`DispatchStore::return_dispatched`](jobs_core::DispatchStore::return_dispatched)) and that
//! use case backs off; if the store fails too, the reaper returns them when their dispatch lease
//! expires, so nothing is lost either way. A use case whose pick or send fails backs off on its
//! own ([`TickReport::failed`], [`TickReport::backing_off`]) while the others go on — with use
//! cases in stores of their own, one store's outage holds back only its use cases; the whole
//! loop backs off only when every use case fails. Pruning goes on whatever the ticks do.
//! A freed place (a job that finished) right after picks that leased jobs but filled no batch
//! (a use case at its cap) waits as long as those dispatches took (pick and send), never past the tick
//! the loop would start anyway, so that picks at the cap gather the places freed meanwhile; a
//! job that became due ends the wait.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn jobs_core::JobStore>, transport: std::sync::Arc<dyn jobs_core::Transport>) {
//! use std::sync::Arc;
//! use jobs_core::{leader::SoleLeader, PlatformConfig};
//! use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig};
//!
//! let dispatcher = Dispatcher::new(store, transport, Arc::new(PlatformConfig::default()), SchedulerConfig::default());
//! Scheduler::new(dispatcher, Arc::new(SoleLeader))
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! # }
//! ```
//!
//! The crate depends on `jobs-core` alone. The ECS process — Postgres store, SQS transport, the
//! Postgres leader lock, `/healthz`, settings from the environment — is composed by
//! `async_jobs::app` (`async-jobs scheduler`).

mod backlog;
mod config;
mod cron;
mod dispatch;
mod run;

pub use backlog::{
    BacklogConfig, BacklogMonitor, UseCaseBacklog, BACKLOG_JOBS, BACKLOG_SECONDS, DISPATCH_RATE,
    OLDEST_PENDING_AGE, TENANT_BACKLOG_JOBS, TENANT_OLDEST_PENDING_AGE,
};
pub use config::SchedulerConfig;
pub use cron::{Cron, CronReport};
pub use dispatch::{Dispatcher, SchedulerError, TickReport};
pub use run::{Scheduler, Stopped};
