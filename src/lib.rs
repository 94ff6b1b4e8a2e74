//! # async-jobs
//!
//! Durable background jobs for Rust services on AWS ECS: PostgreSQL is the job store and source of
//! truth, SQS the transport, a scheduler dispatches due jobs earliest-deadline-first under
//! per-use-case caps, workers run typed handlers with retries, tenants are held to quotas.
//!
//! This umbrella crate re-exports the workspace's crates behind features (all on by default), so
//! an application can depend on one crate:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `jobs-core`: domain, ports, in-memory adapters | always |
//! | `postgres` | `jobs-postgres`: the durable store | `postgres` |
//! | `sqs` | `jobs-sqs`: the SQS transport | `sqs` |
//! | `http` | `jobs-http`: axum router and API server | `http` |
//! | `client` | `jobs-client`: typed HTTP client | `client` |
//! | `scheduler` | `jobs-scheduler`: the dispatch loop | `scheduler` |
//! | `worker` | `jobs-worker`: the worker runtime | `worker` |
//! | [`app`] | the composition root: processes wired from one typed configuration | `app` |
//!
//! See the repository's README and ARCHITECTURE.md for the whole picture.

pub use jobs_core as core;

#[cfg(feature = "app")]
pub mod app;

#[cfg(feature = "client")]
pub use jobs_client as client;
#[cfg(feature = "http")]
pub use jobs_http as http;
#[cfg(feature = "postgres")]
pub use jobs_postgres as postgres;
#[cfg(feature = "scheduler")]
pub use jobs_scheduler as scheduler;
#[cfg(feature = "sqs")]
pub use jobs_sqs as sqs;
#[cfg(feature = "worker")]
pub use jobs_worker as worker;
