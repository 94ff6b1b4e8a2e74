//! `POST /jobs/bulk/retry` and `POST /jobs/bulk/cancel`: one action on every job that matches a
//! filter, in bounded batches (see [`jobs_core::bulk`]).

use axum::extract::{FromRequest, Request, State};
use axum::Json;
use jobs_core::bulk::{BulkAction, BulkOutcome, DEFAULT_BULK_LIMIT, MAX_BULK_LIMIT};
use jobs_core::{JobFilter, JobStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{codes, ApiError, ErrorBody};
use crate::extract::{decode_cursor, encode_cursor, read_json, timestamp};
use crate::openapi::JobStatusSchema;
use crate::state::AppState;

/// Which jobs a bulk action applies to (every field optional; none = every job the caller sees).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BulkRequest)]
pub struct BulkRequest {
    /// Only this tenant's jobs (a tenant key only ever acts on its own).
    pub tenant_id: Option<String>,
    /// Only this use case.
    pub use_case: Option<String>,
    /// Only jobs in this status.
    #[schema(value_type = Option<JobStatusSchema>)]
    pub status: Option<JobStatus>,
    /// Only this job type.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: Option<String>,
    /// `created_at >= created_after` (RFC 3339).
    #[schema(format = DateTime)]
    pub created_after: Option<String>,
    /// `created_at < created_before` (RFC 3339).
    #[schema(format = DateTime)]
    pub created_before: Option<String>,
    /// Most matching jobs this call handles (1 to 10000, default 1000); `next_cursor` continues.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "jobs_core::whole::deserialize_option")]
    pub limit: Option<u32>,
    /// A previous call's `next_cursor`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

/// What a bulk call did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BulkResponse {
    /// Matching jobs examined.
    pub matched: u64,
    /// Jobs the action changed.
    pub changed: u64,
    /// Matching jobs whose status does not allow the action, or needs no change.
    pub skipped_status: u64,
    /// Jobs a retry would have taken over their tenant's quota (left as they were).
    pub skipped_quota: u64,
    /// More jobs may match: send it as `cursor` to continue. Absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl FromRequest<AppState> for BulkRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json(req, state.settings().body_limit).await
    }
}

async fn run(
    state: &AppState,
    scope: &jobs_core::TenantScope,
    action: BulkAction,
    req: BulkRequest,
) -> Result<Json<BulkResponse>, ApiError> {
    let limit = match req.limit {
        None => DEFAULT_BULK_LIMIT,
        Some(n) if (1..=MAX_BULK_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                codes::INVALID_LIMIT,
                format!("limit must be a whole number from 1 to {MAX_BULK_LIMIT}"),
            ))
        }
    };
    let after = req.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = JobFilter {
        tenant_id: req.tenant_id,
        use_case: req.use_case,
        status: req.status,
        kind: req.kind,
        created_after: timestamp("created_after", req.created_after)?,
        created_before: timestamp("created_before", req.created_before)?,
    };
    let BulkOutcome {
        matched,
        changed,
        skipped_status,
        skipped_quota,
        next,
    } = state
        .service()
        .bulk(action, filter, limit, after, scope)
        .await?;
    Ok(Json(BulkResponse {
        matched,
        changed,
        skipped_status,
        skipped_quota,
        next_cursor: next.map(encode_cursor),
    }))
}

/// Retries every dead, cancelled or expired job that matches (others are counted as skipped). Each retry
/// counts against its tenant's quota as a single retry does: one that would exceed it is skipped
/// and counted, never refused with 429.
#[utoipa::path(
    post, path = "/jobs/bulk/retry", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "What the call did; `next_cursor` when more jobs may match", body = BulkResponse),
        (status = 400, description = "Bad body, field, status, timestamp, limit or cursor (`invalid_json`, `invalid_timestamp`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn bulk_retry(
    State(state): State<AppState>,
    Caller(scope): Caller,
    req: BulkRequest,
) -> Result<Json<BulkResponse>, ApiError> {
    run(&state, &scope, BulkAction::Retry, req).await
}

/// Cancels every pending, dispatched or running job that matches (a running one is asked to
/// stop); finished ones are counted as skipped.
#[utoipa::path(
    post, path = "/jobs/bulk/cancel", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "What the call did; `next_cursor` when more jobs may match", body = BulkResponse),
        (status = 400, description = "Bad body, field, status, timestamp, limit or cursor (`invalid_json`, `invalid_timestamp`, `invalid_limit`, `invalid_cursor`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn bulk_cancel(
    State(state): State<AppState>,
    Caller(scope): Caller,
    req: BulkRequest,
) -> Result<Json<BulkResponse>, ApiError> {
    run(&state, &scope, BulkAction::Cancel, req).await
}
