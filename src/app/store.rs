//! Which store a process runs on, and opening it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_core::{ConfigError, Env, JobStore, RoutedStore};
use jobs_postgres::PgRoutes;

use super::settings::{PostgresSettings, SettingsError, StoreSettings};
use super::AppError;

/// The store a process runs on.
#[derive(Debug, Clone)]
pub struct StoreChoice {
    /// The store: with use cases of their own stores (`ASYNC_JOBS_<USE_CASE>_DB_DSN`), a
    /// [`RoutedStore`] over them ([`jobs_core::route`]).
    pub store: Arc<dyn JobStore>,
    /// `(connector, schema)` of the default store when it is Postgres: the connection settings
    /// and TLS the scheduler's leader lock uses (one leader, on the default store).
    pub postgres: Option<(jobs_postgres::PgConnector, String)>,
    /// The Postgres stores by use case, when they are more than one.
    pub routes: Option<Arc<RoutedStore>>,
}

impl StoreChoice {
    /// `postgres` or a warning that the store is not durable.
    pub fn describe(&self) -> &'static str {
        match (&self.postgres, &self.routes) {
            (Some(_), Some(_)) => "postgres (a store per use case where configured)",
            (Some(_), None) => "postgres",
            (None, _) => "in-memory (NOT durable: jobs are lost when the process exits)",
        }
    }
}

/// Which process a store is for: decides whether it may run on the in-memory store without being
/// asked to, and the statement timeout of a Postgres pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRole {
    /// `async-jobs dev`: the in-memory store when `ASYNC_JOBS_DB_DSN` is not set (the quick
    /// start); otherwise like [`StoreRole::Api`] (its scheduler and worker share the store).
    Dev,
    /// The HTTP API (`api`, and `dev`, whose scheduler and worker share the API's store): every
    /// statement is bounded by `ASYNC_JOBS_API_STATEMENT_TIMEOUT` (seconds, default 5, `0` = no
    /// limit), so one expensive request cannot hold a connection and a backend for long; a
    /// request cut by it answers 503 `store_timeout`.
    Api,
    /// The scheduler and the worker: no statement timeout. Their statements are the store's own
    /// bounded, indexed ones (no caller-chosen filters); when they are slow it is because the
    /// database is, and cutting them would turn slow progress into none: a cut pick or reap is
    /// repeated whole on the next tick, a cut outcome write leaves a finished job to the reaper
    /// to run again. The pool's wait and connect timeouts still bound a stalled database.
    Background,
}

impl StoreRole {
    /// The statement timeout of this role's store in `env`. `Err` names the variable and what
    /// it should hold.
    pub fn statement_timeout(self, env: &Env) -> Result<Option<Duration>, ConfigError> {
        match self {
            StoreRole::Api | StoreRole::Dev => statement_timeout(
                API_STATEMENT_TIMEOUT_VAR,
                env.get(API_STATEMENT_TIMEOUT_VAR),
                DEFAULT_API_STATEMENT_TIMEOUT,
            ),
            StoreRole::Background => Ok(None),
        }
    }
}

/// The API's statement timeout setting.
pub const API_STATEMENT_TIMEOUT_VAR: &str = "ASYNC_JOBS_API_STATEMENT_TIMEOUT";

/// The API's statement timeout when [`API_STATEMENT_TIMEOUT_VAR`] is not set.
pub const DEFAULT_API_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a statement timeout in seconds (fractions allowed; `0` = no limit; empty or unset =
/// `default`).
fn statement_timeout(
    var: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Option<Duration>, ConfigError> {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Some(default));
    };
    let secs = raw
        .parse::<f64>()
        .ok()
        .and_then(|s| jobs_core::duration_secs::from_secs(s).ok())
        .filter(|d| *d <= MAX_STATEMENT_TIMEOUT)
        .ok_or_else(|| ConfigError {
            variable: var.to_owned(),
            expected: "seconds ≥ 0 (fractions allowed, at most 2000000; 0 = no limit)".to_owned(),
            got: raw.chars().take(200).collect(),
        })?;
    Ok((!secs.is_zero()).then_some(secs))
}

/// PostgreSQL takes `statement_timeout` in milliseconds up to `i32::MAX` (about 24 days).
const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2_000_000);

/// The variable asking for a store explicitly: `postgres` or `memory`.
pub const STORE_VAR: &str = "ASYNC_JOBS_STORE";
/// The Postgres connection string variable.
pub const DSN_VAR: &str = "ASYNC_JOBS_DB_DSN";
/// The variable naming a PEM file of CA certificates for the database's TLS (see
/// [`jobs_postgres::tls`]).
pub const CA_FILE_VAR: &str = jobs_postgres::tls::CA_FILE_VAR;

/// Which store a process runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Postgres at `dsn`, in `schema`.
    Postgres {
        /// The connection string.
        dsn: String,
        /// The schema (`ASYNC_JOBS_DB_SCHEMA`, default `async_jobs`).
        schema: String,
        /// `ASYNC_JOBS_DB_CA_FILE`: the CA certificates that verify the server (PEM).
        ca_file: Option<PathBuf>,
    },
    /// The in-memory store: every job is lost when the process exits.
    Memory,
}

impl StoreKind {
    /// Resolves the store of a `role` process from `ASYNC_JOBS_STORE` (`postgres`, `memory`, or
    /// unset) and `ASYNC_JOBS_DB_DSN`. Only `dev` runs on memory without being asked to: every
    /// other process without a DSN refuses to start (on ECS a missing secret would otherwise mean
    /// jobs accepted and lost), unless `ASYNC_JOBS_STORE=memory`. `memory` together with a DSN
    /// is refused as a contradiction. `Err` is one line naming the variable. Empty values count
    /// as unset.
    pub fn from_vars<I, K, V>(vars: I, role: StoreRole) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut kind, mut dsn, mut schema, mut ca_file) = (None, None, None, None);
        for (name, value) in vars {
            let value = value.as_ref().trim().to_owned();
            if value.is_empty() {
                continue;
            }
            match name.as_ref() {
                STORE_VAR => kind = Some(value),
                DSN_VAR => dsn = Some(value),
                "ASYNC_JOBS_DB_SCHEMA" => schema = Some(value),
                CA_FILE_VAR => ca_file = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        let schema = schema.unwrap_or_else(|| jobs_postgres::DEFAULT_SCHEMA.to_owned());
        let postgres = |dsn: Option<String>| match dsn {
            Some(dsn) => Ok(StoreKind::Postgres {
                dsn,
                schema: schema.clone(),
                ca_file: ca_file.clone(),
            }),
            None => Err(ConfigError::new(
                DSN_VAR,
                "a Postgres connection string (or ASYNC_JOBS_STORE=memory for the in-memory \
                 store, which loses every job when the process exits)",
                "",
            )),
        };
        match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None if dsn.is_none() && role == StoreRole::Dev => Ok(StoreKind::Memory),
            None | Some("postgres") => postgres(dsn),
            Some("memory") if dsn.is_some() => Err(ConfigError::new(
                STORE_VAR,
                "memory or postgres, not memory together with ASYNC_JOBS_DB_DSN",
                "memory",
            )),
            Some("memory") => Ok(StoreKind::Memory),
            Some(other) => Err(ConfigError::new(STORE_VAR, "postgres or memory", other)),
        }
    }
}

/// Opens the store `settings` describe: Postgres (TLS as `sslmode` in the DSN and
/// `ASYNC_JOBS_DB_CA_FILE` say, see [`jobs_postgres::tls`]; migrated unless
/// `ASYNC_JOBS_AUTO_MIGRATE=false`; the role's statement timeout) or the in-memory store. With
/// use cases of their own stores, every distinct store is opened (and migrated) and the process
/// runs on a [`RoutedStore`] over them.
pub async fn open(settings: &StoreSettings) -> Result<StoreChoice, AppError> {
    let pg = match settings {
        StoreSettings::Memory => {
            return Ok(StoreChoice {
                store: Arc::new(MemoryStore::new(Arc::new(SystemClock))),
                postgres: None,
                routes: None,
            })
        }
        StoreSettings::Postgres(pg) => pg,
    };
    let options = jobs_postgres::PoolOptions {
        statement_timeout: pg.statement_timeout,
        ..jobs_postgres::PoolOptions::default()
    };
    let routes = connect_all(pg, options)?;
    if routes.stores().len() > 1 {
        // Before anything is written: two stores that are one database would wipe each other's
        // rate limits and configured schedules.
        check_distinct(&routes, pg, STORE_VERIFY_TIMEOUT).await?;
    }
    if pg.auto_migrate {
        migrate_all(&routes).await?;
    }
    let postgres = Some((pg.connector.clone(), pg.schema.clone()));
    if routes.stores().len() == 1 {
        return Ok(StoreChoice {
            store: routes.routed(),
            postgres,
            routes: None,
        });
    }
    let routed = Arc::new(routes.routed_store());
    for (i, target) in pg.targets().iter().enumerate() {
        tracing::info!(
            store = %routed.label(i),
            database = %target.connector.database(),
            schema = %pg.schema,
            "job store"
        );
    }
    Ok(StoreChoice {
        store: routed.clone(),
        postgres,
        routes: Some(routed),
    })
}

/// Every distinct store of `pg` ([`PostgresSettings::targets`]), connected (not yet: pools
/// connect on first use) with `options`, and the use cases routed to each.
pub fn connect_all(
    pg: &PostgresSettings,
    options: jobs_postgres::PoolOptions,
) -> Result<PgRoutes, AppError> {
    let mut routes: Option<PgRoutes> = None;
    for target in pg.targets() {
        let store = jobs_postgres::PgStore::connect_using(&target.connector, &pg.schema, options)
            .map_err(|e| format!("{}: {e}", target.variable))?;
        let mut next = match routes.take() {
            None => PgRoutes::new(store.clone()),
            Some(r) => r,
        };
        for use_case in &target.use_cases {
            next = next.with_route(use_case.clone(), store.clone());
        }
        routes = Some(next);
    }
    routes.ok_or_else(|| "no store is configured".into())
}

/// Applies the migrations to every store (each under its own advisory lock); what each applied.
pub async fn migrate_all(
    routes: &PgRoutes,
) -> Result<Vec<(String, jobs_postgres::MigrationReport)>, AppError> {
    let mut reports = Vec::new();
    for (i, store) in routes.stores().iter().enumerate() {
        let report = store
            .migrate()
            .await
            .map_err(|e| format!("applying migrations to {}: {e}", routes.label(i)))?;
        reports.push((routes.label(i), report));
    }
    Ok(reports)
}

/// How long a process with stores per use case waits at start for every store to answer the
/// check that no two of them are one database ([`check_distinct`]) before it refuses to start.
pub const STORE_VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Refuses two connection strings that reach one database under different names (another host
/// alias, a proxy): as two stores its jobs would be listed and counted twice, and each store's
/// writes of its own rate limits and configured schedules would delete the other's. Each
/// store's server start time and database name tell them apart. Every store must answer: one
/// that does not is asked again (backing off from 100 ms to 5 s, a warning naming its variable
/// each time) until `timeout`, then the process refuses to start naming the variables of the
/// stores that did not answer. Nothing is served until every store is checked.
pub async fn check_distinct(
    routes: &PgRoutes,
    pg: &PostgresSettings,
    timeout: Duration,
) -> Result<(), AppError> {
    let targets = pg.targets();
    let variable = |k: usize| targets.get(k).map_or("?", |t| t.variable.as_str());
    let started = tokio::time::Instant::now();
    let mut identities: Vec<Option<String>> = vec![None; routes.stores().len()];
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut failures = Vec::new();
        for (i, store) in routes.stores().iter().enumerate() {
            if identities[i].is_some() {
                continue;
            }
            match store_identity(store).await {
                Ok(identity) => identities[i] = Some(identity),
                Err(e) => failures.push((i, e)),
            }
        }
        if failures.is_empty() {
            break;
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            let names: Vec<String> = failures
                .iter()
                .map(|(i, e)| format!("{} ({e})", variable(*i)))
                .collect();
            return Err(Box::new(SettingsError::new(format!(
                "cannot check that the stores are distinct databases: no answer within {} s \
                 from {}; every store must answer at start (two connection strings reaching \
                 one database would delete each other's rate limits and schedules)",
                timeout.as_secs(),
                names.join(", ")
            ))));
        }
        for (i, e) in &failures {
            tracing::warn!(
                variable = variable(*i),
                store = %routes.label(*i),
                error = %e,
                retry_in = ?backoff,
                "store not reachable: waiting for it before starting (its identity must be checked)"
            );
        }
        tokio::time::sleep(backoff.min(timeout - elapsed)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let Some(identity) = identity.as_deref() else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(id, _)| *id == identity) {
            return Err(Box::new(SettingsError::new(format!(
                "invalid {}: it reaches the same database and schema as {} under another \
                 connection string (host alias, proxy): give use cases that share a database \
                 the same host, port and database name, so they share one store (as two \
                 stores its jobs would be listed and counted twice)",
                variable(i),
                variable(*first)
            ))));
        }
        seen.push((identity, i));
    }
    Ok(())
}

/// A store's server start time and database name.
async fn store_identity(store: &jobs_postgres::PgStore) -> Result<String, String> {
    let client = store.pool().get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT pg_postmaster_start_time()::text || '/' || current_database()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    row.try_get::<_, String>(0).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(vars: &[(&str, &str)], role: StoreRole) -> Result<StoreKind, ConfigError> {
        StoreKind::from_vars(
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            role,
        )
    }

    #[test]
    fn only_dev_runs_on_memory_without_being_asked() {
        let pg = StoreKind::Postgres {
            dsn: "postgres://db".into(),
            schema: jobs_postgres::DEFAULT_SCHEMA.into(),
            ca_file: None,
        };
        assert_eq!(kind(&[], StoreRole::Dev).unwrap(), StoreKind::Memory);
        for role in [StoreRole::Api, StoreRole::Background] {
            let err = kind(&[(DSN_VAR, "  ")], role).unwrap_err();
            assert_eq!(err.variable, DSN_VAR);
            assert!(err.to_string().contains("ASYNC_JOBS_STORE=memory"));
            assert_eq!(
                kind(&[(STORE_VAR, "Memory")], role).unwrap(),
                StoreKind::Memory
            );
        }
        for role in [StoreRole::Dev, StoreRole::Api, StoreRole::Background] {
            assert_eq!(kind(&[(DSN_VAR, "postgres://db")], role).unwrap(), pg);
            assert_eq!(
                kind(&[(DSN_VAR, "postgres://db"), (STORE_VAR, "postgres")], role).unwrap(),
                pg
            );
            let both = kind(&[(DSN_VAR, "postgres://db"), (STORE_VAR, "memory")], role);
            assert_eq!(both.unwrap_err().variable, STORE_VAR);
            assert_eq!(
                kind(&[(STORE_VAR, "sqlite")], role).unwrap_err().variable,
                STORE_VAR
            );
        }
        // The CA file travels with the DSN.
        assert_eq!(
            kind(
                &[
                    (DSN_VAR, "postgres://db"),
                    (CA_FILE_VAR, " /etc/ssl/rds.pem ")
                ],
                StoreRole::Api
            )
            .unwrap(),
            StoreKind::Postgres {
                dsn: "postgres://db".into(),
                schema: jobs_postgres::DEFAULT_SCHEMA.into(),
                ca_file: Some("/etc/ssl/rds.pem".into()),
            }
        );
        // `postgres` asked for explicitly needs the DSN, in dev too.
        assert_eq!(
            kind(&[(STORE_VAR, "postgres")], StoreRole::Dev)
                .unwrap_err()
                .variable,
            DSN_VAR
        );
    }

    const VAR: &str = API_STATEMENT_TIMEOUT_VAR;
    const FIVE: Duration = Duration::from_secs(5);

    #[test]
    fn statement_timeout_is_seconds_with_zero_for_none() {
        assert_eq!(statement_timeout(VAR, None, FIVE), Ok(Some(FIVE)));
        assert_eq!(statement_timeout(VAR, Some(" "), FIVE), Ok(Some(FIVE)));
        assert_eq!(statement_timeout(VAR, Some("0"), FIVE), Ok(None));
        assert_eq!(
            statement_timeout(VAR, Some("30"), FIVE),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            statement_timeout(VAR, Some("0.25"), FIVE),
            Ok(Some(Duration::from_millis(250)))
        );
        for bad in ["-1", "five", "NaN", "inf", "1e300", "2000001"] {
            let err = statement_timeout(VAR, Some(bad), FIVE).unwrap_err();
            assert_eq!(err.variable, VAR, "{bad}");
            assert_eq!(err.got, bad);
        }
    }

    #[test]
    fn background_processes_have_no_statement_timeout() {
        let env = Env::from_pairs([(API_STATEMENT_TIMEOUT_VAR, "3")]);
        assert_eq!(StoreRole::Background.statement_timeout(&env), Ok(None));
        assert_eq!(
            StoreRole::Api.statement_timeout(&env),
            Ok(Some(Duration::from_secs(3)))
        );
    }
}
