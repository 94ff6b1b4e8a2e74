//! The `JobStore` port: everything the platform asks of its source of truth.
//!
//! A store holds jobs and performs every state change of [`crate::status::TRANSITIONS`] as one
//! atomic, conditional write. Its methods are grouped by who calls them, one role trait each:
//!
//! | role | caller | methods |
//! |---|---|---|
//! | [`ApiStore`] | `JobService`, the HTTP API, operations endpoints, the dashboard | enqueue, enqueue_many, get, list, cancel, retry, counts, backlog, ping, pause, resume, pauses, activity, queue_position |
//! | [`DispatchStore`] | the scheduler's pick | lease_due, return_dispatched, subscribe, set_rate_limits, rate_limits, rate_wait, record_drain_rate |
//! | [`LeaseStore`] | the worker | claim, claim_many, heartbeat, complete, complete_many, fail, finish_cancelled, release |
//! | [`MaintenanceStore`] | the scheduler's reaper and pruning | reap_expired, prune |
//! | [`ScheduleStore`] | cron schedules: the API and the scheduler's leader | create/update/delete/get_schedule, schedules, sync_config_schedules, fire |
//!
//! [`JobStore`] is all five (a blanket impl: implement the roles and the store is a `JobStore`);
//! [`SchedulerStore`] is the scheduler's two. The contract, which the conformance suite in
//! [`crate::testkit::store`] checks against every implementation:
//!
//! - **Fencing.** [`claim`](LeaseStore::claim), [`heartbeat`](LeaseStore::heartbeat),
//!   [`complete`](LeaseStore::complete), [`fail`](LeaseStore::fail),
//!   [`finish_cancelled`](LeaseStore::finish_cancelled) and [`release`](LeaseStore::release) act
//!   only if the job is in the expected status *and* holds the given lease token; otherwise they
//!   change nothing and return [`LeaseError::LeaseLost`].
//! - **Caps.** [`lease_due`](DispatchStore::lease_due) never leaves more than
//!   [`PickRequest::cap`] jobs of a use case dispatched or running, even when called
//!   concurrently.
//! - **Quotas.** [`enqueue`](ApiStore::enqueue), [`enqueue_many`](ApiStore::enqueue_many) and
//!   [`retry`](ApiStore::retry) never leave a tenant with more non-terminal jobs in a use case
//!   than its quota, even when they run concurrently.
//! - **Time.** Leases, `run_at` and deadlines are compared with the store's clock (the database's in
//!   production), never the caller's.
//! - **Transitions.** Which event a failed attempt or an expired run lease applies is decided by
//!   [`failure_transition`](crate::status::failure_transition) and
//!   [`expiry_transition`](crate::status::expiry_transition), next to the table.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::activity::{Activity, ActivityQuery};
use crate::backlog::{Backlog, BacklogGrouping};
use crate::job::{Dispatch, Enqueued, Job, JobId, LeaseToken, NewJob};
use crate::pause::{Pause, PauseScope};
use crate::predict::QueuePosition;
use crate::rate::RateLimit;
#[cfg(any(test, feature = "testkit"))]
use crate::schedule::{Schedule, ScheduleDraft};
pub use crate::schedule_store::{Fired, ScheduleStore};
use crate::status::{IllegalTransition, JobStatus};

/// A store operation failed for a reason other than the job's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now (connection lost, pool exhausted, shutting down). Retry
    /// with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A concurrent transaction conflicted (serialization failure, deadlock). Retry.
    #[error("store conflict: {0}")]
    Conflict(String),
    /// The store cannot do what was asked the way it was asked (for example a quota inside a
    /// caller's transaction whose isolation level cannot make it exact). Retrying the same call
    /// fails the same way; change the call.
    #[error("unsupported by the store: {0}")]
    Unsupported(String),
    /// Anything else: a bug, corrupt data or a refused query. Do not retry blindly.
    #[error("store error: {0}")]
    Internal(String),
    /// The store gave up on the call because it ran longer than the store allows (PostgreSQL:
    /// the pool's `statement_timeout` cut the statement, SQLSTATE 57014; its transaction was
    /// rolled back). Not [retryable](StoreError::is_retryable) blindly: the same call may take as
    /// long again (an expensive query) and repeating it at once adds load to a store that is
    /// already slow; it may succeed later if it only waited on a lock or an overloaded server.
    #[error("store timeout: {0}")]
    Timeout(String),
}

impl StoreError {
    /// True when the same call may succeed if retried at once (with backoff): [`Unavailable`]
    /// and [`Conflict`]. [`Timeout`] is not: a caller may retry it later, deliberately, but a
    /// retry loop should not repeat a call that just ran out of time.
    ///
    /// [`Unavailable`]: StoreError::Unavailable
    /// [`Conflict`]: StoreError::Conflict
    /// [`Timeout`]: StoreError::Timeout
    pub const fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

/// Why an enqueue was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnqueueError {
    /// The request is invalid (see the inner error's code).
    #[error(transparent)]
    Invalid(#[from] crate::enqueue::ValidationError),
    /// Job `index` of a batch is invalid.
    #[error("job {index} of the batch: {source}")]
    InvalidInBatch {
        /// Position in the batch.
        index: usize,
        /// What is wrong with it.
        source: crate::enqueue::ValidationError,
    },
    /// The tenant already holds `limit` non-terminal jobs in this use case.
    #[error("quota exceeded: tenant '{tenant_id}' may hold {limit} unfinished '{use_case}' jobs")]
    QuotaExceeded {
        /// Tenant.
        tenant_id: String,
        /// Use case.
        use_case: String,
        /// The quota.
        limit: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fenced write was refused, or the store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The job is not in the expected status with this token (another actor has it now, it was
    /// reaped or cancelled, or it does not exist). Nothing was changed; drop the work.
    #[error("lease lost on job {0}")]
    LeaseLost(JobId),
    /// The store failed; the lease may still be held.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a cancel or retry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// No such job (or not visible to the caller).
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job's status does not allow it.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// A retry would take the tenant over its quota: it already holds `limit` unfinished jobs in
    /// the use case. Refused exactly as an enqueue would be.
    #[error("quota exceeded: tenant '{tenant_id}' may hold {limit} unfinished '{use_case}' jobs")]
    QuotaExceeded {
        /// Tenant.
        tenant_id: String,
        /// Use case.
        use_case: String,
        /// The quota.
        limit: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failed attempt as recorded by [`LeaseStore::fail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error message (truncated by the store if very long).
    pub error: String,
    /// `Some(delay)`: back to pending with `run_at = now + delay`. `None`: dead.
    pub retry_in: Option<Duration>,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The lease now ends here.
    pub lease_expires_at: DateTime<Utc>,
    /// Someone asked to cancel the job; the handler should stop.
    pub cancel_requested: bool,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Dispatched jobs whose dispatch lease expired, returned to pending (no attempt counted).
    pub dispatch_expired: u64,
    /// Running jobs whose lease expired, back to pending (the attempt counted).
    pub run_expired_retry: u64,
    /// Running jobs whose lease expired on their last attempt, now dead.
    pub run_expired_dead: u64,
    /// Running jobs with a cancel request whose lease expired, now cancelled.
    pub run_expired_cancelled: u64,
}

impl ReapReport {
    /// Jobs changed in total.
    pub const fn total(&self) -> u64 {
        self.dispatch_expired
            + self.run_expired_retry
            + self.run_expired_dead
            + self.run_expired_cancelled
    }
}

/// Filters for [`ApiStore::list`]; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Owner.
    pub tenant_id: Option<String>,
    /// Use case.
    pub use_case: Option<String>,
    /// Status.
    pub status: Option<JobStatus>,
    /// Job type.
    pub kind: Option<String>,
    /// `created_at >= created_after`.
    pub created_after: Option<DateTime<Utc>>,
    /// `created_at < created_before`.
    pub created_before: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// True if `job` matches (the reference semantics for every store).
    pub fn matches(&self, job: &Job) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| &job.tenant_id == t)
            && self.use_case.as_ref().is_none_or(|u| &job.use_case == u)
            && self.status.is_none_or(|s| job.status == s)
            && self.kind.as_ref().is_none_or(|k| &job.kind == k)
            && self.created_after.is_none_or(|t| job.created_at >= t)
            && self.created_before.is_none_or(|t| job.created_at < t)
    }
}

/// A page request: newest first (descending id), after the cursor.
///
/// Three optional bounds keep one call's cost and answer size in check whatever the data (the
/// HTTP API sets all three; [`PageRequest::new`] and [`Default`] set none, as before they
/// existed):
///
/// - **Payloads** ([`include_payload`](Self::include_payload)): with `false` the store does not
///   read payloads from storage at all and every job's `payload` is [`serde_json::Value::Null`].
/// - **Byte budget** ([`max_bytes`](Self::max_bytes)): the page stops *before* the job whose
///   payload would take the page's payload bytes over the budget, but always holds at least one
///   job; a page cut this way has a `next` cursor. Payload bytes are the length of the payload's
///   JSON text (the in-memory store counts compact JSON, as the enqueue size limit does;
///   PostgreSQL counts `jsonb` as it prints it, a space after each `:` and `,`, so slightly more).
///   Only read payloads count: without `include_payload` the budget never cuts.
/// - **Scan bound** ([`max_scanned`](Self::max_scanned)): the store examines at most this many
///   candidate jobs per call, in descending id order from the cursor: the tenant's jobs when the
///   filter names a tenant, every job otherwise. The other filters are checked on those
///   candidates only. When it has examined that many without filling the page, it returns the
///   matches found so far (possibly none) with `next` = the last examined id, so a sparse filter
///   costs several short (or empty) pages instead of one long scan, and walking every page still
///   returns each matching job exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Return jobs with an id strictly below this one (the previous page's `next`).
    pub after: Option<JobId>,
    /// Page size (≥ 1; callers bound it).
    pub limit: u32,
    /// Read the jobs' payloads; `false` leaves them unread (`payload` is `null`).
    pub include_payload: bool,
    /// Largest total payload bytes of one page (at least one job is always returned); `None`:
    /// no budget.
    pub max_bytes: Option<u64>,
    /// Most candidate jobs examined by one call (≥ 1); `None`: no bound.
    pub max_scanned: Option<u32>,
}

impl PageRequest {
    /// `limit` jobs after `after`, payloads included, no byte budget and no scan bound.
    pub const fn new(after: Option<JobId>, limit: u32) -> Self {
        PageRequest {
            after,
            limit,
            include_payload: true,
            max_bytes: None,
            max_scanned: None,
        }
    }
}

impl Default for PageRequest {
    /// The first page of 50, payloads included, unbounded (see [`PageRequest::new`]).
    fn default() -> Self {
        PageRequest::new(None, 50)
    }
}

/// One page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Jobs, newest (highest id) first.
    pub jobs: Vec<Job>,
    /// The cursor for the next page, absent on the last page. Present on a page cut by the byte
    /// budget or ended by the scan bound, which may then be short or even empty.
    pub next: Option<JobId>,
}

/// How many jobs of a use case are in a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// Use case.
    pub use_case: String,
    /// Status.
    pub status: JobStatus,
    /// Count.
    pub count: u64,
}

/// Why the scheduler should look again now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A job became due (enqueued, retried or released).
    JobDue,
    /// A job left running, so capacity freed up.
    CapacityFreed,
    /// The stream reconnected and may have missed events: rescan everything.
    Resync,
}

impl Wakeup {
    /// The more pressing of two wake-ups, for streams that fold a burst into one: `Resync` (look
    /// at everything), then `JobDue` (a job may start now), then `CapacityFreed` (which the
    /// scheduler paces at a cap, so it must never hide a `JobDue` behind it).
    pub fn fold(self, other: Wakeup) -> Wakeup {
        let rank = |w: Wakeup| match w {
            Wakeup::CapacityFreed => 0,
            Wakeup::JobDue => 1,
            Wakeup::Resync => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// Queues `self` on a bounded channel of a folding stream; false once the receiver is gone.
    /// A full channel already holds a wake-up the reader will see, which is enough for a freed
    /// place; a due job or a resync waits for room instead of being dropped, as the reader folds
    /// the queue into its next wake-up and would otherwise see only freed places.
    pub async fn queue_into(self, tx: &tokio::sync::mpsc::Sender<Wakeup>) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        match tx.try_send(self) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) if self == Wakeup::CapacityFreed => true,
            Err(TrySendError::Full(_)) => tx.send(self).await.is_ok(),
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// A stream of [`Wakeup`]s. `None` means the stream ended for good.
#[async_trait]
pub trait WakeupStream: Send {
    /// Waits for the next wake-up.
    async fn next(&mut self) -> Option<Wakeup>;
}

/// A wake-up stream that never fires (for stores without notifications: poll instead).
#[derive(Debug, Default)]
pub struct NeverWake;

#[async_trait]
impl WakeupStream for NeverWake {
    async fn next(&mut self) -> Option<Wakeup> {
        std::future::pending().await
    }
}

/// What one [`lease_due`](DispatchStore::lease_due) call may take: named, because three numbers
/// in a row are easy to swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickRequest {
    /// The use case's concurrency cap: after the call, at most this many of its jobs are
    /// dispatched or running (counting those already in flight).
    pub cap: u32,
    /// The most jobs this call leases (the scheduler's batch), even when the cap leaves room
    /// for more.
    pub limit: u32,
    /// The dispatch lease: each leased job's `lease_expires_at` is `now + lease`, after which the
    /// reaper returns it to `pending` unless a worker claimed it.
    pub lease: Duration,
}

/// The API's role: what [`JobService`](crate::JobService) and the HTTP API ask of a store on
/// behalf of callers (enqueue, read, list, cancel, retry), plus the reads of the operations
/// endpoints every process serves (`counts` for `/metrics`, `ping` for `/readyz`).
#[async_trait]
pub trait ApiStore: Send + Sync + std::fmt::Debug {
    /// Inserts a job in `pending`.
    ///
    /// MUST return the existing job with `created: false` when the tenant already has a job with
    /// the same idempotency key (whatever its status), without a quota check. MUST return
    /// [`EnqueueError::QuotaExceeded`] when `job.quota` is `Some(n)` and the tenant already holds
    /// `n` non-terminal jobs in the use case, atomically with respect to concurrent enqueues.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError>;

    /// Inserts many jobs in one transaction: all or none. Quotas count the batch's own jobs.
    /// Results are in input order.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError>;

    /// The job, if it exists.
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Jobs matching `filter`, newest first, keyset-paginated by id: walking every page returns
    /// each matching job exactly once. MUST honour the payload choice, the byte budget and the
    /// scan bound of `page` as [`PageRequest`] defines them.
    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError>;

    /// Cancels a job: `pending`/`dispatched` → `cancelled` now (lease cleared); `running` → sets
    /// `cancel_requested` (the worker finishes it as cancelled); `cancelled` → unchanged. MUST
    /// return [`ChangeError::Illegal`] for `succeeded` and `dead`.
    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError>;

    /// Retries a `dead`, `cancelled` or `expired` job by hand: `pending`, attempts 0, `run_at = now`,
    /// deadline recomputed (`now + delay_tolerance`), cancel request cleared. MUST return
    /// [`ChangeError::Illegal`] otherwise.
    ///
    /// A retry brings a finished job back into its tenant's quota, so it counts exactly as an
    /// enqueue: with `quota = Some(n)` it MUST return [`ChangeError::QuotaExceeded`] (changing
    /// nothing) when the tenant already holds `n` non-terminal jobs in the job's use case,
    /// atomically with respect to concurrent enqueues and retries.
    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError>;

    /// Job counts by use case and status (statuses with no jobs may be omitted).
    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError>;

    /// The backlog ([`crate::backlog`]): how many jobs are due and pending — `pending`, `run_at`
    /// at or before the store's now, and neither their use case nor their tenant in it paused —
    /// and the earliest `run_at` among them, per use case or per (use case, tenant) as `grouping`
    /// asks. Groups without due jobs have no row; rows are ordered by use case, then tenant.
    /// [`Backlog::at`] is the store's now, against which ages are measured.
    ///
    /// MUST read only due pending jobs (on a table of millions of finished or scheduled jobs it
    /// costs in proportion to the backlog, not the table), and MUST NOT count jobs scheduled for
    /// later, retries waiting out their backoff, paused jobs or jobs in any other status.
    async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError>;

    /// Checks the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Readiness store by store (`GET /readyz`): the name and answer of each store this one is
    /// made of, the one that decides readiness first (the default store of a
    /// [`RoutedStore`](crate::RoutedStore)), each bounded by `timeout` (then
    /// [`StoreError::Timeout`]). The default is this store's [`ping`](ApiStore::ping), named
    /// `"store"`.
    async fn ping_each(&self, timeout: Duration) -> Vec<(String, Result<(), StoreError>)> {
        vec![("store".to_owned(), ping_within(self.ping(), timeout).await)]
    }

    /// Pauses `scope`: from the next pick on, [`lease_due`](DispatchStore::lease_due) passes
    /// over its pending jobs (dispatched and running ones finish). Idempotent: pausing a paused
    /// scope changes nothing and returns the pause in force, with its first `paused_at` (the
    /// store's clock). Durable: it holds across restarts and for every scheduler.
    async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError>;

    /// Lifts the pause of exactly `scope` (a tenant's own pause, or the whole use case's; each
    /// is lifted on its own): `true` if it was paused. When it was, MUST wake the scheduler
    /// ([`Wakeup::JobDue`]), so due jobs start without waiting for a tick.
    async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError>;

    /// Every pause in force, by use case, then the whole use case before its tenants, then tenant.
    async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;

    /// Recent activity for the dashboard: job counts by use case and status, and for each use
    /// case and minute of the recent window the jobs finished (by status) and the deadlines met
    /// and missed, of the query's tenant or of all. MUST follow the rules of [`crate::activity`]
    /// (the reference is [`crate::activity::tally`]), and MUST examine at most
    /// [`ActivityQuery::max_rows`] finished and as many in-flight jobs, whatever the number of
    /// jobs stored.
    async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError>;

    /// Where the pending job `id` stands, for its predicted start ([`crate::predict`]), read at
    /// one moment: the store's now; whether the job is paused (its tenant or its use case);
    /// how many ready, unpaused pending jobs of its use case without a rate limit come before it
    /// in the pick order — by (fair tag, deadline, priority descending, id), the
    /// [`lease_due`](DispatchStore::lease_due) order — counted up to `bound` (`ahead_bounded`
    /// when it reached it; 0 when the job is paused or not ready yet, its `run_at` still to
    /// come or not yet promoted by a pick); the use case's jobs in flight; and the drain rate
    /// last recorded ([`DispatchStore::record_drain_rate`]). `None` when the job does not exist
    /// or is not pending.
    ///
    /// MUST cost in proportion to `bound`, not to the backlog. The default answers `None` (no
    /// prediction); the platform's stores implement it.
    async fn queue_position(
        &self,
        id: JobId,
        bound: u32,
    ) -> Result<Option<QueuePosition>, StoreError> {
        let _ = (id, bound);
        Ok(None)
    }
}

/// The scheduler's dispatch role: pick due jobs under the caps, take back the ones the transport
/// refused, and hear when to look again.
#[async_trait]
pub trait DispatchStore: Send + Sync + std::fmt::Debug {
    /// Leases due pending jobs of `use_case`, earliest deadline first (then higher priority, then
    /// lower id): at most `min(pick.limit, pick.cap − in_flight)` of them, where `in_flight`
    /// counts the use case's dispatched and running jobs. Each gets a new token and
    /// `lease_expires_at = now + pick.lease`. Concurrent callers together never exceed
    /// `pick.cap`. Jobs of a paused use case, or of a paused tenant in it ([`ApiStore::pause`]),
    /// are passed over. A tenant with a rate limit ([`set_rate_limits`](Self::set_rate_limits))
    /// gets at most as many of its jobs leased as whole tokens are in its bucket (each leased job
    /// takes one); its other due jobs are passed over as if paused, so the others' jobs take
    /// the places, in deadline order.
    async fn lease_due(
        &self,
        use_case: &str,
        pick: PickRequest,
    ) -> Result<Vec<Dispatch>, StoreError>;

    /// Takes back dispatches whose message the transport did not accept: for each `(id, token)`,
    /// a `dispatched` job still holding `token` goes back to `pending` at once, exactly as when
    /// its dispatch lease expires (not an attempt; lease cleared; `run_at` and deadline kept), so
    /// it neither waits out the dispatch lease nor holds a place under the cap meanwhile. Entries
    /// whose job has moved on (claimed, cancelled, returned already) are skipped. Returns how many
    /// jobs went back.
    ///
    /// The default returns none, leaving them to
    /// [`reap_expired`](MaintenanceStore::reap_expired) when their lease expires; the platform's
    /// stores override it.
    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        let _ = dispatches;
        Ok(0)
    }

    /// Wake-ups for the scheduler: a job became due or capacity freed. Stores without
    /// notifications return [`NeverWake`] and the scheduler polls.
    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        Ok(Box::new(NeverWake))
    }

    /// Replaces every rate limit in force with `limits` (see [`crate::rate`]). From the next
    /// pick on, [`lease_due`](DispatchStore::lease_due) starts a tenant's jobs of a limited use
    /// case only as its token bucket allows: at most `burst` at once, then `per_second` on
    /// average, whatever the number of schedulers. A tenant's own limit replaces the every-tenant
    /// one (`tenant_id: None`), which gives each tenant a bucket of its own. Jobs already
    /// enqueued come under the new limits too. Buckets survive a change of limits (capped at the
    /// new burst). Idempotent.
    ///
    /// The default refuses any limit ([`StoreError::Unsupported`]); the platform's stores
    /// implement it.
    async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        match limits.is_empty() {
            true => Ok(()),
            false => Err(StoreError::Unsupported(
                "this store does not enforce rate limits".to_owned(),
            )),
        }
    }

    /// The rate limits in force, by use case, then the every-tenant limit, then tenant.
    async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError> {
        Ok(Vec::new())
    }

    /// How long until the next job of `use_case` held back only by its tenant's rate limit may
    /// start: the shortest wait, over the tenants with due pending jobs and an empty bucket (less
    /// than one token), for one token. `None` when no due job waits on a rate limit. The
    /// scheduler sleeps no longer than this, so a limited tenant starts at its rate and not at
    /// the tick's.
    async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError> {
        let _ = use_case;
        Ok(None)
    }

    /// Stores `use_case`'s drain rate (jobs started per second, as the leading scheduler
    /// measures it: [`crate::scaling::DrainRate`]) with the store's now, replacing the last one,
    /// for the predicted start ([`ApiStore::queue_position`]). The leader calls it on each
    /// backlog refresh. The default stores nothing.
    async fn record_drain_rate(&self, use_case: &str, per_second: f64) -> Result<(), StoreError> {
        let _ = (use_case, per_second);
        Ok(())
    }
}

/// `ping` bounded by `timeout` ([`StoreError::Timeout`] when it is not answered in time).
pub async fn ping_within(
    ping: impl std::future::Future<Output = Result<(), StoreError>>,
    timeout: Duration,
) -> Result<(), StoreError> {
    tokio::time::timeout(timeout, ping)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Timeout(format!(
                "no answer within {} ms",
                timeout.as_millis()
            )))
        })
}

/// The worker's role: claim dispatched jobs, keep their leases alive and record each attempt's
/// outcome. Every method is fenced by the lease token (see the module docs).
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// A hint from the caller, before its calls about job `id`: the job belongs to `use_case`
    /// (the worker reads it from the dispatch message). A store that keeps use cases in stores
    /// of their own ([`RoutedStore`](crate::RoutedStore)) then sends the job's calls straight
    /// to that use case's store instead of looking for the job; any other store ignores it (the
    /// default does nothing). The fenced writes stay the authority: a hint naming another use
    /// case than the job's makes them answer [`LeaseError::LeaseLost`], as for a stale message.
    fn hint_use_case(&self, id: JobId, use_case: &str) {
        let _ = (id, use_case);
    }

    /// `dispatched` with `token` → `running`: attempts + 1, `started_at = now`,
    /// `lease_expires_at = now + lease`. Returns the job (with payload).
    async fn claim(&self, id: JobId, token: LeaseToken, lease: Duration)
        -> Result<Job, LeaseError>;

    /// Claims several dispatched jobs at once: for each `(id, token)`, exactly what
    /// [`claim`](LeaseStore::claim) would do, with one result per entry in input order (a second
    /// entry for a job already claimed in the same call is [`LeaseError::LeaseLost`]). The default
    /// claims one by one; stores override it to claim the batch in one round trip.
    async fn claim_many(
        &self,
        claims: Vec<(JobId, LeaseToken)>,
        lease: Duration,
    ) -> Vec<Result<Job, LeaseError>> {
        let mut out = Vec::with_capacity(claims.len());
        for (id, token) in claims {
            out.push(self.claim(id, token, lease).await);
        }
        out
    }

    /// Completes several running jobs at once: for each `(id, token)`, exactly what
    /// [`complete`](LeaseStore::complete) would do, with one result per entry in input order. A
    /// success carries nothing: the job is `succeeded` (read it back with
    /// [`get`](ReadStore::get) if needed), so a store need not send every finished job, payload
    /// included, back to the worker, which only counts the outcome. The default completes one by
    /// one; stores override it to write the batch in one round trip.
    async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>) -> Vec<Result<(), LeaseError>> {
        let mut out = Vec::with_capacity(done.len());
        for (id, token) in done {
            out.push(self.complete(id, token).await.map(|_| ()));
        }
        out
    }

    /// Extends a running lease to `now + lease` and reports whether cancellation was requested.
    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError>;

    /// `running` with `token` → `succeeded`.
    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;

    /// Records a failed attempt of a `running` job with `token`: back to `pending` with `run_at =
    /// now + retry_in` (deadline recomputed) or `dead`. A job with a cancel request ends
    /// `cancelled` instead of going back to pending.
    async fn fail(&self, id: JobId, token: LeaseToken, failure: Failure)
        -> Result<Job, LeaseError>;

    /// `running` with `token` and a cancel request → `cancelled`.
    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;

    /// Shutdown: `running` with `token` → `pending` due now, the attempt not counted
    /// (attempts − 1). A job with a cancel request ends `cancelled`.
    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;
}

/// The maintenance role: take back expired leases and delete old finished jobs (the scheduler
/// runs both: the reaper after its picks, at most every 100 ms while they come faster).
#[async_trait]
pub trait MaintenanceStore: Send + Sync + std::fmt::Debug {
    /// Returns expired leases, at most `limit` jobs per state: dispatched → pending (no attempt);
    /// running → pending due now (attempt counted), or dead when attempts are exhausted, or
    /// cancelled when a cancel was requested.
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError>;

    /// Deletes at most `limit` terminal jobs that finished more than `older_than` ago; returns how
    /// many.
    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError>;
}

/// Everything the scheduler asks of a store: [`DispatchStore`] and [`MaintenanceStore`]. Implemented
/// by every type that implements both; `Arc<dyn JobStore>` converts to `Arc<dyn SchedulerStore>`.
pub trait SchedulerStore: DispatchStore + MaintenanceStore {}

impl<T: DispatchStore + MaintenanceStore> SchedulerStore for T {}

/// The source of truth for jobs: every role at once. See the module docs for the contract every
/// method must honour.
///
/// A store implements the four role traits — [`ApiStore`] (API and library callers, operations
/// endpoints), [`DispatchStore`] (the scheduler's pick), [`LeaseStore`] (the worker) and
/// [`MaintenanceStore`] (reaper, pruning) — and is a `JobStore` through the blanket impl. The
/// composition roots hold an `Arc<dyn JobStore>`; a runtime that needs less says so with a role,
/// to which an `Arc<dyn JobStore>` converts where it is passed (the scheduler's `Dispatcher`
/// takes an `Arc<dyn SchedulerStore>`; the worker's heartbeats and batched completions an
/// `Arc<dyn LeaseStore>`). Every role's methods can be called on a `dyn JobStore` without
/// importing the role; on a concrete store (`MemoryStore`, `PgStore`), import the roles used.
pub trait JobStore: ApiStore + LeaseStore + SchedulerStore + ScheduleStore {}

impl<T: ApiStore + LeaseStore + SchedulerStore + ScheduleStore> JobStore for T {}

#[cfg(any(test, feature = "testkit"))]
mockall::mock! {
    /// A mock of every store role (a [`JobStore`]), for unit tests.
    pub JobStore {}

    #[async_trait]
    impl ApiStore for JobStore {
        async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError>;
        async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError>;
        async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;
        async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError>;
        async fn cancel(&self, id: JobId) -> Result<Job, ChangeError>;
        async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError>;
        async fn counts(&self) -> Result<Vec<StatusCount>, StoreError>;
        async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError>;
        async fn ping(&self) -> Result<(), StoreError>;
        async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError>;
        async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError>;
        async fn pauses(&self) -> Result<Vec<Pause>, StoreError>;
        async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError>;
    }

    #[async_trait]
    impl DispatchStore for JobStore {
        async fn lease_due(&self, use_case: &str, pick: PickRequest)
            -> Result<Vec<Dispatch>, StoreError>;
        async fn return_dispatched(&self, dispatches: Vec<(JobId, LeaseToken)>)
            -> Result<u64, StoreError>;
        async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError>;
        async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError>;
        async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError>;
        async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError>;
    }

    #[async_trait]
    impl LeaseStore for JobStore {
        async fn claim(&self, id: JobId, token: LeaseToken, lease: Duration)
            -> Result<Job, LeaseError>;
        async fn claim_many(&self, claims: Vec<(JobId, LeaseToken)>, lease: Duration)
            -> Vec<Result<Job, LeaseError>>;
        async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>)
            -> Vec<Result<(), LeaseError>>;
        async fn heartbeat(&self, id: JobId, token: LeaseToken, lease: Duration)
            -> Result<Heartbeat, LeaseError>;
        async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;
        async fn fail(&self, id: JobId, token: LeaseToken, failure: Failure)
            -> Result<Job, LeaseError>;
        async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;
        async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError>;
    }

    #[async_trait]
    impl MaintenanceStore for JobStore {
        async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError>;
        async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError>;
    }

    #[async_trait]
    impl ScheduleStore for JobStore {
        async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError>;
        async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError>;
        async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError>;
        async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError>;
        async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;
        async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError>;
        async fn fire(&self, name: &str, expected: DateTime<Utc>, jobs: Vec<NewJob>, next: DateTime<Utc>)
            -> Result<Fired, StoreError>;
    }
}

#[cfg(any(test, feature = "testkit"))]
impl std::fmt::Debug for MockJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockJobStore")
    }
}

#[cfg(test)]
mod tests {
    use super::Wakeup::{CapacityFreed, JobDue, Resync};

    #[test]
    fn a_fold_keeps_the_most_pressing_wake_up() {
        assert_eq!(CapacityFreed.fold(JobDue), JobDue);
        assert_eq!(JobDue.fold(CapacityFreed), JobDue);
        assert_eq!(JobDue.fold(Resync), Resync);
        assert_eq!(Resync.fold(CapacityFreed), Resync);
        assert_eq!(CapacityFreed.fold(CapacityFreed), CapacityFreed);
    }

    /// A full channel drops a freed place (one is queued already) but waits for room for a due
    /// job, so that the reader's fold sees it.
    #[tokio::test]
    async fn a_full_channel_drops_freed_places_but_not_due_jobs() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        assert!(CapacityFreed.queue_into(&tx).await);
        assert!(CapacityFreed.queue_into(&tx).await, "dropped, not an error");
        let due = tokio::spawn(async move { JobDue.queue_into(&tx).await });
        tokio::task::yield_now().await;
        assert!(!due.is_finished(), "waits for room");
        assert_eq!(rx.recv().await, Some(CapacityFreed));
        assert!(due.await.unwrap());
        assert_eq!(rx.recv().await, Some(JobDue));
        assert_eq!(rx.recv().await, None, "the sender is gone");
    }
}
