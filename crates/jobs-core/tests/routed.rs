//! What a [`RoutedStore`] adds to the conformance suite (`routed_conformance.rs`): each use
//! case's jobs stay in its store, calls by id find them wherever they are, a batch across stores
//! is refused whole, merged answers (lists, counts, pauses, limits, schedules) are exact, a
//! failing store hides no job, and every store's wake-ups arrive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::memory::MemoryStore;
use jobs_core::store::{Wakeup, WakeupStream};
use jobs_core::testkit::store::new_job;
use jobs_core::{
    ApiStore, ChangeError, Clock, DispatchStore, EnqueueError, JobFilter, JobId, JobStatus,
    JobStore, LeaseError, LeaseStore, MaintenanceStore, ManualClock, PageRequest, PauseScope,
    PickRequest, RateLimit, RoutedStore, ScheduleStore, StoreError, ValidationError,
};

const LEASE: Duration = Duration::from_secs(60);

fn pick(n: u32) -> PickRequest {
    PickRequest {
        cap: n,
        limit: n,
        lease: LEASE,
    }
}

/// The default store (`alpha`), a second one (`beta`) and the routed store over both.
struct Two {
    clock: Arc<ManualClock>,
    default: Arc<dyn JobStore>,
    beta: Arc<dyn JobStore>,
    routed: Arc<RoutedStore>,
}

fn two(hints: usize) -> Two {
    let clock = Arc::new(ManualClock::default());
    let default: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let routed = Arc::new(
        RoutedStore::new(default.clone())
            .with_route("beta", beta.clone())
            .with_hint_capacity(hints),
    );
    Two {
        clock,
        default,
        beta,
        routed,
    }
}

#[tokio::test]
async fn each_use_case_lives_in_its_store_and_calls_by_id_find_it() {
    for hints in [0, 100] {
        let t = two(hints);
        let a = t
            .routed
            .enqueue(new_job("acme", "alpha"))
            .await
            .unwrap()
            .job;
        let b = t.routed.enqueue(new_job("acme", "beta")).await.unwrap().job;
        assert!(t.default.get(a.id).await.unwrap().is_some());
        assert!(
            t.beta.get(a.id).await.unwrap().is_none(),
            "alpha never in beta's store"
        );
        assert!(t.beta.get(b.id).await.unwrap().is_some());
        assert!(
            t.default.get(b.id).await.unwrap().is_none(),
            "beta never in the default"
        );
        assert_eq!(t.routed.get(b.id).await.unwrap().unwrap().id, b.id);
        assert!(t.routed.get(uuid::Uuid::now_v7()).await.unwrap().is_none());

        // The worker's path, by id and token only: claim, heartbeat, complete, once.
        let leased = t.routed.lease_due("beta", pick(10)).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert!(t.routed.lease_due("alpha", pick(10)).await.unwrap().len() == 1);
        let token = leased[0].lease_token;
        let claimed = t
            .routed
            .claim_many(vec![(b.id, token), (b.id, token)], LEASE)
            .await;
        assert!(claimed[0].is_ok(), "{claimed:?}");
        assert!(
            matches!(claimed[1], Err(LeaseError::LeaseLost(_))),
            "claimed once"
        );
        t.routed.heartbeat(b.id, token, LEASE).await.unwrap();
        let done = t.routed.complete_many(vec![(b.id, token)]).await;
        assert_eq!(done, vec![Ok(())]);
        assert_eq!(
            t.routed.get(b.id).await.unwrap().unwrap().status,
            JobStatus::Succeeded
        );
        assert!(matches!(
            t.routed.complete(b.id, token).await,
            Err(LeaseError::LeaseLost(_))
        ));
        // Cancel and retry by id: a miss in the default store is not the answer.
        assert!(matches!(
            t.routed.cancel(b.id).await,
            Err(ChangeError::Illegal(_))
        ));
        let c = t.routed.enqueue(new_job("acme", "beta")).await.unwrap().job;
        assert_eq!(
            t.routed.cancel(c.id).await.unwrap().status,
            JobStatus::Cancelled
        );
        assert_eq!(
            t.routed.retry(c.id, None).await.unwrap().status,
            JobStatus::Pending
        );
        assert!(matches!(
            t.routed.cancel(uuid::Uuid::now_v7()).await,
            Err(ChangeError::NotFound(_))
        ));
        assert!(t.routed.queue_position(c.id, 10).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_batch_across_stores_is_refused_whole() {
    let t = two(100);
    let err = t
        .routed
        .enqueue_many(vec![new_job("acme", "alpha"), new_job("acme", "beta")])
        .await
        .unwrap_err();
    let EnqueueError::Invalid(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.code(), "batch_spans_stores");
    assert!(matches!(e, ValidationError::BatchSpansStores { .. }));
    assert!(err.to_string().contains("'alpha' and 'beta'"), "{err}");
    for store in [&t.default, &t.beta] {
        assert!(store.counts().await.unwrap().is_empty(), "nothing written");
    }
    // A batch within one store goes through, to that store.
    let out = t
        .routed
        .enqueue_many(vec![new_job("acme", "beta"), new_job("globex", "beta")])
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert!(t.default.counts().await.unwrap().is_empty());
}

#[tokio::test]
async fn lists_merge_across_stores_exactly_once_newest_first() {
    let t = two(100);
    let mut all = Vec::new();
    for i in 0..40 {
        let uc = if i % 3 == 0 { "beta" } else { "alpha" };
        let mut job = new_job(if i % 2 == 0 { "acme" } else { "globex" }, uc);
        job.payload = serde_json::json!("x".repeat(1 + (i * 37) % 300));
        all.push(t.routed.enqueue(job).await.unwrap().job);
        t.clock.advance(Duration::from_millis(1));
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.id));
    for filter in [
        JobFilter::default(),
        JobFilter {
            tenant_id: Some("acme".into()),
            ..JobFilter::default()
        },
        JobFilter {
            use_case: Some("beta".into()),
            ..JobFilter::default()
        },
    ] {
        let expected: Vec<JobId> = all
            .iter()
            .filter(|j| filter.matches(j))
            .map(|j| j.id)
            .collect();
        for (limit, max_scanned, max_bytes) in [
            (1, None, None),
            (7, None, None),
            (100, None, None),
            (4, Some(3), None),
            (5, Some(10), Some(400)),
            (50, None, Some(1)),
        ] {
            let mut seen = Vec::new();
            let mut after = None;
            let mut calls = 0;
            loop {
                let page = t
                    .routed
                    .list(
                        &filter,
                        PageRequest {
                            after,
                            limit,
                            include_payload: true,
                            max_bytes,
                            max_scanned,
                        },
                    )
                    .await
                    .unwrap();
                assert!(page.jobs.len() <= limit as usize);
                seen.extend(page.jobs.iter().map(|j| j.id));
                calls += 1;
                assert!(calls < 500, "the walk ends");
                match page.next {
                    Some(next) => {
                        assert!(after.is_none_or(|a| next < a), "the cursor moves on");
                        after = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(
                seen, expected,
                "{filter:?} limit {limit} scan {max_scanned:?} bytes {max_bytes:?}"
            );
        }
    }
}

#[tokio::test]
async fn merged_answers_count_each_store_once() {
    let clock = Arc::new(ManualClock::default());
    let default: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    // The same store named twice (two use cases on one database) is one store.
    let routed = RoutedStore::new(default.clone())
        .with_route("alpha", default.clone())
        .with_route("beta", beta.clone())
        .with_route("gamma", beta.clone());
    assert_eq!(routed.store_count(), 2);
    assert_eq!(routed.label(0), "the default store");
    assert_eq!(routed.label(1), "the store of use cases 'beta', 'gamma'");
    for uc in ["alpha", "beta", "beta", "gamma"] {
        routed.enqueue(new_job("acme", uc)).await.unwrap();
    }
    let counts: Vec<(String, u64)> = routed
        .counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.use_case, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![("alpha".into(), 1), ("beta".into(), 2), ("gamma".into(), 1)]
    );
    let backlog = routed
        .backlog(jobs_core::BacklogGrouping::UseCase)
        .await
        .unwrap();
    let due: Vec<u64> = backlog.rows.iter().map(|r| r.due).collect();
    assert_eq!(due, vec![1, 2, 1]);

    // Pauses and rate limits are written to the store whose pick applies them.
    routed.pause(&PauseScope::use_case("beta")).await.unwrap();
    routed
        .pause(&PauseScope::tenant("alpha", "acme"))
        .await
        .unwrap();
    assert_eq!(beta.pauses().await.unwrap().len(), 1);
    assert_eq!(default.pauses().await.unwrap().len(), 1);
    let scopes: Vec<PauseScope> = routed
        .pauses()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.scope)
        .collect();
    assert_eq!(
        scopes,
        vec![
            PauseScope::tenant("alpha", "acme"),
            PauseScope::use_case("beta")
        ]
    );
    assert!(routed.lease_due("beta", pick(10)).await.unwrap().is_empty());
    assert!(routed.resume(&PauseScope::use_case("beta")).await.unwrap());
    let limits = vec![
        RateLimit::new("alpha", None, 1.0, 1).unwrap(),
        RateLimit::new("gamma", Some("acme".into()), 2.0, 3).unwrap(),
    ];
    routed.set_rate_limits(&limits).await.unwrap();
    assert_eq!(
        default.rate_limits().await.unwrap(),
        vec![limits[0].clone()]
    );
    assert_eq!(beta.rate_limits().await.unwrap(), vec![limits[1].clone()]);
    assert_eq!(routed.rate_limits().await.unwrap(), limits);
    routed.set_rate_limits(&limits[..1]).await.unwrap();
    assert!(beta.rate_limits().await.unwrap().is_empty(), "cleared");

    // Reaping and pruning reach every store.
    let leased = routed.lease_due("gamma", pick(1)).await.unwrap();
    assert_eq!(leased.len(), 1);
    clock.advance(LEASE * 2);
    assert_eq!(routed.reap_expired(100).await.unwrap().dispatch_expired, 1);
    routed.ping().await.unwrap();
}

#[tokio::test]
async fn jobs_left_in_a_store_their_use_case_moved_from_are_reported() {
    let clock = Arc::new(ManualClock::default());
    let default: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock));
    // Enqueued while beta still lived in the default store.
    let left = default.enqueue(new_job("acme", "beta")).await.unwrap().job;
    let routed = RoutedStore::new(default).with_route("beta", beta);
    let misplaced = routed.misplaced().await.unwrap();
    assert_eq!(misplaced.len(), 1, "{misplaced:?}");
    assert_eq!(misplaced[0].store, "the default store");
    assert_eq!(misplaced[0].routed_to, "the store of use case 'beta'");
    assert_eq!(
        (
            misplaced[0].count.use_case.as_str(),
            misplaced[0].count.count
        ),
        ("beta", 1)
    );
    // Still found by id.
    assert!(routed.get(left.id).await.unwrap().is_some());
    // Not in beta's backlog: no pick will lease it where it is.
    let backlog = routed
        .backlog(jobs_core::backlog::BacklogGrouping::UseCase)
        .await
        .unwrap();
    assert!(backlog.rows.is_empty(), "{backlog:?}");
}

/// One name kept in two stores (created before its use case moved) is one schedule: the one in
/// the store of its use case is listed (and so fired), the other ignored.
#[tokio::test]
async fn a_schedule_name_in_two_stores_is_listed_once_from_its_use_cases_store() {
    use jobs_core::schedule::{check, JobTemplate, NewSchedule, ScheduleSource};
    let t = two(100);
    let config = jobs_core::PlatformConfig::with_use_cases([
        jobs_core::UseCaseConfig::new("alpha", 5, Duration::from_secs(60)),
        jobs_core::UseCaseConfig::new("beta", 5, Duration::from_secs(60)),
    ]);
    let draft = |cron: &str| {
        let new = NewSchedule {
            name: "nightly".into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            template: JobTemplate::new("acme", "beta", "k", serde_json::json!({})),
            missed: Default::default(),
        };
        check(new, ScheduleSource::Api, &config, t.clock.now()).unwrap()
    };
    // Left in the default store from before beta moved, and created again in beta's.
    t.default.create_schedule(draft("0 * * * *")).await.unwrap();
    t.beta.create_schedule(draft("30 * * * *")).await.unwrap();
    let listed = t.routed.schedules().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].cron, "30 * * * *");
}

/// `return_dispatched` and `delete_schedule` go on past a store that fails: the jobs and the
/// schedule of the store that answers are returned / deleted, and that is the answer.
#[tokio::test]
async fn writes_to_every_store_go_on_past_a_failing_one() {
    let clock = Arc::new(ManualClock::default());
    let outage = Arc::new(Outage::default());
    let default: Arc<dyn JobStore> = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(clock.clone())),
        outage.clone(),
    ));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let routed = RoutedStore::new(default)
        .with_route("beta", beta.clone())
        .with_hint_capacity(0);
    routed.enqueue(new_job("acme", "beta")).await.unwrap();
    let leased = routed.lease_due("beta", pick(1)).await.unwrap();
    let config = jobs_core::PlatformConfig::with_use_cases([jobs_core::UseCaseConfig::new(
        "beta",
        5,
        Duration::from_secs(60),
    )]);
    let new = jobs_core::schedule::NewSchedule {
        name: "nightly".into(),
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        template: jobs_core::schedule::JobTemplate::new("acme", "beta", "k", serde_json::json!({})),
        missed: Default::default(),
    };
    let draft = jobs_core::schedule::check(
        new,
        jobs_core::schedule::ScheduleSource::Api,
        &config,
        clock.now(),
    )
    .unwrap();
    routed.create_schedule(draft).await.unwrap().unwrap();
    outage.down.store(true, Ordering::SeqCst);
    // Not remembered (no hints): sent to every store; the default one fails, beta returns it.
    let returned = routed
        .return_dispatched(vec![(leased[0].job_id, leased[0].lease_token)])
        .await
        .unwrap();
    assert_eq!(returned, 1);
    assert_eq!(
        beta.get(leased[0].job_id).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    // Deleted in beta while the default store fails: deleted is the answer.
    assert!(routed.delete_schedule("nightly").await.unwrap());
    assert!(beta.get_schedule("nightly").await.unwrap().is_none());
    // Nothing deleted and a store failed: the failure is the answer.
    assert!(routed.delete_schedule("nowhere").await.is_err());
}

/// Fails every call of the wrapped store while `down` is set.
#[derive(Debug, Default)]
struct Outage {
    down: AtomicBool,
    /// Calls that reached the interceptor (every call but `subscribe`).
    calls: AtomicUsize,
}

#[async_trait]
impl Interceptor for Outage {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if op != StoreOp::Subscribe {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        match self.down.load(Ordering::SeqCst) && op != StoreOp::Subscribe {
            true => Err(StoreError::Unavailable("injected outage".into())),
            false => Ok(()),
        }
    }
}

#[tokio::test]
async fn a_failing_store_hides_no_job_of_another_and_is_named() {
    let clock = Arc::new(ManualClock::default());
    let outage = Arc::new(Outage::default());
    let default: Arc<dyn JobStore> = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(clock.clone())),
        outage.clone(),
    ));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let routed = RoutedStore::new(default)
        .with_route("beta", beta)
        .with_hint_capacity(0);
    let a = routed.enqueue(new_job("acme", "alpha")).await.unwrap().job;
    let b = routed.enqueue(new_job("acme", "beta")).await.unwrap().job;
    let leased = routed.lease_due("beta", pick(1)).await.unwrap();
    outage.down.store(true, Ordering::SeqCst);
    // The default store is asked first and fails; the job is in the other one.
    assert_eq!(routed.get(b.id).await.unwrap().unwrap().id, b.id);
    routed
        .claim(b.id, leased[0].lease_token, LEASE)
        .await
        .unwrap();
    // A job that may be in the failing store: the failure is the answer, not "missing".
    assert!(matches!(
        routed.get(a.id).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        routed
            .complete(a.id, jobs_core::LeaseToken::generate())
            .await,
        Err(LeaseError::Store(_))
    ));
    // Readiness and merged reads name the store that failed, never more than that.
    let err = routed.ping().await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("the default store"), "{err}");
    // Merged reads answer from the stores that answer (the failing one is logged).
    let counts = routed.counts().await.unwrap();
    assert!(counts.iter().all(|c| c.use_case == "beta"), "{counts:?}");
    assert!(routed.schedules().await.unwrap().is_empty());
    // Maintenance goes on in the stores that answer (the scheduler's tick reaps first).
    routed.enqueue(new_job("acme", "beta")).await.unwrap();
    let more = PickRequest {
        cap: 10,
        limit: 1,
        lease: LEASE,
    };
    assert_eq!(routed.lease_due("beta", more).await.unwrap().len(), 1);
    clock.advance(LEASE * 2);
    let reaped = routed.reap_expired(100).await.unwrap();
    assert_eq!(
        (reaped.dispatch_expired, reaped.run_expired_retry),
        (1, 1),
        "{reaped:?}"
    );
    assert_eq!(routed.prune(Duration::ZERO, 100).await.unwrap(), 0);
    outage.down.store(false, Ordering::SeqCst);
    assert!(routed.get(a.id).await.unwrap().is_some());
}

/// The worker's path with the use case of the message as a hint: straight to that use case's
/// store, so another store that is down is never asked, and a stale message for a healthy store
/// is a lease lost (dropped), not a store failure (left for redelivery).
#[tokio::test]
async fn the_use_case_hint_goes_straight_to_the_store_of_the_use_case() {
    let clock = Arc::new(ManualClock::default());
    let outage = Arc::new(Outage::default());
    let default: Arc<dyn JobStore> = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(clock.clone())),
        outage.clone(),
    ));
    let beta: Arc<dyn JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let scheduler = RoutedStore::new(default.clone()).with_route("beta", beta.clone());
    // The worker is another process: it has seen none of the jobs.
    let worker = RoutedStore::new(default).with_route("beta", beta);
    let b = scheduler
        .enqueue(new_job("acme", "beta"))
        .await
        .unwrap()
        .job;
    let leased = scheduler.lease_due("beta", pick(1)).await.unwrap();
    let token = leased[0].lease_token;
    outage.down.store(true, Ordering::SeqCst);
    let before = outage.calls.load(Ordering::SeqCst);

    // Without the hint, a stale message's miss in beta loses to the default store's failure.
    let stale = worker
        .claim_many(vec![(b.id, jobs_core::LeaseToken::generate())], LEASE)
        .await;
    assert!(matches!(stale[0], Err(LeaseError::Store(_))), "{stale:?}");
    let probed = outage.calls.load(Ordering::SeqCst);
    assert!(probed > before, "the default store was probed");

    // With the hint (a failed probe remembered nothing).
    worker.hint_use_case(b.id, "beta");
    let stale = worker
        .claim_many(vec![(b.id, jobs_core::LeaseToken::generate())], LEASE)
        .await;
    assert!(
        matches!(stale[0], Err(LeaseError::LeaseLost(_))),
        "{stale:?}"
    );
    let claimed = worker.claim_many(vec![(b.id, token)], LEASE).await;
    assert!(claimed[0].is_ok(), "{claimed:?}");
    worker.heartbeat(b.id, token, LEASE).await.unwrap();
    assert_eq!(
        worker.complete(b.id, token).await.unwrap().status,
        JobStatus::Succeeded
    );
    assert_eq!(
        outage.calls.load(Ordering::SeqCst),
        probed,
        "the store that is down was never asked"
    );
}

async fn next(w: &mut Box<dyn WakeupStream>) -> Option<Wakeup> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a wake-up within 10 s")
}

#[tokio::test]
async fn wakeups_of_every_store_arrive_on_one_stream() {
    let t = two(100);
    let mut wake = t.routed.subscribe().await.unwrap();
    // A due job in the second store wakes the scheduler.
    t.routed.enqueue(new_job("acme", "beta")).await.unwrap();
    assert!(matches!(
        next(&mut wake).await,
        Some(Wakeup::JobDue | Wakeup::Resync)
    ));
    // So does one in the default store.
    t.routed.enqueue(new_job("acme", "alpha")).await.unwrap();
    assert!(matches!(
        next(&mut wake).await,
        Some(Wakeup::JobDue | Wakeup::Resync)
    ));
}

#[tokio::test]
async fn schedules_live_in_their_use_cases_store() {
    use jobs_core::schedule::{check, JobTemplate, NewSchedule, ScheduleSource};
    let t = two(100);
    let config = jobs_core::PlatformConfig::with_use_cases([
        jobs_core::UseCaseConfig::new("alpha", 5, Duration::from_secs(60)),
        jobs_core::UseCaseConfig::new("beta", 5, Duration::from_secs(60)),
    ]);
    let draft = |name: &str, uc: &str| {
        let new = NewSchedule {
            name: name.into(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            template: JobTemplate::new("acme", uc, "k", serde_json::json!({})),
            missed: Default::default(),
        };
        check(new, ScheduleSource::Api, &config, t.clock.now()).unwrap()
    };
    assert!(t
        .routed
        .create_schedule(draft("nightly", "beta"))
        .await
        .unwrap()
        .is_some());
    assert!(t.beta.get_schedule("nightly").await.unwrap().is_some());
    assert!(t.default.get_schedule("nightly").await.unwrap().is_none());
    // Names are unique across stores.
    assert!(t
        .routed
        .create_schedule(draft("nightly", "alpha"))
        .await
        .unwrap()
        .is_none());
    // Moving it to a use case of another store is refused (its slot and job are one write).
    let err = t
        .routed
        .update_schedule(draft("nightly", "alpha"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
    assert!(
        err.to_string().contains("delete it and create it again"),
        "{err}"
    );
    // Firing writes the slot's job in the schedule's store.
    let s = t.routed.get_schedule("nightly").await.unwrap().unwrap();
    let job =
        jobs_core::schedule::slot_job(&s.name, &s.template, s.next_run_at, &config, t.clock.now())
            .unwrap();
    let next = s.next_run_at + chrono::TimeDelta::minutes(1);
    let fired = t
        .routed
        .fire("nightly", s.next_run_at, vec![job], next)
        .await
        .unwrap();
    assert_eq!((fired.advanced, fired.created), (true, 1));
    assert_eq!(t.beta.counts().await.unwrap()[0].count, 1);
    // Configured schedules: each store keeps exactly its own, and the configuration wins a name
    // over a schedule of another store.
    t.routed
        .create_schedule(draft("a-cfg", "beta"))
        .await
        .unwrap()
        .unwrap();
    let mut config_drafts = vec![draft("a-cfg", "alpha"), draft("b-cfg", "beta")];
    for d in &mut config_drafts {
        d.source = ScheduleSource::Config;
    }
    t.routed.sync_config_schedules(config_drafts).await.unwrap();
    let names =
        |v: Vec<jobs_core::Schedule>| v.into_iter().map(|s| s.name).collect::<BTreeSet<_>>();
    assert_eq!(
        names(t.default.schedules().await.unwrap()),
        BTreeSet::from(["a-cfg".to_owned()])
    );
    assert_eq!(
        names(t.beta.schedules().await.unwrap()),
        BTreeSet::from(["b-cfg".to_owned(), "nightly".to_owned()])
    );
    assert_eq!(
        names(t.routed.schedules().await.unwrap()),
        BTreeSet::from(["a-cfg".to_owned(), "b-cfg".to_owned(), "nightly".to_owned()])
    );
    assert!(t.routed.delete_schedule("nightly").await.unwrap());
    assert!(t.routed.get_schedule("nightly").await.unwrap().is_none());
}
