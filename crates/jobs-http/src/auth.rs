//! Authentication: none, one operator bearer token, and tenant-scoped API keys.
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
//!
//! With neither set, the API is open (every caller has [`TenantScope::All`]).

use std::collections::BTreeMap;
use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jobs_core::{ConfigError, TenantScope};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The operator token variable (kept from the original service).
pub const TOKEN_VAR: &str = "ASYNC_JOBS_ENQUEUE_AUTH_TOKEN";
/// The tenant API keys variable.
pub const API_KEYS_VAR: &str = "ASYNC_JOBS_API_KEYS";

type Digest32 = [u8; 32];

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

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

impl AuthConfig {
    /// No authentication: every caller may see and change every tenant's jobs.
    pub fn open() -> Self {
        AuthConfig::default()
    }

    /// Requires the operator `token`, which gives [`TenantScope::All`].
    pub fn operator_token(token: &str) -> Self {
        AuthConfig::default().with_operator_token(token)
    }

    /// Sets the operator token.
    pub fn with_operator_token(mut self, token: &str) -> Self {
        self.operator = Some(digest(token));
        self
    }

    /// Adds an API key (given in clear; only its digest is kept) confined to `tenant`.
    pub fn with_tenant_key(mut self, key: &str, tenant: impl Into<String>) -> Self {
        self.tenant_keys.push((digest(key), tenant.into()));
        self
    }

    /// Adds an API key by its SHA-256 hex digest, confined to `tenant`.
    pub fn with_tenant_key_hash(
        mut self,
        sha256_hex: &str,
        tenant: impl Into<String>,
    ) -> Result<Self, String> {
        let bytes = hex::decode(sha256_hex.trim())
            .map_err(|e| format!("key hash {sha256_hex:?} is not hex: {e}"))?;
        let digest: Digest32 = bytes
            .try_into()
            .map_err(|_| format!("key hash {sha256_hex:?} is not 64 hex digits (a SHA-256)"))?;
        let tenant = tenant.into();
        if tenant.trim().is_empty() {
            return Err(format!("key hash {sha256_hex:?} maps to an empty tenant"));
        }
        self.tenant_keys.push((digest, tenant));
        Ok(self)
    }

    /// True when no credential is configured (the API is open).
    pub fn is_open(&self) -> bool {
        self.operator.is_none() && self.tenant_keys.is_empty()
    }

    /// Reads [`TOKEN_VAR`] and [`API_KEYS_VAR`] from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the two variables from `(name, value)` pairs. An empty value counts as unset.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut config = AuthConfig::default();
        if let Some(token) = vars.get(TOKEN_VAR).filter(|t| !t.trim().is_empty()) {
            config = config.with_operator_token(token);
        }
        if let Some(raw) = vars.get(API_KEYS_VAR).filter(|t| !t.trim().is_empty()) {
            let fail = |why: String| ConfigError {
                variable: API_KEYS_VAR.to_owned(),
                expected: format!(r#"JSON {{"<sha256 hex of key>": "<tenant>"}} ({why})"#),
                got: "<redacted>".to_owned(),
            };
            let map: BTreeMap<String, String> =
                serde_json::from_str(raw).map_err(|e| fail(e.to_string()))?;
            for (hash, tenant) in map {
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
        let presented = digest(presented);
        let mut scope = None;
        if let Some(op) = &self.operator {
            if bool::from(op.ct_eq(&presented)) {
                scope = Some(TenantScope::All);
            }
        }
        // Compare against every key, without stopping at a match.
        for (key, tenant) in &self.tenant_keys {
            if bool::from(key.ct_eq(&presented)) && scope.is_none() {
                scope = Some(TenantScope::Tenant(tenant.clone()));
            }
        }
        scope.ok_or_else(ApiError::unauthorized)
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
}
