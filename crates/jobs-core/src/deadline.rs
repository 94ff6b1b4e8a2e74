//! Deadline arithmetic: a job may start anywhere in `[run_at, deadline_at]` with
//! `deadline_at = run_at + delay_tolerance`.
//!
//! The rules (also in `docs/state_machine.md`): `deadline_at` is the latest start of the job's
//! next attempt and the scheduler's EDF key. A failed attempt (handler failure or lost worker)
//! and a manual retry open a new window (`run_at = now [+ backoff]`); dispatch expiry, a returned
//! dispatch and a shutdown release keep it, since no attempt ran. A job past its deadline is
//! still dispatched, and first. Met or missed is measured once per job, at its first start
//! ([`first_start_outcome`]).
//!
//! All additions are checked: a tolerance or delay too large for the calendar is an error value,
//! never a panic or a wrapped timestamp.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The sum does not fit in a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("time out of range: {0:?} added to a timestamp overflows")]
pub struct TimeOverflow(pub Duration);

/// `t + d`, checked.
pub fn add(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, TimeOverflow> {
    let delta = TimeDelta::from_std(d).map_err(|_| TimeOverflow(d))?;
    t.checked_add_signed(delta).ok_or(TimeOverflow(d))
}

/// `t − d`, checked.
pub fn sub(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, TimeOverflow> {
    let delta = TimeDelta::from_std(d).map_err(|_| TimeOverflow(d))?;
    t.checked_sub_signed(delta).ok_or(TimeOverflow(d))
}

/// `t + d`, saturating at the latest representable timestamp.
pub fn add_saturating(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    add(t, d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The latest moment a job scheduled for `run_at` may start.
pub fn deadline_at(
    run_at: DateTime<Utc>,
    delay_tolerance: Duration,
) -> Result<DateTime<Utc>, TimeOverflow> {
    add(run_at, delay_tolerance)
}

/// How late a job started relative to its `run_at` (zero if it started early).
pub fn schedule_lag(run_at: DateTime<Utc>, started_at: DateTime<Utc>) -> Duration {
    (started_at - run_at).to_std().unwrap_or(Duration::ZERO)
}

/// Slack left before the deadline at `now` (zero once the deadline has passed).
pub fn slack(deadline_at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (deadline_at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Whether a job met its deadline, measured at its first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineOutcome {
    /// The job first started by its deadline.
    Met,
    /// The job first started after its deadline, `late` after it.
    Missed {
        /// First start − deadline.
        late: Duration,
    },
}

/// The deadline outcome of `job` as just returned by a claim, if that claim was the job's first
/// start (`started_at == first_started_at`); `None` for a later attempt or a job not started. So
/// counting the outcome of every claim counts each job exactly once.
pub fn first_start_outcome(job: &crate::Job) -> Option<DeadlineOutcome> {
    let started = job.started_at?;
    if job.first_started_at != Some(started) {
        return None;
    }
    Some(match (started - job.deadline_at).to_std() {
        Ok(late) if !late.is_zero() => DeadlineOutcome::Missed { late },
        _ => DeadlineOutcome::Met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    #[test]
    fn deadline_is_run_at_plus_tolerance() {
        let d = deadline_at(t0(), Duration::from_secs(300)).unwrap();
        assert_eq!((d - t0()).num_seconds(), 300);
        assert_eq!(deadline_at(t0(), Duration::ZERO).unwrap(), t0());
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(deadline_at(t0(), Duration::MAX).is_err());
        assert!(deadline_at(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)).is_err());
        assert!(sub(DateTime::<Utc>::MIN_UTC, Duration::from_secs(1)).is_err());
        assert_eq!(
            add_saturating(t0(), Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn lag_and_slack_never_negative() {
        let later = add(t0(), Duration::from_secs(5)).unwrap();
        assert_eq!(schedule_lag(t0(), later), Duration::from_secs(5));
        assert_eq!(schedule_lag(later, t0()), Duration::ZERO);
        assert_eq!(slack(later, t0()), Duration::from_secs(5));
        assert_eq!(slack(t0(), later), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn deadline_never_before_run_at(secs in 0u64..=(200 * 366 * 24 * 3600), nanos in 0u32..1_000_000_000) {
            let tol = Duration::new(secs, nanos);
            match deadline_at(t0(), tol) {
                Ok(d) => {
                    prop_assert!(d >= t0());
                    prop_assert_eq!((d - t0()).to_std().unwrap(), tol);
                }
                Err(e) => prop_assert_eq!(e, TimeOverflow(tol)),
            }
        }

        #[test]
        fn any_duration_is_total(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let _ = deadline_at(t0(), Duration::new(secs, nanos));
            let _ = sub(t0(), Duration::new(secs, nanos));
        }
    }
}
