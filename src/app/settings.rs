//! The configuration of a process, read once from the environment into one typed value.
//!
//! [`Settings::from_env`] takes one snapshot of the environment ([`Env`]: values trimmed, empty
//! means unset — the one rule for every setting), resolves everything the process needs from it
//! and fails on the first bad setting with one line naming the variable ([`SettingsError`]). The
//! same value then runs the process ([`super::run`]) and is what `--print-config` prints
//! ([`Settings::report`], secrets redacted). Nothing of ours reads the environment after that.
//! Two libraries read their own standard variables as well: the AWS SDK (`AWS_REGION`,
//! `AWS_ENDPOINT_URL_SQS`, the credentials chain) and the OpenTelemetry SDK
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`,
//! `OTEL_RESOURCE_ATTRIBUTES`); the report shows the ones that decide where data goes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::schedule::{self, NewSchedule, ScheduleSource};
use jobs_core::{ConfigError, Env, PlatformConfig};
use jobs_http::auth::{AuthError, ResolvedAuth, Serving};
use jobs_http::ServerLimits;
use jobs_postgres::PgConnector;
use jobs_samples::{SideEffectLog, ENV_SIDE_EFFECTS_DSN, ENV_SIDE_EFFECTS_SCHEMA};
use jobs_scheduler::{BacklogConfig, SchedulerConfig};
use jobs_sqs::SqsOptions;
use jobs_worker::WorkerConfig;

use super::store::{StoreKind, StoreRole, DSN_VAR};

/// The API's listen address (default `127.0.0.1:8080`; `--addr` wins).
pub const API_ADDR_VAR: &str = "ASYNC_JOBS_API_ADDR";
/// The operations endpoints' address of the scheduler and the worker (default `0.0.0.0:9090`,
/// `off` disables them).
pub const HEALTH_ADDR_VAR: &str = "ASYNC_JOBS_HEALTH_ADDR";
/// `text` (default) or `json` log lines.
pub const LOG_FORMAT_VAR: &str = "ASYNC_JOBS_LOG_FORMAT";
/// The log filter (`tracing` directives, default `info`).
pub const LOG_FILTER_VAR: &str = "RUST_LOG";
/// `true` (default) or `false`: whether processes apply the migrations at start.
pub const AUTO_MIGRATE_VAR: &str = "ASYNC_JOBS_AUTO_MIGRATE";
/// The OTLP collector's base URL (spans go to `<it>/v1/traces`).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The OTLP traces URL; wins over [`OTLP_ENDPOINT_VAR`].
pub const OTLP_TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The `service.name` of the spans.
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";

/// The configured cron schedules, a JSON array (see [`schedules`]).
pub const SCHEDULES_VAR: &str = "ASYNC_JOBS_SCHEDULES";
/// A file holding a JSON array of cron schedules (see [`schedules`]).
pub const SCHEDULES_FILE_VAR: &str = "ASYNC_JOBS_SCHEDULES_FILE";
/// Per-tenant metric series: `off` (default), `all`, or a comma-separated list of tenant ids
/// ([`jobs_core::tenant_label`]).
pub const TENANT_LABELS_VAR: &str = "ASYNC_JOBS_METRICS_TENANT_LABELS";
/// The most distinct tenant labels per process (default 100); the rest are `tenant="other"`.
pub const TENANT_LABELS_MAX_VAR: &str = "ASYNC_JOBS_METRICS_TENANT_LABELS_MAX";
/// The scaling signal's drain-rate floor in jobs per second (default 1): one worker task's
/// throughput ([`jobs_core::scaling`]).
pub const SCALING_MIN_RATE_VAR: &str = "ASYNC_JOBS_SCALING_MIN_RATE";
/// The highest [`TENANT_LABELS_MAX_VAR`] accepted: beyond it the cap stops protecting the
/// metrics backend.
const MAX_TENANT_LABELS: usize = 10_000;
const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_HEALTH_ADDR: &str = "0.0.0.0:9090";

/// A setting is missing, malformed or contradicts another: the process does not start. Displays
/// as one line naming the variable; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl SettingsError {
    pub(crate) fn new(message: impl std::fmt::Display) -> Self {
        SettingsError(message.to_string().replace('\n', " "))
    }
}

impl From<ConfigError> for SettingsError {
    fn from(e: ConfigError) -> Self {
        SettingsError::new(e)
    }
}

impl From<AuthError> for SettingsError {
    fn from(e: AuthError) -> Self {
        SettingsError::new(e)
    }
}

/// The processes of the platform (the `async-jobs` subcommands that run one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// API, scheduler and worker (sample handlers) in one process; in-memory unless configured.
    Dev,
    /// The HTTP API.
    Api,
    /// The scheduler (one leader dispatches, standbys wait).
    Scheduler,
    /// A worker (the sample handlers, or your registry through [`super::worker`]).
    Worker,
    /// Applies the migrations and exits.
    Migrate,
}

impl Process {
    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Process::Dev => "dev",
            Process::Api => "api",
            Process::Scheduler => "scheduler",
            Process::Worker => "worker",
            Process::Migrate => "migrate",
        }
    }

    fn store_role(self) -> StoreRole {
        match self {
            Process::Dev => StoreRole::Dev,
            Process::Api => StoreRole::Api,
            Process::Scheduler | Process::Worker | Process::Migrate => StoreRole::Background,
        }
    }

    fn serves_api(self) -> bool {
        matches!(self, Process::Dev | Process::Api)
    }

    fn runs_scheduler(self) -> bool {
        matches!(self, Process::Dev | Process::Scheduler)
    }

    fn runs_worker(self) -> bool {
        matches!(self, Process::Dev | Process::Worker)
    }
}

/// What the command line sets beside the environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--addr`: the API's listen address (wins over [`API_ADDR_VAR`]).
    pub api_addr: Option<SocketAddr>,
}

/// Everything a process runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which process.
    pub process: Process,
    /// Use cases, caps, tolerances, quotas and input limits.
    pub platform: Arc<PlatformConfig>,
    /// The store.
    pub store: StoreSettings,
    /// The transport (none for `api` and `migrate`).
    pub transport: TransportSettings,
    /// The API (for `dev` and `api`).
    pub api: Option<ApiSettings>,
    /// The scheduler loop (for `dev` and `scheduler`).
    pub scheduler: Option<SchedulerConfig>,
    /// The leader's backlog gauges and scaling signal (for `dev` and `scheduler`).
    pub backlog: Option<BacklogConfig>,
    /// The cron schedules the configuration declares (for `dev` and `scheduler`; empty when
    /// neither [`SCHEDULES_VAR`] nor [`SCHEDULES_FILE_VAR`] is set), checked at start.
    pub schedules: Option<Vec<NewSchedule>>,
    /// The worker runtime (for `dev` and `worker`).
    pub worker: Option<WorkerConfig>,
    /// `/healthz`, `/readyz` and `/metrics` of `scheduler` and `worker` (`None`: off).
    pub health_addr: Option<SocketAddr>,
    /// Logs and span export.
    pub telemetry: TelemetrySettings,
    /// The sample handlers' side-effect log (fault tests; `dev` and `worker`, off by default).
    pub side_effects: Option<SideEffectSettings>,
}

/// The store a process runs on.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The in-memory store: every job is lost when the process exits.
    Memory,
    /// PostgreSQL.
    Postgres(Box<PostgresSettings>),
}

/// A Postgres store's settings.
#[derive(Clone)]
pub struct PostgresSettings {
    /// `ASYNC_JOBS_DB_DSN` (holds the password: never print it, see [`Self::redacted_dsn`]).
    pub dsn: String,
    /// `ASYNC_JOBS_DB_SCHEMA` (default `async_jobs`).
    pub schema: String,
    /// `ASYNC_JOBS_DB_CA_FILE`.
    pub ca_file: Option<PathBuf>,
    /// The connection settings and TLS every connection of the process uses.
    pub connector: PgConnector,
    /// The statement timeout of the pool (`ASYNC_JOBS_API_STATEMENT_TIMEOUT` for the API).
    pub statement_timeout: Option<Duration>,
    /// Whether the process applies the migrations at start (`ASYNC_JOBS_AUTO_MIGRATE`).
    pub auto_migrate: bool,
    /// Use cases with a store of their own (`ASYNC_JOBS_<USE_CASE>_DB_DSN`), by use case; the
    /// others are kept in the default store ([`dsn`](Self::dsn)). See [`Self::targets`].
    pub use_case_stores: BTreeMap<String, UseCaseStore>,
}

impl PostgresSettings {
    /// The DSN with every password replaced by `***`.
    pub fn redacted_dsn(&self) -> String {
        jobs_postgres::tls::redact_dsn(&self.dsn)
    }

    /// The distinct databases the process keeps jobs in, the default one first, each with the
    /// use cases routed to it by a DSN of their own (all in [`Self::schema`]). Two connection
    /// strings are one database when they name the same hosts, ports and database
    /// ([`PgConnector::database`]): its use cases share one pool and one store, so the settings
    /// refuse two such strings that differ in anything else (user, password, `sslmode`,
    /// `hostaddr`, options: [`PgConnector::same_connection`]).
    pub fn targets(&self) -> Vec<StoreTarget> {
        let mut targets = vec![StoreTarget {
            variable: DSN_VAR.to_owned(),
            redacted_dsn: self.redacted_dsn(),
            connector: self.connector.clone(),
            use_cases: Vec::new(),
        }];
        let mut keys = vec![self.connector.database()];
        for (use_case, own) in &self.use_case_stores {
            let key = own.connector.database();
            let i = match keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    keys.push(key);
                    targets.push(StoreTarget {
                        variable: own.variable.clone(),
                        redacted_dsn: own.redacted_dsn(),
                        connector: own.connector.clone(),
                        use_cases: Vec::new(),
                    });
                    targets.len() - 1
                }
            };
            targets[i].use_cases.push(use_case.clone());
        }
        targets
    }
}

/// A use case's own store: `ASYNC_JOBS_<USE_CASE>_DB_DSN`.
#[derive(Clone)]
pub struct UseCaseStore {
    /// The variable it was read from.
    pub variable: String,
    /// The connection string (holds the password: never print it, see [`Self::redacted_dsn`]).
    pub dsn: String,
    /// Its connection settings and TLS (`sslmode` of its DSN, `ASYNC_JOBS_DB_CA_FILE`).
    pub connector: PgConnector,
}

impl UseCaseStore {
    /// The DSN with every password replaced by `***`.
    pub fn redacted_dsn(&self) -> String {
        jobs_postgres::tls::redact_dsn(&self.dsn)
    }
}

impl std::fmt::Debug for UseCaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UseCaseStore")
            .field("variable", &self.variable)
            .field("dsn", &self.redacted_dsn())
            .finish_non_exhaustive()
    }
}

/// One distinct database a process keeps jobs in ([`PostgresSettings::targets`]).
#[derive(Debug, Clone)]
pub struct StoreTarget {
    /// The variable of its (first) connection string: `ASYNC_JOBS_DB_DSN` for the default store.
    pub variable: String,
    /// Its connection string, passwords `***` (for logs).
    pub redacted_dsn: String,
    /// How to connect.
    pub connector: PgConnector,
    /// The use cases routed to it by a DSN of their own.
    pub use_cases: Vec<String>,
}

/// The suffix of a use case's own connection string, `ASYNC_JOBS_<USE_CASE>_DB_DSN`.
pub const USE_CASE_DSN_SUFFIX: &str = "_DB_DSN";

/// The variables naming a use case's queue (and, with it, the use case): never a DSN, even when
/// the use case's name ends in `_db_dsn`.
const QUEUE_VAR_PREFIX: &str = "ASYNC_JOBS_SQS_QUEUE_";

/// The `ASYNC_JOBS_<USE_CASE>_DB_DSN` variables set: use case → (variable, DSN). The names are
/// built from the configured use cases (as `ASYNC_JOBS_<USE_CASE>_MAX_CONCURRENT` is), upper
/// case. Any other `ASYNC_JOBS_…_DB_DSN` that is not another known variable (the default
/// store's DSN, a queue URL) is refused: a use case that is not configured (its jobs would
/// silently go to the default store), or a configured one's variable spelled in another case
/// (a duplicate, or a typo).
fn use_case_dsns(
    env: &Env,
    platform: &PlatformConfig,
) -> Result<BTreeMap<String, (String, String)>, SettingsError> {
    let expected: BTreeMap<String, &str> = platform
        .use_cases
        .keys()
        .map(|uc| {
            (
                format!("ASYNC_JOBS_{}{USE_CASE_DSN_SUFFIX}", uc.to_uppercase()),
                uc.as_str(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for (name, value) in env.pairs() {
        if let Some(use_case) = expected.get(name) {
            out.insert((*use_case).to_owned(), (name.to_owned(), value.to_owned()));
            continue;
        }
        if name == DSN_VAR
            || !name.starts_with("ASYNC_JOBS_")
            || !name.ends_with(USE_CASE_DSN_SUFFIX)
            || name.starts_with(QUEUE_VAR_PREFIX)
        {
            continue;
        }
        let redacted = jobs_postgres::tls::redact_dsn(value);
        if let Some((variable, _)) = expected.iter().find(|(e, _)| e.eq_ignore_ascii_case(name)) {
            return Err(ConfigError::new(
                name,
                format!("no such variable: variable names are case-sensitive, write {variable}"),
                &redacted,
            )
            .into());
        }
        let use_case = name
            .strip_prefix("ASYNC_JOBS_")
            .and_then(|rest| rest.strip_suffix(USE_CASE_DSN_SUFFIX))
            .unwrap_or_default()
            .to_ascii_lowercase();
        let known: Vec<&str> = platform.use_cases.keys().map(String::as_str).collect();
        return Err(ConfigError::new(
            name,
            format!(
                "the connection string of a configured use case ('{use_case}' is not one; \
                 configured: {})",
                known.join(", ")
            ),
            &redacted,
        )
        .into());
    }
    Ok(out)
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("dsn", &self.redacted_dsn())
            .field("schema", &self.schema)
            .field("ca_file", &self.ca_file)
            .field("statement_timeout", &self.statement_timeout)
            .field("auto_migrate", &self.auto_migrate)
            .field("use_case_stores", &self.use_case_stores)
            .finish_non_exhaustive()
    }
}

/// How jobs travel from the scheduler to the workers.
#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// The process sends nothing (`api`, `migrate`).
    None,
    /// In-process queues (`dev` with no queue URL).
    InProcess,
    /// SQS: one queue per use case.
    Sqs {
        /// Use case → queue URL.
        queue_urls: BTreeMap<String, String>,
        /// Timeouts and attempts of the SQS calls (`ASYNC_JOBS_SQS_*`).
        options: SqsOptions,
        /// The AWS region the SQS client signs for: `AWS_REGION`, else `AWS_DEFAULT_REGION`,
        /// else the region in the queue URLs (`https://sqs.<region>.amazonaws.com/…`). Given to
        /// the SDK explicitly, so what runs is what is printed.
        region: String,
        /// `AWS_ENDPOINT_URL_SQS`, else `AWS_ENDPOINT_URL` (an emulator, a VPC endpoint); given to
        /// the SDK explicitly. `None`: the SDK's endpoint for the region.
        endpoint_url: Option<String>,
    },
}

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The authentication in force.
    pub auth: ResolvedAuth,
    /// Connection limits and timeouts (`ASYNC_JOBS_HTTP_*`).
    pub limits: ServerLimits,
    /// The key that signs the dashboard's sessions (`ASYNC_JOBS_UI_SESSION_KEY`); `None`: a
    /// random key of this process.
    pub ui_session_key: Option<jobs_http::ui::SessionKey>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs and span export.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives (`RUST_LOG`, default `info`), validated.
    pub log_filter: String,
    /// Where spans go, when exported.
    pub traces: Option<TraceExport>,
    /// The endpoint as configured, even when export is disabled (for the report).
    pub configured_endpoint: Option<String>,
    /// The spans' `service.name`.
    pub service_name: String,
}

/// Span export over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The full traces URL (`…/v1/traces`).
    pub traces_url: String,
}

/// The sample handlers' side-effect log.
#[derive(Clone)]
pub struct SideEffectSettings {
    /// Its database (redacted in reports).
    pub dsn: String,
    /// Its schema.
    pub schema: String,
    /// The log, ready to install.
    pub log: Arc<SideEffectLog>,
}

impl std::fmt::Debug for SideEffectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideEffectSettings")
            .field("dsn", &jobs_postgres::tls::redact_dsn(&self.dsn))
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// `url` for reports and error messages: as it is when it parses as a URL without user
/// information, else with everything between `://` and its last `@` hidden
/// ([`jobs_core::config::redact_url`]).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.username().is_empty() && u.password().is_none() => url.to_owned(),
        _ => jobs_core::config::redact_url(url),
    }
}

/// The configured cron schedules: the JSON array in the file [`SCHEDULES_FILE_VAR`] names,
/// then the one in [`SCHEDULES_VAR`] (both may be set; a name declared twice is refused). Each
/// is checked as the API checks a new schedule (cron, zone, policy, and the template as an
/// enqueue request); the first bad one stops the process with a line naming it.
fn schedules(env: &Env, platform: &PlatformConfig) -> Result<Vec<NewSchedule>, SettingsError> {
    const EXPECTED: &str = "a JSON array of schedules: [{\"name\", \"cron\", \"timezone\", \"template\": {\"tenant_id\", \"use_case\", \"type\", \"payload\", …}, \"missed\"}]";
    let mut sources: Vec<(&str, String)> = Vec::new();
    if let Some(path) = env.get(SCHEDULES_FILE_VAR) {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(SCHEDULES_FILE_VAR, format!("a readable file ({e})"), path)
        })?;
        sources.push((SCHEDULES_FILE_VAR, text));
    }
    if let Some(text) = env.get(SCHEDULES_VAR) {
        sources.push((SCHEDULES_VAR, text.to_owned()));
    }
    let now = chrono::Utc::now();
    let mut all: Vec<NewSchedule> = Vec::new();
    for (var, text) in sources {
        let parsed: Vec<NewSchedule> = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new(
                var,
                format!("{EXPECTED} ({e})"),
                &text.chars().take(200).collect::<String>(),
            )
        })?;
        for new in parsed {
            if all.iter().any(|s| s.name == new.name) {
                return Err(ConfigError::new(var, "unique schedule names", &new.name).into());
            }
            schedule::check(new.clone(), ScheduleSource::Config, platform, now).map_err(|e| {
                ConfigError::new(
                    var,
                    format!("valid schedules ({}: {e})", e.code()),
                    &new.name,
                )
            })?;
            all.push(new);
        }
    }
    Ok(all)
}

impl Settings {
    /// The settings of `process` from the process environment, read once.
    pub fn from_env(process: Process, overrides: Overrides) -> Result<Self, SettingsError> {
        Self::from_snapshot(&Env::from_process(), process, overrides)
    }

    /// The settings of `process` from `env`.
    pub fn from_snapshot(
        env: &Env,
        process: Process,
        overrides: Overrides,
    ) -> Result<Self, SettingsError> {
        let platform = PlatformConfig::from_vars(env.pairs())?;
        let telemetry =
            TelemetrySettings::from_snapshot(env, &format!("async-jobs-{}", process.name()))?;
        let store = store(env, process, &platform)?;
        let transport = match process {
            Process::Api | Process::Migrate => TransportSettings::None,
            Process::Dev if platform.use_cases.values().all(|uc| uc.queue_url.is_none()) => {
                TransportSettings::InProcess
            }
            Process::Dev | Process::Scheduler | Process::Worker => {
                let queue_urls =
                    jobs_sqs::queue_urls_from_config(&platform).map_err(SettingsError::new)?;
                TransportSettings::Sqs {
                    region: aws_region(env, &queue_urls)?,
                    endpoint_url: aws_endpoint(env)?,
                    options: SqsOptions::from_lookup(&env.lookup())?,
                    queue_urls,
                }
            }
        };
        let api = match process.serves_api() {
            true => {
                let addr = match overrides.api_addr {
                    Some(addr) => addr,
                    None => socket_addr(env, API_ADDR_VAR, DEFAULT_API_ADDR)?,
                };
                let serving = match process {
                    Process::Dev => Serving::Dev { addr },
                    _ => Serving::Api { addr },
                };
                Some(ApiSettings {
                    addr,
                    auth: ResolvedAuth::from_vars(env.pairs(), serving)?,
                    limits: ServerLimits::from_vars(env.pairs())?,
                    ui_session_key: ui_session_key(env)?,
                })
            }
            false => None,
        };
        let scheduler = match process.runs_scheduler() {
            true => Some(SchedulerConfig::from_lookup(&env.lookup())?),
            false => None,
        };
        let tenant_labels = match process.runs_scheduler() || process.runs_worker() {
            true => Some(tenant_label_policy(env)?),
            false => None,
        };
        let backlog = match (process.runs_scheduler(), &tenant_labels) {
            (true, Some(tenant_labels)) => Some(BacklogConfig {
                min_rate: scaling_min_rate(env)?,
                tenant_labels: tenant_labels.clone(),
                ..BacklogConfig::default()
            }),
            _ => None,
        };
        let schedules = match process.runs_scheduler() {
            true => Some(schedules(env, &platform)?),
            false => None,
        };
        let worker = match process.runs_worker() {
            true => {
                let mut config = WorkerConfig::from_vars(env.pairs())?;
                if let Some(policy) = &tenant_labels {
                    config.tenant_labels = policy.clone();
                }
                // The worker would refuse them at start, after connecting everything: say so now.
                if let Some(unknown) = config
                    .use_cases
                    .iter()
                    .find(|u| platform.use_case(u).is_none())
                {
                    let known: Vec<&str> = platform.use_cases.keys().map(String::as_str).collect();
                    return Err(ConfigError::new(
                        "ASYNC_JOBS_WORKER_USE_CASES",
                        format!(
                            "configured use cases, comma-separated: {}",
                            known.join(", ")
                        ),
                        unknown,
                    )
                    .into());
                }
                Some(config)
            }
            false => None,
        };
        let health_addr = match process {
            Process::Scheduler | Process::Worker => match env.get(HEALTH_ADDR_VAR) {
                Some(v) if v.eq_ignore_ascii_case("off") => None,
                _ => Some(socket_addr(env, HEALTH_ADDR_VAR, DEFAULT_HEALTH_ADDR)?),
            },
            _ => None,
        };
        let side_effects = match (process.runs_worker(), env.get(ENV_SIDE_EFFECTS_DSN)) {
            (true, Some(dsn)) => {
                let schema = env.get(ENV_SIDE_EFFECTS_SCHEMA).unwrap_or("public");
                let ca_file = env.get(jobs_postgres::tls::CA_FILE_VAR).map(PathBuf::from);
                let log = SideEffectLog::new(dsn, schema, ca_file.as_deref())
                    .map_err(SettingsError::new)?;
                Some(SideEffectSettings {
                    dsn: dsn.to_owned(),
                    schema: schema.to_owned(),
                    log: Arc::new(log),
                })
            }
            _ => None,
        };
        Ok(Settings {
            process,
            platform: Arc::new(platform),
            store,
            transport,
            api,
            scheduler,
            backlog,
            schedules,
            worker,
            health_addr,
            telemetry,
            side_effects,
        })
    }

    /// The Postgres settings, or the one-line error of a process that needs Postgres.
    pub fn require_postgres(&self) -> Result<&PostgresSettings, SettingsError> {
        match &self.store {
            StoreSettings::Postgres(pg) => Ok(pg.as_ref()),
            StoreSettings::Memory => Err(SettingsError::new(format!(
                "invalid ASYNC_JOBS_STORE: `async-jobs {}` needs the Postgres store \
                 (ASYNC_JOBS_DB_DSN); memory serves `dev` only",
                self.process.name()
            ))),
        }
    }
}

/// `ASYNC_JOBS_UI_SESSION_KEY`: the dashboard's session key, shared by every API replica;
/// unset: a random key per process (sessions end when it restarts and hold on that replica only).
fn ui_session_key(env: &Env) -> Result<Option<jobs_http::ui::SessionKey>, SettingsError> {
    match env.get(UI_SESSION_KEY_VAR) {
        None => Ok(None),
        Some(secret) => jobs_http::ui::SessionKey::from_secret(secret)
            .map(Some)
            .map_err(|expected| {
                ConfigError::new(UI_SESSION_KEY_VAR, expected, "<redacted>").into()
            }),
    }
}

/// The dashboard's session key variable.
pub const UI_SESSION_KEY_VAR: &str = "ASYNC_JOBS_UI_SESSION_KEY";

/// The region the SQS client signs for (see [`TransportSettings::Sqs`]).
fn aws_region(env: &Env, queue_urls: &BTreeMap<String, String>) -> Result<String, SettingsError> {
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(region) = env.get(var) {
            let plain = region.len() <= 64
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            return match plain {
                true => Ok(region.to_owned()),
                false => Err(ConfigError::new(var, "an AWS region like eu-west-1", region).into()),
            };
        }
    }
    // The region of each queue URL of the form https://sqs.<region>.amazonaws.com[.cn]/…; they
    // must agree (one client signs for one region).
    let mut regions = std::collections::BTreeSet::new();
    for url in queue_urls.values() {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let region = host.as_deref().and_then(|h| {
            let rest = h.strip_prefix("sqs.")?;
            rest.strip_suffix(".amazonaws.com")
                .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
                .map(str::to_owned)
        });
        if let Some(r) = region {
            regions.insert(r);
        }
    }
    let plain = |r: &str| {
        !r.is_empty()
            && r.len() <= 64
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let need = |got: &str| {
        ConfigError::new(
            "AWS_REGION",
            "the AWS region of the queues (ECS sets it; derived only from queue URLs like \
             https://sqs.<region>.amazonaws.com/<account>/<queue> that all name one region — \
             set it for FIPS, dual-stack, VPC-endpoint or emulator URLs)",
            got,
        )
    };
    let mut found = regions.into_iter();
    match (found.next(), found.next()) {
        (Some(r), None) if plain(&r) => Ok(r),
        (Some(a), Some(b)) => Err(need(&format!("queue URLs in {a} and {b}")).into()),
        (Some(r), None) => Err(need(&r).into()),
        (None, _) => Err(need("").into()),
    }
}

/// The SQS endpoint override (see [`TransportSettings::Sqs`]).
fn aws_endpoint(env: &Env) -> Result<Option<String>, SettingsError> {
    for var in ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"] {
        if let Some(url) = env.get(var) {
            let ok = reqwest::Url::parse(url)
                .ok()
                .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            return match ok {
                true => Ok(Some(url.to_owned())),
                false => Err(
                    ConfigError::new(var, "an http:// or https:// URL", &redact_url(url)).into(),
                ),
            };
        }
    }
    Ok(None)
}

/// The tenant label policy of the per-tenant metrics ([`TENANT_LABELS_VAR`],
/// [`TENANT_LABELS_MAX_VAR`]).
fn tenant_label_policy(env: &Env) -> Result<jobs_core::TenantLabelPolicy, SettingsError> {
    let labels = match env.get(TENANT_LABELS_VAR) {
        None => jobs_core::TenantLabels::Off,
        Some(raw) => jobs_core::TenantLabels::parse(raw)
            .map_err(|expected| ConfigError::new(TENANT_LABELS_VAR, expected, raw))?,
    };
    let max_tenants = match env.get(TENANT_LABELS_MAX_VAR) {
        None => jobs_core::tenant_label::DEFAULT_MAX_TENANTS,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TENANT_LABELS).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    TENANT_LABELS_MAX_VAR,
                    format!("a whole number from 1 to {MAX_TENANT_LABELS}"),
                    raw,
                )
            })?,
    };
    Ok(jobs_core::TenantLabelPolicy {
        labels,
        max_tenants,
    })
}

/// The drain-rate floor of the scaling signal ([`SCALING_MIN_RATE_VAR`]).
fn scaling_min_rate(env: &Env) -> Result<f64, SettingsError> {
    match env.get(SCALING_MIN_RATE_VAR) {
        None => Ok(jobs_core::scaling::DEFAULT_MIN_RATE),
        Some(raw) => raw
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.001)
            .ok_or_else(|| {
                ConfigError::new(
                    SCALING_MIN_RATE_VAR,
                    "jobs per second, a number ≥ 0.001",
                    raw,
                )
                .into()
            }),
    }
}

fn socket_addr(env: &Env, var: &str, default: &str) -> Result<SocketAddr, SettingsError> {
    let raw = env.get(var).unwrap_or(default);
    raw.parse().map_err(|_| {
        ConfigError::new(
            var,
            "host:port with an IP address, like 127.0.0.1:8080 or 0.0.0.0:9090",
            raw,
        )
        .into()
    })
}

fn flag(env: &Env, var: &str, default: bool) -> Result<bool, SettingsError> {
    match env.get(var).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ConfigError::new(var, "true or false", env.get(var).unwrap_or("")).into()),
    }
}

fn store(
    env: &Env,
    process: Process,
    platform: &PlatformConfig,
) -> Result<StoreSettings, SettingsError> {
    let role = process.store_role();
    let statement_timeout = role.statement_timeout(env)?;
    let own_dsns = use_case_dsns(env, platform)?;
    match StoreKind::from_vars(env.pairs(), role)? {
        StoreKind::Memory if !own_dsns.is_empty() => {
            let variable = own_dsns.values().map(|(v, _)| v.as_str()).next();
            Err(ConfigError::new(
                variable.unwrap_or(DSN_VAR),
                "it unset with the in-memory store (a use case's own store needs the Postgres \
                 store, ASYNC_JOBS_DB_DSN, as the default)",
                "<set>",
            )
            .into())
        }
        StoreKind::Memory => match process {
            Process::Dev | Process::Api => Ok(StoreSettings::Memory),
            _ => Err(SettingsError::new(format!(
                "invalid ASYNC_JOBS_STORE: expected postgres for `async-jobs {}` (it shares the \
                 API's store through ASYNC_JOBS_DB_DSN; memory serves `dev` and `api` only), got \
                 \"memory\"",
                process.name()
            ))),
        },
        StoreKind::Postgres {
            dsn,
            schema,
            ca_file,
        } => {
            jobs_postgres::SchemaName::new(&schema)
                .map_err(|e| ConfigError::new("ASYNC_JOBS_DB_SCHEMA", e.to_string(), &schema))?;
            let connector =
                PgConnector::new(&dsn, ca_file.as_deref()).map_err(SettingsError::new)?;
            let dsn_connector = connector.clone();
            let mut use_case_stores: BTreeMap<String, UseCaseStore> = BTreeMap::new();
            for (use_case, (variable, dsn)) in own_dsns {
                let connector = PgConnector::new(&dsn, ca_file.as_deref())
                    .map_err(|e| SettingsError::new(e.for_dsn_setting(&variable)))?;
                // One database is one store with one pool: its connection strings must agree
                // on everything, or all but the first would be silently ignored.
                let first = std::iter::once((DSN_VAR, &dsn_connector))
                    .chain(
                        use_case_stores
                            .values()
                            .map(|s| (s.variable.as_str(), &s.connector)),
                    )
                    .find(|(_, c)| c.database() == connector.database());
                if let Some((first, other)) = first {
                    if !other.same_connection(&connector) {
                        return Err(SettingsError::new(format!(
                            "invalid {variable}: it names the same database as {first} ({}) with \
                             other connection settings (user, password, sslmode, hostaddr or \
                             options); use cases in one database share one store and one pool: \
                             give them the same connection string",
                            connector.database()
                        )));
                    }
                }
                use_case_stores.insert(
                    use_case,
                    UseCaseStore {
                        variable,
                        dsn,
                        connector,
                    },
                );
            }
            Ok(StoreSettings::Postgres(Box::new(PostgresSettings {
                dsn,
                schema,
                ca_file,
                connector,
                statement_timeout,
                auto_migrate: flag(env, AUTO_MIGRATE_VAR, true)?,
                use_case_stores,
            })))
        }
    }
}

impl TelemetrySettings {
    /// The logging and span-export settings in the process environment, for a service of your
    /// own (for example one that mounts the router), whose spans are named `default_service`
    /// unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
    pub fn from_env(default_service: &str) -> Result<Self, SettingsError> {
        Self::from_snapshot(&Env::from_process(), default_service)
    }

    /// [`TelemetrySettings::from_env`] over `env`.
    pub fn from_snapshot(env: &Env, default_service: &str) -> Result<Self, SettingsError> {
        telemetry(env, default_service)
    }
}

fn telemetry(env: &Env, default_service: &str) -> Result<TelemetrySettings, SettingsError> {
    let log_format = match env
        .get(LOG_FORMAT_VAR)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            return Err(ConfigError::new(
                LOG_FORMAT_VAR,
                "text or json",
                env.get(LOG_FORMAT_VAR).unwrap_or(""),
            )
            .into())
        }
    };
    let log_filter = env.get(LOG_FILTER_VAR).unwrap_or("info").to_owned();
    tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| {
        ConfigError::new(
            LOG_FILTER_VAR,
            format!("tracing filter directives ({e})"),
            &log_filter,
        )
    })?;
    let configured_endpoint = env
        .get(OTLP_TRACES_ENDPOINT_VAR)
        .map(|url| (OTLP_TRACES_ENDPOINT_VAR, url.to_owned()))
        .or_else(|| {
            env.get(OTLP_ENDPOINT_VAR)
                .map(|base| (OTLP_ENDPOINT_VAR, base.to_owned()))
        });
    let sdk_disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let exporter_off = match env.get("OTEL_TRACES_EXPORTER").map(str::to_ascii_lowercase) {
        None => false,
        Some(e) if e == "otlp" => false,
        Some(e) if e == "none" => true,
        Some(_) => {
            return Err(ConfigError::new(
                "OTEL_TRACES_EXPORTER",
                "otlp (the default) or none",
                env.get("OTEL_TRACES_EXPORTER").unwrap_or(""),
            )
            .into())
        }
    };
    let traces = match (&configured_endpoint, sdk_disabled || exporter_off) {
        (Some((var, url)), false) => {
            // The signal's own protocol variable wins over the general one (OTel spec).
            let protocol = [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ]
            .into_iter()
            .find_map(|v| env.get(v).map(|p| (v, p)));
            if let Some((protocol_var, p)) = protocol.filter(|(_, p)| *p != "http/protobuf") {
                return Err(ConfigError::new(
                    protocol_var,
                    "http/protobuf (the only OTLP protocol spoken here; point the exporter at the \
                     collector's OTLP/HTTP port, 4318)",
                    p,
                )
                .into());
            }
            let mut parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    ConfigError::new(
                        var,
                        "an http:// or https:// URL of an OTLP/HTTP collector",
                        &redact_url(url),
                    )
                })?;
            if *var == OTLP_ENDPOINT_VAR {
                // The base endpoint's path gains `/v1/traces`; its query stays a query.
                let path = format!("{}/v1/traces", parsed.path().trim_end_matches('/'));
                parsed.set_path(&path);
            }
            Some(TraceExport {
                traces_url: parsed.to_string(),
            })
        }
        _ => None,
    };
    let service_name = env
        .get(SERVICE_NAME_VAR)
        .map(str::to_owned)
        .or_else(|| {
            env.get("OTEL_RESOURCE_ATTRIBUTES").and_then(|attrs| {
                attrs.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim() == "service.name" && !v.trim().is_empty())
                        .then(|| v.trim().to_owned())
                })
            })
        })
        .unwrap_or_else(|| default_service.to_owned());
    Ok(TelemetrySettings {
        log_format,
        log_filter,
        traces,
        configured_endpoint: configured_endpoint.map(|(_, url)| url),
        service_name,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const PROCESSES: [Process; 5] = [
        Process::Dev,
        Process::Api,
        Process::Scheduler,
        Process::Worker,
        Process::Migrate,
    ];

    /// A complete production environment: every process starts from it.
    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "ASYNC_JOBS_DB_DSN",
                "postgres://app:pw@db.internal:5432/jobs?sslmode=disable",
            ),
            ("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", "operator-secret"),
            (
                "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
                "https://sqs.eu-west-1.amazonaws.com/1/n",
            ),
            (
                "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
                "https://sqs.eu-west-1.amazonaws.com/1/m",
            ),
        ]
    }

    /// Each setting a process reads, with a value that is not its default (or one that the
    /// process refuses: either way the result must change).
    const CHANGED: &[(&str, &str)] = &[
        (
            "ASYNC_JOBS_DB_DSN",
            "postgres://other:pw@db2.internal:5432/jobs?sslmode=disable",
        ),
        ("ASYNC_JOBS_DB_CA_FILE", "/etc/ssl/rds-global-bundle.pem"),
        ("ASYNC_JOBS_DB_SCHEMA", "jobs_two"),
        (
            "ASYNC_JOBS_NOTIFICATIONS_DB_DSN",
            "postgres://notif:pw@db-n.internal:5432/jobs?sslmode=disable",
        ),
        (
            "ASYNC_JOBS_MESSAGE_LABELING_DB_DSN",
            "postgres://label:pw@db-l.internal:5432/jobs?sslmode=disable",
        ),
        ("ASYNC_JOBS_AUTO_MIGRATE", "false"),
        ("ASYNC_JOBS_STORE", "memory"),
        ("ASYNC_JOBS_API_STATEMENT_TIMEOUT", "9"),
        (
            "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
            "https://sqs.eu-west-1.amazonaws.com/1/n2",
        ),
        (
            "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
            "https://sqs.eu-west-1.amazonaws.com/1/m2",
        ),
        ("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "3"),
        (
            "ASYNC_JOBS_NOTIFICATIONS_DEFAULT_DELAY_TOLERANCE_SECONDS",
            "30",
        ),
        ("ASYNC_JOBS_MESSAGE_LABELING_MAX_CONCURRENT", "2"),
        ("ASYNC_JOBS_NOTIFICATIONS_EXPIRE_AT_DEADLINE", "true"),
        ("ASYNC_JOBS_MESSAGE_LABELING_EXPIRE_AT_DEADLINE", "true"),
        ("ASYNC_JOBS_NOTIFICATIONS_FAIR_SHARE", "false"),
        (
            "ASYNC_JOBS_PER_TENANT_WEIGHTS",
            r#"{"acme": {"notifications": 4}, "*": 1}"#,
        ),
        ("ASYNC_JOBS_MESSAGE_LABELING_FAIR_SHARE", "false"),
        (
            "ASYNC_JOBS_UI_SESSION_KEY",
            "0123456789abcdef0123456789abcdef",
        ),
        (
            "ASYNC_JOBS_MESSAGE_LABELING_DEFAULT_DELAY_TOLERANCE_SECONDS",
            "60",
        ),
        ("ASYNC_JOBS_PER_TENANT_QUOTAS", r#"{"acme": 5}"#),
        (
            "ASYNC_JOBS_SCHEDULES",
            r#"[{"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "template": {"tenant_id": "acme", "use_case": "notifications", "type": "send_email"}}]"#,
        ),
        ("ASYNC_JOBS_SCHEDULES_FILE", "/nonexistent/schedules.json"),
        (
            "ASYNC_JOBS_PER_TENANT_RATE_LIMITS",
            r#"{"acme": {"notifications": 3}}"#,
        ),
        ("ASYNC_JOBS_SQS_CONNECT_TIMEOUT_SECONDS", "2"),
        ("ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS", "4"),
        ("ASYNC_JOBS_SQS_MAX_ATTEMPTS", "5"),
        ("ASYNC_JOBS_API_ADDR", "0.0.0.0:8081"),
        ("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", "another-secret"),
        (
            "ASYNC_JOBS_API_KEYS",
            r#"{"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "acme"}"#,
        ),
        ("ASYNC_JOBS_AUTH", "none"),
        ("ASYNC_JOBS_HTTP_HEADER_TIMEOUT_SECONDS", "11"),
        ("ASYNC_JOBS_HTTP_BODY_TIMEOUT_SECONDS", "31"),
        ("ASYNC_JOBS_HTTP_IDLE_TIMEOUT_SECONDS", "76"),
        ("ASYNC_JOBS_HTTP_MAX_CONNECTIONS", "100"),
        ("ASYNC_JOBS_HTTP_SHUTDOWN_GRACE_SECONDS", "21"),
        ("ASYNC_JOBS_SCHEDULER_TICK_MS", "500"),
        ("ASYNC_JOBS_DISPATCH_LEASE_SECONDS", "301"),
        ("ASYNC_JOBS_DISPATCH_BATCH", "101"),
        ("ASYNC_JOBS_REAP_BATCH", "501"),
        ("ASYNC_JOBS_RETENTION_HOURS", "169"),
        ("ASYNC_JOBS_PRUNE_INTERVAL_SECONDS", "61"),
        ("ASYNC_JOBS_PRUNE_BATCH", "1001"),
        ("ASYNC_JOBS_LEADER_POLL_MS", "1001"),
        ("ASYNC_JOBS_WORKER_CONCURRENCY", "11"),
        ("ASYNC_JOBS_WORKER_USE_CASES", "notifications"),
        ("ASYNC_JOBS_WORKER_RECEIVE_LOOPS", "2"),
        ("ASYNC_JOBS_METRICS_TENANT_LABELS", "acme,globex"),
        ("ASYNC_JOBS_METRICS_TENANT_LABELS_MAX", "7"),
        ("ASYNC_JOBS_SCALING_MIN_RATE", "2.5"),
        ("ASYNC_JOBS_WORKER_RECEIVE_WAIT_SECONDS", "19"),
        ("ASYNC_JOBS_WORKER_HEARTBEAT_LEASE_SECONDS", "31"),
        ("ASYNC_JOBS_WORKER_LEASE_MARGIN_SECONDS", "29"),
        ("ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS", "24"),
        ("ASYNC_JOBS_HEALTH_ADDR", "off"),
        ("ASYNC_JOBS_LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces",
        ),
        ("OTEL_SERVICE_NAME", "jobs-prod"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes"),
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        (
            "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN",
            "postgres://app@db.internal/side?sslmode=disable",
        ),
        ("ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA", "runs"),
        ("RUST_LOG", "debug"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-north-1"),
        ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5001"),
    ];

    /// Settings whose value the report never shows (only whether they are set).
    const SECRETS: &[&str] = &["ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", "ASYNC_JOBS_UI_SESSION_KEY"];

    /// Settings in `.env.example` that no platform process reads, and who does.
    const NOT_PROCESS_SETTINGS: &[(&str, &str)] = &[
        ("ASYNC_JOBS_TEST_DATABASE_URL", "the tests"),
        ("ASYNC_JOBS_API_URL", "the operator CLI (async-jobs jobs)"),
        ("ASYNC_JOBS_API_TOKEN", "the operator CLI (async-jobs jobs)"),
        ("ASYNC_JOBS_BENCH_DATABASE_URL", "jobs-bench"),
        ("ASYNC_JOBS_FUZZ_REQUESTS", "the HTTP fuzz test"),
        ("ASYNC_JOBS_FUZZ_SEED", "the HTTP fuzz test"),
        (
            "ASYNC_JOBS_FAULT_CRASH_AFTER_LEASE",
            "test builds only (feature fault-injection)",
        ),
        (
            "ASYNC_JOBS_FAULT_STALL_COMPLETIONS_MS",
            "test builds only (feature fault-injection)",
        ),
        (
            "ASYNC_JOBS_FAULT_CRASH_BEFORE_FIRE",
            "test builds only (feature fault-injection)",
        ),
        (
            "ASYNC_JOBS_FAULT_CRASH_AFTER_FIRE",
            "test builds only (feature fault-injection)",
        ),
        (
            "ASYNC_JOBS_FAULT_STALL_BEFORE_FIRE",
            "test builds only (feature fault-injection)",
        ),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "the OpenTelemetry SDK"),
        ("OTEL_BSP_SCHEDULE_DELAY", "the OpenTelemetry SDK"),
    ];

    /// What `--print-config` prints for `process` under `vars`, or the refusal.
    fn outcome(process: Process, vars: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        Settings::from_snapshot(
            &Env::from_pairs(vars.iter().copied()),
            process,
            Overrides::default(),
        )
        .map(|s| s.report())
        .map_err(|e| e.to_string())
    }

    fn with(
        vars: &[(&'static str, &'static str)],
        name: &'static str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<_> = base().into_iter().filter(|(k, _)| *k != name).collect();
        out.extend(vars.iter().copied().filter(|(k, _)| *k != name));
        out.push((name, value));
        out
    }

    /// The names `.env.example` lists (commented or not).
    fn documented() -> Vec<String> {
        let text = include_str!("../../.env.example");
        text.lines()
            .filter_map(|l| {
                let l = l.trim_start_matches('#').trim();
                let (name, _) = l.split_once('=')?;
                (!name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .then(|| name.to_owned())
            })
            .collect()
    }

    /// Configured schedules are checked at start, like a create through the API: a bad one is
    /// one line naming the variable, the schedule and the code; good ones show in the report.
    #[test]
    fn configured_schedules_are_checked_at_start() {
        let template = r#""template": {"tenant_id": "acme", "use_case": "notifications", "type": "send_email"}"#;
        let bad = format!(r#"[{{"name": "n", "cron": "61 * * * *", {template}}}]"#);
        let mut vars = base();
        vars.push(("ASYNC_JOBS_SCHEDULES", &bad));
        let err = outcome(Process::Scheduler, &vars).unwrap_err();
        assert!(
            err.contains("ASYNC_JOBS_SCHEDULES")
                && err.contains("invalid_cron")
                && !err.contains('\n'),
            "{err}"
        );
        let twice = format!(
            r#"[{{"name": "n", "cron": "* * * * *", {template}}}, {{"name": "n", "cron": "0 * * * *", {template}}}]"#
        );
        let mut vars = base();
        vars.push(("ASYNC_JOBS_SCHEDULES", &twice));
        assert!(outcome(Process::Scheduler, &vars)
            .unwrap_err()
            .contains("unique schedule names"));
        let good = format!(
            r#"[{{"name": "n", "cron": "*/5 * * * * *", "timezone": "Asia/Tokyo", {template}}}]"#
        );
        let mut vars = base();
        vars.push(("ASYNC_JOBS_SCHEDULES", &good));
        let report = outcome(Process::Scheduler, &vars).unwrap();
        assert_eq!(report["schedules"][0]["name"], "n");
        assert_eq!(report["schedules"][0]["timezone"], "Asia/Tokyo");
        assert_eq!(report["schedules"][0]["missed"]["policy"], "skip");
        // The API does not read them.
        assert!(outcome(Process::Api, &vars)
            .unwrap()
            .get("schedules")
            .is_none());
    }

    #[test]
    fn the_base_environment_runs_every_process() {
        for process in PROCESSES {
            let report = outcome(process, &base()).unwrap();
            assert_eq!(report["command"], process.name());
            let text = report.to_string();
            assert!(
                !text.contains("pw@") && !text.contains("operator-secret"),
                "{text}"
            );
        }
    }

    /// `--print-config` prints the configuration a process runs with: every setting a process
    /// reads shows in it (changing the setting changes the report of some process, or the
    /// process refuses it), and every documented setting is either one of them or named with
    /// the program that reads it instead.
    #[test]
    fn every_setting_read_shows_in_the_report() {
        let changed: BTreeMap<&str, &str> = CHANGED.iter().copied().collect();
        for name in documented() {
            assert!(
                changed.contains_key(name.as_str())
                    || NOT_PROCESS_SETTINGS.iter().any(|(n, _)| *n == name),
                "{name} is documented in .env.example but neither in CHANGED nor in \
                 NOT_PROCESS_SETTINGS"
            );
        }
        for (name, value) in CHANGED {
            // The OTLP switches only matter with an endpoint, the log's schema with its DSN.
            let extra: &[(&str, &str)] = match *name {
                "OTEL_SDK_DISABLED"
                | "OTEL_TRACES_EXPORTER"
                | "OTEL_EXPORTER_OTLP_PROTOCOL"
                | "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" => {
                    &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]
                }
                "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA" => &[(
                    "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN",
                    "postgres://app@db.internal/side?sslmode=disable",
                )],
                _ => &[],
            };
            // A secret shows only as set or not (never its value): compare with it unset.
            let before: Vec<_> = base()
                .into_iter()
                .chain(extra.iter().copied())
                .filter(|(k, _)| !(SECRETS.contains(name) && k == name))
                .collect();
            let shows = PROCESSES
                .iter()
                .any(|p| outcome(*p, &before) != outcome(*p, &with(extra, name, value)));
            assert!(shows, "{name}={value} changes nothing any process reports");
        }
    }

    #[test]
    fn the_report_follows_the_settings_it_prints() {
        let vars = with(&[], "ASYNC_JOBS_WORKER_CONCURRENCY", "11");
        let report = outcome(Process::Worker, &vars).unwrap();
        assert_eq!(report["worker"]["concurrency"], 11);
        assert_eq!(report["store"]["kind"], "postgres");
        assert_eq!(report["store"]["sslmode"], "disable");
        assert_eq!(
            report["store"]["dsn"],
            "postgres://app:***@db.internal:5432/jobs?sslmode=disable"
        );
        assert_eq!(report["transport"]["kind"], "sqs");
        assert_eq!(report["health_addr"], "0.0.0.0:9090");
        assert!(report.get("api_addr").is_none() && report.get("scheduler").is_none());
        let api = outcome(
            Process::Api,
            &with(&[], "ASYNC_JOBS_API_ADDR", "0.0.0.0:8081"),
        )
        .unwrap();
        assert_eq!(api["api_addr"], "0.0.0.0:8081");
        assert_eq!(api["auth"]["mode"], "required");
        assert_eq!(api["store"]["statement_timeout_seconds"], 5.0);
        assert!(api["transport"].is_null() && api.get("worker").is_none());
    }

    #[test]
    fn empty_values_are_unset_for_every_setting() {
        // An empty (or blank) value is the default, never an error, whatever the variable.
        for (name, _) in CHANGED {
            let blank = with(&[], name, "  ");
            let unset: Vec<_> = base().into_iter().filter(|(k, _)| k != name).collect();
            for p in PROCESSES {
                assert_eq!(
                    outcome(p, &blank),
                    outcome(p, &unset),
                    "{name} blank for {p:?}"
                );
            }
        }
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (name, bad) in [
            ("ASYNC_JOBS_AUTO_MIGRATE", "yes"),
            ("ASYNC_JOBS_LOG_FORMAT", "xml"),
            ("RUST_LOG", "[[["),
            ("ASYNC_JOBS_HEALTH_ADDR", "localhost:9090"),
            ("ASYNC_JOBS_API_ADDR", "nowhere"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("ASYNC_JOBS_DB_SCHEMA", "bad-name"),
            ("ASYNC_JOBS_METRICS_TENANT_LABELS", "acme,,globex"),
            ("ASYNC_JOBS_METRICS_TENANT_LABELS_MAX", "0"),
            ("ASYNC_JOBS_METRICS_TENANT_LABELS_MAX", "10001"),
            ("ASYNC_JOBS_SCALING_MIN_RATE", "0"),
            ("ASYNC_JOBS_SCALING_MIN_RATE", "NaN"),
            ("ASYNC_JOBS_SCALING_MIN_RATE", "fast"),
        ] {
            let vars = with(
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")],
                name,
                bad,
            );
            let errors: Vec<String> = PROCESSES
                .iter()
                .filter_map(|p| outcome(*p, &vars).err())
                .collect();
            assert!(!errors.is_empty(), "{name}={bad} was accepted");
            for e in errors {
                assert!(e.contains(name), "{name}: {e}");
                assert!(!e.contains('\n'), "{e}");
            }
        }
        // Scheduler and worker share the API's store: memory is refused.
        let memory = [("ASYNC_JOBS_STORE", "memory")];
        for p in [Process::Scheduler, Process::Worker, Process::Migrate] {
            let vars: Vec<_> = base()
                .into_iter()
                .filter(|(k, _)| *k != "ASYNC_JOBS_DB_DSN")
                .chain(memory)
                .collect();
            let e = outcome(p, &vars).unwrap_err();
            assert!(e.contains("ASYNC_JOBS_STORE"), "{e}");
        }
    }

    /// `ASYNC_JOBS_<USE_CASE>_DB_DSN` gives a use case a store of its own; use cases on one
    /// database (whatever the user or options) share one store; every process reads them; a
    /// variable for an unknown use case, a bad DSN or a use case store without the default one
    /// is refused naming the variable, never printing a password.
    #[test]
    fn use_cases_may_have_stores_of_their_own() {
        let vars = with(
            &[(
                "ASYNC_JOBS_MESSAGE_LABELING_DB_DSN",
                "postgres://app:pw@DB.internal:5432/jobs?sslmode=disable",
            )],
            "ASYNC_JOBS_NOTIFICATIONS_DB_DSN",
            "postgres://notif:secretpw@db-n.internal/notif?sslmode=require",
        );
        for process in PROCESSES {
            let report = outcome(process, &vars).unwrap();
            let stores = &report["store"]["use_case_stores"];
            assert_eq!(
                stores["notifications"]["dsn"],
                "postgres://notif:***@db-n.internal/notif?sslmode=require"
            );
            assert_eq!(stores["notifications"]["sslmode"], "require");
            assert_eq!(
                stores["message_labeling"]["variable"],
                "ASYNC_JOBS_MESSAGE_LABELING_DB_DSN"
            );
            // message_labeling's database is the default one (host names are case-blind).
            assert_eq!(report["store"]["stores"], 2, "{process:?}");
            assert!(!report.to_string().contains("secretpw"));
        }
        let settings = Settings::from_snapshot(
            &Env::from_pairs(vars.clone()),
            Process::Scheduler,
            Overrides::default(),
        )
        .unwrap();
        let pg = settings.require_postgres().unwrap();
        let targets = pg.targets();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].use_cases, vec!["message_labeling"]);
        assert_eq!(targets[1].use_cases, vec!["notifications"]);
        assert_eq!(targets[1].variable, "ASYNC_JOBS_NOTIFICATIONS_DB_DSN");
        assert!(!format!("{settings:?}").contains("secretpw"));

        let refused =
            |name: &'static str, value: &'static str, extra: &[(&'static str, &'static str)]| {
                // An empty value in `extra` removes the variable.
                let removed: Vec<&str> = extra
                    .iter()
                    .filter(|(_, v)| v.is_empty())
                    .map(|(k, _)| *k)
                    .collect();
                let vars: Vec<_> = with(extra, name, value)
                    .into_iter()
                    .filter(|(k, _)| !removed.contains(k))
                    .collect();
                let errors: Vec<String> = PROCESSES
                    .iter()
                    .filter_map(|p| outcome(*p, &vars).err())
                    .collect();
                assert_eq!(errors.len(), PROCESSES.len(), "{name}={value} accepted");
                for e in &errors {
                    assert!(e.contains(name) && !e.contains('\n'), "{e}");
                    assert!(!e.contains("secretpw"), "{e}");
                }
                errors[0].clone()
            };
        let e = refused(
            "ASYNC_JOBS_BILLING_DB_DSN",
            "postgres://b:secretpw@db-b/jobs",
            &[],
        );
        assert!(
            e.contains("'billing' is not one") && e.contains("notifications"),
            "{e}"
        );
        refused(
            "ASYNC_JOBS_NOTIFICATIONS_DB_DSN",
            "postgres://n:secretpw@db-n/jobs?sslmode=sometimes",
            &[],
        );
        // The default store's database with another user, password, sslmode or hostaddr: one
        // pool cannot honour both, so it is refused (not silently dropped).
        for other in [
            "postgres://label:secretpw@db.internal:5432/jobs?sslmode=disable",
            "postgres://app:secretpw@db.internal:5432/jobs?sslmode=disable",
            "postgres://app:pw@db.internal:5432/jobs?sslmode=require",
            "postgres://app:pw@db.internal:5432/jobs?sslmode=disable&hostaddr=10.0.0.9",
        ] {
            let e = refused("ASYNC_JOBS_MESSAGE_LABELING_DB_DSN", other, &[]);
            assert!(
                e.contains("ASYNC_JOBS_DB_DSN") && e.contains("same connection string"),
                "{e}"
            );
        }
        // Without the default store (memory, or dev without a DSN) a use case store is refused.
        let e = refused(
            "ASYNC_JOBS_NOTIFICATIONS_DB_DSN",
            "postgres://n:secretpw@db-n/jobs",
            &[("ASYNC_JOBS_STORE", "memory"), ("ASYNC_JOBS_DB_DSN", "")],
        );
        assert!(e.contains("in-memory"), "{e}");
    }

    /// The DSN variables are the configured use cases' names: a queue variable ending in
    /// `_DB_DSN` is a queue (of a use case whose name ends in `_db_dsn`), and a use case's DSN
    /// variable in another case is refused, not read as a second value.
    #[test]
    fn use_case_dsn_variables_are_built_from_the_use_cases() {
        let queue = "https://sqs.eu-west-1.amazonaws.com/1/r";
        let vars = with(&[], "ASYNC_JOBS_SQS_QUEUE_REPORTS_DB_DSN", queue);
        let settings = |vars: &[(&'static str, &'static str)]| {
            Settings::from_snapshot(
                &Env::from_pairs(vars.to_vec()),
                Process::Scheduler,
                Overrides::default(),
            )
            .map_err(|e| e.to_string())
        };
        let ok = settings(&vars).unwrap();
        assert_eq!(ok.require_postgres().unwrap().targets().len(), 1);
        // That use case's own DSN.
        let mut own = vars.clone();
        own.push((
            "ASYNC_JOBS_REPORTS_DB_DSN_DB_DSN",
            "postgres://r:secretpw@db-r/jobs",
        ));
        let ok = settings(&own).unwrap();
        let targets = ok.require_postgres().unwrap().targets();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].use_cases, vec!["reports_db_dsn"]);
        // Mixed case: refused naming it, even next to the right one.
        for extra in [
            vec![(
                concat!("ASYNC_JOBS_", "Notifications_DB_DSN"),
                "postgres://n:secretpw@db-n/jobs",
            )],
            vec![
                (
                    "ASYNC_JOBS_NOTIFICATIONS_DB_DSN",
                    "postgres://n:secretpw@db-n/jobs",
                ),
                (
                    "ASYNC_JOBS_notifications_DB_DSN",
                    "postgres://m:secretpw@db-m/jobs",
                ),
            ],
        ] {
            let mut vars = vars.clone();
            vars.extend(extra);
            let e = settings(&vars).unwrap_err();
            assert!(
                e.contains("ASYNC_JOBS_NOTIFICATIONS_DB_DSN")
                    && e.contains("case-sensitive")
                    && !e.contains("secretpw")
                    && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn urls_lose_their_user_information_in_reports() {
        assert_eq!(redact_url("https://u:p@h:1/x"), "https://***@h:1/x");
        assert_eq!(
            redact_url("http://h/a@b"),
            "http://h/a@b",
            "a valid URL without user info"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("http://a b@c"), "http://***@c");
        // Passwords holding '/', '?' or '#' (the URL does not parse): hidden all the same.
        for raw in ["http://ak:s#k@h", "http://u:se/cret@h:1", "http://u:a?b@h"] {
            assert!(redact_url(raw).starts_with("http://***@"), "{raw}");
        }
        let vars = with(
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://user:otelpass@collector:4318",
                ),
                ("AWS_ENDPOINT_URL_SQS", "http://ak:sk@127.0.0.1:5000"),
            ],
            "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
            "https://qu:qp@sqs.eu-west-1.amazonaws.com/1/n",
        );
        let text = outcome(Process::Worker, &vars).unwrap().to_string();
        for secret in ["otelpass", "sk@", "qp@", "pw@"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let bad = with(&[], "OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://u:secret@x");
        let e = outcome(Process::Worker, &bad).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        let settings = Settings::from_snapshot(
            &Env::from_pairs(with(
                &[],
                "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN",
                "postgres://a:sidepw@h/d?sslmode=disable",
            )),
            Process::Worker,
            Overrides::default(),
        )
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("sidepw") && !debug.contains(":pw@"),
            "{debug}"
        );
    }

    #[test]
    fn the_sqs_region_and_endpoint_are_resolved_once() {
        let region = |vars: &[(&'static str, &'static str)]| {
            let report = outcome(Process::Worker, &with(vars, "RUST_LOG", "info"))?;
            Ok::<_, String>(report["transport"]["region"].clone())
        };
        assert_eq!(region(&[]).unwrap(), "eu-west-1", "from the queue URLs");
        assert_eq!(
            region(&[("AWS_DEFAULT_REGION", "eu-north-1")]).unwrap(),
            "eu-north-1"
        );
        assert_eq!(
            region(&[
                ("AWS_DEFAULT_REGION", "eu-north-1"),
                ("AWS_REGION", "us-east-2")
            ])
            .unwrap(),
            "us-east-2"
        );
        let two = [(
            "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
            "https://sqs.us-east-1.amazonaws.com/1/m",
        )];
        let e = region(&two).unwrap_err();
        assert!(e.contains("eu-west-1") && e.contains("us-east-1"), "{e}");
        let e = region(&[("AWS_REGION", "EU WEST")]).unwrap_err();
        assert!(e.contains("AWS_REGION"), "{e}");
        // Queue URLs of an emulator carry no region: it must be given.
        let moto = [
            (
                "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
                "http://127.0.0.1:5000/1/n",
            ),
            (
                "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING",
                "http://127.0.0.1:5000/1/m",
            ),
        ];
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("ASYNC_JOBS_SQS_QUEUE_"))
            .chain(moto)
            .collect();
        let e = outcome(Process::Scheduler, &vars).unwrap_err();
        assert!(e.starts_with("invalid AWS_REGION"), "{e}");
        let endpoint = outcome(
            Process::Worker,
            &with(&[], "AWS_ENDPOINT_URL", "http://127.0.0.1:5001"),
        )
        .unwrap();
        assert_eq!(
            endpoint["transport"]["endpoint_url"],
            "http://127.0.0.1:5001"
        );
    }

    #[test]
    fn a_worker_for_an_unknown_use_case_is_a_bad_setting() {
        let e = outcome(
            Process::Worker,
            &with(
                &[],
                "ASYNC_JOBS_WORKER_USE_CASES",
                "notifications,notifcations",
            ),
        )
        .unwrap_err();
        assert!(
            e.contains("ASYNC_JOBS_WORKER_USE_CASES") && e.contains("notifcations"),
            "{e}"
        );
        let e = outcome(
            Process::Dev,
            &with(&[], "ASYNC_JOBS_WORKER_USE_CASES", "nope"),
        )
        .unwrap_err();
        assert!(e.contains("ASYNC_JOBS_WORKER_USE_CASES"), "{e}");
    }

    #[test]
    fn otlp_settings_follow_the_spec() {
        let env = |vars: &[(&'static str, &'static str)]| {
            TelemetrySettings::from_snapshot(&Env::from_pairs(vars.iter().copied()), "svc")
        };
        let with_query = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp?x=1")]).unwrap();
        assert_eq!(
            with_query.traces.unwrap().traces_url,
            "http://c:4318/otlp/v1/traces?x=1"
        );
        // The signal's own protocol wins over the general one.
        let signal = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(signal.unwrap().traces.is_some());
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "console"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_TRACES_EXPORTER"), "{e}");
    }

    #[test]
    fn an_endpoint_becomes_the_traces_url() {
        let env = |vars: &[(&'static str, &'static str)]| {
            TelemetrySettings::from_snapshot(&Env::from_pairs(vars.iter().copied()), "svc").unwrap()
        };
        let base = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]);
        assert_eq!(base.traces.unwrap().traces_url, "http://c:4318/v1/traces");
        let full = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4318/custom"),
        ]);
        assert_eq!(full.traces.unwrap().traces_url, "http://t:4318/custom");
        let off = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        assert!(off.traces.is_none());
        assert_eq!(off.configured_endpoint.as_deref(), Some("http://c:4318"));
        assert_eq!(off.service_name, "svc");
        let named = env(&[("OTEL_RESOURCE_ATTRIBUTES", "a=b, service.name=billing")]);
        assert_eq!(named.service_name, "billing");
    }
}
