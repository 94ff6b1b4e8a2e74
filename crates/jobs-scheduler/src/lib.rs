//! # jobs-scheduler — dispatch due jobs earliest-deadline-first under each use case's cap
//!
//! The scheduler is the only component that moves jobs from `pending` to `dispatched`. Each tick
//! it:
//!
//! 1. reaps expired leases (dispatched jobs no worker claimed, running jobs whose worker died);
//! 2. for each use case, leases up to `cap − in_flight` due jobs, earliest deadline first — the
//!    store does the pick atomically, so the cap holds even with two schedulers;
//! 3. sends one wake-up message per job to the use case's queue, in batches;
//! 4. now and then prunes terminal jobs past the retention.
//!
//! With [`Scheduler::with_cron`] the leader also fires cron schedules ([`Cron`]): it writes the
//! configured schedules when it wins leadership, fires each due slot before the tick's pick (one
//! job per slot, fenced in the store), and sleeps no longer than until the next slot.
//!
//! It ticks on an interval and whenever the store reports a wake-up (a due job was enqueued,
//! capacity freed), so an idle system starts a job within milliseconds. Only the leader ticks
//! ([`jobs_core::leader`]); standbys poll for leadership and take over when the leader's session
//! ends. Jobs whose message the transport refused go back to `pending` at once
//! ([`DispatchStore::return_dispatched`](jobs_core::DispatchStore::return_dispatched)) and the loop backs
//! off; if the store fails too, the reaper returns them when their dispatch lease expires, so
//! nothing is lost either way.
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

mod config;
mod cron;
mod dispatch;
mod run;

pub use config::SchedulerConfig;
pub use cron::{Cron, CronReport};
pub use dispatch::{Dispatcher, SchedulerError, TickReport};
pub use run::{Scheduler, Stopped};
