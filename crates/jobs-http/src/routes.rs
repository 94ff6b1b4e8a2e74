//! The handlers and the router. Each handler maps HTTP to one [`jobs_core::JobService`] call and
//! the outcome back to HTTP; the domain decides.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobs_core::{
    EnqueueRequest, Enqueued, Job, JobStatus, JobView, PageRequest, StoreError, TenantScope,
    TraceContext,
};
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{codes, ApiError, ErrorBody};
use crate::extract::{
    encode_cursor, BatchRequest, EnqueueBody, JobIdPath, JobList, ListParams, ListQuery,
};
use crate::metrics as m;
use crate::openapi::{
    ApiDoc, BatchRequestSchema, BatchResponseSchema, EnqueueRequestSchema, HealthSchema, JobSchema,
    PredictedJobSchema,
};
use crate::state::AppState;
use crate::telemetry;

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Applies the `Idempotency-Key` header to `req`: the header fills an absent body key; a body key
/// that differs from the header is refused (400 `idempotency_key_mismatch`).
fn apply_idempotency_header(headers: &HeaderMap, req: &mut EnqueueRequest) -> Result<(), ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(());
    };
    let key = value.to_str().map_err(|_| {
        ApiError::bad_request(
            codes::IDEMPOTENCY_KEY_MISMATCH,
            "the Idempotency-Key header must be visible ASCII",
        )
    })?;
    match &req.idempotency_key {
        Some(body) if body != key => Err(ApiError::bad_request(
            codes::IDEMPOTENCY_KEY_MISMATCH,
            "the Idempotency-Key header and the body's idempotency_key differ",
        )),
        _ => {
            req.idempotency_key = Some(key.to_owned());
            Ok(())
        }
    }
}

/// The trace context to store with the jobs of this request: the request span's when spans are
/// exported (so the handler's span hangs under the API's), else the `traceparent` header's.
fn request_trace(headers: &HeaderMap) -> Option<TraceContext> {
    telemetry::span_trace_context(&tracing::Span::current())
        .or_else(|| telemetry::trace_context_from_headers(headers))
}

/// The trace headers of the enqueue routes, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct TraceHeaders {
    /// W3C Trace Context of the caller's span (`00-<trace id>-<parent id>-<flags>`): stored with
    /// the job, whose handler span becomes part of that trace. An invalid value is ignored.
    traceparent: Option<String>,
    /// W3C vendor trace state, kept with the `traceparent` (at most 512 bytes, else dropped).
    tracestate: Option<String>,
}

fn check_tenant(scope: &TenantScope, tenant_id: &str) -> Result<(), ApiError> {
    if scope.allows(tenant_id) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN_TENANT,
            "this credential may not enqueue jobs for that tenant",
        ))
    }
}

fn count_enqueued(outcome: &Enqueued) {
    let name = if outcome.created {
        m::JOBS_ENQUEUED
    } else {
        m::JOBS_DEDUPLICATED
    };
    metrics::counter!(name, "use_case" => outcome.job.use_case.clone()).increment(1);
}

async fn enqueue_one(
    state: &AppState,
    scope: &TenantScope,
    headers: &HeaderMap,
    mut req: EnqueueRequest,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    apply_idempotency_header(headers, &mut req)?;
    check_tenant(scope, &req.tenant_id)?;
    req.trace_context = request_trace(headers);
    // The prediction is read after the insert, outside its transaction; a failed read leaves it
    // null and the enqueue stands.
    let (outcome, prediction) = state
        .service()
        .enqueue_with_prediction(req)
        .await
        .map_err(|e| ApiError::from_enqueue(e, state.settings().quota_retry_after))?;
    count_enqueued(&outcome);
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(JobView {
            job: outcome.job,
            prediction,
        }),
    ))
}

/// Enqueues one job.
#[utoipa::path(
    post, path = "/jobs", tag = "jobs",
    request_body = EnqueueRequestSchema,
    params(("Idempotency-Key" = Option<String>, Header, description = "Deduplication key; must equal the body's idempotency_key if both are given"), TraceHeaders),
    responses(
        (status = 201, description = "Created, with its predicted start", body = PredictedJobSchema),
        (status = 200, description = "An existing job with the same idempotency key, with its predicted start", body = PredictedJobSchema),
        (status = 400, description = "Invalid request: a validation code (`unknown_use_case`, `empty_tenant`, …), `invalid_json`, `invalid_body` or `idempotency_key_mismatch`", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Tenant-scoped key enqueuing for another tenant", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 429, description = "Tenant quota exceeded (`quota_exceeded`, with `Retry-After`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn enqueue(
    State(state): State<AppState>,
    Caller(scope): Caller,
    headers: HeaderMap,
    EnqueueBody(req): EnqueueBody,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    enqueue_one(&state, &scope, &headers, req).await
}

/// Enqueues one job (alias of `POST /jobs`, the original API's path).
#[utoipa::path(
    post, path = "/jobs/enqueue", tag = "jobs",
    request_body = EnqueueRequestSchema,
    params(("Idempotency-Key" = Option<String>, Header, description = "Deduplication key"), TraceHeaders),
    responses(
        (status = 201, description = "Created, with its predicted start", body = PredictedJobSchema),
        (status = 200, description = "An existing job with the same idempotency key, with its predicted start", body = PredictedJobSchema),
        (status = 400, description = "Invalid request: a validation code (`unknown_use_case`, `empty_tenant`, …), `invalid_json`, `invalid_body` or `idempotency_key_mismatch`", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "Tenant-scoped key enqueuing for another tenant", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body larger than the limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 429, description = "Tenant quota exceeded (`quota_exceeded`, with `Retry-After`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn enqueue_alias(
    State(state): State<AppState>,
    Caller(scope): Caller,
    headers: HeaderMap,
    EnqueueBody(req): EnqueueBody,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    enqueue_one(&state, &scope, &headers, req).await
}

/// Enqueues a batch of jobs in one transaction: all or none.
#[utoipa::path(
    post, path = "/jobs/batch", tag = "jobs",
    request_body = BatchRequestSchema,
    params(TraceHeaders),
    responses(
        (status = 201, description = "At least one job created (the rest are idempotent replays)", body = BatchResponseSchema),
        (status = 200, description = "Every job already existed (idempotent replay)", body = BatchResponseSchema),
        (status = 400, description = "Invalid request: a validation code (the message names the job's index), `invalid_json`, `invalid_body`, or `idempotency_key_mismatch` for an Idempotency-Key header", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 403, description = "A tenant-scoped key enqueuing a job of another tenant (`forbidden_tenant`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within the body timeout (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body larger than the batch limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 429, description = "Tenant quota exceeded (`quota_exceeded`, with `Retry-After`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn enqueue_batch(
    State(state): State<AppState>,
    Caller(scope): Caller,
    headers: HeaderMap,
    batch: BatchRequest,
) -> Result<Response, ApiError> {
    if headers.contains_key(IDEMPOTENCY_KEY_HEADER) {
        return Err(ApiError::bad_request(
            codes::IDEMPOTENCY_KEY_MISMATCH,
            "a batch takes idempotency keys per job in the body, not in the Idempotency-Key header",
        ));
    }
    for req in &batch.jobs {
        check_tenant(&scope, &req.tenant_id)?;
    }
    let trace = request_trace(&headers);
    let mut jobs = batch.jobs;
    for req in &mut jobs {
        req.trace_context = trace.clone();
    }
    let outcomes = state
        .service()
        .enqueue_many(jobs)
        .await
        .map_err(|e| ApiError::from_enqueue(e, state.settings().quota_retry_after))?;
    outcomes.iter().for_each(count_enqueued);
    let status = if outcomes.iter().any(|o| o.created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let jobs: Vec<Job> = outcomes.into_iter().map(|o| o.job).collect();
    Ok((status, Json(json!({ "jobs": jobs }))).into_response())
}

/// One job.
#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, with its predicted start", body = PredictedJobSchema),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such job, or another tenant's (`not_found`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_job(
    State(state): State<AppState>,
    Caller(scope): Caller,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    state
        .service()
        .get_with_prediction(id, &scope)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::job_not_found(id))
}

/// Lists jobs, newest first, keyset-paginated. Payloads are left out unless
/// `include_payload=true`; a page with payloads stops at the server's byte budget. One call
/// examines a bounded number of candidate jobs (the tenant's, or all), so with a sparse filter a
/// page can be short or empty and still carry a `next_cursor`: follow it until it is absent.
#[utoipa::path(
    get, path = "/jobs", tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs (possibly short or empty; follow next_cursor until absent)", body = JobList),
        (status = 400, description = "Bad filter, cursor or limit (`invalid_query`, `invalid_status`, `invalid_timestamp`, `invalid_cursor`, `invalid_limit`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_jobs(
    State(state): State<AppState>,
    Caller(scope): Caller,
    query: ListQuery,
) -> Result<Json<JobList>, ApiError> {
    let settings = state.settings();
    let request = PageRequest {
        max_bytes: Some(settings.list_max_bytes),
        max_scanned: Some(settings.list_max_scanned),
        ..query.page
    };
    let page = state.service().list(query.filter, request, &scope).await?;
    Ok(Json(JobList {
        jobs: page.jobs,
        next_cursor: page.next.map(encode_cursor),
        payloads: request.include_payload,
    }))
}

/// Cancels a job: pending or dispatched jobs now; a running job is asked to stop.
#[utoipa::path(
    post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job after the cancel", body = JobSchema),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such job, or another tenant's (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already succeeded or dead (`illegal_transition`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn cancel_job(
    State(state): State<AppState>,
    Caller(scope): Caller,
    JobIdPath(id): JobIdPath,
) -> Result<Json<Job>, ApiError> {
    let job = state
        .service()
        .cancel(id, &scope)
        .await
        .map_err(|e| ApiError::from_change(e, state.settings().quota_retry_after))?;
    Ok(Json(job))
}

/// Retries a dead, cancelled or expired job by hand.
#[utoipa::path(
    post, path = "/jobs/{id}/retry", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, pending again", body = JobSchema),
        (status = 400, description = "The id is not a UUID (`invalid_id`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`unauthorized`, with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 404, description = "No such job, or another tenant's (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not dead, cancelled or expired (`illegal_transition`)", body = ErrorBody),
        (status = 429, description = "Tenant quota exceeded: the retried job would take the tenant over its quota (`quota_exceeded`, with `Retry-After`)", body = ErrorBody),
        (status = 500, description = "A non-retryable store failure (`internal`; details are logged, not sent)", body = ErrorBody),
        (status = 503, description = "Store unavailable (`store_unavailable`), or a query ran past the store's statement timeout (`store_timeout`); both with `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn retry_job(
    State(state): State<AppState>,
    Caller(scope): Caller,
    JobIdPath(id): JobIdPath,
) -> Result<Json<Job>, ApiError> {
    let job = state
        .service()
        .retry(id, &scope)
        .await
        .map_err(|e| ApiError::from_change(e, state.settings().quota_retry_after))?;
    Ok(Json(job))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = HealthSchema)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store answers. With use cases in stores of their own, readiness is the
/// default store's, and the body reports each store (`stores`): one use case's store being down
/// does not take every process out of service.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready (with stores per use case: each store's status in `stores`)", body = HealthSchema),
        (status = 503, description = "The (default) store does not answer (`store_unavailable`)", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let timeout = state.settings().store_probe_timeout;
    let parts = state.service().store().ping_each(timeout).await;
    for (store, answer) in &parts {
        if let Err(err) = answer {
            tracing::warn!(store = %store, error = %err, "readiness check failed");
        }
    }
    match parts.first().map(|(_, answer)| answer) {
        Some(Ok(())) | None => {}
        Some(Err(StoreError::Timeout(_))) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::STORE_UNAVAILABLE,
                "the job store did not answer in time",
            ))
        }
        Some(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::STORE_UNAVAILABLE,
                "the job store does not answer",
            ))
        }
    }
    let mut body = json!({ "status": "ready" });
    if parts.len() > 1 {
        body["stores"] = parts
            .iter()
            .map(|(store, answer)| {
                let status = if answer.is_ok() {
                    "ready"
                } else {
                    "unavailable"
                };
                json!({ "store": store, "status": status })
            })
            .collect();
    }
    Ok(Json(body))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    refresh_job_gauges(&state).await;
    let body = match state.metrics_handle() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => {
            "# no Prometheus recorder owned by jobs-http (the host application installed its own)\n"
                .to_owned()
        }
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Sets the job-count gauges from the store (zero for statuses it no longer reports), at most
/// once per [`HttpSettings::job_counts_max_age`](crate::HttpSettings): a scrape within that
/// interval of the last read, or one that arrives while a read runs, serves the last sample.
async fn refresh_job_gauges(state: &AppState) {
    let mut read_at = state.counts_read_at().lock().await;
    let max_age = state.settings().job_counts_max_age;
    if read_at.is_some_and(|at| at.elapsed() < max_age) {
        return;
    }
    let timeout = state.settings().store_probe_timeout;
    let counted = tokio::time::timeout(timeout, state.service().store().counts()).await;
    let paused = tokio::time::timeout(timeout, state.service().store().pauses()).await;
    // A failed or slow read also waits out the interval: an unreachable store is not asked again
    // by every scrape.
    *read_at = Some(tokio::time::Instant::now());
    if let Ok(Ok(pauses)) = paused {
        for use_case in state.service().config().use_cases.keys() {
            let of_use_case = pauses.iter().filter(|p| &p.scope.use_case == use_case);
            let (whole, tenants) = of_use_case.fold((0.0, 0.0), |(w, t), p| {
                if p.scope.tenant_id.is_some() {
                    (w, t + 1.0)
                } else {
                    (1.0, t)
                }
            });
            metrics::gauge!(m::USE_CASE_PAUSED, "use_case" => use_case.clone()).set(whole);
            metrics::gauge!(m::TENANTS_PAUSED, "use_case" => use_case.clone()).set(tenants);
        }
    }
    let Ok(Ok(counts)) = counted else {
        return;
    };
    for use_case in state.service().config().use_cases.keys() {
        for status in JobStatus::ALL {
            metrics::gauge!(m::JOBS, "use_case" => use_case.clone(), "status" => status.as_str())
                .set(0.0);
        }
    }
    for c in counts {
        metrics::gauge!(m::JOBS, "use_case" => c.use_case, "status" => c.status.as_str())
            .set(c.count as f64);
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> Response {
    let doc = state.openapi_json(|| {
        serde_json::to_string(&openapi_for(state.service().config(), state.auth()))
            .unwrap_or_else(|_| "{}".to_owned())
    });
    ([(header::CONTENT_TYPE, "application/json")], doc.to_owned()).into_response()
}

/// Every route with its OpenAPI description.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(enqueue, list_jobs))
        .routes(routes!(enqueue_alias))
        .routes(routes!(enqueue_batch))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
        .routes(routes!(crate::bulk::bulk_retry))
        .routes(routes!(crate::bulk::bulk_cancel))
        .routes(routes!(crate::pauses::list_pauses))
        .routes(routes!(
            crate::pauses::pause_use_case,
            crate::pauses::resume_use_case
        ))
        .routes(routes!(
            crate::pauses::pause_tenant,
            crate::pauses::resume_tenant
        ))
        .routes(routes!(
            crate::schedules::list_schedules,
            crate::schedules::create_schedule
        ))
        .routes(routes!(
            crate::schedules::get_schedule,
            crate::schedules::update_schedule,
            crate::schedules::delete_schedule
        ))
        .routes(routes!(crate::rate_limits::list_rate_limits))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document (JSON) of exactly the routes [`router`] serves, for the default platform
/// configuration with authentication required. A router serves [`openapi_for`] its own.
pub fn openapi() -> serde_json::Value {
    crate::openapi::document(
        &api_router().split_for_parts().1,
        &jobs_core::PlatformConfig::default(),
        true,
    )
}

/// The OpenAPI document (JSON) a [`router`] with `config` and `auth` serves at `/openapi.json`:
/// the configured use cases and limits in the request schemas, and the bearer scheme on the
/// `/jobs` operations unless `auth` is open.
pub fn openapi_for(
    config: &jobs_core::PlatformConfig,
    auth: &crate::AuthConfig,
) -> serde_json::Value {
    crate::openapi::document(&api_router().split_for_parts().1, config, !auth.is_open())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::UNKNOWN_ROUTE, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// The API router, with the web dashboard at `/ui` ([`crate::ui`]). Mount it at the root or
/// under a prefix with [`axum::Router::nest`].
pub fn router(state: AppState) -> axum::Router {
    let limit = state
        .settings()
        .body_limit
        .max(state.settings().batch_body_limit);
    let (router, _) = api_router().split_for_parts();
    router
        .nest("/ui", crate::ui::routes())
        // `/ui/` (a trailing slash) is the dashboard too; relative, so it works under any prefix.
        .route(
            "/ui/",
            axum::routing::get(|| async { axum::response::Redirect::permanent("../ui") }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(crate::telemetry::trace_request))
        .layer(axum::middleware::from_fn(m::track))
        .layer(axum::middleware::from_fn(m::nosniff))
        .with_state(state)
}

/// The operations router of the scheduler and worker processes: `GET /healthz` (alive),
/// `GET /readyz` (the store answers) and `GET /metrics` (Prometheus text), with the same
/// handlers and JSON errors as the API. `async_jobs::app` serves it on `ASYNC_JOBS_HEALTH_ADDR`.
pub fn ops_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(m::nosniff))
        .with_state(state)
}
