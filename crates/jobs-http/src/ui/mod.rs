//! The web dashboard: server-rendered HTML at `/ui`, over the same [`JobService`] and the same
//! credentials as the JSON API.
//!
//! [`crate::router`] serves it at `/ui`; [`router`] is the same dashboard alone, for a service
//! that mounts it elsewhere (its links follow the prefix it is mounted at). Pages:
//!
//! | page | shows / does |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login`, `POST /ui/logout` | sign in with the operator token or a tenant key; sign out |
//! | `GET /ui` | per use case: counts by status, in flight against the cap, pauses, the due backlog and the age of its oldest job, jobs finished and deadlines met/missed per minute (SVG charts), recent failures |
//! | `GET /ui/jobs` | jobs filtered by tenant, use case, status, type and creation time, with cursor paging |
//! | `GET /ui/jobs/{id}` | one job: payload as pretty JSON, attempts, last error, timeline; retry and cancel |
//! | `POST /ui/pauses` | pause or resume a use case (operator) |
//! | `GET`/`POST /ui/bulk-retry` | retry every dead job of a use case, after a confirmation page |
//! | `GET /ui/assets/…` | the stylesheet and the small script (live refresh), from the crate |
//!
//! **Who sees what.** A login exchanges the credential for a session cookie
//! ([`session`]: signed, `Secure; HttpOnly; SameSite=Strict`, 12 hours, never the secret itself);
//! every page resolves the session to the credential's [`TenantScope`] as configured *now* and
//! reads through the service with it, so a tenant key sees its own tenant's jobs only, on every
//! page, exactly as on the JSON API.
//!
//! **Forms.** Every state-changing request is a POST carrying the session's CSRF token, with the
//! `Origin` and `Sec-Fetch-Site` headers checked too; anything else is refused with a 403 page.
//!
//! **Markup.** `maud` templates escape every value they splice (a payload holding `<script>` is
//! shown as text). The pages carry a strict Content-Security-Policy: no inline script or style,
//! scripts and styles only from `/ui/assets/`, which the crate serves from `include_str!`: no
//! Node step, no CDN, nothing third-party. The script only refreshes the live parts of a page;
//! every page works without it.

mod chart;
mod pages;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jobs_core::{Activity, ActivityQuery, Backlog, JobService, StoreError, TenantScope};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::state::AppState;
pub use session::{Session, SessionKey};

/// How long an overview's data is reused for the same scope: live refresh from many open pages
/// reads the store at most this often.
const ACTIVITY_MAX_AGE: Duration = Duration::from_secs(5);
/// Most scopes whose overview data is kept.
const ACTIVITY_CACHE_ENTRIES: usize = 256;
/// Largest form body the dashboard reads.
const FORM_LIMIT: usize = 64 * 1024;

/// What the overview shows of one scope: the recent activity and the due backlog.
#[derive(Debug)]
pub(crate) struct Overview {
    pub(crate) activity: Activity,
    pub(crate) backlog: Backlog,
}

/// Overview data by tenant (`None`: every tenant), with when it was read.
type ActivityCache = HashMap<Option<String>, (Instant, Arc<Overview>)>;

/// The dashboard's part of the router state: the session key and the overview cache.
#[derive(Debug)]
pub struct UiState {
    key: Option<SessionKey>,
    activity: Mutex<ActivityCache>,
}

impl UiState {
    /// State with `key` (`None`: no session can be opened; the login page says so).
    pub fn new(key: Option<SessionKey>) -> Self {
        UiState {
            key,
            activity: Mutex::default(),
        }
    }

    /// The session key, if any.
    pub(crate) fn key(&self) -> Option<&SessionKey> {
        self.key.as_ref()
    }

    /// The overview's data for `scope` (optionally one tenant's), reused for
    /// [`ACTIVITY_MAX_AGE`].
    async fn overview(
        &self,
        service: &JobService,
        scope: &TenantScope,
        tenant: Option<String>,
    ) -> Result<Arc<Overview>, StoreError> {
        let tenant = match scope {
            TenantScope::Tenant(own) => Some(own.clone()),
            TenantScope::All => tenant,
        };
        let cached = self.cache().get(&tenant).cloned();
        if let Some((at, activity)) = cached {
            if at.elapsed() < ACTIVITY_MAX_AGE {
                return Ok(activity);
            }
        }
        let query = ActivityQuery {
            tenant_id: tenant.clone(),
            ..ActivityQuery::all_tenants()
        };
        let activity = service.activity(query, scope).await?;
        let backlog = service.backlog(tenant.clone(), scope).await?;
        let overview = Arc::new(Overview { activity, backlog });
        let mut cache = self.cache();
        if cache.len() >= ACTIVITY_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(tenant, (Instant::now(), overview.clone()));
        Ok(overview)
    }

    /// Drops the cached overviews (after an action changed jobs).
    pub(crate) fn forget(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ActivityCache> {
        self.activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for UiState {
    fn default() -> Self {
        UiState::new(SessionKey::random())
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The path the dashboard is mounted at (`/ui` inside [`crate::router`], `/async-jobs/ui` when
/// that is nested at `/async-jobs`, empty at the root), from the request's original path.
fn base_path(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let original = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(inner, |o| o.0.path());
    let base = if inner == "/" {
        original.trim_end_matches('/')
    } else {
        original.strip_suffix(inner).unwrap_or("")
    };
    let safe = base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if safe {
        base.to_owned()
    } else {
        String::new()
    }
}

/// Where the dashboard is: every page's links start with it.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub(crate) String);

impl Base {
    /// `self` + `path` (which starts with `/`).
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// The overview: the mount point itself (`/ui`), or `/` at the root.
    pub(crate) fn home(&self) -> String {
        match self.0.is_empty() {
            true => "/".to_owned(),
            false => self.0.clone(),
        }
    }

    /// The cookie's `Path`.
    fn cookie_path(&self) -> &str {
        if self.0.is_empty() {
            "/"
        } else {
            &self.0
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Base(base_path(parts)))
    }
}

/// A page request of a signed-in user; anyone else is sent to the login page.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) base: Base,
    pub(crate) session: Session,
}

impl Signed {
    pub(crate) fn scope(&self) -> &TenantScope {
        &self.session.scope
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let base = Base(base_path(parts));
        let session = session::cookie_value(&parts.headers)
            .and_then(|value| state.ui().key()?.open(state.auth(), value, unix_now()));
        match session {
            Some(session) => Ok(Signed { base, session }),
            None => Err(Redirect::to(&base.at("/login")).into_response()),
        }
    }
}

/// The CSRF token field every form carries.
#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// A form POST of a signed-in user, from the dashboard's own pages: the session's CSRF token
/// matches and the browser's `Origin` / `Sec-Fetch-Site` say same origin. Refused otherwise with
/// a 403 page, before the form's action runs.
pub(crate) struct Posted<T> {
    pub(crate) signed: Signed,
    pub(crate) form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let bytes = read_form(&signed.base, body).await?;
        let presented = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .ok()
            .and_then(|f| f.csrf);
        let csrf_ok = presented.is_some_and(|t| signed.session.csrf_matches(&t));
        if !csrf_ok || !session::same_origin(&parts.headers) {
            return Err(pages::forbidden(&signed.base, Some(&signed.session)));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            pages::error_page(
                &signed.base,
                Some(&signed.session),
                StatusCode::BAD_REQUEST,
                "Bad form",
                &format!("The form could not be read: {e}."),
            )
        })?;
        Ok(Posted { signed, form })
    }
}

async fn read_form(base: &Base, body: axum::body::Body) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        pages::error_page(
            base,
            None,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The form was larger than the dashboard accepts.",
        )
    })
}

/// The Content-Security-Policy of every dashboard response: nothing but this origin's own
/// scripts, styles and form targets; no inline script or style, no frames, no plug-ins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every dashboard response (pages are never cached: they hold tenant data).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

async fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's routes, relative to where it is mounted, over the router's state.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/retry", post(pages::retry))
        .route("/jobs/{id}/cancel", post(pages::cancel))
        .route("/pauses", post(pages::pause))
        .route(
            "/bulk-retry",
            get(pages::bulk_retry_confirm).post(pages::bulk_retry),
        )
        .route(
            "/assets/dashboard.css",
            get(|| asset("text/css; charset=utf-8", CSS)),
        )
        .route(
            "/assets/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", JS)),
        )
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(security_headers))
}

/// The dashboard alone, to mount where a service wants it (`Router::nest("/admin/jobs", …)`);
/// [`crate::router`] already serves it at `/ui`.
pub fn router(state: AppState) -> axum::Router {
    routes()
        .layer(axum::middleware::from_fn(crate::metrics::nosniff))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::Uri;

    fn parts(original: &str, inner: &str) -> Parts {
        let mut req = axum::http::Request::builder().uri(inner).body(()).unwrap();
        req.extensions_mut()
            .insert(OriginalUri(original.parse::<Uri>().unwrap()));
        req.into_parts().0
    }

    #[test]
    fn the_base_follows_the_mount_point() {
        assert_eq!(base_path(&parts("/ui/jobs", "/jobs")), "/ui");
        assert_eq!(base_path(&parts("/ui", "/")), "/ui");
        assert_eq!(base_path(&parts("/ui/", "/")), "/ui");
        assert_eq!(base_path(&parts("/x/ui/jobs/1", "/jobs/1")), "/x/ui");
        assert_eq!(base_path(&parts("/jobs", "/jobs")), "");
        assert_eq!(base_path(&parts("/a;b/jobs", "/jobs")), "");
    }
}
