//! OpenAPI document: schema mirrors of the `jobs-core` wire types (which carry no OpenAPI derive;
//! a test keeps each mirror's properties equal to the real type's JSON fields) and the document's
//! frame. The paths come from the handlers' `#[utoipa::path]` attributes via `utoipa-axum`, so the
//! document lists exactly the routes the router serves.

#![allow(dead_code)] // The mirrors exist only for their schemas.

use chrono::{DateTime, Utc};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

/// Job status.
#[derive(ToSchema)]
#[schema(as = JobStatus)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobStatusSchema {
    Pending,
    Dispatched,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

/// Backoff strategy.
#[derive(ToSchema)]
#[schema(as = BackoffStrategy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BackoffStrategySchema {
    Exponential,
    Linear,
    Constant,
}

/// Backoff jitter.
#[derive(ToSchema)]
#[schema(as = Jitter)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JitterSchema {
    None,
    Full,
    Equal,
}

/// Retry policy.
#[derive(ToSchema)]
#[schema(as = Backoff)]
pub(crate) struct BackoffSchema {
    strategy: BackoffStrategySchema,
    base_seconds: f64,
    cap_seconds: f64,
    jitter: JitterSchema,
}

/// The W3C trace context a job carries from its enqueuer (`traceparent` / `tracestate` headers).
#[derive(ToSchema)]
#[schema(as = TraceContext)]
pub(crate) struct TraceContextSchema {
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
    #[schema(pattern = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
    traceparent: String,
    /// Vendor state, as received (at most 512 bytes); absent when none came.
    tracestate: Option<String>,
}

/// The job schema, twice: `Job` (with its payload) and `ListedJob` (a list page's job, whose
/// payload is there only when asked for), from one field list so they cannot drift apart.
macro_rules! job_schema {
    ($(#[$meta:meta])* $name:ident as $schema:ident, payload: $payload:ty) => {
        $(#[$meta])*
        #[derive(ToSchema)]
        #[schema(as = $schema)]
        pub(crate) struct $name {
            id: Uuid,
            tenant_id: String,
            use_case: String,
            #[schema(rename = "type")]
            r#type: String,
            payload: $payload,
            status: JobStatusSchema,
            priority: i16,
            attempts: u32,
            max_attempts: u32,
            backoff: BackoffSchema,
            run_at: DateTime<Utc>,
            delay_tolerance_seconds: f64,
            deadline_at: DateTime<Utc>,
            timeout_seconds: f64,
            idempotency_key: Option<String>,
            lease_expires_at: Option<DateTime<Utc>>,
            cancel_requested: bool,
            last_error: Option<String>,
            created_at: DateTime<Utc>,
            updated_at: DateTime<Utc>,
            dispatched_at: Option<DateTime<Utc>>,
            started_at: Option<DateTime<Utc>>,
            finished_at: Option<DateTime<Utc>>,
            /// When the job first started; its deadline is measured once, at this moment.
            first_started_at: Option<DateTime<Utc>>,
            /// The trace context of the request that enqueued the job (its handler's span is a
            /// child of it); absent when there was none.
            trace_context: Option<TraceContextSchema>,
        }
    };
}

job_schema!(
    /// A job.
    JobSchema as Job,
    payload: serde_json::Value
);

job_schema!(
    /// A job in a `GET /jobs` page: a `Job` whose `payload` key is present only with
    /// `include_payload=true`.
    ListedJobSchema as ListedJob,
    payload: Option<serde_json::Value>
);

/// A request to enqueue one job (the original API's field names). Unknown fields are refused.
#[derive(ToSchema)]
#[schema(as = EnqueueRequest)]
pub(crate) struct EnqueueRequestSchema {
    tenant_id: String,
    use_case: String,
    #[schema(rename = "type")]
    r#type: String,
    payload: Option<serde_json::Value>,
    run_at: Option<DateTime<Utc>>,
    delay_tolerance_seconds: Option<f64>,
    max_attempts: Option<u32>,
    backoff: Option<BackoffSchema>,
    queue: Option<String>,
    priority: Option<i16>,
    timeout_seconds: Option<f64>,
    idempotency_key: Option<String>,
}

/// A batch enqueue: all jobs or none.
#[derive(ToSchema)]
#[schema(as = BatchRequest)]
pub(crate) struct BatchRequestSchema {
    jobs: Vec<EnqueueRequestSchema>,
}

/// The jobs of a batch enqueue, in request order.
#[derive(ToSchema)]
#[schema(as = BatchResponse)]
pub(crate) struct BatchResponseSchema {
    jobs: Vec<JobSchema>,
}

/// A liveness or readiness answer.
#[derive(ToSchema)]
#[schema(as = Health)]
pub(crate) struct HealthSchema {
    status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's frame; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "async-jobs API", description = "Enqueue, inspect, cancel and retry durable async jobs."),
    modifiers(&BearerAuth),
    tags((name = "jobs", description = "Jobs"), (name = "ops", description = "Health, readiness, metrics, this document"))
)]
pub(crate) struct ApiDoc;
