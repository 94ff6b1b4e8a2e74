//! `/schedules`: cron schedules (periodic jobs). Each slot of a schedule's cron expression
//! enqueues one job from its template (see [`jobs_core::schedule`]); the scheduler's leader fires
//! them. The operator token manages every schedule; a tenant key sees and manages only schedules
//! whose template's tenant is its own (another tenant's schedule is `404 schedule_not_found`, a
//! template naming another tenant `403 forbidden_tenant`). Schedules declared in the
//! configuration (`source: config`) are read-only here (`409 schedule_from_config`).

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use jobs_core::{NewSchedule, Schedule, ScheduleDefinition, ScheduleError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{codes, ApiError, ErrorBody};
use crate::extract::read_json;
use crate::state::AppState;

/// Every schedule the caller may see, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules.
    #[schema(value_type = Vec<ScheduleSchema>)]
    pub schedules: Vec<Schedule>,
}

/// The job a schedule enqueues at each slot (an enqueue request without `run_at` and
/// `idempotency_key`: the slot and `schedule:<name>:<slot>`).
#[derive(ToSchema)]
#[schema(as = JobTemplate)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct JobTemplateSchema {
    tenant_id: String,
    use_case: String,
    #[schema(rename = "type")]
    r#type: String,
    payload: Option<serde_json::Value>,
    delay_tolerance_seconds: Option<f64>,
    priority: Option<i16>,
    max_attempts: Option<u32>,
    timeout_seconds: Option<f64>,
    expire_at_deadline: Option<bool>,
}

/// What to do with slots that were missed (fired after `slot + delay tolerance`): `skip` them
/// (default), or `catch_up` at most `max` of them (the most recent).
#[derive(ToSchema)]
#[schema(as = MissedPolicy)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) enum MissedPolicySchema {
    /// Drop missed slots.
    Skip,
    /// Fire at most `max` missed slots (0 to 1000).
    CatchUp {
        /// The most missed slots fired at once.
        #[schema(maximum = 1000)]
        max: u32,
    },
}

/// A cron schedule.
#[derive(ToSchema)]
#[schema(as = Schedule)]
#[allow(dead_code)]
pub(crate) struct ScheduleSchema {
    /// Unique name.
    name: String,
    /// Cron expression: 5 fields, or 6 with leading seconds.
    cron: String,
    /// IANA time zone the expression is read in.
    timezone: String,
    template: JobTemplateSchema,
    missed: MissedPolicySchema,
    /// The next slot to fire.
    next_run_at: DateTime<Utc>,
    /// `config` (declared in ASYNC_JOBS_SCHEDULES; read-only here) or `api`.
    source: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A schedule to create.
#[derive(ToSchema)]
#[schema(as = NewSchedule)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct NewScheduleSchema {
    /// Unique name: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    name: String,
    /// Cron expression: 5 fields, or 6 with leading seconds.
    cron: String,
    /// IANA time zone (default `UTC`).
    timezone: Option<String>,
    template: JobTemplateSchema,
    missed: Option<MissedPolicySchema>,
}

/// A schedule's new definition.
#[derive(ToSchema)]
#[schema(as = ScheduleDefinition)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ScheduleDefinitionSchema {
    /// Cron expression: 5 fields, or 6 with leading seconds.
    cron: String,
    /// IANA time zone (default `UTC`).
    timezone: Option<String>,
    template: JobTemplateSchema,
    missed: Option<MissedPolicySchema>,
}

/// The outcome of a delete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleDeleted {
    /// The schedule's name.
    pub name: String,
    /// Always `true` (a missing schedule is 404).
    pub deleted: bool,
}

/// The body of `POST /schedules`.
pub(crate) struct NewScheduleBody(NewSchedule);

impl FromRequest<AppState> for NewScheduleBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json(req, state.settings().body_limit)
            .await
            .map(NewScheduleBody)
    }
}

/// The body of `PUT /schedules/{name}`.
pub(crate) struct DefinitionBody(ScheduleDefinition);

impl FromRequest<AppState> for DefinitionBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        read_json(req, state.settings().body_limit)
            .await
            .map(DefinitionBody)
    }
}

fn invalid_path() -> ApiError {
    ApiError::bad_request(
        codes::INVALID_PATH,
        "a path segment is not valid UTF-8 text",
    )
}

impl ApiError {
    /// The answer to a refused schedule operation.
    pub fn from_schedule(err: ScheduleError) -> Self {
        match err {
            ScheduleError::Invalid(e) => Self::bad_request(e.code(), e.to_string()),
            e @ ScheduleError::NotFound(_) => Self::new(
                StatusCode::NOT_FOUND,
                codes::SCHEDULE_NOT_FOUND,
                e.to_string(),
            ),
            e @ ScheduleError::Exists(_) => {
                Self::new(StatusCode::CONFLICT, codes::SCHEDULE_EXISTS, e.to_string())
            }
            e @ ScheduleError::ManagedByConfig(_) => Self::new(
                StatusCode::CONFLICT,
                codes::SCHEDULE_FROM_CONFIG,
                e.to_string(),
            ),
            e @ ScheduleError::Forbidden(_) => Self::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN_TENANT,
                e.to_string(),
            ),
            ScheduleError::Store(s) => Self::from_store(&s),
        }
    }
}

/// Lists the schedules.
#[utoipa::path(
    get, path = "/schedules", tag = "schedules",
    responses(
        (status = 200, description = "The schedules the caller may see (a tenant key: those of its own tenant), by name, each with its `next_run_at`", body = ScheduleList),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_schedules(
    State(state): State<AppState>,
    Caller(scope): Caller,
) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = state.service().schedules(&scope).await?;
    Ok(Json(ScheduleList { schedules }))
}

/// Creates a schedule.
#[utoipa::path(
    post, path = "/schedules", tag = "schedules",
    request_body = NewScheduleSchema,
    responses(
        (status = 201, description = "Created; `next_run_at` is its first slot", body = ScheduleSchema),
        (status = 400, description = "Invalid schedule: `invalid_schedule_name`, `invalid_cron`, `unknown_time_zone`, `invalid_missed_policy`, a template validation code (`unknown_use_case`, `empty_tenant`, …), `invalid_json` or `invalid_body`", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A tenant-scoped key naming another tenant in the template (`forbidden_tenant`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`body_timeout`)", body = ErrorBody),
        (status = 409, description = "A schedule by that name exists (`schedule_exists`)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_schedule(
    State(state): State<AppState>,
    Caller(scope): Caller,
    NewScheduleBody(new): NewScheduleBody,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let schedule = state
        .service()
        .create_schedule(new, &scope)
        .await
        .map_err(ApiError::from_schedule)?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// Reads a schedule, with its next run time.
#[utoipa::path(
    get, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleSchema),
        (status = 400, description = "A path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such schedule, or another tenant's (`schedule_not_found`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_schedule(
    State(state): State<AppState>,
    Caller(scope): Caller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Schedule>, ApiError> {
    let Path(name) = path.map_err(|_| invalid_path())?;
    let schedule = state
        .service()
        .schedule(&name, &scope)
        .await
        .map_err(ApiError::from_schedule)?;
    Ok(Json(schedule))
}

/// Replaces a schedule's definition (its `next_run_at` is kept unless the cron expression or
/// time zone changed).
#[utoipa::path(
    put, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body = ScheduleDefinitionSchema,
    responses(
        (status = 200, description = "The schedule as updated", body = ScheduleSchema),
        (status = 400, description = "Invalid definition (as for a create), `invalid_json`, `invalid_body`, or a path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A tenant-scoped key naming another tenant in the template (`forbidden_tenant`)", body = ErrorBody),
        (status = 404, description = "No such schedule, or another tenant's (`schedule_not_found`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`body_timeout`)", body = ErrorBody),
        (status = 409, description = "The schedule is declared in the configuration (`schedule_from_config`)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update_schedule(
    State(state): State<AppState>,
    Caller(scope): Caller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    DefinitionBody(definition): DefinitionBody,
) -> Result<Json<Schedule>, ApiError> {
    let Path(name) = path.map_err(|_| invalid_path())?;
    let schedule = state
        .service()
        .update_schedule(&name, definition, &scope)
        .await
        .map_err(ApiError::from_schedule)?;
    Ok(Json(schedule))
}

/// Deletes a schedule (jobs it already enqueued stay).
#[utoipa::path(
    delete, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Deleted", body = ScheduleDeleted),
        (status = 400, description = "A path that is not UTF-8 (`invalid_path`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such schedule, or another tenant's (`schedule_not_found`)", body = ErrorBody),
        (status = 409, description = "The schedule is declared in the configuration (`schedule_from_config`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_schedule(
    State(state): State<AppState>,
    Caller(scope): Caller,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ScheduleDeleted>, ApiError> {
    let Path(name) = path.map_err(|_| invalid_path())?;
    state
        .service()
        .delete_schedule(&name, &scope)
        .await
        .map_err(ApiError::from_schedule)?;
    Ok(Json(ScheduleDeleted {
        name,
        deleted: true,
    }))
}
