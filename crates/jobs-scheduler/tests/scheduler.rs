//! Scheduler behaviour against the in-memory adapters (the end-to-end suite runs the real binary
//! against Postgres and SQS).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobs_core::leader::{LeaderElection, LeaderLease, SoleLeader};
use jobs_core::memory::{MemoryStore, MemoryTransport};
use jobs_core::transport::MockTransport;
use jobs_core::{
    ApiStore, Clock, DispatchMessage, DispatchStore, EnqueueRequest, JobService, JobStatus,
    ManualClock, PlatformConfig, StoreError, SystemClock, Transport, TransportError, UseCaseConfig,
};
use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig, SchedulerError};

fn platform() -> Arc<PlatformConfig> {
    Arc::new(PlatformConfig::with_use_cases([
        UseCaseConfig::new("alpha", 3, Duration::from_secs(60)),
        UseCaseConfig::new("beta", 2, Duration::from_secs(60)),
    ]))
}

async fn enqueue(service: &JobService, use_case: &str, tolerance_secs: u64) -> jobs_core::Job {
    service
        .enqueue(
            EnqueueRequest::new("acme", use_case, "k", serde_json::json!({}))
                .delay_tolerance(Duration::from_secs(tolerance_secs)),
        )
        .await
        .unwrap()
        .job
}

#[tokio::test]
async fn tick_dispatches_earliest_deadline_first_under_each_cap() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let service = JobService::new(store.clone(), platform()).with_clock(clock.clone());
    let mut alpha = Vec::new();
    for tol in [500, 100, 300, 200, 400] {
        alpha.push(enqueue(&service, "alpha", tol).await);
    }
    for _ in 0..4 {
        enqueue(&service, "beta", 10).await;
    }
    let d = Dispatcher::new(
        store.clone(),
        transport.clone(),
        platform(),
        SchedulerConfig::default(),
    );
    let report = d.tick().await.unwrap();
    assert_eq!(report.dispatched, 5, "3 alpha (cap) + 2 beta (cap)");
    let got = transport
        .receive("alpha", 10, Duration::ZERO)
        .await
        .unwrap();
    let mut ids: Vec<_> = got
        .iter()
        .map(|m| DispatchMessage::decode(&m.body).unwrap())
        .map(|m| {
            assert_eq!((m.use_case.as_str(), m.attempt), ("alpha", 1));
            m.job_id
        })
        .collect();
    ids.sort();
    let mut expected = vec![alpha[1].id, alpha[3].id, alpha[2].id]; // tolerances 100, 200, 300
    expected.sort();
    assert_eq!(ids, expected, "the three earliest deadlines");
    assert_eq!(
        transport
            .receive("beta", 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        2
    );
    // Caps reached: the next tick sends nothing.
    assert_eq!(d.tick().await.unwrap().dispatched, 0);
}

#[tokio::test]
async fn a_failed_send_returns_the_jobs_at_once_and_nothing_is_lost() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let service = JobService::new(store.clone(), platform()).with_clock(clock.clone());
    let job = enqueue(&service, "alpha", 60).await;
    let mut broken = MockTransport::new();
    broken
        .expect_send_batch()
        .returning(|_, _| Err(TransportError::Unavailable("connection refused".into())));
    let config = SchedulerConfig {
        dispatch_lease: Duration::from_secs(300),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), Arc::new(broken), platform(), config.clone());
    // Beta (nothing due) went ahead: the tick reports alpha's failure instead of failing.
    let report = d.tick().await.unwrap();
    let err = report.failed.get("alpha").unwrap();
    assert!(
        matches!(err, SchedulerError::Transport { ref use_case, .. } if use_case == "alpha"),
        "{err:?}"
    );
    // Not left dispatched until the 300 s dispatch lease expires: pending again, no attempt.
    let back = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.attempts, back.lease_token),
        (JobStatus::Pending, 0, None)
    );
    // The transport recovers; the next tick sends the job without any clock movement.
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    let report = d.tick().await.unwrap();
    assert_eq!((report.reaped.total(), report.dispatched), (0, 1));
    let msg = transport
        .receive("alpha", 10, Duration::ZERO)
        .await
        .unwrap();
    let sent = DispatchMessage::decode(&msg[0].body).unwrap();
    assert_eq!(sent.job_id, job.id);
    let now = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((now.status, now.attempts), (JobStatus::Dispatched, 0));
    assert_eq!(now.lease_token, Some(sent.lease_token));
}

#[tokio::test]
async fn a_partial_batch_failure_is_counted_per_entry() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let service = JobService::new(store.clone(), platform()).with_clock(clock.clone());
    for _ in 0..3 {
        enqueue(&service, "alpha", 60).await;
    }
    let mut flaky = MockTransport::new();
    flaky.expect_send_batch().returning(|_, msgs| {
        Ok(vec![jobs_core::transport::EntryFailure {
            id: msgs[0].id.clone(),
            reason: "throttled".into(),
        }])
    });
    let d = Dispatcher::new(
        store.clone(),
        Arc::new(flaky),
        platform(),
        SchedulerConfig::default(),
    );
    let report = d.tick().await.unwrap();
    assert_eq!((report.dispatched, report.send_failed), (2, 1));
    // The refused entry's job is pending again; the two sent stay dispatched.
    let counts = store.counts().await.unwrap();
    let n = |status: JobStatus| {
        counts
            .iter()
            .filter(|c| c.use_case == "alpha" && c.status == status)
            .map(|c| c.count)
            .sum::<u64>()
    };
    assert_eq!((n(JobStatus::Pending), n(JobStatus::Dispatched)), (1, 2));
}

/// A scheduler loop running on its own task, until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<jobs_scheduler::Stopped>,
}

impl Running {
    fn start(d: Dispatcher, election: Arc<dyn LeaderElection>) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(Scheduler::new(d, election).run(async {
            let _ = stopped.await;
        }));
        Running { stop, handle }
    }

    /// Asks the loop to stop and waits (at most 5 s) for it to end.
    async fn stop(self) -> jobs_scheduler::Stopped {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .unwrap()
            .unwrap()
    }
}

/// Receives (without deleting) up to `n` messages of `use_case`, for at most 20 s from `started`;
/// answers how many came.
async fn receive_up_to(
    transport: &MemoryTransport,
    use_case: &str,
    n: usize,
    started: Instant,
) -> usize {
    let mut received = 0;
    while received < n && started.elapsed() < Duration::from_secs(20) {
        received += transport
            .receive(use_case, 10, Duration::from_millis(50))
            .await
            .unwrap()
            .len();
    }
    received
}

async fn wait_for_message(
    transport: &MemoryTransport,
    use_case: &str,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if !transport
            .receive(use_case, 1, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
        {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_wakes_on_enqueue_without_waiting_for_the_interval() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let service = JobService::new(store.clone(), platform()).with_clock(clock);
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    let running = Running::start(d, Arc::new(SoleLeader));
    // Let the first (empty) tick pass, then enqueue: only a wake-up can dispatch it in time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&service, "alpha", 60).await;
    let took = wait_for_message(&transport, "alpha", Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "dispatched after a wake-up, not after the hour-long interval"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_back_the_loop_off_instead_of_spinning() {
    // Every entry refused: each tick returns the job to pending, whose wake-up would start the
    // next tick at once. The loop must back off instead (200 ms, 400 ms, ...).
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let service = JobService::new(store.clone(), platform()).with_clock(clock);
    let job = enqueue(&service, "alpha", 60).await;
    let sends = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut refusing = MockTransport::new();
    let counted = Arc::clone(&sends);
    refusing.expect_send_batch().returning(move |_, msgs| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(msgs
            .iter()
            .map(|m| jobs_core::transport::EntryFailure {
                id: m.id.clone(),
                reason: "throttled".into(),
            })
            .collect())
    });
    let d = Dispatcher::new(
        store.clone(),
        Arc::new(refusing),
        platform(),
        SchedulerConfig::default(),
    );
    let running = Running::start(d, Arc::new(SoleLeader));
    tokio::time::sleep(Duration::from_millis(700)).await;
    running.stop().await;
    let sends = sends.load(std::sync::atomic::Ordering::SeqCst);
    // Ticks at ~0, 200 and 600 ms: 3 sends (4 on a slow machine), not hundreds.
    assert!((2..=5).contains(&sends), "{sends} sends in 700 ms");
    let now = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((now.status, now.attempts), (JobStatus::Pending, 0));
}

#[derive(Debug)]
struct NeverLeader;

#[async_trait]
impl LeaderElection for NeverLeader {
    async fn try_acquire(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError> {
        Ok(None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_dispatches_nothing_and_stops_on_shutdown() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let service = JobService::new(store.clone(), platform()).with_clock(clock);
    let job = enqueue(&service, "alpha", 60).await;
    let config = SchedulerConfig {
        leader_poll: Duration::from_millis(20),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    let running = Running::start(d, Arc::new(NeverLeader));
    assert!(
        wait_for_message(&transport, "alpha", Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(
        store.get(job.id).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    running.stop().await;
}

/// A rate-limited tenant's jobs start at its rate, not at the tick's: the leader writes the
/// configured limits to the store, and after each tick sleeps only until the next token (the
/// interval here is an hour, so only that wait can start them), never faster than the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_starts_a_rate_limited_tenant_at_its_rate_not_at_the_tick() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let transport = Arc::new(MemoryTransport::new(["alpha"]));
    let limit = jobs_core::RateLimit::new("alpha", Some("acme".into()), 20.0, 1).unwrap();
    let platform = Arc::new(
        PlatformConfig::with_use_cases([UseCaseConfig::new("alpha", 100, Duration::from_secs(60))])
            .with_rate_limits(jobs_core::RateLimitConfig::none().with(limit.clone())),
    );
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock);
    for _ in 0..30 {
        enqueue(&service, "alpha", 60).await;
    }
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let started = Instant::now();
    let running = Running::start(d, Arc::new(SoleLeader));
    let received = receive_up_to(&transport, "alpha", 30, started).await;
    let took = started.elapsed();
    assert_eq!(
        received, 30,
        "every job started within 20 s (took {took:?})"
    );
    // One at once (the burst), then 29 at 20 per second: 1.45 s at the least.
    assert!(
        took >= Duration::from_millis(1400),
        "faster than the limit: {took:?}"
    );
    assert_eq!(store.rate_limits().await.unwrap(), vec![limit]);
    running.stop().await;
}

/// A fleet's worth of expired leases (more than one reap batch) is returned and dispatched again
/// batch after batch, without waiting for the tick interval between batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_reaps_batch_after_batch_without_waiting_for_the_interval() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let transport = Arc::new(MemoryTransport::new(["alpha"]));
    let platform = Arc::new(PlatformConfig::with_use_cases([UseCaseConfig::new(
        "alpha",
        100,
        Duration::from_secs(600),
    )]));
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock.clone());
    for _ in 0..60 {
        enqueue(&service, "alpha", 600).await;
    }
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        dispatch_lease: Duration::from_secs(30),
        reap_batch: 2,
        ..SchedulerConfig::default()
    };
    // Lease all 60, lose their messages (a dead worker fleet), and let the leases expire.
    let d = Dispatcher::new(
        store.clone(),
        transport.clone(),
        platform.clone(),
        config.clone(),
    );
    assert_eq!(d.dispatch().await.unwrap().dispatched, 60);
    let mut lost = 0;
    while lost < 60 {
        let batch = transport
            .receive("alpha", 10, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "the first dispatch's messages are there");
        lost += batch.len();
        let receipts = batch.into_iter().map(|m| m.receipt).collect();
        transport.delete_batch("alpha", receipts).await.unwrap();
    }
    clock.advance(Duration::from_secs(31));

    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let started = Instant::now();
    let running = Running::start(d, Arc::new(SoleLeader));
    let received = receive_up_to(&transport, "alpha", 60, started).await;
    let took = started.elapsed();
    assert_eq!(
        received, 60,
        "every expired job dispatched again (took {took:?})"
    );
    // Thirty reaps of 2: back to back they take milliseconds; one per reap interval (100 ms)
    // would take 3 s, one per tick interval an hour.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    running.stop().await;
}

/// Moves the store's clock on by one token's time before every rate-wait read: the read then sees
/// a token that the pick just before it did not (the two statements run at two instants).
#[derive(Debug)]
struct TokenArrivesBetween(Arc<ManualClock>);

#[async_trait]
impl jobs_core::intercept::Interceptor for TokenArrivesBetween {
    async fn before(
        &self,
        op: jobs_core::intercept::StoreOp,
        _entries: usize,
    ) -> Result<(), StoreError> {
        if op == jobs_core::intercept::StoreOp::RateWait {
            self.0.advance(Duration::from_secs(1));
        }
        Ok(())
    }
}

/// A token that arrives between a pick and the rate-wait read must not leave the limited jobs
/// waiting for the tick interval (an hour here): the use case is picked again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_arrives_between_the_pick_and_the_wait_is_not_missed() {
    let clock = Arc::new(ManualClock::default());
    let inner: Arc<dyn jobs_core::JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let store = Arc::new(jobs_core::intercept::InterceptedStore::new(
        inner,
        TokenArrivesBetween(clock.clone()),
    ));
    let transport = Arc::new(MemoryTransport::new(["alpha"]));
    let limit = jobs_core::RateLimit::new("alpha", Some("acme".into()), 1.0, 1).unwrap();
    let platform = Arc::new(
        PlatformConfig::with_use_cases([UseCaseConfig::new(
            "alpha",
            100,
            Duration::from_secs(600),
        )])
        .with_rate_limits(jobs_core::RateLimitConfig::none().with(limit)),
    );
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock.clone());
    for _ in 0..8 {
        enqueue(&service, "alpha", 600).await;
    }
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let started = Instant::now();
    let running = Running::start(d, Arc::new(SoleLeader));
    let received = receive_up_to(&transport, "alpha", 8, started).await;
    let took = started.elapsed();
    assert_eq!(received, 8, "every job started (took {took:?})");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    running.stop().await;
}

/// Counts the store's picks and prunes, records when each pick started, and makes the first
/// `slow` picks take `pick_takes`.
#[derive(Debug, Default)]
struct SlowPicks {
    pick_takes: Duration,
    slow: std::sync::atomic::AtomicU32,
    picks: std::sync::atomic::AtomicU32,
    prunes: std::sync::atomic::AtomicU32,
    started: std::sync::Mutex<Vec<Instant>>,
}

impl SlowPicks {
    fn new(pick_takes: Duration, slow: u32) -> Arc<SlowPicks> {
        Arc::new(SlowPicks {
            pick_takes,
            slow: slow.into(),
            ..SlowPicks::default()
        })
    }
}

#[async_trait]
impl jobs_core::intercept::Interceptor for SlowPicks {
    async fn before(
        &self,
        op: jobs_core::intercept::StoreOp,
        _entries: usize,
    ) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        match op {
            jobs_core::intercept::StoreOp::LeaseDue => {
                self.picks.fetch_add(1, SeqCst);
                self.started.lock().unwrap().push(Instant::now());
                let slow = self
                    .slow
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if slow {
                    tokio::time::sleep(self.pick_takes).await;
                }
            }
            jobs_core::intercept::StoreOp::Prune => {
                self.prunes.fetch_add(1, SeqCst);
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the pacing tests run on: a store whose picks `SlowPicks` slows, a memory transport, the
/// platform and a service.
type PacedWorld = (
    Arc<jobs_core::intercept::InterceptedStore<Arc<SlowPicks>>>,
    Arc<MemoryTransport>,
    Arc<PlatformConfig>,
    JobService,
);

/// A [`PacedWorld`] with `use_cases` (name, cap).
fn paced_world(counts: &Arc<SlowPicks>, use_cases: &[(&str, u32)]) -> PacedWorld {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let inner: Arc<dyn jobs_core::JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let store = Arc::new(jobs_core::intercept::InterceptedStore::new(
        inner,
        Arc::clone(counts),
    ));
    let transport = Arc::new(MemoryTransport::new(use_cases.iter().map(|(n, _)| *n)));
    let platform =
        Arc::new(PlatformConfig::with_use_cases(use_cases.iter().map(
            |(name, cap)| UseCaseConfig::new(*name, *cap, Duration::from_secs(600)),
        )));
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock);
    (store, transport, platform, service)
}

/// Claims and completes the job of `m` (a worker's success), which frees its place.
async fn run_job(store: &dyn jobs_core::JobStore, m: &jobs_core::transport::ReceivedMessage) {
    let msg = DispatchMessage::decode(&m.body).unwrap();
    store
        .claim(msg.job_id, msg.lease_token, Duration::from_secs(60))
        .await
        .unwrap();
    store.complete(msg.job_id, msg.lease_token).await.unwrap();
}

/// A worker on use case `alpha` for `how_long`: receives, runs (claim, complete) and deletes each
/// job's message, pausing `between` jobs; answers how many it ran.
async fn work_for(
    store: &dyn jobs_core::JobStore,
    transport: &MemoryTransport,
    how_long: Duration,
    between: Duration,
) -> u32 {
    let started = Instant::now();
    let mut done = 0u32;
    while started.elapsed() < how_long {
        for m in transport
            .receive("alpha", 10, Duration::from_millis(20))
            .await
            .unwrap()
        {
            run_job(store, &m).await;
            transport
                .delete_batch("alpha", vec![m.receipt])
                .await
                .unwrap();
            done += 1;
            if !between.is_zero() {
                tokio::time::sleep(between).await;
            }
        }
    }
    done
}

/// A use case at its cap: every completion wakes the scheduler (a freed place), and every pick
/// takes 40 ms. A freed place waits as long as the last partial pick took, so picks gather the
/// places freed meanwhile (about one per 80 ms, not one per 40 ms), and jobs keep running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_places_after_a_partial_pick_wait_as_long_as_the_pick_took() {
    let counts = SlowPicks::new(Duration::from_millis(40), u32::MAX);
    let (store, transport, platform, service) = paced_world(&counts, &[("alpha", 20)]);
    for _ in 0..2000 {
        enqueue(&service, "alpha", 600).await;
    }
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        dispatch_batch: 1000,
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let running = Running::start(d, Arc::new(SoleLeader));
    // A worker: claims and completes each job it receives, one every 2 ms.
    let done = work_for(
        store.as_ref(),
        &transport,
        Duration::from_millis(1200),
        Duration::from_millis(2),
    )
    .await;
    let picks = counts.picks.load(std::sync::atomic::Ordering::SeqCst);
    running.stop().await;
    assert!(done >= 100, "jobs keep running at the cap: {done} in 1.2 s");
    // Back to back: ~30 picks in 1.2 s. Paced: ~15 (a slower machine only makes fewer).
    assert!(picks <= 21, "{picks} picks in 1.2 s");
}

/// A job that became due is never held by the pace: after a 300 ms partial pick (alpha at its
/// cap of 1), a freed place starts a pace of ~300 ms, and a job of another use case enqueued at
/// once is dispatched in a fraction of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_became_due_ends_the_pace() {
    let counts = SlowPicks::new(Duration::from_millis(300), 1);
    let (store, transport, platform, service) = paced_world(&counts, &[("alpha", 1), ("beta", 10)]);
    enqueue(&service, "alpha", 600).await;
    enqueue(&service, "alpha", 600).await;
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let running = Running::start(d, Arc::new(SoleLeader));
    // The first tick: alpha's slow pick leases one of its two jobs (its cap), beta's finds none.
    let first = transport
        .receive("alpha", 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    run_job(store.as_ref(), &first[0]).await;
    let enqueued = Instant::now();
    enqueue(&service, "beta", 600).await;
    let got = wait_for_message(&transport, "beta", Duration::from_secs(5)).await;
    let took = enqueued.elapsed();
    running.stop().await;
    assert!(got.is_some(), "beta's job dispatched");
    assert!(
        took < Duration::from_millis(150),
        "beta's job started {took:?} after its enqueue; the pace would hold it ~300 ms"
    );
}

/// The pace never holds the loop past the tick it would start anyway: with a tick interval of
/// 50 ms and picks of 300 ms at a cap, the next pick starts ~50 ms after the last one ends, not
/// 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pace_ends_at_the_next_tick() {
    let counts = SlowPicks::new(Duration::from_millis(300), u32::MAX);
    let (store, transport, platform, service) = paced_world(&counts, &[("alpha", 1)]);
    for _ in 0..20 {
        enqueue(&service, "alpha", 600).await;
    }
    let config = SchedulerConfig {
        tick_interval: Duration::from_millis(50),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform, config);
    let running = Running::start(d, Arc::new(SoleLeader));
    // A worker finishing each job as soon as it comes: a freed place right after every pick.
    work_for(
        store.as_ref(),
        &transport,
        Duration::from_millis(2000),
        Duration::ZERO,
    )
    .await;
    running.stop().await;
    let starts = counts.started.lock().unwrap().clone();
    assert!(starts.len() >= 4, "{} picks in 2 s", starts.len());
    // Each gap: the 300 ms pick, then ~50 ms to the next tick (a pace to its end: ~300 ms).
    let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest < Duration::from_millis(500),
        "picks {widest:?} apart; the pace went past the tick"
    );
}

/// A history larger than one prune batch is pruned batch after batch, not one batch per prune
/// interval (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_prunes_batch_after_batch_until_no_history_is_due() {
    let clock = Arc::new(ManualClock::default());
    let inner: Arc<dyn jobs_core::JobStore> = Arc::new(MemoryStore::new(clock.clone()));
    let counts = Arc::new(SlowPicks::default());
    let store = Arc::new(jobs_core::intercept::InterceptedStore::new(
        inner,
        Arc::clone(&counts),
    ));
    let service = JobService::new(store.clone(), platform()).with_clock(clock.clone());
    let mut jobs = Vec::new();
    for _ in 0..53 {
        let job = enqueue(&service, "alpha", 600).await;
        store.cancel(job.id).await.unwrap();
        jobs.push(job.id);
    }
    // Past the retention: every cancelled job is due for pruning.
    clock.advance(Duration::from_secs(2 * 3600));
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        retention: Duration::from_secs(3600),
        prune_interval: Duration::from_secs(3600),
        prune_batch: 5,
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(
        store.clone(),
        Arc::new(MemoryTransport::new(["alpha", "beta"])),
        platform(),
        config,
    );
    let running = Running::start(d, Arc::new(SoleLeader));
    let started = Instant::now();
    let mut left = jobs.len();
    while left > 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = 0;
        for id in &jobs {
            if store.get(*id).await.unwrap().is_some() {
                left += 1;
            }
        }
    }
    let prunes = counts.prunes.load(std::sync::atomic::Ordering::SeqCst);
    running.stop().await;
    assert_eq!(
        left,
        0,
        "every due job pruned (took {:?})",
        started.elapsed()
    );
    // Eleven batches of 5 (the last one short), then the next look only after the interval.
    assert_eq!(
        prunes, 11,
        "the last batch was not full: no more prunes until the interval"
    );
}
