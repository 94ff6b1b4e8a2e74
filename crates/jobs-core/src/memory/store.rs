//! The in-memory job store: one mutex over a map, every operation atomic under it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::activity::{Activity, ActivityQuery};
use crate::backlog::{Backlog, BacklogGrouping, BacklogRow};
use crate::clock::Clock;
use crate::deadline::{add_saturating, deadline_at, sub};
use crate::job::{Dispatch, Enqueued, Job, JobId, LeaseToken, NewJob};
use crate::pause::{Pause, PauseScope};
use crate::predict::{QueuePosition, RecordedRate};
use crate::rate::RateLimit;
use crate::status::{expiry_transition, failure_transition, JobStatus, Transition};
use crate::store::{
    ApiStore, ChangeError, DispatchStore, EnqueueError, Failure, Heartbeat, JobFilter, LeaseError,
    LeaseStore, MaintenanceStore, Page, PageRequest, PickRequest, ReapReport, StatusCount,
    StoreError, Wakeup, WakeupStream,
};

/// The length of `value`'s compact JSON text (as the enqueue size limit counts it), without
/// building the text.
fn json_len(value: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) jobs: BTreeMap<JobId, Job>,
    pub(super) idempotency: HashMap<(String, String), JobId>,
    /// Pauses in force, with when they began.
    pauses: BTreeMap<PauseScope, DateTime<Utc>>,
    /// Cron schedules by name (`memory/schedule.rs`).
    pub(super) schedules: BTreeMap<String, crate::schedule::Schedule>,
    /// Rate limits in force.
    rate_limits: Vec<RateLimit>,
    /// Token buckets by (use case, tenant): tokens held at a time.
    buckets: HashMap<(String, String), (f64, DateTime<Utc>)>,
    /// Fair-share state of each job (see [`crate::fair`]).
    fair: HashMap<JobId, Turn>,
    /// Virtual clock of each use case: the highest tag its pick handed out.
    clocks: HashMap<String, f64>,
    /// The drain rate of each use case, as the scheduler last recorded it.
    drain_rates: HashMap<String, RecordedRate>,
}

/// A job's place in the fair share: its tag, the step of its tenant's turns, and whether it holds
/// a tag (it became ready) or waits for one (its `run_at` has not come, or its tenant is paused).
#[derive(Debug, Clone, Copy)]
struct Turn {
    tag: f64,
    step: f64,
    tagged: bool,
}

impl Inner {
    /// `id` waits for a turn again: the next pick tags it (a job back in `pending`).
    fn untag(&mut self, id: JobId) {
        if let Some(turn) = self.fair.get_mut(&id) {
            turn.tagged = false;
        }
    }

    fn turn(&self, id: &JobId) -> Turn {
        self.fair.get(id).copied().unwrap_or(Turn {
            tag: 0.0,
            step: 1.0,
            tagged: false,
        })
    }

    /// Tags `ids` (jobs of one tenant and use case becoming ready now, in this order).
    fn tag(&mut self, tenant: &str, use_case: &str, ids: &[JobId]) {
        if ids.is_empty() {
            return;
        }
        let clock = self.clocks.get(use_case).copied().unwrap_or(0.0);
        let highest = self
            .jobs
            .values()
            .filter(|j| j.tenant_id == tenant && j.use_case == use_case && !j.status.is_terminal())
            .map(|j| self.turn(&j.id).tag)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        let base = crate::fair::base(clock, highest);
        for (k, id) in ids.iter().enumerate() {
            let mut turn = self.turn(id);
            turn.tag = if turn.step > 0.0 {
                base + (k + 1) as f64 * turn.step
            } else {
                0.0
            };
            turn.tagged = true;
            self.fair.insert(*id, turn);
        }
    }
}

/// A [`JobStore`](crate::JobStore) in process memory. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    pub(super) clock: Arc<dyn Clock>,
    wake: broadcast::Sender<Wakeup>,
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let (wake, _) = broadcast::channel(64);
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
            wake,
        }
    }

    /// Every job, by id (a test helper).
    pub fn snapshot(&self) -> Vec<Job> {
        self.lock().jobs.values().cloned().collect()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a job half-written (each write is a whole
        // struct assignment), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn notify(&self, w: Wakeup) {
        // No receivers is fine: nobody is waiting.
        let _ = self.wake.send(w);
    }

    /// Applies a fenced change: the job must be `expected` with `token`.
    fn fenced<T>(
        &self,
        id: JobId,
        token: LeaseToken,
        expected: JobStatus,
        change: impl FnOnce(&mut Job, DateTime<Utc>) -> T,
    ) -> Result<T, LeaseError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.jobs.get_mut(&id) {
            Some(job) if job.status == expected && job.lease_token == Some(token) => {
                job.updated_at = now;
                Ok(change(job, now))
            }
            _ => Err(LeaseError::LeaseLost(id)),
        }
    }
}

fn in_flight(jobs: &BTreeMap<JobId, Job>, use_case: &str) -> u64 {
    jobs.values()
        .filter(|j| j.use_case == use_case && j.status.is_in_flight())
        .count() as u64
}

fn quota_used(jobs: &BTreeMap<JobId, Job>, tenant: &str, use_case: &str) -> u64 {
    jobs.values()
        .filter(|j| {
            j.tenant_id == tenant && j.use_case == use_case && j.status.counts_against_quota()
        })
        .count() as u64
}

/// Moves `job` along `event`, which the caller has established is legal from its status.
fn set_status(job: &mut Job, event: Transition) {
    if let Ok(to) = job.status.apply(event) {
        job.status = to;
    }
}

fn finish(job: &mut Job, event: Transition, now: DateTime<Utc>) {
    set_status(job, event);
    job.lease_token = None;
    job.lease_expires_at = None;
    if job.status.is_terminal() {
        job.finished_at = Some(now);
    }
}

/// The error a job that expired at its deadline keeps (`miss_deadline`).
pub(crate) const EXPIRED_ERROR: &str = "expired: it would have started after its deadline";

/// True if `job`, set to expire at its deadline, would start after it at `now`.
fn missed_deadline(job: &Job, now: DateTime<Utc>) -> bool {
    job.expire_at_deadline && job.deadline_at < now
}

/// Earliest deadline first, then higher priority, then id: the order within a tenant (and across
/// tenants in plain EDF).
fn edf(a: &Job, b: &Job) -> std::cmp::Ordering {
    a.deadline_at
        .cmp(&b.deadline_at)
        .then(b.priority.cmp(&a.priority))
        .then(a.id.cmp(&b.id))
}

fn back_to_pending(job: &mut Job, event: Transition, run_at: DateTime<Utc>, now: DateTime<Utc>) {
    finish(job, event, now);
    job.run_at = run_at;
    job.deadline_at = add_saturating(run_at, job.delay_tolerance);
}

pub(super) fn insert(
    inner: &mut Inner,
    new: NewJob,
    now: DateTime<Utc>,
) -> Result<Enqueued, EnqueueError> {
    if let Some(key) = &new.idempotency_key {
        if let Some(existing) = inner
            .idempotency
            .get(&(new.tenant_id.clone(), key.clone()))
            .and_then(|id| inner.jobs.get(id))
        {
            return Ok(Enqueued {
                job: existing.clone(),
                created: false,
            });
        }
    }
    if let Some(limit) = new.quota {
        if quota_used(&inner.jobs, &new.tenant_id, &new.use_case) >= u64::from(limit) {
            return Err(EnqueueError::QuotaExceeded {
                tenant_id: new.tenant_id,
                use_case: new.use_case,
                limit,
            });
        }
    }
    let run_at = new.run_at.unwrap_or(now);
    // A run_at in the past is due at once and gets its tolerance from now: it cannot buy a
    // deadline ahead of every other job.
    let deadline = deadline_at(run_at.max(now), new.delay_tolerance)
        .map_err(|e| EnqueueError::Store(StoreError::Internal(e.to_string())))?;
    let step = new.fair_step();
    let job = new.into_pending(now, run_at, deadline);
    if let Some(key) = &job.idempotency_key {
        inner
            .idempotency
            .insert((job.tenant_id.clone(), key.clone()), job.id);
    }
    inner.fair.insert(
        job.id,
        Turn {
            tag: 0.0,
            step,
            tagged: false,
        },
    );
    inner.jobs.insert(job.id, job.clone());
    let held = inner
        .pauses
        .contains_key(&PauseScope::tenant(&job.use_case, &job.tenant_id));
    if run_at <= now && !held {
        inner.tag(&job.tenant_id, &job.use_case, &[job.id]);
    }
    Ok(Enqueued { job, created: true })
}

#[async_trait]
impl ApiStore for MemoryStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let now = self.clock.now();
        let enqueued = insert(&mut self.lock(), job, now)?;
        if enqueued.created && enqueued.job.run_at <= now {
            self.notify(Wakeup::JobDue);
        }
        Ok(enqueued)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        let now = self.clock.now();
        let results = {
            let mut inner = self.lock();
            let before_jobs = inner.jobs.clone();
            let before_keys = inner.idempotency.clone();
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                match insert(&mut inner, job, now) {
                    Ok(e) => results.push(e),
                    Err(e) => {
                        // All or none.
                        inner.jobs = before_jobs;
                        inner.idempotency = before_keys;
                        return Err(e);
                    }
                }
            }
            results
        };
        if results.iter().any(|e| e.created && e.job.run_at <= now) {
            self.notify(Wakeup::JobDue);
        }
        Ok(results)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        let inner = self.lock();
        let limit = page.limit.max(1) as usize;
        let upper = match page.after {
            Some(after) => inner.jobs.range(..after),
            None => inner.jobs.range(..),
        };
        // The candidates, as PostgreSQL walks them: the tenant's index, or the primary key.
        let window = page.max_scanned.map_or(usize::MAX, |n| n.max(1) as usize);
        let candidates = upper
            .rev()
            .map(|(_, j)| j)
            .filter(|j| filter.tenant_id.as_ref().is_none_or(|t| &j.tenant_id == t))
            .take(window);
        let mut jobs: Vec<Job> = Vec::new();
        let mut bytes: u64 = 0;
        let mut scanned = 0usize;
        let mut last_scanned = None;
        let mut cut = false;
        for job in candidates {
            scanned += 1;
            last_scanned = Some(job.id);
            if !filter.matches(job) {
                continue;
            }
            if jobs.len() == limit {
                cut = true;
                break;
            }
            let size = if page.include_payload {
                json_len(&job.payload)
            } else {
                0
            };
            if page
                .max_bytes
                .is_some_and(|max| !jobs.is_empty() && bytes.saturating_add(size) > max)
            {
                cut = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            let mut listed = job.clone();
            if !page.include_payload {
                listed.payload = serde_json::Value::Null;
            }
            jobs.push(listed);
        }
        let next = if cut {
            jobs.last().map(|j| j.id)
        } else if scanned == window {
            // The window ended before the page filled: carry on from the last examined job.
            last_scanned
        } else {
            None
        };
        Ok(Page { jobs, next })
    }

    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let job = inner.jobs.get_mut(&id).ok_or(ChangeError::NotFound(id))?;
        match job.status {
            JobStatus::Cancelled => {}
            JobStatus::Running => {
                job.cancel_requested = true;
                job.updated_at = now;
            }
            status => {
                status.apply(Transition::Cancel)?;
                finish(job, Transition::Cancel, now);
                job.updated_at = now;
            }
        }
        Ok(job.clone())
    }

    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        let now = self.clock.now();
        let job = {
            let mut inner = self.lock();
            let job = inner.jobs.get(&id).ok_or(ChangeError::NotFound(id))?;
            job.status.apply(Transition::Retry)?;
            if let Some(limit) = quota {
                if quota_used(&inner.jobs, &job.tenant_id, &job.use_case) >= u64::from(limit) {
                    return Err(ChangeError::QuotaExceeded {
                        tenant_id: job.tenant_id.clone(),
                        use_case: job.use_case.clone(),
                        limit,
                    });
                }
            }
            let job = inner.jobs.get_mut(&id).ok_or(ChangeError::NotFound(id))?;
            back_to_pending(job, Transition::Retry, now, now);
            job.attempts = 0;
            job.cancel_requested = false;
            job.finished_at = None;
            job.updated_at = now;
            let job = job.clone();
            // A retried job is new work: its tenant's next turn, taken at the next pick.
            inner.untag(id);
            job
        };
        self.notify(Wakeup::JobDue);
        Ok(job)
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let inner = self.lock();
        let mut counts: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for job in inner.jobs.values() {
            *counts
                .entry((job.use_case.clone(), job.status))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((use_case, status), count)| StatusCount {
                use_case,
                status,
                count,
            })
            .collect())
    }

    async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError> {
        let at = self.clock.now();
        let inner = self.lock();
        let mut rows: BTreeMap<(String, Option<String>), BacklogRow> = BTreeMap::new();
        let due = inner.jobs.values().filter(|j| {
            j.status == JobStatus::Pending
                && j.run_at <= at
                && !inner
                    .pauses
                    .keys()
                    .any(|p| p.holds(&j.use_case, &j.tenant_id))
        });
        for job in due {
            let tenant_id = match grouping {
                BacklogGrouping::UseCase => None,
                BacklogGrouping::Tenant => Some(job.tenant_id.clone()),
            };
            rows.entry((job.use_case.clone(), tenant_id.clone()))
                .and_modify(|r| {
                    r.due += 1;
                    r.oldest_run_at = r.oldest_run_at.min(job.run_at);
                })
                .or_insert_with(|| BacklogRow {
                    use_case: job.use_case.clone(),
                    tenant_id,
                    due: 1,
                    oldest_run_at: job.run_at,
                });
        }
        Ok(Backlog {
            at,
            rows: rows.into_values().collect(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let paused_at = *inner.pauses.entry(scope.clone()).or_insert(now);
        Ok(Pause {
            scope: scope.clone(),
            paused_at,
        })
    }

    async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let resumed = {
            let mut inner = self.lock();
            let resumed = inner.pauses.remove(scope).is_some();
            if resumed {
                if let Some(tenant) = scope.tenant_id.clone() {
                    // The tenant's waiting jobs take turns from the clock on, in deadline order:
                    // a pause banks no turns.
                    let mut waiting: Vec<&Job> = inner
                        .jobs
                        .values()
                        .filter(|j| {
                            j.use_case == scope.use_case
                                && j.tenant_id == tenant
                                && j.status == JobStatus::Pending
                        })
                        .collect();
                    waiting.sort_by(|a, b| edf(a, b));
                    let (due, later): (Vec<&Job>, Vec<&Job>) =
                        waiting.into_iter().partition(|j| j.run_at <= now);
                    let due: Vec<JobId> = due.iter().map(|j| j.id).collect();
                    let later: Vec<JobId> = later.iter().map(|j| j.id).collect();
                    for id in due.iter().chain(&later) {
                        if let Some(turn) = inner.fair.get_mut(id) {
                            turn.tagged = false;
                            turn.tag = 0.0;
                        }
                    }
                    inner.tag(&tenant, &scope.use_case, &due);
                }
            }
            resumed
        };
        if resumed {
            self.notify(Wakeup::JobDue);
        }
        Ok(resumed)
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError> {
        let now = self.clock.now();
        let inner = self.lock();
        Ok(crate::activity::tally(inner.jobs.values(), now, query))
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        // BTreeMap order: by use case, `None` (the whole use case) before its tenants.
        Ok(self
            .lock()
            .pauses
            .iter()
            .map(|(scope, at)| Pause {
                scope: scope.clone(),
                paused_at: *at,
            })
            .collect())
    }

    async fn queue_position(
        &self,
        id: JobId,
        bound: u32,
    ) -> Result<Option<QueuePosition>, StoreError> {
        let at = self.clock.now();
        let inner = self.lock();
        let Some(me) = inner
            .jobs
            .get(&id)
            .filter(|j| j.status == JobStatus::Pending)
        else {
            return Ok(None);
        };
        let use_case = me.use_case.as_str();
        let paused = inner
            .pauses
            .keys()
            .any(|p| p.holds(use_case, &me.tenant_id));
        let held = |j: &Job| {
            inner
                .pauses
                .contains_key(&PauseScope::tenant(use_case, &j.tenant_id))
        };
        let limited =
            |j: &Job| crate::rate::lookup(&inner.rate_limits, &j.tenant_id, use_case).is_some();
        // The pick's order: tag, then deadline, higher priority, id.
        let key = |j: &Job| {
            (
                inner.turn(&j.id).tag,
                j.deadline_at,
                -i32::from(j.priority),
                j.id,
            )
        };
        let before = |j: &Job| {
            let (a, b) = (key(j), key(me));
            a.0.total_cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
                .is_lt()
        };
        let ahead = if paused || !inner.turn(&id).tagged {
            0
        } else {
            inner
                .jobs
                .values()
                .filter(|j| {
                    j.use_case == use_case
                        && j.status == JobStatus::Pending
                        && inner.turn(&j.id).tagged
                        && !held(j)
                        && !limited(j)
                        && before(j)
                })
                .take(bound as usize)
                .count() as u64
        };
        Ok(Some(QueuePosition {
            at,
            paused,
            ahead,
            ahead_bounded: ahead >= u64::from(bound),
            in_flight: in_flight(&inner.jobs, use_case),
            drain_rate: inner.drain_rates.get(use_case).copied(),
        }))
    }
}

#[async_trait]
impl DispatchStore for MemoryStore {
    async fn record_drain_rate(&self, use_case: &str, per_second: f64) -> Result<(), StoreError> {
        let measured_at = self.clock.now();
        self.lock().drain_rates.insert(
            use_case.to_owned(),
            RecordedRate {
                per_second,
                measured_at,
            },
        );
        Ok(())
    }

    async fn lease_due(
        &self,
        use_case: &str,
        pick: PickRequest,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        // Jobs set to expire at their deadline that did not start by it end now, whether they
        // wait for capacity, a pause or a rate limit (`miss_deadline`).
        for job in inner.jobs.values_mut() {
            if job.use_case == use_case
                && job.status == JobStatus::Pending
                && missed_deadline(job, now)
            {
                finish(job, Transition::MissDeadline, now);
                job.last_error = Some(EXPIRED_ERROR.to_owned());
                job.updated_at = now;
            }
        }
        let pauses: Vec<PauseScope> = inner
            .pauses
            .keys()
            .filter(|p| p.use_case == use_case)
            .cloned()
            .collect();
        let paused = |j: &Job| pauses.iter().any(|p| p.holds(&j.use_case, &j.tenant_id));
        let tenant_paused = |j: &Job| {
            pauses
                .iter()
                .any(|p| p.tenant_id.as_deref() == Some(j.tenant_id.as_str()))
        };
        // Jobs that became ready since the last pick (their run_at came), and ready jobs whose
        // tag fell below the clock (back from a release, a reap or a failure without backoff, a
        // retry while the tenant was paused), take their tenants' next turns, in deadline order;
        // a paused tenant's wait until it resumes, a rate-limited tenant's keep their tags.
        let clock_now = inner.clocks.get(use_case).copied().unwrap_or(0.0);
        let limited =
            |tenant: &str| crate::rate::lookup(&inner.rate_limits, tenant, use_case).is_some();
        let mut promoted: BTreeMap<String, Vec<&Job>> = BTreeMap::new();
        for j in inner.jobs.values().filter(|j| {
            let turn = inner.turn(&j.id);
            j.use_case == use_case
                && j.status == JobStatus::Pending
                && j.run_at <= now
                && !tenant_paused(j)
                && (!turn.tagged
                    || (turn.step > 0.0 && turn.tag < clock_now && !limited(&j.tenant_id)))
        }) {
            promoted.entry(j.tenant_id.clone()).or_default().push(j);
        }
        let promoted: Vec<(String, Vec<JobId>)> = promoted
            .into_iter()
            .map(|(tenant, mut jobs)| {
                jobs.sort_by(|a, b| edf(a, b));
                (tenant, jobs.iter().map(|j| j.id).collect())
            })
            .collect();
        for (tenant, ids) in promoted {
            inner.tag(&tenant, use_case, &ids);
        }
        let free = u64::from(pick.cap).saturating_sub(in_flight(&inner.jobs, use_case));
        let take = free.min(u64::from(pick.limit)) as usize;
        if take == 0 {
            return Ok(Vec::new());
        }

        let due: Vec<&Job> = inner
            .jobs
            .values()
            .filter(|j| j.use_case == use_case && j.status == JobStatus::Pending && j.run_at <= now)
            .filter(|j| !paused(j))
            .collect();
        let by_turn = |a: &&Job, b: &&Job| {
            let (ta, tb) = (inner.turn(&a.id).tag, inner.turn(&b.id).tag);
            ta.total_cmp(&tb).then_with(|| edf(a, b))
        };
        // Each tenant's due jobs in deadline order, and whether a rate limit applies to it.
        let mut tenants: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
        for j in &due {
            tenants.entry(j.tenant_id.as_str()).or_default().push(j);
        }
        for jobs in tenants.values_mut() {
            jobs.sort_by(|a, b| edf(a, b));
        }
        let limit_of = |tenant: &str| crate::rate::lookup(&inner.rate_limits, tenant, use_case);
        // The main lane: turns of tenants without a rate limit, lowest tags first. The limited
        // lane: each limited tenant's earliest deadlines, as many as its whole tokens.
        let mut main: Vec<&Job> = due
            .iter()
            .copied()
            .filter(|j| limit_of(&j.tenant_id).is_none())
            .collect();
        main.sort_by(by_turn);
        main.truncate(take);
        let mut tokens: HashMap<String, (f64, f64)> = HashMap::new();
        let mut lane: Vec<&Job> = Vec::new();
        for (tenant, jobs) in &tenants {
            if let Some(limit) = limit_of(tenant) {
                let bucket = inner
                    .buckets
                    .get(&(use_case.to_owned(), (*tenant).to_owned()))
                    .copied();
                let t = limit.tokens_at(bucket, now);
                tokens.insert((*tenant).to_owned(), (t, t));
                let whole = if t < 1.0 { 0 } else { t.floor() as usize };
                lane.extend(jobs.iter().take(whole.min(take)));
            }
        }
        let mut picked: Vec<(&Job, bool)> = main
            .into_iter()
            .map(|j| (j, false))
            .chain(lane.into_iter().map(|j| (j, true)))
            .collect();
        picked.sort_by(|a, b| by_turn(&a.0, &b.0));
        picked.truncate(take);
        // Each main-lane tenant's turns go to its earliest deadlines; unused tags move to the
        // jobs it keeps (`fair::hand_over`).
        let mut slots: BTreeMap<&str, Vec<(JobId, f64)>> = BTreeMap::new();
        let mut ids = Vec::with_capacity(take);
        let mut clock = inner.clocks.get(use_case).copied().unwrap_or(0.0);
        for (j, limited) in &picked {
            if *limited {
                ids.push(j.id);
                clock = clock.max(inner.turn(&j.id).tag);
                if let Some((_, left)) = tokens.get_mut(&j.tenant_id) {
                    *left -= 1.0;
                }
            } else {
                let tag = inner.turn(&j.id).tag;
                clock = clock.max(tag);
                slots
                    .entry(j.tenant_id.as_str())
                    .or_default()
                    .push((j.id, tag));
            }
        }
        let mut swaps = Vec::new();
        for (tenant, turns) in &slots {
            let chosen: Vec<(JobId, f64)> = tenants
                .get(tenant)
                .map(|jobs| {
                    jobs.iter()
                        .take(turns.len())
                        .map(|j| (j.id, inner.turn(&j.id).tag))
                        .collect()
                })
                .unwrap_or_default();
            ids.extend(chosen.iter().map(|c| c.0));
            swaps.extend(crate::fair::hand_over(turns, &chosen));
        }
        for (id, tag) in swaps {
            if let Some(turn) = inner.fair.get_mut(&id) {
                turn.tag = tag;
            }
        }
        inner.clocks.insert(use_case.to_owned(), clock);
        // A leased job holds at most the turn it used, not a later one.
        for id in &ids {
            if let Some(turn) = inner.fair.get_mut(id) {
                turn.tag = turn.tag.min(clock);
            }
        }
        // One pick's jobs are sent in deadline order (as the Postgres store returns them).
        ids.sort_by(|a, b| match (inner.jobs.get(a), inner.jobs.get(b)) {
            (Some(a), Some(b)) => edf(a, b),
            _ => a.cmp(b),
        });
        for (tenant, (at_start, left)) in tokens {
            if left < at_start {
                inner
                    .buckets
                    .insert((use_case.to_owned(), tenant), (left, now));
            }
        }
        let mut leased = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = inner.jobs.get_mut(&id) {
                let token = LeaseToken::generate();
                set_status(job, Transition::Dispatch);
                job.lease_token = Some(token);
                job.lease_expires_at = Some(add_saturating(now, pick.lease));
                job.dispatched_at = Some(now);
                job.updated_at = now;
                leased.push(Dispatch {
                    job_id: job.id,
                    lease_token: token,
                    tenant_id: job.tenant_id.clone(),
                    use_case: job.use_case.clone(),
                    kind: job.kind.clone(),
                    attempt: job.attempts.saturating_add(1),
                    deadline_at: job.deadline_at,
                });
            }
        }
        Ok(leased)
    }

    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        let mut returned = 0;
        for (id, token) in dispatches {
            let back = self.fenced(id, token, JobStatus::Dispatched, |job, now| {
                finish(job, Transition::ExpireDispatch, now);
            });
            if back.is_ok() {
                self.lock().untag(id);
            }
            returned += u64::from(back.is_ok());
        }
        if returned > 0 {
            self.notify(Wakeup::JobDue);
        }
        Ok(returned)
    }

    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        Ok(Box::new(MemoryWakeups(self.wake.subscribe())))
    }

    async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        let mut sorted = limits.to_vec();
        sorted.sort_by(|a, b| (&a.use_case, &a.tenant_id).cmp(&(&b.use_case, &b.tenant_id)));
        sorted.dedup_by(|a, b| a.use_case == b.use_case && a.tenant_id == b.tenant_id);
        let changed = {
            let mut inner = self.lock();
            let changed = inner.rate_limits != sorted;
            inner.rate_limits = sorted;
            changed
        };
        if changed {
            // A lifted or raised limit may leave due jobs startable now.
            let _ = self.wake.send(Wakeup::JobDue);
        }
        Ok(())
    }

    async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError> {
        Ok(self.lock().rate_limits.clone())
    }

    async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now();
        let inner = self.lock();
        let mut wait: Option<Duration> = None;
        let mut seen = std::collections::HashSet::new();
        for job in inner.jobs.values() {
            if job.use_case != use_case
                || job.status != JobStatus::Pending
                || job.run_at > now
                || !seen.insert(job.tenant_id.as_str())
                || inner
                    .pauses
                    .keys()
                    .any(|p| p.holds(use_case, &job.tenant_id))
            {
                continue;
            }
            let Some(limit) = crate::rate::lookup(&inner.rate_limits, &job.tenant_id, use_case)
            else {
                continue;
            };
            let bucket = inner
                .buckets
                .get(&(use_case.to_owned(), job.tenant_id.clone()))
                .copied();
            let tokens = limit.tokens_at(bucket, now);
            if tokens < 1.0 {
                let w = limit.wait_for_token(tokens);
                wait = Some(wait.map_or(w, |x| x.min(w)));
            }
        }
        Ok(wait)
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        self.fenced(id, token, JobStatus::Dispatched, |job, now| {
            if missed_deadline(job, now) {
                // Reached a worker after its deadline: it ends expired and does not run.
                finish(job, Transition::MissDeadline, now);
                job.last_error = Some(EXPIRED_ERROR.to_owned());
                return Err(LeaseError::LeaseLost(job.id));
            }
            set_status(job, Transition::Claim);
            job.attempts = job.attempts.saturating_add(1);
            // As the Postgres store: a job whose start predates `first_started_at` keeps it.
            let first = job.started_at.unwrap_or(now);
            job.first_started_at.get_or_insert(first);
            job.started_at = Some(now);
            job.lease_expires_at = Some(add_saturating(now, lease));
            Ok(job.clone())
        })?
    }

    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        self.fenced(id, token, JobStatus::Running, |job, now| {
            let until = add_saturating(now, lease);
            job.lease_expires_at = Some(until);
            Heartbeat {
                lease_expires_at: until,
                cancel_requested: job.cancel_requested,
            }
        })
    }

    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = self.fenced(id, token, JobStatus::Running, |job, now| {
            finish(job, Transition::Succeed, now);
            job.clone()
        })?;
        self.notify(Wakeup::CapacityFreed);
        Ok(job)
    }

    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        let job = self.fenced(id, token, JobStatus::Running, |job, now| {
            job.last_error = Some(failure.error);
            match (
                failure_transition(failure.retry_in.is_some(), job.cancel_requested),
                failure.retry_in,
            ) {
                (Transition::FailRetry, Some(delay)) => {
                    back_to_pending(job, Transition::FailRetry, add_saturating(now, delay), now)
                }
                (event, _) => finish(job, event, now),
            }
            job.clone()
        })?;
        if job.status == JobStatus::Pending {
            // Its next attempt is its tenant's next turn, taken at the pick after its backoff.
            self.lock().untag(id);
        }
        self.notify(Wakeup::CapacityFreed);
        Ok(job)
    }

    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = {
            let now = self.clock.now();
            let mut inner = self.lock();
            match inner.jobs.get_mut(&id) {
                Some(job)
                    if job.status == JobStatus::Running
                        && job.lease_token == Some(token)
                        && job.cancel_requested =>
                {
                    finish(job, Transition::FinishCancelled, now);
                    job.updated_at = now;
                    job.clone()
                }
                _ => return Err(LeaseError::LeaseLost(id)),
            }
        };
        self.notify(Wakeup::CapacityFreed);
        Ok(job)
    }

    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = self.fenced(id, token, JobStatus::Running, |job, now| {
            if job.cancel_requested {
                finish(job, Transition::FinishCancelled, now);
            } else {
                finish(job, Transition::Release, now);
                job.attempts = job.attempts.saturating_sub(1);
                job.run_at = job.run_at.min(now);
            }
            job.clone()
        })?;
        if job.status == JobStatus::Pending {
            self.lock().untag(id);
        }
        self.notify(Wakeup::JobDue);
        Ok(job)
    }
}

#[async_trait]
impl MaintenanceStore for MemoryStore {
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        let now = self.clock.now();
        let mut report = ReapReport::default();
        {
            let mut inner = self.lock();
            let expired = |j: &Job, status: JobStatus| {
                j.status == status && j.lease_expires_at.is_some_and(|t| t <= now)
            };
            let dispatched: Vec<JobId> = inner
                .jobs
                .values()
                .filter(|j| expired(j, JobStatus::Dispatched))
                .take(limit as usize)
                .map(|j| j.id)
                .collect();
            let running: Vec<JobId> = inner
                .jobs
                .values()
                .filter(|j| expired(j, JobStatus::Running))
                .take(limit as usize)
                .map(|j| j.id)
                .collect();
            for id in dispatched {
                if let Some(job) = inner.jobs.get_mut(&id) {
                    finish(job, Transition::ExpireDispatch, now);
                    job.updated_at = now;
                    report.dispatch_expired += 1;
                }
                inner.untag(id);
            }
            for id in running {
                if let Some(job) = inner.jobs.get_mut(&id) {
                    let event =
                        expiry_transition(job.attempts, job.max_attempts, job.cancel_requested);
                    job.last_error =
                        Some("lease expired: the worker stopped heartbeating".to_owned());
                    job.updated_at = now;
                    match event {
                        Transition::ExpireRunRetry => {
                            back_to_pending(job, event, now, now);
                            report.run_expired_retry += 1;
                            if let Some(turn) = inner.fair.get_mut(&id) {
                                turn.tagged = false;
                            }
                        }
                        Transition::ExpireRunDead => {
                            finish(job, event, now);
                            report.run_expired_dead += 1;
                        }
                        _ => {
                            finish(job, event, now);
                            report.run_expired_cancelled += 1;
                        }
                    }
                }
            }
        }
        if report.total() > 0 {
            self.notify(Wakeup::JobDue);
        }
        Ok(report)
    }

    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        let Ok(cutoff) = sub(self.clock.now(), older_than) else {
            return Ok(0);
        };
        let mut inner = self.lock();
        let doomed: Vec<JobId> = inner
            .jobs
            .values()
            .filter(|j| j.status.is_terminal() && j.finished_at.is_some_and(|t| t < cutoff))
            .take(limit as usize)
            .map(|j| j.id)
            .collect();
        for id in &doomed {
            inner.fair.remove(id);
            if let Some(job) = inner.jobs.remove(id) {
                if let Some(key) = job.idempotency_key {
                    inner.idempotency.remove(&(job.tenant_id, key));
                }
            }
        }
        // Buckets that refilled, or whose limit is gone: to the pick, the same as none.
        let now = self.clock.now();
        let Inner {
            buckets,
            rate_limits,
            ..
        } = &mut *inner;
        buckets.retain(|(use_case, tenant), bucket| {
            crate::rate::lookup(rate_limits.iter(), tenant, use_case)
                .is_some_and(|l| l.tokens_at(Some(*bucket), now) < f64::from(l.burst))
        });
        Ok(doomed.len() as u64)
    }
}

struct MemoryWakeups(broadcast::Receiver<Wakeup>);

#[async_trait]
impl WakeupStream for MemoryWakeups {
    async fn next(&mut self) -> Option<Wakeup> {
        match self.0.recv().await {
            Ok(w) => Some(w),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Wakeup::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
