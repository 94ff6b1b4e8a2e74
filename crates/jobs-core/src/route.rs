//! Routing by use case: one [`JobStore`] over a default store and stores of their own for some
//! use cases ([`RoutedStore`]).
//!
//! Every invariant of the platform — caps, quotas, the EDF pick, the fair share, rate limits,
//! pauses, cron slots — is scoped to one use case, so a use case can live in a store (a database,
//! a cluster) of its own. A `RoutedStore` sends each call to the store that holds what the call
//! is about, and merges the answers of the calls that are about every use case. It is an
//! ordinary [`JobStore`]: the scheduler, the worker, the API and the conformance suite use it
//! unchanged.
//!
//! ## How each call is routed
//!
//! | calls | routed to |
//! |---|---|
//! | `enqueue`, `lease_due`, `rate_wait`, `record_drain_rate`, `pause`, `resume`, `create_schedule` | the store of the use case the call names |
//! | `enqueue_many` | the store of its jobs' use cases; a batch whose jobs live in different stores is **refused** ([`ValidationError::BatchSpansStores`]) — all or nothing holds within one store only |
//! | `list` | the use case's store when the filter names one; otherwise every store, merged by id (see below) |
//! | `get`, `cancel`, `retry`, `queue_position`, `claim`, `heartbeat`, `complete`, `fail`, `finish_cancelled`, `release` and their batch forms, `return_dispatched` | the store that holds the job (see *Calls by job id*); `return_dispatched` goes on in the other stores when one fails |
//! | `counts`, `backlog`, `schedules` | every store, merged (counts summed; a store's backlog only for the use cases routed to it, the jobs its picks lease; a schedule name found in two stores listed once, from its use case's store); a store that fails is logged and left out of the answer (it fails only when every store fails), so one store's outage does not stop the scheduler's cron and backlog for the others |
//! | `activity`, `pauses`, `rate_limits` | every store, merged (a store's pauses and limits only for the use cases routed to it, the ones its picks apply) |
//! | `ping`, `ping_each`, `reap_expired`, `prune`, `subscribe` | every store (`ping` needs all of them; `ping_each`, which `/readyz` reads, answers store by store and readiness is the default store's; maintenance goes on in the stores that answer; wake-ups of every store arrive on one stream) |
//! | `delete_schedule` | every store (deleted where a store answered is the answer; a failure only when no store that answered had it) |
//! | `set_rate_limits`, `sync_config_schedules` | every store, each with the limits / schedules of its own use cases (an empty set clears the others; a configured schedule's name is freed in the other stores) |
//! | `get_schedule`, `update_schedule`, `fire` | the store that holds the schedule, found by name (a schedule cannot be updated to a use case of another store) |
//!
//! ## Calls by job id
//!
//! A job id does not name its use case, and the worker's fenced writes carry only the id and the
//! lease token. A job lives in exactly one store for its whole life (its use case never changes),
//! so the routed store asks the stores in turn — the store where it last found a job first (a
//! worker of one use case finds its jobs there at once), then the others from the default store
//! on — until one holds the job: a miss is one primary-key probe that changes nothing (a fenced
//! write on a store without the job is refused as *lease lost*; a cancel or a retry is *not
//! found*). It remembers
//! where it found or put a job (a bounded map of recent job ids, see
//! [`with_hint_capacity`](RoutedStore::with_hint_capacity)), so the calls that follow — the
//! worker's heartbeats and outcome after its claim, the scheduler's returns after its pick, a
//! retry after the read that resolves its quota — go straight to the right store. That map only
//! saves probes: an answer never depends on it (a wrong use-case hint aside: its writes answer
//! *lease lost*), and a job can be completed once only because the
//! store holding it fences every write.
//!
//! The worker knows each job's use case from its dispatch message and says so first
//! ([`LeaseStore::hint_use_case`]): its claim, heartbeats and outcome then go straight to that
//! use case's store, without probing — a store that is down or slow elsewhere neither delays
//! them nor turns a stale message into a store failure.
//!
//! A store that fails while probed does not hide a job another store holds: the probe goes on,
//! and the failure is the answer only when no store has the job (it might be in the one that
//! failed).
//!
//! ## Listing across stores
//!
//! Job ids are UUID v7, so "newest first" is one order across stores. Without a use case in the
//! filter, each store is asked for the same page; the answers are merged by id, descending, and
//! cut where every store has looked: at the highest `next` cursor among the stores that have more
//! (below it a store has not examined yet), at the page size, and at the byte budget (counted as
//! compact JSON). The cursor of the merged page is where it was cut, so walking the pages returns
//! each matching job exactly once. With a scan bound each store examines at most `max_scanned`
//! candidates per call (so one call examines at most that many per store).
//!
//! ## Not available across stores
//!
//! - **Atomicity across use cases of different stores**: one batch, one caller transaction
//!   (`jobs_postgres::PgRoutes::enqueue_in`), one schedule moved to a use case of another store
//!   (refused: delete it and create it again).
//! - **Idempotency keys** are unique per tenant within a store: the same key used for use cases
//!   in two stores makes two jobs.
//! - **Moving a use case** to another store leaves its jobs where they are: its unfinished jobs
//!   in the old store are no longer picked. Drain it first (pause it, let its jobs finish), then
//!   move it; [`RoutedStore::misplaced`] finds jobs left behind.
//! - `reap_expired` and `prune` take their `limit` per store, and a store that fails is logged
//!   and skipped, so one store's outage does not stop the others' maintenance (nor the
//!   scheduler's tick, which reaps first); they fail only when every store fails.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use crate::activity::{Activity, ActivityQuery, MinuteActivity};
use crate::backlog::{Backlog, BacklogGrouping, BacklogRow};
use crate::enqueue::ValidationError;
use crate::job::{Dispatch, Enqueued, Job, JobId, LeaseToken, NewJob};
use crate::pause::{Pause, PauseScope};
use crate::predict::QueuePosition;
use crate::rate::RateLimit;
use crate::schedule::{Schedule, ScheduleDraft};
use crate::schedule_store::{Fired, ScheduleStore};
use crate::status::JobStatus;
use crate::store::{
    ApiStore, ChangeError, DispatchStore, EnqueueError, Failure, Heartbeat, JobFilter, JobStore,
    LeaseError, LeaseStore, MaintenanceStore, Page, PageRequest, PickRequest, ReapReport,
    StatusCount, StoreError, Wakeup, WakeupStream,
};

/// How many recently seen job ids (and schedule names) a [`RoutedStore`] remembers the store of,
/// per generation (two generations are kept: up to twice this many).
pub const DEFAULT_HINT_CAPACITY: usize = 65_536;

/// Longest wait between two attempts to subscribe to a store's wake-ups again.
const MAX_SUBSCRIBE_BACKOFF: Duration = Duration::from_secs(30);

/// A [`JobStore`] over a default store and per-use-case stores: see the [module docs](self).
pub struct RoutedStore {
    /// The distinct stores; index 0 is the default store.
    stores: Vec<Arc<dyn JobStore>>,
    /// Use case → index in `stores` (use cases not listed live in the default store).
    routes: BTreeMap<String, usize>,
    /// Where recently seen jobs live (authoritative: a job never moves).
    jobs: Hints<JobId>,
    /// Where recently seen schedules live (a first guess: a schedule may be re-created elsewhere).
    schedules: Hints<String>,
    /// The store the last probe found a job in: probed first (a worker of one use case finds
    /// its jobs there at the first try).
    last_found: AtomicUsize,
}

impl fmt::Debug for RoutedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedStore")
            .field("stores", &self.stores.len())
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// Unfinished jobs found in a store their use case is no longer routed to
/// ([`RoutedStore::misplaced`]): no pick will ever lease them there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    /// The store that holds them ([`RoutedStore::label`]).
    pub store: String,
    /// The store their use case is routed to now.
    pub routed_to: String,
    /// Use case, status and count.
    pub count: StatusCount,
}

/// The data pointer of a store, to tell stores apart whatever trait object points at them.
fn same_store(a: &Arc<dyn JobStore>, b: &Arc<dyn JobStore>) -> bool {
    std::ptr::eq(Arc::as_ptr(a).cast::<()>(), Arc::as_ptr(b).cast::<()>())
}

impl RoutedStore {
    /// A routed store whose every use case lives in `default` until [`with_route`] says
    /// otherwise.
    ///
    /// [`with_route`]: RoutedStore::with_route
    pub fn new(default: Arc<dyn JobStore>) -> Self {
        RoutedStore {
            stores: vec![default],
            routes: BTreeMap::new(),
            jobs: Hints::new(DEFAULT_HINT_CAPACITY),
            schedules: Hints::new(DEFAULT_HINT_CAPACITY),
            last_found: AtomicUsize::new(0),
        }
    }

    /// Keeps `use_case` in `store`. The same store (the same `Arc`) given for several use
    /// cases, or the default store given again, is one store: its calls are not repeated and
    /// its answers not counted twice. Use case names are matched exactly (the configured,
    /// lower-case names jobs carry).
    pub fn with_route(mut self, use_case: impl Into<String>, store: Arc<dyn JobStore>) -> Self {
        let index = match self.stores.iter().position(|s| same_store(s, &store)) {
            Some(i) => i,
            None => {
                self.stores.push(store);
                self.stores.len() - 1
            }
        };
        self.routes.insert(use_case.into(), index);
        self
    }

    /// Remembers the store of at most `capacity` (times two) recently seen job ids and schedule
    /// names; `0` remembers none, so every call by id probes (for tests of the probing).
    pub fn with_hint_capacity(mut self, capacity: usize) -> Self {
        self.jobs = Hints::new(capacity);
        self.schedules = Hints::new(capacity);
        self
    }

    /// How many distinct stores there are (the default one included).
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// The store `use_case` lives in.
    pub fn store_for(&self, use_case: &str) -> &Arc<dyn JobStore> {
        &self.stores[self.owner(use_case)]
    }

    /// The distinct stores, the default one first.
    pub fn stores(&self) -> &[Arc<dyn JobStore>] {
        &self.stores
    }

    /// A name of the store at `index` for logs and errors — never a connection string: "the
    /// default store", or "the store of use case 'a'" / "… of use cases 'a', 'b'".
    pub fn label(&self, index: usize) -> String {
        if index == 0 {
            return "the default store".to_owned();
        }
        let names: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, i)| **i == index)
            .map(|(uc, _)| format!("'{uc}'"))
            .collect();
        match names.len() {
            1 => format!("the store of use case {}", names[0]),
            _ => format!("the store of use cases {}", names.join(", ")),
        }
    }

    /// Unfinished jobs that sit in a store their use case is not routed to (the use case was
    /// moved after they were enqueued): no pick leases them there. One
    /// [`counts`](ApiStore::counts) per store; the scheduler logs them at start.
    pub async fn misplaced(&self) -> Result<Vec<Misplaced>, StoreError> {
        let mut out = Vec::new();
        for (i, counts) in self
            .each_tolerant_indexed("counts", |s| async move { s.counts().await })
            .await?
        {
            for count in counts {
                let owner = self.owner(&count.use_case);
                if owner != i && count.status.counts_against_quota() && count.count > 0 {
                    out.push(Misplaced {
                        store: self.label(i),
                        routed_to: self.label(owner),
                        count,
                    });
                }
            }
        }
        Ok(out)
    }

    fn owner(&self, use_case: &str) -> usize {
        self.routes.get(use_case).copied().unwrap_or(0)
    }

    /// Runs `op` on every store at once; the answers in store order, or the first failure
    /// (named with its store).
    async fn each<T, F, Fut>(&self, op: F) -> Result<Vec<(usize, T)>, StoreError>
    where
        F: Fn(Arc<dyn JobStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let results = join_all(self.stores.iter().map(|s| op(Arc::clone(s)))).await;
        let mut out = Vec::with_capacity(results.len());
        for (i, r) in results.into_iter().enumerate() {
            out.push((i, r.map_err(|e| labelled(e, &self.label(i)))?));
        }
        Ok(out)
    }

    /// The order in which to look for a job not remembered: the store the last probe found one
    /// in, then the others from the default store on.
    fn probe_order(&self) -> Vec<usize> {
        let first = self.last_found.load(Ordering::Relaxed) % self.stores.len();
        std::iter::once(first)
            .chain((0..self.stores.len()).filter(|i| *i != first))
            .collect()
    }

    /// Remembers that job `id` is in store `i`.
    fn found(&self, id: JobId, i: usize) {
        self.jobs.put(id, i);
        self.last_found.store(i, Ordering::Relaxed);
    }

    /// Runs `op` on every store at once; the answers of the stores that answered (a failure is
    /// logged, naming the store), or the first failure when every store failed.
    async fn each_tolerant<T, F, Fut>(&self, what: &str, op: F) -> Result<Vec<T>, StoreError>
    where
        F: Fn(Arc<dyn JobStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        Ok(self
            .each_tolerant_indexed(what, op)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// [`each_tolerant`](Self::each_tolerant), each answer with the index of its store.
    async fn each_tolerant_indexed<T, F, Fut>(
        &self,
        what: &str,
        op: F,
    ) -> Result<Vec<(usize, T)>, StoreError>
    where
        F: Fn(Arc<dyn JobStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let results = join_all(self.stores.iter().map(|s| op(Arc::clone(s)))).await;
        let (mut out, mut failure) = (Vec::with_capacity(results.len()), None);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => out.push((i, v)),
                Err(e) => {
                    let e = labelled(e, &self.label(i));
                    tracing::warn!(error = %e, "{what} failed in one store; the answer leaves it out");
                    failure.get_or_insert(e);
                }
            }
        }
        match (out.is_empty(), failure) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// Runs `op` on the store that holds job `id`: the remembered one, else each store in order
    /// until one holds it (see the module docs).
    async fn by_id<T, E, F, Fut>(
        &self,
        id: JobId,
        classify: fn(&Result<T, E>) -> Found,
        op: F,
    ) -> Result<T, E>
    where
        F: Fn(Arc<dyn JobStore>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(i) = self.jobs.get(&id) {
            return op(Arc::clone(&self.stores[i])).await;
        }
        let mut answer: Option<(Found, Result<T, E>)> = None;
        for i in self.probe_order() {
            let result = op(Arc::clone(&self.stores[i])).await;
            match classify(&result) {
                Found::Here => {
                    self.found(id, i);
                    return result;
                }
                // The first failure wins over any miss: the job may be in that store.
                found => {
                    let replace = match &answer {
                        None => true,
                        Some((kept, _)) => *kept == Found::Missing && found == Found::Failed,
                    };
                    if replace {
                        answer = Some((found, result));
                    }
                }
            }
        }
        match answer {
            Some((_, result)) => result,
            // There is always a default store, so the loop ran: not reached.
            None => op(Arc::clone(&self.stores[0])).await,
        }
    }

    /// The index of the store that holds job `id`, if any does (reading it where not
    /// remembered).
    async fn locate(&self, id: JobId) -> Result<Option<usize>, StoreError> {
        if let Some(i) = self.jobs.get(&id) {
            return Ok(Some(i));
        }
        let mut failure = None;
        for i in self.probe_order() {
            match self.stores[i].get(id).await {
                Ok(Some(_)) => {
                    self.found(id, i);
                    return Ok(Some(i));
                }
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(None), Err)
    }

    /// A fenced batch (claims, completions): each entry goes to the store that holds its job
    /// (remembered, else probed in order), one call per store and round; results in input order.
    async fn lease_many<T, F, Fut>(
        &self,
        entries: Vec<(JobId, LeaseToken)>,
        op: F,
    ) -> Vec<Result<T, LeaseError>>
    where
        F: Fn(Arc<dyn JobStore>, Vec<(JobId, LeaseToken)>) -> Fut,
        Fut: Future<Output = Vec<Result<T, LeaseError>>>,
    {
        let mut results: Vec<Option<Result<T, LeaseError>>> =
            entries.iter().map(|_| None).collect();
        let mut hinted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut remaining = Vec::new();
        for (k, (id, _)) in entries.iter().enumerate() {
            match self.jobs.get(id) {
                Some(i) => hinted.entry(i).or_default().push(k),
                None => remaining.push(k),
            }
        }
        let mut failures: Vec<Option<LeaseError>> = entries.iter().map(|_| None).collect();
        for (i, ks) in hinted {
            let batch = ks.iter().map(|k| entries[*k]).collect();
            let mut out = op(Arc::clone(&self.stores[i]), batch).await.into_iter();
            for k in ks {
                match out.next() {
                    Some(r) => results[k] = Some(r),
                    None => failures[k] = Some(short_answer()),
                }
            }
        }
        for i in self.probe_order() {
            if remaining.is_empty() {
                break;
            }
            let batch = remaining.iter().map(|k| entries[*k]).collect();
            let out = op(Arc::clone(&self.stores[i]), batch).await;
            let mut missing = Vec::new();
            let mut out = out.into_iter();
            for k in remaining {
                match out.next() {
                    Some(Ok(written)) => {
                        self.found(entries[k].0, i);
                        results[k] = Some(Ok(written));
                    }
                    Some(Err(LeaseError::LeaseLost(_))) => missing.push(k),
                    Some(Err(e)) => {
                        failures[k].get_or_insert(e);
                        missing.push(k);
                    }
                    None => {
                        failures[k].get_or_insert(short_answer());
                        missing.push(k);
                    }
                }
            }
            remaining = missing;
        }
        results
            .into_iter()
            .zip(failures)
            .zip(&entries)
            .map(|((result, failure), (id, _))| {
                result.unwrap_or_else(|| Err(failure.unwrap_or(LeaseError::LeaseLost(*id))))
            })
            .collect()
    }

    /// The index of the store that holds schedule `name`, if any: the remembered one first,
    /// then the others in order.
    async fn schedule_home(&self, name: &str) -> Result<Option<usize>, StoreError> {
        let hint = self.schedules.get(&name.to_owned());
        let order = hint
            .into_iter()
            .chain((0..self.stores.len()).filter(|i| Some(*i) != hint));
        let mut failure = None;
        for i in order {
            match self.stores[i].get_schedule(name).await {
                Ok(Some(_)) => {
                    self.schedules.put(name.to_owned(), i);
                    return Ok(Some(i));
                }
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(labelled(e, &self.label(i)));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Refuses a schedule write whose jobs' use case lives in another store than the schedule:
    /// firing must advance the schedule and insert its jobs in one transaction.
    fn schedule_store_mismatch(&self, name: &str, home: usize, use_case: &str) -> StoreError {
        StoreError::Unsupported(format!(
            "schedule '{name}' is kept in {}, but its use case '{use_case}' is kept in {}: a \
             schedule cannot move between stores (its slot and its job are written in one \
             transaction); delete it and create it again",
            self.label(home),
            self.label(self.owner(use_case))
        ))
    }
}

/// What one store's answer to a call by id says about where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The job is in this store (the answer is final).
    Here,
    /// Not in this store (or gone).
    Missing,
    /// The store failed: the job may or may not be in it.
    Failed,
}

fn found_job(r: &Result<Option<Job>, StoreError>) -> Found {
    match r {
        Ok(Some(_)) => Found::Here,
        Ok(None) => Found::Missing,
        Err(_) => Found::Failed,
    }
}

fn found_change(r: &Result<Job, ChangeError>) -> Found {
    match r {
        Ok(_) | Err(ChangeError::Illegal(_) | ChangeError::QuotaExceeded { .. }) => Found::Here,
        Err(ChangeError::NotFound(_)) => Found::Missing,
        Err(ChangeError::Store(_)) => Found::Failed,
    }
}

fn found_lease<T>(r: &Result<T, LeaseError>) -> Found {
    match r {
        Ok(_) => Found::Here,
        Err(LeaseError::LeaseLost(_)) => Found::Missing,
        Err(LeaseError::Store(_)) => Found::Failed,
    }
}

/// A batch answered with fewer results than entries (a store bug): the entries left without one.
fn short_answer() -> LeaseError {
    LeaseError::Store(StoreError::Internal(
        "the store answered fewer results than entries".to_owned(),
    ))
}

/// `e` with the store it came from in its message (its kind, hence its retryability, kept).
fn labelled(e: StoreError, label: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{label}: {m}")),
        StoreError::Conflict(m) => StoreError::Conflict(format!("{label}: {m}")),
        StoreError::Unsupported(m) => StoreError::Unsupported(format!("{label}: {m}")),
        StoreError::Internal(m) => StoreError::Internal(format!("{label}: {m}")),
        StoreError::Timeout(m) => StoreError::Timeout(format!("{label}: {m}")),
    }
}

/// The length of a payload as compact JSON (the byte budget of a merged page).
fn json_len(value: &serde_json::Value) -> u64 {
    serde_json::to_vec(value).map_or(0, |v| v.len() as u64)
}

/// Merges the pages the stores answered for the same request (see the module docs).
fn merge_pages(pages: Vec<Page>, page: PageRequest) -> Page {
    // Below the highest cursor of a store with more, that store has not looked yet.
    let cut: Option<JobId> = pages.iter().filter_map(|p| p.next).max();
    let mut jobs: Vec<Job> = pages
        .into_iter()
        .flat_map(|p| p.jobs)
        .filter(|j| cut.is_none_or(|c| j.id >= c))
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    let limit = page.limit.max(1) as usize;
    let mut bytes = 0u64;
    let mut taken = 0usize;
    for job in &jobs {
        if taken == limit {
            break;
        }
        if page.include_payload {
            let size = json_len(&job.payload);
            if page
                .max_bytes
                .is_some_and(|max| taken > 0 && bytes.saturating_add(size) > max)
            {
                break;
            }
            bytes = bytes.saturating_add(size);
        }
        taken += 1;
    }
    let shortened = taken < jobs.len();
    jobs.truncate(taken);
    let next = match shortened {
        true => jobs.last().map(|j| j.id),
        false => cut,
    };
    Page { jobs, next }
}

#[async_trait]
impl ApiStore for RoutedStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let i = self.owner(&job.use_case);
        let out = self.stores[i].enqueue(job).await?;
        self.jobs.put(out.job.id, i);
        Ok(out)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        let mut home: Option<(usize, &str)> = None;
        for job in &jobs {
            let i = self.owner(&job.use_case);
            match home {
                None => home = Some((i, &job.use_case)),
                Some((h, first)) if h != i => {
                    return Err(EnqueueError::Invalid(ValidationError::BatchSpansStores {
                        first: first.to_owned(),
                        second: job.use_case.clone(),
                    }))
                }
                Some(_) => {}
            }
        }
        let i = home.map_or(0, |(i, _)| i);
        let out = self.stores[i].enqueue_many(jobs).await?;
        for e in &out {
            self.jobs.put(e.job.id, i);
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.by_id(id, found_job, |s| async move { s.get(id).await })
            .await
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        if let Some(use_case) = &filter.use_case {
            return self.store_for(use_case).list(filter, page).await;
        }
        if self.stores.len() == 1 {
            return self.stores[0].list(filter, page).await;
        }
        let pages = self
            .each(|s| async move { s.list(filter, page).await })
            .await?;
        Ok(merge_pages(
            pages.into_iter().map(|(_, p)| p).collect(),
            page,
        ))
    }

    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        self.by_id(id, found_change, |s| async move { s.cancel(id).await })
            .await
    }

    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        self.by_id(
            id,
            found_change,
            |s| async move { s.retry(id, quota).await },
        )
        .await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut sum: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for counts in self
            .each_tolerant("counts", |s| async move { s.counts().await })
            .await?
        {
            for c in counts {
                *sum.entry((c.use_case, c.status)).or_default() += c.count;
            }
        }
        Ok(sum
            .into_iter()
            .map(|((use_case, status), count)| StatusCount {
                use_case,
                status,
                count,
            })
            .collect())
    }

    async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError> {
        let mut at: Option<DateTime<Utc>> = None;
        let mut rows: BTreeMap<(String, Option<String>), BacklogRow> = BTreeMap::new();
        for (i, backlog) in self
            .each_tolerant_indexed("backlog", |s| async move { s.backlog(grouping).await })
            .await?
        {
            at = Some(at.map_or(backlog.at, |a| a.max(backlog.at)));
            // Jobs left in a store their use case no longer routes to are never picked there:
            // not the use case's backlog (they would inflate its scaling signal for good).
            for row in backlog
                .rows
                .into_iter()
                .filter(|r| self.owner(&r.use_case) == i)
            {
                rows.entry((row.use_case.clone(), row.tenant_id.clone()))
                    .and_modify(|r| {
                        r.due = r.due.saturating_add(row.due);
                        r.oldest_run_at = r.oldest_run_at.min(row.oldest_run_at);
                    })
                    .or_insert(row);
            }
        }
        Ok(Backlog {
            at: at.unwrap_or_else(Utc::now),
            rows: rows.into_values().collect(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.each(|s| async move { s.ping().await })
            .await
            .map(|_| ())
    }

    /// Every store at once, each bounded by `timeout`, the default store first: readiness is
    /// the default store's (the one that holds the scheduler's leader lock); a use case's store
    /// that is down is reported without making the whole process unready.
    async fn ping_each(&self, timeout: Duration) -> Vec<(String, Result<(), StoreError>)> {
        join_all(self.stores.iter().enumerate().map(|(i, s)| async move {
            let label = self.label(i);
            let answer = crate::store::ping_within(s.ping(), timeout)
                .await
                .map_err(|e| labelled(e, &label));
            (label, answer)
        }))
        .await
    }

    async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError> {
        self.store_for(&scope.use_case).pause(scope).await
    }

    async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError> {
        self.store_for(&scope.use_case).resume(scope).await
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        let mut out: Vec<Pause> = Vec::new();
        for (i, pauses) in self.each(|s| async move { s.pauses().await }).await? {
            out.extend(
                pauses
                    .into_iter()
                    .filter(|p| self.owner(&p.scope.use_case) == i),
            );
        }
        out.sort_by(|a, b| a.scope.cmp(&b.scope));
        Ok(out)
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError> {
        let mut since: Option<DateTime<Utc>> = None;
        let mut counts: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        let mut minutes: BTreeMap<(String, DateTime<Utc>), MinuteActivity> = BTreeMap::new();
        let mut truncated = false;
        for (_, a) in self
            .each(|s| async move { s.activity(query).await })
            .await?
        {
            since = Some(since.map_or(a.since, |s| s.max(a.since)));
            truncated |= a.truncated;
            for c in a.counts {
                *counts.entry((c.use_case, c.status)).or_default() += c.count;
            }
            for (key, m) in a.minutes {
                let sum = minutes.entry(key).or_default();
                sum.succeeded += m.succeeded;
                sum.dead += m.dead;
                sum.cancelled += m.cancelled;
                sum.expired += m.expired;
                sum.deadlines_met += m.deadlines_met;
                sum.deadlines_missed += m.deadlines_missed;
            }
        }
        let since = since.unwrap_or_else(Utc::now);
        minutes.retain(|(_, minute), _| *minute >= since);
        Ok(Activity {
            since,
            counts: counts
                .into_iter()
                .map(|((use_case, status), count)| StatusCount {
                    use_case,
                    status,
                    count,
                })
                .collect(),
            minutes,
            truncated,
        })
    }

    async fn queue_position(
        &self,
        id: JobId,
        bound: u32,
    ) -> Result<Option<QueuePosition>, StoreError> {
        match self.locate(id).await? {
            Some(i) => self.stores[i].queue_position(id, bound).await,
            None => Ok(None),
        }
    }
}

#[async_trait]
impl DispatchStore for RoutedStore {
    async fn lease_due(
        &self,
        use_case: &str,
        pick: PickRequest,
    ) -> Result<Vec<Dispatch>, StoreError> {
        let i = self.owner(use_case);
        let leased = self.stores[i].lease_due(use_case, pick).await?;
        for d in &leased {
            self.jobs.put(d.job_id, i);
        }
        Ok(leased)
    }

    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        // Remembered jobs go to their store; the others to every store, each of which skips
        // the jobs it does not hold (the write is fenced by the token).
        let mut batches: Vec<Vec<(JobId, LeaseToken)>> = vec![Vec::new(); self.stores.len()];
        for (id, token) in dispatches {
            match self.jobs.get(&id) {
                Some(i) => batches[i].push((id, token)),
                None => batches.iter_mut().for_each(|b| b.push((id, token))),
            }
        }
        // A store that fails does not keep the others from taking their jobs back (the failing
        // one's are returned by its reaper when their dispatch lease expires).
        let (mut returned, mut answered, mut failure) = (0, false, None);
        for (i, batch) in batches.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            match self.stores[i].return_dispatched(batch).await {
                Ok(n) => {
                    returned += n;
                    answered = true;
                }
                Err(e) => {
                    let e = labelled(e, &self.label(i));
                    tracing::warn!(error = %e, "return_dispatched failed in one store; the others went ahead");
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) if !answered => Err(e),
            _ => Ok(returned),
        }
    }

    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        let (tx, rx) = mpsc::channel(256);
        let first = join_all(self.stores.iter().map(|s| s.subscribe())).await;
        let mut tasks = Vec::with_capacity(first.len());
        for (i, result) in first.into_iter().enumerate() {
            let stream = match result {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::warn!(store = %self.label(i), error = %e, "cannot subscribe to the store's wake-ups yet; retrying (its jobs start at the tick meanwhile)");
                    None
                }
            };
            tasks.push(tokio::spawn(forward_wakeups(
                Arc::clone(&self.stores[i]),
                self.label(i),
                stream,
                tx.clone(),
            )));
        }
        Ok(Box::new(MergedWakeups { rx, tasks }))
    }

    async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        let mut failure = None;
        for (i, store) in self.stores.iter().enumerate() {
            let own: Vec<RateLimit> = limits
                .iter()
                .filter(|l| self.owner(&l.use_case) == i)
                .cloned()
                .collect();
            if let Err(e) = store.set_rate_limits(&own).await {
                failure.get_or_insert(labelled(e, &self.label(i)));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError> {
        let mut out: Vec<RateLimit> = Vec::new();
        for (i, limits) in self.each(|s| async move { s.rate_limits().await }).await? {
            out.extend(limits.into_iter().filter(|l| self.owner(&l.use_case) == i));
        }
        out.sort_by(|a, b| (&a.use_case, &a.tenant_id).cmp(&(&b.use_case, &b.tenant_id)));
        Ok(out)
    }

    async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError> {
        self.store_for(use_case).rate_wait(use_case).await
    }

    async fn record_drain_rate(&self, use_case: &str, per_second: f64) -> Result<(), StoreError> {
        self.store_for(use_case)
            .record_drain_rate(use_case, per_second)
            .await
    }
}

#[async_trait]
impl LeaseStore for RoutedStore {
    /// Remembers that job `id` lives in the store of `use_case` (unless its store is already
    /// known): its claim, heartbeats and outcome go there without probing, so another store
    /// that is down or slow neither delays them nor turns a stale message into a failure.
    fn hint_use_case(&self, id: JobId, use_case: &str) {
        if self.stores.len() > 1 && self.jobs.get(&id).is_none() {
            self.jobs.put(id, self.owner(use_case));
        }
    }

    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        self.by_id(id, found_lease, |s| async move {
            s.claim(id, token, lease).await
        })
        .await
    }

    async fn claim_many(
        &self,
        claims: Vec<(JobId, LeaseToken)>,
        lease: Duration,
    ) -> Vec<Result<Job, LeaseError>> {
        self.lease_many(claims, |s, batch| async move {
            s.claim_many(batch, lease).await
        })
        .await
    }

    async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>) -> Vec<Result<(), LeaseError>> {
        self.lease_many(done, |s, batch| async move { s.complete_many(batch).await })
            .await
    }

    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        self.by_id(id, found_lease, |s| async move {
            s.heartbeat(id, token, lease).await
        })
        .await
    }

    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.by_id(
            id,
            found_lease,
            |s| async move { s.complete(id, token).await },
        )
        .await
    }

    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        let failure = &failure;
        self.by_id(id, found_lease, |s| async move {
            s.fail(id, token, failure.clone()).await
        })
        .await
    }

    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.by_id(id, found_lease, |s| async move {
            s.finish_cancelled(id, token).await
        })
        .await
    }

    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.by_id(
            id,
            found_lease,
            |s| async move { s.release(id, token).await },
        )
        .await
    }
}

#[async_trait]
impl MaintenanceStore for RoutedStore {
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        let reports = self
            .each_tolerant(
                "reap_expired",
                |s| async move { s.reap_expired(limit).await },
            )
            .await?;
        let mut total = ReapReport::default();
        for r in reports {
            total.dispatch_expired += r.dispatch_expired;
            total.run_expired_retry += r.run_expired_retry;
            total.run_expired_dead += r.run_expired_dead;
            total.run_expired_cancelled += r.run_expired_cancelled;
        }
        Ok(total)
    }

    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        Ok(self
            .each_tolerant("prune", |s| async move { s.prune(older_than, limit).await })
            .await?
            .into_iter()
            .sum())
    }
}

#[async_trait]
impl ScheduleStore for RoutedStore {
    async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        // Names are unique across the stores.
        if self.schedule_home(&draft.name).await?.is_some() {
            return Ok(None);
        }
        let i = self.owner(&draft.template.use_case);
        let name = draft.name.clone();
        let created = self.stores[i].create_schedule(draft).await?;
        if created.is_some() {
            self.schedules.put(name, i);
        }
        Ok(created)
    }

    async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        let Some(home) = self.schedule_home(&draft.name).await? else {
            return Ok(None);
        };
        if self.owner(&draft.template.use_case) != home {
            return Err(self.schedule_store_mismatch(&draft.name, home, &draft.template.use_case));
        }
        self.stores[home].update_schedule(draft).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        // Deleted in a store that answered is deleted (a name lives in one store); a failure is
        // the answer only when no store that answered had the schedule.
        let results = join_all(
            self.stores
                .iter()
                .map(|s| async move { s.delete_schedule(name).await }),
        )
        .await;
        let (mut deleted, mut failure) = (false, None);
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(d) => deleted |= d,
                Err(e) => {
                    failure.get_or_insert(labelled(e, &self.label(i)));
                }
            }
        }
        match failure {
            Some(e) if !deleted => Err(e),
            Some(e) => {
                tracing::warn!(schedule = name, error = %e, "schedule deleted; another store did not answer");
                Ok(true)
            }
            None => Ok(deleted),
        }
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        match self.schedule_home(name).await? {
            Some(i) => self.stores[i].get_schedule(name).await,
            None => Ok(None),
        }
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        // A name is one schedule: kept in two stores (created before its use case moved), the
        // one in the store of its jobs' use case wins (else the first store's); the other is
        // logged, not listed, and so not fired (its slot and its job could not be written in one
        // transaction anyway).
        let mut by_name: BTreeMap<String, (usize, Schedule)> = BTreeMap::new();
        for (i, schedules) in self
            .each_tolerant_indexed("schedules", |s| async move { s.schedules().await })
            .await?
        {
            for s in schedules {
                let home = self.owner(&s.template.use_case) == i;
                match by_name.get(&s.name) {
                    Some((kept, other))
                        if home && self.owner(&other.template.use_case) != *kept =>
                    {
                        tracing::warn!(schedule = %s.name, kept = %self.label(i), ignored = %self.label(*kept), "a schedule of this name is in two stores; the one in its use case's store is used");
                        by_name.insert(s.name.clone(), (i, s));
                    }
                    Some((kept, _)) => {
                        tracing::warn!(schedule = %s.name, kept = %self.label(*kept), ignored = %self.label(i), "a schedule of this name is in two stores; the one in its use case's store is used");
                    }
                    None => {
                        by_name.insert(s.name.clone(), (i, s));
                    }
                }
            }
        }
        Ok(by_name
            .into_values()
            .map(|(i, s)| {
                self.schedules.put(s.name.clone(), i);
                s
            })
            .collect())
    }

    async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError> {
        let mut per_store: Vec<Vec<ScheduleDraft>> = vec![Vec::new(); self.stores.len()];
        for draft in drafts {
            per_store[self.owner(&draft.template.use_case)].push(draft);
        }
        let mut failure = None;
        // The configuration wins a name in every store: a schedule of that name kept in another
        // store (created through the API, or configured before its use case moved) goes.
        for (i, store) in self.stores.iter().enumerate() {
            for (j, drafts) in per_store.iter().enumerate() {
                if i == j {
                    continue;
                }
                for draft in drafts {
                    if let Err(e) = store.delete_schedule(&draft.name).await {
                        failure.get_or_insert(labelled(e, &self.label(i)));
                    }
                }
            }
        }
        // Each store makes its configured schedules exactly its own drafts.
        for (i, drafts) in per_store.into_iter().enumerate() {
            if let Err(e) = self.stores[i].sync_config_schedules(drafts).await {
                failure.get_or_insert(labelled(e, &self.label(i)));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn fire(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        jobs: Vec<NewJob>,
        next: DateTime<Utc>,
    ) -> Result<Fired, StoreError> {
        let Some(home) = self.schedule_home(name).await? else {
            // Deleted meanwhile: nothing to fire.
            return Ok(Fired::default());
        };
        if let Some(job) = jobs.iter().find(|j| self.owner(&j.use_case) != home) {
            return Err(self.schedule_store_mismatch(name, home, &job.use_case));
        }
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
        let fired = self.stores[home].fire(name, expected, jobs, next).await?;
        for id in ids {
            self.jobs.put(id, home);
        }
        Ok(fired)
    }
}

/// The wake-ups of every store on one stream: a task per store forwards its stream, and
/// subscribes again (with backoff, then a [`Wakeup::Resync`]) when it ends or could not start.
struct MergedWakeups {
    rx: mpsc::Receiver<Wakeup>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MergedWakeups {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl WakeupStream for MergedWakeups {
    /// The next wake-up of any store, with those already queued behind it folded in
    /// ([`Wakeup::fold`]: a `Resync` among them wins, then a `JobDue`).
    async fn next(&mut self) -> Option<Wakeup> {
        let mut wakeup = self.rx.recv().await?;
        while let Ok(more) = self.rx.try_recv() {
            wakeup = wakeup.fold(more);
        }
        Some(wakeup)
    }
}

async fn forward_wakeups(
    store: Arc<dyn JobStore>,
    label: String,
    mut stream: Option<Box<dyn WakeupStream>>,
    tx: mpsc::Sender<Wakeup>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = stream.is_none();
    loop {
        let mut current = match stream.take() {
            Some(s) => s,
            None => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_SUBSCRIBE_BACKOFF);
                match store.subscribe().await {
                    // Wake-ups were missed meanwhile: the scheduler looks at everything.
                    Ok(s) => {
                        tracing::info!(store = %label, "subscribed to the store's wake-ups again");
                        if let Err(mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send(Wakeup::Resync)
                        {
                            return;
                        }
                        s
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(store = %label, error = %e, "cannot subscribe to the store's wake-ups; retrying");
                            warned = true;
                        } else {
                            tracing::debug!(store = %label, error = %e, "cannot subscribe to the store's wake-ups; retrying");
                        }
                        continue;
                    }
                }
            }
        };
        while let Some(w) = current.next().await {
            backoff = Duration::from_millis(100);
            if !w.queue_into(&tx).await {
                return;
            }
        }
        warned = false;
        tracing::warn!(store = %label, "the store's wake-up stream ended; subscribing again");
    }
}

/// A bounded map from recently seen keys to the index of their store: two generations of up to
/// `capacity` entries each; when the current one is full it becomes the previous one (and the
/// previous one is dropped).
struct Hints<K> {
    capacity: usize,
    maps: Mutex<[HashMap<K, usize>; 2]>,
}

impl<K: Hash + Eq> Hints<K> {
    fn new(capacity: usize) -> Self {
        Hints {
            capacity,
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, [HashMap<K, usize>; 2]> {
        // A panic while holding the lock leaves the maps consistent (single inserts).
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &K) -> Option<usize> {
        let maps = self.lock();
        maps[0].get(key).or_else(|| maps[1].get(key)).copied()
    }

    fn put(&self, key: K, index: usize) {
        if self.capacity == 0 {
            return;
        }
        let mut maps = self.lock();
        if maps[0].len() >= self.capacity && !maps[0].contains_key(&key) {
            maps[1] = std::mem::take(&mut maps[0]);
        }
        maps[0].insert(key, index);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::job::new_job_id;

    fn job(id: u128) -> Job {
        Job {
            id: uuid::Uuid::from_u128(id),
            payload: serde_json::json!("xxxxxxxx"), // 10 bytes
            ..crate::job::fixture(DateTime::from_timestamp(1_700_000_000, 0).unwrap())
        }
    }

    fn page(ids: &[u128], next: Option<u128>) -> Page {
        Page {
            jobs: ids.iter().map(|i| job(*i)).collect(),
            next: next.map(uuid::Uuid::from_u128),
        }
    }

    fn ids(p: &Page) -> (Vec<u128>, Option<u128>) {
        (
            p.jobs.iter().map(|j| j.id.as_u128()).collect(),
            p.next.map(|n| n.as_u128()),
        )
    }

    #[test]
    fn merged_pages_stop_where_every_store_has_looked() {
        let req = PageRequest::new(None, 3);
        // Both stores have more: below 7 the second has not looked yet.
        let merged = merge_pages(
            vec![page(&[10, 8, 6], Some(6)), page(&[9, 7, 5], Some(5))],
            req,
        );
        assert_eq!(ids(&merged), (vec![10, 9, 8], Some(8)));
        // One store is done: the other's cursor bounds the page.
        let merged = merge_pages(vec![page(&[10, 4], None), page(&[9, 7, 5], Some(5))], req);
        assert_eq!(ids(&merged), (vec![10, 9, 7], Some(7)));
        // Both done: everything fits, no cursor.
        let merged = merge_pages(vec![page(&[10], None), page(&[9], None)], req);
        assert_eq!(ids(&merged), (vec![10, 9], None));
        // A scan window without matches still bounds the page.
        let merged = merge_pages(vec![page(&[3, 2], None), page(&[], Some(8))], req);
        assert_eq!(ids(&merged), (vec![], Some(8)));
        // The byte budget cuts (10 bytes a job), keeping at least one job.
        let budget = PageRequest {
            max_bytes: Some(25),
            ..req
        };
        let merged = merge_pages(vec![page(&[10, 8], None), page(&[9, 7], None)], budget);
        assert_eq!(ids(&merged), (vec![10, 9], Some(9)));
        let tiny = PageRequest {
            max_bytes: Some(1),
            ..req
        };
        let merged = merge_pages(vec![page(&[10], None), page(&[9], None)], tiny);
        assert_eq!(ids(&merged), (vec![10], Some(10)));
    }

    #[test]
    fn hints_are_bounded_in_two_generations() {
        let hints: Hints<JobId> = Hints::new(2);
        let a = new_job_id();
        let b = new_job_id();
        let c = new_job_id();
        let d = new_job_id();
        hints.put(a, 1);
        hints.put(b, 2);
        hints.put(c, 3); // a and b become the previous generation
        assert_eq!((hints.get(&a), hints.get(&c)), (Some(1), Some(3)));
        hints.put(d, 4);
        hints.put(a, 5); // the current generation (c, d) is full: a, b dropped, c, d previous
        assert_eq!(hints.get(&b), None);
        assert_eq!((hints.get(&a), hints.get(&c)), (Some(5), Some(3)));
        let none: Hints<JobId> = Hints::new(0);
        none.put(a, 1);
        assert_eq!(none.get(&a), None);
    }
}
