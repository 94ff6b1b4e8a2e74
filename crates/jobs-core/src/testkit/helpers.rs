//! Helpers for testing your handlers and code that enqueues, in the spirit of River's
//! `rivertest` and Oban's `drain_queue`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use jobs_core::testkit::{assert_enqueued, run_handler, TestPlatform};
//! use jobs_core::{EnqueueRequest, HandlerError, HandlerRegistry, JobContext, JobStatus};
//!
//! let mut handlers = HandlerRegistry::new();
//! handlers.register_fn("send_sms", |_ctx: JobContext, to: String| async move {
//!     if to.starts_with('+') { Ok(()) } else { Err(HandlerError::permanent("not E.164")) }
//! });
//!
//! // Run one handler directly.
//! assert!(run_handler(&handlers, "send_sms", serde_json::json!("+441234")).await.is_ok());
//!
//! // Or enqueue through the service and work every due job inline.
//! let platform = TestPlatform::new();
//! platform.service.enqueue(EnqueueRequest::new("acme", "notifications", "send_sms", serde_json::json!("0800"))).await.unwrap();
//! let job = assert_enqueued(platform.store.as_ref(), "send_sms").await;
//! let report = platform.work_until_idle(&handlers).await;
//! assert_eq!(report.dead, 1);
//! assert_eq!(platform.service.store().get(job.id).await.unwrap().unwrap().status, JobStatus::Dead);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::clock::{Clock, ManualClock};
use crate::config::PlatformConfig;
use crate::handler::{run_guarded, CancellationSignal, HandlerRegistry, HandlerResult, JobContext};
use crate::job::{new_job_id, Job};
use crate::memory::MemoryStore;
use crate::service::JobService;
use crate::status::JobStatus;
use crate::store::{DispatchStore, JobFilter, JobStore, LeaseStore, PageRequest, PickRequest};

/// A context for running a handler outside a worker: attempt 1 of 3, due now, 30 s timeout.
pub fn test_context(kind: &str) -> JobContext {
    let now = Utc::now();
    JobContext {
        job_id: new_job_id(),
        tenant_id: "test-tenant".to_owned(),
        use_case: "test".to_owned(),
        kind: kind.to_owned(),
        attempt: 1,
        max_attempts: 3,
        run_at: now,
        deadline_at: now,
        timeout: Duration::from_secs(30),
        cancel: CancellationSignal::never(),
        span: tracing::Span::none(),
    }
}

/// Runs the handler registered for `kind` on `payload` as a worker would (own task, timeout,
/// panics contained).
pub async fn run_handler(
    registry: &HandlerRegistry,
    kind: &str,
    payload: serde_json::Value,
) -> HandlerResult {
    run_guarded(registry, test_context(kind), payload).await
}

/// Every job of type `kind` in the store, newest first.
pub async fn enqueued(store: &dyn JobStore, kind: &str) -> Vec<Job> {
    let filter = JobFilter {
        kind: Some(kind.to_owned()),
        ..JobFilter::default()
    };
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = match store.list(&filter, PageRequest::new(after, 500)).await {
            Ok(page) => page,
            Err(e) => panic!("listing jobs failed: {e}"),
        };
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => return jobs,
        }
    }
}

/// Asserts that exactly one job of type `kind` was enqueued and returns it.
pub async fn assert_enqueued(store: &dyn JobStore, kind: &str) -> Job {
    let mut jobs = enqueued(store, kind).await;
    assert_eq!(
        jobs.len(),
        1,
        "expected exactly one '{kind}' job, found {}",
        jobs.len()
    );
    jobs.remove(0)
}

/// What [`TestPlatform::work_until_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkReport {
    /// Attempts run.
    pub attempts: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Jobs that ended dead.
    pub dead: u64,
    /// Jobs that ended cancelled.
    pub cancelled: u64,
}

/// An in-memory platform for tests: store, service and a manual clock over the default
/// configuration.
#[derive(Debug, Clone)]
pub struct TestPlatform {
    /// The store.
    pub store: Arc<MemoryStore>,
    /// The service over it.
    pub service: JobService,
    /// The clock every part reads.
    pub clock: Arc<ManualClock>,
}

impl Default for TestPlatform {
    fn default() -> Self {
        TestPlatform::with_config(PlatformConfig::default())
    }
}

impl TestPlatform {
    /// The default configuration (use cases `notifications` and `message_labeling`).
    pub fn new() -> Self {
        TestPlatform::default()
    }

    /// A platform with `config`.
    pub fn with_config(config: PlatformConfig) -> Self {
        let clock = Arc::new(ManualClock::at(Utc::now()));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let service = JobService::new(store.clone(), Arc::new(config)).with_clock(clock.clone());
        TestPlatform {
            store,
            service,
            clock,
        }
    }

    /// Works every due job inline, as the scheduler and a worker would (lease under the caps,
    /// claim, run guarded, record the outcome), until none is due. Retries whose backoff has not
    /// passed stay pending; advance [`clock`](Self::clock) and call again to run them.
    pub async fn work_until_idle(&self, registry: &HandlerRegistry) -> WorkReport {
        let mut report = WorkReport::default();
        let lease = Duration::from_secs(300);
        loop {
            let mut progressed = false;
            for uc in self.service.config().use_cases.values() {
                let leased = match self
                    .store
                    .lease_due(
                        &uc.name,
                        PickRequest {
                            cap: uc.max_concurrent,
                            limit: uc.max_concurrent,
                            lease,
                        },
                    )
                    .await
                {
                    Ok(leased) => leased,
                    Err(e) => panic!("lease failed: {e}"),
                };
                for d in leased {
                    progressed = true;
                    let Ok(job) = self.store.claim(d.job_id, d.lease_token, lease).await else {
                        continue;
                    };
                    report.attempts += 1;
                    let ctx = JobContext::for_job(&job, CancellationSignal::never());
                    let outcome = run_guarded(registry, ctx, job.payload.clone()).await;
                    match self
                        .service
                        .record_outcome(&job, d.lease_token, &outcome)
                        .await
                    {
                        Ok(done) => match done.status {
                            JobStatus::Succeeded => report.succeeded += 1,
                            JobStatus::Dead => report.dead += 1,
                            JobStatus::Cancelled => report.cancelled += 1,
                            _ => report.retried += 1,
                        },
                        Err(e) => panic!("recording the outcome failed: {e}"),
                    }
                }
            }
            if !progressed {
                return report;
            }
        }
    }

    /// Moves the clock forward (to make retries due).
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// The time the platform sees.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }
}
