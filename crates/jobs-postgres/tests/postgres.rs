//! PostgreSQL-specific behaviour of `PgStore`: concurrency from separate connections, fencing,
//! wake-ups, reconnection and transactional enqueue. The shared semantics are in the
//! conformance suite (tests/conformance.rs).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, new_job, TestDb};
use jobs_core::backoff::{Backoff, BackoffStrategy, Jitter};
use jobs_core::store::Wakeup;
use jobs_core::{
    ApiStore, ChangeError, DispatchStore, EnqueueError, Failure, JobFilter, JobStatus, LeaseError,
    LeaseStore, LeaseToken, MaintenanceStore, ManualClock, PageRequest, PickRequest, StoreError,
};
use jobs_postgres::{PgStore, PoolOptions};

const LEASE: Duration = Duration::from_secs(300);
const WAIT: Duration = Duration::from_secs(10);

fn pool_of(n: usize) -> PoolOptions {
    PoolOptions {
        max_size: n,
        ..PoolOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_and_safe_to_run_concurrently() {
    common::ensure_database().await;
    let schema = common::fresh_schema();
    let url = common::database_url();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (url, schema) = (url.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let store = PgStore::connect(&url, &schema).unwrap();
            store.migrate().await.unwrap().applied
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap());
    }
    let all: Vec<i32> = jobs_postgres::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, all, "exactly one process applies each migration");
    let client = common::admin_client().await;
    let rows = client
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), all.len());
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    assert!(jobs_postgres::migrate(&client, "Bad-Name").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_round_trip_exactly() {
    let db = TestDb::new().await;
    let mut job = new_job("acme", "notifications");
    job.priority = -7;
    job.max_attempts = 9;
    job.backoff = Backoff {
        strategy: BackoffStrategy::Linear,
        base: Duration::from_micros(1_500_001),
        cap: Duration::from_secs(86_400),
        jitter: Jitter::Equal,
    };
    job.delay_tolerance = Duration::from_micros(12_345_678);
    job.timeout = Duration::from_micros(999_999);
    job.idempotency_key = Some("k-1".into());
    job.payload = serde_json::json!({"nested": [1, 2.5, "x", null, {"é": true}]});
    let run_at = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.123456Z")
        .unwrap()
        .to_utc();
    job.run_at = Some(run_at);
    let out = db.store.enqueue(job.clone()).await.unwrap();
    assert!(out.created);
    let got = db.store.get(job.id).await.unwrap().unwrap();
    assert_eq!(got, out.job);
    assert_eq!(got.backoff, job.backoff);
    assert_eq!(got.delay_tolerance, job.delay_tolerance);
    assert_eq!(got.timeout, job.timeout);
    assert_eq!(got.run_at, run_at);
    assert_eq!(
        got.deadline_at,
        run_at + chrono::TimeDelta::microseconds(12_345_678)
    );
    assert_eq!(got.payload, job.payload);
    assert_eq!(got.status, JobStatus::Pending);
    // Same key again: the existing job, not a new one.
    let again = db
        .store
        .enqueue(new_job("acme", "notifications").tap_key("k-1"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, job.id);
    db.drop().await;
}

trait TapKey {
    fn tap_key(self, key: &str) -> Self;
    fn tap_quota(self, quota: u32) -> Self;
}

impl TapKey for jobs_core::NewJob {
    fn tap_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }
    fn tap_quota(mut self, quota: u32) -> Self {
        self.quota = Some(quota);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_enqueues_against_a_quota_of_ten_accept_exactly_ten() {
    let db = TestDb::with_options(pool_of(50)).await;
    // Open 50 connections first so the enqueues really run side by side.
    let conns: Vec<_> =
        futures_util::future::join_all((0..50).map(|_| db.store.pool().get())).await;
    drop(conns);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .enqueue(new_job("t1", "notifications").tap_quota(10))
                .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => {
                assert!(e.created);
                ok += 1;
            }
            Err(EnqueueError::QuotaExceeded { limit: 10, .. }) => refused += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    let page = db
        .store
        .list(&JobFilter::default(), PageRequest::new(None, 100))
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 10);
    // Another tenant is unaffected; a finished job frees a slot.
    db.store
        .enqueue(new_job("t2", "notifications").tap_quota(10))
        .await
        .unwrap();
    db.store.cancel(page.jobs[0].id).await.unwrap();
    db.store
        .enqueue(new_job("t1", "notifications").tap_quota(10))
        .await
        .unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_enqueue_counts_its_own_jobs_and_is_all_or_none() {
    let db = TestDb::new().await;
    db.store
        .enqueue(new_job("t", "u").tap_quota(3))
        .await
        .unwrap();
    let batch: Vec<_> = (0..3).map(|_| new_job("t", "u").tap_quota(3)).collect();
    let err = db.store.enqueue_many(batch).await.unwrap_err();
    assert!(
        matches!(err, EnqueueError::QuotaExceeded { limit: 3, .. }),
        "{err}"
    );
    let all = JobFilter::default();
    let page = |s: &PgStore| {
        let s = s.clone();
        let all = all.clone();
        async move {
            s.list(&all, PageRequest::new(None, 100))
                .await
                .unwrap()
                .jobs
                .len()
        }
    };
    assert_eq!(
        page(&db.store).await,
        1,
        "nothing of the refused batch was inserted"
    );

    // Keys: one already stored, one repeated inside the batch.
    db.store
        .enqueue(new_job("t", "u").tap_key("old"))
        .await
        .unwrap();
    let batch = vec![
        new_job("t", "u").tap_key("old").tap_quota(3),
        new_job("t", "u").tap_key("new").tap_quota(3),
        new_job("t", "u").tap_key("new").tap_quota(3),
        new_job("other", "u").tap_key("new").tap_quota(1),
    ];
    let out = db.store.enqueue_many(batch.clone()).await.unwrap();
    assert_eq!(
        out.iter().map(|e| e.created).collect::<Vec<_>>(),
        vec![false, true, false, true]
    );
    assert_eq!(out[1].job.id, batch[1].id);
    assert_eq!(out[2].job.id, batch[1].id);
    assert_eq!(out[3].job.tenant_id, "other");
    assert_eq!(page(&db.store).await, 4);
    // Without quotas or keys: one statement.
    let plain: Vec<_> = (0..100)
        .map(|i| new_job(&format!("p{}", i % 3), "u"))
        .collect();
    let out = db.store.enqueue_many(plain.clone()).await.unwrap();
    assert_eq!(
        out.iter().map(|e| e.job.id).collect::<Vec<_>>(),
        plain.iter().map(|j| j.id).collect::<Vec<_>>()
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_lease_due_never_exceeds_the_cap() {
    let db = TestDb::new().await;
    for round in 0..5 {
        let use_case = format!("uc{round}");
        let jobs: Vec<_> = (0..20).map(|_| new_job("t", &use_case)).collect();
        db.store.enqueue_many(jobs).await.unwrap();
        let a = db.other_store(pool_of(2));
        let b = db.other_store(pool_of(2));
        let (ra, rb) = tokio::join!(
            a.lease_due(
                &use_case,
                PickRequest {
                    cap: 5,
                    limit: 20,
                    lease: LEASE
                }
            ),
            b.lease_due(
                &use_case,
                PickRequest {
                    cap: 5,
                    limit: 20,
                    lease: LEASE
                }
            )
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            ra.len() + rb.len(),
            5,
            "round {round}: {} + {}",
            ra.len(),
            rb.len()
        );
        let ids: HashSet<_> = ra.iter().chain(&rb).map(|d| d.job_id).collect();
        assert_eq!(ids.len(), 5);
        // Full: nothing more until a slot frees.
        assert!(db
            .store
            .lease_due(
                &use_case,
                PickRequest {
                    cap: 5,
                    limit: 20,
                    lease: LEASE
                }
            )
            .await
            .unwrap()
            .is_empty());
        let d = &ra.first().or(rb.first()).unwrap();
        db.store.cancel(d.job_id).await.unwrap();
        assert_eq!(
            db.store
                .lease_due(
                    &use_case,
                    PickRequest {
                        cap: 5,
                        limit: 20,
                        lease: LEASE
                    }
                )
                .await
                .unwrap()
                .len(),
            1
        );
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_due_is_earliest_deadline_first() {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::default());
    let store = db.with_clock(clock.clone());
    let now = clock.now_utc();
    let mut late = new_job("t", "u");
    late.delay_tolerance = Duration::from_secs(600);
    let mut early = new_job("t", "u");
    early.delay_tolerance = Duration::from_secs(10);
    let mut early_high = early.clone();
    early_high.id = jobs_core::job::new_job_id();
    early_high.priority = 5;
    let mut future = new_job("t", "u");
    future.run_at = Some(now + chrono::TimeDelta::seconds(60));
    future.delay_tolerance = Duration::ZERO;
    store
        .enqueue_many(vec![
            late.clone(),
            early.clone(),
            early_high.clone(),
            future.clone(),
        ])
        .await
        .unwrap();
    let leased = store
        .lease_due(
            "u",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    let order: Vec<_> = leased.iter().map(|d| d.job_id).collect();
    assert_eq!(order, vec![early_high.id, early.id, late.id]);
    assert!(leased.iter().all(|d| d.attempt == 1));
    clock.advance(Duration::from_secs(60));
    let leased = store
        .lease_due(
            "u",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![future.id]
    );
    db.drop().await;
}

trait NowUtc {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        jobs_core::Clock::now(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_tokens_change_nothing() {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::default());
    let store = db.with_clock(clock.clone());
    let job = store.enqueue(new_job("t", "u")).await.unwrap().job;
    let first = store
        .lease_due(
            "u",
            PickRequest {
                cap: 1,
                limit: 1,
                lease: Duration::from_secs(5),
            },
        )
        .await
        .unwrap()
        .remove(0);
    let stale = LeaseToken::generate();
    assert_eq!(
        store.claim(job.id, stale, LEASE).await.unwrap_err(),
        LeaseError::LeaseLost(job.id)
    );
    // The dispatch lease expires, the reaper returns the job, a new dispatch gets a new token.
    clock.advance(Duration::from_secs(6));
    assert_eq!(store.reap_expired(100).await.unwrap().dispatch_expired, 1);
    let second = store
        .lease_due(
            "u",
            PickRequest {
                cap: 1,
                limit: 1,
                lease: LEASE,
            },
        )
        .await
        .unwrap()
        .remove(0);
    assert_ne!(first.lease_token, second.lease_token);
    let before = store.get(job.id).await.unwrap().unwrap();
    let old = first.lease_token;
    assert_eq!(
        store.claim(job.id, old, LEASE).await.unwrap_err(),
        LeaseError::LeaseLost(job.id)
    );
    let running = store
        .claim(job.id, second.lease_token, LEASE)
        .await
        .unwrap();
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.attempts, 1);
    let lost = LeaseError::LeaseLost(job.id);
    assert_eq!(store.heartbeat(job.id, old, LEASE).await.unwrap_err(), lost);
    assert_eq!(store.complete(job.id, old).await.unwrap_err(), lost);
    let failure = Failure {
        error: "x".into(),
        retry_in: None,
    };
    assert_eq!(store.fail(job.id, old, failure).await.unwrap_err(), lost);
    assert_eq!(store.release(job.id, old).await.unwrap_err(), lost);
    assert_eq!(
        store
            .finish_cancelled(job.id, second.lease_token)
            .await
            .unwrap_err(),
        lost,
        "no cancel requested"
    );
    let after = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(after.status, JobStatus::Running);
    assert_eq!(after.lease_token, Some(second.lease_token));
    assert_ne!(before, after);
    // The right token works; then even it is stale.
    let failure = Failure {
        error: "boom\0!".into(),
        retry_in: Some(Duration::from_secs(30)),
    };
    let retried = store
        .fail(job.id, second.lease_token, failure)
        .await
        .unwrap();
    assert_eq!(retried.status, JobStatus::Pending);
    assert_eq!(retried.last_error.as_deref(), Some("boom\u{FFFD}!"));
    assert_eq!(
        retried.run_at,
        clock.now_utc() + chrono::TimeDelta::seconds(30)
    );
    assert_eq!(
        retried.deadline_at,
        retried.run_at + chrono::TimeDelta::seconds(300)
    );
    assert_eq!(
        store
            .complete(job.id, second.lease_token)
            .await
            .unwrap_err(),
        lost
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reaper_applies_the_expiry_rule() {
    let db = TestDb::new().await;
    let clock = Arc::new(ManualClock::default());
    let store = db.with_clock(clock.clone());
    let mut last_try = new_job("t", "u");
    last_try.max_attempts = 1;
    let retry = new_job("t", "u");
    let cancel = new_job("t", "u");
    store
        .enqueue_many(vec![last_try.clone(), retry.clone(), cancel.clone()])
        .await
        .unwrap();
    for d in store
        .lease_due(
            "u",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap()
    {
        store
            .claim(d.job_id, d.lease_token, Duration::from_secs(10))
            .await
            .unwrap();
    }
    store.cancel(cancel.id).await.unwrap();
    assert_eq!(
        store.reap_expired(10).await.unwrap().total(),
        0,
        "nothing expired yet"
    );
    clock.advance(Duration::from_secs(10));
    let report = store.reap_expired(10).await.unwrap();
    assert_eq!(
        (
            report.run_expired_dead,
            report.run_expired_retry,
            report.run_expired_cancelled
        ),
        (1, 1, 1)
    );
    let get = |id| store.get(id);
    assert_eq!(
        get(last_try.id).await.unwrap().unwrap().status,
        JobStatus::Dead
    );
    let r = get(retry.id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.run_at, r.lease_token),
        (JobStatus::Pending, clock.now_utc(), None)
    );
    assert_eq!(
        get(cancel.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
    // Limit bounds each state.
    let many: Vec<_> = (0..5).map(|_| new_job("t", "v")).collect();
    store.enqueue_many(many).await.unwrap();
    store
        .lease_due(
            "v",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: Duration::from_secs(1),
            },
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.reap_expired(2).await.unwrap().dispatch_expired, 2);
    assert_eq!(store.reap_expired(10).await.unwrap().dispatch_expired, 3);
    // Prune finished jobs older than an hour.
    clock.advance(Duration::from_secs(3601));
    assert_eq!(store.prune(Duration::from_secs(3600), 1).await.unwrap(), 1);
    assert_eq!(store.prune(Duration::from_secs(3600), 10).await.unwrap(), 1);
    assert_eq!(store.prune(Duration::MAX, 10).await.unwrap(), 0);
    db.drop().await;
}

async fn next(w: &mut Box<dyn jobs_core::store::WakeupStream>) -> Option<Wakeup> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("no wake-up within the timeout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wakeups_arrive_and_survive_a_lost_connection() {
    let db = TestDb::new().await;
    let mut wakeups = db.store.subscribe().await.unwrap();
    db.store.enqueue(new_job("t", "u")).await.unwrap();
    assert_eq!(next(&mut wakeups).await, Some(Wakeup::JobDue));
    let d = db
        .store
        .lease_due(
            "u",
            PickRequest {
                cap: 1,
                limit: 1,
                lease: LEASE,
            },
        )
        .await
        .unwrap()
        .remove(0);
    db.store
        .claim(d.job_id, d.lease_token, LEASE)
        .await
        .unwrap();
    db.store.complete(d.job_id, d.lease_token).await.unwrap();
    assert_eq!(next(&mut wakeups).await, Some(Wakeup::CapacityFreed));

    // Kill every backend of this test, the LISTEN connection included.
    assert!(db.kill_backends().await >= 1);
    assert_eq!(next(&mut wakeups).await, Some(Wakeup::Resync));
    db.store.enqueue(new_job("t", "u")).await.unwrap();
    assert_eq!(next(&mut wakeups).await, Some(Wakeup::JobDue));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_backend_does_not_fail_the_next_call() {
    let db = TestDb::with_options(pool_of(4)).await;
    let job = db.store.enqueue(new_job("t", "u")).await.unwrap().job;
    // Warm several pooled connections, then kill them all.
    let conns: Vec<_> = futures_util::future::join_all((0..4).map(|_| db.store.pool().get())).await;
    drop(conns);
    for _ in 0..3 {
        assert!(db.kill_backends().await >= 1);
        assert_eq!(db.store.get(job.id).await.unwrap().unwrap().id, job.id);
        db.store.ping().await.unwrap();
        db.store.enqueue(new_job("t", "u")).await.unwrap();
    }
    // Mid-use: kill while calls are in flight; every call either succeeds or reports a
    // retryable error, and the store is healthy afterwards.
    let store = db.store.clone();
    let load = tokio::spawn(async move {
        let mut errors = 0;
        for _ in 0..200 {
            match store.enqueue(new_job("t", "load")).await {
                Ok(_) => {}
                Err(EnqueueError::Store(e)) if e.is_retryable() => errors += 1,
                Err(e) => panic!("non-retryable error on connection loss: {e}"),
            }
        }
        errors
    });
    db.kill_backends().await;
    let _ = load.await.unwrap();
    db.store.ping().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_database_and_exhausted_pool_are_unavailable() {
    let store = PgStore::connect_with(
        "postgres://postgres@127.0.0.1:1/nothing",
        "async_jobs",
        PoolOptions {
            connect_timeout: Duration::from_secs(1),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    let db = TestDb::with_options(PoolOptions {
        max_size: 1,
        wait_timeout: Duration::from_millis(200),
        ..PoolOptions::default()
    })
    .await;
    let held = db.store.pool().get().await.unwrap();
    assert!(matches!(
        db.store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    drop(held);
    db.store.ping().await.unwrap();
    assert!(PgStore::connect("postgres://x@y/z", "Bad Schema").is_err());
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_in_the_callers_transaction_commits_or_rolls_back() {
    let db = TestDb::new().await;
    let mut client = db.store.pool().get().await.unwrap();

    let committed = new_job("t", "u").tap_quota(1);
    let tx = client.transaction().await.unwrap();
    let out = db.store.enqueue_in(&tx, committed.clone()).await.unwrap();
    assert!(out.created);
    assert!(
        db.store.get(committed.id).await.unwrap().is_none(),
        "invisible before commit"
    );
    tx.commit().await.unwrap();
    assert!(db.store.get(committed.id).await.unwrap().is_some());

    let rolled_back = new_job("t2", "u");
    let tx = client.transaction().await.unwrap();
    db.store
        .enqueue_many_in(&tx, vec![rolled_back.clone()])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(db.store.get(rolled_back.id).await.unwrap().is_none());

    // The quota counts the committed job.
    let tx = client.transaction().await.unwrap();
    let err = db
        .store
        .enqueue_in(&tx, new_job("t", "u").tap_quota(1))
        .await
        .unwrap_err();
    assert!(matches!(err, EnqueueError::QuotaExceeded { .. }));
    drop(tx);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_pages_by_id_with_filters() {
    let db = TestDb::new().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut j = new_job(if i % 2 == 0 { "even" } else { "odd" }, "u");
        j.kind = if i % 5 == 0 {
            "five".into()
        } else {
            "other".into()
        };
        ids.push(db.store.enqueue(j).await.unwrap().job.id);
    }
    let filter = JobFilter {
        tenant_id: Some("even".into()),
        ..JobFilter::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = db
            .store
            .list(&filter, PageRequest::new(after, 4))
            .await
            .unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut expected: Vec<_> = ids.iter().step_by(2).copied().collect();
    expected.reverse();
    assert_eq!(seen, expected);
    let five = JobFilter {
        kind: Some("five".into()),
        status: Some(JobStatus::Pending),
        ..JobFilter::default()
    };
    let page = db
        .store
        .list(&five, PageRequest::new(None, 10))
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 5);
    assert_eq!(page.next, None);
    let counts = db.store.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].count, 25);
    let _ = eventually(WAIT, || async { Some(()) }).await;
    db.drop().await;
}

/// The list's scan window is an ordered index walk that stops, never a bitmap scan plus sort of
/// all the tenant's rows (which the planner picks for a plain `LIMIT $n` above the tenant's
/// estimated row count, and which a wrong estimate would turn into a scan of the whole tenant).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_list_window_walks_the_index_in_order() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let s = &db.schema;
    // 20 tenants × 1,000 jobs; tenant t_3 holds 100 of a rare type.
    client
        .batch_execute(&format!(
            "INSERT INTO {s}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts,
                 backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us,
                 deadline_at, timeout_us, cancel_requested, created_at, updated_at, ready, finished_at)
             SELECT gen_random_uuid(), 't_' || (g % 20), 'u', CASE WHEN g % 200 = 3 THEN 'rare' ELSE 'common' END,
                 '{{}}'::jsonb, 'succeeded', 0, 1, 5, 'exponential', 1000000, 3600000000, 'full', now(),
                 0, now(), 1000000, false, now(), now(), true, now()
             FROM generate_series(1, 20000) g;
             ANALYZE {s}.jobs;"
        ))
        .await
        .unwrap();
    let statement = jobs_postgres::sql::list_statement(
        jobs_postgres::SchemaName::new(s).unwrap(),
        jobs_postgres::sql::ListShape {
            present: [true, false, false, true, false, false, false],
            payload: false,
            budget: false,
            bounded: true,
        },
    );
    let plan: serde_json::Value = client
        .query_one(
            &format!("EXPLAIN (FORMAT JSON) {statement}"),
            &[&"t_3", &"rare", &51i64, &5000i64],
        )
        .await
        .unwrap()
        .get(0);
    let text = plan.to_string();
    assert!(
        !text.contains("Bitmap") && !text.contains("\"Sort\""),
        "the window must be an ordered walk: {plan:#}"
    );
    assert!(text.contains("jobs_tenant_list_idx"), "{plan:#}");
    // And the store reads every rare job of the tenant through it.
    let filter = JobFilter {
        tenant_id: Some("t_3".into()),
        kind: Some("rare".into()),
        ..JobFilter::default()
    };
    let page = PageRequest {
        include_payload: false,
        max_scanned: Some(5000),
        ..PageRequest::new(None, 500)
    };
    let got = db.store.list(&filter, page).await.unwrap();
    assert_eq!((got.jobs.len(), got.next), (100, None));
    db.drop().await;
}

/// A store whose database defaults to REPEATABLE READ: its own transactions must still run at
/// READ COMMITTED, or the quota count (after the lock) cannot see the previous holder's commit
/// and admits more than the quota (review finding: 2 jobs admitted at quota 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_stay_exact_when_the_database_defaults_to_repeatable_read() {
    let db = TestDb::new().await;
    let url = db.repeatable_read_url();
    // The setting took: a plain session of this URL is at repeatable read.
    let plain = common::connect(&url.parse().unwrap()).await.unwrap();
    let level: String = plain
        .query_one("SHOW default_transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "repeatable read");

    let store = PgStore::connect_with(&url, &db.schema, pool_of(20)).unwrap();
    let mut handles = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.enqueue(new_job("t", "u").tap_quota(1)).await
        }));
    }
    let mut admitted = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(e) => admitted += usize::from(e.created),
            Err(EnqueueError::QuotaExceeded { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted, 1);

    // Retries under the same default: 20 cancelled jobs of another tenant (none of its jobs
    // unfinished) retried at once at quota 1 admit exactly one.
    let mut cancelled = Vec::new();
    for _ in 0..20 {
        let job = store.enqueue(new_job("r", "u")).await.unwrap().job;
        store.cancel(job.id).await.unwrap();
        cancelled.push(job.id);
    }
    let mut handles = Vec::new();
    for id in cancelled {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.retry(id, Some(1)).await.is_ok()
        }));
    }
    let mut retried = 0;
    for h in handles {
        retried += usize::from(h.await.unwrap());
    }
    assert_eq!(retried, 1);
    db.drop().await;
}

/// `enqueue_in` with a quota refuses a caller's transaction above READ COMMITTED with a typed
/// error (and writes nothing), and works at READ COMMITTED and without a quota at any level.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_in_refuses_a_quota_above_read_committed() {
    use tokio_postgres::IsolationLevel;
    let db = TestDb::new().await;
    // The review's repro: a REPEATABLE READ transaction whose snapshot predates another
    // enqueue's commit would admit a second job at quota 1.
    let mut caller = db.store.pool().get().await.unwrap();
    let tx = caller
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    tx.query_one("SELECT 1", &[]).await.unwrap(); // the snapshot is taken here
    db.store
        .enqueue(new_job("t", "u").tap_quota(1))
        .await
        .unwrap();
    let err = db
        .store
        .enqueue_in(&tx, new_job("t", "u").tap_quota(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EnqueueError::Store(StoreError::Unsupported(m)) if m.contains("READ COMMITTED") && m.contains("REPEATABLE READ")),
        "{err:?}"
    );
    let err = db
        .store
        .enqueue_many_in(&tx, vec![new_job("t", "u").tap_quota(5)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EnqueueError::Store(StoreError::Unsupported(_))),
        "{err:?}"
    );
    // Still usable, and jobs without a quota are fine at any level.
    let free = db
        .store
        .enqueue_in(&tx, new_job("free", "u"))
        .await
        .unwrap();
    assert!(free.created);
    tx.commit().await.unwrap();
    assert!(db.store.get(free.job.id).await.unwrap().is_some());

    // SERIALIZABLE is refused too.
    let tx = caller
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .await
        .unwrap();
    assert!(matches!(
        db.store
            .enqueue_in(&tx, new_job("s", "u").tap_quota(1))
            .await,
        Err(EnqueueError::Store(StoreError::Unsupported(_)))
    ));
    drop(tx);

    // A database that defaults to REPEATABLE READ: a plain transaction() is refused; one that
    // asks for READ COMMITTED works and counts exactly.
    let rr = PgStore::connect_with(&db.repeatable_read_url(), &db.schema, pool_of(2)).unwrap();
    let mut plain = common::connect(&db.repeatable_read_url().parse().unwrap())
        .await
        .unwrap();
    let tx = plain.transaction().await.unwrap();
    assert!(matches!(
        rr.enqueue_in(&tx, new_job("d", "u").tap_quota(1)).await,
        Err(EnqueueError::Store(StoreError::Unsupported(_)))
    ));
    drop(tx);
    let tx = plain
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .unwrap();
    assert!(
        rr.enqueue_in(&tx, new_job("d", "u").tap_quota(1))
            .await
            .unwrap()
            .created
    );
    assert!(matches!(
        rr.enqueue_in(&tx, new_job("d", "u").tap_quota(1)).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    tx.commit().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_statement_timeout_cuts_a_write_blocked_on_a_row_lock() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let db = TestDb::new().await;
    // One connection: the calls after the timeout reuse the session it cut.
    let store = db.other_store(PoolOptions {
        max_size: 1,
        statement_timeout: Some(TIMEOUT),
        ..PoolOptions::default()
    });
    let locked = store.enqueue(new_job("t", "u")).await.unwrap().job;
    let free = store.enqueue(new_job("t", "u")).await.unwrap().job;

    // Another session holds the job's row lock in an open transaction.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.query(
        &format!("SELECT id FROM {}.jobs WHERE id = $1 FOR UPDATE", db.schema),
        &[&locked.id],
    )
    .await
    .unwrap();

    let started = std::time::Instant::now();
    let err = tokio::time::timeout(WAIT, store.cancel(locked.id))
        .await
        .expect("the cancel waited for the lock instead of being cut")
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&err, ChangeError::Store(StoreError::Timeout(m)) if m.contains("57014")),
        "{err:?}"
    );
    assert!(
        matches!(&err, ChangeError::Store(e) if !e.is_retryable()),
        "not retried blindly"
    );
    assert!(
        waited >= TIMEOUT && waited < Duration::from_secs(2),
        "cut after {waited:?}"
    );

    // The pool's one connection still works, and nothing was changed.
    assert_eq!(
        store.get(locked.id).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    assert_eq!(
        store.cancel(free.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        store.cancel(locked.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_not_cut_by_the_statement_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let admin = common::admin_client().await;
    let schema = common::fresh_schema();
    let store = PgStore::connect_with(
        &common::url_with_app_name(&schema),
        &schema,
        PoolOptions {
            max_size: 1,
            statement_timeout: Some(TIMEOUT),
            ..PoolOptions::default()
        },
    )
    .unwrap();

    // Another process is migrating: it holds the migration lock for many timeouts.
    let lock = "hashtext('async_jobs.migrate'), hashtext($1)";
    admin
        .execute(&format!("SELECT pg_advisory_lock({lock})"), &[&schema])
        .await
        .unwrap();
    let migrating = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    // Until the store's session has waited for the lock for five timeouts (or has given up).
    eventually(WAIT, || {
        let (migrating, admin, schema) = (&migrating, &admin, &schema);
        async move {
            if migrating.is_finished() {
                return Some(());
            }
            let waiting: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                     AND wait_event_type = 'Lock' \
                     AND clock_timestamp() - query_start > interval '500 milliseconds'",
                    &[schema],
                )
                .await
                .unwrap()
                .get(0);
            (waiting > 0).then_some(())
        }
    })
    .await;
    admin
        .execute(&format!("SELECT pg_advisory_unlock({lock})"), &[&schema])
        .await
        .unwrap();
    let report = migrating
        .await
        .unwrap()
        .expect("migrated despite the timeout");
    let all: Vec<i32> = jobs_postgres::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(report.applied, all);

    // The session has its statement timeout back.
    let c = store.pool().get().await.unwrap();
    let timeout: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "100ms");
    drop(c);
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

/// Pruning drops the rate buckets that refilled (to the pick, the same as none) and those whose
/// limit is gone, so the table holds only tenants that started jobs lately.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_drops_refilled_rate_buckets() {
    let db = TestDb::new().await;
    let admin = common::admin_client().await;
    let clock = Arc::new(jobs_core::ManualClock::default());
    let store = db.with_clock(clock.clone());
    let limits = [
        jobs_core::RateLimit::new("alpha", None, 1.0, 1).unwrap(),
        jobs_core::RateLimit::new("beta", Some("gone".into()), 1.0, 1).unwrap(),
    ];
    store.set_rate_limits(&limits).await.unwrap();
    for tenant in ["a", "b", "gone"] {
        for use_case in ["alpha", "beta"] {
            store.enqueue(new_job(tenant, use_case)).await.unwrap();
        }
    }
    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    store.lease_due("alpha", pick).await.unwrap();
    store.lease_due("beta", pick).await.unwrap();
    let buckets = || async {
        admin
            .query_one(
                &format!("SELECT count(*) FROM {}.rate_buckets", db.schema),
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(buckets().await, 4, "alpha: a, b, gone; beta: gone");
    store.prune(Duration::from_secs(3600), 10).await.unwrap();
    assert_eq!(buckets().await, 4, "none has refilled");
    store.set_rate_limits(&limits[..1]).await.unwrap();
    store.prune(Duration::from_secs(3600), 10).await.unwrap();
    assert_eq!(buckets().await, 3, "beta's limit is gone");
    clock.advance(Duration::from_secs(2));
    store.prune(Duration::from_secs(3600), 10).await.unwrap();
    assert_eq!(buckets().await, 0, "refilled");
}

/// The `limited` flag only says where a job is indexed; the pick goes by the limits in force.
/// Jobs enqueued in a transaction that was open while a limit was set carry a stale flag (their
/// insert read the old limits): they are not leased past the limit, on their first attempt or on
/// a retry after a failure; the pick moves them to the limited lane instead, where the bucket
/// lets them through at the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_enqueued_across_a_change_of_limits_are_still_limited() {
    let db = TestDb::new().await;
    let clock = Arc::new(jobs_core::ManualClock::default());
    let store = db.with_clock(clock.clone());
    let mut client = db.store.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let jobs: Vec<_> = (0..20).map(|_| new_job("acme", "alpha")).collect();
    store.enqueue_many_in(&tx, jobs).await.unwrap();
    // The limit is written (and committed) while the enqueue's transaction is open.
    let limit = jobs_core::RateLimit::new("alpha", Some("acme".into()), 1.0, 2).unwrap();
    store.set_rate_limits(&[limit]).await.unwrap();
    tx.commit().await.unwrap();
    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    let mut leased = store.lease_due("alpha", pick).await.unwrap();
    leased.extend(store.lease_due("alpha", pick).await.unwrap());
    assert_eq!(leased.len(), 2, "the burst, not the 20 stale jobs");
    // A failed attempt brings a job back: still limited.
    let (id, token) = (leased[0].job_id, leased[0].lease_token);
    store.claim(id, token, LEASE).await.unwrap();
    let failure = jobs_core::store::Failure {
        error: "boom".into(),
        retry_in: Some(Duration::ZERO),
    };
    store.fail(id, token, failure).await.unwrap();
    clock.advance(Duration::from_millis(1500));
    assert_eq!(
        store.lease_due("alpha", pick).await.unwrap().len(),
        1,
        "one token"
    );
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        store.lease_due("alpha", pick).await.unwrap().len(),
        2,
        "the burst again"
    );
}

/// Fair share and the caller's transaction: jobs enqueued in a transaction that stays open while
/// other tenants take turns commit with tags below the clock; the next pick re-bases them to
/// their tenant's next turns instead of letting them take every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_caller_transaction_banks_no_turns() {
    let db = TestDb::new().await;
    let pick = |n: u32| PickRequest {
        cap: 100_000,
        limit: n,
        lease: Duration::from_secs(60),
    };
    let per_tenant = |leased: &[jobs_core::Dispatch]| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for d in leased {
            *m.entry(d.tenant_id.clone()).or_default() += 1;
        }
        m
    };
    let jobs = |t: &str, n: usize| (0..n).map(|_| new_job(t, "u")).collect::<Vec<_>>();
    let mut conn = db.store.pool().get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    db.store.enqueue_many_in(&tx, jobs("a", 20)).await.unwrap();
    db.store.enqueue_many(jobs("b", 60)).await.unwrap();
    let leased = db.store.lease_due("u", pick(30)).await.unwrap();
    assert_eq!(per_tenant(&leased).get("b"), Some(&30));
    tx.commit().await.unwrap();
    let leased = db.store.lease_due("u", pick(20)).await.unwrap();
    assert_eq!(
        per_tenant(&leased).get("a"),
        Some(&10),
        "a starts level: 1:1"
    );
}

/// `PgRoutes`: a job is enqueued in a caller's transaction only when its use case is kept in the
/// transaction's store; otherwise nothing is written and the error names both stores. The routed
/// store finds either store's jobs by id and keeps each use case in its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_enqueue_in_only_the_transactions_own_store() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    let routes = jobs_postgres::PgRoutes::new(a.store.clone())
        .with_route("alpha", a.store.clone())
        .with_route("beta", b.store.clone());
    assert_eq!(routes.stores().len(), 2, "a store given twice is one store");
    assert_eq!(routes.use_cases_of(1), vec!["beta"]);
    let store = routes.store_for("beta");
    let mut client = store.pool().get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    let elsewhere = new_job("t", "alpha");
    let err = routes
        .enqueue_in(store, &tx, elsewhere.clone())
        .await
        .unwrap_err();
    let EnqueueError::Store(StoreError::Unsupported(message)) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("'alpha' is kept in the default store")
            && message.contains("the store of use case 'beta'"),
        "{message}"
    );
    let err = routes
        .enqueue_many_in(store, &tx, vec![new_job("t", "beta"), elsewhere.clone()])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        EnqueueError::Store(StoreError::Unsupported(_))
    ));
    let own = new_job("t", "beta");
    routes.enqueue_in(store, &tx, own.clone()).await.unwrap();
    tx.commit().await.unwrap();

    assert!(b.store.get(own.id).await.unwrap().is_some());
    assert!(a.store.get(own.id).await.unwrap().is_none());
    assert!(
        a.store.get(elsewhere.id).await.unwrap().is_none(),
        "nothing written"
    );
    let routed = routes.routed();
    assert_eq!(routed.get(own.id).await.unwrap().unwrap().use_case, "beta");
    let alpha = routed.enqueue(new_job("t", "alpha")).await.unwrap().job;
    assert!(a.store.get(alpha.id).await.unwrap().is_some());
    assert!(b.store.get(alpha.id).await.unwrap().is_none());
    drop(client);
    a.drop().await;
    b.drop().await;
}

/// Whether job `id`'s current row version is heap-only: written by a HOT update, with no new
/// index entry (pageinspect's view of the tuple header, `HEAP_ONLY_TUPLE`).
async fn heap_only(client: &tokio_postgres::Client, schema: &str, id: uuid::Uuid) -> bool {
    client
        .query_one(
            &format!(
                "SELECT (h.t_infomask2 & 32768) <> 0 FROM {schema}.jobs j, \
                 LATERAL heap_page_items(get_raw_page('{schema}.jobs', (j.ctid::text::point)[0]::int)) h \
                 WHERE j.id = $1 AND h.lp = (j.ctid::text::point)[1]::int"
            ),
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Migration 10: the claim and heartbeats change no indexed column, so they are HOT updates; and
/// the reaper, which looks at an in-flight job at `reap_at` (not at the lease's end, which the
/// claim and heartbeats move), is never later than the lease: a look that finds the lease running
/// moves the next look to its end, and a lease shorter than the time to the look moves the look
/// earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_and_heartbeats_are_hot_and_the_reaper_is_never_late() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let s = db.schema.clone();
    if let Err(e) = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .await
    {
        // Another run created it at the same moment.
        assert!(
            client
                .query_opt(
                    "SELECT 1 FROM pg_extension WHERE extname = 'pageinspect'",
                    &[]
                )
                .await
                .unwrap()
                .is_some(),
            "pageinspect: {e}"
        );
    }
    let clock = Arc::new(ManualClock::default());
    let store = db.with_clock(clock.clone());
    let jobs: Vec<_> = (0..3).map(|_| new_job("t", "u")).collect();
    store.enqueue_many(jobs.clone()).await.unwrap();
    let pick = PickRequest {
        cap: 10,
        limit: 10,
        lease: LEASE,
    };
    let leased = store.lease_due("u", pick).await.unwrap();
    assert_eq!(leased.len(), 3);
    let token = |id: jobs_core::JobId| {
        leased
            .iter()
            .find(|d| d.job_id == id)
            .map(|d| d.lease_token)
            .unwrap()
    };
    let (long, short, unclaimed) = (jobs[0].id, jobs[1].id, jobs[2].id);
    let reap_at = |id: jobs_core::JobId| {
        let (client, s) = (&client, &s);
        async move {
            let row = client
                .query_one(
                    &format!(
                        "SELECT reap_at = lease_expires_at, reap_at FROM {s}.jobs WHERE id = $1"
                    ),
                    &[&id],
                )
                .await
                .unwrap();
            (
                row.get::<_, bool>(0),
                row.get::<_, chrono::DateTime<chrono::Utc>>(1),
            )
        }
    };
    // The first look is 10 s after the lease (its 300 s are longer).
    assert_eq!(
        reap_at(long).await.1,
        clock.now_utc() + chrono::Duration::seconds(10)
    );
    // A claim with a 30 s lease: the look stays first, nothing indexed changes.
    store
        .claim(long, token(long), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        heap_only(&client, &s, long).await,
        "the claim is a HOT update"
    );
    store
        .heartbeat(long, token(long), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        heap_only(&client, &s, long).await,
        "the heartbeat is a HOT update"
    );
    // A claim with a 2 s lease moves the look earlier (a regular update).
    store
        .claim(short, token(short), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(reap_at(short).await.0, "the look is at the lease's end");
    clock.advance(Duration::from_secs(2));
    let report = store.reap_expired(10).await.unwrap();
    assert_eq!(
        report.run_expired_retry, 1,
        "the short lease is reaped at its end"
    );
    // 10 s: the long job's lease (renewed to 30 s) and the unclaimed job's 300 s are running: not
    // reaped, their next looks moved to their leases' ends.
    clock.advance(Duration::from_secs(8));
    assert_eq!(store.reap_expired(10).await.unwrap().total(), 0);
    assert!(reap_at(long).await.0);
    assert!(reap_at(unclaimed).await.0);
    // Renewed again, then abandoned: reaped when the renewed lease ends, not before.
    store
        .heartbeat(long, token(long), Duration::from_secs(30))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(29));
    assert_eq!(store.reap_expired(10).await.unwrap().total(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.reap_expired(10).await.unwrap().run_expired_retry, 1);
    // The dispatched job: at the end of its 300 s dispatch lease.
    clock.advance(Duration::from_secs(300 - 40 - 1));
    assert_eq!(store.reap_expired(10).await.unwrap().total(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.reap_expired(10).await.unwrap().dispatch_expired, 1);
    db.drop().await;
}
