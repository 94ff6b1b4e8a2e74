//! The dashboard's session cookie and its CSRF tokens.
//!
//! A login exchanges a credential (the operator token or a tenant key) for a cookie
//! `async_jobs_session=v1.<expires>.<nonce>.<credential>.<mac>`:
//!
//! - `expires`: Unix seconds; the session ends then ([`SESSION_TTL`]).
//! - `nonce`: 16 random bytes, the session's identity: its CSRF token is derived from it.
//! - `credential`: the first 16 bytes of `HMAC(key, "credential" ‖ SHA-256(secret))`, naming the
//!   credential the session was opened with without carrying it: neither the secret nor its hash
//!   can be read back from a cookie. Each request matches it against the credentials configured
//!   *now*, so removing a key ends its sessions at once, and a session's scope is always the
//!   scope its credential has.
//! - `mac`: `HMAC(key, everything before it)`: a cookie cannot be forged or altered without the
//!   key.
//!
//! The key is [`SessionKey`]: 32 random bytes per process unless configured
//! (`ASYNC_JOBS_UI_SESSION_KEY`, so every API replica accepts the others' sessions). The CSRF
//! token of a session is `HMAC(key, "csrf" ‖ nonce)`, sent in every form and checked on every
//! POST, with the `Origin` and `Sec-Fetch-Site` headers checked as well.

use std::fmt;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use jobs_core::TenantScope;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::auth::{AuthConfig, Digest32};

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "async_jobs_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The shortest configured session key, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The key that signs the dashboard's session cookies and derives their CSRF tokens.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    /// 32 random bytes from the operating system: sessions last as long as the process (and are
    /// accepted by this process only). `None` if the OS has no randomness to give.
    pub fn random() -> Option<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).ok()?;
        Some(SessionKey(key))
    }

    /// A key from configured secret text of at least [`MIN_KEY_BYTES`] bytes (hashed to 32
    /// bytes), so that every replica of the API signs and accepts the same sessions.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "at least {MIN_KEY_BYTES} bytes of random text (e.g. `openssl rand -hex 32`), got {}",
                secret.len()
            ));
        }
        Ok(SessionKey(mac(
            b"async-jobs ui session key",
            secret.as_bytes(),
        )))
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The name a session gives the credential with `digest` (see the module docs).
    fn credential_id(&self, digest: &Digest32) -> [u8; 16] {
        first16(&self.mac(&[b"credential", digest]))
    }

    /// The name of "no credential" (the API runs open).
    fn open_id(&self) -> [u8; 16] {
        first16(&self.mac(&[b"open"]))
    }

    /// A new session cookie value for the credential `secret` (empty when the API is open), or
    /// `None` when `auth` does not accept it. Returns the value and its scope.
    pub(crate) fn login(
        &self,
        auth: &AuthConfig,
        secret: &str,
        now_unix: u64,
    ) -> Option<(String, TenantScope)> {
        let secret = secret.trim();
        let (credential, scope) = if auth.is_open() {
            (self.open_id(), TenantScope::All)
        } else if secret.is_empty() {
            return None;
        } else {
            let digest = crate::auth::digest(secret);
            let scope = auth.scope_of_digest(&digest)?;
            (self.credential_id(&digest), scope)
        };
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).ok()?;
        let expires = now_unix.saturating_add(SESSION_TTL.as_secs());
        let body = format!(
            "v1.{expires}.{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(credential)
        );
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&[body.as_bytes()]));
        Some((format!("{body}.{tag}"), scope))
    }

    /// The session a cookie value carries, if it is intact, unexpired and its credential is
    /// still configured.
    pub(crate) fn open(&self, auth: &AuthConfig, value: &str, now_unix: u64) -> Option<Session> {
        let (body, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let want = self.mac(&[body.as_bytes()]);
        if !bool::from(want.as_slice().ct_eq(tag.as_slice())) {
            return None;
        }
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(nonce), Some(credential), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        if expires <= now_unix {
            return None;
        }
        let nonce: [u8; 16] = URL_SAFE_NO_PAD.decode(nonce).ok()?.try_into().ok()?;
        let credential: [u8; 16] = URL_SAFE_NO_PAD.decode(credential).ok()?.try_into().ok()?;
        let scope = if auth.is_open() {
            bool::from(self.open_id().ct_eq(&credential)).then_some(TenantScope::All)?
        } else {
            // Against every credential, without stopping at a match.
            let mut found = None;
            for (digest, scope) in auth.credentials() {
                if bool::from(self.credential_id(digest).ct_eq(&credential)) && found.is_none() {
                    found = Some(scope);
                }
            }
            found?
        };
        let csrf = URL_SAFE_NO_PAD.encode(self.mac(&[b"csrf", &nonce]));
        Some(Session {
            scope,
            csrf,
            expires,
        })
    }
}

fn first16(bytes: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(data);
    m.finalize().into_bytes().into()
}

/// A signed-in dashboard user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Whose jobs the session sees: its credential's scope, as on the JSON API.
    pub scope: TenantScope,
    /// The session's CSRF token, sent back in every form.
    pub csrf: String,
    /// Unix seconds when it ends.
    pub expires: u64,
}

impl Session {
    /// True when `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session cookie's value in a request, if it carries exactly one. Two or more (a cookie
/// planted for a parent domain or a narrower path beside ours) open no session: choosing one
/// would let a sibling site fix the session a victim works in.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value);
    let first = found.next()?;
    match found.next() {
        Some(_) => None,
        None => Some(first),
    }
}

/// The `Set-Cookie` value that stores `value` for `path`: `Secure` (browsers also accept it from
/// `http://localhost` and `http://127.0.0.1`), `HttpOnly` (no script reads it), `SameSite=Strict`
/// (no other site's request carries it).
pub(crate) fn set_cookie(value: &str, path: &str) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie(path: &str) -> String {
    format!("{COOKIE}=; Path={path}; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// Whether a state-changing request comes from the dashboard's own pages: `Sec-Fetch-Site`, when
/// the browser sends it, must be `same-origin` (or `none`: typed by the user), and `Origin`, when
/// sent, must name the host the request was sent to (`Host`, or the `X-Forwarded-Host` a
/// reverse proxy that rewrites `Host` passes on). Browsers send at least one of them with
/// every form POST; a request with neither (not a browser) still needs the CSRF token.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match text(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let authority = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            // The host the browser addressed: `Host`, or, behind a proxy that rewrites it, the
            // first `X-Forwarded-Host` (a cross-site form cannot set that header, and the CSRF
            // token is checked regardless).
            let forwarded = text(header::HeaderName::from_static("x-forwarded-host"))
                .and_then(|v| v.split(',').next())
                .map(str::trim);
            [text(header::HOST), forwarded]
                .into_iter()
                .flatten()
                .filter(|h| !h.is_empty())
                .any(|host| authority.is_some_and(|a| a.eq_ignore_ascii_case(host)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> AuthConfig {
        AuthConfig::operator_token("root").with_tenant_key("ka", "a")
    }

    /// Whether `cookie` shows `secret` or its SHA-256: as text; the digest's first 8 hex digits
    /// (what logs print of a key) in either case; either of them base64-encoded (URL-safe or
    /// standard alphabet) anywhere in the text; or either of them inside the bytes of any
    /// base64 part. The secret is long enough that random base64 cannot spell any of these by
    /// chance (a two-letter key did, once in a few dozen runs).
    fn shows(cookie: &str, secret: &str) -> bool {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let digest = crate::auth::digest(secret);
        let hex = crate::auth::hash_key(secret);
        let holds = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        let mut encoded = [secret.as_bytes(), &digest[..]]
            .into_iter()
            .flat_map(|bytes| [URL_SAFE_NO_PAD.encode(bytes), STANDARD_NO_PAD.encode(bytes)]);
        cookie.contains(secret)
            || cookie.to_ascii_lowercase().contains(&hex[..8])
            || encoded.any(|e| cookie.contains(&e))
            || cookie.split('.').any(|part| {
                URL_SAFE_NO_PAD.decode(part).is_ok_and(|bytes| {
                    holds(&bytes, secret.as_bytes()) || holds(&bytes, &digest[..8])
                })
            })
    }

    #[test]
    fn a_session_carries_its_credential_scope_and_nothing_secret() {
        let secret = "tenant-a-session-test-key";
        let keyed = AuthConfig::operator_token("root").with_tenant_key(secret, "a");
        // The check sees a leak in each form it looks for.
        let d = crate::auth::digest(secret);
        let hex = crate::auth::hash_key(secret);
        let std = base64::engine::general_purpose::STANDARD;
        let mut blob = b"nonce-".to_vec();
        blob.extend_from_slice(&d);
        for leaky in [
            format!("v1.1.{secret}.x"),
            format!("v1.1.{}.x", &hex[..8]),
            format!("v1.1.{}.x", hex[..8].to_ascii_uppercase()),
            format!("v1.1.{}.x", URL_SAFE_NO_PAD.encode(secret)),
            format!("v1.1.{}.x", std.encode(secret)),
            format!("v1.1.{}.x", URL_SAFE_NO_PAD.encode(d)),
            format!("v1.1.{}.x", std.encode(d)),
            format!("v1.1.AAAAAA{}.x", URL_SAFE_NO_PAD.encode(d)),
            format!("v1.1.{}.x", URL_SAFE_NO_PAD.encode(&blob)),
        ] {
            assert!(shows(&leaky, secret), "{leaky}");
        }
        let key = SessionKey::random().unwrap();
        for _ in 0..64 {
            let (cookie, scope) = key.login(&keyed, &format!(" {secret} "), 1000).unwrap();
            assert_eq!(scope, TenantScope::Tenant("a".into()));
            assert!(!shows(&cookie, secret), "{cookie}");
            assert_eq!(
                key.open(&keyed, &cookie, 1001).unwrap().scope,
                TenantScope::Tenant("a".into())
            );
        }
        let (cookie, _) = key.login(&auth(), " ka ", 1000).unwrap();
        let s = key.open(&auth(), &cookie, 1001).unwrap();
        assert_eq!(s.scope, TenantScope::Tenant("a".into()));
        assert!(s.csrf_matches(&s.csrf) && !s.csrf_matches("x"));
        let (op, scope) = key.login(&auth(), "root", 1000).unwrap();
        assert_eq!(scope, TenantScope::All);
        assert_eq!(
            key.open(&auth(), &op, 1001).unwrap().scope,
            TenantScope::All
        );
        // Two sessions of one credential have different CSRF tokens.
        let (again, _) = key.login(&auth(), "ka", 1000).unwrap();
        assert_ne!(key.open(&auth(), &again, 1001).unwrap().csrf, s.csrf);
    }

    #[test]
    fn wrong_credentials_and_altered_expired_or_revoked_cookies_are_refused() {
        let key = SessionKey::random().unwrap();
        assert!(key.login(&auth(), "nope", 1000).is_none());
        assert!(key.login(&auth(), "  ", 1000).is_none());
        let (cookie, _) = key.login(&auth(), "ka", 1000).unwrap();
        let expires = 1000 + SESSION_TTL.as_secs();
        assert!(key.open(&auth(), &cookie, expires).is_none(), "expired");
        let other = SessionKey::random().unwrap();
        assert!(other.open(&auth(), &cookie, 1001).is_none(), "another key");
        let forged = cookie.replacen(&expires.to_string(), &(expires + 999).to_string(), 1);
        assert!(key.open(&auth(), &forged, 1001).is_none(), "altered");
        for junk in ["", ".", "v1.1.2.3.4", "a.b", &"x".repeat(5000)] {
            assert!(key.open(&auth(), junk, 1001).is_none(), "{junk}");
        }
        // The key removed from the configuration: its session ends.
        let without = AuthConfig::operator_token("root");
        assert!(key.open(&without, &cookie, 1001).is_none());
        // An open API's session is not one of an API with credentials.
        let (open, scope) = key.login(&AuthConfig::open(), "", 1000).unwrap();
        assert_eq!(scope, TenantScope::All);
        assert!(key.open(&AuthConfig::open(), &open, 1001).is_some());
        assert!(key.open(&auth(), &open, 1001).is_none());
    }

    #[test]
    fn configured_keys_are_long_and_shared_by_replicas() {
        assert!(SessionKey::from_secret("short").is_err());
        let secret = "0123456789abcdef0123456789abcdef";
        let a = SessionKey::from_secret(secret).unwrap();
        let b = SessionKey::from_secret(&format!(" {secret}\n")).unwrap();
        let (cookie, _) = a.login(&auth(), "root", 1000).unwrap();
        assert!(b.open(&auth(), &cookie, 1001).is_some());
    }

    #[test]
    fn cookies_are_found_among_others_and_set_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; async_jobs_session=v1.x; b=2"),
        );
        assert_eq!(cookie_value(&h), Some("v1.x"));
        // A second session cookie (planted by a sibling site for a parent domain or a narrower
        // path) opens no session instead of choosing one.
        h.append(
            header::COOKIE,
            HeaderValue::from_static("async_jobs_session=v1.planted"),
        );
        assert_eq!(cookie_value(&h), None);
        let set = set_cookie("v", "/ui");
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
            assert!(set.contains(part), "{set}");
        }
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            same_origin(&h)
        };
        assert!(with(&[("host", "127.0.0.1:8080")]));
        assert!(with(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(!with(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ]));
        assert!(!with(&[("host", "a"), ("sec-fetch-site", "cross-site")]));
        assert!(!with(&[("host", "a"), ("sec-fetch-site", "same-site")]));
        assert!(!with(&[("origin", "null"), ("host", "a")]));
        // Behind a proxy that rewrites Host, the forwarded host the browser addressed.
        assert!(with(&[
            ("host", "backend:8080"),
            ("x-forwarded-host", "jobs.example.com, proxy.internal"),
            ("origin", "https://jobs.example.com")
        ]));
        assert!(!with(&[
            ("host", "backend:8080"),
            ("x-forwarded-host", "jobs.example.com"),
            ("origin", "https://evil.example")
        ]));
    }
}
