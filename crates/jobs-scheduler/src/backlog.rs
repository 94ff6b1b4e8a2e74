//! The backlog gauges and the scaling signal, exported by the leading scheduler.
//!
//! Every [`BacklogConfig::interval`] the leader reads the backlog from the store
//! ([`ApiStore::backlog`]: due pending jobs and the oldest `run_at`, per use case and, when the
//! tenant label policy is on, per tenant) and sets:
//!
//! | gauge | labels | meaning |
//! |---|---|---|
//! | `async_jobs_backlog_jobs` | `use_case` | jobs due and pending (not paused) |
//! | `async_jobs_oldest_pending_age_seconds` | `use_case` | how long the oldest of them has waited since its `run_at` (0: none waits) |
//! | `async_jobs_dispatch_rate` | `use_case` | jobs dispatched per second, averaged over the rate window ([`DrainRate`]) |
//! | `async_jobs_backlog_seconds` | `use_case` | the scaling signal: backlog ÷ max(dispatch rate, min rate) ([`backlog_seconds`]) |
//! | `async_jobs_tenant_backlog_jobs`, `async_jobs_tenant_oldest_pending_age_seconds` | `use_case`, `tenant` | the same per tenant, under the [`TenantLabelPolicy`] (tenants past the cap add up in `tenant="other"`) |
//!
//! **Why the scheduler:** it always runs beside the store (the API may not be deployed, or be
//! mounted inside a team's own service), and only the leader dispatches, so it alone measures the
//! drain rate without asking the database — and one process reports, so a CloudWatch series holds
//! one value, not a copy per API task. A standby reports nothing until it leads; a scheduler that
//! stops leading sets its gauges to zero (so take the `Maximum` across scheduler tasks).
//!
//! **Why dispatches measure the drain:** a due job leaves the backlog when the scheduler
//! dispatches it, and under a backlog the pick refills each use case's cap as places free, so the
//! dispatch rate follows the rate jobs finish — it grows with the workers until the cap binds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs_core::scaling::{backlog_seconds, DrainRate, DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW};
use jobs_core::{
    ApiStore, BacklogGrouping, PlatformConfig, StoreError, TenantLabelPolicy, TenantLabeler,
};
use tokio::time::Instant;

/// Gauge: due pending jobs per `use_case`.
pub const BACKLOG_JOBS: &str = "async_jobs_backlog_jobs";
/// Gauge: age in seconds of the oldest due pending job per `use_case`.
pub const OLDEST_PENDING_AGE: &str = "async_jobs_oldest_pending_age_seconds";
/// Gauge: jobs dispatched per second per `use_case`, averaged over the rate window.
pub const DISPATCH_RATE: &str = "async_jobs_dispatch_rate";
/// Gauge: the scaling signal per `use_case`, backlog seconds.
pub const BACKLOG_SECONDS: &str = "async_jobs_backlog_seconds";
/// Gauge: due pending jobs per `use_case` and `tenant` (under the tenant label policy).
pub const TENANT_BACKLOG_JOBS: &str = "async_jobs_tenant_backlog_jobs";
/// Gauge: age of the oldest due pending job per `use_case` and `tenant`.
pub const TENANT_OLDEST_PENDING_AGE: &str = "async_jobs_tenant_oldest_pending_age_seconds";

/// How the backlog is measured and exported.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogConfig {
    /// How often the leader reads the backlog (default 10 s; the store query costs in proportion
    /// to the backlog, see docs/postgres.md).
    pub interval: Duration,
    /// The drain rate's averaging window ([`DrainRate`], default 60 s).
    pub rate_window: Duration,
    /// The drain rate's floor in jobs per second (`ASYNC_JOBS_SCALING_MIN_RATE`, default 1): one
    /// worker task's throughput, so the signal is finite and large when nothing drains.
    pub min_rate: f64,
    /// Which tenants get per-tenant series (`ASYNC_JOBS_METRICS_TENANT_LABELS`, default off).
    pub tenant_labels: TenantLabelPolicy,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        BacklogConfig {
            interval: Duration::from_secs(10),
            rate_window: DEFAULT_RATE_WINDOW,
            min_rate: DEFAULT_MIN_RATE,
            tenant_labels: TenantLabelPolicy::off(),
        }
    }
}

/// One use case's figures from [`BacklogMonitor::refresh`].
#[derive(Debug, Clone, PartialEq)]
pub struct UseCaseBacklog {
    /// Due pending jobs.
    pub due: u64,
    /// The oldest one's wait since its `run_at`.
    pub oldest_age: Duration,
    /// Dispatches per second (the drain rate).
    pub dispatch_rate: f64,
    /// The scaling signal.
    pub backlog_seconds: f64,
}

#[derive(Debug, Default)]
struct State {
    /// Dispatches per use case since the last refresh.
    dispatched: BTreeMap<String, u64>,
    rates: BTreeMap<String, DrainRate>,
    last_refresh: Option<Instant>,
    /// Since when `dispatched` has counted: the last refresh, or the first dispatch noted.
    counting_since: Option<Instant>,
    /// The (use case, tenant label) series set by the last refresh, zeroed when they empty.
    tenant_series: BTreeSet<(String, String)>,
}

/// Reads the backlog and exports its gauges and the scaling signal; driven by the leader's loop
/// ([`Scheduler::with_backlog`](crate::Scheduler::with_backlog)), or step by step in tests.
#[derive(Debug, Clone)]
pub struct BacklogMonitor {
    store: Arc<dyn ApiStore>,
    platform: Arc<PlatformConfig>,
    config: BacklogConfig,
    labeler: Arc<TenantLabeler>,
    state: Arc<Mutex<State>>,
}

impl BacklogMonitor {
    /// A monitor of the use cases of `platform` in `store`.
    pub fn new(
        store: Arc<dyn ApiStore>,
        platform: Arc<PlatformConfig>,
        config: BacklogConfig,
    ) -> Self {
        BacklogMonitor {
            labeler: Arc::new(TenantLabeler::new(config.tenant_labels.clone())),
            store,
            platform,
            config,
            state: Arc::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &BacklogConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes jobs dispatched (a tick's [`TickReport::dispatched_by_use_case`](crate::TickReport)).
    pub fn dispatched(&self, by_use_case: &BTreeMap<String, u64>) {
        let mut state = self.state();
        if state.counting_since.is_none() {
            state.counting_since = Some(Instant::now());
        }
        for (use_case, n) in by_use_case {
            let total = state.dispatched.entry(use_case.clone()).or_default();
            *total = total.saturating_add(*n);
        }
    }

    /// Whether [`BacklogConfig::interval`] has passed since the last refresh (or none was made).
    pub fn is_due(&self) -> bool {
        self.state()
            .last_refresh
            .is_none_or(|at| at.elapsed() >= self.config.interval)
    }

    /// Reads the backlog, folds the dispatches noted since the last refresh into each use
    /// case's drain rate and sets the gauges. Returns the figures per configured use case. On a
    /// store error the gauges keep their last values and the dispatches stay noted.
    pub async fn refresh(&self) -> Result<BTreeMap<String, UseCaseBacklog>, StoreError> {
        let grouping = if self.config.tenant_labels.is_on() {
            BacklogGrouping::Tenant
        } else {
            BacklogGrouping::UseCase
        };
        let backlog = self.store.backlog(grouping).await?;
        let now = Instant::now();
        let mut state = self.state();
        let elapsed = state.counting_since.map(|at| now.duration_since(at));
        state.last_refresh = Some(now);
        state.counting_since = Some(now);
        let by_use_case = backlog.by_use_case();
        let mut out = BTreeMap::new();
        for use_case in self.platform.use_cases.keys() {
            let dispatched = state.dispatched.remove(use_case).unwrap_or(0);
            let window = self.config.rate_window;
            let rate = state
                .rates
                .entry(use_case.clone())
                .or_insert_with(|| DrainRate::new(window));
            // Nothing counted yet (a first refresh before any dispatch): no interval to observe.
            if let Some(elapsed) = elapsed {
                rate.observe(elapsed, dispatched);
            }
            let rate = rate.per_second();
            let row = by_use_case.iter().find(|r| &r.use_case == use_case);
            let due = row.map_or(0, |r| r.due);
            let figures = UseCaseBacklog {
                due,
                oldest_age: row.map_or(Duration::ZERO, |r| r.oldest_age(backlog.at)),
                dispatch_rate: rate,
                backlog_seconds: backlog_seconds(due, rate, self.config.min_rate),
            };
            let label = use_case.clone();
            metrics::gauge!(BACKLOG_JOBS, "use_case" => label.clone()).set(due as f64);
            metrics::gauge!(OLDEST_PENDING_AGE, "use_case" => label.clone())
                .set(figures.oldest_age.as_secs_f64());
            metrics::gauge!(DISPATCH_RATE, "use_case" => label.clone()).set(rate);
            metrics::gauge!(BACKLOG_SECONDS, "use_case" => label).set(figures.backlog_seconds);
            out.insert(use_case.clone(), figures);
        }
        if grouping == BacklogGrouping::Tenant {
            // Tenants past the cap (or not listed) add up under `other`: count summed, oldest kept.
            let mut series: BTreeMap<(String, String), (u64, Duration)> = BTreeMap::new();
            for row in &backlog.rows {
                let Some(label) = row.tenant_id.as_deref().and_then(|t| self.labeler.label(t))
                else {
                    continue;
                };
                let entry = series.entry((row.use_case.clone(), label)).or_default();
                entry.0 = entry.0.saturating_add(row.due);
                entry.1 = entry.1.max(row.oldest_age(backlog.at));
            }
            for key in std::mem::take(&mut state.tenant_series) {
                if !series.contains_key(&key) {
                    set_tenant(&key, 0, Duration::ZERO);
                }
            }
            for (key, (due, age)) in &series {
                set_tenant(key, *due, *age);
            }
            state.tenant_series = series.into_keys().collect();
        }
        Ok(out)
    }

    /// Zeroes the gauges and forgets the rates: the scheduler stopped leading (another one
    /// measures now) or is stopping.
    pub fn stand_down(&self) {
        let mut state = self.state();
        for use_case in self.platform.use_cases.keys() {
            for name in [
                BACKLOG_JOBS,
                OLDEST_PENDING_AGE,
                DISPATCH_RATE,
                BACKLOG_SECONDS,
            ] {
                metrics::gauge!(name, "use_case" => use_case.clone()).set(0.0);
            }
        }
        for key in std::mem::take(&mut state.tenant_series) {
            set_tenant(&key, 0, Duration::ZERO);
        }
        *state = State::default();
    }
}

fn set_tenant((use_case, tenant): &(String, String), due: u64, age: Duration) {
    metrics::gauge!(TENANT_BACKLOG_JOBS, "use_case" => use_case.clone(), "tenant" => tenant.clone())
        .set(due as f64);
    metrics::gauge!(TENANT_OLDEST_PENDING_AGE, "use_case" => use_case.clone(), "tenant" => tenant.clone())
        .set(age.as_secs_f64());
}
