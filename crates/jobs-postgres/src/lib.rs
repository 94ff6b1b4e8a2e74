//! # jobs-postgres — the async-jobs job store on PostgreSQL
//!
//! [`PgStore`] implements [`jobs_core::JobStore`] with tokio-postgres and a deadpool pool. Every
//! state change is one conditional statement (fenced by status and lease token where a lease is
//! involved); quotas and concurrency caps are made atomic with transaction-scoped advisory locks.
//!
//! ## Quick start
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobs_core::ApiStore; // the store's methods come in role traits; `ping` is the API's
//! use jobs_postgres::PgStore;
//!
//! let store = PgStore::connect("postgres://postgres@127.0.0.1/app", "async_jobs")?;
//! store.migrate().await?; // or run `async-jobs migrate` at deploy time
//! store.ping().await?;
//! # Ok(()) }
//! ```
//!
//! ## Enqueue inside your own transaction
//!
//! ```no_run
//! # async fn demo(store: jobs_postgres::PgStore, job: jobs_core::NewJob) -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = store.pool().get().await?;
//! let tx = client.transaction().await?;
//! // ... your own writes on `tx` ...
//! store.enqueue_in(&tx, job).await?; // exists only if the transaction commits
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! ## The parts
//!
//! - [`migrate()`] and [`MIGRATIONS`]: versioned SQL embedded in the crate, applied under an
//!   advisory lock into a configurable schema (also `async-jobs migrate`).
//! - [`PgStore`]: the store; `with_clock` for tests that move time.
//! - Wake-ups: NOTIFY on `<schema>_wakeup` when a job becomes due or leaves dispatched/running —
//!   sent by triggers in other sessions, and coalesced by the store itself on its own pooled
//!   connections (at most one NOTIFY transaction in flight, see migration 2); [`DispatchStore::subscribe`](jobs_core::DispatchStore::subscribe) listens on a
//!   dedicated connection that reconnects by itself.
//! - Cron schedules: the `schedules` table (migration 7) and
//!   [`ScheduleStore::fire`](jobs_core::ScheduleStore::fire) — the advance of `next_run_at`
//!   (fenced on the value the leader read) and the slot's jobs in one transaction.
//! - [`PgRoutes`]: stores by use case (`ASYNC_JOBS_<USE_CASE>_DB_DSN`) as one routed
//!   [`JobStore`](jobs_core::JobStore), and enqueue in a caller's transaction only for the use
//!   cases kept in that transaction's store.
//! - [`tls`]: every connection (pool, LISTEN, leader lock, migrations) goes through a
//!   [`PgConnector`]: libpq's `sslmode` (`disable` … `verify-full`) and `sslrootcert` from the
//!   connection string, an optional CA file, rustls underneath.
//! - Errors: connection loss and pool timeouts are [`StoreError::Unavailable`](jobs_core::StoreError),
//!   serialization failures and deadlocks `Conflict`, a statement cut by the pool's
//!   [`PoolOptions::statement_timeout`] `Timeout`, everything else `Internal`.
//!
//! See `docs/postgres.md` for the schema, the locking and the query plans.

mod enqueue;
mod error;
mod leader;
pub mod migrate;
mod notify;
pub mod route;
mod row;
mod schedule;
pub mod schema;
#[doc(hidden)]
pub mod sql;
mod store;
pub mod tls;
mod wake;

pub use leader::PgLeaderElection;
pub use migrate::{migrate, MigrateError, Migration, MigrationReport, MigrationTarget, MIGRATIONS};
pub use route::PgRoutes;
pub use schema::{InvalidSchemaName, SchemaName, DEFAULT_SCHEMA};
pub use store::{PgStore, PoolOptions};
pub use tls::{DbConfigError, PgConnector, SslMode};
