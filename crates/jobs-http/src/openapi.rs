//! OpenAPI document: schema mirrors of the `jobs-core` wire types (which carry no OpenAPI derive;
//! a test keeps each mirror's properties equal to the real type's JSON fields) and the document's
//! frame. The paths come from the handlers' `#[utoipa::path]` attributes via `utoipa-axum`, so the
//! document lists exactly the routes the router serves.
//!
//! The document is exact for the router's configuration ([`document`]): the request schemas carry
//! the configured use cases and the validation limits (lengths, ranges, batch size, formats,
//! patterns, no unknown fields), so a request the schema accepts is one the API accepts, apart
//! from rules that relate two values, which JSON Schema cannot state and each schema's
//! description does: `cap_seconds ≥ base_seconds`, `queue` belonging to `use_case`, `run_at`
//! within the scheduling horizon, an `Idempotency-Key` header equal to the body's key, the
//! serialized payload's size and the absence of NUL characters in it. The `/jobs` operations
//! require the bearer scheme unless the router runs open.

#![allow(dead_code)] // The mirrors exist only for their schemas.

use chrono::{DateTime, Utc};
use jobs_core::PlatformConfig;
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::extract::{DEFAULT_LIMIT, MAX_LIMIT};

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
    Expired,
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
    ($(#[$meta:meta])* $name:ident as $schema:ident, payload: $payload:ty
        $(, extra: { $($(#[$fmeta:meta])* $field:ident: $fty:ty),* $(,)? })?) => {
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
            /// Not started by `deadline_at`, the job ends `expired` instead of running late.
            expire_at_deadline: bool,
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
            $($($(#[$fmeta])* $field: $fty,)*)?
        }
    };
}

job_schema!(
    /// A job.
    JobSchema as Job,
    payload: serde_json::Value
);

job_schema!(
    /// A job with its predicted start: the answer of a single enqueue (`POST /jobs`,
    /// `POST /jobs/enqueue`) and of `GET /jobs/{id}`. The prediction is an estimate made when the
    /// answer was written (see docs/fairness.md, "Predicted start").
    PredictedJobSchema as PredictedJob,
    payload: serde_json::Value,
    extra: {
        /// When the job is expected to start: an estimate from the jobs ahead of it in the pick
        /// order, the free places under the use case's cap and the recent rate at which the use
        /// case's jobs start. `null` when there is none: the job is not pending, it is paused, or
        /// it must wait and no recent start rate is known (no scheduler running).
        predicted_start_at: Option<DateTime<Utc>>,
        /// The predicted start falls after `deadline_at`. `null` exactly when
        /// `predicted_start_at` is. With more than 1,000 jobs ahead the prediction is a lower
        /// bound, and `at_risk` is true only if even that bound is late.
        at_risk: Option<bool>,
    }
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
    expire_at_deadline: Option<bool>,
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
    /// `/readyz` with use cases in stores of their own: each store (the default one first,
    /// which decides readiness) and whether it answers (`ready` or `unavailable`).
    stores: Option<Vec<StoreHealthSchema>>,
}

/// One store's readiness.
#[derive(ToSchema)]
#[schema(as = StoreHealth)]
pub(crate) struct StoreHealthSchema {
    /// "the default store", "the store of use case 'x'"
    store: String,
    /// `ready` or `unavailable`.
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
    tags((name = "jobs", description = "Jobs"), (name = "pauses", description = "Pause and resume a use case, or one tenant within it"), (name = "limits", description = "Rate limits in force"), (name = "schedules", description = "Cron schedules: periodic jobs, one per slot"), (name = "ops", description = "Health, readiness, metrics, this document"))
)]
pub(crate) struct ApiDoc;

/// A name (`tenant_id`, `type`): not blank (some character other than Unicode white space) and no
/// control characters (Unicode category Cc), as `jobs_core::enqueue::validate` checks.
pub(crate) const NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$";

/// No control characters (the body's `idempotency_key`).
pub(crate) const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The `Idempotency-Key` header: visible ASCII and inner spaces (HTTP trims a header value's
/// outer white space, and a header that is not visible ASCII is refused).
pub(crate) const HEADER_KEY_PATTERN: &str = r"^[\u0021-\u007E]([\u0020-\u007E]*[\u0021-\u007E])?$";

/// A list cursor: base64url without padding of 16 bytes (22 characters, the last carrying two
/// zero bits), as `extract::decode_cursor` accepts.
pub(crate) const CURSOR_PATTERN: &str = r"^[A-Za-z0-9_-]{21}[AQgw]$";

/// The OpenAPI document of `base` (the routes' derived document) made exact for `config`:
/// request schemas with the configured use cases and limits, list parameters with their types,
/// and the `/jobs`, `/pauses`, `/rate-limits` and `/schedules` operations' security (`auth_required`; without it the bearer scheme and the
/// 401 answers are left out).
pub(crate) fn document(
    base: &utoipa::openapi::OpenApi,
    config: &PlatformConfig,
    auth_required: bool,
) -> Value {
    let mut doc = serde_json::to_value(base).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("EnqueueRequest".into(), enqueue_request_schema(config));
        schemas.insert("BackoffRequest".into(), backoff_request_schema(config));
        schemas.insert("BatchRequest".into(), batch_request_schema(config));
        schemas.insert("JobTemplate".into(), job_template_schema(config));
        schemas.insert("MissedPolicy".into(), missed_policy_schema());
        for name in ["NewSchedule", "ScheduleDefinition"] {
            if let Some(props) = schemas
                .get_mut(name)
                .and_then(|s| s.get_mut("properties"))
                .and_then(Value::as_object_mut)
            {
                props.insert("timezone".into(), time_zone_schema());
                props.insert(
                    "missed".into(),
                    json!({
                        "$ref": "#/components/schemas/MissedPolicy",
                        "description": "Missed-slot policy; absent = skip. (Not null.)",
                    }),
                );
                props.insert(
                    "cron".into(),
                    json!({
                        "type": "string",
                        "description": "Cron expression: five fields (minute hour day-of-month month day-of-week) or six with leading seconds, that fires at least once more. Its syntax is checked by the API, not by this schema (`invalid_cron`).",
                        "example": "*/5 * * * *",
                    }),
                );
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (_, op) in item.iter_mut() {
                let Some(op) = op.as_object_mut() else {
                    continue;
                };
                if path.starts_with("/jobs")
                    || path.starts_with("/pauses")
                    || path.starts_with("/schedules")
                    || path.starts_with("/rate-limits")
                {
                    if auth_required {
                        op.insert("security".into(), json!([{ "bearer": [] }]));
                    } else {
                        op.remove("security");
                        if let Some(r) = op.get_mut("responses").and_then(Value::as_object_mut) {
                            r.remove("401");
                        }
                    }
                }
                if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                    for param in params {
                        exact_parameter(param, config);
                    }
                }
            }
        }
    }
    if !auth_required {
        if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
            components.remove("securitySchemes");
        }
    }
    doc
}

fn exact_parameter(param: &mut Value, config: &PlatformConfig) {
    let name = param
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let location = param.get("in").and_then(Value::as_str).unwrap_or_default();
    let schema = match (location, name) {
        ("header", "Idempotency-Key") => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": config.limits.max_idempotency_key_len,
            "pattern": HEADER_KEY_PATTERN,
        }),
        ("query", "status") => json!({ "$ref": "#/components/schemas/JobStatus" }),
        ("query", "limit") => json!({
            "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
        }),
        ("query", "created_after" | "created_before") => {
            json!({ "type": "string", "format": "date-time" })
        }
        ("query", "cursor") => json!({ "type": "string", "pattern": CURSOR_PATTERN }),
        ("query", "include_payload") => json!({ "type": "boolean", "default": false }),
        ("query", "tenant_id" | "use_case" | "type") => json!({ "type": "string" }),
        ("path", "use_case") => json!({
            "type": "string",
            "enum": config.use_cases.keys().collect::<Vec<_>>(),
        }),
        ("path", "tenant_id") => name_schema(
            config.limits.max_tenant_len,
            "The tenant: not blank, no control characters.",
        ),
        _ => return,
    };
    if let Some(p) = param.as_object_mut() {
        p.insert("schema".into(), schema);
    }
}

fn seconds(d: std::time::Duration) -> Value {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 && secs < 9.0e15 {
        json!(secs as u64)
    } else {
        json!(secs)
    }
}

fn name_schema(max: usize, description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": NAME_PATTERN,
        "description": description,
    })
}

fn enqueue_request_schema(config: &PlatformConfig) -> Value {
    let limits = &config.limits;
    let use_cases: Vec<&String> = config.use_cases.keys().collect();
    let mut queues: Vec<Value> = Vec::new();
    for uc in config.use_cases.values() {
        queues.push(json!(uc.name));
        if let Some(url) = &uc.queue_url {
            queues.push(json!(url));
        }
    }
    queues.push(Value::Null);
    let example_use_case = use_cases
        .first()
        .map(|s| s.as_str())
        .unwrap_or("notifications");
    let mut properties = Map::new();
    properties.insert(
        "tenant_id".into(),
        name_schema(
            limits.max_tenant_len,
            "Owner of the job: not blank, no control characters.",
        ),
    );
    properties.insert(
        "use_case".into(),
        json!({ "type": "string", "enum": use_cases, "description": "A configured use case." }),
    );
    properties.insert(
        "type".into(),
        name_schema(
            limits.max_kind_len,
            "Handler name: not blank, no control characters.",
        ),
    );
    properties.insert(
        "payload".into(),
        json!({
            "description": format!(
                "Handler input: any JSON (absent = {{}}), at most {} bytes serialized; no string or key in it may contain NUL (U+0000).",
                limits.max_payload_bytes
            ),
        }),
    );
    properties.insert(
        "run_at".into(),
        json!({
            "type": ["string", "null"],
            "format": "date-time",
            "description": format!(
                "Earliest start, RFC 3339; absent or null = now. At most {} days ahead (`run_at_too_far`).",
                limits.max_schedule_ahead.as_secs() / 86_400
            ),
        }),
    );
    properties.insert(
        "delay_tolerance_seconds".into(),
        json!({
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": seconds(limits.max_delay_tolerance),
            "description": "Start window after run_at; absent or null = the use case's default.",
        }),
    );
    properties.insert(
        "expire_at_deadline".into(),
        json!({
            "type": ["boolean", "null"],
            "description": "true: a job not started by its deadline ends `expired` instead of running late; absent or null = the use case's default (`ASYNC_JOBS_<USE_CASE>_EXPIRE_AT_DEADLINE`, false unless set).",
        }),
    );
    properties.insert(
        "max_attempts".into(),
        json!({
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": limits.max_attempts,
            "description": format!("Attempt budget; absent or null = {}.", limits.default_max_attempts),
        }),
    );
    properties.insert(
        "backoff".into(),
        json!({
            "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/BackoffRequest" }],
            "description": "Retry policy; absent or null = exponential from 1 s, capped at 1 h, full jitter.",
        }),
    );
    properties.insert(
        "queue".into(),
        json!({
            "type": ["string", "null"],
            "enum": queues,
            "description": "Accepted for compatibility with the original API: if given, the use case's own queue (its name or configured URL), else `queue_mismatch`.",
        }),
    );
    properties.insert(
        "priority".into(),
        json!({
            "type": ["integer", "null"],
            "minimum": i16::MIN,
            "maximum": i16::MAX,
            "description": "Tie-breaker among equal deadlines, higher first; absent or null = 0.",
        }),
    );
    properties.insert(
        "timeout_seconds".into(),
        json!({
            "type": ["number", "null"],
            "minimum": seconds(jobs_core::enqueue::MIN_TIMEOUT),
            "maximum": seconds(limits.max_timeout),
            "description": format!(
                "Per-attempt time limit; absent or null = {} s.",
                limits.default_timeout.as_secs()
            ),
        }),
    );
    properties.insert(
        "idempotency_key".into(),
        json!({
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": limits.max_idempotency_key_len,
            "pattern": NO_CONTROL_PATTERN,
            "description": "Deduplication key, unique per tenant; must equal the Idempotency-Key header when both are given.",
        }),
    );
    json!({
        "type": "object",
        "description": "A request to enqueue one job (the original API's field names). Unknown fields are refused.",
        "required": ["tenant_id", "use_case", "type"],
        "additionalProperties": false,
        "properties": properties,
        "example": {
            "tenant_id": "acme",
            "use_case": example_use_case,
            "type": "send_email",
            "payload": { "to": "someone@example.com" },
        },
    })
}

fn backoff_request_schema(config: &PlatformConfig) -> Value {
    let max = seconds(config.limits.max_delay_tolerance);
    json!({
        "type": "object",
        "description": "Retry policy of a request: cap_seconds must be at least base_seconds (`invalid_backoff`). Unknown fields are refused.",
        "required": ["base_seconds", "cap_seconds"],
        "additionalProperties": false,
        "properties": {
            "strategy": { "$ref": "#/components/schemas/BackoffStrategy" },
            "base_seconds": { "type": "number", "minimum": 0, "maximum": max.clone() },
            "cap_seconds": { "type": "number", "minimum": 0, "maximum": max },
            "jitter": { "$ref": "#/components/schemas/Jitter" },
        },
    })
}

/// A schedule's job template: the enqueue request's schema without the fields a slot sets
/// (`run_at`, `idempotency_key`) or a template does not carry (`backoff`, `queue`).
fn job_template_schema(config: &PlatformConfig) -> Value {
    let mut schema = enqueue_request_schema(config);
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for field in ["run_at", "idempotency_key", "backoff", "queue"] {
            props.remove(field);
        }
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "description".into(),
            json!("The job a schedule enqueues at each slot: an enqueue request without run_at (the slot) and idempotency_key (`schedule:<name>:<slot>`), validated as POST /jobs validates it. Unknown fields are refused."),
        );
    }
    schema
}

/// A missed-slot policy, exactly: `{"policy": "skip"}` or `{"policy": "catch_up", "max": n}`
/// (no other keys; the derived schema cannot say so per variant).
fn missed_policy_schema() -> Value {
    json!({
        "description": "What to do with slots that were missed (fired after slot + delay tolerance): skip them, or catch up at most `max` of them (the most recent).",
        "oneOf": [
            {
                "type": "object",
                "required": ["policy"],
                "additionalProperties": false,
                "properties": { "policy": { "type": "string", "enum": ["skip"] } },
            },
            {
                "type": "object",
                "required": ["policy", "max"],
                "additionalProperties": false,
                "properties": {
                    "policy": { "type": "string", "enum": ["catch_up"] },
                    "max": { "type": "integer", "minimum": 0, "maximum": jobs_core::schedule::MAX_CATCH_UP },
                },
            },
        ],
    })
}

/// An IANA time zone name (the tz database the server carries); absent = UTC.
fn time_zone_schema() -> Value {
    json!({
        "type": "string",
        "enum": jobs_core::schedule::time_zone_names().collect::<Vec<_>>(),
        "default": "UTC",
        "description": "IANA time zone the cron expression is read in; absent = UTC (`unknown_time_zone` otherwise).",
    })
}

fn batch_request_schema(config: &PlatformConfig) -> Value {
    json!({
        "type": "object",
        "description": "A batch enqueue: all jobs or none. Unknown fields are refused.",
        "required": ["jobs"],
        "additionalProperties": false,
        "properties": {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": config.limits.max_batch,
                "items": { "$ref": "#/components/schemas/EnqueueRequest" },
            },
        },
    })
}
