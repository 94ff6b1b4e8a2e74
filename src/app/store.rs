//! Which store a process runs on, and opening it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::clock::SystemClock;
use jobs_core::memory::MemoryStore;
use jobs_core::{ConfigError, Env, JobStore};

use super::settings::StoreSettings;
use super::AppError;

/// The store a process runs on.
#[derive(Debug, Clone)]
pub struct StoreChoice {
    /// The store.
    pub store: Arc<dyn JobStore>,
    /// `(connector, schema)` when it is Postgres: the connection settings and TLS every other
    /// connection of the process (leader lock, …) uses too.
    pub postgres: Option<(jobs_postgres::PgConnector, String)>,
}

impl StoreChoice {
    /// `postgres` or a warning that the store is not durable.
    pub fn describe(&self) -> &'static str {
        match self.postgres {
            Some(_) => "postgres",
            None => "in-memory (NOT durable: jobs are lost when the process exits)",
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
/// `ASYNC_JOBS_AUTO_MIGRATE=false`; the role's statement timeout) or the in-memory store.
pub async fn open(settings: &StoreSettings) -> Result<StoreChoice, AppError> {
    let pg = match settings {
        StoreSettings::Memory => {
            return Ok(StoreChoice {
                store: Arc::new(MemoryStore::new(Arc::new(SystemClock))),
                postgres: None,
            })
        }
        StoreSettings::Postgres(pg) => pg,
    };
    let store = jobs_postgres::PgStore::connect_using(
        &pg.connector,
        &pg.schema,
        jobs_postgres::PoolOptions {
            statement_timeout: pg.statement_timeout,
            ..jobs_postgres::PoolOptions::default()
        },
    )?;
    if pg.auto_migrate {
        store
            .migrate()
            .await
            .map_err(|e| format!("applying migrations: {e}"))?;
    }
    Ok(StoreChoice {
        store: Arc::new(store),
        postgres: Some((pg.connector.clone(), pg.schema.clone())),
    })
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
