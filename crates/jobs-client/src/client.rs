//! The client: configuration, the retrying request loop and one method per endpoint.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::{
    EnqueueRequest, Job, JobId, JobStatus, JobView, NewSchedule, Pause, PauseScope, Prediction,
    RateLimit, Schedule, ScheduleDefinition, TraceContext,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// Timeouts, retries and polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Whole-request timeout of one attempt (default 10 s).
    pub timeout: Duration,
    /// Connect timeout (default 3 s).
    pub connect_timeout: Duration,
    /// Retries after the first attempt (default 3; 0 disables retries).
    pub max_retries: u32,
    /// First retry delay; doubles per retry, with jitter (default 100 ms).
    pub initial_backoff: Duration,
    /// Longest retry delay from backoff (default 5 s).
    pub max_backoff: Duration,
    /// Longest wait honoured from a `Retry-After` header (default 30 s).
    pub max_retry_after: Duration,
    /// Polling interval of [`JobsClient::wait_for`] (default 500 ms).
    pub poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Builds a [`JobsClient`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    token: Option<String>,
    config: ClientConfig,
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <token>` (the operator token or a tenant API key).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets the number of retries.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries;
        self
    }

    /// Sets the backoff bounds.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.initial_backoff = initial;
        self.config.max_backoff = max;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<JobsClient, ClientError> {
        let base = self.base_url.trim().trim_end_matches('/').to_owned();
        // Errors never repeat a password the URL may carry.
        let shown = jobs_core::config::redact_url(&base);
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Config(format!("base URL {shown:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "base URL {shown:?} must be http or https"
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Config("the bearer token must be visible ASCII".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.config.timeout)
            .connect_timeout(self.config.connect_timeout)
            .user_agent(concat!("async-jobs-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(JobsClient {
            http,
            base,
            config: self.config,
        })
    }
}

/// A job created or found by an enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueOutcome {
    /// The job.
    pub job: Job,
    /// False when the server answered with an existing job (same idempotency key) — including a
    /// job this very call created on an attempt whose answer was lost.
    pub created: bool,
    /// The job's predicted start, as the server estimated it when it answered (both fields
    /// `None` from a server that does not predict, or when it had no prediction).
    pub prediction: Prediction,
}

/// Filters and page of [`JobsClient::list`]; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Tenant.
    pub tenant_id: Option<String>,
    /// Use case.
    pub use_case: Option<String>,
    /// Status.
    pub status: Option<JobStatus>,
    /// Job type.
    pub kind: Option<String>,
    /// `created_at >= created_after`.
    pub created_after: Option<DateTime<Utc>>,
    /// `created_at < created_before`.
    pub created_before: Option<DateTime<Utc>>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1 to 500; server default 50).
    pub limit: Option<u32>,
    /// Ask for each job's payload (`include_payload=true`). Without it the server leaves
    /// payloads out and the jobs' `payload` is `null`. A page with payloads stops at the server's
    /// byte budget (4 MiB by default), with a cursor to the rest.
    pub include_payload: bool,
}

impl ListQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let mut push = |k, v: Option<String>| {
            if let Some(v) = v {
                q.push((k, v));
            }
        };
        push("tenant_id", self.tenant_id.clone());
        push("use_case", self.use_case.clone());
        push("status", self.status.map(|s| s.as_str().to_owned()));
        push("type", self.kind.clone());
        push("created_after", self.created_after.map(|t| t.to_rfc3339()));
        push(
            "created_before",
            self.created_before.map(|t| t.to_rfc3339()),
        );
        push("cursor", self.cursor.clone());
        push("limit", self.limit.map(|l| l.to_string()));
        push(
            "include_payload",
            self.include_payload.then(|| "true".to_owned()),
        );
        q
    }
}

/// Which jobs a bulk action applies to; `None` fields are not sent (match everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkFilter {
    /// Tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Use case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_case: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Job type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `created_at >= created_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// `created_at < created_before`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Most matching jobs one call handles (1 to 10000; server default 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous call's `next_cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What one bulk call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkResult {
    /// Matching jobs examined.
    pub matched: u64,
    /// Jobs the action changed.
    pub changed: u64,
    /// Matching jobs whose status does not allow the action, or needs no change.
    pub skipped_status: u64,
    /// Jobs a retry would have taken over their tenant's quota.
    pub skipped_quota: u64,
    /// More jobs may match: set it as the filter's `cursor` to continue.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// One page of [`JobsClient::list`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobPage {
    /// Jobs, newest first.
    pub jobs: Vec<Job>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// `/pauses/{use_case}` or `/pauses/{use_case}/tenants/{tenant_id}`, each segment
/// percent-encoded.
fn pause_path(scope: &PauseScope) -> Result<String, ClientError> {
    let mut path = format!("/pauses/{}", encode_segment(&scope.use_case)?);
    if let Some(tenant) = &scope.tenant_id {
        path.push_str("/tenants/");
        path.push_str(&encode_segment(tenant)?);
    }
    Ok(path)
}

/// `segment` with every byte but RFC 3986's unreserved characters percent-encoded.
///
/// Refused (`invalid_path_segment`): an empty segment, `.` and `..`. URL parsing treats `.` and
/// `..` as dot segments however they are encoded (`%2e` too) and removes them, so
/// `/pauses/notifications/tenants/..` would reach `/pauses/notifications`, the whole use case.
fn encode_segment(segment: &str) -> Result<String, ClientError> {
    if matches!(segment, "" | "." | "..") {
        return Err(ClientError::Validation {
            code: "invalid_path_segment".to_owned(),
            message: format!(
                "'{segment}' cannot be a URL path segment (empty, or a dot segment that URLs remove)"
            ),
        });
    }
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct JobsBody {
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Which failures a call may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryPolicy {
    /// Safe to repeat (reads, keyed enqueues, cancel): connect errors, timeouts, 5xx, 429 —
    /// except a 503 `store_timeout` (see `ClientError::is_retryable`).
    Idempotent,
    /// Not safe to repeat once processed (manual retry): only when the server surely did not act —
    /// connect errors, 429 and 503 (not `store_timeout`).
    NotProcessed,
    /// Probes: one attempt.
    Never,
}

/// The async-jobs API client. Cheap to clone (shares its connection pool).
#[derive(Debug, Clone)]
pub struct JobsClient {
    http: reqwest::Client,
    base: String,
    config: ClientConfig,
}

impl JobsClient {
    /// A builder for the API at `base_url` (e.g. `http://127.0.0.1:8080`, or with the prefix the
    /// router is nested under).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            token: None,
            config: ClientConfig::default(),
        }
    }

    /// A client with default settings and no credentials.
    pub fn new(base_url: impl Into<String>) -> Result<Self, ClientError> {
        Self::builder(base_url).build()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Enqueues one job and returns it.
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<Job, ClientError> {
        self.enqueue_outcome(req).await.map(|o| o.job)
    }

    /// Enqueues one job; tells whether it was created or an existing job was returned. Without an
    /// idempotency key, one is generated for this call and reused on every retry.
    pub async fn enqueue_outcome(
        &self,
        mut req: EnqueueRequest,
    ) -> Result<EnqueueOutcome, ClientError> {
        req.idempotency_key.get_or_insert_with(generated_key);
        let trace = req.trace_context.clone().or_else(current_trace);
        let body = serde_json::to_vec(&req).map_err(|e| ClientError::Config(e.to_string()))?;
        let resp = self
            .send_traced(
                Method::POST,
                "/jobs",
                &[],
                Some(body),
                RetryPolicy::Idempotent,
                trace.as_ref(),
            )
            .await?;
        let created = resp.status() == StatusCode::CREATED;
        let JobView { job, prediction } = read_json(resp).await?;
        Ok(EnqueueOutcome {
            job,
            created,
            prediction,
        })
    }

    /// Enqueues a batch, all or none; jobs without an idempotency key get one (fixed across retries).
    /// The API stores one trace context for the whole batch: the first request's that has one
    /// (else, with the `otel` feature, the current span's).
    pub async fn enqueue_batch(&self, reqs: Vec<EnqueueRequest>) -> Result<Vec<Job>, ClientError> {
        let trace = reqs
            .iter()
            .find_map(|r| r.trace_context.clone())
            .or_else(current_trace);
        let jobs: Vec<EnqueueRequest> = reqs
            .into_iter()
            .map(|mut r| {
                r.idempotency_key.get_or_insert_with(generated_key);
                r
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "jobs": jobs }))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let resp = self
            .send_traced(
                Method::POST,
                "/jobs/batch",
                &[],
                Some(body),
                RetryPolicy::Idempotent,
                trace.as_ref(),
            )
            .await?;
        Ok(read_json::<JobsBody>(resp).await?.jobs)
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<Job, ClientError> {
        let resp = self
            .send(
                Method::GET,
                &format!("/jobs/{id}"),
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// One job with its predicted start (`predicted_start_at`, `at_risk`): an estimate the
    /// server makes as it answers, `None` when it has none (or is older than the prediction).
    pub async fn get_view(&self, id: JobId) -> Result<JobView, ClientError> {
        let resp = self
            .send(
                Method::GET,
                &format!("/jobs/{id}"),
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// One page of jobs. The server examines a bounded number of jobs per call, so a page can be
    /// short, or empty, and still have a `next_cursor`: only its absence ends the list.
    pub async fn list(&self, query: &ListQuery) -> Result<JobPage, ClientError> {
        let resp = self
            .send(
                Method::GET,
                "/jobs",
                &query.pairs(),
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// Every job matching `query`, walking all pages from `query.cursor`, through short and empty
    /// pages, until a page has no `next_cursor`.
    pub async fn list_all(&self, query: &ListQuery) -> Result<Vec<Job>, ClientError> {
        let mut query = query.clone();
        let mut jobs = Vec::new();
        loop {
            let page = self.list(&query).await?;
            jobs.extend(page.jobs);
            match page.next_cursor {
                Some(next) if query.cursor.as_ref() == Some(&next) => {
                    // A cursor that does not move would loop forever.
                    return Err(ClientError::InvalidResponse(format!(
                        "the server answered cursor {next} with itself"
                    )));
                }
                Some(next) => query.cursor = Some(next),
                None => return Ok(jobs),
            }
        }
    }

    /// Cancels a job (idempotent for an already cancelled job).
    pub async fn cancel(&self, id: JobId) -> Result<Job, ClientError> {
        let resp = self
            .send(
                Method::POST,
                &format!("/jobs/{id}/cancel"),
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// Retries a dead, cancelled or expired job. Retried only when the server surely did not act (a second
    /// retry of a job that went back to pending would be refused with 409).
    pub async fn retry(&self, id: JobId) -> Result<Job, ClientError> {
        let resp = self
            .send(
                Method::POST,
                &format!("/jobs/{id}/retry"),
                &[],
                None,
                RetryPolicy::NotProcessed,
            )
            .await?;
        read_json(resp).await
    }

    /// Retries every dead, cancelled or expired job `filter` matches, at most `filter.limit` per call
    /// (`POST /jobs/bulk/retry`); continue with [`BulkResult::next_cursor`]. Quotas hold: a retry
    /// that would exceed one is skipped and counted. Retried only when the server surely did not
    /// act.
    pub async fn bulk_retry(&self, filter: &BulkFilter) -> Result<BulkResult, ClientError> {
        self.bulk("/jobs/bulk/retry", filter, RetryPolicy::NotProcessed)
            .await
    }

    /// Cancels every pending, dispatched or running job `filter` matches, at most `filter.limit`
    /// per call (`POST /jobs/bulk/cancel`).
    pub async fn bulk_cancel(&self, filter: &BulkFilter) -> Result<BulkResult, ClientError> {
        self.bulk("/jobs/bulk/cancel", filter, RetryPolicy::Idempotent)
            .await
    }

    async fn bulk(
        &self,
        path: &str,
        filter: &BulkFilter,
        policy: RetryPolicy,
    ) -> Result<BulkResult, ClientError> {
        let body = serde_json::to_vec(filter)
            .map_err(|e| ClientError::Config(format!("bulk filter: {e}")))?;
        let resp = self
            .send(Method::POST, path, &[], Some(body), policy)
            .await?;
        read_json(resp).await
    }

    /// The pauses in force that these credentials may see (`GET /pauses`).
    pub async fn pauses(&self) -> Result<Vec<Pause>, ClientError> {
        #[derive(Deserialize)]
        struct Body {
            pauses: Vec<Pause>,
        }
        let resp = self
            .send(Method::GET, "/pauses", &[], None, RetryPolicy::Idempotent)
            .await?;
        read_json::<Body>(resp).await.map(|b| b.pauses)
    }

    /// The rate limits in force that these credentials may see (`GET /rate-limits`): a limited
    /// tenant's jobs start at most `burst` at once, then `per_second` on average.
    pub async fn rate_limits(&self) -> Result<Vec<RateLimit>, ClientError> {
        #[derive(Deserialize)]
        struct Body {
            rate_limits: Vec<RateLimit>,
        }
        let resp = self
            .send(
                Method::GET,
                "/rate-limits",
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json::<Body>(resp).await.map(|b| b.rate_limits)
    }

    /// Pauses `scope` (idempotent): its pending jobs stay pending until [`Self::resume`]; jobs
    /// already dispatched or running finish. Answers the pause in force.
    pub async fn pause(&self, scope: &PauseScope) -> Result<Pause, ClientError> {
        let resp = self
            .send(
                Method::PUT,
                &pause_path(scope)?,
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// Resumes `scope`: `true` if it was paused.
    pub async fn resume(&self, scope: &PauseScope) -> Result<bool, ClientError> {
        #[derive(Deserialize)]
        struct Body {
            resumed: bool,
        }
        let resp = self
            .send(
                Method::DELETE,
                &pause_path(scope)?,
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json::<Body>(resp).await.map(|b| b.resumed)
    }

    /// The cron schedules these credentials may see (`GET /schedules`), by name, each with its
    /// `next_run_at`.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, ClientError> {
        #[derive(Deserialize)]
        struct Body {
            schedules: Vec<Schedule>,
        }
        let resp = self
            .send(
                Method::GET,
                "/schedules",
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json::<Body>(resp).await.map(|b| b.schedules)
    }

    /// The schedule `name` (`GET /schedules/{name}`); a missing one is
    /// [`ClientError::RemoteHttp`] 404 `schedule_not_found`.
    pub async fn schedule(&self, name: &str) -> Result<Schedule, ClientError> {
        let path = format!("/schedules/{}", encode_segment(name)?);
        let resp = self
            .send(Method::GET, &path, &[], None, RetryPolicy::Idempotent)
            .await?;
        read_json(resp).await
    }

    /// Creates a schedule (`POST /schedules`). Retried only when the server did not process
    /// the request; a name taken is 409 `schedule_exists`.
    pub async fn create_schedule(&self, new: &NewSchedule) -> Result<Schedule, ClientError> {
        let body =
            serde_json::to_vec(new).map_err(|e| ClientError::Config(format!("schedule: {e}")))?;
        let resp = self
            .send(
                Method::POST,
                "/schedules",
                &[],
                Some(body),
                RetryPolicy::NotProcessed,
            )
            .await?;
        read_json(resp).await
    }

    /// Replaces the definition of the schedule `name` (`PUT /schedules/{name}`; idempotent).
    pub async fn update_schedule(
        &self,
        name: &str,
        definition: &ScheduleDefinition,
    ) -> Result<Schedule, ClientError> {
        let body = serde_json::to_vec(definition)
            .map_err(|e| ClientError::Config(format!("schedule: {e}")))?;
        let path = format!("/schedules/{}", encode_segment(name)?);
        let resp = self
            .send(Method::PUT, &path, &[], Some(body), RetryPolicy::Idempotent)
            .await?;
        read_json(resp).await
    }

    /// Deletes the schedule `name` (`DELETE /schedules/{name}`); jobs it enqueued stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/schedules/{}", encode_segment(name)?);
        // Not retried blindly: a retry after a lost answer would be a 404.
        self.send(Method::DELETE, &path, &[], None, RetryPolicy::NotProcessed)
            .await?;
        Ok(())
    }

    /// Liveness (`/healthz`), one attempt.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.send(Method::GET, "/healthz", &[], None, RetryPolicy::Never)
            .await
            .map(drop)
    }

    /// Readiness (`/readyz`), one attempt: an error when the server's store does not answer.
    pub async fn readyz(&self) -> Result<(), ClientError> {
        self.send(Method::GET, "/readyz", &[], None, RetryPolicy::Never)
            .await
            .map(drop)
    }

    /// The Prometheus metrics text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self
            .send(Method::GET, "/metrics", &[], None, RetryPolicy::Idempotent)
            .await?;
        resp.text()
            .await
            .map_err(|e| ClientError::InvalidResponse(e.to_string()))
    }

    /// The OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        let resp = self
            .send(
                Method::GET,
                "/openapi.json",
                &[],
                None,
                RetryPolicy::Idempotent,
            )
            .await?;
        read_json(resp).await
    }

    /// Polls the job every [`ClientConfig::poll_interval`] until it is succeeded, dead or
    /// cancelled, or `timeout` passes ([`ClientError::WaitTimeout`]).
    pub async fn wait_for(&self, id: JobId, timeout: Duration) -> Result<Job, ClientError> {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let mut last = None;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let timed_out = || ClientError::WaitTimeout {
                job_id: id,
                waited: start.elapsed(),
                last: last.clone().map(Box::new),
            };
            if remaining.is_zero() {
                return Err(timed_out());
            }
            let job = match tokio::time::timeout(remaining, self.get(id)).await {
                Ok(job) => job?,
                Err(_) => return Err(timed_out()),
            };
            if job.status.is_terminal() {
                return Ok(job);
            }
            last = Some(job);
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(self.config.poll_interval.min(remaining)).await;
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .config
            .initial_backoff
            .saturating_mul(1u32 << retry.min(20));
        let capped = exp.min(self.config.max_backoff);
        // Equal jitter: between half and all of the capped delay.
        capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        policy: RetryPolicy,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_traced(method, path, query, body, policy, None)
            .await
    }

    /// [`Self::send`] with `traceparent` / `tracestate` headers when `trace` is given.
    async fn send_traced(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<Vec<u8>>,
        policy: RetryPolicy,
        trace: Option<&TraceContext>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let max_retries = if policy == RetryPolicy::Never {
            0
        } else {
            self.config.max_retries
        };
        let mut retry = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(tc) = trace {
                req = req.header("traceparent", tc.traceparent());
                if let Some(state) = tc.tracestate() {
                    req = req.header("tracestate", state);
                }
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let can_retry = retry < max_retries;
            let wait = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = match policy {
                        RetryPolicy::Idempotent => {
                            status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
                        }
                        RetryPolicy::NotProcessed => {
                            status == StatusCode::SERVICE_UNAVAILABLE
                                || status == StatusCode::TOO_MANY_REQUESTS
                        }
                        RetryPolicy::Never => false,
                    };
                    if !(retryable && can_retry) {
                        return Err(error_from(resp).await);
                    }
                    let after = retry_after(resp.headers());
                    let err = error_from(resp).await;
                    // A query the server cut at its statement timeout would likely run as long
                    // again: not repeated blindly (the caller may retry later).
                    if err.code() == Some(STORE_TIMEOUT)
                        || after.is_some_and(|a| a > self.config.max_retry_after)
                    {
                        return Err(err);
                    }
                    after.unwrap_or_else(|| self.backoff(retry))
                }
                Err(err) => {
                    let retryable = err.is_connect()
                        || (policy == RetryPolicy::Idempotent
                            && (err.is_timeout() || err.is_request()));
                    if !(retryable && can_retry) {
                        return Err(if err.is_timeout() {
                            ClientError::Timeout(err.to_string())
                        } else {
                            ClientError::Transport(err.to_string())
                        });
                    }
                    self.backoff(retry)
                }
            };
            tracing::debug!(%url, retry = retry + 1, ?wait, "retrying async-jobs API call");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }
}

/// The server's code for a request whose query ran past the store's statement timeout.
const STORE_TIMEOUT: &str = "store_timeout";

fn generated_key() -> String {
    format!("auto-{}", uuid::Uuid::new_v4())
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn read_json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse(e.to_string()))
}

async fn error_from(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let after = retry_after(resp.headers());
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => ("unknown".to_owned(), text.chars().take(500).collect()),
    };
    match status {
        StatusCode::BAD_REQUEST => ClientError::Validation { code, message },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::AuthToken {
            status: status.as_u16(),
            code,
            message,
        },
        StatusCode::NOT_FOUND if code == "not_found" => ClientError::JobNotFound { message },
        StatusCode::TOO_MANY_REQUESTS => ClientError::QuotaExceeded {
            message,
            retry_after: after,
        },
        _ => ClientError::RemoteHttp {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

/// The current `tracing` span's OpenTelemetry context, as a trace context to forward (feature
/// `otel`, and only when the application installed a `tracing-opentelemetry` layer).
#[cfg(feature = "otel")]
fn current_trace() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let tc = TraceContext::from_parts(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.trace_flags().to_u8(),
    )?;
    let state = sc.trace_state().header();
    Some(if state.is_empty() {
        tc
    } else {
        tc.with_tracestate(&state)
    })
}

/// Without the `otel` feature only an explicit [`EnqueueRequest::trace_context`] is forwarded.
#[cfg(not(feature = "otel"))]
fn current_trace() -> Option<TraceContext> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let client = JobsClient::builder("http://127.0.0.1:1")
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .build()
            .unwrap();
        for retry in [0, 1, 5, 40, u32::MAX] {
            let d = client.backoff(retry);
            assert!(d <= Duration::from_secs(1), "{retry}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{retry}: {d:?}");
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in ["", "not a url", "ftp://x", "127.0.0.1:8080"] {
            assert!(
                matches!(JobsClient::new(bad), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
        assert!(JobsClient::builder("http://x")
            .bearer_token("a\nb")
            .build()
            .is_err());
    }

    #[test]
    fn list_query_uses_the_api_names() {
        let q = ListQuery {
            kind: Some("k".into()),
            status: Some(JobStatus::Dead),
            limit: Some(7),
            ..ListQuery::default()
        };
        assert_eq!(
            q.pairs(),
            vec![
                ("status", "dead".to_owned()),
                ("type", "k".to_owned()),
                ("limit", "7".to_owned())
            ]
        );
        let q = ListQuery {
            include_payload: true,
            ..ListQuery::default()
        };
        assert_eq!(q.pairs(), vec![("include_payload", "true".to_owned())]);
    }
}
