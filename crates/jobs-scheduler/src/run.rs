//! The scheduler's main loop: become leader, then tick on an interval and on every wake-up from
//! the store (pacing freed places at a cap), back off on errors, prune in a task of its own while
//! leading, and give leadership up on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::leader::{LeaderElection, LeaderLease};
use jobs_core::store::{NeverWake, Wakeup, WakeupStream};

use crate::backlog::BacklogMonitor;
use crate::cron::Cron;
use crate::dispatch::Dispatcher;

/// The shortest sleep before a tick for a rate-limited job's next token. A limit whose burst is
/// at least `per_second ×` this loses nothing to it (the bucket refills in between and the next
/// tick takes several jobs); with a smaller burst the bucket fills up while the scheduler sleeps,
/// and the rate reached is at most `burst /` this (a burst of 1 at 1,000/s gives 200/s).
const MIN_RATE_WAIT: Duration = Duration::from_millis(5);

/// Most often the loop reaps while ticks come faster (the tick interval, when that is shorter).
/// The reap runs after a tick's dispatch, never between a wake-up and its pick; a tick that skips
/// it sleeps no longer than until the next reap is due. A reap that returned expired leases is
/// followed at once by a tick that dispatches them, and one that filled its batch in some state
/// by another reap right after: a fleet's worth of expired leases drains a batch per state per
/// round trip, not per tick interval. A failing reap backs off on its own (doubling up to the
/// loop's `max_backoff`) while the picks go on.
const REAP_EVERY: Duration = Duration::from_millis(100);

/// How long, as a multiple of the time the tick spent on partial dispatches (a pick that leased
/// jobs but filled no batch, and the sending of its messages), a wake-up for a freed place keeps
/// the next tick waiting.
///
/// A pick that leased jobs but filled no batch was cut short by the cap (or took every due job).
/// At the cap, every completion's wake-up started a pick at once, and picks ran back to back,
/// each leasing the few places freed while the last one ran, although much of a dispatch's cost
/// is paid per pick, not per job: the pick's (counting the jobs in flight, planning, its
/// transaction; in scenario 2a, 320 picks for 50,000 jobs, ~156 each: BENCHMARKS.md, "Issue 16,
/// third session") and, over SQS, a partly filled batch of 10 per send (a request, which is
/// billed). Waiting as long as the dispatch took lets the freed places add up. Only
/// [`Wakeup::CapacityFreed`] waits, and never past the tick the loop would have started anyway
/// (the interval, a rate limit's token, a backoff's retry, a cron slot, a due reap): a job that
/// became due ([`Wakeup::JobDue`], [`Wakeup::Resync`]) ends the wait, and an idle system, whose
/// picks fill no batch either, is not slowed (its wake-ups are enqueues). The wake-up streams
/// fold a burst so that a due job is never hidden behind freed places ([`Wakeup::fold`]).
///
/// A limit: a due job's wake-up does not say its use case, so at a cap with steady arrivals
/// (every enqueue raising one) the picks still come one per wake-up. The measured gain is for
/// completions (scenario 2a: a preloaded backlog).
const PACE: u32 = 1;

/// How long, as a multiple of its own duration, a prune batch that came back full waits before
/// the next: pruning takes at most a quarter of one connection's time while a backlog of history
/// drains (deleting at full speed cost a third of scenario 2a's throughput on two cores). The
/// pause is never longer than the prune interval, so the quarter holds while a batch takes less
/// than a third of the interval (20 s by default; a batch of 1,000 takes milliseconds).
const PRUNE_PACE: u32 = 3;

/// Prunes while the process leads: a batch, then, while batches come back full, the next after a
/// pause of [`PRUNE_PACE`] times the batch's duration; once a batch is not full (nothing more is
/// past the retention), the next look comes after the prune interval. The first look is at
/// once. Before, the loop deleted one batch (1,000) per interval (60 s): under 17 jobs a second,
/// so any busier system's history grew without bound. A failed prune is retried after the
/// interval. Pruning never holds up a pick: its own task, its own connection from the pool. A
/// drain is logged when it ends and, while it lasts, once per interval.
async fn prune_loop(dispatcher: Dispatcher) {
    let config = dispatcher.config().clone();
    let full = u64::from(config.prune_batch.max(1));
    let mut draining = 0u64;
    let mut reported = Instant::now();
    loop {
        let started = Instant::now();
        let wait = match dispatcher.prune().await {
            Ok(n) if n >= full => {
                draining += n;
                if reported.elapsed() >= config.prune_interval {
                    reported = Instant::now();
                    tracing::info!(pruned = draining, "pruning old terminal jobs: more are due");
                }
                (started.elapsed() * PRUNE_PACE).min(config.prune_interval)
            }
            Ok(n) => {
                if draining + n > 0 {
                    tracing::info!(pruned = draining + n, "pruned old terminal jobs");
                }
                draining = 0;
                reported = Instant::now();
                config.prune_interval
            }
            Err(e) => {
                tracing::warn!(error = %e, pruned = draining, retry_in = ?config.prune_interval, "prune failed");
                draining = 0;
                reported = Instant::now();
                config.prune_interval
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why [`Scheduler::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown future completed.
    Shutdown,
}

/// The scheduler process: leadership plus the dispatch loop.
#[derive(Debug, Clone)]
pub struct Scheduler {
    dispatcher: Dispatcher,
    leader: Arc<dyn LeaderElection>,
    cron: Option<Cron>,
    backlog: Option<BacklogMonitor>,
}

enum Next {
    Tick,
    Shutdown,
}

impl Scheduler {
    /// A scheduler that dispatches with `dispatcher` while `leader` grants leadership.
    pub fn new(dispatcher: Dispatcher, leader: Arc<dyn LeaderElection>) -> Self {
        Scheduler {
            dispatcher,
            leader,
            cron: None,
            backlog: None,
        }
    }

    /// Also exports the backlog gauges and the scaling signal while leading ([`BacklogMonitor`]):
    /// every [`interval`](crate::BacklogConfig::interval) after a tick, and zeroed when
    /// leadership ends.
    pub fn with_backlog(mut self, backlog: BacklogMonitor) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// Notes a tick's dispatches and, when due, refreshes the backlog gauges and stores each use
    /// case's drain rate ([`DispatchStore::record_drain_rate`](jobs_core::DispatchStore::record_drain_rate)).
    async fn backlog_pass(&self, dispatched: Option<&crate::TickReport>) {
        let Some(backlog) = &self.backlog else {
            return;
        };
        if let Some(report) = dispatched {
            backlog.dispatched(&report.dispatched_by_use_case);
        }
        if backlog.is_due() {
            match backlog.refresh().await {
                // The drain rates go to the store too, for the predicted start of jobs
                // (`jobs_core::predict`), which the API reads.
                Ok(figures) => {
                    for (use_case, f) in figures {
                        let stored = self
                            .dispatcher
                            .store()
                            .record_drain_rate(&use_case, f.dispatch_rate)
                            .await;
                        if let Err(e) = stored {
                            tracing::warn!(use_case, error = %e, "storing the drain rate failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the backlog failed"),
            }
        }
    }

    /// Also fires cron schedules while leading: the configured ones are written when
    /// leadership is won, and the loop wakes in time for the earliest next slot.
    pub fn with_cron(mut self, cron: Cron) -> Self {
        self.cron = Some(cron);
        self
    }

    /// Runs the cron pass if it is due; returns how long until it is due again.
    async fn cron_pass(&self, synced: &mut bool, due_at: &mut Instant) -> Option<Duration> {
        let cron = self.cron.as_ref()?;
        let interval = self.dispatcher.config().tick_interval;
        if !*synced {
            match cron.sync_config().await {
                Ok(_) => *synced = true,
                Err(e) => {
                    tracing::warn!(error = %e, "writing the configured schedules failed; retrying")
                }
            }
        }
        let now = Instant::now();
        if now < *due_at {
            return Some(*due_at - now);
        }
        let wait = match cron.fire_due().await {
            Ok(report) => report
                .next_run_at
                .and_then(|next| (next - chrono::Utc::now()).to_std().ok())
                .map_or(interval, |until| until.min(interval)),
            Err(e) => {
                tracing::warn!(error = %e, "cron pass failed");
                interval
            }
        };
        *due_at = Instant::now() + wait;
        Some(wait)
    }

    /// Runs until `shutdown` completes. Never returns on store or transport errors: it logs,
    /// backs off and tries again.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stopped {
        tokio::pin!(shutdown);
        loop {
            let Some(lease) = self.become_leader(&mut shutdown).await else {
                return Stopped::Shutdown;
            };
            tracing::info!("became the leader; dispatching");
            metrics::gauge!("async_jobs_scheduler_leader").set(1.0);
            let stopped = self.lead(lease, &mut shutdown).await;
            metrics::gauge!("async_jobs_scheduler_leader").set(0.0);
            if let Some(backlog) = &self.backlog {
                backlog.stand_down();
            }
            if let Some(stopped) = stopped {
                return stopped;
            }
            tracing::warn!("lost leadership; standing by");
        }
    }

    async fn become_leader(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Box<dyn LeaderLease>> {
        let poll = self.dispatcher.config().leader_poll;
        let mut announced = false;
        loop {
            tokio::select! {
                _ = shutdown.as_mut() => return None,
                attempt = self.leader.try_acquire() => match attempt {
                    Ok(Some(lease)) => return Some(lease),
                    Ok(None) => {
                        if !announced {
                            tracing::info!("another scheduler is the leader; standing by");
                            announced = true;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "leader election failed"),
                },
            }
            tokio::select! {
                _ = shutdown.as_mut() => return None,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Leads until leadership is lost (`None`) or shutdown (`Some`).
    async fn lead(
        &self,
        mut lease: Box<dyn LeaderLease>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Stopped> {
        let config = self.dispatcher.config().clone();
        let mut wakeups = self.subscribe().await;
        let mut backoff = config.min_backoff;
        // Pruning runs beside the loop while this process leads (see prune_loop); dropping the
        // guard when leadership ends stops it.
        let _pruning = AbortOnDrop(tokio::spawn(prune_loop(self.dispatcher.clone())));
        let mut last_reap: Option<Instant> = None;
        let reap_every = REAP_EVERY.min(config.tick_interval);
        let mut reap_wait = reap_every;
        let (mut synced, mut cron_due) = (false, Instant::now());
        let mut limits_synced = false;
        loop {
            // Cron first: a slot's job is then dispatched by this same tick.
            let cron_wait = self.cron_pass(&mut synced, &mut cron_due).await;
            if !limits_synced {
                // The leader's configuration decides the limits in force. Until they are written
                // the pick applies the ones in the store; try again every tick.
                match self.dispatcher.sync_rate_limits().await {
                    Ok(()) => limits_synced = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not write the rate limits; retrying next tick")
                    }
                }
            }
            // The pick first: a tick started by an enqueue's wake-up goes straight to it. Then
            // the reap, when due (see REAP_EVERY).
            let mut ticked = self.dispatcher.dispatch().await;
            // See PACE.
            let paced_until = match &ticked {
                Ok(r) if !r.partial_dispatch_time.is_zero() => {
                    Instant::now().checked_add(r.partial_dispatch_time.saturating_mul(PACE))
                }
                _ => None,
            };
            let reap_due = last_reap.is_none_or(|t| t.elapsed() >= reap_wait);
            let mut reaped_any = false;
            if reap_due {
                last_reap = Some(Instant::now());
                match self.dispatcher.reap().await {
                    Ok(reaped) => {
                        reap_wait = reap_every;
                        reaped_any = reaped.total() > 0;
                        // A state that filled its batch may hold more: reap again next tick.
                        if full_batch(&reaped, config.reap_batch) {
                            last_reap = None;
                        }
                        if let Ok(report) = &mut ticked {
                            report.reaped = reaped;
                        }
                    }
                    // The reap failed on its own (the pick's failures back the whole loop off):
                    // it backs off alone, and the pick goes on meanwhile.
                    Err(e) => {
                        reap_wait = (reap_wait * 2).min(config.max_backoff.max(reap_every));
                        tracing::warn!(error = %e, retry_in = ?reap_wait, "reap failed; retrying it later");
                    }
                }
            }
            self.backlog_pass(ticked.as_ref().ok()).await;
            // Leadership is checked after the tick, not between a wake-up and its pick (the check
            // is a round trip at most every 500 ms). A tick run after leadership was lost is
            // harmless: the store serialises the picks of a use case.
            if !lease.is_held().await {
                return None;
            }
            let delay = match ticked {
                Ok(report) => {
                    backoff = config.min_backoff;
                    // Reaped jobs are pending again: dispatch them now.
                    if report.saturated || reaped_any {
                        Duration::ZERO
                    } else {
                        // Not before a rate-limited job's next token, nor after a use case that
                        // backs off may be tried again; and never a busy loop.
                        [report.rate_wait, report.retry_in]
                            .into_iter()
                            .flatten()
                            .min()
                            .map_or(config.tick_interval, |w| {
                                w.max(MIN_RATE_WAIT).min(config.tick_interval)
                            })
                    }
                }
                Err(e) => {
                    // The reap failed, or every use case did (the store is down): back off
                    // as a whole. A use case failing alone backs off on its own
                    // (`TickReport::failed`) while the others go on.
                    tracing::warn!(error = %e, retry_in = ?backoff, "tick failed; backing off");
                    let delay = backoff;
                    backoff = (backoff * 2).min(config.max_backoff);
                    // Wake-ups must not cut an error backoff short.
                    match sleep_or_shutdown(delay, shutdown).await {
                        Next::Shutdown => {
                            lease.release().await;
                            return Some(Stopped::Shutdown);
                        }
                        Next::Tick => continue,
                    }
                }
            };
            // Wake in time for the next slot, and for the reap this tick skipped.
            let delay = cron_wait.map_or(delay, |w| delay.min(w));
            let delay = match last_reap {
                Some(at) if !reap_due => delay.min(reap_wait.saturating_sub(at.elapsed())),
                None => Duration::ZERO,
                _ => delay,
            };
            if delay.is_zero() {
                // No wait, but a shutdown asked meanwhile is honoured before the next tick.
                let stop = tokio::select! {
                    biased;
                    _ = shutdown.as_mut() => true,
                    _ = std::future::ready(()) => false,
                };
                if stop {
                    lease.release().await;
                    return Some(Stopped::Shutdown);
                }
                continue;
            }
            // None: no tick before the far future (a huge interval set in code).
            let next_tick = Instant::now().checked_add(delay);
            tokio::select! {
                _ = shutdown.as_mut() => {
                    lease.release().await;
                    return Some(Stopped::Shutdown);
                }
                _ = tokio::time::sleep(delay) => {}
                woke = wakeups.next() => match woke {
                    None => {
                        tracing::warn!("wake-up stream ended; resubscribing");
                        wakeups = self.subscribe().await;
                    }
                    // A freed place soon after partial picks waits out the pace (see PACE), but
                    // not past the tick the loop would have started anyway.
                    Some(Wakeup::CapacityFreed) => {
                        if let Some(until) = paced_until.map(|t| next_tick.map_or(t, |n| t.min(n))) {
                            if let Next::Shutdown = pace(until, &mut wakeups, shutdown).await {
                                lease.release().await;
                                return Some(Stopped::Shutdown);
                            }
                        }
                    }
                    Some(_) => {}
                },
            }
        }
    }

    async fn subscribe(&self) -> Box<dyn WakeupStream> {
        match self.dispatcher.store().subscribe().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to wake-ups; polling only");
                Box::new(NeverWake)
            }
        }
    }
}

/// True when a state of `reaped` filled its batch of `limit` (there may be more).
fn full_batch(reaped: &jobs_core::store::ReapReport, limit: u32) -> bool {
    let limit = u64::from(limit.max(1));
    [
        reaped.dispatch_expired,
        reaped.run_expired_retry,
        reaped.run_expired_dead,
        reaped.run_expired_cancelled,
    ]
    .into_iter()
    .any(|n| n >= limit)
}

/// Waits until `until` (see [`PACE`]): further freed places wait with it, a job that became due
/// or a stream to resync ends it at once (the stream's end too: the tick then runs and the loop
/// resubscribes when it next finds it ended).
async fn pace(
    until: Instant,
    wakeups: &mut Box<dyn WakeupStream>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Next {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return Next::Shutdown,
            _ = tokio::time::sleep_until(until.into()) => return Next::Tick,
            woke = wakeups.next() => {
                if woke != Some(Wakeup::CapacityFreed) {
                    return Next::Tick;
                }
            }
        }
    }
}

async fn sleep_or_shutdown(
    delay: Duration,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Next {
    tokio::select! {
        _ = shutdown.as_mut() => Next::Shutdown,
        _ = tokio::time::sleep(delay) => Next::Tick,
    }
}
