//! The shared `JobStore` conformance suite.
//!
//! Each case takes a factory `make(clock)` that returns a fresh, empty store reading time from
//! `clock` (for a database: a fresh schema). Run all cases with
//! [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn JobStore> { … }
//! jobs_core::store_conformance_tests!(make_store);
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backoff::{Backoff, BackoffStrategy, Jitter};
use crate::clock::{Clock, ManualClock};
use crate::job::{new_job_id, Job, JobId, LeaseToken, NewJob};
use crate::status::{JobStatus, Transition};
use crate::store::{
    ChangeError, EnqueueError, Failure, JobFilter, JobStore, LeaseError, PageRequest, ReapReport,
    Wakeup,
};
use crate::trace::TraceContext;

const SECOND: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(60);

/// Generates one `#[tokio::test]` per conformance case for a store factory
/// `async fn(Arc<ManualClock>) -> Arc<dyn JobStore>`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            enqueue_then_get,
            enqueue_without_run_at_uses_store_clock,
            idempotent_enqueue_returns_the_same_job,
            quota_is_exact_under_concurrent_enqueues,
            quota_counts_only_unfinished_jobs,
            retry_counts_against_the_quota,
            quota_is_exact_under_concurrent_enqueues_and_retries,
            enqueue_many_is_all_or_nothing,
            lease_due_is_earliest_deadline_first,
            scheduled_jobs_join_the_pick_when_due,
            deadline_rules_per_transition,
            a_past_run_at_gets_its_deadline_from_now,
            lease_due_respects_the_cap,
            concurrent_lease_due_never_exceeds_the_cap,
            dispatch_claim_heartbeat_complete,
            batch_claim_and_complete_match_one_by_one,
            stale_tokens_change_nothing,
            fail_retries_with_backoff_then_dies,
            reaper_returns_expired_dispatches_without_an_attempt,
            reaper_counts_expired_runs_as_attempts,
            unsent_dispatches_go_back_at_once,
            cancel_follows_the_state_table,
            running_cancel_is_cooperative,
            retry_follows_the_state_table,
            release_returns_the_job_without_penalty,
            keyset_pagination_returns_every_job_exactly_once,
            list_filters,
            list_leaves_payloads_out_unless_asked,
            list_byte_budget_cuts_pages_and_continues,
            list_scan_bound_walks_sparse_filters_exactly_once,
            counts_and_prune,
            wakeups_on_due_enqueue_and_finish,
            trace_context_round_trips_and_survives_retries,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        mod store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    $crate::testkit::store::$case($make).await;
                }
            )+
        }
    };
}

/// A fresh store and its clock.
pub struct Fixture {
    pub store: Arc<dyn JobStore>,
    pub clock: Arc<ManualClock>,
}

async fn fixture<F, Fut>(make: F) -> Fixture
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let clock = Arc::new(ManualClock::default());
    let store = make(clock.clone()).await;
    Fixture { store, clock }
}

/// A new job of `tenant` in `use_case`, due now (store clock), 60 s tolerance, 3 attempts.
pub fn new_job(tenant: &str, use_case: &str) -> NewJob {
    NewJob {
        id: new_job_id(),
        tenant_id: tenant.to_owned(),
        use_case: use_case.to_owned(),
        kind: "test_kind".to_owned(),
        payload: json!({"n": 1, "nested": {"list": [1, 2, 3], "text": "héllo"}}),
        priority: 0,
        max_attempts: 3,
        backoff: Backoff {
            strategy: BackoffStrategy::Linear,
            base: Duration::from_millis(1500),
            cap: Duration::from_secs(600),
            jitter: Jitter::Equal,
        },
        run_at: None,
        delay_tolerance: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
        idempotency_key: None,
        quota: None,
        trace_context: None,
    }
}

impl Fixture {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    async fn add(&self, job: NewJob) -> Job {
        self.store.enqueue(job).await.unwrap().job
    }

    async fn due(&self, tenant: &str, use_case: &str) -> Job {
        self.add(new_job(tenant, use_case)).await
    }

    async fn get(&self, id: JobId) -> Job {
        self.store.get(id).await.unwrap().expect("job exists")
    }

    /// How many of `tenant`'s jobs in `use_case` are unfinished (count against its quota).
    async fn unfinished(&self, tenant: &str, use_case: &str) -> usize {
        let filter = JobFilter {
            tenant_id: Some(tenant.to_owned()),
            use_case: Some(use_case.to_owned()),
            ..JobFilter::default()
        };
        let page = PageRequest::new(None, 10_000);
        let jobs = self.store.list(&filter, page).await.unwrap().jobs;
        jobs.iter()
            .filter(|j| j.status.counts_against_quota())
            .count()
    }

    async fn dispatch_one(&self, use_case: &str) -> (JobId, LeaseToken) {
        let leased = self
            .store
            .lease_due(use_case, 1000, 1, LEASE)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1, "expected one due job in {use_case}");
        (leased[0].job_id, leased[0].lease_token)
    }

    /// Enqueues, dispatches and claims a job: returns it running.
    async fn running(&self, tenant: &str, use_case: &str) -> (Job, LeaseToken) {
        let job = self.due(tenant, use_case).await;
        let leased = self
            .store
            .lease_due(use_case, 1000, 1000, LEASE)
            .await
            .unwrap();
        let d = leased.iter().find(|d| d.job_id == job.id).expect("leased");
        let claimed = self
            .store
            .claim(job.id, d.lease_token, LEASE)
            .await
            .unwrap();
        (claimed, d.lease_token)
    }
}

pub async fn enqueue_then_get<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut input = new_job("acme", "alpha");
    let run_at = f.now() + chrono::TimeDelta::seconds(90);
    input.run_at = Some(run_at);
    input.priority = -7;
    input.idempotency_key = Some("key-1".into());
    input.delay_tolerance = Duration::from_millis(2500);
    let enqueued = f.store.enqueue(input.clone()).await.unwrap();
    assert!(enqueued.created);
    let job = f.get(input.id).await;
    assert_eq!(job, enqueued.job, "enqueue returns the stored job");
    assert_eq!(job.id, input.id);
    assert_eq!(job.tenant_id, "acme");
    assert_eq!(job.use_case, "alpha");
    assert_eq!(job.kind, "test_kind");
    assert_eq!(job.payload, input.payload);
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.priority, -7);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.backoff, input.backoff);
    assert_eq!(job.run_at, run_at);
    assert_eq!(job.delay_tolerance, Duration::from_millis(2500));
    assert_eq!(
        job.deadline_at,
        run_at + chrono::TimeDelta::milliseconds(2500)
    );
    assert_eq!(job.timeout, Duration::from_secs(30));
    assert_eq!(job.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(job.lease_token, None);
    assert_eq!(job.lease_expires_at, None);
    assert!(!job.cancel_requested);
    assert_eq!(job.last_error, None);
    assert_eq!(job.created_at, f.now());
    assert_eq!(job.updated_at, f.now());
    assert_eq!(
        (job.dispatched_at, job.started_at, job.finished_at),
        (None, None, None)
    );
    assert_eq!(f.store.get(new_job_id()).await.unwrap(), None);
}

pub async fn enqueue_without_run_at_uses_store_clock<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    f.clock.advance(Duration::from_secs(3600));
    let job = f.due("acme", "alpha").await;
    assert_eq!(job.run_at, f.now());
    assert_eq!(job.deadline_at, f.now() + chrono::TimeDelta::seconds(60));
}

pub async fn idempotent_enqueue_returns_the_same_job<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut first = new_job("acme", "alpha");
    first.idempotency_key = Some("order-42".into());
    first.quota = Some(1);
    let a = f.store.enqueue(first.clone()).await.unwrap();
    assert!(a.created);
    // Same key, new id, quota full: the existing job comes back, no quota error.
    let mut again = first.clone();
    again.id = new_job_id();
    let b = f.store.enqueue(again).await.unwrap();
    assert!(!b.created);
    assert_eq!(b.job.id, a.job.id);
    // Still the same after the job finished.
    f.store.cancel(a.job.id).await.unwrap();
    let mut third = first.clone();
    third.id = new_job_id();
    let c = f.store.enqueue(third).await.unwrap();
    assert_eq!((c.created, c.job.id), (false, a.job.id));
    // Keys are per tenant.
    let mut other = first.clone();
    other.id = new_job_id();
    other.tenant_id = "globex".into();
    let d = f.store.enqueue(other).await.unwrap();
    assert!(d.created);
    assert_ne!(d.job.id, a.job.id);
    // Concurrent enqueues with one key create exactly one job.
    let mut handles = Vec::new();
    for _ in 0..20 {
        let store = f.store.clone();
        let mut job = new_job("initech", "alpha");
        job.idempotency_key = Some("same".into());
        handles.push(tokio::spawn(async move { store.enqueue(job).await }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let e = h.await.unwrap().unwrap();
        ids.insert(e.job.id);
        created += usize::from(e.created);
    }
    assert_eq!((ids.len(), created), (1, 1));
}

pub async fn quota_is_exact_under_concurrent_enqueues<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut handles = Vec::new();
    for _ in 0..50 {
        let store = f.store.clone();
        let mut job = new_job("acme", "alpha");
        job.quota = Some(10);
        handles.push(tokio::spawn(async move { store.enqueue(job).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(e) => {
                assert!(e.created);
                ok += 1;
            }
            Err(EnqueueError::QuotaExceeded {
                tenant_id,
                use_case,
                limit,
            }) => {
                assert_eq!(
                    (tenant_id.as_str(), use_case.as_str(), limit),
                    ("acme", "alpha", 10)
                );
                refused += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    let listed = f
        .store
        .list(&JobFilter::default(), PageRequest::new(None, 100))
        .await
        .unwrap();
    assert_eq!(listed.jobs.len(), 10);
    // Other tenants and use cases have their own budget.
    let mut other = new_job("globex", "alpha");
    other.quota = Some(10);
    f.store.enqueue(other).await.unwrap();
    let mut other_uc = new_job("acme", "beta");
    other_uc.quota = Some(10);
    f.store.enqueue(other_uc).await.unwrap();
}

pub async fn quota_counts_only_unfinished_jobs<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let limited = || {
        let mut j = new_job("acme", "alpha");
        j.quota = Some(2);
        j
    };
    let a = f.store.enqueue(limited()).await.unwrap().job;
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    // Dispatched and running jobs still count.
    let leased = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    // A finished job frees its slot.
    let token = leased
        .iter()
        .find(|d| d.job_id == a.id)
        .unwrap()
        .lease_token;
    f.store.claim(a.id, token, LEASE).await.unwrap();
    f.store.complete(a.id, token).await.unwrap();
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
}

/// A manual retry brings a finished job back into its tenant's quota, so it is refused exactly as
/// an enqueue would be (review finding: cancel a, enqueue c, retry a → 3 jobs at quota 2).
pub async fn retry_counts_against_the_quota<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let limited = || {
        let mut j = new_job("acme", "alpha");
        j.quota = Some(2);
        j
    };
    let a = f.store.enqueue(limited()).await.unwrap().job;
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    f.store.cancel(a.id).await.unwrap();
    f.store.enqueue(limited()).await.unwrap();
    assert_eq!(
        f.store.retry(a.id, Some(2)).await,
        Err(ChangeError::QuotaExceeded {
            tenant_id: "acme".into(),
            use_case: "alpha".into(),
            limit: 2,
        })
    );
    // Refused means unchanged.
    let still = f.store.get(a.id).await.unwrap().unwrap();
    assert_eq!(still.status, JobStatus::Cancelled);
    assert_eq!(f.unfinished("acme", "alpha").await, 2);

    // Dead jobs too, any number of them.
    let mut dead = Vec::new();
    for _ in 0..3 {
        let (job, token) = f.running("acme", "beta").await;
        f.store
            .fail(
                job.id,
                token,
                Failure {
                    error: "boom".into(),
                    retry_in: None,
                },
            )
            .await
            .unwrap();
        dead.push(job.id);
    }
    let mut retried = 0;
    for id in &dead {
        match f.store.retry(*id, Some(2)).await {
            Ok(job) => {
                assert_eq!(job.status, JobStatus::Pending);
                retried += 1;
            }
            Err(ChangeError::QuotaExceeded { limit: 2, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(retried, 2);
    assert_eq!(f.unfinished("acme", "beta").await, 2);
    // Another tenant's budget is its own (acme's beta is full), and no quota means no limit.
    let (other, token) = f.running("globex", "beta").await;
    f.store
        .fail(
            other.id,
            token,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.retry(other.id, Some(2)).await.unwrap().status,
        JobStatus::Pending
    );
    let third = dead[2];
    assert_eq!(
        f.store.retry(third, None).await.unwrap().status,
        JobStatus::Pending
    );
    // A refused retry of a job that is not retryable still says why.
    assert!(matches!(
        f.store.retry(third, Some(0)).await,
        Err(ChangeError::Illegal(e)) if e.from == JobStatus::Pending
    ));
}

/// Mixed concurrent enqueues and retries at quota 10 never leave more than 10 unfinished jobs.
pub async fn quota_is_exact_under_concurrent_enqueues_and_retries<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    // 20 cancelled jobs to retry (enqueued without a quota, then cancelled).
    let mut cancelled = Vec::new();
    for _ in 0..20 {
        let job = f.due("acme", "alpha").await;
        f.store.cancel(job.id).await.unwrap();
        cancelled.push(job.id);
    }
    // Three already unfinished.
    for _ in 0..3 {
        f.due("acme", "alpha").await;
    }
    let mut handles = Vec::new();
    for (i, id) in cancelled.into_iter().enumerate() {
        let store = f.store.clone();
        handles.push(tokio::spawn(async move {
            store.retry(id, Some(10)).await.is_ok()
        }));
        let store = f.store.clone();
        let mut job = new_job("acme", "alpha");
        job.quota = Some(10);
        job.priority = i16::try_from(i).unwrap();
        handles.push(tokio::spawn(async move {
            match store.enqueue(job).await {
                Ok(e) => e.created,
                Err(EnqueueError::QuotaExceeded { .. }) => false,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }));
    }
    let mut admitted = 0;
    for h in handles {
        admitted += usize::from(h.await.unwrap());
    }
    assert_eq!(admitted, 7, "3 were there, the quota is 10");
    assert_eq!(f.unfinished("acme", "alpha").await, 10);
}

pub async fn enqueue_many_is_all_or_nothing<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let batch: Vec<NewJob> = (0..5)
        .map(|i| {
            let mut j = new_job("acme", if i % 2 == 0 { "alpha" } else { "beta" });
            j.kind = format!("kind_{i}");
            j
        })
        .collect();
    let ids: Vec<JobId> = batch.iter().map(|j| j.id).collect();
    let out = f.store.enqueue_many(batch).await.unwrap();
    assert_eq!(
        out.iter().map(|e| e.job.id).collect::<Vec<_>>(),
        ids,
        "results in input order"
    );
    assert!(out
        .iter()
        .all(|e| e.created && e.job.status == JobStatus::Pending));
    assert_eq!(out[3].job.kind, "kind_3");
    // Three jobs against a quota of 2: the whole batch is refused and nothing is inserted.
    let over: Vec<NewJob> = (0..3)
        .map(|_| {
            let mut j = new_job("globex", "alpha");
            j.quota = Some(2);
            j
        })
        .collect();
    let over_ids: Vec<JobId> = over.iter().map(|j| j.id).collect();
    assert!(matches!(
        f.store.enqueue_many(over).await,
        Err(EnqueueError::QuotaExceeded { limit: 2, .. })
    ));
    for id in over_ids {
        assert_eq!(f.store.get(id).await.unwrap(), None, "no partial batch");
    }
    // A duplicate key inside a later batch returns the existing job.
    let mut keyed = new_job("acme", "alpha");
    keyed.idempotency_key = Some("k".into());
    let first = f.store.enqueue(keyed.clone()).await.unwrap().job;
    keyed.id = new_job_id();
    let again = f
        .store
        .enqueue_many(vec![keyed, new_job("acme", "alpha")])
        .await
        .unwrap();
    assert_eq!((again[0].created, again[0].job.id), (false, first.id));
    assert!(again[1].created);
}

pub async fn lease_due_is_earliest_deadline_first<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let now = f.now();
    let at = |secs: i64| now + chrono::TimeDelta::seconds(secs);
    let mk = |run_at_offset: i64, tolerance: u64, priority: i16| {
        let mut j = new_job("acme", "alpha");
        j.run_at = Some(at(run_at_offset));
        j.delay_tolerance = Duration::from_secs(tolerance);
        j.priority = priority;
        j
    };
    // deadline = max(run_at, now) + tolerance
    let late = f.add(mk(-100, 900, 0)).await; // deadline +900
    let urgent = f.add(mk(-10, 10, 0)).await; // deadline +10
    let middle = f.add(mk(-50, 100, 0)).await; // deadline +100
    let tie_low = f.add(mk(-5, 300, 1)).await; // deadline +300, priority 1
    let tie_high = f.add(mk(0, 300, 9)).await; // deadline +300, priority 9
    let future = f.add(mk(30, 1, 0)).await; // not due yet (deadline +31)
    let other_uc = f
        .add({
            let mut j = mk(-1000, 0, 0);
            j.use_case = "beta".into();
            j
        })
        .await;
    let leased = f.store.lease_due("alpha", 100, 100, LEASE).await.unwrap();
    let order: Vec<JobId> = leased.iter().map(|d| d.job_id).collect();
    assert_eq!(
        order,
        vec![urgent.id, middle.id, tie_high.id, tie_low.id, late.id]
    );
    for d in &leased {
        assert_eq!(d.use_case, "alpha");
        assert_eq!(d.attempt, 1);
        assert_eq!(d.tenant_id, "acme");
        let job = f.get(d.job_id).await;
        assert_eq!(job.status, JobStatus::Dispatched);
        assert_eq!(job.lease_token, Some(d.lease_token));
        assert_eq!(
            job.lease_expires_at,
            Some(now + chrono::TimeDelta::seconds(60))
        );
        assert_eq!(job.dispatched_at, Some(now));
        assert_eq!(job.deadline_at, d.deadline_at);
    }
    let tokens: BTreeSet<LeaseToken> = leased.iter().map(|d| d.lease_token).collect();
    assert_eq!(tokens.len(), leased.len(), "each lease has its own token");
    assert_eq!(f.get(future.id).await.status, JobStatus::Pending);
    assert_eq!(f.get(other_uc.id).await.status, JobStatus::Pending);
    // Once its run_at passes, the future job is due.
    f.clock.advance(Duration::from_secs(30));
    let next = f.store.lease_due("alpha", 100, 100, LEASE).await.unwrap();
    assert_eq!(
        next.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![future.id]
    );
    // The limit bounds a pick even when capacity is larger, and the earliest deadlines go first.
    for i in 0..5 {
        f.add(mk(0, 100 + i, 0)).await;
    }
    let two = f.store.lease_due("alpha", 100, 2, LEASE).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(two[0].deadline_at <= two[1].deadline_at);
}

/// Jobs scheduled for later whose deadlines sort before the due ones never take a due job's
/// place, and join the EDF order as soon as their `run_at` comes — also a retry waiting out its
/// backoff, and jobs that fall due between two picks.
pub async fn scheduled_jobs_join_the_pick_when_due<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let now = f.now();
    let mk = |run_at_offset: i64, tolerance: u64| {
        let mut j = new_job("acme", "alpha");
        j.run_at = Some(now + chrono::TimeDelta::seconds(run_at_offset));
        j.delay_tolerance = Duration::from_secs(tolerance);
        j
    };
    // 30 reminders 10 minutes ahead with 1 s of tolerance (deadline +601 s) sort before the
    // due jobs with an hour of tolerance (deadline ≥ +3600 s).
    let mut reminders = Vec::new();
    for i in 0..30 {
        reminders.push(f.add(mk(600, 1 + i)).await.id);
    }
    let due: Vec<JobId> = [
        f.add(mk(-10, 3600)).await.id,
        f.add(mk(0, 3700)).await.id,
        f.add(mk(-5, 3800)).await.id,
    ]
    .to_vec();
    let first = f.store.lease_due("alpha", 100, 2, LEASE).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        due[..2].to_vec(),
        "the due jobs, earliest deadline first, whatever is scheduled ahead"
    );
    // A retry waiting out its backoff is not due either.
    let (failing, token) = f.dispatch_one("alpha").await;
    assert_eq!(failing, due[2]);
    f.store.claim(failing, token, LEASE).await.unwrap();
    f.store
        .fail(
            failing,
            token,
            Failure {
                error: "boom".into(),
                retry_in: Some(Duration::from_secs(300)),
            },
        )
        .await
        .unwrap();
    assert!(f
        .store
        .lease_due("alpha", 100, 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    // After the backoff the retry is due; the reminders are not yet.
    f.clock.advance(Duration::from_secs(300));
    let retried = f.store.lease_due("alpha", 100, 100, LEASE).await.unwrap();
    assert_eq!(
        retried.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![due[2]]
    );
    // A later job with a long tolerance, due now: it must wait behind the reminders once they
    // fall due, because their deadlines are earlier.
    let patient = f.add(mk(300, 7200)).await.id;
    f.clock.advance(Duration::from_secs(301));
    let batch = f.store.lease_due("alpha", 100, 10, LEASE).await.unwrap();
    assert_eq!(
        batch.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        reminders[..10].to_vec(),
        "promoted jobs take their place in deadline order"
    );
    let rest = f.store.lease_due("alpha", 100, 100, LEASE).await.unwrap();
    let mut expected = reminders[10..].to_vec();
    expected.push(patient);
    assert_eq!(rest.iter().map(|d| d.job_id).collect::<Vec<_>>(), expected);
}

/// The deadline rules of `docs/state_machine.md`: `deadline_at` is the latest start of the next
/// attempt (`run_at + delay_tolerance`); a failed attempt (handler failure or lost worker) and a
/// manual retry open a new window; release and the return of a dispatch keep it (no attempt
/// started). `first_started_at` is set by the first claim and never changes, so the deadline is
/// measured once per job.
pub async fn deadline_rules_per_transition<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let minute = chrono::TimeDelta::seconds(60);
    let job = f.due("acme", "alpha").await;
    let enqueued_at = f.now();
    assert_eq!(job.deadline_at, enqueued_at + minute);
    assert_eq!(job.first_started_at, None);

    // Dispatch expiry and a returned dispatch keep the window.
    let (id, token) = f.dispatch_one("alpha").await;
    f.clock.advance(Duration::from_secs(61));
    f.store.return_dispatched(vec![(id, token)]).await.unwrap();
    assert_eq!(f.get(id).await.deadline_at, enqueued_at + minute);
    let (_, token) = f.dispatch_one("alpha").await;
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    assert_eq!(f.get(id).await.deadline_at, enqueued_at + minute);

    // The first claim records the first start; release keeps the window and the first start.
    let (_, token2) = f.dispatch_one("alpha").await;
    assert_ne!(token, token2);
    let first_start = f.now();
    let claimed = f.store.claim(id, token2, LEASE).await.unwrap();
    assert_eq!(claimed.first_started_at, Some(first_start));
    assert_eq!(claimed.started_at, Some(first_start));
    f.clock.advance(Duration::from_secs(5));
    let released = f.store.release(id, token2).await.unwrap();
    assert_eq!(released.deadline_at, enqueued_at + minute);
    assert_eq!(released.first_started_at, Some(first_start));

    // A reclaim is not a first start.
    let (_, token3) = f.dispatch_one("alpha").await;
    let again = f.store.claim_many(vec![(id, token3)], LEASE).await;
    let again = again.into_iter().next().unwrap().unwrap();
    assert_eq!(again.first_started_at, Some(first_start));
    assert_eq!(again.started_at, Some(f.now()));

    // A failed attempt opens a new window after the backoff.
    let failed = f
        .store
        .fail(
            id,
            token3,
            Failure {
                error: "boom".into(),
                retry_in: Some(Duration::from_secs(10)),
            },
        )
        .await
        .unwrap();
    let retry_at = f.now() + chrono::TimeDelta::seconds(10);
    assert_eq!(
        (failed.run_at, failed.deadline_at),
        (retry_at, retry_at + minute)
    );
    assert_eq!(failed.first_started_at, Some(first_start));

    // So does a lost worker (running lease expired: a failed attempt, due now).
    f.clock.advance(Duration::from_secs(10));
    let (_, token4) = f.dispatch_one("alpha").await;
    f.store.claim(id, token4, LEASE).await.unwrap();
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let reaped = f.get(id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(
        (reaped.run_at, reaped.deadline_at),
        (f.now(), f.now() + minute)
    );

    // A manual retry opens a new window; the first start stays.
    let (_, token5) = f.dispatch_one("alpha").await;
    f.store.claim(id, token5, LEASE).await.unwrap();
    f.store
        .fail(
            id,
            token5,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(3600));
    let retried = f.store.retry(id, None).await.unwrap();
    assert_eq!(retried.deadline_at, f.now() + minute);
    assert_eq!(retried.first_started_at, Some(first_start));
}

/// A `run_at` far in the past is due at once, but its deadline counts from the enqueue, so it
/// cannot sort ahead of every other job (review finding: a `run_at` in year 1 with a tolerance of
/// 0 gave a deadline in year 1).
pub async fn a_past_run_at_gets_its_deadline_from_now<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let now = f.now();
    let mut honest = new_job("acme", "alpha");
    honest.delay_tolerance = Duration::from_secs(5);
    let honest = f.add(honest).await;
    let mut gamer = new_job("mallory", "alpha");
    gamer.run_at = Some(now - chrono::TimeDelta::days(365 * 50));
    gamer.delay_tolerance = Duration::ZERO;
    let gamer = f.add(gamer).await;
    assert_eq!(
        gamer.run_at,
        now - chrono::TimeDelta::days(365 * 50),
        "run_at kept"
    );
    assert_eq!(
        gamer.deadline_at, now,
        "deadline from now, not from the past run_at"
    );
    assert_eq!(honest.deadline_at, now + chrono::TimeDelta::seconds(5));
    // The batch path does the same.
    let mut batch = new_job("mallory", "alpha");
    batch.run_at = Some(now - chrono::TimeDelta::days(1));
    batch.delay_tolerance = Duration::from_secs(30);
    let out = f.store.enqueue_many(vec![batch]).await.unwrap();
    assert_eq!(out[0].job.deadline_at, now + chrono::TimeDelta::seconds(30));
    // It is due at once, and in deadline order with the rest.
    let leased = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![gamer.id, honest.id, out[0].job.id]
    );
}

pub async fn lease_due_respects_the_cap<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    for _ in 0..10 {
        f.due("acme", "alpha").await;
    }
    let first = f.store.lease_due("alpha", 3, 100, LEASE).await.unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        f.store
            .lease_due("alpha", 3, 100, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "cap reached"
    );
    // Running jobs hold their slot too.
    let d = &first[0];
    f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
    assert!(f
        .store
        .lease_due("alpha", 3, 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    // A finished job frees exactly one slot.
    f.store.complete(d.job_id, d.lease_token).await.unwrap();
    assert_eq!(
        f.store
            .lease_due("alpha", 3, 100, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    // A lower cap than the jobs in flight leases nothing (no underflow).
    assert!(f
        .store
        .lease_due("alpha", 1, 100, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .store
        .lease_due("alpha", 0, 100, LEASE)
        .await
        .unwrap()
        .is_empty());
}

pub async fn concurrent_lease_due_never_exceeds_the_cap<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    for _ in 0..40 {
        f.due("acme", "alpha").await;
    }
    for round in 0..3 {
        let mut handles = Vec::new();
        for _ in 0..8 {
            let store = f.store.clone();
            handles.push(tokio::spawn(async move {
                store.lease_due("alpha", 5, 3, LEASE).await
            }));
        }
        let mut leased = Vec::new();
        for h in handles {
            leased.extend(h.await.unwrap().unwrap());
        }
        let ids: BTreeSet<JobId> = leased.iter().map(|d| d.job_id).collect();
        assert_eq!(ids.len(), leased.len(), "no job leased twice");
        assert_eq!(
            leased.len(),
            5,
            "round {round}: exactly the cap, never more"
        );
        // Finish them all to free the cap for the next round.
        for d in leased {
            f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
            f.store.complete(d.job_id, d.lease_token).await.unwrap();
        }
    }
}

pub async fn dispatch_claim_heartbeat_complete<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let job = f.due("acme", "alpha").await;
    let (id, token) = f.dispatch_one("alpha").await;
    assert_eq!(id, job.id);
    f.clock.advance(SECOND);
    let claimed = f
        .store
        .claim(id, token, Duration::from_secs(45))
        .await
        .unwrap();
    assert_eq!(claimed.status, JobStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_token, Some(token));
    assert_eq!(claimed.started_at, Some(f.now()));
    assert_eq!(
        claimed.lease_expires_at,
        Some(f.now() + chrono::TimeDelta::seconds(45))
    );
    assert_eq!(
        claimed.payload, job.payload,
        "the claim returns the payload"
    );
    f.clock.advance(Duration::from_secs(10));
    let hb = f
        .store
        .heartbeat(id, token, Duration::from_secs(45))
        .await
        .unwrap();
    assert_eq!(
        hb.lease_expires_at,
        f.now() + chrono::TimeDelta::seconds(45)
    );
    assert!(!hb.cancel_requested);
    assert_eq!(f.get(id).await.lease_expires_at, Some(hb.lease_expires_at));
    f.clock.advance(SECOND);
    let done = f.store.complete(id, token).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.finished_at, Some(f.now()));
    assert_eq!(done.lease_token, None);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(f.get(id).await, done);
    // Completing twice is refused: one final state.
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
}

pub async fn batch_claim_and_complete_match_one_by_one<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    assert!(f.store.claim_many(Vec::new(), LEASE).await.is_empty());
    assert!(f.store.complete_many(Vec::new()).await.is_empty());
    let jobs = [
        f.due("acme", "alpha").await,
        f.due("acme", "alpha").await,
        f.due("acme", "alpha").await,
    ];
    let leased = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 3);
    let token = |id: JobId| {
        leased
            .iter()
            .find(|d| d.job_id == id)
            .expect("leased")
            .lease_token
    };
    let (a, b, c) = (jobs[0].id, jobs[1].id, jobs[2].id);
    f.clock.advance(SECOND);
    let claimed = f
        .store
        .claim_many(
            vec![
                (a, token(a)),
                (b, LeaseToken::generate()),
                (c, token(c)),
                (a, token(a)),
            ],
            Duration::from_secs(45),
        )
        .await;
    assert_eq!(claimed.len(), 4);
    for (i, id) in [(0, a), (2, c)] {
        let job = claimed[i].as_ref().expect("claimed");
        assert_eq!(job.id, id);
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.started_at, Some(f.now()));
        assert_eq!(
            job.lease_expires_at,
            Some(f.now() + chrono::TimeDelta::seconds(45))
        );
        assert_eq!(
            job.payload, jobs[0].payload,
            "the claim returns the payload"
        );
        assert_eq!(&f.get(id).await, job);
    }
    assert_eq!(claimed[1], Err(LeaseError::LeaseLost(b)));
    assert_eq!(
        claimed[3],
        Err(LeaseError::LeaseLost(a)),
        "claimed once only"
    );
    assert_eq!(f.get(b).await.status, JobStatus::Dispatched);
    f.clock.advance(SECOND);
    let done = f
        .store
        .complete_many(vec![
            (c, LeaseToken::generate()),
            (a, token(a)),
            (b, token(b)),
        ])
        .await;
    assert_eq!(done[0], Err(LeaseError::LeaseLost(c)));
    let finished = done[1].as_ref().expect("completed");
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert_eq!(finished.finished_at, Some(f.now()));
    assert_eq!(finished.lease_token, None);
    assert_eq!(&f.get(a).await, finished);
    assert_eq!(
        done[2],
        Err(LeaseError::LeaseLost(b)),
        "b was never claimed"
    );
    assert_eq!(f.get(c).await.status, JobStatus::Running);
    assert_eq!(
        f.store.complete_many(vec![(a, token(a))]).await,
        vec![Err(LeaseError::LeaseLost(a))],
        "one final state"
    );
}

pub async fn stale_tokens_change_nothing<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let fail = || Failure {
        error: "x".into(),
        retry_in: Some(SECOND),
    };
    // Pending: nothing fenced applies.
    let pending = f.due("acme", "alpha").await;
    let any = LeaseToken::generate();
    assert_eq!(
        f.store.claim(pending.id, any, LEASE).await,
        Err(LeaseError::LeaseLost(pending.id))
    );
    assert_eq!(
        f.store.complete(pending.id, any).await,
        Err(LeaseError::LeaseLost(pending.id))
    );
    assert_eq!(f.get(pending.id).await, pending);

    // Dispatched: a wrong token cannot claim; the right token cannot complete before claiming.
    let (id, token) = f.dispatch_one("alpha").await;
    let before = f.get(id).await;
    assert_eq!(
        f.store.claim(id, any, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.heartbeat(id, token, LEASE).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, token, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.release(id, token).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, before);

    // Running: a second claim with the same token loses; other tokens change nothing.
    let running = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, any).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, any, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.heartbeat(id, any, LEASE).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.release(id, any).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.finish_cancelled(id, any).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, running);

    // The lease expires, the reaper hands the job back, someone else leases it: the old worker's
    // late writes all lose.
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let (again, new_token) = f.dispatch_one("alpha").await;
    assert_eq!(again, id);
    assert_ne!(new_token, token);
    let snapshot = f.get(id).await;
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, token, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, snapshot);
    let second = f.store.claim(id, new_token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, new_token).await.unwrap().status,
        JobStatus::Succeeded
    );
}

pub async fn fail_retries_with_backoff_then_dies<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    let failed = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "smtp timeout".into(),
                retry_in: Some(Duration::from_secs(20)),
            },
        )
        .await
        .unwrap();
    let retry_at = f.now() + chrono::TimeDelta::seconds(20);
    assert_eq!(failed.status, JobStatus::Pending);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("smtp timeout"));
    assert_eq!(failed.run_at, retry_at);
    assert_eq!(
        failed.deadline_at,
        retry_at + chrono::TimeDelta::seconds(60),
        "deadline follows run_at"
    );
    assert_eq!((failed.lease_token, failed.lease_expires_at), (None, None));
    assert_eq!(failed.finished_at, None);
    // Not due before its backoff passes.
    assert!(f
        .store
        .lease_due("alpha", 10, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    f.clock.advance(Duration::from_secs(20));
    let leased = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].attempt, 2);
    let token = leased[0].lease_token;
    let second = f.store.claim(job.id, token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    // A permanent failure (no retry) is dead at once, attempts left or not.
    let dead = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "bad address".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.finished_at, Some(f.now()));
    assert_eq!(dead.last_error.as_deref(), Some("bad address"));
    assert_eq!(dead.attempts, 2);
    assert!(f
        .store
        .lease_due("alpha", 10, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

pub async fn reaper_returns_expired_dispatches_without_an_attempt<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    f.due("acme", "alpha").await;
    f.due("acme", "alpha").await;
    let early = f
        .store
        .lease_due("alpha", 10, 1, Duration::from_secs(10))
        .await
        .unwrap();
    let late = f
        .store
        .lease_due("alpha", 10, 1, Duration::from_secs(100))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(
        f.store.reap_expired(100).await.unwrap(),
        ReapReport {
            dispatch_expired: 1,
            ..ReapReport::default()
        }
    );
    let reaped = f.get(early[0].job_id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(
        reaped.attempts, 0,
        "an unclaimed dispatch is not an attempt"
    );
    assert_eq!((reaped.lease_token, reaped.lease_expires_at), (None, None));
    assert_eq!(
        f.get(late[0].job_id).await.status,
        JobStatus::Dispatched,
        "unexpired lease untouched"
    );
    assert_eq!(
        f.store
            .claim(early[0].job_id, early[0].lease_token, LEASE)
            .await,
        Err(LeaseError::LeaseLost(early[0].job_id)),
        "the old dispatch token is dead"
    );
    // The batch limit bounds a pass.
    for _ in 0..5 {
        f.due("acme", "beta").await;
    }
    f.store.lease_due("beta", 10, 10, SECOND).await.unwrap();
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(f.store.reap_expired(2).await.unwrap().dispatch_expired, 2);
    assert_eq!(f.store.reap_expired(100).await.unwrap().dispatch_expired, 3);
    assert_eq!(
        f.store.reap_expired(100).await.unwrap(),
        ReapReport::default()
    );
}

/// A dispatch the transport refused goes back to pending at once (the reaper's transition,
/// early): fenced by its token, not an attempt, and it frees its place under the cap.
pub async fn unsent_dispatches_go_back_at_once<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(f.due("acme", "alpha").await.id);
    }
    // Cap 3: three leased, the fourth waits.
    let leased = f.store.lease_due("alpha", 3, 10, LEASE).await.unwrap();
    assert_eq!(leased.len(), 3);
    let (unsent, claimed, cancelled) = (&leased[0], &leased[1], &leased[2]);
    f.store
        .claim(claimed.job_id, claimed.lease_token, LEASE)
        .await
        .unwrap();
    f.store.cancel(cancelled.job_id).await.unwrap();
    let before = f.get(unsent.job_id).await;

    // Only the first is still dispatched under its token: a wrong token, the claimed job and the
    // cancelled one are skipped, and so is an unknown job.
    let returned = f
        .store
        .return_dispatched(vec![
            (unsent.job_id, LeaseToken::generate()),
            (unsent.job_id, unsent.lease_token),
            (claimed.job_id, claimed.lease_token),
            (cancelled.job_id, cancelled.lease_token),
            (new_job_id(), LeaseToken::generate()),
        ])
        .await
        .unwrap();
    assert_eq!(returned, 1);
    let back = f.get(unsent.job_id).await;
    assert_eq!(back.status, JobStatus::Pending);
    assert_eq!(back.attempts, 0, "an unsent dispatch is not an attempt");
    assert_eq!((back.lease_token, back.lease_expires_at), (None, None));
    assert_eq!(
        (back.run_at, back.deadline_at),
        (before.run_at, before.deadline_at),
        "it keeps its place in deadline order"
    );
    assert_eq!(f.get(claimed.job_id).await.status, JobStatus::Running);
    assert_eq!(f.get(cancelled.job_id).await.status, JobStatus::Cancelled);
    assert_eq!(
        f.store
            .claim(unsent.job_id, unsent.lease_token, LEASE)
            .await,
        Err(LeaseError::LeaseLost(unsent.job_id)),
        "the returned dispatch's token is dead"
    );
    // Returning twice changes nothing.
    assert_eq!(
        f.store
            .return_dispatched(vec![(unsent.job_id, unsent.lease_token)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(f.store.return_dispatched(Vec::new()).await.unwrap(), 0);
    // Its place under the cap is free again at once (1 running + 2 new leases = cap 3), without
    // waiting for the dispatch lease to expire; the earlier deadline goes first.
    let again = f.store.lease_due("alpha", 3, 10, LEASE).await.unwrap();
    let again: Vec<JobId> = again.iter().map(|d| d.job_id).collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0], unsent.job_id);
    assert!(ids.contains(&again[1]) && again[1] != unsent.job_id);
}

pub async fn reaper_counts_expired_runs_as_attempts<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    // Attempt 1 of 3 expires: back to pending, due now, the attempt counted.
    let (first, t1) = f.running("acme", "alpha").await;
    // Attempt 1 of 1 expires: dead.
    let mut last = new_job("acme", "alpha");
    last.max_attempts = 1;
    let last = f.add(last).await;
    let d = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    let t2 = d.iter().find(|d| d.job_id == last.id).unwrap().lease_token;
    f.store.claim(last.id, t2, LEASE).await.unwrap();
    // A running job with a cancel request: cancelled.
    let (cancelling, t3) = f.running("acme", "alpha").await;
    f.store.cancel(cancelling.id).await.unwrap();
    // A heartbeat keeps the fourth alive.
    let (alive, t4) = f.running("acme", "alpha").await;
    f.clock.advance(LEASE - SECOND);
    f.store.heartbeat(alive.id, t4, LEASE).await.unwrap();
    f.clock.advance(Duration::from_secs(2));
    let report = f.store.reap_expired(100).await.unwrap();
    assert_eq!(
        report,
        ReapReport {
            dispatch_expired: 0,
            run_expired_retry: 1,
            run_expired_dead: 1,
            run_expired_cancelled: 1,
        }
    );
    let first_now = f.get(first.id).await;
    assert_eq!(first_now.status, JobStatus::Pending);
    assert_eq!(first_now.attempts, 1);
    assert_eq!(first_now.run_at, f.now());
    assert!(first_now.last_error.is_some());
    let last_now = f.get(last.id).await;
    assert_eq!(last_now.status, JobStatus::Dead);
    assert_eq!(last_now.finished_at, Some(f.now()));
    assert_eq!(f.get(cancelling.id).await.status, JobStatus::Cancelled);
    assert_eq!(f.get(alive.id).await.status, JobStatus::Running);
    for (id, t) in [(first.id, t1), (last.id, t2), (cancelling.id, t3)] {
        assert_eq!(
            f.store.complete(id, t).await,
            Err(LeaseError::LeaseLost(id))
        );
    }
}

pub async fn cancel_follows_the_state_table<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let pending = f.due("acme", "alpha").await;
    f.clock.advance(SECOND);
    let c = f.store.cancel(pending.id).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert_eq!(c.finished_at, Some(f.now()));
    // Cancelling again changes nothing.
    assert_eq!(f.store.cancel(pending.id).await.unwrap(), c);
    // Dispatched: cancelled, and the dispatch token can no longer claim it.
    f.due("acme", "alpha").await;
    let (id, token) = f.dispatch_one("alpha").await;
    let c = f.store.cancel(id).await.unwrap();
    assert_eq!((c.status, c.lease_token), (JobStatus::Cancelled, None));
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert!(
        f.store
            .lease_due("alpha", 10, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "never run again"
    );
    // Succeeded and dead cannot be cancelled.
    let (done, t) = f.running("acme", "alpha").await;
    f.store.complete(done.id, t).await.unwrap();
    assert_eq!(
        f.store.cancel(done.id).await,
        Err(ChangeError::Illegal(crate::IllegalTransition {
            from: JobStatus::Succeeded,
            event: Transition::Cancel
        }))
    );
    let (dead, t) = f.running("acme", "alpha").await;
    f.store
        .fail(
            dead.id,
            t,
            Failure {
                error: "x".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(f.store.cancel(dead.id).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Dead)
    );
    let unknown = new_job_id();
    assert_eq!(
        f.store.cancel(unknown).await,
        Err(ChangeError::NotFound(unknown))
    );
}

pub async fn running_cancel_is_cooperative<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    let c = f.store.cancel(job.id).await.unwrap();
    assert_eq!((c.status, c.cancel_requested), (JobStatus::Running, true));
    assert!(
        f.store
            .heartbeat(job.id, token, LEASE)
            .await
            .unwrap()
            .cancel_requested
    );
    // finish_cancelled needs the token.
    let wrong = LeaseToken::generate();
    assert_eq!(
        f.store.finish_cancelled(job.id, wrong).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    let done = f.store.finish_cancelled(job.id, token).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.finished_at, Some(f.now()));
    // A failing handler of a cancelled job does not go back to pending.
    let (job, token) = f.running("acme", "alpha").await;
    f.store.cancel(job.id).await.unwrap();
    let failed = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "stopped".into(),
                retry_in: Some(SECOND),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, JobStatus::Cancelled);
    f.clock.advance(Duration::from_secs(5));
    assert!(
        f.store
            .lease_due("alpha", 10, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "never run again"
    );
    // finish_cancelled without a cancel request is refused.
    let (job, token) = f.running("acme", "alpha").await;
    assert_eq!(
        f.store.finish_cancelled(job.id, token).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    assert_eq!(f.get(job.id).await.status, JobStatus::Running);
    // A job that completes despite a cancel request succeeded: the work was done.
    f.store.cancel(job.id).await.unwrap();
    assert_eq!(
        f.store.complete(job.id, token).await.unwrap().status,
        JobStatus::Succeeded
    );
}

pub async fn retry_follows_the_state_table<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let (dead, t) = f.running("acme", "alpha").await;
    f.store
        .fail(
            dead.id,
            t,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(3600));
    let retried = f.store.retry(dead.id, None).await.unwrap();
    assert_eq!(retried.status, JobStatus::Pending);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.run_at, f.now());
    assert_eq!(
        retried.deadline_at,
        f.now() + chrono::TimeDelta::seconds(60)
    );
    assert_eq!(retried.finished_at, None);
    assert_eq!(
        f.store
            .lease_due("alpha", 10, 10, LEASE)
            .await
            .unwrap()
            .len(),
        1
    );

    let cancelled = f.due("acme", "beta").await;
    f.store.cancel(cancelled.id).await.unwrap();
    let again = f.store.retry(cancelled.id, None).await.unwrap();
    assert_eq!(
        (again.status, again.cancel_requested),
        (JobStatus::Pending, false)
    );

    let pending = f.due("acme", "beta").await;
    assert!(
        matches!(f.store.retry(pending.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Pending)
    );
    let (running, t) = f.running("acme", "gamma").await;
    assert!(
        matches!(f.store.retry(running.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Running)
    );
    f.store.complete(running.id, t).await.unwrap();
    assert!(
        matches!(f.store.retry(running.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Succeeded)
    );
    let unknown = new_job_id();
    assert_eq!(
        f.store.retry(unknown, None).await,
        Err(ChangeError::NotFound(unknown))
    );
}

pub async fn release_returns_the_job_without_penalty<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    assert_eq!(job.attempts, 1);
    f.clock.advance(Duration::from_secs(5));
    let released = f.store.release(job.id, token).await.unwrap();
    assert_eq!(released.status, JobStatus::Pending);
    assert_eq!(released.attempts, 0, "shutdown is not an attempt");
    assert!(released.run_at <= f.now(), "due at once");
    assert_eq!(
        (released.lease_token, released.lease_expires_at),
        (None, None)
    );
    assert_eq!(
        f.store.complete(job.id, token).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    let leased = f.store.lease_due("alpha", 10, 10, LEASE).await.unwrap();
    assert_eq!((leased.len(), leased[0].attempt), (1, 1));
    // With a cancel request, release ends it cancelled instead.
    let (job, token) = f.running("acme", "beta").await;
    f.store.cancel(job.id).await.unwrap();
    assert_eq!(
        f.store.release(job.id, token).await.unwrap().status,
        JobStatus::Cancelled
    );
}

pub async fn keyset_pagination_returns_every_job_exactly_once<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut all = BTreeSet::new();
    for i in 0..37 {
        let tenant = if i % 3 == 0 { "globex" } else { "acme" };
        all.insert(f.due(tenant, "alpha").await.id);
    }
    for limit in [1, 4, 10, 37, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = f
                .store
                .list(&JobFilter::default(), PageRequest::new(after, limit))
                .await
                .unwrap();
            assert!(page.jobs.len() <= limit as usize);
            seen.extend(page.jobs.iter().map(|j| j.id));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(next), page.jobs.last().map(|j| j.id));
                    after = Some(next);
                }
                None => break,
            }
        }
        let unique: BTreeSet<JobId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "limit {limit}: no duplicates");
        assert_eq!(unique, all, "limit {limit}: every job");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "newest (highest id) first");
    }
    // Jobs added while paging do not disturb the walk: they sort before the cursor.
    let first = f
        .store
        .list(&JobFilter::default(), PageRequest::new(None, 5))
        .await
        .unwrap();
    f.due("acme", "alpha").await;
    let rest = f
        .store
        .list(&JobFilter::default(), PageRequest::new(first.next, 100))
        .await
        .unwrap();
    assert_eq!(first.jobs.len() + rest.jobs.len(), all.len());
}

pub async fn list_filters<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let a1 = f.due("acme", "alpha").await;
    f.clock.advance(Duration::from_secs(10));
    let mut k = new_job("acme", "beta");
    k.kind = "other_kind".into();
    let a2 = f.add(k).await;
    f.clock.advance(Duration::from_secs(10));
    let g1 = f.due("globex", "alpha").await;
    f.store.cancel(g1.id).await.unwrap();
    let page = PageRequest::new(None, 100);
    let ids = |filter: JobFilter| {
        let store = f.store.clone();
        async move {
            store
                .list(&filter, page)
                .await
                .unwrap()
                .jobs
                .into_iter()
                .map(|j| j.id)
                .collect::<BTreeSet<_>>()
        }
    };
    let set = |v: &[JobId]| v.iter().copied().collect::<BTreeSet<_>>();
    let t0 = a1.created_at;
    assert_eq!(
        ids(JobFilter {
            tenant_id: Some("acme".into()),
            ..Default::default()
        })
        .await,
        set(&[a1.id, a2.id])
    );
    assert_eq!(
        ids(JobFilter {
            use_case: Some("alpha".into()),
            ..Default::default()
        })
        .await,
        set(&[a1.id, g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            status: Some(JobStatus::Cancelled),
            ..Default::default()
        })
        .await,
        set(&[g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            kind: Some("other_kind".into()),
            ..Default::default()
        })
        .await,
        set(&[a2.id])
    );
    assert_eq!(
        ids(JobFilter {
            created_after: Some(t0 + chrono::TimeDelta::seconds(5)),
            ..Default::default()
        })
        .await,
        set(&[a2.id, g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            created_before: Some(t0 + chrono::TimeDelta::seconds(10)),
            ..Default::default()
        })
        .await,
        set(&[a1.id])
    );
    assert_eq!(
        ids(JobFilter {
            tenant_id: Some("acme".into()),
            use_case: Some("alpha".into()),
            status: Some(JobStatus::Pending),
            ..Default::default()
        })
        .await,
        set(&[a1.id])
    );
    // Values that look like SQL are just values.
    assert!(ids(JobFilter {
        tenant_id: Some("' OR 1=1 --".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(ids(JobFilter {
        kind: Some("%".into()),
        ..Default::default()
    })
    .await
    .is_empty());
}

/// Every page of `filter` from the start, each with the cursor it was asked with.
async fn walk(
    store: &dyn JobStore,
    filter: &JobFilter,
    page: PageRequest,
) -> Vec<(Option<JobId>, crate::store::Page)> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let got = store
            .list(filter, PageRequest { after, ..page })
            .await
            .unwrap();
        let next = got.next;
        pages.push((after, got));
        assert!(pages.len() < 1000, "the walk does not end");
        match next {
            Some(next) => {
                assert!(after.is_none_or(|a| next < a), "the cursor moves forward");
                after = Some(next);
            }
            None => return pages,
        }
    }
}

/// The ids of a walk, asserting newest first and no repeats.
fn walked_ids(pages: &[(Option<JobId>, crate::store::Page)]) -> Vec<JobId> {
    let ids: Vec<JobId> = pages
        .iter()
        .flat_map(|(_, p)| p.jobs.iter().map(|j| j.id))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, each job once");
    ids
}

pub async fn list_leaves_payloads_out_unless_asked<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut jobs = Vec::new();
    for (i, payload) in [
        json!({"to": "a@b.c", "big": "x".repeat(10_000)}),
        json!([1, 2, {"deep": [null, true]}]),
        json!("just a string"),
        serde_json::Value::Null,
    ]
    .into_iter()
    .enumerate()
    {
        let mut job = new_job(if i % 2 == 0 { "acme" } else { "globex" }, "alpha");
        job.payload = payload;
        jobs.push(f.add(job).await);
    }
    jobs.reverse(); // newest first
    let full: Vec<Job> = {
        let mut v = Vec::new();
        for j in &jobs {
            v.push(f.get(j.id).await);
        }
        v
    };
    let without = |job: &Job| Job {
        payload: serde_json::Value::Null,
        ..job.clone()
    };
    let acme = JobFilter {
        tenant_id: Some("acme".into()),
        ..JobFilter::default()
    };
    let kind = JobFilter {
        kind: Some("test_kind".into()),
        ..JobFilter::default()
    };
    // Every shape a store may build: no filter, tenant, other filters; scan bound or not; a
    // byte budget or not.
    for filter in [JobFilter::default(), acme.clone(), kind] {
        for max_scanned in [None, Some(2), Some(100)] {
            for max_bytes in [None, Some(1)] {
                let page = PageRequest {
                    include_payload: false,
                    max_scanned,
                    max_bytes,
                    ..PageRequest::new(None, 10)
                };
                let listed: Vec<Job> = walk(f.store.as_ref(), &filter, page)
                    .await
                    .into_iter()
                    .flat_map(|(_, p)| p.jobs)
                    .collect();
                let expected: Vec<Job> = full
                    .iter()
                    .filter(|j| filter.matches(j))
                    .map(without)
                    .collect();
                assert_eq!(
                    listed, expected,
                    "{filter:?} {max_scanned:?} {max_bytes:?}: every field but the payload"
                );
                let page = PageRequest {
                    include_payload: true,
                    ..page
                };
                let listed: Vec<Job> = walk(f.store.as_ref(), &filter, page)
                    .await
                    .into_iter()
                    .flat_map(|(_, p)| p.jobs)
                    .collect();
                let expected: Vec<Job> =
                    full.iter().filter(|j| filter.matches(j)).cloned().collect();
                assert_eq!(
                    listed, expected,
                    "{filter:?} {max_scanned:?} {max_bytes:?}: with payloads when asked"
                );
            }
        }
    }
    // The default and `new` keep payloads, as before the option existed.
    let page = f.store.list(&acme, PageRequest::default()).await.unwrap();
    assert_eq!(page.jobs, vec![full[1].clone(), full[3].clone()]);
}

pub async fn list_byte_budget_cuts_pages_and_continues<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    // String payloads: their JSON text is the same length in every store (the characters and
    // the two quotes).
    let sizes = [
        1000usize, 1000, 1000, 5000, 1000, 1000, 10, 1000, 1000, 1000,
    ];
    let mut all = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let mut job = new_job(if i % 3 == 0 { "globex" } else { "acme" }, "alpha");
        job.payload = json!("x".repeat(*n));
        let job = f.add(job).await;
        all.push((job.id, (*n as u64) + 2, job.tenant_id));
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.0));
    let size_of = |id: JobId| all.iter().find(|j| j.0 == id).map(|j| j.1).unwrap();
    let budget = 2500u64;
    for (filter, max_scanned) in [
        (JobFilter::default(), None),
        (JobFilter::default(), Some(4)),
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                ..JobFilter::default()
            },
            None,
        ),
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                use_case: Some("alpha".into()),
                ..JobFilter::default()
            },
            Some(3),
        ),
    ] {
        let page = PageRequest {
            include_payload: true,
            max_bytes: Some(budget),
            max_scanned,
            ..PageRequest::new(None, 4)
        };
        let pages = walk(f.store.as_ref(), &filter, page).await;
        let expected: Vec<JobId> = all
            .iter()
            .filter(|j| filter.tenant_id.as_ref().is_none_or(|t| &j.2 == t))
            .map(|j| j.0)
            .collect();
        assert_eq!(walked_ids(&pages), expected, "{filter:?}: every job once");
        let mut cut = 0;
        for (i, (_, p)) in pages.iter().enumerate() {
            let bytes: u64 = p.jobs.iter().map(|j| size_of(j.id)).sum();
            assert!(p.jobs.len() <= 4);
            assert!(
                bytes <= budget || p.jobs.len() == 1,
                "{filter:?}: page {i} holds {bytes} payload bytes in {} jobs",
                p.jobs.len()
            );
            for j in &p.jobs {
                assert_eq!(
                    j.payload.as_str().map(str::len),
                    Some(size_of(j.id) as usize - 2)
                );
            }
            // A page stops only before a job that does not fit, when full, or at the end of
            // its scan window: the next job of the walk would have taken it over the budget.
            if let (Some(next_job), true) = (
                pages.get(i + 1).and_then(|(_, n)| n.jobs.first()),
                max_scanned.is_none() && p.jobs.len() < 4,
            ) {
                assert!(
                    bytes + size_of(next_job.id) > budget,
                    "{filter:?}: page {i} was cut although the next job fits"
                );
                cut += 1;
            }
        }
        if max_scanned.is_none() {
            assert!(cut >= 2, "{filter:?}: the budget cut some pages");
        }
        // A job larger than the whole budget still comes, alone, and the walk goes on.
        let big = all.iter().find(|j| j.1 == 5002).unwrap().0;
        if expected.contains(&big) {
            let (_, p) = pages
                .iter()
                .find(|(_, p)| p.jobs.iter().any(|j| j.id == big))
                .unwrap();
            assert!(p.jobs.len() == 1 || p.jobs.last().map(|j| j.id) == Some(big));
        }
    }
    // Many small payloads: pages of exactly what the budget holds, however the store fetches.
    let mut tiny = Vec::new();
    for _ in 0..45 {
        let mut job = new_job("tiny", "alpha");
        job.payload = json!("x".repeat(10)); // 12 bytes
        tiny.push(f.add(job).await.id);
    }
    tiny.sort_by(|a, b| b.cmp(a));
    let filter = JobFilter {
        tenant_id: Some("tiny".into()),
        ..JobFilter::default()
    };
    for max_scanned in [None, Some(5_000)] {
        let pages = walk(
            f.store.as_ref(),
            &filter,
            PageRequest {
                include_payload: true,
                max_bytes: Some(12 * 20),
                max_scanned,
                ..PageRequest::new(None, 100)
            },
        )
        .await;
        let sizes: Vec<usize> = pages.iter().map(|(_, p)| p.jobs.len()).collect();
        assert_eq!(sizes, vec![20, 20, 5], "{max_scanned:?}");
        assert_eq!(walked_ids(&pages), tiny);
        let all = f
            .store
            .list(
                &filter,
                PageRequest {
                    include_payload: true,
                    max_bytes: Some(1 << 20),
                    max_scanned,
                    ..PageRequest::new(None, 100)
                },
            )
            .await
            .unwrap();
        assert_eq!((all.jobs.len(), all.next), (45, None), "{max_scanned:?}");
    }
    // A budget below every payload: one job per page, each page but the last with a cursor.
    let pages = walk(
        f.store.as_ref(),
        &JobFilter::default(),
        PageRequest {
            include_payload: true,
            max_bytes: Some(1),
            ..PageRequest::new(None, 100)
        },
    )
    .await;
    assert_eq!(pages.len(), sizes.len() + 45);
    assert!(pages.iter().all(|(_, p)| p.jobs.len() == 1));
    // Payloads left out are not counted: the budget does not cut.
    let page = f
        .store
        .list(
            &JobFilter::default(),
            PageRequest {
                include_payload: false,
                max_bytes: Some(1),
                ..PageRequest::new(None, 100)
            },
        )
        .await
        .unwrap();
    assert_eq!((page.jobs.len(), page.next), (sizes.len() + 45, None));
}

/// The page [`PageRequest`] defines for a scan bound (no byte budget): `candidates` newest
/// first, `matching` those passing the other filters.
fn reference_page(
    candidates: &[JobId],
    matching: &BTreeSet<JobId>,
    after: Option<JobId>,
    limit: u32,
    window: u32,
) -> (Vec<JobId>, Option<JobId>) {
    let examined: Vec<JobId> = candidates
        .iter()
        .copied()
        .filter(|id| after.is_none_or(|a| *id < a))
        .take(window as usize)
        .collect();
    let mut page = Vec::new();
    for id in &examined {
        if matching.contains(id) {
            if page.len() == limit as usize {
                return (page.clone(), page.last().copied());
            }
            page.push(*id);
        }
    }
    let next = if examined.len() == window as usize {
        examined.last().copied()
    } else {
        None
    };
    (page, next)
}

pub async fn list_scan_bound_walks_sparse_filters_exactly_once<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    // acme: 30 jobs, 4 of them of a rare type; globex: 10 jobs in between, 3 of them cancelled.
    let mut acme = Vec::new();
    let mut rare = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    let mut everything = Vec::new();
    for i in 0..30 {
        let mut job = new_job("acme", "alpha");
        if [2, 16, 17, 29].contains(&i) {
            job.kind = "rare".into();
        }
        let job = f.add(job).await;
        if job.kind == "rare" {
            rare.insert(job.id);
        }
        acme.push(job.id);
        everything.push(job.id);
        if i % 3 == 0 {
            let other = f.due("globex", "alpha").await;
            if i % 9 == 0 {
                f.store.cancel(other.id).await.unwrap();
                cancelled.insert(other.id);
            }
            everything.push(other.id);
        }
    }
    let desc = |ids: &[JobId]| {
        let mut v = ids.to_vec();
        v.sort_by(|a, b| b.cmp(a));
        v
    };
    let acme = desc(&acme);
    let everything = desc(&everything);
    let cases = [
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                kind: Some("rare".into()),
                ..JobFilter::default()
            },
            &acme,
            &rare,
        ),
        (
            JobFilter {
                status: Some(JobStatus::Cancelled),
                ..JobFilter::default()
            },
            &everything,
            &cancelled,
        ),
    ];
    for (filter, candidates, matching) in cases {
        for (limit, window) in [(2u32, 5u32), (1, 1), (10, 7), (3, 1000)] {
            let page = PageRequest {
                include_payload: false,
                max_scanned: Some(window),
                ..PageRequest::new(None, limit)
            };
            let pages = walk(f.store.as_ref(), &filter, page).await;
            let ids = walked_ids(&pages);
            assert_eq!(
                ids.iter().copied().collect::<BTreeSet<_>>(),
                *matching,
                "{filter:?} limit {limit} window {window}: every match exactly once"
            );
            for (after, p) in &pages {
                assert!(p.jobs.len() <= limit as usize);
                assert_eq!(
                    (p.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), p.next),
                    reference_page(candidates, matching, *after, limit, window),
                    "{filter:?} limit {limit} window {window}: the page after {after:?}"
                );
                // One call examines at most `window` candidates: the candidates below its
                // cursor down to (and including) its next cursor.
                if let Some(next) = p.next {
                    let examined = candidates
                        .iter()
                        .filter(|id| after.is_none_or(|a| **id < a) && **id >= next)
                        .count();
                    assert!(
                        examined <= window as usize,
                        "{filter:?} limit {limit} window {window}: a call examined {examined}"
                    );
                }
            }
            let calls = pages.len();
            let floor = candidates.len().div_ceil(window as usize);
            if (window as usize) < candidates.len() {
                assert!(
                    calls >= floor,
                    "{filter:?} window {window}: {calls} calls cannot cover {} candidates",
                    candidates.len()
                );
                assert!(
                    pages.iter().any(|(_, p)| p.jobs.is_empty() && p.next.is_some()),
                    "{filter:?} limit {limit} window {window}: a window without matches is an empty page with a cursor"
                );
            } else {
                assert_eq!(
                    calls,
                    matching.len().div_ceil(limit as usize).max(1),
                    "{filter:?}: a window wider than the data changes nothing"
                );
            }
        }
    }
}

pub async fn counts_and_prune<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    f.due("acme", "alpha").await;
    f.due("acme", "alpha").await;
    let (done, t) = f.running("acme", "beta").await;
    f.store.complete(done.id, t).await.unwrap();
    let cancelled = f.due("acme", "beta").await;
    f.store.cancel(cancelled.id).await.unwrap();
    let counts = f.store.counts().await.unwrap();
    let count = |uc: &str, s: JobStatus| {
        counts
            .iter()
            .find(|c| c.use_case == uc && c.status == s)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count("alpha", JobStatus::Pending), 2);
    assert_eq!(count("beta", JobStatus::Succeeded), 1);
    assert_eq!(count("beta", JobStatus::Cancelled), 1);
    assert_eq!(count("beta", JobStatus::Pending), 0);
    // Retention: nothing is old enough yet.
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 100).await.unwrap(),
        0
    );
    f.clock.advance(Duration::from_secs(7200));
    let young = f.due("acme", "beta").await;
    f.store.cancel(young.id).await.unwrap();
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 1).await.unwrap(),
        1,
        "bounded by the limit"
    );
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 100).await.unwrap(),
        1
    );
    assert_eq!(f.store.get(done.id).await.unwrap(), None);
    assert_eq!(f.store.get(cancelled.id).await.unwrap(), None);
    assert!(
        f.store.get(young.id).await.unwrap().is_some(),
        "recent terminal job kept"
    );
    let pending = f
        .store
        .list(
            &JobFilter {
                status: Some(JobStatus::Pending),
                ..Default::default()
            },
            PageRequest::new(None, 10),
        )
        .await
        .unwrap();
    assert_eq!(pending.jobs.len(), 2, "unfinished jobs are never pruned");
    f.store.ping().await.unwrap();
}

async fn next(
    w: &mut Box<dyn crate::store::WakeupStream>,
) -> Result<Option<Wakeup>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await
}

pub async fn wakeups_on_due_enqueue_and_finish<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let mut wake = f.store.subscribe().await.unwrap();
    f.due("acme", "alpha").await;
    let w = next(&mut wake)
        .await
        .expect("a wake-up after a due enqueue");
    assert!(
        matches!(w, Some(Wakeup::JobDue) | Some(Wakeup::Resync)),
        "{w:?}"
    );
    let (id, token) = f.dispatch_one("alpha").await;
    f.store.claim(id, token, LEASE).await.unwrap();
    f.store.complete(id, token).await.unwrap();
    // Some wake-up (capacity freed) arrives after the job left running.
    let mut saw_capacity = false;
    while let Ok(Some(w)) = next(&mut wake).await {
        if matches!(w, Wakeup::CapacityFreed | Wakeup::Resync) {
            saw_capacity = true;
            break;
        }
    }
    assert!(saw_capacity, "a wake-up after a job finished");
}

/// A trace context with a `tracestate`, distinct per `n`.
pub fn trace_context(n: u8) -> TraceContext {
    TraceContext::from_parts([n.max(1); 16], [0x5a; 8], 1)
        .unwrap()
        .with_tracestate(&format!("vendor=v{n},other=x"))
}

/// The enqueuer's trace context is stored with the job, single and batch, and read back by every
/// read (get, list, claim, batch claim); it survives an automatic retry, the reaper and a manual
/// retry. A job without one reads back without one.
pub async fn trace_context_round_trips_and_survives_retries<F, Fut>(make: F)
where
    F: Fn(Arc<ManualClock>) -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    let f = fixture(make).await;
    let tc = trace_context(1);
    let mut input = new_job("acme", "alpha");
    input.trace_context = Some(tc.clone());
    let enqueued = f.store.enqueue(input.clone()).await.unwrap();
    assert_eq!(enqueued.job.trace_context.as_ref(), Some(&tc));
    assert_eq!(f.get(input.id).await.trace_context.as_ref(), Some(&tc));
    let plain = f.due("acme", "beta").await;
    assert_eq!(plain.trace_context, None);
    assert_eq!(f.get(plain.id).await.trace_context, None);
    let bare = TraceContext::from_parts([9; 16], [8; 8], 0).unwrap();
    let mut no_state = new_job("acme", "beta");
    no_state.trace_context = Some(bare.clone());
    let no_state = f.add(no_state).await;
    assert_eq!(f.get(no_state.id).await.trace_context, Some(bare));

    // Batch: each job keeps its own (or none).
    let batch: Vec<NewJob> = (2..5u8)
        .map(|n| {
            let mut j = new_job("acme", "gamma");
            j.trace_context = (n != 3).then(|| trace_context(n));
            j
        })
        .collect();
    let stored = f.store.enqueue_many(batch.clone()).await.unwrap();
    for (want, got) in batch.iter().zip(&stored) {
        assert_eq!(got.job.trace_context, want.trace_context);
        assert_eq!(f.get(want.id).await.trace_context, want.trace_context);
    }
    let listed = f
        .store
        .list(
            &JobFilter {
                use_case: Some("gamma".into()),
                ..JobFilter::default()
            },
            PageRequest::new(None, 100),
        )
        .await
        .unwrap()
        .jobs;
    assert_eq!(listed.len(), 3);
    for job in &listed {
        let want = batch.iter().find(|b| b.id == job.id).unwrap();
        assert_eq!(job.trace_context, want.trace_context, "list");
    }
    // A batch claim hands the worker the context.
    let leased = f.store.lease_due("gamma", 10, 10, LEASE).await.unwrap();
    let claims: Vec<(JobId, LeaseToken)> =
        leased.iter().map(|d| (d.job_id, d.lease_token)).collect();
    for (result, want) in f
        .store
        .claim_many(claims, LEASE)
        .await
        .into_iter()
        .zip(&leased)
    {
        let job = result.unwrap();
        assert_eq!(job.id, want.job_id);
        let input = batch.iter().find(|b| b.id == job.id).unwrap();
        assert_eq!(job.trace_context, input.trace_context, "claim_many");
    }

    // Claim, fail with a retry, claim again: still there.
    let (id, token) = f.dispatch_one("alpha").await;
    assert_eq!(id, input.id);
    let claimed = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(claimed.trace_context.as_ref(), Some(&tc));
    let failed = f
        .store
        .fail(
            id,
            token,
            Failure {
                error: "later".into(),
                retry_in: Some(SECOND),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.trace_context.as_ref(), Some(&tc));
    f.clock.advance(SECOND);
    let (_, token) = f.dispatch_one("alpha").await;
    let second = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(second.trace_context.as_ref(), Some(&tc));
    // The reaper sends the expired run back; then it dies and is retried by hand.
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let reaped = f.get(id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(reaped.trace_context.as_ref(), Some(&tc));
    let (_, token) = f.dispatch_one("alpha").await;
    f.store.claim(id, token, LEASE).await.unwrap();
    let dead = f
        .store
        .fail(
            id,
            token,
            Failure {
                error: "gone".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    let retried = f.store.retry(id, None).await.unwrap();
    assert_eq!(retried.trace_context.as_ref(), Some(&tc));
    let (_, token) = f.dispatch_one("alpha").await;
    let last = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(last.trace_context, Some(tc));
}
