//! The job record and the values that travel with it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::duration_secs;
use crate::status::JobStatus;
use crate::trace::TraceContext;

/// A job's identity: a UUID v7, so ids sort by creation time.
pub type JobId = Uuid;

/// Creates a new job id (UUID v7).
pub fn new_job_id() -> JobId {
    Uuid::now_v7()
}

/// A pending job of tenant `t` in use case `u` created at `now`, with every optional field empty:
/// the base of the unit tests' job fixtures (`Job { status, ..job::fixture(now) }`).
#[cfg(test)]
pub(crate) fn fixture(now: chrono::DateTime<chrono::Utc>) -> Job {
    Job {
        id: new_job_id(),
        tenant_id: "t".into(),
        use_case: "u".into(),
        kind: "k".into(),
        payload: serde_json::Value::Null,
        status: crate::status::JobStatus::Pending,
        priority: 0,
        attempts: 0,
        max_attempts: 1,
        backoff: crate::backoff::Backoff::default(),
        run_at: now,
        delay_tolerance: std::time::Duration::ZERO,
        deadline_at: now,
        expire_at_deadline: false,
        timeout: std::time::Duration::from_secs(1),
        idempotency_key: None,
        lease_token: None,
        lease_expires_at: None,
        cancel_requested: false,
        last_error: None,
        created_at: now,
        updated_at: now,
        dispatched_at: None,
        started_at: None,
        finished_at: None,
        first_started_at: None,
        trace_context: None,
    }
}

/// The fencing token of a lease. Every write that follows a dispatch or a claim must present the
/// current token; a store refuses a stale one with "lease lost".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(Uuid);

impl LeaseToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        LeaseToken(Uuid::new_v4())
    }

    /// Wraps a UUID read back from a store or a message.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        LeaseToken(uuid)
    }

    /// The token as a UUID (for binding into queries).
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for LeaseToken {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(LeaseToken)
    }
}

/// A job as the store holds it. Its JSON form is the API's: `kind` is written `type`, durations as
/// seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Identity (UUID v7).
    pub id: JobId,
    /// The tenant that owns the job.
    pub tenant_id: String,
    /// The use case (one queue and one concurrency cap per use case).
    pub use_case: String,
    /// The handler name.
    #[serde(rename = "type")]
    pub kind: String,
    /// The handler's input. `null` in a list page that left payloads out (see
    /// [`crate::PageRequest::include_payload`]); an absent `payload` key in JSON reads as `null`.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// Higher runs first among jobs with the same deadline.
    pub priority: i16,
    /// Attempts started so far (incremented when a worker claims the job).
    pub attempts: u32,
    /// After this many failed attempts the job is dead.
    pub max_attempts: u32,
    /// Retry policy.
    pub backoff: Backoff,
    /// Earliest start.
    pub run_at: DateTime<Utc>,
    /// How late after `run_at` the job may still start.
    #[serde(rename = "delay_tolerance_seconds", with = "duration_secs")]
    pub delay_tolerance: Duration,
    /// `run_at + delay_tolerance`: the scheduler's EDF key.
    pub deadline_at: DateTime<Utc>,
    /// Not started by `deadline_at`, the job ends `expired` instead of running late.
    #[serde(default)]
    pub expire_at_deadline: bool,
    /// How long one attempt may run.
    #[serde(rename = "timeout_seconds", with = "duration_secs")]
    pub timeout: Duration,
    /// Optional client key: a second enqueue with the same key (per tenant) returns this job.
    pub idempotency_key: Option<String>,
    /// The current fencing token while dispatched or running. Internal: it is never serialized
    /// (the API's job JSON leaves it out, so no caller can present another actor's token), and
    /// reads back as `None` from JSON.
    #[serde(skip_serializing, default)]
    pub lease_token: Option<LeaseToken>,
    /// When the current lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// A cancel arrived while the job was running; the handler sees it and the job ends cancelled.
    pub cancel_requested: bool,
    /// The last failure message.
    pub last_error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last dispatch.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// Start of the last attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it first started (its first claim); never cleared, not even by a manual retry. The
    /// deadline is measured once per job, at this moment (see `docs/state_machine.md`).
    #[serde(default)]
    pub first_started_at: Option<DateTime<Utc>>,
    /// The W3C trace context of the request that enqueued the job: its handler's span becomes a
    /// child of it. Kept across retries. Absent in JSON when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<TraceContext>,
}

/// A validated job ready to insert (built by [`crate::JobService`] from an
/// [`crate::EnqueueRequest`]).
///
/// `run_at = None` means "now by the store's clock"; the store then sets
/// `deadline_at = now + delay_tolerance`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Identity, generated by the caller so a batch can be referred to before insert.
    pub id: JobId,
    /// Owner.
    pub tenant_id: String,
    /// Use case.
    pub use_case: String,
    /// Handler name.
    pub kind: String,
    /// Handler input.
    pub payload: serde_json::Value,
    /// Priority (tie-breaker after the deadline).
    pub priority: i16,
    /// Attempt budget (≥ 1).
    pub max_attempts: u32,
    /// Retry policy.
    pub backoff: Backoff,
    /// Earliest start; `None` = now (store clock).
    pub run_at: Option<DateTime<Utc>>,
    /// Start window after `run_at`.
    pub delay_tolerance: Duration,
    /// End `expired` instead of starting after the deadline.
    pub expire_at_deadline: bool,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Deduplication key, unique per tenant.
    pub idempotency_key: Option<String>,
    /// The quota in force for this tenant and use case: at most this many of the tenant's jobs of
    /// this use case may be non-terminal. `None` = unlimited. The store enforces it atomically.
    pub quota: Option<u32>,
    /// The tenant's weight in the use case's fair share (1 to [`crate::config::MAX_WEIGHT`]); the
    /// store keeps it with the job and tags each of the job's turns with `1 / weight`. `None`: the
    /// use case's pick is plain EDF across tenants (every tag 0).
    pub fair_weight: Option<u32>,
    /// The enqueuer's trace context, stored with the job.
    pub trace_context: Option<TraceContext>,
}

impl NewJob {
    /// The virtual-time step of one of this job's turns: `1 / weight`, or 0 in plain EDF.
    pub fn fair_step(&self) -> f64 {
        crate::fair::step(self.fair_weight)
    }

    /// The job a store writes for this request: pending, never attempted, no lease, with the
    /// times the store decided (`created_at`, also its `updated_at`; when it is due; its
    /// deadline). A store that computes those times itself builds the rest from here instead of
    /// reading every column back.
    pub fn into_pending(
        self,
        created_at: DateTime<Utc>,
        run_at: DateTime<Utc>,
        deadline_at: DateTime<Utc>,
    ) -> Job {
        Job {
            id: self.id,
            tenant_id: self.tenant_id,
            use_case: self.use_case,
            kind: self.kind,
            payload: self.payload,
            status: JobStatus::Pending,
            priority: self.priority,
            attempts: 0,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            run_at,
            delay_tolerance: self.delay_tolerance,
            deadline_at,
            expire_at_deadline: self.expire_at_deadline,
            timeout: self.timeout,
            idempotency_key: self.idempotency_key,
            lease_token: None,
            lease_expires_at: None,
            cancel_requested: false,
            last_error: None,
            created_at,
            updated_at: created_at,
            dispatched_at: None,
            started_at: None,
            finished_at: None,
            first_started_at: None,
            trace_context: self.trace_context,
        }
    }
}

/// What the scheduler leased: everything the transport message needs, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The job.
    pub job_id: JobId,
    /// The new dispatch lease token.
    pub lease_token: LeaseToken,
    /// Owner (for logs and metrics).
    pub tenant_id: String,
    /// Use case (selects the queue).
    pub use_case: String,
    /// Handler name.
    pub kind: String,
    /// The attempt this dispatch will start (attempts so far + 1).
    pub attempt: u32,
    /// The job's deadline.
    pub deadline_at: DateTime<Utc>,
}

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job (the existing one when `created` is false).
    pub job: Job,
    /// False when an idempotency key matched an existing job.
    pub created: bool,
}
