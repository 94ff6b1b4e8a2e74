//! The predicted start of a pending job: when the pick is expected to start it, and whether that
//! falls after its deadline. **An estimate**, not a promise: it is worked out at the moment it is
//! asked for, from what stands ahead of the job then, and nothing that arrives later is known.
//!
//! ```text
//! A = jobs ahead of this one in the pick order (ready, unpaused, not rate-limited; counted up to a bound)
//! free = cap − jobs in flight (dispatched + running)
//! r = the use case's drain rate (jobs started per second, measured by the leading scheduler)
//!
//! A < free            → start = max(now, run_at)                  (a place is free: at once)
//! otherwise, r known  → start = max(run_at, now + (A − free + 1) / r)
//! otherwise           → no prediction (nothing is known of how fast the queue moves)
//! at_risk             = start > deadline_at
//! ```
//!
//! The order counted is the pick's ([`crate::fair`]): with fair share, the jobs whose tag (then
//! deadline, priority, id) comes before this job's; in plain EDF (every tag 0), the jobs with an
//! earlier deadline. The drain rate is the one the scaling signal uses ([`crate::scaling::DrainRate`]),
//! which the leading scheduler stores per use case ([`crate::DispatchStore::record_drain_rate`]);
//! a rate older than [`RATE_MAX_AGE`] counts as unknown.
//!
//! What the estimate leaves out (see `docs/fairness.md`, "Predicted start"):
//! - **Later arrivals.** A job enqueued after this one with an earlier turn (a tenant below its
//!   share, or in plain EDF an earlier deadline) starts first and pushes this one back: under
//!   overload the prediction is early for the jobs that queue behind such arrivals.
//! - **A bounded count.** At most [`DEFAULT_AHEAD_BOUND`] jobs ahead are counted; past it the
//!   prediction is a lower bound, and `at_risk` is true only if even that bound is late.
//! - **Rate limits and pauses.** Jobs of rate-limited tenants are not counted ahead (they take
//!   their turns from their own lane), and a rate-limited job is predicted as if it had no limit.
//!   A paused job (its tenant or use case paused) has no prediction: it starts when resumed.
//! - **Scheduled jobs.** A job whose `run_at` is still to come holds no place in the order yet:
//!   it is predicted at its `run_at` (or after the next free place), whatever will be waiting then.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::status::JobStatus;

/// How many jobs ahead a store counts at most ([`crate::ApiStore::queue_position`]). Every
/// single enqueue over HTTP counts them (the 201's prediction), so this bounds what a deep
/// backlog adds to it: at 10,000, a backlog of that size made each enqueue walk 10,000 index
/// entries and cut HTTP enqueues of one use case from ~4,400/s to ~600/s on the bench machine.
pub const DEFAULT_AHEAD_BOUND: u32 = 1_000;

/// A drain rate measured longer ago than this counts as unknown (the scheduler that measured it
/// stopped leading, or stopped).
pub const RATE_MAX_AGE: Duration = Duration::from_secs(300);

/// The longest wait a prediction states (about 30 years); a slower queue is predicted at this.
const MAX_WAIT_S: f64 = 1e9;

/// A use case's drain rate as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedRate {
    /// Jobs started per second.
    pub per_second: f64,
    /// When the scheduler stored it (the store's clock).
    pub measured_at: DateTime<Utc>,
}

/// Where a pending job stands, as a store reads it in one go ([`crate::ApiStore::queue_position`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    /// The store's now when it read the position.
    pub at: DateTime<Utc>,
    /// The job's tenant or use case is paused: the job waits for the resume.
    pub paused: bool,
    /// Ready, unpaused, not rate-limited pending jobs of the use case before this job in the pick
    /// order (0 when the job is not ready yet, or paused), counted up to the bound asked for.
    pub ahead: u64,
    /// `ahead` reached the bound: there may be more.
    pub ahead_bounded: bool,
    /// The use case's jobs dispatched or running.
    pub in_flight: u64,
    /// The use case's drain rate, when a scheduler stored one.
    pub drain_rate: Option<RecordedRate>,
}

/// The inputs of [`predict`], named so they cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictInput {
    /// Jobs ahead in the pick order.
    pub ahead: u64,
    /// `ahead` is a bound: there may be more.
    pub ahead_bounded: bool,
    /// Places free under the cap now (cap − in flight, at least 0).
    pub free: u64,
    /// Jobs started per second, if known.
    pub rate: Option<f64>,
    /// The store's now.
    pub now: DateTime<Utc>,
    /// The job's earliest start.
    pub run_at: DateTime<Utc>,
    /// The job's deadline.
    pub deadline_at: DateTime<Utc>,
}

/// The predicted start of a job, and whether it falls after the deadline. Both are `None` when
/// there is no prediction: the job is not pending, is paused, or must wait and no drain rate is
/// known. Its JSON form is the API's: `predicted_start_at` (RFC 3339 or `null`) and `at_risk`
/// (`bool` or `null`); absent keys read as `None` (an older server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// When the job is expected to start (an estimate).
    #[serde(default)]
    pub predicted_start_at: Option<DateTime<Utc>>,
    /// The predicted start is after the deadline.
    #[serde(default)]
    pub at_risk: Option<bool>,
}

impl Prediction {
    /// No prediction.
    pub const fn unknown() -> Self {
        Prediction {
            predicted_start_at: None,
            at_risk: None,
        }
    }

    fn at(start: DateTime<Utc>, deadline_at: DateTime<Utc>) -> Self {
        Prediction {
            predicted_start_at: Some(start),
            at_risk: Some(start > deadline_at),
        }
    }
}

/// A job with its prediction: the answer of a single enqueue and of `GET /jobs/{id}`. Its JSON
/// form is the job's, plus `predicted_start_at` and `at_risk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job as stored.
    #[serde(flatten)]
    pub job: Job,
    /// Its predicted start.
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// The estimate (see the module docs): at once when a place is free, else after the jobs ahead
/// drain at `rate`; never before `now` or `run_at`. No rate (or not a positive number) and a wait
/// ahead: no prediction.
pub fn predict(input: PredictInput) -> Prediction {
    let earliest = input.now.max(input.run_at);
    if input.ahead < input.free && !input.ahead_bounded {
        return Prediction::at(earliest, input.deadline_at);
    }
    let Some(rate) = input.rate.filter(|r| r.is_finite() && *r > 0.0) else {
        return Prediction::unknown();
    };
    let waiting = input.ahead.saturating_sub(input.free).saturating_add(1);
    let wait_s = (waiting as f64 / rate).min(MAX_WAIT_S);
    let wait = chrono::TimeDelta::microseconds((wait_s * 1e6).ceil() as i64);
    let start = input
        .now
        .checked_add_signed(wait)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .max(input.run_at);
    Prediction::at(start, input.deadline_at)
}

/// The prediction for `job` from its position in a use case whose cap is `cap`: none when the
/// job is not pending, the store gave no position, or the job is paused; a drain rate older than
/// [`RATE_MAX_AGE`] counts as unknown.
pub fn from_position(job: &Job, position: Option<&QueuePosition>, cap: u32) -> Prediction {
    let Some(pos) = position else {
        return Prediction::unknown();
    };
    if job.status != JobStatus::Pending || pos.paused {
        return Prediction::unknown();
    }
    let rate = pos
        .drain_rate
        .filter(|r| {
            (pos.at - r.measured_at)
                .to_std()
                .map_or(true, |age| age <= RATE_MAX_AGE)
        })
        .map(|r| r.per_second);
    predict(PredictInput {
        ahead: pos.ahead,
        ahead_bounded: pos.ahead_bounded,
        free: u64::from(cap).saturating_sub(pos.in_flight),
        rate,
        now: pos.at,
        run_at: job.run_at,
        deadline_at: job.deadline_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::seconds(1_000_000 + s)
    }

    fn input(ahead: u64, free: u64, rate: Option<f64>) -> PredictInput {
        PredictInput {
            ahead,
            ahead_bounded: false,
            free,
            rate,
            now: t(0),
            run_at: t(0),
            deadline_at: t(60),
        }
    }

    #[test]
    fn the_estimate_by_case() {
        // A place is free: at once (or at run_at when later).
        assert_eq!(predict(input(2, 3, None)), Prediction::at(t(0), t(60)));
        let later = PredictInput {
            run_at: t(30),
            ..input(0, 1, None)
        };
        assert_eq!(predict(later).predicted_start_at, Some(t(30)));
        // Full: after (A − free + 1) / rate.
        assert_eq!(
            predict(input(19, 0, Some(2.0))),
            Prediction::at(t(10), t(60))
        );
        assert_eq!(
            predict(input(5, 3, Some(1.0))).predicted_start_at,
            Some(t(3))
        );
        // Late: at risk.
        assert_eq!(predict(input(99, 0, Some(1.0))).at_risk, Some(true));
        // Must wait and no rate: no prediction.
        for rate in [
            None,
            Some(0.0),
            Some(-1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ] {
            assert_eq!(
                predict(input(3, 0, rate)),
                Prediction::unknown(),
                "{rate:?}"
            );
        }
        // A bounded count is a lower bound: at risk only if even the bound is late.
        let bounded = PredictInput {
            ahead_bounded: true,
            ..input(10, 0, Some(1.0))
        };
        assert_eq!(predict(bounded), Prediction::at(t(11), t(60)));
        // A tiny rate: far off, not an overflow.
        let p = predict(input(u64::MAX, 0, Some(f64::MIN_POSITIVE)));
        assert_eq!(p.at_risk, Some(true));
    }

    fn job(status: JobStatus) -> Job {
        Job {
            tenant_id: "a".into(),
            status,
            delay_tolerance: Duration::from_secs(60),
            deadline_at: t(60),
            ..crate::job::fixture(t(0))
        }
    }

    #[test]
    fn from_a_position() {
        let pos = QueuePosition {
            at: t(0),
            paused: false,
            ahead: 10,
            ahead_bounded: false,
            in_flight: 4,
            drain_rate: Some(RecordedRate {
                per_second: 1.0,
                measured_at: t(-10),
            }),
        };
        let pending = job(JobStatus::Pending);
        // free = 5 − 4 = 1: (10 − 1 + 1) / 1 = 10 s.
        assert_eq!(
            from_position(&pending, Some(&pos), 5).predicted_start_at,
            Some(t(10))
        );
        assert_eq!(from_position(&pending, None, 5), Prediction::unknown());
        assert_eq!(
            from_position(&job(JobStatus::Running), Some(&pos), 5),
            Prediction::unknown()
        );
        let paused = QueuePosition {
            paused: true,
            ..pos.clone()
        };
        assert_eq!(
            from_position(&pending, Some(&paused), 5),
            Prediction::unknown()
        );
        let stale = QueuePosition {
            drain_rate: Some(RecordedRate {
                per_second: 1.0,
                measured_at: t(-301),
            }),
            ..pos.clone()
        };
        assert_eq!(
            from_position(&pending, Some(&stale), 5),
            Prediction::unknown()
        );
        // In flight above the cap (a lowered cap): no place free.
        assert_eq!(
            from_position(&pending, Some(&pos), 2).predicted_start_at,
            Some(t(11))
        );
    }

    #[test]
    fn the_view_reads_and_writes_the_api_json() {
        let view = JobView {
            job: job(JobStatus::Pending),
            prediction: Prediction::at(t(5), t(60)),
        };
        let v = serde_json::to_value(&view).unwrap();
        assert_eq!(v["at_risk"], false);
        assert!(v["predicted_start_at"].is_string());
        assert_eq!(v["tenant_id"], "a");
        let back: JobView = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, view);
        // An older server's job: no prediction keys.
        let mut old = v;
        old.as_object_mut().unwrap().remove("at_risk");
        old.as_object_mut().unwrap().remove("predicted_start_at");
        let back: JobView = serde_json::from_value(old).unwrap();
        assert_eq!(back.prediction, Prediction::unknown());
    }

    proptest! {
        #[test]
        fn never_before_now_or_run_at_and_monotone_in_the_jobs_ahead(
            ahead in 0u64..1_000_000, more in 0u64..1_000, free in 0u64..100,
            rate in prop_oneof![Just(None), (1e-3f64..1e4).prop_map(Some)],
            run_in in -100i64..100, bounded: bool,
        ) {
            let base = PredictInput {
                ahead, ahead_bounded: bounded, free, rate,
                now: t(0), run_at: t(run_in), deadline_at: t(60),
            };
            let p = predict(base);
            if let Some(start) = p.predicted_start_at {
                prop_assert!(start >= t(0) && start >= t(run_in));
                prop_assert_eq!(p.at_risk, Some(start > t(60)));
                let q = predict(PredictInput { ahead: ahead + more, ..base });
                let later = q.predicted_start_at;
                prop_assert!(later.is_none_or(|l| l >= start), "{:?} < {:?}", later, start);
            } else {
                prop_assert!(p.at_risk.is_none());
                prop_assert!(rate.is_none());
            }
        }
    }
}
