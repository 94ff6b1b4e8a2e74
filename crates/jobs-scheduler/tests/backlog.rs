//! The backlog gauges and the scaling signal ([`BacklogMonitor`]) over the in-memory adapters,
//! read back from a Prometheus recorder installed for this test process.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jobs_core::leader::SoleLeader;
use jobs_core::memory::{MemoryStore, MemoryTransport};
use jobs_core::{
    EnqueueRequest, JobService, ManualClock, PauseScope, PlatformConfig, TenantLabelPolicy,
    TenantLabels, UseCaseConfig,
};
use jobs_scheduler::{BacklogConfig, BacklogMonitor, Dispatcher, Scheduler, SchedulerConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// The value of the series `name{labels}` (labels as rendered, e.g. `use_case="alpha"`).
fn gauge(name: &str, labels: &str) -> Option<f64> {
    let text = prometheus().render();
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

/// One use case per test: the recorder is the process's, shared by the tests running at once.
fn platform(use_case: &str, cap: u32) -> Arc<PlatformConfig> {
    Arc::new(PlatformConfig::with_use_cases([UseCaseConfig::new(
        use_case,
        cap,
        Duration::from_secs(60),
    )]))
}

async fn enqueue(service: &JobService, tenant: &str, use_case: &str) {
    service
        .enqueue(EnqueueRequest::new(
            tenant,
            use_case,
            "k",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test(start_paused = true)]
async fn the_signal_is_the_backlog_over_the_dispatch_rate_floored() {
    prometheus();
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let platform = platform("alpha", 3);
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock.clone());
    for _ in 0..9 {
        enqueue(&service, "acme", "alpha").await;
    }
    clock.advance(Duration::from_secs(30));
    let monitor = BacklogMonitor::new(
        store.clone(),
        platform.clone(),
        BacklogConfig {
            min_rate: 0.1,
            ..BacklogConfig::default()
        },
    );
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(MemoryTransport::new(["alpha"])),
        platform.clone(),
        SchedulerConfig::default(),
    );

    // Nothing dispatched yet: the floor drains 0.1 jobs/s, so 9 jobs are 90 s of backlog.
    let first = monitor.refresh().await.unwrap();
    let alpha = &first["alpha"];
    assert_eq!((alpha.due, alpha.oldest_age), (9, Duration::from_secs(30)));
    assert_eq!(alpha.dispatch_rate, 0.0);
    assert!(close(alpha.backlog_seconds, 90.0), "{alpha:?}");
    assert_eq!(
        gauge("async_jobs_backlog_jobs", "use_case=\"alpha\""),
        Some(9.0)
    );
    assert_eq!(
        gauge(
            "async_jobs_oldest_pending_age_seconds",
            "use_case=\"alpha\""
        ),
        Some(30.0)
    );
    assert_eq!(
        gauge("async_jobs_backlog_seconds", "use_case=\"alpha\""),
        Some(90.0)
    );
    assert!(!monitor.is_due(), "the next refresh waits for the interval");

    // Three dispatched (the cap) over the next 10 s: 0.3 jobs/s, and 6 left = 20 s.
    let report = dispatcher.tick().await.unwrap();
    assert_eq!(report.dispatched_by_use_case.get("alpha"), Some(&3));
    monitor.dispatched(&report.dispatched_by_use_case);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(monitor.is_due());
    let second = monitor.refresh().await.unwrap();
    let alpha = &second["alpha"];
    assert_eq!(alpha.due, 6);
    assert!(close(alpha.dispatch_rate, 0.3), "{alpha:?}");
    assert!(close(alpha.backlog_seconds, 20.0), "{alpha:?}");
    assert_eq!(
        gauge("async_jobs_dispatch_rate", "use_case=\"alpha\"").map(|v| close(v, 0.3)),
        Some(true)
    );

    // Stopping leading zeroes the signal: another scheduler measures now.
    monitor.stand_down();
    assert_eq!(
        gauge("async_jobs_backlog_seconds", "use_case=\"alpha\""),
        Some(0.0)
    );
    assert_eq!(
        gauge("async_jobs_backlog_jobs", "use_case=\"alpha\""),
        Some(0.0)
    );
}

#[tokio::test]
async fn tenant_series_follow_the_label_policy_and_overflow_to_other() {
    prometheus();
    let clock = Arc::new(ManualClock::default());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let platform = platform("beta", 3);
    let service = JobService::new(store.clone(), platform.clone()).with_clock(clock.clone());
    for (tenant, n) in [("t1", 2), ("t2", 1), ("t3", 4), ("t4", 1)] {
        for _ in 0..n {
            enqueue(&service, tenant, "beta").await;
        }
        clock.advance(Duration::from_secs(10));
    }
    let monitor = BacklogMonitor::new(
        store.clone(),
        platform.clone(),
        BacklogConfig {
            tenant_labels: TenantLabelPolicy {
                labels: TenantLabels::All,
                max_tenants: 2,
            },
            ..BacklogConfig::default()
        },
    );
    let figures = monitor.refresh().await.unwrap();
    assert_eq!(
        figures["beta"].due, 8,
        "the use case's totals are unchanged"
    );
    let tenant = |t: &str| format!("use_case=\"beta\",tenant=\"{t}\"");
    // The first two tenants (in store order) get their own series; the others add up in other,
    // with the oldest age among them.
    assert_eq!(
        gauge("async_jobs_tenant_backlog_jobs", &tenant("t1")),
        Some(2.0)
    );
    assert_eq!(
        gauge(
            "async_jobs_tenant_oldest_pending_age_seconds",
            &tenant("t1")
        ),
        Some(40.0)
    );
    assert_eq!(
        gauge("async_jobs_tenant_backlog_jobs", &tenant("t2")),
        Some(1.0)
    );
    assert_eq!(
        gauge("async_jobs_tenant_backlog_jobs", &tenant("other")),
        Some(5.0)
    );
    assert_eq!(
        gauge(
            "async_jobs_tenant_oldest_pending_age_seconds",
            &tenant("other")
        ),
        Some(20.0)
    );
    assert_eq!(gauge("async_jobs_tenant_backlog_jobs", &tenant("t3")), None);

    // A tenant whose backlog empties (here: paused) reads zero, not its last value.
    store_pause(&service, "beta", "t1").await;
    monitor.refresh().await.unwrap();
    assert_eq!(
        gauge("async_jobs_tenant_backlog_jobs", &tenant("t1")),
        Some(0.0)
    );
    assert_eq!(
        gauge(
            "async_jobs_tenant_oldest_pending_age_seconds",
            &tenant("t1")
        ),
        Some(0.0)
    );
    assert_eq!(
        gauge("async_jobs_backlog_jobs", "use_case=\"beta\""),
        Some(6.0)
    );
}

async fn store_pause(service: &JobService, use_case: &str, tenant: &str) {
    service
        .store()
        .pause(&PauseScope::tenant(use_case, tenant))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_leader_loop_exports_the_backlog() {
    prometheus();
    let store = Arc::new(MemoryStore::new(Arc::new(jobs_core::SystemClock)));
    // A cap of 1 and no worker: one job is dispatched, three wait.
    let platform = platform("gamma", 1);
    let service = JobService::new(store.clone(), platform.clone());
    for _ in 0..4 {
        enqueue(&service, "acme", "gamma").await;
    }
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(MemoryTransport::new(["gamma"])),
        platform.clone(),
        SchedulerConfig::default(),
    );
    let monitor = BacklogMonitor::new(store.clone(), platform.clone(), BacklogConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        Scheduler::new(dispatcher, Arc::new(SoleLeader))
            .with_backlog(monitor)
            .run(async {
                let _ = stopped.await;
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gauge("async_jobs_backlog_jobs", "use_case=\"gamma\"").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no backlog gauge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gauge("async_jobs_backlog_jobs", "use_case=\"gamma\""),
        Some(3.0)
    );
    stop.send(()).unwrap();
    run.await.unwrap();
    // Leadership given up on the way out: the signal reads zero.
    assert_eq!(
        gauge("async_jobs_backlog_jobs", "use_case=\"gamma\""),
        Some(0.0)
    );
}
