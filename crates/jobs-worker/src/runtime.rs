//! The [`Worker`]: receive loops per use case, a shared pool of slots, and the shutdown drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::{HandlerRegistry, JobService, Transport};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::WorkerConfig;
use crate::execute::Executor;
use crate::receive::ReceiveLoop;
use crate::report::{Counters, WorkerReport};

/// How long, after the grace, executions get to release their jobs before they are aborted.
const RELEASE_BOUND: Duration = Duration::from_secs(4);

/// The worker could not start or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// Neither the worker configuration nor the platform configuration names a use case.
    #[error("no use case to poll: configure ASYNC_JOBS_SQS_QUEUE_<USE_CASE> or ASYNC_JOBS_WORKER_USE_CASES")]
    NoUseCases,
    /// The worker was asked to poll a use case the platform does not configure.
    #[error("unknown use case '{0}': it has no ASYNC_JOBS_SQS_QUEUE_<USE_CASE> entry")]
    UnknownUseCase(String),
    /// A setting is out of range.
    #[error("invalid worker setting: {0}")]
    InvalidConfig(String),
    /// A receive loop ended abnormally (a bug); the worker drained and stopped.
    #[error("receive loop failed: {0}")]
    ReceiveLoopFailed(String),
}

/// Live counters of a running worker (for health checks, dashboards and tests).
#[derive(Debug, Clone)]
pub struct WorkerStats(Arc<Counters>);

impl WorkerStats {
    /// What the worker has done so far.
    pub fn snapshot(&self) -> WorkerReport {
        self.0.report()
    }
}

/// Runs registered handlers for jobs dispatched to one or more use-case queues.
///
/// See the [crate docs](crate) for the whole life of a message and a job.
#[derive(Debug)]
pub struct Worker {
    service: JobService,
    transport: Arc<dyn Transport>,
    registry: HandlerRegistry,
    config: WorkerConfig,
    counters: Arc<Counters>,
    span_parent: Option<SpanParent>,
}

/// Makes an attempt's span continue the trace its job was enqueued in (see
/// [`Worker::with_span_parent`]); `None` when the job carries no trace context.
pub type SpanParent = fn(&tracing::Span, Option<&jobs_core::TraceContext>);

impl Worker {
    /// A worker over `service` (its store holds the truth), receiving from `transport`, running
    /// `registry`'s handlers as `config` says.
    pub fn new(
        service: JobService,
        transport: Arc<dyn Transport>,
        registry: HandlerRegistry,
        config: WorkerConfig,
    ) -> Self {
        let labels = jobs_core::TenantLabeler::new(config.tenant_labels.clone());
        Worker {
            service,
            transport,
            registry,
            config,
            counters: Arc::new(Counters::new(labels)),
            span_parent: None,
        }
    }

    /// Sets how each attempt's `job` span is joined to the trace the job was enqueued in. The
    /// runtime knows no tracing backend; the process wiring passes the OpenTelemetry one
    /// (`jobs_http::telemetry::set_parent`, which `app` uses). Without it the span is a root.
    pub fn with_span_parent(mut self, span_parent: SpanParent) -> Self {
        self.span_parent = Some(span_parent);
        self
    }

    /// A handle on the worker's counters, usable while [`run`](Self::run) runs.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats(Arc::clone(&self.counters))
    }

    /// The use cases this worker polls: the configured ones, or every use case of the platform
    /// configuration. Fails on an unknown use case or a setting out of range.
    pub fn use_cases(&self) -> Result<Vec<String>, WorkerError> {
        if self.config.concurrency == 0 {
            return Err(WorkerError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.config.heartbeat_lease.is_zero() {
            return Err(WorkerError::InvalidConfig(
                "heartbeat lease must be positive".into(),
            ));
        }
        let platform = self.service.config();
        let use_cases: Vec<String> = if self.config.use_cases.is_empty() {
            platform.use_cases.keys().cloned().collect()
        } else {
            let mut names = self.config.use_cases.clone();
            names.sort();
            names.dedup();
            names
        };
        if use_cases.is_empty() {
            return Err(WorkerError::NoUseCases);
        }
        if let Some(unknown) = use_cases
            .iter()
            .find(|u| platform.use_case(u.as_str()).is_none())
        {
            return Err(WorkerError::UnknownUseCase(unknown.clone()));
        }
        Ok(use_cases)
    }

    /// Runs until `shutdown` completes, then drains: receiving stops at once, in-flight jobs get
    /// [`WorkerConfig::shutdown_grace`] to finish, and the rest are cancelled and released back to
    /// `pending` without an attempt counted. Returns what the worker did.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, WorkerError> {
        let use_cases = self.use_cases()?;
        if self.registry.kinds().next().is_none() {
            tracing::warn!("no handler registered: every job will fail permanently");
        }
        let counters = Arc::clone(&self.counters);
        let config = Arc::new(self.config);
        let completer = crate::complete::Completer::spawn(
            self.service.store().clone(),
            config.recording_limit(),
        );
        let executor = Arc::new(Executor {
            completer,
            recording: Arc::new(Semaphore::new(config.concurrency)),
            service: self.service,
            registry: Arc::new(self.registry),
            config: Arc::clone(&config),
            counters: Arc::clone(&counters),
            span_parent: self.span_parent,
        });
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (hard_stop_tx, hard_stop_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        for use_case in use_cases
            .iter()
            .flat_map(|uc| std::iter::repeat_n(uc, config.receive_loops.max(1)))
        {
            loops.spawn(
                ReceiveLoop {
                    use_case: use_case.clone(),
                    transport: Arc::clone(&self.transport),
                    executor: Arc::clone(&executor),
                    slots: Arc::clone(&slots),
                    stop: stop_rx.clone(),
                    hard_stop: hard_stop_rx.clone(),
                }
                .run(),
            );
        }
        tracing::info!(
            use_cases = ?use_cases,
            concurrency = config.concurrency,
            kinds = ?executor.registry.kinds().collect::<Vec<_>>(),
            "worker started"
        );

        // Run until asked to stop (or a loop dies, which only a bug can cause).
        let mut failure = None;
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => tracing::info!(grace_s = config.shutdown_grace.as_secs_f64(), "shutdown requested: draining"),
            Some(ended) = loops.join_next() => {
                let why = match ended {
                    Err(e) => e.to_string(),
                    Ok(()) => "ended unexpectedly".to_owned(),
                };
                tracing::error!(error = %why, "a receive loop failed; draining");
                failure = Some(why);
            }
        }

        // Stop receiving; let in-flight jobs finish within the grace.
        stop_tx.send_replace(true);
        let grace_over = Instant::now() + config.shutdown_grace;
        if tokio::time::timeout_at(grace_over, drain(&mut loops))
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace over: cancelling and releasing unfinished jobs");
            hard_stop_tx.send_replace(true);
            if tokio::time::timeout(RELEASE_BOUND, drain(&mut loops))
                .await
                .is_err()
            {
                tracing::error!(
                    "jobs did not release in time; aborting them (the reaper will retry them)"
                );
                loops.abort_all();
                drain(&mut loops).await;
            }
        }
        let report = counters.report();
        tracing::info!(?report, "worker stopped");
        match failure {
            Some(why) => Err(WorkerError::ReceiveLoopFailed(why)),
            None => Ok(report),
        }
    }
}

async fn drain(loops: &mut JoinSet<()>) {
    while let Some(ended) = loops.join_next().await {
        if let Err(e) = ended {
            if e.is_panic() {
                tracing::error!(error = %e, "a receive loop panicked while draining");
            }
        }
    }
}
