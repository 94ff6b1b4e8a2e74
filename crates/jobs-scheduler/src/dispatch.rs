//! One scheduler tick: reap expired leases, lease due jobs earliest-deadline-first under each use
//! case's cap, and send them to the transport.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobs_core::store::{PickRequest, ReapReport};
use jobs_core::transport::OutgoingMessage;
use jobs_core::{
    Dispatch, DispatchMessage, PlatformConfig, SchedulerStore, StoreError, Transport,
    TransportError,
};

use crate::config::SchedulerConfig;

/// A tick could not do all of its work. The jobs involved are safe: leased jobs that were not
/// sent go back to `pending` at once ([`DispatchStore::return_dispatched`](jobs_core::DispatchStore::return_dispatched)), or, if the store fails
/// too, when the reaper finds their dispatch lease expired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport failed for a use case.
    #[error("sending to '{use_case}' failed: {source}")]
    Transport {
        /// The use case whose queue failed.
        use_case: String,
        /// What failed.
        source: TransportError,
    },
}

/// Counts a failed dependency call (`async_jobs_scheduler_errors_total{dependency}`).
fn count_error(e: SchedulerError) -> SchedulerError {
    let dependency = match e {
        SchedulerError::Store(_) => "store",
        SchedulerError::Transport { .. } => "sqs",
    };
    metrics::counter!("async_jobs_scheduler_errors_total", "dependency" => dependency).increment(1);
    e
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Expired leases returned.
    pub reaped: ReapReport,
    /// Jobs leased and handed to the transport.
    pub dispatched: u64,
    /// The same, per use case (use cases that dispatched nothing are left out): what the
    /// backlog's drain rate is measured from ([`BacklogMonitor`](crate::BacklogMonitor)).
    pub dispatched_by_use_case: std::collections::BTreeMap<String, u64>,
    /// Jobs leased but not accepted by the transport (returned to `pending`).
    pub send_failed: u64,
    /// True if some use case filled a whole batch: more due jobs may be waiting, tick again now.
    pub saturated: bool,
    /// The time this tick spent on the use cases whose pick leased jobs but filled no batch
    /// (their pick and the sending of its messages): what paces the loop's next tick after a
    /// freed place (`PACE` in run.rs).
    pub partial_dispatch_time: Duration,
    /// The shortest wait until a due job held back only by its tenant's rate limit may start
    /// ([`DispatchStore::rate_wait`](jobs_core::DispatchStore::rate_wait)), over the use cases
    /// with rate limits: tick again no later than this.
    pub rate_wait: Option<std::time::Duration>,
    /// Use cases whose dispatch failed in this tick (their store, or the transport refused
    /// some or all of their messages), with the error: each backs off on its own (from
    /// [`SchedulerConfig::min_backoff`], doubling up to [`SchedulerConfig::max_backoff`]) while
    /// the others go on. A use case whose messages were refused in part has no error of its own
    /// ([`TickReport::send_failed`] counts them) and is listed in
    /// [`TickReport::backing_off`] at the next tick.
    pub failed: BTreeMap<String, SchedulerError>,
    /// Use cases skipped in this tick because they are still backing off from a failure.
    pub backing_off: Vec<String>,
    /// The shortest wait until a failed or backing-off use case may be tried again: tick again
    /// no later than this.
    pub retry_in: Option<Duration>,
}

/// A use case backing off after a failure: the wait after its last failure and when it may be
/// tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    wait: Duration,
    until: Instant,
}

/// Reaps, leases and sends: the scheduler's unit of work.
///
/// It needs only the scheduler's store roles ([`SchedulerStore`]: the pick and the maintenance);
/// an `Arc<dyn JobStore>` converts to it where one is passed.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn SchedulerStore>,
    transport: Arc<dyn Transport>,
    platform: Arc<PlatformConfig>,
    config: SchedulerConfig,
    /// Use cases backing off after a failure (shared by the clones of this dispatcher).
    failing: Arc<Mutex<BTreeMap<String, Backoff>>>,
    /// Rate-limited use cases whose empty pick was looked at again (see `dispatch_use_case`),
    /// until a pick leases something.
    rate_rechecked: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

impl Dispatcher {
    /// A dispatcher over the given ports.
    pub fn new(
        store: Arc<dyn SchedulerStore>,
        transport: Arc<dyn Transport>,
        platform: Arc<PlatformConfig>,
        config: SchedulerConfig,
    ) -> Self {
        Dispatcher {
            store,
            transport,
            platform,
            config,
            failing: Arc::new(Mutex::new(BTreeMap::new())),
            rate_rechecked: Arc::new(Mutex::new(std::collections::BTreeSet::new())),
        }
    }

    fn rate_rechecked(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.rate_rechecked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Backoff>> {
        // Single inserts and removes: a panic while holding the lock leaves the map consistent.
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `use_case` still backs off, if it does.
    fn backing_off(&self, use_case: &str, now: Instant) -> Option<Duration> {
        self.failing()
            .get(use_case)
            .and_then(|b| b.until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Notes a failure of `use_case`: its next wait (doubled from the last one), returned.
    fn note_failure(&self, use_case: &str) -> Duration {
        let mut failing = self.failing();
        let wait = failing.get(use_case).map_or(self.config.min_backoff, |b| {
            (b.wait * 2).min(self.config.max_backoff)
        });
        failing.insert(
            use_case.to_owned(),
            Backoff {
                wait,
                until: Instant::now() + wait,
            },
        );
        wait
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SchedulerStore> {
        &self.store
    }

    /// One tick: the reap, then the dispatch ([`reap`](Self::reap), [`dispatch`](Self::dispatch)).
    /// A failing use case does not hold the others back: its error is reported in
    /// [`TickReport::failed`] and it backs off on its own (skipped by the ticks until its wait is
    /// over, [`TickReport::backing_off`]), while the other use cases dispatch as usual. The tick
    /// fails (`Err`, the first error) only when the reap fails or every use case it tried
    /// failed: then the whole loop backs off.
    pub async fn tick(&self) -> Result<TickReport, SchedulerError> {
        let reaped = self.reap().await?;
        let mut report = self.dispatch().await?;
        report.reaped = reaped;
        Ok(report)
    }

    /// Returns expired leases to their next state (at most the configured batch per state).
    /// The run loop calls it after the dispatch of a tick, at most every 100 ms while ticks come
    /// faster, and again at once while it finds expired leases: a tick started by an enqueue's
    /// wake-up goes straight to the pick, while leases expire on a scale of seconds.
    pub async fn reap(&self) -> Result<ReapReport, SchedulerError> {
        let reaped = self
            .store
            .reap_expired(self.config.reap_batch)
            .await
            .map_err(|e| count_error(e.into()))?;
        if reaped.total() > 0 {
            tracing::info!(?reaped, "returned expired leases");
            metrics::counter!("async_jobs_reaped_total").increment(reaped.total());
        }
        Ok(reaped)
    }

    /// Dispatches each use case's due jobs: [`tick`](Self::tick) without the reap (the report's
    /// `reaped` is empty). Fails only when every use case it tried failed.
    pub async fn dispatch(&self) -> Result<TickReport, SchedulerError> {
        let started = Instant::now();
        let mut report = TickReport::default();
        let (mut first_error, mut tried) = (None, 0usize);
        for uc in self.platform.use_cases.values() {
            metrics::gauge!("async_jobs_use_case_cap", "use_case" => uc.name.clone())
                .set(f64::from(uc.max_concurrent));
            if let Some(wait) = self.backing_off(&uc.name, Instant::now()) {
                report.backing_off.push(uc.name.clone());
                report.retry_in = Some(report.retry_in.map_or(wait, |w| w.min(wait)));
                continue;
            }
            tried += 1;
            let refused_before = report.send_failed;
            match self
                .dispatch_use_case(&uc.name, uc.max_concurrent, &mut report)
                .await
            {
                Ok(()) if report.send_failed == refused_before => {
                    self.failing().remove(&uc.name);
                }
                // Messages refused: the jobs are pending again, and their wake-up would start
                // the next tick at once; the use case backs off instead of spinning.
                Ok(()) => {
                    let wait = self.note_failure(&uc.name);
                    tracing::warn!(use_case = %uc.name, refused = report.send_failed - refused_before, retry_in = ?wait, "the transport refused messages; backing off this use case");
                    report.retry_in = Some(report.retry_in.map_or(wait, |w| w.min(wait)));
                }
                Err(e) => {
                    let e = count_error(e);
                    let wait = self.note_failure(&uc.name);
                    tracing::warn!(use_case = %uc.name, error = %e, retry_in = ?wait, "dispatch failed; backing off this use case, the others go on");
                    report.retry_in = Some(report.retry_in.map_or(wait, |w| w.min(wait)));
                    report.failed.insert(uc.name.clone(), e.clone());
                    first_error.get_or_insert(e);
                }
            }
        }
        metrics::histogram!("async_jobs_scheduler_tick_seconds")
            .record(started.elapsed().as_secs_f64());
        match first_error {
            Some(e) if report.failed.len() == tried => Err(e),
            _ => Ok(report),
        }
    }

    async fn dispatch_use_case(
        &self,
        use_case: &str,
        cap: u32,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let batch = self.config.dispatch_batch;
        let picking = Instant::now();
        let leased = self
            .store
            .lease_due(
                use_case,
                PickRequest {
                    cap,
                    limit: batch,
                    lease: self.config.dispatch_lease,
                },
            )
            .await?;
        let saturated = leased.len() as u32 >= batch;
        if !saturated && self.platform.rate_limits.limits_use_case(use_case) {
            // Jobs held back by a rate limit raise no wake-up when their token comes: ask when
            // that is. A failure only costs promptness (the next tick comes anyway).
            let gauge = metrics::gauge!("async_jobs_rate_limit_wait_seconds", "use_case" => use_case.to_owned());
            match self.store.rate_wait(use_case).await {
                Ok(Some(wait)) => {
                    gauge.set(wait.as_secs_f64());
                    report.rate_wait = Some(report.rate_wait.map_or(wait, |w| w.min(wait)));
                }
                Ok(None) => {
                    gauge.set(0.0);
                    // The pick and this read see the buckets at two instants: a token that came
                    // in between makes this say "nothing waits" although the pick left a job for
                    // want of it, and the loop would sleep a whole tick interval. So the use case
                    // is picked again at once, once: the pick takes the job, or (the cap or a
                    // pause held it, or nothing is due) finds nothing, says nothing waits again,
                    // and the loop sleeps as usual until a pick leases something.
                    if self.rate_rechecked().insert(use_case.to_owned()) {
                        report.rate_wait = Some(Duration::ZERO);
                    }
                }
                Err(e) => {
                    count_error(e.clone().into());
                    tracing::warn!(use_case, error = %e, "could not read the rate-limit wait");
                }
            }
            if !leased.is_empty() {
                self.rate_rechecked().remove(use_case);
            }
        }
        if leased.is_empty() {
            return Ok(());
        }
        if saturated {
            report.saturated = true;
        }
        #[cfg(feature = "fault-injection")]
        fault::crash_after_lease();
        let messages: Vec<OutgoingMessage> = leased
            .iter()
            .enumerate()
            .map(|(i, d)| OutgoingMessage {
                id: i.to_string(),
                body: DispatchMessage::for_dispatch(d).encode(),
            })
            .collect();
        let count = leased.len() as u64;
        let sent = self.transport.send_batch(use_case, messages).await;
        if !saturated {
            report.partial_dispatch_time += picking.elapsed();
        }
        // Entries the transport did not take: by index (the entry ids), or all of them.
        let unsent: Vec<usize> = match &sent {
            Ok(failures) => {
                for f in failures {
                    tracing::warn!(use_case, entry = %f.id, reason = %f.reason, "send failed; returning the job to pending");
                }
                let mut unsent: Vec<usize> = failures
                    .iter()
                    .filter_map(|f| f.id.parse::<usize>().ok())
                    .filter(|i| *i < leased.len())
                    .collect();
                unsent.sort_unstable();
                unsent.dedup();
                unsent
            }
            Err(_) => (0..leased.len()).collect(),
        };
        let failed = unsent.len() as u64;
        report.dispatched += count - failed;
        if count > failed {
            *report
                .dispatched_by_use_case
                .entry(use_case.to_owned())
                .or_default() += count - failed;
        }
        report.send_failed += failed;
        metrics::counter!("async_jobs_dispatched_total", "use_case" => use_case.to_owned())
            .increment(count - failed);
        if failed > 0 {
            metrics::counter!("async_jobs_dispatch_send_failures_total", "use_case" => use_case.to_owned())
                .increment(failed);
            self.return_unsent(use_case, unsent.iter().map(|i| &leased[*i]))
                .await;
        }
        match sent {
            Ok(_) => Ok(()),
            Err(source) => Err(SchedulerError::Transport {
                use_case: use_case.to_owned(),
                source,
            }),
        }
    }

    /// Gives leased jobs whose message was not sent back to `pending` at once, so they neither
    /// wait out the dispatch lease nor hold places under the cap. If the store fails too, the
    /// reaper returns them when their dispatch lease expires.
    async fn return_unsent<'a>(&self, use_case: &str, unsent: impl Iterator<Item = &'a Dispatch>) {
        let entries: Vec<_> = unsent.map(|d| (d.job_id, d.lease_token)).collect();
        let n = entries.len();
        match self.store.return_dispatched(entries).await {
            Ok(returned) => {
                tracing::info!(
                    use_case,
                    unsent = n,
                    returned,
                    "returned unsent jobs to pending"
                );
                metrics::counter!("async_jobs_dispatch_returned_total", "use_case" => use_case.to_owned())
                    .increment(returned);
            }
            Err(e) => {
                count_error(e.clone().into());
                tracing::warn!(use_case, unsent = n, error = %e, "could not return unsent jobs; the reaper will when their dispatch lease expires");
            }
        }
    }

    /// Writes the configured rate limits to the store (the leader does, when it takes over), so
    /// every pick applies them: see [`DispatchStore::set_rate_limits`](jobs_core::DispatchStore::set_rate_limits).
    pub async fn sync_rate_limits(&self) -> Result<(), StoreError> {
        let limits = self.platform.rate_limits.all();
        self.store.set_rate_limits(&limits).await?;
        tracing::info!(limits = limits.len(), "rate limits in force");
        Ok(())
    }

    /// Deletes one batch ([`SchedulerConfig::prune_batch`]) of terminal jobs past the
    /// retention; returns how many. The scheduler's loop calls it while batches come back full
    /// (see `prune_loop` in run.rs).
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let pruned = self
            .store
            .prune(self.config.retention, self.config.prune_batch)
            .await?;
        if pruned > 0 {
            tracing::debug!(pruned, "pruned old terminal jobs");
            metrics::counter!("async_jobs_pruned_total").increment(pruned);
        }
        Ok(pruned)
    }
}

/// Test-only crash points, compiled only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// With `ASYNC_JOBS_FAULT_CRASH_AFTER_LEASE=n` (n ≥ 1), the process aborts right after its
    /// n-th non-empty lease is committed to the store and before the messages are sent: the
    /// "scheduler died between the store commit and the SQS send" fault.
    pub(super) const ENV_CRASH_AFTER_LEASE: &str = "ASYNC_JOBS_FAULT_CRASH_AFTER_LEASE";

    static LEASES: AtomicU32 = AtomicU32::new(0);

    pub(super) fn crash_after_lease() {
        let Some(n) = std::env::var(ENV_CRASH_AFTER_LEASE)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n >= 1)
        else {
            return;
        };
        if LEASES.fetch_add(1, Ordering::SeqCst) + 1 >= n {
            eprintln!("fault injection: aborting after lease {n}, before the send");
            std::process::abort();
        }
    }
}
