//! Cron schedules on the leader: write the configured schedules when leadership is won, then
//! fire every due slot (see [`jobs_core::schedule`] for the slot and missed-slot rules).
//!
//! Firing is fenced in the store ([`ScheduleStore::fire`]): the slot's jobs are inserted in the
//! same transaction that advances `next_run_at` from the value read here, so a leader that dies
//! before the commit leaves the slot to its successor, and one that dies after it leaves nothing
//! to redo. Each slot yields exactly one job.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::schedule::{self, CronTime, NewSchedule, Schedule, ScheduleSource};
use jobs_core::{Clock, PlatformConfig, ScheduleStore, StoreError, SystemClock};

/// What one [`Cron::fire_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CronReport {
    /// Slots whose job was inserted.
    pub created: u64,
    /// Slots skipped: missed (by the policy), over the tenant's quota, or whose template no
    /// longer makes a valid job.
    pub skipped: u64,
    /// The earliest `next_run_at` of any schedule after this pass: when to look again.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The scheduler's cron role: configured schedules and the firing of due slots.
#[derive(Debug, Clone)]
pub struct Cron {
    store: Arc<dyn ScheduleStore>,
    platform: Arc<PlatformConfig>,
    configured: Option<Vec<NewSchedule>>,
    clock: Arc<dyn Clock>,
}

impl Cron {
    /// Fires the schedules in `store`; the configuration is left alone until
    /// [`with_configured`](Self::with_configured).
    pub fn new(store: Arc<dyn ScheduleStore>, platform: Arc<PlatformConfig>) -> Self {
        Cron {
            store,
            platform,
            configured: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The schedules the configuration declares (`ASYNC_JOBS_SCHEDULES`): on becoming leader,
    /// the store's configured schedules are made exactly these ([`ScheduleStore::sync_config_schedules`]).
    pub fn with_configured(mut self, schedules: Vec<NewSchedule>) -> Self {
        self.configured = Some(schedules);
        self
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Writes the configured schedules (if any were given): each is checked and created or
    /// replaced; configured schedules no longer declared are deleted. Returns how many were
    /// written.
    pub async fn sync_config(&self) -> Result<usize, StoreError> {
        let Some(configured) = &self.configured else {
            return Ok(0);
        };
        let now = self.clock.now();
        let mut drafts = Vec::with_capacity(configured.len());
        for new in configured {
            match schedule::check(new.clone(), ScheduleSource::Config, &self.platform, now) {
                Ok(d) => drafts.push(d),
                // Settings checked them at start; only a clock far off could fail here.
                Err(e) => {
                    tracing::warn!(schedule = %new.name, error = %e, "configured schedule refused")
                }
            }
        }
        let n = drafts.len();
        self.store.sync_config_schedules(drafts).await?;
        tracing::info!(schedules = n, "configured schedules written");
        Ok(n)
    }

    /// Fires every schedule whose `next_run_at` has come. A schedule that fails does not stop
    /// the others; the first store error is returned after every schedule had its turn.
    pub async fn fire_due(&self) -> Result<CronReport, StoreError> {
        let schedules = self.store.schedules().await?;
        let mut report = CronReport::default();
        let mut first_error = None;
        for s in &schedules {
            let next = match self.fire_one(s, &mut report).await {
                Ok(next) => next,
                Err(e) => {
                    metrics::counter!("async_jobs_scheduler_errors_total", "dependency" => "store")
                        .increment(1);
                    tracing::warn!(schedule = %s.name, error = %e, "firing the schedule failed");
                    first_error.get_or_insert(e);
                    Some(s.next_run_at)
                }
            };
            if let Some(next) = next {
                report.next_run_at = Some(report.next_run_at.map_or(next, |n| n.min(next)));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Fires `s` if due; returns its next slot.
    async fn fire_one(
        &self,
        s: &Schedule,
        report: &mut CronReport,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.clock.now();
        if s.next_run_at > now {
            return Ok(Some(s.next_run_at));
        }
        let cron = match CronTime::parse(&s.cron, &s.timezone) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(schedule = %s.name, error = %e, "stored schedule does not parse; not fired");
                return Ok(None);
            }
        };
        // The jobs' start window decides which slots are missed.
        let tolerance =
            schedule::slot_job(&s.name, &s.template, s.next_run_at, &self.platform, now)
                .map_or(Duration::ZERO, |j| j.delay_tolerance);
        let Some(due) = schedule::due(&cron, s.next_run_at, now, s.missed, tolerance) else {
            return Ok(Some(s.next_run_at));
        };
        let next = due.next_run_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut skipped = 0u64;
        if due.skipped {
            tracing::warn!(schedule = %s.name, since = %s.next_run_at, "missed slots skipped");
            skipped += 1;
        }
        let mut jobs = Vec::with_capacity(due.slots.len());
        for slot in &due.slots {
            match schedule::slot_job(&s.name, &s.template, *slot, &self.platform, now) {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    tracing::warn!(schedule = %s.name, %slot, error = %e, "the template makes no valid job; slot skipped");
                    skipped += 1;
                }
            }
        }
        #[cfg(feature = "fault-injection")]
        if !jobs.is_empty() {
            fault::before_fire(&s.name, &due.slots);
        }
        let fired = self.store.fire(&s.name, s.next_run_at, jobs, next).await?;
        #[cfg(feature = "fault-injection")]
        if fired.created > 0 {
            fault::after_fire(&s.name, &due.slots);
        }
        if !fired.advanced {
            // Another leader fired these slots (or the schedule changed meanwhile).
            tracing::info!(schedule = %s.name, "slots fired elsewhere; nothing written");
            return Ok(None);
        }
        if fired.over_quota > 0 {
            tracing::warn!(schedule = %s.name, tenant = %s.template.tenant_id, slots = fired.over_quota, "tenant quota full; slot skipped");
        }
        skipped += u64::from(fired.over_quota);
        report.created += u64::from(fired.created);
        report.skipped += skipped;
        // Labelled by use case (configured, so bounded), not by schedule: a tenant key may
        // create schedules, and a label per name would let it grow the series without bound.
        let use_case = s.template.use_case.clone();
        metrics::counter!("async_jobs_schedule_jobs_total", "use_case" => use_case.clone())
            .increment(u64::from(fired.created));
        if skipped > 0 {
            metrics::counter!("async_jobs_schedule_slots_skipped_total", "use_case" => use_case)
                .increment(skipped);
        }
        if fired.created > 0 {
            tracing::info!(schedule = %s.name, jobs = fired.created, next_run_at = %next, "schedule fired");
        }
        Ok(Some(next))
    }
}

/// Test-only crash points, compiled only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::sync::atomic::{AtomicU32, Ordering};

    use chrono::{DateTime, Utc};

    /// With `ASYNC_JOBS_FAULT_CRASH_BEFORE_FIRE=n` (n ≥ 1) the process aborts on its n-th
    /// firing with jobs, after computing the slots and before the store commits them.
    const ENV_CRASH_BEFORE_FIRE: &str = "ASYNC_JOBS_FAULT_CRASH_BEFORE_FIRE";
    /// With `ASYNC_JOBS_FAULT_CRASH_AFTER_FIRE=n` it aborts right after its n-th firing that
    /// inserted a job was committed.
    const ENV_CRASH_AFTER_FIRE: &str = "ASYNC_JOBS_FAULT_CRASH_AFTER_FIRE";
    /// With `ASYNC_JOBS_FAULT_STALL_BEFORE_FIRE=n` it prints a line and stops (sleeps forever)
    /// before its n-th firing: the test kills it with SIGKILL there.
    const ENV_STALL_BEFORE_FIRE: &str = "ASYNC_JOBS_FAULT_STALL_BEFORE_FIRE";

    static BEFORE: AtomicU32 = AtomicU32::new(0);
    static AFTER: AtomicU32 = AtomicU32::new(0);

    fn nth(var: &str) -> Option<u32> {
        std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n >= 1)
    }

    /// `name slot slot…` (RFC 3339), for the tests to read from the log.
    fn describe(name: &str, slots: &[DateTime<Utc>]) -> String {
        let slots: Vec<String> = slots
            .iter()
            .map(|s| s.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .collect();
        format!("schedule {name} slots {}", slots.join(" "))
    }

    pub(super) fn before_fire(name: &str, slots: &[DateTime<Utc>]) {
        let count = BEFORE.fetch_add(1, Ordering::SeqCst) + 1;
        if nth(ENV_STALL_BEFORE_FIRE).is_some_and(|n| count == n) {
            eprintln!(
                "fault injection: stalled before fire {count}: {}",
                describe(name, slots)
            );
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        if nth(ENV_CRASH_BEFORE_FIRE).is_some_and(|n| count >= n) {
            eprintln!(
                "fault injection: aborting before fire {count}, after computing its slots: {}",
                describe(name, slots)
            );
            std::process::abort();
        }
    }

    pub(super) fn after_fire(name: &str, slots: &[DateTime<Utc>]) {
        let count = AFTER.fetch_add(1, Ordering::SeqCst) + 1;
        if nth(ENV_CRASH_AFTER_FIRE).is_some_and(|n| count >= n) {
            eprintln!(
                "fault injection: aborting after fire {count} was committed: {}",
                describe(name, slots)
            );
            std::process::abort();
        }
    }
}
