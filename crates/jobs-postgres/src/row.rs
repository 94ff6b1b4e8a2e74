//! Rows to domain values and domain values to column values.

use std::time::Duration;

use jobs_core::backoff::{Backoff, BackoffStrategy, Jitter};
use jobs_core::{Dispatch, Job, JobStatus, LeaseToken, StoreError, TraceContext};
use tokio_postgres::Row;

/// The column list every statement returning jobs uses (unqualified; statements that join
/// qualify it through [`job_columns`]).
pub(crate) const JOB_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "use_case",
    "kind",
    "payload",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "backoff_strategy",
    "backoff_base_us",
    "backoff_cap_us",
    "backoff_jitter",
    "run_at",
    "delay_tolerance_us",
    "deadline_at",
    "expire_at_deadline",
    "timeout_us",
    "idempotency_key",
    "lease_token",
    "lease_expires_at",
    "cancel_requested",
    "last_error",
    "created_at",
    "updated_at",
    "dispatched_at",
    "started_at",
    "finished_at",
    "first_started_at",
    "traceparent",
    "tracestate",
];

/// The job columns, each prefixed with `alias.`.
pub(crate) fn job_columns(alias: &str) -> String {
    JOB_COLUMNS
        .iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest interval this crate adds to a timestamp (100 years, exact in PostgreSQL's
/// floating-point interval arithmetic); longer leases and delays are clamped to it, where the
/// in-memory store saturates at the end of time.
pub(crate) const MAX_INTERVAL_US: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// A duration as whole microseconds (sub-microsecond parts are dropped), saturating.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A duration to add to a timestamp, clamped to [`MAX_INTERVAL_US`].
pub(crate) fn interval_us(d: Duration) -> i64 {
    micros(d).min(MAX_INTERVAL_US)
}

fn duration(us: i64, column: &str) -> Result<Duration, StoreError> {
    u64::try_from(us).map(Duration::from_micros).map_err(|_| {
        StoreError::Internal(format!("column {column} holds a negative duration: {us}"))
    })
}

fn u32_column(v: i64, column: &str) -> Result<u32, StoreError> {
    u32::try_from(v)
        .map_err(|_| StoreError::Internal(format!("column {column} is out of range: {v}")))
}

pub(crate) const fn strategy_str(s: BackoffStrategy) -> &'static str {
    match s {
        BackoffStrategy::Exponential => "exponential",
        BackoffStrategy::Linear => "linear",
        BackoffStrategy::Constant => "constant",
    }
}

pub(crate) const fn jitter_str(j: Jitter) -> &'static str {
    match j {
        Jitter::None => "none",
        Jitter::Full => "full",
        Jitter::Equal => "equal",
    }
}

fn strategy(s: &str) -> Result<BackoffStrategy, StoreError> {
    match s {
        "exponential" => Ok(BackoffStrategy::Exponential),
        "linear" => Ok(BackoffStrategy::Linear),
        "constant" => Ok(BackoffStrategy::Constant),
        other => Err(StoreError::Internal(format!(
            "unknown backoff strategy '{other}'"
        ))),
    }
}

fn jitter(s: &str) -> Result<Jitter, StoreError> {
    match s {
        "none" => Ok(Jitter::None),
        "full" => Ok(Jitter::Full),
        "equal" => Ok(Jitter::Equal),
        other => Err(StoreError::Internal(format!("unknown jitter '{other}'"))),
    }
}

pub(crate) fn status(s: &str) -> Result<JobStatus, StoreError> {
    s.parse()
        .map_err(|e: jobs_core::status::UnknownStatus| StoreError::Internal(e.to_string()))
}

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|e| StoreError::Internal(format!("reading column {column}: {e}")))
}

/// A job from a row holding [`JOB_COLUMNS`].
pub(crate) fn job(row: &Row) -> Result<Job, StoreError> {
    job_from(row, true)
}

/// A job from a row holding [`JOB_COLUMNS`], or all of them but `payload` when `with_payload` is
/// false (the payload is then `null`, as it is when the column holds SQL NULL).
pub(crate) fn job_from(row: &Row, with_payload: bool) -> Result<Job, StoreError> {
    let payload = if with_payload {
        get::<Option<serde_json::Value>>(row, "payload")?.unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    Ok(Job {
        id: get(row, "id")?,
        tenant_id: get(row, "tenant_id")?,
        use_case: get(row, "use_case")?,
        kind: get(row, "kind")?,
        payload,
        status: status(get(row, "status")?)?,
        priority: get(row, "priority")?,
        attempts: u32_column(get(row, "attempts")?, "attempts")?,
        max_attempts: u32_column(get(row, "max_attempts")?, "max_attempts")?,
        backoff: Backoff {
            strategy: strategy(get(row, "backoff_strategy")?)?,
            base: duration(get(row, "backoff_base_us")?, "backoff_base_us")?,
            cap: duration(get(row, "backoff_cap_us")?, "backoff_cap_us")?,
            jitter: jitter(get(row, "backoff_jitter")?)?,
        },
        run_at: get(row, "run_at")?,
        delay_tolerance: duration(get(row, "delay_tolerance_us")?, "delay_tolerance_us")?,
        deadline_at: get(row, "deadline_at")?,
        expire_at_deadline: get(row, "expire_at_deadline")?,
        timeout: duration(get(row, "timeout_us")?, "timeout_us")?,
        idempotency_key: get(row, "idempotency_key")?,
        lease_token: get::<Option<uuid::Uuid>>(row, "lease_token")?.map(LeaseToken::from_uuid),
        lease_expires_at: get(row, "lease_expires_at")?,
        cancel_requested: get(row, "cancel_requested")?,
        last_error: get(row, "last_error")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        dispatched_at: get(row, "dispatched_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        first_started_at: get(row, "first_started_at")?,
        trace_context: trace_context(get(row, "traceparent")?, get(row, "tracestate")?),
    })
}

/// The stored trace context. Only validated values are written; one that no longer parses is
/// ignored (as the W3C says of an invalid `traceparent`) rather than making the job unreadable.
fn trace_context(traceparent: Option<String>, tracestate: Option<String>) -> Option<TraceContext> {
    TraceContext::from_headers(traceparent.as_deref(), tracestate.as_deref())
}

/// The `traceparent` and `tracestate` columns of a job's trace context.
pub(crate) fn trace_columns(tc: Option<&TraceContext>) -> (Option<String>, Option<&str>) {
    (
        tc.map(TraceContext::traceparent),
        tc.and_then(TraceContext::tracestate),
    )
}

/// A dispatch from a row of the lease statement, with the job's priority for EDF ordering.
pub(crate) fn dispatch(row: &Row) -> Result<(Dispatch, i16), StoreError> {
    let attempts = u32_column(get(row, "attempts")?, "attempts")?;
    let token: uuid::Uuid = get(row, "lease_token")?;
    Ok((
        Dispatch {
            job_id: get(row, "id")?,
            lease_token: LeaseToken::from_uuid(token),
            tenant_id: get(row, "tenant_id")?,
            use_case: get(row, "use_case")?,
            kind: get(row, "kind")?,
            attempt: attempts.saturating_add(1),
            deadline_at: get(row, "deadline_at")?,
        },
        get(row, "priority")?,
    ))
}

/// Makes an error message storable: PostgreSQL text cannot hold NUL, and very long messages are
/// cut (at a character boundary) to [`MAX_ERROR_BYTES`].
pub(crate) fn error_text(message: &str) -> String {
    let mut end = message.len().min(MAX_ERROR_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].replace('\0', "\u{FFFD}")
}

/// The longest stored error message, in bytes.
pub(crate) const MAX_ERROR_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_at_microsecond_precision() {
        assert_eq!(micros(Duration::from_nanos(1_500)), 1);
        assert_eq!(micros(Duration::MAX), i64::MAX);
        assert_eq!(interval_us(Duration::MAX), MAX_INTERVAL_US);
        assert_eq!(
            duration(12_500_000, "x").unwrap(),
            Duration::from_millis(12_500)
        );
        assert!(duration(-1, "x").is_err());
    }

    #[test]
    fn error_text_is_storable() {
        assert_eq!(error_text("a\0b"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = error_text(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn enum_names_round_trip() {
        for s in [
            BackoffStrategy::Exponential,
            BackoffStrategy::Linear,
            BackoffStrategy::Constant,
        ] {
            assert_eq!(strategy(strategy_str(s)).unwrap(), s);
        }
        for j in [Jitter::None, Jitter::Full, Jitter::Equal] {
            assert_eq!(jitter(jitter_str(j)).unwrap(), j);
        }
    }
}
