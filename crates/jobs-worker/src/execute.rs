//! Running one claimed job: the handler (guarded), its heartbeat, and recording what happened.
//!
//! The job's lease is held from the claim until its outcome is recorded, not only while the
//! handler runs: one task races the handler, then the recording (waiting for a recording permit,
//! the completion batch and any retries), against the heartbeat's beats and against the instant
//! the lease stops being *confirmed* ([`Heartbeat::confirmed_until`]: the local instant a claim or
//! renewal was sent plus the lease, which the store's expiry cannot precede).
//!
//! - While the handler runs, renewals stop at `timeout + lease_margin` (a wedged handler cannot
//!   hold its job for ever), and a handler still running at `confirmed_until −
//!   WorkerConfig::lease_safety_margin()` is cancelled and dropped and its outcome discarded: it
//!   would otherwise run on unfenced once the reaper hands its job on.
//! - While the outcome is recorded, renewals have no such bound; recording gives up when the
//!   lease is lost or local time passes `confirmed_until` (the reaper then retries the job).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::handler::CancelHandle;
use jobs_core::{
    run_guarded, CancellationSignal, HandlerRegistry, HandlerResult, Job, JobContext, JobService,
    JobStatus, LeaseError, LeaseToken,
};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::heartbeat::{Beat, Heartbeat};
use crate::report::{Counters, METRIC_JOB_SECONDS};

/// How many times a release (shutdown) is tried on retryable store errors.
const WRITE_ATTEMPTS: u32 = 5;
/// The first pause between tries of a fenced write (doubling).
const WRITE_RETRY_BASE: Duration = Duration::from_millis(100);
/// The longest pause between tries of recording an outcome. Recording is retried for as long as
/// the lease is confirmed, so this only bounds how soon a recovered store is noticed.
const RECORD_RETRY_CAP: Duration = Duration::from_secs(2);

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
    /// Joins each attempt's span to its job's trace ([`crate::Worker::with_span_parent`]).
    pub(crate) span_parent: Option<crate::runtime::SpanParent>,
}

/// Completes when `rx` turns true; never if its sender is gone first.
pub(crate) async fn flag_raised(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The instant an outcome being recorded from now on stops having its lease renewed
/// ([`WorkerConfig::recording_limit`]).
fn recording_limit(config: &WorkerConfig) -> Instant {
    crate::heartbeat::later(Instant::now(), config.recording_limit())
}

/// How the handler phase ended.
enum Ran {
    /// The handler returned (or panicked, or timed out): record this.
    Finished(HandlerResult),
    /// The shutdown grace ended first: the handler was cancelled and dropped; release the job.
    HardStop,
    /// A heartbeat was refused: the handler was cancelled and dropped.
    LeaseLost,
    /// The lease could not be confirmed in time: the handler was cancelled and dropped.
    Unconfirmed,
}

/// How a write made under the lease ended.
enum Held {
    /// The write ran to its end (it logged and counted its own result).
    Done,
    /// A heartbeat was refused meanwhile and the write had not answered by the confirmed
    /// expiry: the write was abandoned (it is fenced anyway).
    LeaseLost,
    /// Local time passed the confirmed expiry first: the write was abandoned.
    Unconfirmed,
}

impl Executor {
    /// Runs `job` (claimed with `token` by a claim request sent at `claim_sent`) to the end:
    /// handler under its timeout with heartbeats, then its outcome recorded while the heartbeats
    /// go on. When `hard_stop` is raised first (shutdown grace over), the handler is cancelled
    /// and dropped and the job released to `pending`. `slot` is the concurrency permit, held
    /// while the handler runs and then swapped for a recording permit.
    pub(crate) async fn execute(
        self: Arc<Self>,
        job: Job,
        token: LeaseToken,
        claim_sent: Instant,
        hard_stop: watch::Receiver<bool>,
        slot: OwnedSemaphorePermit,
    ) {
        let (cancel, signal) = CancellationSignal::new();
        let ctx = JobContext::for_job(&job, signal);
        // The attempt's span continues the enqueuer's trace (a new root without one); a no-op
        // unless the process wiring set a span parent and spans are exported.
        if let Some(span_parent) = self.span_parent {
            span_parent(&ctx.span, job.trace_context.as_ref());
        }
        let span = ctx.span.clone();
        async move {
            let started = Instant::now();
            tracing::info!(deadline_at = %job.deadline_at, "job started");
            let mut heartbeat = Heartbeat::new(
                self.service.store().clone(),
                job.id,
                token,
                self.config.heartbeat_lease,
                self.config.heartbeat_interval(),
                claim_sent,
                &cancel,
            );
            // No renewal past the job's timeout plus the margin while the handler runs.
            let renew_until =
                started.checked_add(job.timeout.saturating_add(self.config.lease_margin));
            let ran = self
                .run_handler(ctx, &job, &mut heartbeat, renew_until, hard_stop, &cancel)
                .await;
            let elapsed = started.elapsed();
            let elapsed_ms = elapsed.as_millis() as u64;
            metrics::histogram!(METRIC_JOB_SECONDS, "use_case" => job.use_case.clone())
                .record(elapsed.as_secs_f64());
            match ran {
                Ran::LeaseLost => {
                    drop(slot);
                    tracing::warn!(
                        elapsed_ms,
                        "lease lost while running: handler cancelled and stopped, the attempt's outcome is discarded"
                    );
                    self.counters.lease_lost("heartbeat");
                }
                Ran::Unconfirmed => {
                    drop(slot);
                    tracing::warn!(
                        elapsed_ms,
                        lease_margin_ms = self.config.lease_safety_margin().as_millis() as u64,
                        "lease not confirmed in time (heartbeats failing, or the worker stalled), \
                         treated as lease lost: handler cancelled and stopped before its lease could \
                         expire, the attempt's outcome is discarded; the reaper retries the job"
                    );
                    self.counters.lease_lost("unconfirmed");
                }
                Ran::Finished(outcome) => {
                    // Free the slot for the next job while the outcome is written (under a
                    // recording permit; the semaphore is never closed, and if it were the slot
                    // would simply be kept).
                    let write = async {
                        let _recording = Arc::clone(&self.recording).acquire_owned().await.ok();
                        drop(slot);
                        self.record(&job, token, &outcome, elapsed_ms).await;
                    };
                    match hold_lease(&mut heartbeat, recording_limit(&self.config), write).await {
                        Held::Done => {}
                        Held::LeaseLost => {
                            tracing::warn!(
                                elapsed_ms,
                                "lease lost before the outcome was recorded; another actor holds the job"
                            );
                            self.counters.lease_lost("record");
                        }
                        Held::Unconfirmed => {
                            tracing::error!(
                                elapsed_ms,
                                "lease no longer confirmed before the outcome was recorded (lease lost, \
                                 or the store unreachable); giving up: the reaper will retry the job"
                            );
                            self.counters.unrecorded();
                        }
                    }
                }
                Ran::HardStop => {
                    let write = async {
                        let _recording = Arc::clone(&self.recording).acquire_owned().await.ok();
                        drop(slot);
                        self.release(&job, token).await;
                    };
                    match hold_lease(&mut heartbeat, recording_limit(&self.config), write).await {
                        Held::Done => {}
                        Held::LeaseLost => {
                            tracing::warn!("lease lost before the job could be released");
                            self.counters.lease_lost("release");
                        }
                        Held::Unconfirmed => {
                            tracing::error!(
                                "lease no longer confirmed before the job was released; the reaper \
                                 will retry it"
                            );
                            self.counters.unrecorded();
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// The handler phase: the handler against the heartbeat, the lease's confirmed expiry less
    /// the safety margin, and the shutdown grace. The handler is dropped (its task aborted) when
    /// this returns, whichever way.
    async fn run_handler(
        &self,
        ctx: JobContext,
        job: &Job,
        heartbeat: &mut Heartbeat<'_>,
        renew_until: Option<Instant>,
        mut hard_stop: watch::Receiver<bool>,
        cancel: &CancelHandle,
    ) -> Ran {
        let handler = run_guarded(&self.registry, ctx, job.payload.clone());
        tokio::pin!(handler);
        let margin = self.config.lease_safety_margin();
        let mut renewing = true;
        loop {
            let confirmed = heartbeat.confirmed_until();
            let stop_at = confirmed.checked_sub(margin).unwrap_or(confirmed);
            tokio::select! {
                biased;
                outcome = &mut handler => return Ran::Finished(outcome),
                () = flag_raised(&mut hard_stop) => {
                    cancel.cancel();
                    return Ran::HardStop;
                }
                beat = heartbeat.beat(renew_until), if renewing => match beat {
                    Beat::Renewed | Beat::Failed => {}
                    Beat::StoppedRenewing => renewing = false,
                    // The heartbeat fired the cancel signal already.
                    Beat::LeaseLost => return Ran::LeaseLost,
                },
                () = tokio::time::sleep_until(stop_at) => {
                    cancel.cancel();
                    return Ran::Unconfirmed;
                }
            }
        }
    }

    /// Records the outcome, retrying retryable store errors with capped exponential backoff for
    /// as long as it takes: the caller ([`hold_lease`]) abandons it when the lease is lost or no
    /// longer confirmed.
    async fn record(&self, job: &Job, token: LeaseToken, outcome: &HandlerResult, elapsed_ms: u64) {
        let mut pause = WRITE_RETRY_BASE;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            // What the job became, and when it runs again if it was sent back to pending.
            let recorded = match outcome {
                Ok(()) => self
                    .completer
                    .complete(job.id, token)
                    .await
                    .map(|()| (JobStatus::Succeeded, job.run_at)),
                Err(_) => self
                    .service
                    .record_outcome(job, token, outcome)
                    .await
                    .map(|done| (done.status, done.run_at)),
            };
            match recorded {
                Ok((status, run_at)) => {
                    log_recorded(status, run_at, outcome, elapsed_ms);
                    self.counters.recorded(&job.use_case, status);
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
                Err(LeaseError::Store(e)) if e.is_retryable() => {
                    crate::report::dependency_error("store", "record");
                    tracing::warn!(
                        error = %e,
                        attempt,
                        retry_in_ms = pause.as_millis() as u64,
                        "recording the outcome failed; retrying while the lease holds"
                    );
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(RECORD_RETRY_CAP);
                }
                Err(LeaseError::Store(e)) => {
                    crate::report::dependency_error("store", "record");
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

/// Runs `write` while the heartbeat keeps the lease, without the handler phase's bound: until the
/// write ends or local time passes the lease's confirmed expiry (a write
/// that hangs on a stalled store is abandoned then; it is fenced, so if it lands later it changes
/// nothing the reaper did not allow). Renewals stop at `renew_until` (the recording limit), so a
/// store that keeps renewing leases but never takes the write cannot hold the job for ever: the
/// lease then lapses and the reaper retries the job.
async fn hold_lease(
    heartbeat: &mut Heartbeat<'_>,
    renew_until: Instant,
    write: impl Future<Output = ()>,
) -> Held {
    tokio::pin!(write);
    let mut renewing = true;
    let mut lost = false;
    loop {
        let expires = heartbeat.confirmed_until();
        tokio::select! {
            biased;
            () = &mut write => return Held::Done,
            beat = heartbeat.beat(Some(renew_until)), if renewing => match beat {
                // A refused renewal does not abandon the write at once: the write itself may
                // just have committed (a heartbeat sent after the completion, answered before
                // its reply), and its own fenced answer says which. Stop renewing and give it
                // until the confirmed expiry.
                Beat::LeaseLost => {
                    lost = true;
                    renewing = false;
                }
                Beat::StoppedRenewing => renewing = false,
                Beat::Renewed | Beat::Failed => {}
            },
            () = tokio::time::sleep_until(expires) => {
                return if lost { Held::LeaseLost } else { Held::Unconfirmed };
            }
        }
    }
}

fn log_recorded(
    status: JobStatus,
    run_at: impl std::fmt::Display,
    outcome: &HandlerResult,
    elapsed_ms: u64,
) {
    let error = outcome.as_ref().err().map(ToString::to_string);
    match status {
        JobStatus::Succeeded => tracing::info!(elapsed_ms, "job succeeded"),
        JobStatus::Cancelled => tracing::info!(elapsed_ms, error, "job cancelled"),
        JobStatus::Dead => tracing::error!(elapsed_ms, error, "job failed for good (dead)"),
        _ => tracing::warn!(
            elapsed_ms,
            error,
            retry_at = %run_at,
            "job failed; will retry"
        ),
    }
}
