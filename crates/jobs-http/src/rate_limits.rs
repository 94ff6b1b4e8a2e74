//! `/rate-limits`: the rate limits the pick enforces (read-only). Limits are configured in
//! `ASYNC_JOBS_PER_TENANT_RATE_LIMITS` and written to the store by the scheduler leader; this
//! shows what is in force, which during a rollout may differ from one process's configuration.

use axum::extract::State;
use axum::Json;
use jobs_core::RateLimit;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The rate limits in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RateLimitList {
    /// Every limit the caller may see, by use case, the every-tenant limit first.
    #[schema(value_type = Vec<RateLimitSchema>)]
    pub rate_limits: Vec<RateLimit>,
}

/// A rate limit in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RateLimitSchema {
    /// The use case.
    pub use_case: String,
    /// The tenant; `null`: every tenant without a limit of its own, each with a bucket of its own.
    pub tenant_id: Option<String>,
    /// Jobs started per second, on average.
    pub per_second: f64,
    /// Jobs that may start at once after a quiet spell.
    pub burst: u32,
}

/// Lists the rate limits in force.
#[utoipa::path(
    get, path = "/rate-limits", tag = "limits",
    responses(
        (status = 200, description = "The limits the caller may see (a tenant key: every-tenant limits and its own). A limited job waits pending; it is never refused", body = RateLimitList),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_rate_limits(
    State(state): State<AppState>,
    Caller(scope): Caller,
) -> Result<Json<RateLimitList>, ApiError> {
    let rate_limits = state.service().rate_limits(&scope).await?;
    Ok(Json(RateLimitList { rate_limits }))
}
