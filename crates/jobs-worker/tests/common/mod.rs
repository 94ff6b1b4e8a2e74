//! A worker over in-memory ports, with the scheduler's dispatch driven by hand.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jobs_core::clock::ManualClock;
use jobs_core::memory::{MemoryStore, MemoryTransport};
use jobs_core::transport::OutgoingMessage;
use jobs_core::{
    ApiStore, Backoff, BackoffStrategy, DispatchMessage, DispatchStore, EnqueueRequest,
    HandlerRegistry, Jitter, Job, JobId, JobService, JobStatus, JobStore, PickRequest,
    PlatformConfig, Transport, UseCaseConfig,
};
use jobs_samples::{sample_registry_with, SampleOptions};
use jobs_worker::{Worker, WorkerConfig, WorkerError, WorkerReport, WorkerStats};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NOTIFICATIONS: &str = "notifications";
pub const LABELING: &str = "message_labeling";
/// How long any wait in these tests may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `check` every 10 ms until it returns `Some`, failing after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sample handlers with no simulated delay, to which tests add their own.
pub fn registry() -> HandlerRegistry {
    sample_registry_with(SampleOptions {
        work_delay: Duration::ZERO,
    })
}

/// Test settings: short waits and leases.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig::default()
        .with_receive_wait(Duration::from_millis(500))
        .with_heartbeat_lease(Duration::from_millis(300))
        .with_shutdown_grace(Duration::from_secs(5))
        .with_error_backoff(Duration::from_millis(50))
}

/// Both use cases with a cap of 50, so dispatch is never the bottleneck.
pub fn platform_config() -> PlatformConfig {
    PlatformConfig::with_use_cases([
        UseCaseConfig::new(NOTIFICATIONS, 50, Duration::from_secs(300)),
        UseCaseConfig::new(LABELING, 50, Duration::from_secs(600)),
    ])
}

/// A constant one-second backoff without jitter.
pub fn one_second_backoff() -> Backoff {
    Backoff {
        strategy: BackoffStrategy::Constant,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(1),
        jitter: Jitter::None,
    }
}

pub struct Harness {
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
    pub transport: Arc<MemoryTransport>,
    pub service: JobService,
    pub stats: WorkerStats,
    stop: Option<oneshot::Sender<()>>,
    run: Option<JoinHandle<Result<WorkerReport, WorkerError>>>,
}

impl Harness {
    pub fn start(registry: HandlerRegistry, config: WorkerConfig) -> Harness {
        let clock = Arc::new(ManualClock::at(Utc::now()));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        Harness::start_with(registry, config, clock, store.clone(), store)
    }

    /// A worker whose service runs over `service_store` (e.g. a faulty wrapper of `store`).
    pub fn start_with(
        registry: HandlerRegistry,
        config: WorkerConfig,
        clock: Arc<ManualClock>,
        store: Arc<MemoryStore>,
        service_store: Arc<dyn JobStore>,
    ) -> Harness {
        let transport = Arc::new(
            MemoryTransport::new([NOTIFICATIONS, LABELING])
                .with_visibility_timeout(Duration::from_millis(300)),
        );
        let service =
            JobService::new(service_store, Arc::new(platform_config())).with_clock(clock.clone());
        let worker = Worker::new(
            service.clone(),
            transport.clone() as Arc<dyn Transport>,
            registry,
            config,
        );
        let stats = worker.stats();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let run = tokio::spawn(worker.run(async move {
            let _ = stop_rx.await;
        }));
        Harness {
            clock,
            store,
            transport,
            service,
            stats,
            stop: Some(stop_tx),
            run: Some(run),
        }
    }

    pub async fn enqueue_req(&self, req: EnqueueRequest) -> Job {
        self.service.enqueue(req).await.expect("enqueue").job
    }

    pub async fn enqueue(&self, use_case: &str, kind: &str, payload: serde_json::Value) -> Job {
        self.enqueue_req(EnqueueRequest::new("acme", use_case, kind, payload))
            .await
    }

    /// Leases every due job and sends its dispatch message, as the scheduler would. Returns how
    /// many were sent.
    pub async fn dispatch(&self) -> usize {
        let mut sent = 0;
        for use_case in [NOTIFICATIONS, LABELING] {
            let leased = self
                .store
                .lease_due(
                    use_case,
                    PickRequest {
                        cap: 50,
                        limit: 50,
                        lease: Duration::from_secs(300),
                    },
                )
                .await
                .expect("lease_due");
            sent += leased.len();
            let bodies: Vec<String> = leased
                .iter()
                .map(|d| DispatchMessage::for_dispatch(d).encode())
                .collect();
            self.send_raw(use_case, bodies).await;
        }
        sent
    }

    pub async fn send_raw(&self, use_case: &str, bodies: Vec<String>) {
        if bodies.is_empty() {
            return;
        }
        let messages = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| OutgoingMessage {
                id: i.to_string(),
                body,
            })
            .collect();
        let failed = self
            .transport
            .send_batch(use_case, messages)
            .await
            .expect("send_batch");
        assert!(failed.is_empty(), "{failed:?}");
    }

    pub async fn job(&self, id: JobId) -> Job {
        self.store.get(id).await.expect("get").expect("job exists")
    }

    /// Waits until job `id` satisfies `pred`.
    pub async fn wait_job(&self, id: JobId, what: &str, pred: impl Fn(&Job) -> bool) -> Job {
        eventually(what, || async {
            let job = self.job(id).await;
            pred(&job).then_some(job)
        })
        .await
    }

    pub async fn wait_status(&self, id: JobId, status: JobStatus) -> Job {
        self.wait_job(id, status.as_str(), |j| j.status == status)
            .await
    }

    /// Waits until both queues are empty.
    pub async fn wait_drained(&self) {
        eventually("queues drained", || async {
            (self.transport.depth(NOTIFICATIONS) == 0 && self.transport.depth(LABELING) == 0)
                .then_some(())
        })
        .await
    }

    /// The store's time.
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        jobs_core::Clock::now(self.clock.as_ref())
    }

    /// Waits for a worker that must fail to start, and returns its error.
    pub async fn join_err(mut self) -> WorkerError {
        let run = self.run.take().expect("worker still running");
        match tokio::time::timeout(PATIENCE, run).await {
            Ok(Ok(Err(e))) => e,
            other => panic!("expected the worker to fail, got {other:?}"),
        }
    }

    /// Triggers shutdown without waiting for it.
    pub fn request_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Triggers shutdown and waits for `run` to return (within [`PATIENCE`]).
    pub async fn shutdown(&mut self) -> WorkerReport {
        self.request_shutdown();
        let run = self.run.take().expect("worker still running");
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("worker stopped in time")
            .expect("worker task did not panic")
            .expect("worker ran without error")
    }
}
