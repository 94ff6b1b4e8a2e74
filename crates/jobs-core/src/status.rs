//! The job state machine: statuses, the events that move a job between them, and the one table
//! that says which moves are legal.
//!
//! Every store implements these edges as conditional writes; this module is the reference they are
//! tested against (see the conformance suite in [`crate::testkit`]) and the source of
//! `docs/state_machine.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its `run_at` and for capacity.
    Pending,
    /// Leased by the scheduler and sent to the transport; no worker has claimed it yet.
    Dispatched,
    /// Claimed by a worker, whose lease token fences every further write.
    Running,
    /// Finished successfully. Terminal.
    Succeeded,
    /// Failed permanently or ran out of attempts. Terminal until retried by hand.
    Dead,
    /// Cancelled. Terminal until retried by hand.
    Cancelled,
    /// Not started by its deadline, and set to expire then (`expire_at_deadline`): it did not run
    /// late. Terminal until retried by hand.
    Expired,
}

impl JobStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Dispatched,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Dead,
        JobStatus::Cancelled,
        JobStatus::Expired,
    ];

    /// The stable lowercase name used in SQL, JSON and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Dispatched => "dispatched",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Expired => "expired",
        }
    }

    /// True for succeeded, dead, cancelled and expired: nothing happens to the job unless someone
    /// retries it.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Dead | JobStatus::Cancelled | JobStatus::Expired
        )
    }

    /// True for dispatched and running: the job holds one of its use case's concurrency slots.
    pub const fn is_in_flight(self) -> bool {
        matches!(self, JobStatus::Dispatched | JobStatus::Running)
    }

    /// True for pending, dispatched and running: the job counts against its tenant's quota.
    pub const fn counts_against_quota(self) -> bool {
        !self.is_terminal()
    }

    /// Applies `event` to a job in this status: the new status, or the refusal.
    pub fn apply(self, event: Transition) -> Result<JobStatus, IllegalTransition> {
        TRANSITIONS
            .iter()
            .find(|edge| edge.from == self && edge.event == event)
            .map(|edge| edge.to)
            .ok_or(IllegalTransition { from: self, event })
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the seven status names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status '{0}' (expected one of pending, dispatched, running, succeeded, dead, cancelled, expired)")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Something that happens to a job. Which events are legal in which status is [`TRANSITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The scheduler leases a due job and hands it to the transport.
    Dispatch,
    /// A worker presents the dispatch lease token and takes the job.
    Claim,
    /// The dispatch lease expired before any worker claimed the job (not an attempt).
    ExpireDispatch,
    /// The handler succeeded.
    Succeed,
    /// The handler failed with attempts left and a retryable error.
    FailRetry,
    /// The handler failed permanently or the job ran out of attempts.
    FailDead,
    /// The running lease expired (worker lost) and attempts remain: a failed attempt.
    ExpireRunRetry,
    /// The running lease expired and no attempts remain.
    ExpireRunDead,
    /// Cancelled through the API or library before any worker ran it.
    Cancel,
    /// A running job whose cancellation was requested finished (or was reclaimed) as cancelled.
    FinishCancelled,
    /// Retried by hand: attempts reset, a new `run_at`.
    Retry,
    /// The worker is shutting down and its drain deadline passed: back to pending, no penalty.
    Release,
    /// A job set to expire at its deadline was not started by then: the pick finds it pending, or
    /// a worker's claim finds it dispatched, after its `deadline_at`. It does not run.
    MissDeadline,
}

impl Transition {
    /// Every event.
    pub const ALL: [Transition; 13] = [
        Transition::Dispatch,
        Transition::Claim,
        Transition::ExpireDispatch,
        Transition::Succeed,
        Transition::FailRetry,
        Transition::FailDead,
        Transition::ExpireRunRetry,
        Transition::ExpireRunDead,
        Transition::Cancel,
        Transition::FinishCancelled,
        Transition::Retry,
        Transition::Release,
        Transition::MissDeadline,
    ];

    /// The stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transition::Dispatch => "dispatch",
            Transition::Claim => "claim",
            Transition::ExpireDispatch => "expire_dispatch",
            Transition::Succeed => "succeed",
            Transition::FailRetry => "fail_retry",
            Transition::FailDead => "fail_dead",
            Transition::ExpireRunRetry => "expire_run_retry",
            Transition::ExpireRunDead => "expire_run_dead",
            Transition::Cancel => "cancel",
            Transition::FinishCancelled => "finish_cancelled",
            Transition::Retry => "retry",
            Transition::Release => "release",
            Transition::MissDeadline => "miss_deadline",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One legal edge of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The status the job must be in.
    pub from: JobStatus,
    /// What happens.
    pub event: Transition,
    /// The status it ends in.
    pub to: JobStatus,
}

const fn edge(from: JobStatus, event: Transition, to: JobStatus) -> Edge {
    Edge { from, event, to }
}

/// Every legal edge. Anything not listed here is refused with [`IllegalTransition`].
/// (Enqueue creates a job in `pending`; it has no `from`.)
pub const TRANSITIONS: &[Edge] = &[
    edge(
        JobStatus::Pending,
        Transition::Dispatch,
        JobStatus::Dispatched,
    ),
    edge(JobStatus::Dispatched, Transition::Claim, JobStatus::Running),
    edge(
        JobStatus::Dispatched,
        Transition::ExpireDispatch,
        JobStatus::Pending,
    ),
    edge(
        JobStatus::Running,
        Transition::Succeed,
        JobStatus::Succeeded,
    ),
    edge(
        JobStatus::Running,
        Transition::FailRetry,
        JobStatus::Pending,
    ),
    edge(JobStatus::Running, Transition::FailDead, JobStatus::Dead),
    edge(
        JobStatus::Running,
        Transition::ExpireRunRetry,
        JobStatus::Pending,
    ),
    edge(
        JobStatus::Running,
        Transition::ExpireRunDead,
        JobStatus::Dead,
    ),
    edge(JobStatus::Pending, Transition::Cancel, JobStatus::Cancelled),
    edge(
        JobStatus::Dispatched,
        Transition::Cancel,
        JobStatus::Cancelled,
    ),
    edge(
        JobStatus::Running,
        Transition::FinishCancelled,
        JobStatus::Cancelled,
    ),
    edge(JobStatus::Dead, Transition::Retry, JobStatus::Pending),
    edge(JobStatus::Cancelled, Transition::Retry, JobStatus::Pending),
    edge(JobStatus::Running, Transition::Release, JobStatus::Pending),
    edge(
        JobStatus::Pending,
        Transition::MissDeadline,
        JobStatus::Expired,
    ),
    edge(
        JobStatus::Dispatched,
        Transition::MissDeadline,
        JobStatus::Expired,
    ),
    edge(JobStatus::Expired, Transition::Retry, JobStatus::Pending),
];

/// The event a store applies when a running job's attempt fails
/// ([`LeaseStore::fail`](crate::store::LeaseStore::fail)), given whether the failure asks for a
/// retry and whether a cancel is pending: a cancel request wins (`finish_cancelled`), then the
/// retry (`fail_retry`), else `fail_dead`. Every store decides the same way through this.
pub fn failure_transition(retry: bool, cancel_requested: bool) -> Transition {
    match (cancel_requested, retry) {
        (true, _) => Transition::FinishCancelled,
        (false, true) => Transition::FailRetry,
        (false, false) => Transition::FailDead,
    }
}

/// The event the reaper applies to a running job whose lease expired (its worker is lost): a
/// cancel request wins (`finish_cancelled`); the attempt counts, so a job with no attempts left is
/// dead (`expire_run_dead`) and any other goes back to pending (`expire_run_retry`).
pub fn expiry_transition(attempts: u32, max_attempts: u32, cancel_requested: bool) -> Transition {
    if cancel_requested {
        Transition::FinishCancelled
    } else if attempts >= max_attempts {
        Transition::ExpireRunDead
    } else {
        Transition::ExpireRunRetry
    }
}

/// A refused state change: `event` is not legal for a job in `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: cannot {event} a {from} job")]
pub struct IllegalTransition {
    /// The status the job was in.
    pub from: JobStatus,
    /// The refused event.
    pub event: Transition,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state table of DESIGN.md, written out independently of [`TRANSITIONS`].
    const EXPECTED: &[(JobStatus, Transition, JobStatus)] = &[
        (
            JobStatus::Pending,
            Transition::Dispatch,
            JobStatus::Dispatched,
        ),
        (JobStatus::Dispatched, Transition::Claim, JobStatus::Running),
        (
            JobStatus::Dispatched,
            Transition::ExpireDispatch,
            JobStatus::Pending,
        ),
        (
            JobStatus::Running,
            Transition::Succeed,
            JobStatus::Succeeded,
        ),
        (
            JobStatus::Running,
            Transition::FailRetry,
            JobStatus::Pending,
        ),
        (JobStatus::Running, Transition::FailDead, JobStatus::Dead),
        (
            JobStatus::Running,
            Transition::ExpireRunRetry,
            JobStatus::Pending,
        ),
        (
            JobStatus::Running,
            Transition::ExpireRunDead,
            JobStatus::Dead,
        ),
        (JobStatus::Pending, Transition::Cancel, JobStatus::Cancelled),
        (
            JobStatus::Dispatched,
            Transition::Cancel,
            JobStatus::Cancelled,
        ),
        (
            JobStatus::Running,
            Transition::FinishCancelled,
            JobStatus::Cancelled,
        ),
        (JobStatus::Dead, Transition::Retry, JobStatus::Pending),
        (JobStatus::Cancelled, Transition::Retry, JobStatus::Pending),
        (JobStatus::Running, Transition::Release, JobStatus::Pending),
        (
            JobStatus::Pending,
            Transition::MissDeadline,
            JobStatus::Expired,
        ),
        (
            JobStatus::Dispatched,
            Transition::MissDeadline,
            JobStatus::Expired,
        ),
        (JobStatus::Expired, Transition::Retry, JobStatus::Pending),
    ];

    #[test]
    fn every_allowed_edge_is_accepted() {
        for &(from, event, to) in EXPECTED {
            assert_eq!(from.apply(event), Ok(to), "{from} --{event}-->");
        }
    }

    #[test]
    fn every_other_pair_is_refused() {
        let mut refused = 0;
        for from in JobStatus::ALL {
            for event in Transition::ALL {
                let allowed = EXPECTED.iter().any(|&(f, e, _)| f == from && e == event);
                if !allowed {
                    assert_eq!(
                        from.apply(event),
                        Err(IllegalTransition { from, event }),
                        "{from} --{event}--> must be refused"
                    );
                    refused += 1;
                }
            }
        }
        assert_eq!(
            refused,
            JobStatus::ALL.len() * Transition::ALL.len() - EXPECTED.len()
        );
    }

    #[test]
    fn table_has_no_duplicate_edges() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(
                    !(a.from == b.from && a.event == b.event),
                    "duplicate edge {a:?}"
                );
            }
        }
        assert_eq!(TRANSITIONS.len(), EXPECTED.len());
    }

    #[test]
    fn terminal_states_leave_only_by_retry() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in Transition::ALL {
                if let Ok(to) = from.apply(event) {
                    assert_eq!(event, Transition::Retry, "{from} left by {event}");
                    assert_eq!(to, JobStatus::Pending);
                }
            }
        }
    }

    #[test]
    fn failure_and_expiry_pick_edges_out_of_running() {
        let bools = [false, true];
        for (retry, cancel) in bools.into_iter().flat_map(|r| bools.map(|c| (r, c))) {
            let event = failure_transition(retry, cancel);
            assert!(JobStatus::Running.apply(event).is_ok(), "{event}");
            assert_eq!(event == Transition::FinishCancelled, cancel);
        }
        assert_eq!(failure_transition(true, false), Transition::FailRetry);
        assert_eq!(failure_transition(false, false), Transition::FailDead);
        for (attempts, max, cancel, want) in [
            (1, 3, false, Transition::ExpireRunRetry),
            (3, 3, false, Transition::ExpireRunDead),
            (4, 3, false, Transition::ExpireRunDead),
            (1, 3, true, Transition::FinishCancelled),
            (3, 3, true, Transition::FinishCancelled),
        ] {
            let event = expiry_transition(attempts, max, cancel);
            assert_eq!(event, want, "{attempts}/{max} cancel {cancel}");
            assert!(JobStatus::Running.apply(event).is_ok(), "{event}");
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("PENDING".parse::<JobStatus>().is_err());
        assert!("".parse::<JobStatus>().is_err());
    }
}
