//! [`InterceptedStore`]: one decorator for every "do something around each store call" need —
//! counting calls, injecting faults, stalling a method — instead of a hand-written delegating
//! `JobStore` per need.
//!
//! The wrapper forwards every method, the batched ones included (so the inner store's batch
//! implementation is used), after asking its [`Interceptor`] what to do with the call:
//!
//! ```
//! # use std::sync::Arc;
//! # use std::sync::atomic::{AtomicBool, Ordering};
//! use async_trait::async_trait;
//! use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
//! use jobs_core::{JobStore, ManualClock, StoreError};
//! use jobs_core::memory::MemoryStore;
//!
//! /// Heartbeats fail while `down` is set, as if the database were unreachable.
//! #[derive(Debug, Default)]
//! struct HeartbeatOutage {
//!     down: AtomicBool,
//! }
//!
//! #[async_trait]
//! impl Interceptor for HeartbeatOutage {
//!     async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
//!         if op == StoreOp::Heartbeat && self.down.load(Ordering::SeqCst) {
//!             return Err(StoreError::Unavailable("injected".into()));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let inner = Arc::new(MemoryStore::new(Arc::new(ManualClock::default())));
//! let store = Arc::new(InterceptedStore::new(inner, HeartbeatOutage::default()));
//! store.interceptor().down.store(true, Ordering::SeqCst);
//! let _as_port: Arc<dyn JobStore> = store;
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::activity::{Activity, ActivityQuery};
use crate::backlog::{Backlog, BacklogGrouping};
use crate::job::{Dispatch, Enqueued, Job, JobId, LeaseToken, NewJob};
use crate::pause::{Pause, PauseScope};
use crate::predict::QueuePosition;
use crate::rate::RateLimit;
use crate::schedule::{Schedule, ScheduleDraft};
use crate::schedule_store::{Fired, ScheduleStore};
use crate::store::{
    ApiStore, ChangeError, DispatchStore, EnqueueError, Failure, Heartbeat, JobFilter, JobStore,
    LeaseError, LeaseStore, MaintenanceStore, Page, PageRequest, PickRequest, ReapReport,
    StatusCount, StoreError, WakeupStream,
};

/// A [`JobStore`] method, as an [`Interceptor`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreOp {
    /// [`ApiStore::enqueue`].
    Enqueue,
    /// [`ApiStore::enqueue_many`].
    EnqueueMany,
    /// [`ApiStore::get`].
    Get,
    /// [`ApiStore::list`].
    List,
    /// [`ApiStore::cancel`].
    Cancel,
    /// [`ApiStore::retry`].
    Retry,
    /// [`DispatchStore::lease_due`].
    LeaseDue,
    /// [`LeaseStore::claim`].
    Claim,
    /// [`LeaseStore::claim_many`].
    ClaimMany,
    /// [`LeaseStore::complete_many`].
    CompleteMany,
    /// [`LeaseStore::heartbeat`].
    Heartbeat,
    /// [`LeaseStore::complete`].
    Complete,
    /// [`LeaseStore::fail`].
    Fail,
    /// [`LeaseStore::finish_cancelled`].
    FinishCancelled,
    /// [`LeaseStore::release`].
    Release,
    /// [`MaintenanceStore::reap_expired`].
    ReapExpired,
    /// [`DispatchStore::return_dispatched`].
    ReturnDispatched,
    /// [`ApiStore::counts`].
    Counts,
    /// [`ApiStore::backlog`].
    Backlog,
    /// [`MaintenanceStore::prune`].
    Prune,
    /// [`ApiStore::ping`].
    Ping,
    /// [`ApiStore::pause`].
    Pause,
    /// [`ApiStore::resume`].
    Resume,
    /// [`ApiStore::pauses`].
    Pauses,
    /// [`DispatchStore::subscribe`].
    Subscribe,
    /// [`ScheduleStore::create_schedule`], [`update_schedule`](ScheduleStore::update_schedule),
    /// [`delete_schedule`](ScheduleStore::delete_schedule) and
    /// [`sync_config_schedules`](ScheduleStore::sync_config_schedules).
    ScheduleWrite,
    /// [`ScheduleStore::get_schedule`] and [`schedules`](ScheduleStore::schedules).
    ScheduleRead,
    /// [`ScheduleStore::fire`].
    Fire,
    /// [`DispatchStore::set_rate_limits`].
    SetRateLimits,
    /// [`DispatchStore::rate_limits`].
    RateLimits,
    /// [`DispatchStore::rate_wait`].
    RateWait,
    /// [`ApiStore::queue_position`].
    QueuePosition,
    /// [`DispatchStore::record_drain_rate`].
    RecordDrainRate,
    /// [`ApiStore::activity`].
    Activity,
}

impl StoreOp {
    /// The method's name (`"claim_many"`, …), for counters and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreOp::Enqueue => "enqueue",
            StoreOp::EnqueueMany => "enqueue_many",
            StoreOp::Get => "get",
            StoreOp::List => "list",
            StoreOp::Cancel => "cancel",
            StoreOp::Retry => "retry",
            StoreOp::LeaseDue => "lease_due",
            StoreOp::Claim => "claim",
            StoreOp::ClaimMany => "claim_many",
            StoreOp::CompleteMany => "complete_many",
            StoreOp::Heartbeat => "heartbeat",
            StoreOp::Complete => "complete",
            StoreOp::Fail => "fail",
            StoreOp::FinishCancelled => "finish_cancelled",
            StoreOp::Release => "release",
            StoreOp::ReapExpired => "reap_expired",
            StoreOp::ReturnDispatched => "return_dispatched",
            StoreOp::Counts => "counts",
            StoreOp::Backlog => "backlog",
            StoreOp::Prune => "prune",
            StoreOp::Ping => "ping",
            StoreOp::Pause => "pause",
            StoreOp::Resume => "resume",
            StoreOp::Pauses => "pauses",
            StoreOp::Subscribe => "subscribe",
            StoreOp::ScheduleWrite => "schedule_write",
            StoreOp::ScheduleRead => "schedule_read",
            StoreOp::Fire => "fire",
            StoreOp::SetRateLimits => "set_rate_limits",
            StoreOp::RateLimits => "rate_limits",
            StoreOp::RateWait => "rate_wait",
            StoreOp::QueuePosition => "queue_position",
            StoreOp::RecordDrainRate => "record_drain_rate",
            StoreOp::Activity => "activity",
        }
    }
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do around each call of an [`InterceptedStore`].
#[async_trait]
pub trait Interceptor: Send + Sync + fmt::Debug {
    /// Runs before `op` reaches the inner store (`entries`: the batch size of a batched call, 1
    /// otherwise). It may count, wait (a slow store), or return an error, which the caller gets
    /// instead of the inner store's answer (as [`EnqueueError::Store`], [`ChangeError::Store`],
    /// [`LeaseError::Store`] — one per entry of a batch — or the [`StoreError`] itself); the
    /// inner store is then not called.
    async fn before(&self, op: StoreOp, entries: usize) -> Result<(), StoreError>;

    /// Runs after `op` succeeded in the inner store. An error replaces the store's answer: the
    /// change was made but the caller hears a failure, as when a reply is lost. The default does
    /// nothing.
    async fn after(&self, op: StoreOp, entries: usize) -> Result<(), StoreError> {
        let _ = (op, entries);
        Ok(())
    }
}

/// A shared interceptor, so the test (or the metrics) keeps a handle on it while the store owns it.
#[async_trait]
impl<T: Interceptor + ?Sized> Interceptor for Arc<T> {
    async fn before(&self, op: StoreOp, entries: usize) -> Result<(), StoreError> {
        (**self).before(op, entries).await
    }

    async fn after(&self, op: StoreOp, entries: usize) -> Result<(), StoreError> {
        (**self).after(op, entries).await
    }
}

/// A [`JobStore`] that asks an [`Interceptor`] before forwarding each call to `inner`.
#[derive(Debug)]
pub struct InterceptedStore<I> {
    inner: Arc<dyn JobStore>,
    interceptor: I,
}

impl<I: Interceptor> InterceptedStore<I> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobStore>, interceptor: I) -> Self {
        InterceptedStore { inner, interceptor }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn JobStore> {
        &self.inner
    }

    /// The interceptor (to change what it does while the store is in use).
    pub fn interceptor(&self) -> &I {
        &self.interceptor
    }

    /// `call` between the interceptor's `before` and `after` (the future does nothing until
    /// awaited, so a refusal by `before` leaves the inner store untouched).
    async fn around<T, E: From<StoreError>>(
        &self,
        op: StoreOp,
        entries: usize,
        call: impl std::future::Future<Output = Result<T, E>> + Send,
    ) -> Result<T, E> {
        self.interceptor.before(op, entries).await?;
        let out = call.await?;
        self.interceptor.after(op, entries).await?;
        Ok(out)
    }

    /// The same for a batched call with one result per entry.
    async fn around_each<T>(
        &self,
        op: StoreOp,
        entries: usize,
        call: impl std::future::Future<Output = Vec<Result<T, LeaseError>>> + Send,
    ) -> Vec<Result<T, LeaseError>> {
        let refused = |e: StoreError| (0..entries).map(|_| Err(e.clone().into())).collect();
        if let Err(e) = self.interceptor.before(op, entries).await {
            return refused(e);
        }
        let out = call.await;
        match self.interceptor.after(op, entries).await {
            Ok(()) => out,
            Err(e) => refused(e),
        }
    }
}

#[async_trait]
impl<I: Interceptor> ApiStore for InterceptedStore<I> {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        self.around(StoreOp::Enqueue, 1, self.inner.enqueue(job))
            .await
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        let entries = jobs.len();
        self.around(StoreOp::EnqueueMany, entries, self.inner.enqueue_many(jobs))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.around(StoreOp::Get, 1, self.inner.get(id)).await
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        self.around(StoreOp::List, 1, self.inner.list(filter, page))
            .await
    }

    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        self.around(StoreOp::Cancel, 1, self.inner.cancel(id)).await
    }

    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        self.around(StoreOp::Retry, 1, self.inner.retry(id, quota))
            .await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.around(StoreOp::Counts, 1, self.inner.counts()).await
    }

    async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError> {
        self.around(StoreOp::Backlog, 1, self.inner.backlog(grouping))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.around(StoreOp::Ping, 1, self.inner.ping()).await
    }

    /// Asks the interceptor as for a [`StoreOp::Ping`] (a refusal is the answer, named
    /// `"store"`), then the inner store store by store.
    async fn ping_each(&self, timeout: Duration) -> Vec<(String, Result<(), StoreError>)> {
        if let Err(e) = self.interceptor.before(StoreOp::Ping, 1).await {
            return vec![("store".to_owned(), Err(e))];
        }
        let mut out = self.inner.ping_each(timeout).await;
        if let Err(e) = self.interceptor.after(StoreOp::Ping, 1).await {
            out.insert(0, ("store".to_owned(), Err(e)));
        }
        out
    }

    async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError> {
        self.around(StoreOp::Pause, 1, self.inner.pause(scope))
            .await
    }

    async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError> {
        self.around(StoreOp::Resume, 1, self.inner.resume(scope))
            .await
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        self.around(StoreOp::Pauses, 1, self.inner.pauses()).await
    }

    async fn queue_position(
        &self,
        id: JobId,
        bound: u32,
    ) -> Result<Option<QueuePosition>, StoreError> {
        self.around(
            StoreOp::QueuePosition,
            1,
            self.inner.queue_position(id, bound),
        )
        .await
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError> {
        self.around(StoreOp::Activity, 1, self.inner.activity(query))
            .await
    }
}

#[async_trait]
impl<I: Interceptor> DispatchStore for InterceptedStore<I> {
    async fn lease_due(
        &self,
        use_case: &str,
        pick: PickRequest,
    ) -> Result<Vec<Dispatch>, StoreError> {
        self.around(StoreOp::LeaseDue, 1, self.inner.lease_due(use_case, pick))
            .await
    }

    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        let entries = dispatches.len();
        let call = self.inner.return_dispatched(dispatches);
        self.around(StoreOp::ReturnDispatched, entries, call).await
    }

    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        self.around(StoreOp::Subscribe, 1, self.inner.subscribe())
            .await
    }

    async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        self.around(
            StoreOp::SetRateLimits,
            limits.len(),
            self.inner.set_rate_limits(limits),
        )
        .await
    }

    async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError> {
        self.around(StoreOp::RateLimits, 1, self.inner.rate_limits())
            .await
    }

    async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError> {
        self.around(StoreOp::RateWait, 1, self.inner.rate_wait(use_case))
            .await
    }

    async fn record_drain_rate(&self, use_case: &str, per_second: f64) -> Result<(), StoreError> {
        let call = self.inner.record_drain_rate(use_case, per_second);
        self.around(StoreOp::RecordDrainRate, 1, call).await
    }
}

#[async_trait]
impl<I: Interceptor> LeaseStore for InterceptedStore<I> {
    fn hint_use_case(&self, id: JobId, use_case: &str) {
        self.inner.hint_use_case(id, use_case);
    }

    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        self.around(StoreOp::Claim, 1, self.inner.claim(id, token, lease))
            .await
    }

    async fn claim_many(
        &self,
        claims: Vec<(JobId, LeaseToken)>,
        lease: Duration,
    ) -> Vec<Result<Job, LeaseError>> {
        let entries = claims.len();
        let call = self.inner.claim_many(claims, lease);
        self.around_each(StoreOp::ClaimMany, entries, call).await
    }

    async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>) -> Vec<Result<(), LeaseError>> {
        let entries = done.len();
        let call = self.inner.complete_many(done);
        self.around_each(StoreOp::CompleteMany, entries, call).await
    }

    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        let call = self.inner.heartbeat(id, token, lease);
        self.around(StoreOp::Heartbeat, 1, call).await
    }

    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.around(StoreOp::Complete, 1, self.inner.complete(id, token))
            .await
    }

    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        self.around(StoreOp::Fail, 1, self.inner.fail(id, token, failure))
            .await
    }

    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let call = self.inner.finish_cancelled(id, token);
        self.around(StoreOp::FinishCancelled, 1, call).await
    }

    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.around(StoreOp::Release, 1, self.inner.release(id, token))
            .await
    }
}

#[async_trait]
impl<I: Interceptor> MaintenanceStore for InterceptedStore<I> {
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        self.around(StoreOp::ReapExpired, 1, self.inner.reap_expired(limit))
            .await
    }

    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        self.around(StoreOp::Prune, 1, self.inner.prune(older_than, limit))
            .await
    }
}

#[async_trait]
impl<I: Interceptor> ScheduleStore for InterceptedStore<I> {
    async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        let call = self.inner.create_schedule(draft);
        self.around(StoreOp::ScheduleWrite, 1, call).await
    }

    async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        let call = self.inner.update_schedule(draft);
        self.around(StoreOp::ScheduleWrite, 1, call).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let call = self.inner.delete_schedule(name);
        self.around(StoreOp::ScheduleWrite, 1, call).await
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        let call = self.inner.get_schedule(name);
        self.around(StoreOp::ScheduleRead, 1, call).await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.around(StoreOp::ScheduleRead, 1, self.inner.schedules())
            .await
    }

    async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError> {
        let entries = drafts.len();
        let call = self.inner.sync_config_schedules(drafts);
        self.around(StoreOp::ScheduleWrite, entries, call).await
    }

    async fn fire(
        &self,
        name: &str,
        expected: chrono::DateTime<chrono::Utc>,
        jobs: Vec<NewJob>,
        next: chrono::DateTime<chrono::Utc>,
    ) -> Result<Fired, StoreError> {
        let entries = jobs.len();
        let call = self.inner.fire(name, expected, jobs, next);
        self.around(StoreOp::Fire, entries, call).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryStore;

    /// Records every call and fails the ops in `failing`.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<(StoreOp, usize)>>,
        failing: Mutex<Vec<StoreOp>>,
    }

    #[async_trait]
    impl Interceptor for Recorder {
        async fn before(&self, op: StoreOp, entries: usize) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push((op, entries));
            if self.failing.lock().unwrap().contains(&op) {
                return Err(StoreError::Unavailable(format!("{op} injected")));
            }
            Ok(())
        }
    }

    fn new_job() -> NewJob {
        NewJob {
            id: crate::job::new_job_id(),
            tenant_id: "acme".into(),
            use_case: "alpha".into(),
            kind: "k".into(),
            payload: serde_json::json!({}),
            priority: 0,
            max_attempts: 3,
            backoff: crate::backoff::Backoff::default(),
            run_at: None,
            delay_tolerance: Duration::from_secs(60),
            expire_at_deadline: false,
            timeout: Duration::from_secs(30),
            idempotency_key: None,
            quota: None,
            fair_weight: Some(1),
            trace_context: None,
        }
    }

    #[tokio::test]
    async fn forwards_counts_and_fails_each_call_as_its_error_type() {
        let inner = Arc::new(MemoryStore::new(Arc::new(ManualClock::default())));
        let store = InterceptedStore::new(inner, Recorder::default());
        let job = new_job();
        let id = job.id;
        store.enqueue(job).await.unwrap();
        let leased = store
            .lease_due(
                "alpha",
                PickRequest {
                    cap: 10,
                    limit: 10,
                    lease: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        let token = leased[0].lease_token;
        store.interceptor().failing.lock().unwrap().extend([
            StoreOp::ClaimMany,
            StoreOp::Cancel,
            StoreOp::Enqueue,
        ]);
        let refused = store
            .claim_many(vec![(id, token), (id, token)], Duration::from_secs(60))
            .await;
        assert_eq!(refused.len(), 2);
        assert!(refused
            .iter()
            .all(|r| matches!(r, Err(LeaseError::Store(StoreError::Unavailable(_))))));
        assert!(matches!(
            store.cancel(id).await,
            Err(ChangeError::Store(StoreError::Unavailable(_)))
        ));
        assert!(matches!(
            store.enqueue(new_job()).await,
            Err(EnqueueError::Store(StoreError::Unavailable(_)))
        ));
        // Nothing reached the inner store: the job is still dispatched.
        let job = store.inner().get(id).await.unwrap().unwrap();
        assert_eq!(job.status, crate::JobStatus::Dispatched);
        store.interceptor().failing.lock().unwrap().clear();
        let claimed = store
            .claim_many(vec![(id, token)], Duration::from_secs(60))
            .await;
        assert!(claimed[0].is_ok());
        let calls = store.interceptor().calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                (StoreOp::Enqueue, 1),
                (StoreOp::LeaseDue, 1),
                (StoreOp::ClaimMany, 2),
                (StoreOp::Cancel, 1),
                (StoreOp::Enqueue, 1),
                (StoreOp::ClaimMany, 1),
            ]
        );
    }
}
