//! Running one claimed job: the handler (guarded), its heartbeat, and recording what happened.

use std::sync::Arc;
use std::time::Duration;

use jobs_core::{
    run_guarded, CancellationSignal, HandlerRegistry, HandlerResult, Job, JobContext, JobService,
    JobStatus, LeaseError, LeaseToken,
};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::heartbeat::{Heartbeat, HeartbeatEnd};
use crate::report::{Counters, METRIC_JOB_SECONDS};

/// How many times a fenced write (record, release) is tried on retryable store errors.
const WRITE_ATTEMPTS: u32 = 5;
/// The first pause between those tries (doubling).
const WRITE_RETRY_BASE: Duration = Duration::from_millis(100);

/// Everything an execution needs, shared by all executions of a worker.
#[derive(Debug)]
pub(crate) struct Executor {
    pub(crate) service: JobService,
    pub(crate) registry: Arc<HandlerRegistry>,
    pub(crate) config: Arc<WorkerConfig>,
    pub(crate) counters: Arc<Counters>,
    /// Records successes in batches.
    pub(crate) completer: crate::complete::Completer,
    /// Permits for outcomes being recorded (as many as slots). A finished handler swaps its slot
    /// for one of these, so the next job can start while the outcome is written, and a slow store
    /// still stops the receive loops once every permit waits on it.
    pub(crate) recording: Arc<Semaphore>,
}

/// Completes when `rx` turns true; never if its sender is gone first.
pub(crate) async fn flag_raised(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Executor {
    /// Runs `job` (claimed with `token`) to the end: handler under its timeout with heartbeats,
    /// then its outcome recorded. When `hard_stop` is raised first (shutdown grace over), the
    /// handler is cancelled and dropped and the job released to `pending`. `slot` is the
    /// concurrency permit, held while the handler runs and then swapped for a recording permit.
    pub(crate) async fn execute(
        self: Arc<Self>,
        job: Job,
        token: LeaseToken,
        hard_stop: watch::Receiver<bool>,
        slot: OwnedSemaphorePermit,
    ) {
        let (cancel, signal) = CancellationSignal::new();
        let ctx = JobContext::for_job(&job, signal);
        let span = ctx.span.clone();
        async move {
            let started = Instant::now();
            tracing::info!(deadline_at = %job.deadline_at, "job started");
            let handler = run_guarded(&self.registry, ctx, job.payload.clone());
            let heartbeat = Heartbeat {
                store: Arc::clone(self.service.store()),
                job_id: job.id,
                token,
                lease: self.config.heartbeat_lease,
                interval: self.config.heartbeat_interval(),
                renew_until: started + job.timeout + self.config.lease_margin,
                cancel: &cancel,
            }
            .run();
            tokio::pin!(handler, heartbeat);
            let mut hard_stop = hard_stop;
            let mut heartbeating = true;
            let mut lease_lost = false;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut handler => break Some(outcome),
                    end = &mut heartbeat, if heartbeating => {
                        heartbeating = false;
                        lease_lost = end == HeartbeatEnd::LeaseLost;
                    }
                    () = flag_raised(&mut hard_stop) => {
                        cancel.cancel();
                        break None;
                    }
                }
            };
            let elapsed = started.elapsed();
            // The handler is done: free the slot for the next job while the outcome is written.
            // (The semaphore is never closed; if it were, the slot is simply kept.)
            let _recording = Arc::clone(&self.recording).acquire_owned().await.ok();
            drop(slot);
            metrics::histogram!(METRIC_JOB_SECONDS, "use_case" => job.use_case.clone())
                .record(elapsed.as_secs_f64());
            if lease_lost {
                tracing::warn!(
                    elapsed_ms = elapsed.as_millis() as u64,
                    "lease lost while running; the attempt's outcome is discarded"
                );
                self.counters.lease_lost("heartbeat");
                return;
            }
            match outcome {
                Some(outcome) => self.record(&job, token, &outcome, elapsed).await,
                None => self.release(&job, token).await,
            }
        }
        .instrument(span)
        .await;
    }

    async fn record(&self, job: &Job, token: LeaseToken, outcome: &HandlerResult, took: Duration) {
        let elapsed_ms = took.as_millis() as u64;
        let mut pause = WRITE_RETRY_BASE;
        for attempt in 1..=WRITE_ATTEMPTS {
            let recorded = match outcome {
                Ok(()) => self.completer.complete(job.id, token).await,
                Err(_) => self.service.record_outcome(job, token, outcome).await,
            };
            match recorded {
                Ok(done) => {
                    log_recorded(&done, outcome, elapsed_ms);
                    self.counters.recorded(&job.use_case, done.status);
                    return;
                }
                Err(LeaseError::LeaseLost(_)) => {
                    tracing::warn!(
                        elapsed_ms,
                        "lease lost before the outcome was recorded; another actor holds the job"
                    );
                    self.counters.lease_lost("record");
                    return;
                }
                Err(LeaseError::Store(e)) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "recording the outcome failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(LeaseError::Store(e)) => {
                    tracing::error!(
                        error = %e,
                        "could not record the outcome; the lease will expire and the reaper retry the job"
                    );
                    self.counters.unrecorded();
                    return;
                }
            }
        }
    }

    async fn release(&self, job: &Job, token: LeaseToken) {
        let mut pause = WRITE_RETRY_BASE;
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.service.store().release(job.id, token).await {
                Ok(done) => {
                    tracing::warn!(
                        status = done.status.as_str(),
                        "shutdown grace over: handler cancelled, job released without penalty"
                    );
                    self.counters.released(&job.use_case, done.status);
                    return;
                }
                Err(LeaseError::LeaseLost(_)) => {
                    tracing::warn!("lease lost before the job could be released");
                    self.counters.lease_lost("release");
                    return;
                }
                Err(LeaseError::Store(e)) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "releasing the job failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(LeaseError::Store(e)) => {
                    tracing::error!(
                        error = %e,
                        "could not release the job; the reaper will retry it when its lease expires"
                    );
                    self.counters.unrecorded();
                    return;
                }
            }
        }
    }
}

fn log_recorded(done: &Job, outcome: &HandlerResult, elapsed_ms: u64) {
    let error = outcome.as_ref().err().map(ToString::to_string);
    match done.status {
        JobStatus::Succeeded => tracing::info!(elapsed_ms, "job succeeded"),
        JobStatus::Cancelled => tracing::info!(elapsed_ms, error, "job cancelled"),
        JobStatus::Dead => tracing::error!(elapsed_ms, error, "job failed for good (dead)"),
        _ => tracing::warn!(
            elapsed_ms,
            error,
            retry_at = %done.run_at,
            "job failed; will retry"
        ),
    }
}
