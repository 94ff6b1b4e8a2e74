//! The lease from the claim until the outcome is recorded: a store that stalls completions for
//! longer than the lease (the lease must be renewed throughout and nothing run twice), heartbeats
//! that fail for longer than the lease (the handler must be stopped, nothing recorded), and the
//! recording phase's own bounds (lease lost, lease no longer confirmed).
//!
//! The store's clock is a `ManualClock`; where a test needs the reaper, it advances that clock in
//! step with real time and reaps (and re-dispatches) as the scheduler would.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::*;
use jobs_core::clock::ManualClock;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::memory::MemoryStore;
use jobs_core::{
    CancellationSignal, HandlerRegistry, JobContext, JobStatus, LeaseStore, MaintenanceStore,
    StoreError,
};
use serde_json::json;

/// Faults switched on and off by the test, around a memory store: successful-outcome writes that
/// stall before reaching the store, heartbeats that fail as if the database were unreachable.
/// It counts what reached the store.
#[derive(Debug, Default)]
struct Faults {
    /// `complete` / `complete_many` wait this many ms before reaching the store.
    stall_completions_ms: AtomicU64,
    /// Heartbeats fail with `StoreError::Unavailable` while set.
    fail_heartbeats: AtomicBool,
    /// Completion calls that arrived (stalled or not).
    completions_arrived: AtomicU32,
    /// Heartbeats passed on to the store.
    heartbeats_ok: AtomicU32,
    heartbeats_failed: AtomicU32,
    /// fail / finish_cancelled / release calls.
    other_writes: AtomicU32,
    /// Completions wait this many ms *after* the store wrote them before answering (a slow reply).
    reply_delay_ms: AtomicU64,
    /// Heartbeats sent while a completion's reply was delayed (the store refuses them: the job
    /// has succeeded already).
    beats_during_reply: AtomicU32,
}

impl Faults {
    fn stall_completions(&self, stall: Duration) {
        self.stall_completions_ms
            .store(stall.as_millis() as u64, Ordering::SeqCst);
    }

    fn count(counter: &AtomicU32) -> u32 {
        counter.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Interceptor for Faults {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        match op {
            StoreOp::Complete | StoreOp::CompleteMany => {
                self.completions_arrived.fetch_add(1, Ordering::SeqCst);
                let stall = self.stall_completions_ms.load(Ordering::SeqCst);
                if stall > 0 {
                    tokio::time::sleep(Duration::from_millis(stall)).await;
                }
            }
            StoreOp::Heartbeat if self.fail_heartbeats.load(Ordering::SeqCst) => {
                self.heartbeats_failed.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Unavailable("connection refused".into()));
            }
            StoreOp::Heartbeat => {
                self.heartbeats_ok.fetch_add(1, Ordering::SeqCst);
            }
            StoreOp::Fail | StoreOp::FinishCancelled | StoreOp::Release => {
                self.other_writes.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(())
    }

    async fn after(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if matches!(op, StoreOp::Complete | StoreOp::CompleteMany) {
            let delay = self.reply_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                let before = Faults::count(&self.heartbeats_ok);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let sent = Faults::count(&self.heartbeats_ok) - before;
                self.beats_during_reply.fetch_add(sent, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// A worker (test settings: 300 ms lease, so heartbeats every 100 ms and a 50 ms safety margin)
/// over a memory store behind [`Faults`].
fn start(registry: HandlerRegistry) -> (Harness, Arc<Faults>) {
    let clock = Arc::new(ManualClock::at(Utc::now()));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let faults = Arc::new(Faults::default());
    let intercepted = Arc::new(InterceptedStore::new(store.clone(), Arc::clone(&faults)));
    let h = Harness::start_with(registry, worker_config(), clock, store, intercepted);
    (h, faults)
}

/// The lease of [`worker_config`].
fn lease() -> Duration {
    worker_config().heartbeat_lease
}

/// A registry with `counted`: counts its runs and succeeds at once.
fn counted(runs: &Arc<AtomicUsize>) -> HandlerRegistry {
    let mut registry = registry();
    let runs = runs.clone();
    registry.register_fn("counted", move |_ctx: JobContext, _p: serde_json::Value| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_stalled_past_the_lease_keep_it_renewed_and_rerun_nothing() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mut h, faulty) = start(counted(&runs));
    // Five leases' worth of stall on every completion.
    let stall = lease() * 5;
    faulty.stall_completions(stall);
    let job = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    assert_eq!(h.dispatch().await, 1);
    eventually(
        "the handler's success to reach the stalled store",
        || async { (Faults::count(&faulty.completions_arrived) == 1).then_some(()) },
    )
    .await;
    let beats_at_stall = Faults::count(&faulty.heartbeats_ok);
    // Play the scheduler while the completion stalls: store time moves with real time, expired
    // leases are reaped and due jobs dispatched again, as they would be in production.
    let step = Duration::from_millis(25);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut reaped = 0;
    let mut redispatched = 0;
    loop {
        tokio::time::sleep(step).await;
        h.clock.advance(step);
        reaped += h.store.reap_expired(100).await.unwrap().total();
        redispatched += h.dispatch().await;
        if h.job(job.id).await.status.is_terminal() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in time: {:?}",
            h.job(job.id).await
        );
    }
    let beats_during_stall = Faults::count(&faulty.heartbeats_ok) - beats_at_stall;
    let done = h.job(job.id).await;
    assert_eq!(
        (reaped, redispatched, runs.load(Ordering::SeqCst)),
        (0, 0, 1),
        "(leases reaped, re-dispatches, handler runs): the lease lapsed while the outcome was \
         recorded and the job ran again; it ended {} after {} attempts",
        done.status,
        done.attempts
    );
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    // One renewal per 100 ms for 1.5 s: require well over a lease's worth.
    assert!(
        beats_during_stall >= 5,
        "only {beats_during_stall} renewals during a {stall:?} stall"
    );
    let report = h.shutdown().await;
    assert_eq!(
        (report.succeeded, report.lease_lost, report.unrecorded),
        (1, 0, 0)
    );
}

/// What a stubborn handler left behind when it was stopped.
#[derive(Debug, Default)]
struct Stopped {
    started: AtomicBool,
    /// Set when the handler's future was dropped (the worker stopped it).
    dropped: AtomicBool,
    /// Whether its cancellation signal had fired when it was dropped.
    cancelled_when_dropped: AtomicBool,
    signal: Mutex<Option<CancellationSignal>>,
}

/// Records, when dropped, that the handler was stopped and whether it had been cancelled.
struct DropProbe(Arc<Stopped>, CancellationSignal);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0
            .cancelled_when_dropped
            .store(self.1.is_cancelled(), Ordering::SeqCst);
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// A registry with `stubborn`: ignores cancellation and sleeps a minute.
fn stubborn(seen: &Arc<Stopped>) -> HandlerRegistry {
    let mut registry = registry();
    let seen = seen.clone();
    registry.register_fn("stubborn", move |ctx: JobContext, _p: serde_json::Value| {
        let seen = seen.clone();
        async move {
            let _probe = DropProbe(seen.clone(), ctx.cancel.clone());
            if let Ok(mut signal) = seen.signal.lock() {
                *signal = Some(ctx.cancel.clone());
            }
            seen.started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
    });
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_failing_past_the_lease_stop_the_handler_and_record_nothing() {
    let seen = Arc::new(Stopped::default());
    let (mut h, faulty) = start(stubborn(&seen));
    faulty.fail_heartbeats.store(true, Ordering::SeqCst);
    let job = h.enqueue(NOTIFICATIONS, "stubborn", json!({})).await;
    assert_eq!(h.dispatch().await, 1);
    eventually("the handler to start", || async {
        seen.started.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let running = tokio::time::Instant::now();
    // No renewal can be confirmed: the worker must stop the handler before the lease (300 ms
    // from the claim) runs out, not let it sleep its minute unfenced.
    eventually("the handler to be stopped", || async {
        seen.dropped.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let stopped_after = running.elapsed();
    // The worker's own deadline is claim + lease − margin (250 ms); allow for a loaded host,
    // but not for the minute the handler would have slept.
    assert!(
        stopped_after < lease() * 3,
        "stopped {stopped_after:?} after it started, the lease is {:?}",
        lease()
    );
    assert!(
        seen.cancelled_when_dropped.load(Ordering::SeqCst),
        "the handler's cancellation signal fired before it was dropped"
    );
    let signal = seen.signal.lock().unwrap().clone();
    assert!(signal.is_some_and(|s| s.is_cancelled()));
    assert!(
        Faults::count(&faulty.heartbeats_failed) >= 2,
        "failed heartbeats were retried"
    );
    eventually("the stop to be counted", || async {
        (h.stats.snapshot().lease_lost == 1).then_some(())
    })
    .await;
    // Nothing was recorded: the job is still running under the claim's lease, for the reaper.
    let after = h.job(job.id).await;
    assert_eq!(
        (after.status, after.attempts, after.last_error.clone()),
        (JobStatus::Running, 1, None),
        "{after:?}"
    );
    assert_eq!(Faults::count(&faulty.completions_arrived), 0);
    assert_eq!(Faults::count(&faulty.other_writes), 0);
    h.clock.advance(lease() + Duration::from_millis(1));
    assert_eq!(h.store.reap_expired(10).await.unwrap().total(), 1);
    assert_eq!(h.job(job.id).await.status, JobStatus::Pending);
    let report = h.shutdown().await;
    assert_eq!(
        (
            report.lease_lost,
            report.succeeded,
            report.failed,
            report.unrecorded
        ),
        (1, 0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_gives_up_once_the_lease_is_no_longer_confirmed() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mut h, faulty) = start(counted(&runs));
    faulty.stall_completions(Duration::from_secs(60));
    let job = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    h.dispatch().await;
    eventually("the success to reach the stalled store", || async {
        (Faults::count(&faulty.completions_arrived) == 1).then_some(())
    })
    .await;
    // The store goes away entirely: no renewal can be confirmed any more.
    faulty.fail_heartbeats.store(true, Ordering::SeqCst);
    let gone = tokio::time::Instant::now();
    eventually("the worker to give up", || async {
        (h.stats.snapshot().unrecorded == 1).then_some(())
    })
    .await;
    // At most a lease after the last confirmed renewal (≤ 100 ms before the store went away);
    // allow for a loaded host, but not for the minute the write would stall.
    assert!(
        gone.elapsed() < lease() * 4,
        "gave up {:?} after the store went away",
        gone.elapsed()
    );
    assert_eq!(h.job(job.id).await.status, JobStatus::Running);
    let report = h.shutdown().await;
    assert_eq!(
        (report.unrecorded, report.succeeded, report.lease_lost),
        (1, 0, 0)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lost_while_recording_abandons_the_write() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mut h, faulty) = start(counted(&runs));
    faulty.stall_completions(Duration::from_secs(60));
    let job = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    h.dispatch().await;
    eventually("the success to reach the stalled store", || async {
        (Faults::count(&faulty.completions_arrived) == 1).then_some(())
    })
    .await;
    // Another actor takes the job over meanwhile: the next heartbeat is refused.
    let token = h.job(job.id).await.lease_token.unwrap();
    h.store.release(job.id, token).await.unwrap();
    eventually("the lost lease to be noticed", || async {
        (h.stats.snapshot().lease_lost == 1).then_some(())
    })
    .await;
    assert_eq!(h.job(job.id).await.status, JobStatus::Pending);
    let report = h.shutdown().await;
    assert_eq!(
        (report.lease_lost, report.succeeded, report.unrecorded),
        (1, 0, 0)
    );
}

/// A completion write that never answers while heartbeats keep succeeding (a hung connection)
/// cannot hold the job for ever: after the recording limit (ten leases) renewals stop and the
/// worker gives up, and the completion batcher, whose call was bounded by the same limit, takes
/// later successes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_never_answers_is_given_up_after_the_recording_limit() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mut h, faulty) = start(counted(&runs));
    faulty.stall_completions(Duration::from_secs(3600));
    let stuck = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    h.dispatch().await;
    eventually("the success to reach the hung store", || async {
        (Faults::count(&faulty.completions_arrived) >= 1).then_some(())
    })
    .await;
    let hung = tokio::time::Instant::now();
    eventually("the worker to give up", || async {
        (h.stats.snapshot().unrecorded == 1).then_some(())
    })
    .await;
    let limit = worker_config().recording_limit();
    assert!(
        hung.elapsed() >= limit - lease(),
        "gave up after {:?}, before the recording limit {limit:?}",
        hung.elapsed()
    );
    // The lease lapses; the store's reaper will hand the job on (at least once).
    assert_eq!(h.job(stuck.id).await.status, JobStatus::Running);
    // The store answers again: the next success goes through the same batcher.
    faulty.stall_completions(Duration::ZERO);
    let next = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    h.dispatch().await;
    let done = h.wait_status(next.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    let report = h.shutdown().await;
    assert_eq!((report.unrecorded, report.succeeded), (1, 1));
}

/// The race the recording phase must not lose: the completion commits, a heartbeat sent after it
/// is refused (the job is no longer running), and only then does the completion's reply arrive.
/// The refusal must not be taken for a lost lease: the write's own answer says it succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_refused_because_the_completion_landed_still_counts_the_success() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (mut h, faulty) = start(counted(&runs));
    // Half a lease: heartbeats (every third of a lease) are refused meanwhile, and the reply
    // still comes before the lease's confirmed expiry.
    faulty
        .reply_delay_ms
        .store(lease().as_millis() as u64 / 2, Ordering::SeqCst);
    let job = h.enqueue(NOTIFICATIONS, "counted", json!({})).await;
    h.dispatch().await;
    let done = h.wait_status(job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    eventually("the outcome to be counted", || async {
        let r = h.stats.snapshot();
        (r.succeeded + r.lease_lost + r.unrecorded == 1).then_some(())
    })
    .await;
    let report = h.shutdown().await;
    assert_eq!(
        (report.succeeded, report.lease_lost, report.unrecorded),
        (1, 0, 0),
        "a renewal refused after the completion committed was taken for a lost lease"
    );
    assert!(
        Faults::count(&faulty.beats_during_reply) >= 1,
        "no renewal was sent while the reply was delayed: the race was not exercised"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
