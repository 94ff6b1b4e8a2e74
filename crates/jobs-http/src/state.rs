//! The router's shared state: the domain service, authentication, limits and the metrics handle.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::JobService;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::AuthConfig;

/// Default largest body of `POST /jobs`: 1 MiB, comfortably above the 256 KiB payload limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Default largest body of `POST /jobs/batch`: 8 MiB.
pub const DEFAULT_BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Default payload byte budget of one `GET /jobs` page with payloads: 4 MiB.
pub const DEFAULT_LIST_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Default number of candidate jobs one `GET /jobs` call examines: 5,000.
pub const DEFAULT_LIST_MAX_SCANNED: u32 = 5_000;

/// Tunables of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest body of a single enqueue, in bytes.
    pub body_limit: usize,
    /// Largest body of a batch enqueue, in bytes.
    pub batch_body_limit: usize,
    /// `Retry-After` sent with a 429 quota refusal.
    pub quota_retry_after: Duration,
    /// How long `/readyz` and `/metrics` wait for the store.
    pub store_probe_timeout: Duration,
    /// `/metrics` reads the job counts from the store at most once per this interval; scrapes
    /// in between (and concurrent ones) serve the last sample. Counting is a scan of the jobs
    /// table's status indexes, so this bounds what scrapes, which need no credentials, can cost
    /// the database, whatever their rate.
    pub job_counts_max_age: Duration,
    /// Payload bytes one `GET /jobs?include_payload=true` page may carry: the page stops before
    /// the job that would take it over (always at least one job) and hands a `next_cursor` that
    /// continues from there. With 256 KiB payloads, 4 MiB is 16 jobs a page.
    pub list_max_bytes: u64,
    /// Candidate jobs one `GET /jobs` call examines (the tenant's, or all without a tenant
    /// filter), newest first from the cursor; the other filters are checked on those only. A page
    /// can therefore be short, even empty, and still have a `next_cursor`: this bounds what a
    /// sparse filter costs the database per request.
    pub list_max_scanned: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_limit: DEFAULT_BODY_LIMIT,
            batch_body_limit: DEFAULT_BATCH_BODY_LIMIT,
            quota_retry_after: Duration::from_secs(5),
            store_probe_timeout: Duration::from_secs(2),
            job_counts_max_age: Duration::from_secs(5),
            list_max_bytes: DEFAULT_LIST_MAX_BYTES,
            list_max_scanned: DEFAULT_LIST_MAX_SCANNED,
        }
    }
}

/// State shared by every handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    service: JobService,
    auth: Arc<AuthConfig>,
    settings: Arc<HttpSettings>,
    metrics: Option<PrometheusHandle>,
    /// When the job-count gauges were last read from the store (`None`: never). Held while a
    /// refresh runs, so concurrent scrapes wait for it instead of counting again.
    counts_read_at: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The serialized OpenAPI document, made on first request.
    openapi: Arc<std::sync::OnceLock<String>>,
    /// The dashboard's session key and cache.
    ui: Arc<crate::ui::UiState>,
}

impl AppState {
    /// State over `service` with `auth`, default settings, and the process-wide Prometheus recorder
    /// (installed on first use, see [`crate::metrics::prometheus_handle`]).
    pub fn new(service: JobService, auth: AuthConfig) -> Self {
        AppState {
            service,
            auth: Arc::new(auth),
            settings: Arc::new(HttpSettings::default()),
            metrics: crate::metrics::prometheus_handle(),
            counts_read_at: Arc::default(),
            openapi: Arc::default(),
            ui: Arc::default(),
        }
    }

    /// Signs the dashboard's sessions with `key` instead of a random key of this process (give
    /// every replica of the API the same key, so each accepts the sessions the others opened).
    pub fn with_ui_session_key(mut self, key: crate::ui::SessionKey) -> Self {
        self.ui = Arc::new(crate::ui::UiState::new(Some(key)));
        self
    }

    /// The dashboard's state.
    pub(crate) fn ui(&self) -> &crate::ui::UiState {
        &self.ui
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: HttpSettings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// Renders `/metrics` from `handle` (e.g. the host application's own recorder), or serves no
    /// metrics text with `None`.
    pub fn with_metrics_handle(mut self, handle: Option<PrometheusHandle>) -> Self {
        self.metrics = handle;
        self
    }

    /// The last time the job-count gauges were read, under the lock that serialises refreshes.
    pub(crate) fn counts_read_at(&self) -> &tokio::sync::Mutex<Option<tokio::time::Instant>> {
        &self.counts_read_at
    }

    /// The serialized OpenAPI document, made by `make` on first use.
    pub(crate) fn openapi_json(&self, make: impl FnOnce() -> String) -> &str {
        self.openapi.get_or_init(make)
    }

    /// The domain service.
    pub fn service(&self) -> &JobService {
        &self.service
    }

    /// The authentication configuration.
    pub fn auth(&self) -> &AuthConfig {
        &self.auth
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The Prometheus handle `/metrics` renders, if any.
    pub fn metrics_handle(&self) -> Option<&PrometheusHandle> {
        self.metrics.as_ref()
    }
}
