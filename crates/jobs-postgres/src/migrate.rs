//! Versioned schema migrations, embedded in the crate.
//!
//! A tiny runner instead of refinery: the schema name is chosen at run time (tests use one schema
//! each) and refinery cannot template it into its SQL files. Each migration is an SQL file
//! compiled in with `include_str!`, its `__SCHEMA__` placeholders replaced by the validated
//! schema name, applied in its own transaction and recorded in `<schema>.schema_migrations`.
//! The whole run holds a session advisory lock, so several processes may migrate at once: one
//! applies, the others wait and then find nothing left to do.
//!
//! A migration may rewrite a large table and the wait for another process's run may be long, so
//! the run lifts the session's `statement_timeout` (a pool built with
//! [`PoolOptions::statement_timeout`](crate::PoolOptions::statement_timeout) sets one) and puts
//! the session's value back afterwards.

use async_trait::async_trait;
use tokio_postgres::Client;

use crate::schema::{InvalidSchemaName, SchemaName};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version (applied in ascending order, never reused).
    pub version: i32,
    /// Short name.
    pub name: &'static str,
    /// SQL with `__SCHEMA__` placeholders.
    pub sql: &'static str,
}

/// Every migration of this crate, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "jobs",
        sql: include_str!("../migrations/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        name: "coalesced_wakeups",
        sql: include_str!("../migrations/0002_coalesced_wakeups.sql"),
    },
    Migration {
        version: 3,
        name: "due_pick",
        sql: include_str!("../migrations/0003_due_pick.sql"),
    },
    Migration {
        version: 4,
        name: "trace_context",
        sql: include_str!("../migrations/0004_trace_context.sql"),
    },
    Migration {
        version: 5,
        name: "pauses",
        sql: include_str!("../migrations/0005_pauses.sql"),
    },
    Migration {
        version: 6,
        name: "rate_limits",
        sql: include_str!("../migrations/0006_rate_limits.sql"),
    },
    Migration {
        version: 7,
        name: "schedules",
        sql: include_str!("../migrations/0007_schedules.sql"),
    },
    Migration {
        version: 8,
        name: "expiry",
        sql: include_str!("../migrations/0008_expiry.sql"),
    },
    Migration {
        version: 9,
        name: "fair_share",
        sql: include_str!("../migrations/0009_fair_share.sql"),
    },
    Migration {
        version: 10,
        name: "hot_claim",
        sql: include_str!("../migrations/0010_hot_claim.sql"),
    },
];

/// Migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The schema name is not acceptable.
    #[error(transparent)]
    Schema(#[from] InvalidSchemaName),
    /// No connection could be had.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A statement failed.
    #[error("migration {version} ({name}) failed: {message}")]
    Failed {
        /// The migration (0 for the runner's own bookkeeping).
        version: i32,
        /// Its name.
        name: &'static str,
        /// The database's message.
        message: String,
    },
}

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run (empty when the schema was up to date).
    pub applied: Vec<i32>,
}

/// Something migrations can run on: a [`tokio_postgres::Client`] or a
/// [`deadpool_postgres::Pool`] (one connection is taken for the run).
#[async_trait]
pub trait MigrationTarget: Sync {
    /// Runs the migrations on one connection.
    #[doc(hidden)]
    async fn run_migrations(&self, schema: &SchemaName) -> Result<MigrationReport, MigrateError>;
}

#[async_trait]
impl MigrationTarget for Client {
    async fn run_migrations(&self, schema: &SchemaName) -> Result<MigrationReport, MigrateError> {
        run(self, schema).await
    }
}

#[async_trait]
impl MigrationTarget for deadpool_postgres::Pool {
    async fn run_migrations(&self, schema: &SchemaName) -> Result<MigrationReport, MigrateError> {
        let client = self.get().await.map_err(|e| {
            MigrateError::Connect(match e {
                deadpool_postgres::PoolError::Backend(e) => crate::tls::describe_error(&e),
                other => other.to_string(),
            })
        })?;
        run(&client, schema).await
    }
}

/// Brings `schema` (created if missing) up to the latest migration. Safe to call from several
/// processes at once.
pub async fn migrate<T: MigrationTarget + ?Sized>(
    target: &T,
    schema: &str,
) -> Result<MigrationReport, MigrateError> {
    let schema = SchemaName::new(schema)?;
    target.run_migrations(&schema).await
}

fn failed(version: i32, name: &'static str) -> impl Fn(tokio_postgres::Error) -> MigrateError {
    move |e| MigrateError::Failed {
        version,
        name,
        message: match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        },
    }
}

/// Brings `schema` up to migration `version` and no further: for tests that upgrade a database
/// populated at an older version.
#[doc(hidden)]
pub async fn migrate_to(
    client: &Client,
    schema: &str,
    version: i32,
) -> Result<MigrationReport, MigrateError> {
    let schema = SchemaName::new(schema)?;
    run_upto(client, &schema, version).await
}

const LOCK_KEY: &str = "hashtext('async_jobs.migrate'), hashtext($1)";

async fn run(client: &Client, schema: &SchemaName) -> Result<MigrationReport, MigrateError> {
    run_upto(client, schema, i32::MAX).await
}

async fn run_upto(
    client: &Client,
    schema: &SchemaName,
    upto: i32,
) -> Result<MigrationReport, MigrateError> {
    let bookkeeping = failed(0, "schema_migrations");
    // No statement timeout while migrating (see the module docs); the session's own comes back
    // at the end.
    let saved_timeout: String = client
        .query_one(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', '0', false)",
            &[],
        )
        .await
        .map_err(&bookkeeping)?
        .try_get(0)
        .map_err(&bookkeeping)?;
    let result = locked(client, schema, upto).await;
    if let Err(e) = client
        .execute(
            "SELECT set_config('statement_timeout', $1, false)",
            &[&saved_timeout],
        )
        .await
    {
        tracing::warn!(error = %e, "restoring the session's statement_timeout after migrating failed");
    }
    result
}

/// Applies the pending migrations under the migration lock.
async fn locked(
    client: &Client,
    schema: &SchemaName,
    upto: i32,
) -> Result<MigrationReport, MigrateError> {
    let bookkeeping = failed(0, "schema_migrations");
    client
        .execute(
            &format!("SELECT pg_advisory_lock({LOCK_KEY})"),
            &[&schema.as_str()],
        )
        .await
        .map_err(&bookkeeping)?;
    let result = apply_pending(client, schema, upto).await;
    // The lock is also released if the connection drops, so a failed unlock is harmless.
    if let Err(e) = client
        .execute(
            &format!("SELECT pg_advisory_unlock({LOCK_KEY})"),
            &[&schema.as_str()],
        )
        .await
    {
        tracing::warn!(error = %e, "releasing the migration lock failed");
    }
    result
}

async fn apply_pending(
    client: &Client,
    schema: &SchemaName,
    upto: i32,
) -> Result<MigrationReport, MigrateError> {
    let bookkeeping = failed(0, "schema_migrations");
    client
        .batch_execute(&schema.render(
            "CREATE SCHEMA IF NOT EXISTS __SCHEMA__;
             CREATE TABLE IF NOT EXISTS __SCHEMA__.schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        ))
        .await
        .map_err(&bookkeeping)?;
    let applied: Vec<i32> = client
        .query(
            &schema.render("SELECT version FROM __SCHEMA__.schema_migrations"),
            &[],
        )
        .await
        .map_err(&bookkeeping)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut report = MigrationReport::default();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version <= upto && !applied.contains(&m.version))
    {
        let sql = format!(
            "BEGIN;\n{}\nINSERT INTO {}.schema_migrations (version, name) VALUES ({}, '{}');\nCOMMIT;",
            schema.render(m.sql),
            schema,
            m.version,
            m.name
        );
        if let Err(e) = client.batch_execute(&sql).await {
            // Leave the connection usable; the transaction is already aborted.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(failed(m.version, m.name)(e));
        }
        tracing::info!(schema = %schema, version = m.version, name = m.name, "applied migration");
        report.applied.push(m.version);
    }
    Ok(report)
}
