//! The bench database: a fresh, migrated schema per scenario run, commit counters and raw SQL.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobs_core::{EnqueueRequest, PlatformConfig, UseCaseConfig};
use jobs_postgres::{PgConnector, PgStore, PoolOptions};
use tokio_postgres::Client;

/// The use case every scenario enqueues into.
pub const USE_CASE: &str = "bench";
/// The no-op handler's kind.
pub const KIND: &str = "noop";

/// The bench database URL when none is given: loopback, without TLS. The platform's default
/// (`sslmode=prefer`) would encrypt on a server that offers TLS, and the figures in BENCHMARKS.md
/// and the peer's (node-postgres, no TLS by default) are taken over plain TCP; give
/// `ASYNC_JOBS_BENCH_DATABASE_URL` with `sslmode=require` to measure the cost of TLS.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/async_jobs_bench?sslmode=disable";

/// The bench database URL: `ASYNC_JOBS_BENCH_DATABASE_URL`, else [`DEFAULT_URL`].
pub fn database_url() -> String {
    std::env::var("ASYNC_JOBS_BENCH_DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A platform configuration with the one bench use case.
pub fn platform(cap: u32) -> PlatformConfig {
    PlatformConfig::with_use_cases([UseCaseConfig::new(USE_CASE, cap, Duration::from_secs(300))])
}

/// A no-op job request for `tenant`.
pub fn request(tenant: &str) -> EnqueueRequest {
    EnqueueRequest::new(tenant, USE_CASE, KIND, serde_json::json!({}))
}

/// A handler registry with the no-op handler.
pub fn noop_registry() -> jobs_core::HandlerRegistry {
    let mut registry = jobs_core::HandlerRegistry::new();
    registry.register_fn(KIND, |_ctx, _p: serde_json::Value| async { Ok(()) });
    registry
}

/// The bench database's connector: TLS as `sslmode` in the URL and `ASYNC_JOBS_DB_CA_FILE` say,
/// like the platform's processes.
pub fn connector(dsn: &str) -> anyhow::Result<PgConnector> {
    PgConnector::from_env_ca(dsn)
        .map_err(|e| e.for_dsn_setting("ASYNC_JOBS_BENCH_DATABASE_URL"))
        .context("invalid bench database URL")
}

/// A pooled-store-like [`PgStore`] on `dsn` and `schema` with the bench's TLS settings.
pub fn store_on(dsn: &str, schema: &str, options: PoolOptions) -> anyhow::Result<PgStore> {
    Ok(PgStore::connect_using(&connector(dsn)?, schema, options)?)
}

async fn connect(connector: &PgConnector) -> anyhow::Result<Client> {
    connector
        .connect_spawned()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

/// Postgres's counters at one moment (see [`BenchDb::snapshot`]).
#[derive(Debug, Clone)]
pub struct PgSnapshot {
    commits: i64,
    wal_lsn: String,
    inserted: i64,
    updated: i64,
    hot_updated: i64,
    deleted: i64,
    /// CPU seconds, when the server runs on this host.
    cpu: Option<f64>,
}

/// CPU seconds (user + system) spent so far by the PostgreSQL processes of this host: the live
/// ones, plus the children the postmaster has reaped (its `cutime`/`cstime`, which hold the
/// backends that exited). `None` when no PostgreSQL process is visible (a server elsewhere).
/// Every cluster on the host counts: measure on a quiet machine.
pub fn postgres_cpu() -> Option<f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ... : the fields after the command's closing parenthesis.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
        let field = |n: usize| {
            f.get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        seen = true;
        total += field(14) + field(15) + field(16) + field(17);
    }
    seen.then(|| total as f64 / ticks)
}

/// One scenario's schema in the bench database.
#[derive(Debug)]
pub struct BenchDb {
    /// The database URL.
    pub dsn: String,
    /// The schema (fresh, migrated).
    pub schema: String,
    /// A raw connection for set-up SQL and counters.
    pub admin: Client,
    connector: PgConnector,
}

impl BenchDb {
    /// Creates the database if missing and a fresh migrated schema named after `tag`.
    pub async fn fresh(dsn: &str, tag: &str) -> anyhow::Result<BenchDb> {
        let connector = connector(dsn)?;
        let dbname = connector
            .config()
            .get_dbname()
            .unwrap_or("postgres")
            .to_owned();
        let mut root = connector.clone();
        root.config_mut().dbname("postgres");
        let admin_root = connect(&root)
            .await
            .context("connecting to Postgres (is it running on the bench URL?)")?;
        let exists = admin_root
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
            .await?
            .is_some();
        if !exists {
            let quoted = dbname.replace('"', "\"\"");
            if let Err(e) = admin_root
                .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
                .await
            {
                // A concurrent run may have created it first.
                if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                    return Err(e).context("creating the bench database");
                }
            }
        }
        drop(admin_root);
        let schema = format!(
            "bench_{}_{}",
            tag,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let admin = connect(&connector).await?;
        let store = PgStore::connect_using(&connector, &schema, PoolOptions::default())?;
        store
            .migrate()
            .await
            .context("migrating the bench schema")?;
        Ok(BenchDb {
            dsn: dsn.to_owned(),
            schema,
            admin,
            connector,
        })
    }

    /// A new store (own pool) on the schema.
    pub fn store(&self, pool_size: usize) -> anyhow::Result<PgStore> {
        Ok(PgStore::connect_using(
            &self.connector,
            &self.schema,
            PoolOptions {
                max_size: pool_size,
                ..PoolOptions::default()
            },
        )?)
    }

    /// A store behind an `Arc`.
    pub fn shared_store(&self, pool_size: usize) -> anyhow::Result<Arc<PgStore>> {
        Ok(Arc::new(self.store(pool_size)?))
    }

    /// Committed transactions of the whole bench database so far (from `pg_stat_database`).
    ///
    /// Backends publish their counters at transaction end at most once a second, and always when
    /// they exit: read this after the measured connections have closed.
    pub async fn xact_commit(&self) -> anyhow::Result<i64> {
        self.admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = self
            .admin
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// What Postgres has spent so far: commits of the bench database, the WAL position, the
    /// jobs table's row counters and the CPU time of the host's PostgreSQL processes. Read it
    /// before and after a measured part; [`PgSnapshot::cost_per_job`] gives the difference.
    /// Backends publish their counters at transaction end at most once a second and when they
    /// exit: take the second snapshot after the measured connections closed.
    pub async fn snapshot(&self) -> anyhow::Result<PgSnapshot> {
        self.admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = self
            .admin
            .query_one(
                "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
                     pg_current_wal_lsn()::text, \
                     coalesce(t.n_tup_ins, 0), coalesce(t.n_tup_upd, 0), coalesce(t.n_tup_hot_upd, 0), \
                     coalesce(t.n_tup_del, 0) \
                 FROM (SELECT 1) one LEFT JOIN pg_stat_user_tables t ON t.schemaname = $1 AND t.relname = 'jobs'",
                &[&self.schema],
            )
            .await?;
        Ok(PgSnapshot {
            commits: row.get(0),
            wal_lsn: row.get(1),
            inserted: row.get(2),
            updated: row.get(3),
            hot_updated: row.get(4),
            deleted: row.get(5),
            cpu: postgres_cpu(),
        })
    }

    /// The cost of `jobs` jobs between `before` and now (see [`BenchDb::snapshot`]).
    pub async fn cost_per_job(
        &self,
        before: &PgSnapshot,
        jobs: u64,
    ) -> anyhow::Result<serde_json::Value> {
        let after = self.snapshot().await?;
        let wal: f64 = self
            .admin
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                &[&after.wal_lsn, &before.wal_lsn],
            )
            .await?
            .get(0);
        let n = jobs.max(1) as f64;
        let per = |x: i64| ((x as f64 / n) * 1000.0).round() / 1000.0;
        let updates = after.updated - before.updated;
        let hot = after.hot_updated - before.hot_updated;
        Ok(serde_json::json!({
            "commits_per_job": per(after.commits - before.commits),
            "wal_bytes_per_job": (wal / n).round(),
            "row_updates_per_job": per(updates),
            "hot_update_share": if updates > 0 { ((hot as f64 / updates as f64) * 1000.0).round() / 1000.0 } else { 0.0 },
            "row_inserts_per_job": per(after.inserted - before.inserted),
            "row_deletes_per_job": per(after.deleted - before.deleted),
            "postgres_cpu_us_per_job": match (before.cpu, after.cpu) {
                (Some(a), Some(b)) => serde_json::json!(((b - a) / n * 1e6).round()),
                _ => serde_json::Value::Null,
            },
        }))
    }

    /// Counts jobs in `status`.
    pub async fn count_status(&self, status: &str) -> anyhow::Result<i64> {
        let row = self
            .admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.jobs WHERE status = $1",
                    self.schema
                ),
                &[&status],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Waits until `n` jobs are in `status` (polling every `every`), up to `timeout`.
    pub async fn wait_status(
        &self,
        status: &str,
        n: i64,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.count_status(status).await?;
            if got >= n {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("timed out: {got} of {n} jobs are {status}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The Postgres server version and the settings that matter for the figures.
    pub async fn server_info(&self) -> anyhow::Result<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for name in [
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
            "work_mem",
        ] {
            let row = self.admin.query_one(&format!("SHOW {name}"), &[]).await?;
            out.insert(name.to_owned(), serde_json::Value::String(row.get(0)));
        }
        Ok(serde_json::Value::Object(out))
    }

    /// Drops the schema.
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await?;
        Ok(())
    }

    /// Opens another raw connection to the bench database.
    pub async fn raw_connection(&self) -> anyhow::Result<Client> {
        connect(&self.connector).await
    }
}
