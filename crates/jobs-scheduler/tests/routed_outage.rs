//! The scheduler over a [`RoutedStore`] whose store of one use case is down: the other use
//! case keeps dispatching promptly and its cron keeps firing, while the failing one backs off on
//! its own and is reported in the tick.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::leader::SoleLeader;
use jobs_core::memory::{MemoryStore, MemoryTransport};
use jobs_core::schedule::{JobTemplate, MissedPolicy, NewSchedule};
use jobs_core::{
    Clock, DispatchMessage, EnqueueRequest, JobService, JobStore, PlatformConfig, RoutedStore,
    StoreError, SystemClock, Transport, UseCaseConfig,
};
use jobs_scheduler::{Cron, Dispatcher, Scheduler, SchedulerConfig, SchedulerError};
use serde_json::json;

/// Every call fails while `down` is set, as if the database were unreachable.
#[derive(Debug, Default)]
struct Outage {
    down: AtomicBool,
}

#[async_trait]
impl Interceptor for Outage {
    async fn before(&self, _op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

fn platform() -> Arc<PlatformConfig> {
    Arc::new(PlatformConfig::with_use_cases([
        UseCaseConfig::new("alpha", 10, Duration::from_secs(60)),
        UseCaseConfig::new("beta", 10, Duration::from_secs(60)),
    ]))
}

/// `alpha` in the default store, `beta` in a store of its own that is down.
fn routed() -> (Arc<RoutedStore>, Arc<InterceptedStore<Outage>>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let alpha = Arc::new(MemoryStore::new(clock.clone()));
    let beta = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(clock)),
        Outage::default(),
    ));
    beta.interceptor().down.store(true, Ordering::SeqCst);
    let routed = RoutedStore::new(alpha).with_route("beta", beta.clone() as Arc<dyn JobStore>);
    (Arc::new(routed), beta)
}

async fn enqueue(service: &JobService, use_case: &str) {
    service
        .enqueue(EnqueueRequest::new("acme", use_case, "k", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failing_store_is_reported_and_backs_off_alone() {
    let (store, beta) = routed();
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let service = JobService::new(store.clone(), platform());
    enqueue(&service, "alpha").await;
    let config = SchedulerConfig {
        min_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60),
        ..SchedulerConfig::default()
    };
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    let report = d.tick().await.unwrap();
    assert_eq!(report.dispatched_by_use_case.get("alpha"), Some(&1));
    assert!(
        matches!(report.failed.get("beta"), Some(SchedulerError::Store(_))),
        "{report:?}"
    );
    assert!(report
        .retry_in
        .is_some_and(|w| w <= Duration::from_secs(30)));
    // The next tick skips beta (still backing off) and dispatches alpha's new job.
    enqueue(&service, "alpha").await;
    let report = d.tick().await.unwrap();
    assert_eq!(report.dispatched_by_use_case.get("alpha"), Some(&1));
    assert_eq!(report.backing_off, vec!["beta".to_owned()]);
    assert!(report.failed.is_empty());
    // Every use case failing fails the tick (the loop then backs off as a whole).
    beta.interceptor().down.store(false, Ordering::SeqCst);
    let d = Dispatcher::new(
        store.clone(),
        transport,
        Arc::new(PlatformConfig::with_use_cases([UseCaseConfig::new(
            "beta",
            10,
            Duration::from_secs(60),
        )])),
        SchedulerConfig::default(),
    );
    beta.interceptor().down.store(true, Ordering::SeqCst);
    assert!(matches!(d.tick().await, Err(SchedulerError::Store(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_down_does_not_hold_back_the_other_use_case_or_its_cron() {
    let (store, _beta) = routed();
    let transport = Arc::new(MemoryTransport::new(["alpha", "beta"]));
    let service = JobService::new(store.clone(), platform());
    // A long interval and a long error backoff: only wake-ups and the cron slot can start
    // alpha's jobs in time, and a loop backing off as a whole would hold them for 30 s.
    let config = SchedulerConfig {
        tick_interval: Duration::from_secs(3600),
        min_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60),
        ..SchedulerConfig::default()
    };
    let every_second = NewSchedule {
        name: "alpha-every-second".into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        template: JobTemplate::new("acme", "alpha", "cron", json!({})),
        missed: MissedPolicy::default(),
    };
    let cron = Cron::new(store.clone(), platform()).with_configured(vec![every_second]);
    let d = Dispatcher::new(store.clone(), transport.clone(), platform(), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(
        Scheduler::new(d, Arc::new(SoleLeader))
            .with_cron(cron)
            .run(async {
                let _ = stopped.await;
            }),
    );
    // Let the first ticks meet the outage, then enqueue for alpha.
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&service, "alpha").await;
    let started = Instant::now();
    let (mut plain, mut cron_jobs) = (None, 0);
    while (plain.is_none() || cron_jobs == 0) && started.elapsed() < Duration::from_secs(10) {
        for m in transport
            .receive("alpha", 10, Duration::from_millis(50))
            .await
            .unwrap()
        {
            match DispatchMessage::decode(&m.body).unwrap().kind.as_str() {
                "cron" => cron_jobs += 1,
                _ => plain = plain.or(Some(started.elapsed())),
            }
        }
    }
    let plain = plain.expect("alpha's job dispatched while beta's store is down");
    assert!(plain < Duration::from_secs(5), "took {plain:?}");
    assert!(
        cron_jobs > 0,
        "alpha's cron fired while beta's store is down"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}
