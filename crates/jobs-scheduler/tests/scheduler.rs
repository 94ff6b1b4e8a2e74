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
    Clock, DispatchMessage, EnqueueRequest, JobService, JobStatus, JobStore, ManualClock,
    PlatformConfig, StoreError, SystemClock, Transport, TransportError, UseCaseConfig,
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
async fn a_failed_send_leaves_jobs_for_the_reaper_and_nothing_is_lost() {
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let service = JobService::new(store.clone(), platform()).with_clock(clock.clone());
    let job = enqueue(&service, "alpha", 60).await;
    let mut broken = MockTransport::new();
    broken
        .expect_send_batch()
        .returning(|_, _| Err(TransportError::Unavailable("connection refused".into())));
    let config = SchedulerConfig {
        dispatch_lease: Duration::from_secs(10),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), Arc::new(broken), platform(), config.clone());
    let err = d.tick().await.unwrap_err();
    assert!(
        matches!(err, SchedulerError::Transport { ref use_case, .. } if use_case == "alpha"),
        "{err:?}"
    );
    assert_eq!(
        store.get(job.id).await.unwrap().unwrap().status,
        JobStatus::Dispatched
    );
    // The transport recovers; once the dispatch lease expires the job goes out again.
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    assert_eq!(d.tick().await.unwrap().dispatched, 0, "still leased");
    clock.advance(Duration::from_secs(11));
    let report = d.tick().await.unwrap();
    assert_eq!((report.reaped.dispatch_expired, report.dispatched), (1, 1));
    let msg = transport
        .receive("alpha", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        DispatchMessage::decode(&msg[0].body).unwrap().job_id,
        job.id
    );
    let now = store.get(job.id).await.unwrap().unwrap();
    assert_eq!((now.status, now.attempts), (JobStatus::Dispatched, 0));
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
        store,
        Arc::new(flaky),
        platform(),
        SchedulerConfig::default(),
    );
    let report = d.tick().await.unwrap();
    assert_eq!((report.dispatched, report.send_failed), (2, 1));
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(Scheduler::new(d, Arc::new(SoleLeader)).run(async {
        let _ = stopped.await;
    }));
    // Let the first (empty) tick pass, then enqueue: only a wake-up can dispatch it in time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&service, "alpha", 60).await;
    let took = wait_for_message(&transport, "alpha", Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "dispatched after a wake-up, not after the hour-long interval"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
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
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(Scheduler::new(d, Arc::new(NeverLeader)).run(async {
        let _ = stopped.await;
    }));
    assert!(
        wait_for_message(&transport, "alpha", Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(
        store.get(job.id).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}
