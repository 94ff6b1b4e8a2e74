//! Platform configuration: use cases, concurrency caps, default tolerances, tenant quotas and
//! input limits, read from the environment with the variable names of the original service.
//!
//! | variable | meaning |
//! |---|---|
//! | `ASYNC_JOBS_SQS_QUEUE_<USE_CASE>` | defines a use case and its SQS queue URL |
//! | `ASYNC_JOBS_<USE_CASE>_MAX_CONCURRENT` | the use case's concurrency cap (dispatched + running) |
//! | `ASYNC_JOBS_<USE_CASE>_DEFAULT_DELAY_TOLERANCE_SECONDS` | tolerance when a request gives none |
//! | `ASYNC_JOBS_PER_TENANT_QUOTAS` | JSON quotas, see [`QuotaConfig`] |
//! | `ASYNC_JOBS_<USE_CASE>_EXPIRE_AT_DEADLINE` | `true`: its jobs expire at their deadline unless an enqueue says otherwise |
//! | `ASYNC_JOBS_PER_TENANT_RATE_LIMITS` | JSON rate limits, see [`crate::rate`] |
//! | `ASYNC_JOBS_PER_TENANT_WEIGHTS` | JSON fair-share weights, see [`WeightConfig`] |
//! | `ASYNC_JOBS_<USE_CASE>_FAIR_SHARE` | `false`: the use case's pick is plain EDF across tenants (default `true`: weighted fair share, EDF within each tenant) |
//!
//! A use case's own store, `ASYNC_JOBS_<USE_CASE>_DB_DSN`, is read by the composition root
//! (`async_jobs::app::settings`), which opens it; the routing itself is [`crate::route`].
//!
//! With no queue variable at all, the two use cases of the original are configured:
//! `notifications` (cap 10, tolerance 300 s) and `message_labeling` (cap 5, tolerance 600 s).
//! Use case names are the variable suffix in lower case.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The process environment as `(name, value)` pairs for the `from_vars` readers. Unlike
/// `std::env::vars()` it never panics: a name or value that is not UTF-8 is converted lossily, so
/// a setting of ours holding one fails to parse with an error naming it instead.
pub fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
}

/// The environment, read once: a snapshot of the process's variables with **one rule for every
/// setting** — values are trimmed, and a value that is empty after trimming counts as unset (so
/// a variable set to nothing in a task definition means "the default", never "an empty setting").
///
/// A process takes one snapshot at start ([`Env::from_process`]) and every reader of its
/// configuration reads that snapshot ([`Env::get`], [`Env::pairs`] for the `from_vars` readers,
/// [`Env::lookup`] for the `from_lookup` ones), so what it runs with is what was read, once.
/// Tests build one from pairs ([`Env::from_pairs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment now (see [`env_vars`]: never panics on non-UTF-8).
    pub fn from_process() -> Self {
        Self::from_pairs(env_vars())
    }

    /// An environment of `(name, value)` pairs, under the same rule (trimmed, empty = unset).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: AsRef<str>,
    {
        let vars = pairs
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v.as_ref().trim();
                (!v.is_empty()).then(|| (k.into(), v.to_owned()))
            })
            .collect();
        Env { vars }
    }

    /// The value of `name`: trimmed, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// True when `name` is set to a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Every set variable, for the `from_vars` readers.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A lookup function over the snapshot, for the `from_lookup` readers.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name).map(str::to_owned)
    }
}

/// `url` with everything between `://` and its last `@` replaced by `***`: any user information
/// (`user:password@`) is hidden, whatever characters the password holds and whether or not the
/// text parses as a URL. Conservative: an `@` later in a path or query hides the host too. For
/// error messages and reports; a URL known to parse without user information can be shown as is.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// A setting was missing or malformed. Displays as one line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: expected {expected}, got {got:?}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: String,
    /// What it should contain.
    pub expected: String,
    /// What it contained.
    pub got: String,
}

impl ConfigError {
    /// The error for `variable` holding `got` (kept to its first 200 characters) where
    /// `expected` was wanted.
    pub fn new(variable: &str, expected: impl Into<String>, got: &str) -> Self {
        ConfigError {
            variable: variable.to_owned(),
            expected: expected.into(),
            got: got.chars().take(200).collect(),
        }
    }

    /// Parses `raw`, the value of `variable`, as a number of seconds from `min` to `max`
    /// (fractions allowed).
    pub fn seconds(variable: &str, raw: &str, min: f64, max: f64) -> Result<Duration, Self> {
        match raw.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
            _ => Err(ConfigError::new(
                variable,
                format!("a number of seconds from {min} to {max}"),
                raw,
            )),
        }
    }

    /// Parses `raw`, the value of `variable`, as a whole number from `min` to `max`.
    pub fn integer(variable: &str, raw: &str, min: u64, max: u64) -> Result<u64, Self> {
        match raw.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                variable,
                format!("an integer from {min} to {max}"),
                raw,
            )),
        }
    }
}

/// One use case: a queue, a concurrency cap and a default tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseCaseConfig {
    /// Lower-case name, e.g. `notifications`.
    pub name: String,
    /// The SQS queue URL, when configured.
    pub queue_url: Option<String>,
    /// At most this many jobs of the use case are dispatched or running at once.
    pub max_concurrent: u32,
    /// Tolerance applied when an enqueue gives none.
    pub default_delay_tolerance: Duration,
    /// Whether a job not started by its deadline ends `expired` (instead of running late) when
    /// its enqueue does not say (`ASYNC_JOBS_<USE_CASE>_EXPIRE_AT_DEADLINE`, default false).
    pub expire_at_deadline: bool,
    /// Whether the pick shares the cap between tenants by weight (turns in virtual-time order,
    /// each turn to the tenant's earliest deadline), or is plain earliest-deadline-first across
    /// tenants (`ASYNC_JOBS_<USE_CASE>_FAIR_SHARE`, default true). See `docs/fairness.md`.
    pub fair_share: bool,
}

impl UseCaseConfig {
    /// A use case with the given cap and tolerance and no queue URL.
    pub fn new(
        name: impl Into<String>,
        max_concurrent: u32,
        default_delay_tolerance: Duration,
    ) -> Self {
        UseCaseConfig {
            name: name.into(),
            queue_url: None,
            max_concurrent,
            default_delay_tolerance,
            expire_at_deadline: false,
            fair_share: true,
        }
    }

    /// Sets whether the pick shares the cap between tenants by weight (`true`, the default) or
    /// is plain EDF across tenants.
    pub fn with_fair_share(mut self, fair_share: bool) -> Self {
        self.fair_share = fair_share;
        self
    }

    /// Sets whether its jobs expire at their deadline unless an enqueue says otherwise.
    pub fn with_expire_at_deadline(mut self, expire: bool) -> Self {
        self.expire_at_deadline = expire;
        self
    }

    /// The built-in defaults for the original use cases, if `name` is one of them.
    fn builtin(name: &str) -> Option<UseCaseConfig> {
        match name {
            "notifications" => Some(UseCaseConfig::new(name, 10, Duration::from_secs(300))),
            "message_labeling" => Some(UseCaseConfig::new(name, 5, Duration::from_secs(600))),
            _ => None,
        }
    }
}

/// Fallback cap for a use case that is neither built in nor given a cap.
pub const DEFAULT_MAX_CONCURRENT: u32 = 10;
/// Fallback tolerance for a use case that is neither built in nor given one.
pub const DEFAULT_DELAY_TOLERANCE: Duration = Duration::from_secs(300);

/// Per-tenant, per-use-case quotas: how many non-terminal jobs (pending, dispatched, running) a
/// tenant may hold in a use case.
///
/// `ASYNC_JOBS_PER_TENANT_QUOTAS` is a JSON object keyed by tenant id (`"*"` is every tenant
/// without an entry of its own). A value is either a number (one limit for every use case) or an
/// object of use case → number:
///
/// ```json
/// {"acme": {"notifications": 100, "message_labeling": 20}, "globex": 50, "*": {"notifications": 1000}}
/// ```
///
/// Lookup order: tenant + use case, tenant, `"*"` + use case, `"*"`; no match means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaConfig {
    tenants: BTreeMap<String, TenantQuota>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TenantQuota {
    all: Option<u32>,
    per_use_case: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QuotaJson {
    All(u32),
    PerUseCase(BTreeMap<String, u32>),
}

/// The tenant key that applies to tenants without an entry of their own.
pub const ANY_TENANT: &str = "*";

impl QuotaConfig {
    /// No quotas.
    pub fn unlimited() -> Self {
        QuotaConfig::default()
    }

    /// Sets one limit for every use case of `tenant` (use [`ANY_TENANT`] for the default).
    pub fn with_tenant_limit(mut self, tenant: &str, limit: u32) -> Self {
        self.tenants.entry(tenant.to_owned()).or_default().all = Some(limit);
        self
    }

    /// Sets the limit of `tenant` in `use_case`.
    pub fn with_limit(mut self, tenant: &str, use_case: &str, limit: u32) -> Self {
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .per_use_case
            .insert(use_case.to_owned(), limit);
        self
    }

    /// The quotas in force, in the JSON form they are configured with (see the type docs): a
    /// tenant with one limit maps to a number, one with per-use-case limits to an object (with
    /// `"*"` for its limit of every other use case when it has both, as the builders allow).
    pub fn to_json(&self) -> serde_json::Value {
        let tenants = self
            .tenants
            .iter()
            .map(|(tenant, q)| {
                let value = match (q.all, q.per_use_case.is_empty()) {
                    (Some(all), true) => serde_json::Value::from(all),
                    (all, _) => {
                        let mut map: serde_json::Map<String, serde_json::Value> = q
                            .per_use_case
                            .iter()
                            .map(|(uc, n)| (uc.clone(), (*n).into()))
                            .collect();
                        if let Some(all) = all {
                            map.insert(ANY_TENANT.to_owned(), all.into());
                        }
                        serde_json::Value::Object(map)
                    }
                };
                (tenant.clone(), value)
            })
            .collect();
        serde_json::Value::Object(tenants)
    }

    /// Parses the JSON form (see the type docs).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, QuotaJson> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        let tenants = raw
            .into_iter()
            .map(|(tenant, q)| {
                let quota = match q {
                    QuotaJson::All(n) => TenantQuota {
                        all: Some(n),
                        per_use_case: BTreeMap::new(),
                    },
                    QuotaJson::PerUseCase(map) => TenantQuota {
                        all: None,
                        per_use_case: map
                            .into_iter()
                            .map(|(k, v)| (k.to_lowercase(), v))
                            .collect(),
                    },
                };
                (tenant, quota)
            })
            .collect();
        Ok(QuotaConfig { tenants })
    }

    /// Every configured number.
    fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.tenants
            .values()
            .flat_map(|q| q.all.into_iter().chain(q.per_use_case.values().copied()))
    }

    /// The use cases named by a per-use-case entry.
    fn use_cases(&self) -> impl Iterator<Item = &str> {
        self.tenants
            .values()
            .flat_map(|q| q.per_use_case.keys().map(String::as_str))
    }

    /// The limit for `tenant` in `use_case`, or `None` for unlimited.
    pub fn limit_for(&self, tenant: &str, use_case: &str) -> Option<u32> {
        let lookup = |key: &str| {
            self.tenants
                .get(key)
                .and_then(|q| q.per_use_case.get(use_case).copied().or(q.all))
        };
        lookup(tenant).or_else(|| lookup(ANY_TENANT))
    }
}

/// Largest fair-share weight.
pub const MAX_WEIGHT: u32 = 1000;

/// Per-tenant, per-use-case weights of the fair share: under saturation a use case's starts are
/// shared between its tenants with due work in proportion to their weights (default 1).
///
/// `ASYNC_JOBS_PER_TENANT_WEIGHTS` has the form and lookup order of the quotas ([`QuotaConfig`]),
/// with weights from 1 to [`MAX_WEIGHT`]:
///
/// ```json
/// {"acme": {"notifications": 4}, "globex": 2, "*": 1}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightConfig(QuotaConfig);

impl WeightConfig {
    /// Every tenant weighs 1.
    pub fn equal() -> Self {
        WeightConfig::default()
    }

    /// Sets the weight of `tenant` in `use_case` (clamped to 1..=[`MAX_WEIGHT`]).
    pub fn with_weight(self, tenant: &str, use_case: &str, weight: u32) -> Self {
        WeightConfig(
            self.0
                .with_limit(tenant, use_case, weight.clamp(1, MAX_WEIGHT)),
        )
    }

    /// Sets one weight for every use case of `tenant` (use [`ANY_TENANT`] for the default).
    pub fn with_tenant_weight(self, tenant: &str, weight: u32) -> Self {
        WeightConfig(
            self.0
                .with_tenant_limit(tenant, weight.clamp(1, MAX_WEIGHT)),
        )
    }

    /// Parses the JSON form: the quotas' form, every weight from 1 to [`MAX_WEIGHT`].
    pub fn from_json(text: &str) -> Result<Self, String> {
        let parsed = QuotaConfig::from_json(text)?;
        if let Some(w) = parsed.values().find(|w| !(1..=MAX_WEIGHT).contains(w)) {
            return Err(format!("weight {w} is not from 1 to {MAX_WEIGHT}"));
        }
        Ok(WeightConfig(parsed))
    }

    /// The weights in force, in their JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        self.0.to_json()
    }

    /// The use cases named by a per-use-case weight.
    pub fn use_cases(&self) -> impl Iterator<Item = &str> {
        self.0.use_cases()
    }

    /// The weight of `tenant` in `use_case` (1 when none is configured).
    pub fn weight_for(&self, tenant: &str, use_case: &str) -> u32 {
        self.0.limit_for(tenant, use_case).unwrap_or(1)
    }
}

/// Bounds on enqueue input. Every bound has a distinct validation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload, as serialized JSON bytes (default 256 KiB).
    pub max_payload_bytes: usize,
    /// Longest tenant id, in characters (default 128).
    pub max_tenant_len: usize,
    /// Longest job type, in characters (default 128).
    pub max_kind_len: usize,
    /// Longest idempotency key, in characters (default 255).
    pub max_idempotency_key_len: usize,
    /// How far ahead `run_at` may be (default 366 days).
    pub max_schedule_ahead: Duration,
    /// Largest `max_attempts` (default 1000).
    pub max_attempts: u32,
    /// Largest delay tolerance (default 366 days).
    pub max_delay_tolerance: Duration,
    /// Largest per-attempt timeout (default 24 h).
    pub max_timeout: Duration,
    /// Default `max_attempts` (default 5).
    pub default_max_attempts: u32,
    /// Default per-attempt timeout (default 300 s).
    pub default_timeout: Duration,
    /// Most jobs in one batch enqueue (default 1000).
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Limits {
            max_payload_bytes: 256 * 1024,
            max_tenant_len: 128,
            max_kind_len: 128,
            max_idempotency_key_len: 255,
            max_schedule_ahead: Duration::from_secs(366 * DAY),
            max_attempts: 1000,
            max_delay_tolerance: Duration::from_secs(366 * DAY),
            max_timeout: Duration::from_secs(DAY),
            default_max_attempts: 5,
            default_timeout: Duration::from_secs(300),
            max_batch: 1000,
        }
    }
}

/// Everything the domain needs to know about the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Use cases by name.
    pub use_cases: BTreeMap<String, UseCaseConfig>,
    /// Tenant quotas.
    pub quotas: QuotaConfig,
    /// Tenant rate limits (jobs started per second).
    pub rate_limits: crate::rate::RateLimitConfig,
    /// Tenant weights in the fair share.
    pub weights: WeightConfig,
    /// Input bounds.
    pub limits: Limits,
}

impl Default for PlatformConfig {
    /// The original's two use cases, no quotas, default limits.
    fn default() -> Self {
        let use_cases = ["notifications", "message_labeling"]
            .into_iter()
            .filter_map(UseCaseConfig::builtin)
            .map(|uc| (uc.name.clone(), uc))
            .collect();
        PlatformConfig {
            use_cases,
            quotas: QuotaConfig::default(),
            rate_limits: crate::rate::RateLimitConfig::default(),
            weights: WeightConfig::default(),
            limits: Limits::default(),
        }
    }
}

const QUEUE_PREFIX: &str = "ASYNC_JOBS_SQS_QUEUE_";
const QUOTAS_VAR: &str = "ASYNC_JOBS_PER_TENANT_QUOTAS";
const RATE_LIMITS_VAR: &str = "ASYNC_JOBS_PER_TENANT_RATE_LIMITS";
const WEIGHTS_VAR: &str = "ASYNC_JOBS_PER_TENANT_WEIGHTS";

impl PlatformConfig {
    /// A configuration with exactly these use cases, no quotas and default limits.
    pub fn with_use_cases(use_cases: impl IntoIterator<Item = UseCaseConfig>) -> Self {
        PlatformConfig {
            use_cases: use_cases
                .into_iter()
                .map(|uc| (uc.name.clone(), uc))
                .collect(),
            quotas: QuotaConfig::default(),
            rate_limits: crate::rate::RateLimitConfig::default(),
            weights: WeightConfig::default(),
            limits: Limits::default(),
        }
    }

    /// Replaces the quotas.
    pub fn with_quotas(mut self, quotas: QuotaConfig) -> Self {
        self.quotas = quotas;
        self
    }

    /// Replaces the fair-share weights.
    pub fn with_weights(mut self, weights: WeightConfig) -> Self {
        self.weights = weights;
        self
    }

    /// Replaces the rate limits.
    pub fn with_rate_limits(mut self, rate_limits: crate::rate::RateLimitConfig) -> Self {
        self.rate_limits = rate_limits;
        self
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(Env::from_process().pairs())
    }

    /// Reads configuration from `(name, value)` pairs (the environment, or a test's map).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with("ASYNC_JOBS_"))
            .collect();

        let mut use_cases = BTreeMap::new();
        for (name, url) in vars
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(QUEUE_PREFIX).map(|s| (s, v)))
        {
            let variable = format!("{QUEUE_PREFIX}{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(
                    &variable,
                    "a use case suffix of letters, digits and _",
                    name,
                ));
            }
            if url.trim().is_empty() {
                return Err(ConfigError::new(&variable, "a queue URL", url));
            }
            let lower = name.to_lowercase();
            let mut uc = UseCaseConfig::builtin(&lower).unwrap_or_else(|| {
                UseCaseConfig::new(&lower, DEFAULT_MAX_CONCURRENT, DEFAULT_DELAY_TOLERANCE)
            });
            uc.queue_url = Some(url.trim().to_owned());
            use_cases.insert(lower, uc);
        }
        if use_cases.is_empty() {
            use_cases = PlatformConfig::default().use_cases;
        }

        for uc in use_cases.values_mut() {
            let upper = uc.name.to_uppercase();
            let cap_var = format!("ASYNC_JOBS_{upper}_MAX_CONCURRENT");
            if let Some(raw) = vars.get(&cap_var) {
                uc.max_concurrent = raw
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::new(&cap_var, "a whole number ≥ 1", raw))?;
            }
            let expire_var = format!("ASYNC_JOBS_{upper}_EXPIRE_AT_DEADLINE");
            if let Some(raw) = vars.get(&expire_var) {
                uc.expire_at_deadline = match raw.trim() {
                    "" | "false" => false,
                    "true" => true,
                    _ => return Err(ConfigError::new(&expire_var, "true or false", raw)),
                };
            }
            let fair_var = format!("ASYNC_JOBS_{upper}_FAIR_SHARE");
            if let Some(raw) = vars.get(&fair_var) {
                uc.fair_share = match raw.trim() {
                    "" | "true" => true,
                    "false" => false,
                    _ => return Err(ConfigError::new(&fair_var, "true or false", raw)),
                };
            }
            let tol_var = format!("ASYNC_JOBS_{upper}_DEFAULT_DELAY_TOLERANCE_SECONDS");
            if let Some(raw) = vars.get(&tol_var) {
                uc.default_delay_tolerance = raw
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| crate::duration_secs::from_secs(s).ok())
                    .filter(|d| *d <= Limits::default().max_delay_tolerance)
                    .ok_or_else(|| ConfigError::new(&tol_var, "seconds from 0 to 31622400", raw))?;
            }
        }

        let quotas = match vars.get(QUOTAS_VAR) {
            Some(raw) if !raw.trim().is_empty() => QuotaConfig::from_json(raw).map_err(|e| {
                ConfigError::new(
                    QUOTAS_VAR,
                    format!(
                        r#"JSON like {{"tenant": 10}} or {{"tenant": {{"use_case": 10}}}} ({e})"#
                    ),
                    raw,
                )
            })?,
            _ => QuotaConfig::default(),
        };

        let rate_limits = match vars.get(RATE_LIMITS_VAR) {
            Some(raw) if !raw.trim().is_empty() => {
                let expected = |e: &str| {
                    format!(
                        r#"JSON like {{"tenant": {{"use_case": {{"per_second": 5, "burst": 10}}}}}} ({e})"#
                    )
                };
                let parsed = crate::rate::RateLimitConfig::from_json(raw)
                    .map_err(|e| ConfigError::new(RATE_LIMITS_VAR, expected(&e), raw))?;
                if let Some(unknown) = parsed.use_cases().find(|uc| !use_cases.contains_key(*uc)) {
                    let e = format!("'{unknown}' is not a configured use case");
                    return Err(ConfigError::new(RATE_LIMITS_VAR, expected(&e), raw));
                }
                parsed
            }
            _ => crate::rate::RateLimitConfig::default(),
        };

        let weights = match vars.get(WEIGHTS_VAR) {
            Some(raw) if !raw.trim().is_empty() => {
                let expected = |e: &str| {
                    format!(
                        r#"JSON like {{"tenant": 2}} or {{"tenant": {{"use_case": 2}}}}, weights 1 to {MAX_WEIGHT} ({e})"#
                    )
                };
                let parsed = WeightConfig::from_json(raw)
                    .map_err(|e| ConfigError::new(WEIGHTS_VAR, expected(&e), raw))?;
                if let Some(unknown) = parsed.use_cases().find(|uc| !use_cases.contains_key(*uc)) {
                    let e = format!("'{unknown}' is not a configured use case");
                    return Err(ConfigError::new(WEIGHTS_VAR, expected(&e), raw));
                }
                parsed
            }
            _ => WeightConfig::default(),
        };

        Ok(PlatformConfig {
            use_cases,
            quotas,
            rate_limits,
            weights,
            limits: Limits::default(),
        })
    }

    /// The use case named `name`, if configured.
    pub fn use_case(&self, name: &str) -> Option<&UseCaseConfig> {
        self.use_cases.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<PlatformConfig, ConfigError> {
        PlatformConfig::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn env_trims_and_treats_empty_as_unset() {
        let env = Env::from_pairs([("A", " x "), ("B", ""), ("C", "  "), ("D", "y")]);
        assert_eq!(env.get("A"), Some("x"));
        assert_eq!(
            (env.get("B"), env.get("C"), env.get("E")),
            (None, None, None)
        );
        assert!(env.is_set("D") && !env.is_set("B"));
        assert_eq!(
            env.pairs().collect::<Vec<_>>(),
            vec![("A", "x"), ("D", "y")]
        );
        assert_eq!((env.lookup())("A").as_deref(), Some("x"));
        // The readers see the same rule: an empty cap is the default, not an error.
        let platform = PlatformConfig::from_vars(
            Env::from_pairs([("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", " ")]).pairs(),
        )
        .unwrap();
        assert_eq!(
            platform.use_case("notifications").unwrap().max_concurrent,
            10
        );
    }

    #[test]
    fn defaults_match_the_original() {
        let c = parse(&[]).unwrap();
        let n = c.use_case("notifications").unwrap();
        assert_eq!(
            (n.max_concurrent, n.default_delay_tolerance),
            (10, Duration::from_secs(300))
        );
        let m = c.use_case("message_labeling").unwrap();
        assert_eq!(
            (m.max_concurrent, m.default_delay_tolerance),
            (5, Duration::from_secs(600))
        );
        assert_eq!(c.quotas.limit_for("anyone", "notifications"), None);
    }

    #[test]
    fn queue_variables_define_use_cases() {
        let c = parse(&[
            (
                "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS",
                "http://q/notifications",
            ),
            ("ASYNC_JOBS_SQS_QUEUE_BILLING", "http://q/billing"),
            ("ASYNC_JOBS_BILLING_MAX_CONCURRENT", "3"),
            ("ASYNC_JOBS_BILLING_DEFAULT_DELAY_TOLERANCE_SECONDS", "1.5"),
            ("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "20"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(c.use_cases.len(), 2);
        let b = c.use_case("billing").unwrap();
        assert_eq!(b.queue_url.as_deref(), Some("http://q/billing"));
        assert_eq!(b.max_concurrent, 3);
        assert_eq!(b.default_delay_tolerance, Duration::from_millis(1500));
        let n = c.use_case("notifications").unwrap();
        assert_eq!(
            (n.max_concurrent, n.default_delay_tolerance),
            (20, Duration::from_secs(300))
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[&[(&str, &str)]] = &[
            &[("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "ten")],
            &[("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "0")],
            &[("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "-1")],
            &[(
                "ASYNC_JOBS_NOTIFICATIONS_DEFAULT_DELAY_TOLERANCE_SECONDS",
                "-5",
            )],
            &[(
                "ASYNC_JOBS_NOTIFICATIONS_DEFAULT_DELAY_TOLERANCE_SECONDS",
                "NaN",
            )],
            &[(
                "ASYNC_JOBS_NOTIFICATIONS_DEFAULT_DELAY_TOLERANCE_SECONDS",
                "1e300",
            )],
            &[("ASYNC_JOBS_PER_TENANT_QUOTAS", "{not json")],
            &[("ASYNC_JOBS_PER_TENANT_QUOTAS", r#"{"a": -1}"#)],
            &[(
                "ASYNC_JOBS_PER_TENANT_RATE_LIMITS",
                r#"{"a": {"notifications": 0}}"#,
            )],
            &[(
                "ASYNC_JOBS_PER_TENANT_RATE_LIMITS",
                r#"{"a": {"no_such_use_case": 1}}"#,
            )],
            &[("ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS", " ")],
            &[("ASYNC_JOBS_SQS_QUEUE_BAD-NAME", "http://q")],
            &[("ASYNC_JOBS_PER_TENANT_WEIGHTS", r#"{"a": 0}"#)],
            &[("ASYNC_JOBS_PER_TENANT_WEIGHTS", r#"{"a": 1001}"#)],
            &[("ASYNC_JOBS_PER_TENANT_WEIGHTS", r#"{"a": 1.5}"#)],
            &[(
                "ASYNC_JOBS_PER_TENANT_WEIGHTS",
                r#"{"a": {"no_such_use_case": 2}}"#,
            )],
            &[("ASYNC_JOBS_NOTIFICATIONS_FAIR_SHARE", "yes")],
        ];
        for vars in cases {
            let err = parse(vars).unwrap_err();
            assert_eq!(err.variable, vars[0].0, "{err}");
            let line = err.to_string();
            assert!(
                line.starts_with(&format!("invalid {}", vars[0].0)),
                "{line}"
            );
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn weights_and_fair_share() {
        let c = parse(&[
            (
                "ASYNC_JOBS_PER_TENANT_WEIGHTS",
                r#"{"acme": {"NOTIFICATIONS": 4}, "globex": 2, "*": {"message_labeling": 3}}"#,
            ),
            ("ASYNC_JOBS_MESSAGE_LABELING_FAIR_SHARE", "false"),
        ])
        .unwrap();
        assert_eq!(c.weights.weight_for("acme", "notifications"), 4);
        assert_eq!(c.weights.weight_for("acme", "message_labeling"), 3);
        assert_eq!(c.weights.weight_for("globex", "notifications"), 2);
        assert_eq!(
            c.weights.weight_for("anyone", "notifications"),
            1,
            "default 1"
        );
        assert_eq!(c.weights.weight_for("anyone", "message_labeling"), 3);
        assert!(
            c.use_case("notifications").unwrap().fair_share,
            "on by default"
        );
        assert!(!c.use_case("message_labeling").unwrap().fair_share);
        assert_eq!(
            WeightConfig::from_json(&c.weights.to_json().to_string()).unwrap(),
            c.weights,
            "the JSON form round-trips"
        );
        // The enqueue carries the weight, or none where the use case is plain EDF.
        let req = |uc: &str| crate::EnqueueRequest::new("acme", uc, "k", serde_json::json!({}));
        let now = chrono::Utc::now();
        let fair = crate::enqueue::validate(req("notifications"), &c, now).unwrap();
        assert_eq!(fair.fair_weight, Some(4));
        let plain = crate::enqueue::validate(req("message_labeling"), &c, now).unwrap();
        assert_eq!(plain.fair_weight, None);
    }

    #[test]
    fn quota_lookup_order() {
        let q = QuotaConfig::from_json(
            r#"{"acme": {"notifications": 100}, "globex": 50, "*": {"notifications": 7}, "initech": {"NOTIFICATIONS": 3}}"#,
        )
        .unwrap();
        assert_eq!(q.limit_for("acme", "notifications"), Some(100));
        assert_eq!(q.limit_for("acme", "message_labeling"), None);
        assert_eq!(q.limit_for("globex", "notifications"), Some(50));
        assert_eq!(q.limit_for("globex", "anything"), Some(50));
        assert_eq!(q.limit_for("other", "notifications"), Some(7));
        assert_eq!(q.limit_for("other", "message_labeling"), None);
        assert_eq!(q.limit_for("initech", "notifications"), Some(3));
        let q = QuotaConfig::unlimited()
            .with_tenant_limit(ANY_TENANT, 2)
            .with_limit("a", "x", 9);
        assert_eq!(q.limit_for("a", "x"), Some(9));
        assert_eq!(q.limit_for("a", "y"), Some(2));
    }
}
