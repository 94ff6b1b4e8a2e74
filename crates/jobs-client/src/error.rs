//! Typed client errors, mirroring the original client's exceptions.

use std::time::Duration;

use jobs_core::{Job, JobId, ValidationError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 429: the tenant's quota is used up (after the bounded retries).
    #[error("quota exceeded: {message}")]
    QuotaExceeded {
        /// The server's message.
        message: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 404: no such job, or not visible with these credentials.
    #[error("job not found: {message}")]
    JobNotFound {
        /// The server's message.
        message: String,
    },
    /// 401 or 403: missing or wrong credentials, or a tenant-scoped key used for another tenant.
    #[error("authentication failed ({status}, {code}): {message}")]
    AuthToken {
        /// 401 or 403.
        status: u16,
        /// `unauthorized` or `forbidden_tenant`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The request is invalid: the server answered 400, or the request could not be built (a
    /// [`ValidationError`] such as a typed job whose value does not serialize, converted with
    /// `?`). `code` is the stable code either way.
    #[error("invalid request ({code}): {message}")]
    Validation {
        /// e.g. `unknown_use_case`, `invalid_cursor`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Any other non-success answer (409, 413, 415, 5xx after retries, ...).
    #[error("HTTP {status} ({code}): {message}")]
    RemoteHttp {
        /// HTTP status.
        status: u16,
        /// The server's code (or `unknown` if the body was not the API's error JSON).
        code: String,
        /// The server's message (or the start of the body).
        message: String,
    },
    /// The request timed out (after retries).
    #[error("request timed out: {0}")]
    Timeout(String),
    /// The server could not be reached, or the connection broke (after retries).
    #[error("transport error: {0}")]
    Transport(String),
    /// The server answered 2xx with a body this client cannot read.
    #[error("unexpected response: {0}")]
    InvalidResponse(String),
    /// The client was configured wrongly (e.g. a bad base URL or token).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// [`crate::JobsClient::wait_for`] ran out of time before the job finished.
    #[error("job {job_id} did not finish within {waited:?} (last seen {})", last.as_ref().map_or("unknown".to_owned(), |j| j.status.to_string()))]
    WaitTimeout {
        /// The job.
        job_id: JobId,
        /// How long it waited.
        waited: Duration,
        /// The job as last seen.
        last: Option<Box<Job>>,
    },
}

/// A request refused before it was sent (e.g. by
/// [`EnqueueRequest::of`](jobs_core::EnqueueRequest::of)) is a [`ClientError::Validation`] with
/// the same code the server would use.
impl From<ValidationError> for ClientError {
    fn from(e: ValidationError) -> Self {
        ClientError::Validation {
            code: e.code().to_owned(),
            message: e.to_string(),
        }
    }
}

impl ClientError {
    /// True for errors a caller may retry later (quota, 5xx, timeouts, transport).
    ///
    /// The client's own bounded retries repeat these at once, except a 503 `store_timeout` (the
    /// server cut the request's query at its statement timeout): repeating a query that just ran
    /// out of time would likely run as long again, so that one comes back on the first answer;
    /// retry it later, deliberately.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::QuotaExceeded { .. }
            | ClientError::Timeout(_)
            | ClientError::Transport(_) => true,
            ClientError::RemoteHttp { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The stable error code, when the server sent one (or the request was refused before
    /// sending).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::QuotaExceeded { .. } => Some("quota_exceeded"),
            ClientError::JobNotFound { .. } => Some("not_found"),
            ClientError::AuthToken { code, .. }
            | ClientError::Validation { code, .. }
            | ClientError::RemoteHttp { code, .. } => Some(code),
            _ => None,
        }
    }
}
