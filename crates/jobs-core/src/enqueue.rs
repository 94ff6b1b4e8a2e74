//! Enqueue requests and their validation.
//!
//! [`EnqueueRequest`] is what a caller (library user or HTTP client) asks for; [`validate`] turns
//! it into a [`NewJob`] or names exactly what is wrong with a [`ValidationError`]. Every bound
//! comes from [`Limits`]; nothing here panics on any input.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::config::{Limits, PlatformConfig};
use crate::deadline;
use crate::job::{new_job_id, NewJob};
use crate::job_type::JobType;
use crate::trace::TraceContext;

/// A request to enqueue one job. The JSON field names are the original API's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Owner of the job.
    pub tenant_id: String,
    /// Use case (must be configured).
    pub use_case: String,
    /// Handler name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Handler input (any JSON; default `{}`).
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// Earliest start; absent = now. In JSON an RFC 3339 date-time (`2026-01-31T12:00:00Z`);
    /// anything else is refused with a message that says so.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::rfc3339::deserialize_option"
    )]
    pub run_at: Option<DateTime<Utc>>,
    /// Start window after `run_at`, in seconds; absent = the use case's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_tolerance_seconds: Option<f64>,
    /// Attempt budget; absent = [`Limits::default_max_attempts`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::deserialize_option"
    )]
    pub max_attempts: Option<u32>,
    /// Retry policy; absent = [`Backoff::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Accepted for compatibility with the original API: if given it must name the use case's
    /// queue (its name, or its configured URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Tie-breaker among equal deadlines (higher first; default 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::deserialize_option"
    )]
    pub priority: Option<i16>,
    /// Per-attempt time limit in seconds; absent = [`Limits::default_timeout`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Deduplication key, unique per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// End `expired` instead of starting after the deadline; absent = the use case's default
    /// ([`crate::UseCaseConfig::expire_at_deadline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at_deadline: Option<bool>,
    /// The enqueuer's W3C trace context. Not part of the JSON body: over HTTP it travels in the
    /// `traceparent` / `tracestate` headers.
    #[serde(skip)]
    pub trace_context: Option<TraceContext>,
}

/// The shortest per-attempt timeout a request may ask for: one millisecond (the store keeps
/// durations in microseconds, and a shorter limit could never be met).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl EnqueueRequest {
    /// A request with the required fields; everything else takes its default.
    pub fn new(
        tenant_id: impl Into<String>,
        use_case: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        EnqueueRequest {
            tenant_id: tenant_id.into(),
            use_case: use_case.into(),
            kind: kind.into(),
            payload,
            run_at: None,
            delay_tolerance_seconds: None,
            max_attempts: None,
            backoff: None,
            queue: None,
            priority: None,
            timeout_seconds: None,
            idempotency_key: None,
            expire_at_deadline: None,
            trace_context: None,
        }
    }

    /// A request for the typed job `job` in `use_case`: its kind is [`JobType::KIND`] and its
    /// payload `job` serialized to JSON. A value that does not serialize (e.g. a map whose keys
    /// are not strings, or a failing `Serialize` impl) is refused with
    /// [`ValidationError::PayloadNotSerializable`].
    pub fn typed<J: JobType>(
        tenant_id: impl Into<String>,
        use_case: impl Into<String>,
        job: &J,
    ) -> Result<Self, ValidationError> {
        let payload =
            serde_json::to_value(job).map_err(|e| ValidationError::PayloadNotSerializable {
                kind: J::KIND,
                message: e.to_string(),
            })?;
        Ok(EnqueueRequest::new(tenant_id, use_case, J::KIND, payload))
    }

    /// A request for the typed job `job` in its declared use case ([`JobType::USE_CASE`]); see
    /// [`typed`](Self::typed). A type that declares none is refused with
    /// [`ValidationError::NoDefaultUseCase`].
    pub fn of<J: JobType>(tenant_id: impl Into<String>, job: &J) -> Result<Self, ValidationError> {
        let use_case = J::USE_CASE.ok_or(ValidationError::NoDefaultUseCase { kind: J::KIND })?;
        EnqueueRequest::typed(tenant_id, use_case, job)
    }

    /// Ends the job `expired` if it has not started by its deadline (`true`), or lets it run late
    /// (`false`), whatever the use case's default.
    pub fn expire_at_deadline(mut self, expire: bool) -> Self {
        self.expire_at_deadline = Some(expire);
        self
    }

    /// Sets the earliest start.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the start window.
    pub fn delay_tolerance(mut self, d: Duration) -> Self {
        self.delay_tolerance_seconds = Some(d.as_secs_f64());
        self
    }

    /// Sets the attempt budget.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Sets the retry policy.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = Some(b);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, p: i16) -> Self {
        self.priority = Some(p);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout_seconds = Some(d.as_secs_f64());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the trace context the job's handler span will be a child of.
    pub fn trace_context(mut self, trace: TraceContext) -> Self {
        self.trace_context = Some(trace);
        self
    }
}

/// Why an enqueue request was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// The use case is not configured.
    #[error("unknown use case '{0}'")]
    UnknownUseCase(String),
    /// `queue` names another queue than the use case's.
    #[error("queue '{queue}' does not belong to use case '{use_case}'")]
    QueueMismatch {
        /// The given queue.
        queue: String,
        /// The use case.
        use_case: String,
    },
    /// `tenant_id` is empty.
    #[error("tenant_id must not be empty")]
    EmptyTenant,
    /// `tenant_id` is too long.
    #[error("tenant_id is {len} characters; the limit is {max}")]
    TenantTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `type` is empty.
    #[error("type must not be empty")]
    EmptyKind,
    /// `type` is too long.
    #[error("type is {len} characters; the limit is {max}")]
    KindTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name contains control characters.
    #[error("{field} must not contain control characters")]
    ControlCharacters {
        /// Which field.
        field: &'static str,
    },
    /// The payload is too large.
    #[error("payload is {size} bytes; the limit is {max}")]
    PayloadTooLarge {
        /// Its serialized size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `run_at` is further ahead than allowed.
    #[error("run_at is more than {max_days} days ahead")]
    RunAtTooFar {
        /// The limit in days.
        max_days: u64,
    },
    /// `max_attempts` is 0.
    #[error("max_attempts must be at least 1")]
    MaxAttemptsZero,
    /// `max_attempts` is too large.
    #[error("max_attempts is {value}; the limit is {max}")]
    MaxAttemptsTooLarge {
        /// The value.
        value: u32,
        /// The limit.
        max: u32,
    },
    /// `delay_tolerance_seconds` is negative.
    #[error("delay_tolerance_seconds must not be negative")]
    NegativeDelayTolerance,
    /// `delay_tolerance_seconds` is not finite, above the limit, or pushes the deadline past the
    /// calendar.
    #[error("delay_tolerance_seconds is out of range (at most {max_seconds} s)")]
    DelayToleranceOverflow {
        /// The limit.
        max_seconds: u64,
    },
    /// `timeout_seconds` is below [`MIN_TIMEOUT`] (one millisecond), not finite or above the
    /// limit.
    #[error("timeout_seconds must be from 0.001 to {max_seconds}")]
    InvalidTimeout {
        /// The limit.
        max_seconds: u64,
    },
    /// The backoff policy is inconsistent.
    #[error("invalid backoff: {0}")]
    InvalidBackoff(&'static str),
    /// `idempotency_key` is empty or too long.
    #[error("idempotency_key must be 1 to {max} characters")]
    InvalidIdempotencyKey {
        /// The limit.
        max: usize,
    },
    /// A batch is empty or too large.
    #[error("a batch must hold 1 to {max} jobs")]
    BatchSize {
        /// The limit.
        max: usize,
    },
    /// A typed job's value does not serialize to JSON ([`EnqueueRequest::typed`]).
    #[error("payload of '{kind}' does not serialize to JSON: {message}")]
    PayloadNotSerializable {
        /// The job type.
        kind: &'static str,
        /// The serializer's error.
        message: String,
    },
    /// A batch holds jobs of use cases kept in different stores ([`crate::route`]): a batch is
    /// all or nothing within one store only, so it is refused as a whole.
    #[error("the batch holds jobs of use cases '{first}' and '{second}', which are kept in different stores: a batch is all or nothing within one store only; send one batch per store")]
    BatchSpansStores {
        /// The use case of the batch's first job.
        first: String,
        /// A use case of another store.
        second: String,
    },
    /// [`EnqueueRequest::of`] was used for a job type that declares no use case.
    #[error("job type '{kind}' declares no use case (JobType::USE_CASE); name one with EnqueueRequest::typed")]
    NoDefaultUseCase {
        /// The job type.
        kind: &'static str,
    },
}

impl ValidationError {
    /// A stable machine-readable code, used in API error bodies.
    pub const fn code(&self) -> &'static str {
        match self {
            ValidationError::UnknownUseCase(_) => "unknown_use_case",
            ValidationError::QueueMismatch { .. } => "queue_mismatch",
            ValidationError::EmptyTenant => "empty_tenant",
            ValidationError::TenantTooLong { .. } => "tenant_too_long",
            ValidationError::EmptyKind => "empty_type",
            ValidationError::KindTooLong { .. } => "type_too_long",
            ValidationError::ControlCharacters { .. } => "control_characters",
            ValidationError::PayloadTooLarge { .. } => "payload_too_large",
            ValidationError::RunAtTooFar { .. } => "run_at_too_far",
            ValidationError::MaxAttemptsZero => "max_attempts_zero",
            ValidationError::MaxAttemptsTooLarge { .. } => "max_attempts_too_large",
            ValidationError::NegativeDelayTolerance => "negative_delay_tolerance",
            ValidationError::DelayToleranceOverflow { .. } => "delay_tolerance_overflow",
            ValidationError::InvalidTimeout { .. } => "invalid_timeout",
            ValidationError::InvalidBackoff(_) => "invalid_backoff",
            ValidationError::InvalidIdempotencyKey { .. } => "invalid_idempotency_key",
            ValidationError::BatchSize { .. } => "invalid_batch_size",
            ValidationError::PayloadNotSerializable { .. } => "payload_not_serializable",
            ValidationError::NoDefaultUseCase { .. } => "no_default_use_case",
            ValidationError::BatchSpansStores { .. } => "batch_spans_stores",
        }
    }
}

pub(crate) fn check_name(
    value: &str,
    field: &'static str,
    max: usize,
    empty: ValidationError,
    too_long: fn(usize, usize) -> ValidationError,
) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(empty);
    }
    let len = value.chars().count();
    if len > max {
        return Err(too_long(len, max));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters { field });
    }
    Ok(())
}

/// True if any string or key in `value` contains a NUL character, which no JSON column of a
/// database can store.
fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

/// Checks `req` against the configuration and builds the job to insert. `now` is used only to
/// bound `run_at`; the store stamps times with its own clock.
pub fn validate(
    req: EnqueueRequest,
    config: &PlatformConfig,
    now: DateTime<Utc>,
) -> Result<NewJob, ValidationError> {
    let limits: &Limits = &config.limits;
    let use_case = config
        .use_case(&req.use_case)
        .ok_or_else(|| ValidationError::UnknownUseCase(req.use_case.chars().take(128).collect()))?;
    if let Some(queue) = &req.queue {
        if queue != &use_case.name && Some(queue) != use_case.queue_url.as_ref() {
            return Err(ValidationError::QueueMismatch {
                queue: queue.chars().take(256).collect(),
                use_case: use_case.name.clone(),
            });
        }
    }
    check_name(
        &req.tenant_id,
        "tenant_id",
        limits.max_tenant_len,
        ValidationError::EmptyTenant,
        |len, max| ValidationError::TenantTooLong { len, max },
    )?;
    check_name(
        &req.kind,
        "type",
        limits.max_kind_len,
        ValidationError::EmptyKind,
        |len, max| ValidationError::KindTooLong { len, max },
    )?;

    if contains_nul(&req.payload) {
        return Err(ValidationError::ControlCharacters { field: "payload" });
    }
    let size = serde_json::to_vec(&req.payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limits.max_payload_bytes {
        return Err(ValidationError::PayloadTooLarge {
            size,
            max: limits.max_payload_bytes,
        });
    }

    let max_attempts = req.max_attempts.unwrap_or(limits.default_max_attempts);
    if max_attempts == 0 {
        return Err(ValidationError::MaxAttemptsZero);
    }
    if max_attempts > limits.max_attempts {
        return Err(ValidationError::MaxAttemptsTooLarge {
            value: max_attempts,
            max: limits.max_attempts,
        });
    }

    let tolerance_overflow = ValidationError::DelayToleranceOverflow {
        max_seconds: limits.max_delay_tolerance.as_secs(),
    };
    let delay_tolerance = match req.delay_tolerance_seconds {
        None => use_case.default_delay_tolerance,
        Some(s) if s.is_finite() && s < 0.0 => return Err(ValidationError::NegativeDelayTolerance),
        Some(s) => crate::duration_secs::from_secs(s)
            .ok()
            .filter(|d| *d <= limits.max_delay_tolerance)
            .ok_or(tolerance_overflow.clone())?,
    };

    if let Some(run_at) = req.run_at {
        let horizon = deadline::add_saturating(now, limits.max_schedule_ahead);
        if run_at > horizon {
            return Err(ValidationError::RunAtTooFar {
                max_days: limits.max_schedule_ahead.as_secs() / 86_400,
            });
        }
        deadline::deadline_at(run_at, delay_tolerance).map_err(|_| tolerance_overflow)?;
    }

    let timeout = match req.timeout_seconds {
        None => limits.default_timeout,
        Some(s) => crate::duration_secs::from_secs(s)
            .ok()
            .filter(|d| *d >= MIN_TIMEOUT && *d <= limits.max_timeout)
            .ok_or(ValidationError::InvalidTimeout {
                max_seconds: limits.max_timeout.as_secs(),
            })?,
    };

    let backoff = req.backoff.unwrap_or_default();
    if backoff.cap < backoff.base {
        return Err(ValidationError::InvalidBackoff(
            "cap_seconds must be at least base_seconds",
        ));
    }
    if backoff.cap > limits.max_delay_tolerance {
        return Err(ValidationError::InvalidBackoff(
            "cap_seconds is above the limit",
        ));
    }

    if let Some(key) = &req.idempotency_key {
        if key.is_empty() || key.chars().count() > limits.max_idempotency_key_len {
            return Err(ValidationError::InvalidIdempotencyKey {
                max: limits.max_idempotency_key_len,
            });
        }
        if key.chars().any(char::is_control) {
            return Err(ValidationError::ControlCharacters {
                field: "idempotency_key",
            });
        }
    }

    let quota = config.quotas.limit_for(&req.tenant_id, &use_case.name);
    let fair_weight = use_case
        .fair_share
        .then(|| config.weights.weight_for(&req.tenant_id, &use_case.name));
    Ok(NewJob {
        id: new_job_id(),
        tenant_id: req.tenant_id,
        use_case: use_case.name.clone(),
        kind: req.kind,
        payload: req.payload,
        priority: req.priority.unwrap_or(0),
        max_attempts,
        backoff,
        run_at: req.run_at,
        delay_tolerance,
        expire_at_deadline: req
            .expire_at_deadline
            .unwrap_or(use_case.expire_at_deadline),
        timeout,
        idempotency_key: req.idempotency_key,
        quota,
        fair_weight,
        trace_context: req.trace_context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuotaConfig;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    fn ok_req() -> EnqueueRequest {
        EnqueueRequest::new(
            "acme",
            "notifications",
            "send_email",
            json!({"to": "a@b.c"}),
        )
    }

    fn check(req: EnqueueRequest) -> Result<NewJob, ValidationError> {
        validate(req, &PlatformConfig::default(), now())
    }

    #[test]
    fn defaults_are_applied() {
        let config = PlatformConfig::default().with_quotas(QuotaConfig::unlimited().with_limit(
            "acme",
            "notifications",
            3,
        ));
        let job = validate(ok_req(), &config, now()).unwrap();
        assert_eq!(job.delay_tolerance, Duration::from_secs(300));
        assert_eq!(job.max_attempts, 5);
        assert_eq!(job.timeout, Duration::from_secs(300));
        assert_eq!(job.backoff, Backoff::default());
        assert_eq!(job.quota, Some(3));
        assert_eq!(job.run_at, None);
        let job = check(EnqueueRequest::new(
            "a",
            "message_labeling",
            "label_message",
            json!(null),
        ))
        .unwrap();
        assert_eq!(job.delay_tolerance, Duration::from_secs(600));
        assert_eq!(job.quota, None);
    }

    #[test]
    fn each_bad_input_has_its_own_error() {
        let far = now() + chrono::TimeDelta::days(400);
        let mut tolerance_nan = ok_req();
        tolerance_nan.delay_tolerance_seconds = Some(f64::NAN);
        let mut tolerance_neg = ok_req();
        tolerance_neg.delay_tolerance_seconds = Some(-1.0);
        let mut tolerance_huge = ok_req();
        tolerance_huge.delay_tolerance_seconds = Some(1e300);
        let mut timeout_zero = ok_req();
        timeout_zero.timeout_seconds = Some(0.0);
        let mut timeout_neg = ok_req();
        timeout_neg.timeout_seconds = Some(-3.0);
        let mut timeout_tiny = ok_req();
        timeout_tiny.timeout_seconds = Some(5e-324);
        let mut queue = ok_req();
        queue.queue = Some("other".into());
        let bad_backoff = Backoff {
            cap: Duration::from_secs(1),
            base: Duration::from_secs(2),
            ..Backoff::default()
        };
        let near_end = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::seconds(10);
        let cases: Vec<(EnqueueRequest, &str)> = vec![
            (
                EnqueueRequest {
                    use_case: "nope".into(),
                    ..ok_req()
                },
                "unknown_use_case",
            ),
            (queue, "queue_mismatch"),
            (
                EnqueueRequest {
                    tenant_id: "".into(),
                    ..ok_req()
                },
                "empty_tenant",
            ),
            (
                EnqueueRequest {
                    tenant_id: "  ".into(),
                    ..ok_req()
                },
                "empty_tenant",
            ),
            (
                EnqueueRequest {
                    tenant_id: "x".repeat(129),
                    ..ok_req()
                },
                "tenant_too_long",
            ),
            (
                EnqueueRequest {
                    tenant_id: "a\u{0}b".into(),
                    ..ok_req()
                },
                "control_characters",
            ),
            (
                EnqueueRequest {
                    kind: "".into(),
                    ..ok_req()
                },
                "empty_type",
            ),
            (
                EnqueueRequest {
                    kind: "k".repeat(200),
                    ..ok_req()
                },
                "type_too_long",
            ),
            (
                EnqueueRequest {
                    payload: json!("x".repeat(300 * 1024)),
                    ..ok_req()
                },
                "payload_too_large",
            ),
            (ok_req().run_at(far), "run_at_too_far"),
            (ok_req().max_attempts(0), "max_attempts_zero"),
            (ok_req().max_attempts(u32::MAX), "max_attempts_too_large"),
            (tolerance_neg, "negative_delay_tolerance"),
            (tolerance_nan, "delay_tolerance_overflow"),
            (tolerance_huge, "delay_tolerance_overflow"),
            (timeout_zero, "invalid_timeout"),
            (timeout_neg, "invalid_timeout"),
            (timeout_tiny, "invalid_timeout"),
            (ok_req().backoff(bad_backoff), "invalid_backoff"),
            (ok_req().idempotency_key(""), "invalid_idempotency_key"),
            (ok_req().idempotency_key("a\nb"), "control_characters"),
            (
                EnqueueRequest {
                    payload: json!({"deep": [{"x": "a\u{0}b"}]}),
                    ..ok_req()
                },
                "control_characters",
            ),
            (
                EnqueueRequest {
                    payload: json!({"k\u{0}": 1}),
                    ..ok_req()
                },
                "control_characters",
            ),
            (
                ok_req().idempotency_key("k".repeat(300)),
                "invalid_idempotency_key",
            ),
        ];
        for (req, code) in cases {
            let err = check(req.clone()).expect_err(code);
            assert_eq!(err.code(), code, "{req:?} gave {err}");
        }
        // Lengths count characters, not bytes (as JSON Schema's maxLength does).
        assert!(check(EnqueueRequest {
            tenant_id: "é".repeat(128),
            ..ok_req()
        })
        .is_ok());
        assert!(check(ok_req().idempotency_key("é".repeat(255))).is_ok());
        let mut ms = ok_req();
        ms.timeout_seconds = Some(0.001);
        assert!(check(ms).is_ok());
        // A past run_at is fine, but one whose deadline leaves the calendar is not.
        let past = check(ok_req().run_at(now() - chrono::TimeDelta::days(3))).unwrap();
        assert!(past.run_at.is_some());
        let mut overflow = ok_req().run_at(near_end);
        overflow.delay_tolerance_seconds = Some(3600.0);
        let err = validate(
            overflow,
            &PlatformConfig::default(),
            DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::seconds(20),
        )
        .unwrap_err();
        assert_eq!(err.code(), "delay_tolerance_overflow");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Welcome {
        to: String,
    }

    impl JobType for Welcome {
        const KIND: &'static str = "welcome_email";
        const USE_CASE: Option<&'static str> = Some("notifications");
    }

    /// A job type without a default use case.
    #[derive(Serialize, Deserialize)]
    struct Anywhere(u32);

    impl JobType for Anywhere {
        const KIND: &'static str = "anywhere";
    }

    /// Serializes to a map whose keys are pairs, which JSON cannot hold.
    #[derive(Serialize, Deserialize)]
    struct PairKeys(std::collections::BTreeMap<(u8, u8), u8>);

    impl JobType for PairKeys {
        const KIND: &'static str = "pair_keys";
        const USE_CASE: Option<&'static str> = Some("notifications");
    }

    #[test]
    fn typed_requests_take_kind_use_case_and_payload_from_the_type() {
        let welcome = Welcome {
            to: "ada@example.com".into(),
        };
        let req = EnqueueRequest::of("acme", &welcome).unwrap();
        assert_eq!(
            req,
            EnqueueRequest::new(
                "acme",
                "notifications",
                "welcome_email",
                json!({"to": "ada@example.com"})
            )
        );
        let job = check(req.max_attempts(2)).unwrap();
        assert_eq!(job.kind, Welcome::KIND);
        assert_eq!(job.max_attempts, 2);
        assert_eq!(
            serde_json::from_value::<Welcome>(job.payload).unwrap(),
            welcome
        );

        // A use case named at the call wins over the declared one.
        let req = EnqueueRequest::typed("acme", "message_labeling", &welcome).unwrap();
        assert_eq!(
            (req.kind.as_str(), req.use_case.as_str()),
            ("welcome_email", "message_labeling")
        );
        let req = EnqueueRequest::typed("acme", "notifications", &Anywhere(7)).unwrap();
        assert_eq!((req.kind.as_str(), &req.payload), ("anywhere", &json!(7)));
    }

    #[test]
    fn typed_requests_refuse_what_they_cannot_build() {
        let err = EnqueueRequest::of("acme", &Anywhere(7)).unwrap_err();
        assert_eq!(err, ValidationError::NoDefaultUseCase { kind: "anywhere" });
        assert_eq!(err.code(), "no_default_use_case");
        assert!(err.to_string().contains("EnqueueRequest::typed"), "{err}");

        let pairs = PairKeys([((1, 2), 3)].into_iter().collect());
        let err = EnqueueRequest::of("acme", &pairs).unwrap_err();
        assert_eq!(err.code(), "payload_not_serializable");
        assert!(
            matches!(&err, ValidationError::PayloadNotSerializable { kind: "pair_keys", message }
                if message.contains("key must be a string")),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("payload of 'pair_keys' does not serialize to JSON"),
            "{err}"
        );
        // The service's error takes it with `?`, as every other invalid request.
        let enqueue: crate::store::EnqueueError = err.clone().into();
        assert_eq!(enqueue, crate::store::EnqueueError::Invalid(err));
    }

    #[test]
    fn json_uses_the_original_field_names() {
        let req: EnqueueRequest = serde_json::from_value(json!({
            "tenant_id": "t", "use_case": "notifications", "type": "send_email",
            "payload": {"x": 1}, "delay_tolerance_seconds": 12.5, "max_attempts": 3,
            "backoff": {"strategy": "linear", "base_seconds": 2, "cap_seconds": 60, "jitter": "none"},
            "queue": "notifications", "priority": 4, "timeout_seconds": 30, "idempotency_key": "abc"
        }))
        .unwrap();
        let job = check(req).unwrap();
        assert_eq!(job.delay_tolerance, Duration::from_millis(12_500));
        assert_eq!(
            job.backoff.strategy,
            crate::backoff::BackoffStrategy::Linear
        );
        assert_eq!(job.priority, 4);
        assert!(serde_json::from_value::<EnqueueRequest>(json!({"tenant_id": "t"})).is_err());
        assert!(serde_json::from_value::<EnqueueRequest>(json!({
            "tenant_id": "t", "use_case": "u", "type": "k", "surprise": 1
        }))
        .is_err());
    }
}
