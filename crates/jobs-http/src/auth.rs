//! Authentication: one operator bearer token and tenant-scoped API keys, required by default.
//!
//! Credentials travel as `Authorization: Bearer <secret>`. Only SHA-256 digests of secrets are
//! kept in memory, and a presented secret is compared against every configured digest with a
//! constant-time comparison (no early exit), so neither the secret nor which key matched leaks
//! through timing.
//!
//! | variable | meaning |
//! |---|---|
//! | `ASYNC_JOBS_ENQUEUE_AUTH_TOKEN` | the operator token: sees and changes every tenant's jobs |
//! | `ASYNC_JOBS_API_KEYS` | JSON `{"<sha256-hex of key>": "<tenant>"}`: each key is confined to its tenant |
//! | `ASYNC_JOBS_AUTH` | `required` (default): a process refuses to serve the API without a credential; `none`: the explicit opt-out for a private network |
//!
//! Reading the credentials ([`AuthConfig::from_vars`]):
//! - a token is trimmed (presented secrets are trimmed too); a blank token counts as unset;
//! - `{}` (or a blank value) configures no keys;
//! - the same key hash twice, in any letter case, and a key hash equal to the operator token's
//!   digest are refused (one secret, two scopes): a [`ConfigError`] naming the variable that never
//!   shows a secret (hashes at most as their first 8 hex digits).
//!
//! Which authentication a *process* runs with is decided once, by [`ResolvedAuth::from_env`]:
//! the API processes (`async-jobs api`), `async-jobs dev` and `--print-config` all call
//! it, so the configuration report shows what is in force. Without any credential:
//!
//! | process | `ASYNC_JOBS_AUTH` unset or `required` | `ASYNC_JOBS_AUTH=none` |
//! |---|---|---|
//! | `api` | refuses to start ([`AuthError::NoCredentials`]) | starts open, with a warning |
//! | `dev` on a loopback address | starts open ("open (dev, loopback only)"), with a warning | starts open, with a warning |
//! | `dev` on any other address | refuses to start | starts open, with a warning |
//!
//! `ASYNC_JOBS_AUTH=none` together with a configured credential is a contradiction and refused.
//! A service that mounts [`crate::router`] itself chooses its [`AuthConfig`] in code
//! ([`AuthConfig::open`] included) or resolves it like the processes with [`ResolvedAuth`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jobs_core::{ConfigError, TenantScope};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The operator token variable (kept from the original service).
pub const TOKEN_VAR: &str = "ASYNC_JOBS_ENQUEUE_AUTH_TOKEN";
/// The tenant API keys variable.
pub const API_KEYS_VAR: &str = "ASYNC_JOBS_API_KEYS";
/// The variable choosing whether credentials are required: `required` (default) or `none`.
pub const AUTH_MODE_VAR: &str = "ASYNC_JOBS_AUTH";

pub(crate) type Digest32 = [u8; 32];

/// Who may call the `/jobs` endpoints, and with which [`TenantScope`].
#[derive(Clone, Default)]
pub struct AuthConfig {
    operator: Option<Digest32>,
    tenant_keys: Vec<(Digest32, String)>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("operator_token", &self.operator.is_some())
            .field("tenant_keys", &self.tenant_keys.len())
            .finish()
    }
}

/// The SHA-256 of `secret` in lower-case hex: the form `ASYNC_JOBS_API_KEYS` expects
/// (the same as `printf %s "$KEY" | sha256sum`).
pub fn hash_key(secret: &str) -> String {
    hex::encode(digest(secret))
}

pub(crate) fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// The first 8 hex digits of a digest: enough to find the entry, too little to matter.
fn short(d: &Digest32) -> String {
    format!("{}…", hex::encode(&d[..4]))
}

/// The entries of the `ASYNC_JOBS_API_KEYS` object in order, duplicates kept (a map would keep
/// only the last of two equal keys, silently).
struct KeyEntries(Vec<(String, String)>);

impl<'de> Deserialize<'de> for KeyEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = KeyEntries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of key hash to tenant")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyEntries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    out.push(entry);
                }
                Ok(KeyEntries(out))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Where a JSON error is, without the text around it (which may hold a secret).
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Data => "not an object of strings",
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => "not valid JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

impl AuthConfig {
    /// No authentication: every caller may see and change every tenant's jobs. For a service that
    /// mounts the router and authenticates callers itself; the processes never choose this
    /// silently (see [`ResolvedAuth`]).
    pub fn open() -> Self {
        AuthConfig::default()
    }

    /// Requires the operator `token`, which gives [`TenantScope::All`].
    pub fn operator_token(token: &str) -> Self {
        AuthConfig::default().with_operator_token(token)
    }

    /// Sets the operator token. Surrounding whitespace is trimmed, as it is from a presented
    /// secret.
    pub fn with_operator_token(mut self, token: &str) -> Self {
        self.operator = Some(digest(token.trim()));
        self
    }

    /// Adds an API key (given in clear, trimmed; only its digest is kept) confined to `tenant`.
    pub fn with_tenant_key(mut self, key: &str, tenant: impl Into<String>) -> Self {
        self.tenant_keys.push((digest(key.trim()), tenant.into()));
        self
    }

    /// Adds an API key by its SHA-256 hex digest (either letter case), confined to `tenant`.
    /// Refuses a value that is not 64 hex digits, an empty tenant, and a digest already
    /// configured (as a key or as the operator token). The error never repeats the value.
    pub fn with_tenant_key_hash(
        mut self,
        sha256_hex: &str,
        tenant: impl Into<String>,
    ) -> Result<Self, String> {
        let tenant = tenant.into();
        let digest: Digest32 = hex::decode(sha256_hex.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "the key of tenant {tenant:?} is not 64 hex digits (the SHA-256 of the key, \
                     not the key itself; the value is not shown)"
                )
            })?;
        if tenant.trim().is_empty() {
            return Err(format!(
                "key hash {} maps to an empty tenant",
                short(&digest)
            ));
        }
        if let Some((_, first)) = self.tenant_keys.iter().find(|(d, _)| *d == digest) {
            return Err(format!(
                "key hash {} appears twice (tenants {first:?} and {tenant:?}; hashes are \
                 compared in any letter case)",
                short(&digest)
            ));
        }
        if self.operator == Some(digest) {
            return Err(format!(
                "the key of tenant {tenant:?} (hash {}) is the operator token {TOKEN_VAR}: one \
                 secret cannot be scoped to all tenants and to one",
                short(&digest)
            ));
        }
        self.tenant_keys.push((digest, tenant));
        Ok(self)
    }

    /// True when no credential is configured (the API is open).
    pub fn is_open(&self) -> bool {
        self.operator.is_none() && self.tenant_keys.is_empty()
    }

    /// True when an operator token is configured.
    pub fn has_operator_token(&self) -> bool {
        self.operator.is_some()
    }

    /// How many tenant keys are configured.
    pub fn tenant_key_count(&self) -> usize {
        self.tenant_keys.len()
    }

    /// Reads [`TOKEN_VAR`] and [`API_KEYS_VAR`] from the process environment. This reads the
    /// credentials only; a process serving the API uses [`ResolvedAuth::from_env`], which also
    /// applies [`AUTH_MODE_VAR`] and refuses to run without credentials.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(jobs_core::Env::from_process().pairs())
    }

    /// Reads the two variables from `(name, value)` pairs. A blank value counts as unset; the
    /// token is trimmed; `{}` configures no keys; an ambiguous key configuration (the same hash
    /// twice in any letter case, a key equal to the operator token) is refused.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_map(&collect(vars))
    }

    fn from_map(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = AuthConfig::default();
        if let Some(token) = vars
            .get(TOKEN_VAR)
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
        {
            config = config.with_operator_token(token);
        }
        if let Some(raw) = vars.get(API_KEYS_VAR).filter(|t| !t.trim().is_empty()) {
            let fail = |why: String| ConfigError {
                variable: API_KEYS_VAR.to_owned(),
                expected: format!(r#"JSON {{"<sha256 hex of key>": "<tenant>"}} ({why})"#),
                got: "<redacted>".to_owned(),
            };
            let KeyEntries(entries) =
                serde_json::from_str(raw).map_err(|e| fail(json_error(&e)))?;
            for (hash, tenant) in entries {
                config = config.with_tenant_key_hash(&hash, tenant).map_err(fail)?;
            }
        }
        Ok(config)
    }

    /// The scope of a request with these headers, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<TenantScope, ApiError> {
        if self.is_open() {
            return Ok(TenantScope::All);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, secret) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
            })
            .filter(|s| !s.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        self.scope_of_digest(&digest(presented))
            .ok_or_else(ApiError::unauthorized)
    }

    /// The scope of a credential by its digest, compared against every configured credential in
    /// constant time (no early exit); `None` when none matches.
    pub(crate) fn scope_of_digest(&self, presented: &Digest32) -> Option<TenantScope> {
        let mut scope = None;
        if let Some(op) = &self.operator {
            if bool::from(op.ct_eq(presented)) {
                scope = Some(TenantScope::All);
            }
        }
        // Compare against every key, without stopping at a match.
        for (key, tenant) in &self.tenant_keys {
            if bool::from(key.ct_eq(presented)) && scope.is_none() {
                scope = Some(TenantScope::Tenant(tenant.clone()));
            }
        }
        scope
    }

    /// Every configured credential's digest with its scope (the dashboard's sessions name the
    /// credential they were opened with by a keyed hash of its digest, see `ui::session`).
    pub(crate) fn credentials(&self) -> impl Iterator<Item = (&Digest32, TenantScope)> {
        self.operator.iter().map(|d| (d, TenantScope::All)).chain(
            self.tenant_keys
                .iter()
                .map(|(d, t)| (d, TenantScope::Tenant(t.clone()))),
        )
    }
}

fn collect<I, K, V>(vars: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    vars.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// `ASYNC_JOBS_AUTH`: whether a process serving the API requires credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// At least one credential must be configured (the default).
    #[default]
    Required,
    /// The explicit opt-out: the API runs without credentials (for a private network).
    None,
}

impl AuthMode {
    /// `required` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::None => "none",
        }
    }

    /// Reads [`AUTH_MODE_VAR`] from `(name, value)` pairs: `required` or `none` (any letter case,
    /// surrounding whitespace ignored); unset or blank is `required`; anything else is a
    /// [`ConfigError`] naming the variable.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_map(&collect(vars))
    }

    fn from_map(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let Some(raw) = vars.get(AUTH_MODE_VAR) else {
            return Ok(AuthMode::Required);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "required" => Ok(AuthMode::Required),
            "none" => Ok(AuthMode::None),
            _ => Err(ConfigError {
                variable: AUTH_MODE_VAR.to_owned(),
                expected: "required (the default: credentials in ASYNC_JOBS_ENQUEUE_AUTH_TOKEN or \
                           ASYNC_JOBS_API_KEYS) or none (no credentials, private network only)"
                    .to_owned(),
                got: raw.chars().take(200).collect(),
            }),
        }
    }
}

/// Which process serves the API, and where: decides whether it may run without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// `async-jobs api`, or a service mounting the router: credentials required
    /// unless `ASYNC_JOBS_AUTH=none`.
    Api {
        /// The listen address.
        addr: SocketAddr,
    },
    /// `async-jobs dev`: open without credentials on a loopback address only.
    Dev {
        /// The listen address.
        addr: SocketAddr,
    },
}

impl Serving {
    /// The listen address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Serving::Api { addr } | Serving::Dev { addr } => addr,
        }
    }
}

/// True for 127.0.0.0/8, `::1` and `::ffff:127.x.y.z`: reachable from this host only.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Why a process may not serve the API with the configured authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A malformed or contradictory setting (names the variable).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No credential is configured, and running open was not chosen (or is not allowed here).
    #[error(
        "refusing to serve the API on {addr} without credentials{why}: set \
         ASYNC_JOBS_ENQUEUE_AUTH_TOKEN (operator token) or ASYNC_JOBS_API_KEYS (tenant keys), or \
         ASYNC_JOBS_AUTH=none to run it open on purpose (private network only)",
        why = if *.dev { " (async-jobs dev runs open only on a loopback address)" } else { "" }
    )]
    NoCredentials {
        /// The listen address.
        addr: SocketAddr,
        /// Whether it is `async-jobs dev` on a non-loopback address.
        dev: bool,
    },
}

/// How the API is protected once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InForce {
    /// Credentials are required (operator token, tenant keys or both).
    Credentials,
    /// Open because `ASYNC_JOBS_AUTH=none`.
    OptedOut,
    /// Open because it is `async-jobs dev` on a loopback address with no credentials.
    DevLoopback,
}

/// The authentication a process serves the API with: the one resolution used by the processes
/// and by `--print-config`.
#[derive(Debug, Clone)]
pub struct ResolvedAuth {
    config: AuthConfig,
    in_force: InForce,
    addr: SocketAddr,
}

impl ResolvedAuth {
    /// Resolves from the process environment (see [`ResolvedAuth::from_vars`]).
    pub fn from_env(serving: Serving) -> Result<Self, AuthError> {
        Self::from_vars(jobs_core::Env::from_process().pairs(), serving)
    }

    /// Resolves [`AUTH_MODE_VAR`], [`TOKEN_VAR`] and [`API_KEYS_VAR`] for `serving`: with a
    /// credential, it is required; without one, the API is open only with `ASYNC_JOBS_AUTH=none`
    /// or for `async-jobs dev` on a loopback address, else [`AuthError::NoCredentials`].
    /// `ASYNC_JOBS_AUTH=none` with a credential configured is refused.
    pub fn from_vars<I, K, V>(vars: I, serving: Serving) -> Result<Self, AuthError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = collect(vars);
        let mode = AuthMode::from_map(&vars)?;
        let config = AuthConfig::from_map(&vars)?;
        let addr = serving.addr();
        let in_force = match (mode, config.is_open()) {
            (AuthMode::None, false) => {
                return Err(ConfigError {
                    variable: AUTH_MODE_VAR.to_owned(),
                    expected: format!(
                        "required when {TOKEN_VAR} or {API_KEYS_VAR} is set (none means the API \
                         runs without credentials: unset them, or drop {AUTH_MODE_VAR})"
                    ),
                    got: "none".to_owned(),
                }
                .into())
            }
            (AuthMode::None, true) => InForce::OptedOut,
            (AuthMode::Required, false) => InForce::Credentials,
            (AuthMode::Required, true) => match serving {
                Serving::Dev { addr } if is_loopback(addr) => InForce::DevLoopback,
                Serving::Dev { addr } => return Err(AuthError::NoCredentials { addr, dev: true }),
                Serving::Api { addr } => return Err(AuthError::NoCredentials { addr, dev: false }),
            },
        };
        Ok(ResolvedAuth {
            config,
            in_force,
            addr,
        })
    }

    /// How the API is protected.
    pub fn in_force(&self) -> InForce {
        self.in_force
    }

    /// The credentials to serve with.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The credentials to serve with, by value.
    pub fn into_config(self) -> AuthConfig {
        self.config
    }

    fn warning(&self) -> Option<String> {
        match self.in_force {
            InForce::Credentials => None,
            InForce::OptedOut => Some(format!(
                "ASYNC_JOBS_AUTH=none: the API on {} is open, with no credentials: anyone who can \
                 reach it sees and changes every tenant's jobs (private network only)",
                self.addr
            )),
            InForce::DevLoopback => Some(format!(
                "async-jobs dev: the API on {} is open, with no credentials, loopback only (this \
                 host); set ASYNC_JOBS_ENQUEUE_AUTH_TOKEN or ASYNC_JOBS_API_KEYS to require them",
                self.addr
            )),
        }
    }

    /// The `auth` section of `--print-config`: `{"mode": "required", "operator_token": true,
    /// "tenant_keys": 3}`, or `"mode": "none"` / `"open (dev, loopback only)"` with a `warning`.
    /// Never a secret or a hash.
    pub fn report(&self) -> serde_json::Value {
        let mode = match self.in_force {
            InForce::Credentials => "required",
            InForce::OptedOut => "none",
            InForce::DevLoopback => "open (dev, loopback only)",
        };
        let mut out = serde_json::json!({
            "mode": mode,
            "operator_token": self.config.has_operator_token(),
            "tenant_keys": self.config.tenant_key_count(),
        });
        if let (Some(warning), Some(obj)) = (self.warning(), out.as_object_mut()) {
            obj.insert("warning".to_owned(), warning.into());
        }
        out
    }

    /// Logs the authentication in force, once at start-up: an info line when credentials are
    /// required, a warning when the API is open.
    pub fn log(&self) {
        match self.warning() {
            None => tracing::info!(
                operator_token = self.config.has_operator_token(),
                tenant_keys = self.config.tenant_key_count(),
                "authentication required on /jobs"
            ),
            Some(warning) => tracing::warn!("{warning}"),
        }
    }
}

/// The authenticated caller's scope (extractor for the `/jobs` handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub TenantScope);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state.auth().authenticate(&parts.headers).map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn scopes_follow_the_credential() {
        let cfg = AuthConfig::operator_token("root")
            .with_tenant_key("ka", "a")
            .with_tenant_key_hash(&hash_key("kb"), "b")
            .unwrap();
        assert_eq!(
            cfg.authenticate(&headers("Bearer root")).unwrap(),
            TenantScope::All
        );
        assert_eq!(
            cfg.authenticate(&headers("bearer ka")).unwrap(),
            TenantScope::Tenant("a".into())
        );
        assert_eq!(
            cfg.authenticate(&headers("Bearer kb")).unwrap(),
            TenantScope::Tenant("b".into())
        );
        for bad in ["Bearer nope", "Basic root", "Bearer ", "root", "Bearer roo"] {
            assert_eq!(
                cfg.authenticate(&headers(bad)).unwrap_err().code,
                "unauthorized",
                "{bad}"
            );
        }
        assert!(cfg.authenticate(&HeaderMap::new()).is_err());
        assert_eq!(
            AuthConfig::open().authenticate(&HeaderMap::new()).unwrap(),
            TenantScope::All
        );
    }

    #[test]
    fn env_parsing_names_the_variable() {
        let ok =
            AuthConfig::from_vars([(API_KEYS_VAR, format!(r#"{{"{}": "a"}}"#, hash_key("k")))])
                .unwrap();
        assert_eq!(
            ok.authenticate(&headers("Bearer k")).unwrap(),
            TenantScope::Tenant("a".into())
        );
        assert!(AuthConfig::from_vars([(TOKEN_VAR, "")]).unwrap().is_open());
        for bad in [
            "{",
            r#"{"zz": "a"}"#,
            r#"{"abcd": "a"}"#,
            &format!(r#"{{"{}": ""}}"#, hash_key("k")),
        ] {
            let err = AuthConfig::from_vars([(API_KEYS_VAR, bad)]).unwrap_err();
            assert_eq!(err.variable, API_KEYS_VAR);
            assert!(!err.to_string().contains('\n'));
        }
    }

    fn keys(pairs: &[(&str, &str)]) -> String {
        let body: Vec<String> = pairs
            .iter()
            .map(|(h, t)| format!(r#""{h}": "{t}""#))
            .collect();
        format!("{{{}}}", body.join(", "))
    }

    fn api() -> Serving {
        Serving::Api {
            addr: "0.0.0.0:8080".parse().unwrap(),
        }
    }

    fn dev(addr: &str) -> Serving {
        Serving::Dev {
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn a_blank_token_is_unset_and_a_configured_token_is_trimmed() {
        for blank in ["", "   ", "\t \n"] {
            assert!(AuthConfig::from_vars([(TOKEN_VAR, blank)])
                .unwrap()
                .is_open());
            let err = ResolvedAuth::from_vars([(TOKEN_VAR, blank)], api()).unwrap_err();
            assert!(matches!(err, AuthError::NoCredentials { .. }), "{err}");
        }
        let cfg = AuthConfig::from_vars([(TOKEN_VAR, "  s3cret \n")]).unwrap();
        assert_eq!(
            cfg.authenticate(&headers("Bearer s3cret")).unwrap(),
            TenantScope::All
        );
        assert!(cfg.authenticate(&headers("Bearer  s3cret ")).is_ok());
    }

    #[test]
    fn empty_keys_are_no_keys() {
        for empty in ["{}", " { } ", "   "] {
            let cfg = AuthConfig::from_vars([(API_KEYS_VAR, empty)]).unwrap();
            assert!(cfg.is_open(), "{empty:?}");
            let err = ResolvedAuth::from_vars([(API_KEYS_VAR, empty)], api()).unwrap_err();
            assert!(matches!(err, AuthError::NoCredentials { .. }), "{err}");
        }
    }

    #[test]
    fn the_same_hash_twice_in_any_case_is_refused_without_showing_it() {
        let h = hash_key("k");
        let upper = h.to_ascii_uppercase();
        for raw in [
            keys(&[(&upper, "a"), (&h, "b")]),
            keys(&[(&upper, "a"), (&h, "a")]),
            keys(&[(&h, "a"), (&h, "b")]),
        ] {
            let err = AuthConfig::from_vars([(API_KEYS_VAR, raw.as_str())]).unwrap_err();
            assert_eq!(err.variable, API_KEYS_VAR);
            let msg = err.to_string();
            assert!(msg.contains("twice"), "{msg}");
            assert!(!msg.contains(&h) && !msg.contains(&upper), "{msg}");
        }
        // Distinct keys are fine.
        let ok = keys(&[(&h, "a"), (&hash_key("k2"), "a")]);
        assert_eq!(
            AuthConfig::from_vars([(API_KEYS_VAR, ok.as_str())])
                .unwrap()
                .tenant_key_count(),
            2
        );
    }

    #[test]
    fn a_tenant_key_equal_to_the_operator_token_is_refused() {
        let raw = keys(&[(&hash_key("root").to_ascii_uppercase(), "a")]);
        for token in ["root", " root "] {
            let err = AuthConfig::from_vars([(TOKEN_VAR, token), (API_KEYS_VAR, raw.as_str())])
                .unwrap_err();
            assert_eq!(err.variable, API_KEYS_VAR);
            let msg = err.to_string();
            assert!(msg.contains(TOKEN_VAR), "{msg}");
            assert!(
                !msg.contains("root") && !msg.contains(&hash_key("root")),
                "{msg}"
            );
        }
    }

    #[test]
    fn key_errors_never_show_the_value() {
        // A clear-text key pasted where its hash belongs, a string, a number.
        for (raw, secret) in [
            (r#"{"my-clear-secret": "a"}"#, "my-clear-secret"),
            (r#""my-clear-secret""#, "my-clear-secret"),
            (r#"{"my-clear-secret": 5}"#, "my-clear-secret"),
        ] {
            let err = AuthConfig::from_vars([(API_KEYS_VAR, raw)]).unwrap_err();
            assert_eq!(err.variable, API_KEYS_VAR);
            assert!(!err.to_string().contains(secret), "{err}");
        }
    }

    #[test]
    fn auth_mode_parses_required_and_none_only() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(AuthMode::from_vars(none).unwrap(), AuthMode::Required);
        for (raw, want) in [
            ("required", AuthMode::Required),
            ("", AuthMode::Required),
            (" Required ", AuthMode::Required),
            ("none", AuthMode::None),
            ("NONE", AuthMode::None),
        ] {
            assert_eq!(
                AuthMode::from_vars([(AUTH_MODE_VAR, raw)]).unwrap(),
                want,
                "{raw:?}"
            );
        }
        for bad in ["off", "false", "open", "no", "required,none"] {
            let err = AuthMode::from_vars([(AUTH_MODE_VAR, bad)]).unwrap_err();
            assert_eq!(err.variable, AUTH_MODE_VAR, "{bad}");
            let err =
                ResolvedAuth::from_vars([(AUTH_MODE_VAR, bad)], dev("127.0.0.1:8080")).unwrap_err();
            assert!(err.to_string().contains(AUTH_MODE_VAR), "{err}");
        }
    }

    #[test]
    fn none_with_credentials_is_a_contradiction() {
        let raw = keys(&[(&hash_key("k"), "a")]);
        for creds in [(TOKEN_VAR, "root"), (API_KEYS_VAR, raw.as_str())] {
            let err = ResolvedAuth::from_vars([(AUTH_MODE_VAR, "none"), creds], api()).unwrap_err();
            match err {
                AuthError::Config(c) => assert_eq!(c.variable, AUTH_MODE_VAR),
                other => panic!("{other}"),
            }
        }
        // A blank token or `{}` is no credential: no contradiction.
        let open = ResolvedAuth::from_vars(
            [
                (AUTH_MODE_VAR, "none"),
                (TOKEN_VAR, " "),
                (API_KEYS_VAR, "{}"),
            ],
            api(),
        )
        .unwrap();
        assert_eq!(open.in_force(), InForce::OptedOut);
    }

    #[test]
    fn resolution_follows_the_process_and_the_address() {
        let no_vars: [(&str, &str); 0] = [];
        // api: refused without credentials, naming every way out.
        let msg = ResolvedAuth::from_vars(no_vars, api())
            .unwrap_err()
            .to_string();
        for needle in [
            TOKEN_VAR,
            API_KEYS_VAR,
            "ASYNC_JOBS_AUTH=none",
            "0.0.0.0:8080",
        ] {
            assert!(msg.contains(needle), "{needle} in {msg}");
        }
        assert!(!msg.contains('\n'));
        // dev: open on loopback only.
        for addr in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.2:1",
            "[::ffff:127.0.0.1]:80",
        ] {
            let r = ResolvedAuth::from_vars(no_vars, dev(addr)).unwrap();
            assert_eq!(r.in_force(), InForce::DevLoopback, "{addr}");
            assert_eq!(r.report()["mode"], "open (dev, loopback only)");
            assert!(r.report()["warning"].is_string());
            assert!(r.config().is_open());
        }
        for addr in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080"] {
            let err = ResolvedAuth::from_vars(no_vars, dev(addr)).unwrap_err();
            assert!(
                matches!(err, AuthError::NoCredentials { dev: true, .. }),
                "{addr}: {err}"
            );
            assert!(err.to_string().contains("loopback"), "{err}");
        }
        // Opting out works anywhere.
        for serving in [api(), dev("0.0.0.0:8080")] {
            let r = ResolvedAuth::from_vars([(AUTH_MODE_VAR, "none")], serving).unwrap();
            assert_eq!(r.in_force(), InForce::OptedOut);
            assert_eq!(r.report()["mode"], "none");
            assert!(r.report()["warning"].is_string());
        }
        // Credentials are required wherever they are configured, loopback dev included.
        let raw = keys(&[
            (&hash_key("a"), "a"),
            (&hash_key("b"), "b"),
            (&hash_key("c"), "c"),
        ]);
        for serving in [api(), dev("127.0.0.1:8080")] {
            let r = ResolvedAuth::from_vars(
                [(TOKEN_VAR, "root"), (API_KEYS_VAR, raw.as_str())],
                serving,
            )
            .unwrap();
            assert_eq!(r.in_force(), InForce::Credentials);
            assert_eq!(
                r.report(),
                serde_json::json!({"mode": "required", "operator_token": true, "tenant_keys": 3})
            );
            assert!(r.config().authenticate(&HeaderMap::new()).is_err());
        }
    }
}
