//! The API's error type: one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with a
//! stable `code` per cause. Every rejection the router can produce goes through [`ApiError`], so no
//! plain-text axum rejection ever reaches a client.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobs_core::{ChangeError, EnqueueError, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable error codes that are not validation codes (those come from
/// [`jobs_core::ValidationError::code`]).
pub mod codes {
    /// 401: missing or wrong credentials.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: a tenant-scoped key tried to enqueue for another tenant.
    pub const FORBIDDEN_TENANT: &str = "forbidden_tenant";
    /// 404: no such job (or not visible to the caller).
    pub const NOT_FOUND: &str = "not_found";
    /// 405: the route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 409: the job's status does not allow the change.
    pub const ILLEGAL_TRANSITION: &str = "illegal_transition";
    /// 408: the request body did not fully arrive within the server's body timeout (the
    /// connection is closed after the answer).
    pub const BODY_TIMEOUT: &str = "body_timeout";
    /// 413: the request body is larger than the limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 415: the body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 400: the body is not valid JSON for the endpoint (syntax, UTF-8, types, unknown fields, depth).
    pub const INVALID_JSON: &str = "invalid_json";
    /// 400: the body could not be read.
    pub const INVALID_BODY: &str = "invalid_body";
    /// 400: a path id is not a UUID.
    pub const INVALID_ID: &str = "invalid_id";
    /// 400: the query string is malformed or names an unknown parameter.
    pub const INVALID_QUERY: &str = "invalid_query";
    /// 400: the `status` filter is not a job status.
    pub const INVALID_STATUS: &str = "invalid_status";
    /// 400: a `created_*` filter is not an RFC 3339 timestamp.
    pub const INVALID_TIMESTAMP: &str = "invalid_timestamp";
    /// 400: the `cursor` was not produced by this API.
    pub const INVALID_CURSOR: &str = "invalid_cursor";
    /// 400: `limit` is not a whole number in range.
    pub const INVALID_LIMIT: &str = "invalid_limit";
    /// 400: the `Idempotency-Key` header disagrees with the body, or is not text.
    pub const IDEMPOTENCY_KEY_MISMATCH: &str = "idempotency_key_mismatch";
    /// 429: the tenant's quota for the use case is used up.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// 503: the store cannot be reached now; retry.
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// 503: a query took longer than the store's statement timeout and was cancelled (its
    /// transaction rolled back); retry later, or narrow the request.
    pub const STORE_TIMEOUT: &str = "store_timeout";
    /// 500: a non-retryable store failure.
    pub const INTERNAL: &str = "internal";
    /// 400: the store cannot do what was asked the way it was asked (for example a schedule
    /// moved to a use case kept in another store); the same request fails the same way.
    pub const UNSUPPORTED_BY_STORE: &str = "unsupported_by_store";
    /// 400: a path segment is not valid UTF-8 text.
    pub const INVALID_PATH: &str = "invalid_path";
    /// 404: no route has this path (a wrong base URL or prefix, not a missing job).
    pub const UNKNOWN_ROUTE: &str = "unknown_route";
    /// No schedule by that name (or another tenant's).
    pub const SCHEDULE_NOT_FOUND: &str = "schedule_not_found";
    /// A schedule by that name exists.
    pub const SCHEDULE_EXISTS: &str = "schedule_exists";
    /// The schedule is declared in the configuration and read-only through the API.
    pub const SCHEDULE_FROM_CONFIG: &str = "schedule_from_config";
}

/// The JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and message of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code (see `docs/http-api.md`).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// An error answered by the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: Cow<'static, str>,
    /// Message for humans.
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// Seconds a client should wait before retrying after a 503.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// Seconds a client should wait before retrying a request whose query ran out of time: longer
/// than after `store_unavailable`, so that repeating an expensive query does not add to the
/// load that may have slowed it.
const TIMEOUT_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or invalid bearer credentials",
        )
    }

    /// 404 `not_found` for a job id.
    pub fn job_not_found(id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("job {id} not found"),
        )
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after.as_secs().max(1));
        self
    }

    /// The error for a store failure: 503 `store_timeout` for a query cut by the statement
    /// timeout, 503 `store_unavailable` when retryable, 400 `unsupported_by_store` for a request
    /// the store refuses as asked (its message says what to do instead), 500 otherwise (details
    /// logged, not sent).
    pub fn from_store(err: &StoreError) -> Self {
        if let StoreError::Unsupported(message) = err {
            return Self::bad_request(codes::UNSUPPORTED_BY_STORE, message.clone());
        }
        if let StoreError::Timeout(_) = err {
            tracing::warn!(error = %err, "store query timed out");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::STORE_TIMEOUT,
                "the query took too long: the job store cancelled it at its statement timeout; retry later",
            )
            .with_retry_after(Duration::from_secs(TIMEOUT_RETRY_AFTER_SECS))
        } else if err.is_retryable() {
            tracing::warn!(error = %err, "store unavailable");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::STORE_UNAVAILABLE,
                "the job store is unavailable; retry later",
            )
            .with_retry_after(Duration::from_secs(UNAVAILABLE_RETRY_AFTER_SECS))
        } else {
            tracing::error!(error = %err, "store failure");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::INTERNAL,
                "internal error",
            )
        }
    }

    /// The error for a refused enqueue; `quota_retry_after` goes into the 429's `Retry-After`.
    pub fn from_enqueue(err: EnqueueError, quota_retry_after: Duration) -> Self {
        match err {
            EnqueueError::Invalid(v) => Self::bad_request(v.code(), v.to_string()),
            EnqueueError::InvalidInBatch { index, source } => {
                Self::bad_request(source.code(), format!("job {index} of the batch: {source}"))
            }
            e @ EnqueueError::QuotaExceeded { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::QUOTA_EXCEEDED,
                e.to_string(),
            )
            .with_retry_after(quota_retry_after),
            EnqueueError::Store(s) => Self::from_store(&s),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(&err)
    }
}

impl ApiError {
    /// The error for a refused pause or resume.
    pub fn from_pause(err: jobs_core::PauseError) -> Self {
        match err {
            jobs_core::PauseError::Invalid(e) => Self::bad_request(e.code(), e.to_string()),
            e @ jobs_core::PauseError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN_TENANT,
                e.to_string(),
            ),
            jobs_core::PauseError::Store(s) => Self::from_store(&s),
        }
    }

    /// The error for a refused cancel or retry; `quota_retry_after` goes into the 429's
    /// `Retry-After` (a retry over quota is refused exactly as an enqueue would be).
    pub fn from_change(err: ChangeError, quota_retry_after: Duration) -> Self {
        match err {
            ChangeError::NotFound(id) => Self::job_not_found(id),
            ChangeError::Illegal(e) => Self::new(
                StatusCode::CONFLICT,
                codes::ILLEGAL_TRANSITION,
                e.to_string(),
            ),
            e @ ChangeError::QuotaExceeded { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::QUOTA_EXCEEDED,
                e.to_string(),
            )
            .with_retry_after(quota_retry_after),
            ChangeError::Store(s) => Self::from_store(&s),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot carry
            // another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_what_the_caller_does_next() {
        let unsupported = ApiError::from_store(&StoreError::Unsupported(
            "delete it and create it again".into(),
        ));
        assert_eq!(
            (unsupported.status, unsupported.code.as_ref()),
            (StatusCode::BAD_REQUEST, codes::UNSUPPORTED_BY_STORE)
        );
        assert_eq!(unsupported.message, "delete it and create it again");
        let internal = ApiError::from_store(&StoreError::Internal("secret detail".into()));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("secret"));
        let unavailable = ApiError::from_store(&StoreError::Unavailable("down".into()));
        assert_eq!(unavailable.code, codes::STORE_UNAVAILABLE);
    }
}
