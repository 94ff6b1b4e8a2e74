//! `/pauses`: pause and resume a use case, or one tenant within it. Paused jobs stay pending
//! (the pick passes them over); jobs already dispatched or running finish. Only the operator
//! token pauses and resumes (a tenant must not lift a pause put on it); a tenant key lists the
//! pauses that hold its jobs.

use axum::extract::{Path, State};
use axum::Json;
use jobs_core::{Pause, PauseScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{codes, ApiError, ErrorBody};
use crate::state::AppState;

/// The pauses in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PauseList {
    /// Every pause the caller may see.
    #[schema(value_type = Vec<PauseSchema>)]
    pub pauses: Vec<Pause>,
}

/// A pause in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PauseSchema {
    /// The use case.
    pub use_case: String,
    /// The paused tenant; `null` when the whole use case is paused.
    pub tenant_id: Option<String>,
    /// Since when (RFC 3339).
    #[schema(format = DateTime)]
    pub paused_at: String,
}

/// The outcome of a resume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resumed {
    /// The use case.
    pub use_case: String,
    /// The tenant; `null` for the whole use case.
    pub tenant_id: Option<String>,
    /// `true` if it was paused (and is not now); `false` if it was not paused.
    pub resumed: bool,
}

fn invalid_path() -> ApiError {
    ApiError::bad_request(
        codes::INVALID_PATH,
        "a path segment is not valid UTF-8 text",
    )
}

/// Lists the pauses in force.
#[utoipa::path(
    get, path = "/pauses", tag = "pauses",
    responses(
        (status = 200, description = "The pauses the caller may see (a tenant key: whole-use-case pauses and its own)", body = PauseList),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_pauses(
    State(state): State<AppState>,
    Caller(scope): Caller,
) -> Result<Json<PauseList>, ApiError> {
    let pauses = state.service().pauses(&scope).await?;
    Ok(Json(PauseList { pauses }))
}

async fn pause(
    state: &AppState,
    caller: &jobs_core::TenantScope,
    scope: PauseScope,
) -> Result<Json<Pause>, ApiError> {
    let pause = state
        .service()
        .pause(scope, caller)
        .await
        .map_err(ApiError::from_pause)?;
    Ok(Json(pause))
}

async fn resume(
    state: &AppState,
    caller: &jobs_core::TenantScope,
    scope: PauseScope,
) -> Result<Json<Resumed>, ApiError> {
    let (use_case, tenant_id) = (scope.use_case.clone(), scope.tenant_id.clone());
    let resumed = state
        .service()
        .resume(scope, caller)
        .await
        .map_err(ApiError::from_pause)?;
    Ok(Json(Resumed {
        use_case: state
            .service()
            .config()
            .use_case(&use_case)
            .map_or(use_case, |uc| uc.name.clone()),
        tenant_id,
        resumed,
    }))
}

/// Pauses a use case for every tenant (idempotent: a paused use case answers its pause).
#[utoipa::path(
    put, path = "/pauses/{use_case}", tag = "pauses",
    params(("use_case" = String, Path, description = "A configured use case")),
    responses(
        (status = 200, description = "The pause in force", body = PauseSchema),
        (status = 400, description = "Unknown use case (`unknown_use_case`), or a path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Only the operator token pauses and resumes (`forbidden_tenant`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pause_use_case(
    State(state): State<AppState>,
    Caller(caller): Caller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Pause>, ApiError> {
    let Path(use_case) = path.map_err(|_| invalid_path())?;
    pause(&state, &caller, PauseScope::use_case(use_case)).await
}

/// Resumes a use case paused for every tenant (tenant pauses within it stay).
#[utoipa::path(
    delete, path = "/pauses/{use_case}", tag = "pauses",
    params(("use_case" = String, Path, description = "A configured use case")),
    responses(
        (status = 200, description = "Whether it was paused", body = Resumed),
        (status = 400, description = "Unknown use case (`unknown_use_case`), or a path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Only the operator token pauses and resumes (`forbidden_tenant`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume_use_case(
    State(state): State<AppState>,
    Caller(caller): Caller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Resumed>, ApiError> {
    let Path(use_case) = path.map_err(|_| invalid_path())?;
    resume(&state, &caller, PauseScope::use_case(use_case)).await
}

/// Pauses one tenant within a use case (idempotent).
#[utoipa::path(
    put, path = "/pauses/{use_case}/tenants/{tenant_id}", tag = "pauses",
    params(
        ("use_case" = String, Path, description = "A configured use case"),
        ("tenant_id" = String, Path, description = "The tenant"),
    ),
    responses(
        (status = 200, description = "The pause in force", body = PauseSchema),
        (status = 400, description = "Unknown use case (`unknown_use_case`), a tenant id no job could have (`empty_tenant`, `tenant_too_long`, `control_characters`), or a path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Only the operator token pauses and resumes (`forbidden_tenant`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn pause_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Pause>, ApiError> {
    let Path((use_case, tenant)) = path.map_err(|_| invalid_path())?;
    pause(&state, &caller, PauseScope::tenant(use_case, tenant)).await
}

/// Resumes one tenant within a use case (a whole-use-case pause still holds it).
#[utoipa::path(
    delete, path = "/pauses/{use_case}/tenants/{tenant_id}", tag = "pauses",
    params(
        ("use_case" = String, Path, description = "A configured use case"),
        ("tenant_id" = String, Path, description = "The tenant"),
    ),
    responses(
        (status = 200, description = "Whether it was paused", body = Resumed),
        (status = 400, description = "Unknown use case (`unknown_use_case`), a tenant id no job could have (`empty_tenant`, `tenant_too_long`, `control_characters`), or a path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Only the operator token pauses and resumes (`forbidden_tenant`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn resume_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Resumed>, ApiError> {
    let Path((use_case, tenant)) = path.map_err(|_| invalid_path())?;
    resume(&state, &caller, PauseScope::tenant(use_case, tenant)).await
}
