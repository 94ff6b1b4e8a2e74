//! What a worker did: counters kept while it runs, the report it returns, and the metrics it
//! emits.

use std::sync::atomic::{AtomicU64, Ordering};

use jobs_core::JobStatus;

/// Counter of messages deleted without running a job, labelled by `reason`.
pub const METRIC_MESSAGES_DROPPED: &str = "async_jobs_worker_messages_dropped_total";
/// Counter of finished attempts, labelled by `use_case` and `outcome`.
pub const METRIC_JOBS: &str = "async_jobs_worker_jobs_total";
/// Counter of fenced writes refused because another actor holds the job now, labelled by `stage`.
pub const METRIC_LEASE_LOST: &str = "async_jobs_worker_lease_lost_total";
/// Histogram of attempt durations in seconds, labelled by `use_case`.
pub const METRIC_JOB_SECONDS: &str = "async_jobs_worker_job_duration_seconds";

/// Counter of attempts started (jobs claimed), labelled by `use_case`.
pub const METRIC_STARTED: &str = "async_jobs_worker_jobs_started_total";
/// Histogram of schedule lag in seconds (attempt start − `run_at`), labelled by `use_case`.
pub const METRIC_SCHEDULE_LAG: &str = "async_jobs_schedule_lag_seconds";
/// Counter of jobs whose first start came after their deadline, labelled by `use_case`: each job
/// is counted once, at its first start (see `docs/state_machine.md`, "Deadlines").
pub const METRIC_DEADLINE_MISSES: &str = "async_jobs_deadline_misses_total";
/// Counter of jobs whose first start came by their deadline, labelled by `use_case` (each job once).
pub const METRIC_DEADLINES_MET: &str = "async_jobs_deadlines_met_total";
/// Histogram of how late missed jobs first started (first start − deadline, seconds), labelled by
/// `use_case`.
pub const METRIC_DEADLINE_LATENESS: &str = "async_jobs_deadline_lateness_seconds";
/// Counter of [`METRIC_DEADLINES_MET`] per `use_case` and `tenant`, under the worker's tenant
/// label policy ([`WorkerConfig::tenant_labels`](crate::WorkerConfig)): off by default; tenants
/// past the cap count as `tenant="other"`. A separate metric, so the per-use-case series and the
/// dashboards that sum them are unchanged whatever the policy.
pub const METRIC_TENANT_DEADLINES_MET: &str = "async_jobs_tenant_deadlines_met_total";
/// Counter of [`METRIC_DEADLINE_MISSES`] per `use_case` and `tenant` (label policy as above).
pub const METRIC_TENANT_DEADLINE_MISSES: &str = "async_jobs_tenant_deadline_misses_total";
/// Histogram of [`METRIC_DEADLINE_LATENESS`] per `use_case` and `tenant` (label policy as above).
pub const METRIC_TENANT_DEADLINE_LATENESS: &str = "async_jobs_tenant_deadline_lateness_seconds";
/// Counter of failed store or transport calls, labelled by `dependency` (`store`, `sqs`) and `op`.
pub const METRIC_DEPENDENCY_ERRORS: &str = "async_jobs_worker_dependency_errors_total";

/// Counts a failed call to the store or the transport.
pub(crate) fn dependency_error(dependency: &'static str, op: &'static str) {
    metrics::counter!(METRIC_DEPENDENCY_ERRORS, "dependency" => dependency, "op" => op)
        .increment(1);
}

/// Why a message was deleted without running its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The body is not a dispatch message this build reads.
    Malformed,
    /// The message names another use case than the queue it came from.
    UseCaseMismatch,
    /// The claim was refused: duplicate delivery, or the job was reaped, cancelled or re-dispatched.
    Stale,
}

impl DropReason {
    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UseCaseMismatch => "use_case_mismatch",
            DropReason::Stale => "stale",
        }
    }
}

/// What [`Worker::run`](crate::Worker::run) did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs claimed (attempts started).
    pub claimed: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed and will be retried (job back to `pending` with backoff).
    pub failed: u64,
    /// Attempts that failed for good (job `dead`).
    pub dead: u64,
    /// Jobs that ended `cancelled` on a cancel request.
    pub cancelled: u64,
    /// Jobs returned to `pending` without penalty at shutdown.
    pub released: u64,
    /// Attempts whose lease was lost (another actor holds the job; nothing was recorded).
    pub lease_lost: u64,
    /// Attempts whose outcome could not be recorded because the store kept failing (the reaper
    /// will expire their lease).
    pub unrecorded: u64,
    /// Messages deleted without running a job (malformed, misrouted or stale).
    pub messages_dropped: u64,
    /// Jobs whose first start (claimed by this worker) came by their deadline.
    pub deadlines_met: u64,
    /// Jobs whose first start (claimed by this worker) came after their deadline.
    pub deadlines_missed: u64,
}

/// Live counters behind a [`WorkerReport`].
#[derive(Debug)]
pub(crate) struct Counters {
    tenant_labels: jobs_core::TenantLabeler,
    claimed: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    lease_lost: AtomicU64,
    unrecorded: AtomicU64,
    messages_dropped: AtomicU64,
    deadlines_met: AtomicU64,
    deadlines_missed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn new(tenant_labels: jobs_core::TenantLabeler) -> Self {
        Counters {
            tenant_labels,
            claimed: AtomicU64::default(),
            succeeded: AtomicU64::default(),
            failed: AtomicU64::default(),
            dead: AtomicU64::default(),
            cancelled: AtomicU64::default(),
            released: AtomicU64::default(),
            lease_lost: AtomicU64::default(),
            unrecorded: AtomicU64::default(),
            messages_dropped: AtomicU64::default(),
            deadlines_met: AtomicU64::default(),
            deadlines_missed: AtomicU64::default(),
        }
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        bump(&self.messages_dropped);
        metrics::counter!(METRIC_MESSAGES_DROPPED, "reason" => reason.as_str()).increment(1);
    }

    /// Counts a started attempt and its schedule lag and, when this claim was the job's first
    /// start, whether the job met its deadline (each job once: a reclaim after a release, a
    /// retry or a manual retry is not a first start).
    pub(crate) fn claimed(&self, job: &jobs_core::Job) {
        bump(&self.claimed);
        let use_case = job.use_case.clone();
        metrics::counter!(METRIC_STARTED, "use_case" => use_case.clone()).increment(1);
        if let Some(started) = job.started_at {
            let lag = jobs_core::deadline::schedule_lag(job.run_at, started);
            metrics::histogram!(METRIC_SCHEDULE_LAG, "use_case" => use_case.clone())
                .record(lag.as_secs_f64());
        }
        let Some(outcome) = jobs_core::deadline::first_start_outcome(job) else {
            return;
        };
        // The tenant's label only now: a reclaim is not a first start and must not take one of
        // the capped labels.
        let tenant = self.tenant_labels.label(&job.tenant_id);
        match outcome {
            jobs_core::deadline::DeadlineOutcome::Met => {
                bump(&self.deadlines_met);
                if let Some(tenant) = tenant {
                    metrics::counter!(METRIC_TENANT_DEADLINES_MET, "use_case" => use_case.clone(), "tenant" => tenant)
                        .increment(1);
                }
                metrics::counter!(METRIC_DEADLINES_MET, "use_case" => use_case).increment(1);
            }
            jobs_core::deadline::DeadlineOutcome::Missed { late } => {
                bump(&self.deadlines_missed);
                if let Some(tenant) = tenant {
                    metrics::counter!(METRIC_TENANT_DEADLINE_MISSES, "use_case" => use_case.clone(), "tenant" => tenant.clone())
                        .increment(1);
                    metrics::histogram!(METRIC_TENANT_DEADLINE_LATENESS, "use_case" => use_case.clone(), "tenant" => tenant)
                        .record(late.as_secs_f64());
                }
                metrics::counter!(METRIC_DEADLINE_MISSES, "use_case" => use_case.clone())
                    .increment(1);
                metrics::histogram!(METRIC_DEADLINE_LATENESS, "use_case" => use_case)
                    .record(late.as_secs_f64());
            }
        }
    }

    /// Counts a recorded outcome by the status the job ended in.
    pub(crate) fn recorded(&self, use_case: &str, status: JobStatus) {
        let outcome = match status {
            JobStatus::Succeeded => {
                bump(&self.succeeded);
                "succeeded"
            }
            JobStatus::Dead => {
                bump(&self.dead);
                "dead"
            }
            JobStatus::Cancelled => {
                bump(&self.cancelled);
                "cancelled"
            }
            _ => {
                bump(&self.failed);
                "retry"
            }
        };
        metrics::counter!(METRIC_JOBS, "use_case" => use_case.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn released(&self, use_case: &str, status: JobStatus) {
        if status == JobStatus::Cancelled {
            return self.recorded(use_case, status);
        }
        bump(&self.released);
        metrics::counter!(METRIC_JOBS, "use_case" => use_case.to_owned(), "outcome" => "released")
            .increment(1);
    }

    pub(crate) fn lease_lost(&self, stage: &'static str) {
        bump(&self.lease_lost);
        metrics::counter!(METRIC_LEASE_LOST, "stage" => stage).increment(1);
    }

    pub(crate) fn unrecorded(&self) {
        bump(&self.unrecorded);
    }

    pub(crate) fn report(&self) -> WorkerReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerReport {
            claimed: get(&self.claimed),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            dead: get(&self.dead),
            cancelled: get(&self.cancelled),
            released: get(&self.released),
            lease_lost: get(&self.lease_lost),
            unrecorded: get(&self.unrecorded),
            messages_dropped: get(&self.messages_dropped),
            deadlines_met: get(&self.deadlines_met),
            deadlines_missed: get(&self.deadlines_missed),
        }
    }
}
