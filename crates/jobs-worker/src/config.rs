//! Worker settings and where they come from.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ASYNC_JOBS_WORKER_CONCURRENCY` | jobs run at once, across all use cases | 10 |
//! | `ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS` | how long in-flight jobs may finish after SIGTERM | 25 |
//! | `ASYNC_JOBS_WORKER_USE_CASES` | comma-separated use cases to poll | every configured one |
//! | `ASYNC_JOBS_WORKER_RECEIVE_WAIT_SECONDS` | long-poll wait (0–20, SQS's limit) | 20 |
//! | `ASYNC_JOBS_WORKER_HEARTBEAT_LEASE_SECONDS` | lease taken at claim and renewed by heartbeats (≥ 1) | 30 |
//! | `ASYNC_JOBS_WORKER_LEASE_MARGIN_SECONDS` | how long past a job's timeout heartbeats may still renew it while the handler runs | 30 |
//! | `ASYNC_JOBS_WORKER_RECEIVE_LOOPS` | concurrent receive loops per use case (1–64) | 1 |
//!
//! Keep the grace below the ECS task's `stopTimeout` (30 s by default) so jobs that outlast it are
//! released back to `pending` before the container is killed.

use std::time::Duration;

use jobs_core::ConfigError;

/// Default number of jobs run at once.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Default long-poll wait.
pub const DEFAULT_RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Default lease taken at claim and renewed by each heartbeat.
pub const DEFAULT_HEARTBEAT_LEASE: Duration = Duration::from_secs(30);
/// Default margin past a job's timeout during which heartbeats still renew its lease.
pub const DEFAULT_LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Default shutdown grace.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Longest long-poll wait SQS accepts.
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);

/// How a [`Worker`](crate::Worker) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Use cases to poll; empty means every use case of the service's configuration.
    pub use_cases: Vec<String>,
    /// Most jobs run at once, shared by all use cases (≥ 1).
    pub concurrency: usize,
    /// How long one receive call waits for messages.
    pub receive_wait: Duration,
    /// The lease a claim takes and each heartbeat renews. Heartbeats run every third of it, from
    /// the claim until the outcome is recorded, so a worker that dies loses its jobs to the
    /// reaper within one lease. See also [`lease_safety_margin`](Self::lease_safety_margin).
    pub heartbeat_lease: Duration,
    /// Heartbeats stop renewing a job's lease once its handler has run for `timeout +
    /// lease_margin`: a wedged attempt can never hold its job for ever. (Recording the outcome
    /// afterwards is not bounded by it: it renews until the outcome is written or the lease is
    /// lost or no longer confirmed.)
    pub lease_margin: Duration,
    /// After shutdown is requested, in-flight jobs get this long to finish before they are
    /// cancelled and released back to `pending`.
    pub shutdown_grace: Duration,
    /// Pause after a store or transport failure before the receive loop tries again.
    pub error_backoff: Duration,
    /// Receive loops per use case (≥ 1, default 1). One loop asks for as many messages as slots
    /// are free (up to the transport's limit: 10 on SQS), and slots freed while it claims a batch
    /// make its next receive bigger, so under load one loop already receives full batches. More
    /// loops help when receives are slow but full (SQS at high rates: ~2× with 4 loops on the
    /// emulator); the price is smaller receives, i.e. more SQS requests per job (≈ 0.42 instead
    /// of ≈ 0.33 with 4 loops on the emulator), and one long poll per loop per `receive_wait`
    /// when idle. In process one loop is fastest (more loops split the free slots).
    pub receive_loops: usize,
    /// Which tenants get series of their own in the per-tenant deadline metrics
    /// (`async_jobs_tenant_deadlines_met_total`, …; default off, see
    /// [`jobs_core::tenant_label`]). The per-use-case metrics do not depend on it.
    pub tenant_labels: jobs_core::TenantLabelPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            use_cases: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            receive_wait: DEFAULT_RECEIVE_WAIT,
            heartbeat_lease: DEFAULT_HEARTBEAT_LEASE,
            lease_margin: DEFAULT_LEASE_MARGIN,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            error_backoff: Duration::from_secs(1),
            receive_loops: DEFAULT_RECEIVE_LOOPS,
            tenant_labels: jobs_core::TenantLabelPolicy::off(),
        }
    }
}

/// Default receive loops per use case.
pub const DEFAULT_RECEIVE_LOOPS: usize = 1;
/// The environment variable for [`WorkerConfig::receive_loops`].
pub const ENV_RECEIVE_LOOPS: &str = "ASYNC_JOBS_WORKER_RECEIVE_LOOPS";

/// The environment variable for [`WorkerConfig::concurrency`].
pub const ENV_CONCURRENCY: &str = "ASYNC_JOBS_WORKER_CONCURRENCY";
/// The environment variable for [`WorkerConfig::shutdown_grace`].
pub const ENV_SHUTDOWN_GRACE: &str = "ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS";
/// The environment variable for [`WorkerConfig::use_cases`].
pub const ENV_USE_CASES: &str = "ASYNC_JOBS_WORKER_USE_CASES";
/// The environment variable for [`WorkerConfig::receive_wait`].
pub const ENV_RECEIVE_WAIT: &str = "ASYNC_JOBS_WORKER_RECEIVE_WAIT_SECONDS";
/// The environment variable for [`WorkerConfig::heartbeat_lease`].
pub const ENV_HEARTBEAT_LEASE: &str = "ASYNC_JOBS_WORKER_HEARTBEAT_LEASE_SECONDS";
/// The environment variable for [`WorkerConfig::lease_margin`].
pub const ENV_LEASE_MARGIN: &str = "ASYNC_JOBS_WORKER_LEASE_MARGIN_SECONDS";

fn config_error(variable: &str, expected: &str, got: &str) -> ConfigError {
    ConfigError::new(variable, expected, got)
}

fn seconds(variable: &str, raw: &str, min: f64, max: f64) -> Result<Duration, ConfigError> {
    ConfigError::seconds(variable, raw, min, max)
}

impl WorkerConfig {
    /// Reads the settings from the process environment (see the module docs); unset variables
    /// keep their defaults. The error names the first bad variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        WorkerConfig::from_vars(jobs_core::Env::from_process().pairs())
    }

    /// Reads the settings from `vars` (name, value pairs), as [`from_env`](Self::from_env) does.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = WorkerConfig::default();
        for (name, value) in vars {
            let (name, raw) = (name.as_ref(), value.as_ref());
            match name {
                ENV_CONCURRENCY => {
                    config.concurrency = match raw.trim().parse::<usize>() {
                        Ok(n) if (1..=10_000).contains(&n) => n,
                        _ => return Err(config_error(name, "an integer from 1 to 10000", raw)),
                    }
                }
                ENV_RECEIVE_LOOPS => {
                    config.receive_loops = match raw.trim().parse::<usize>() {
                        Ok(n) if (1..=64).contains(&n) => n,
                        _ => return Err(config_error(name, "an integer from 1 to 64", raw)),
                    }
                }
                ENV_SHUTDOWN_GRACE => config.shutdown_grace = seconds(name, raw, 0.0, 3600.0)?,
                ENV_RECEIVE_WAIT => config.receive_wait = seconds(name, raw, 0.0, 20.0)?,
                ENV_HEARTBEAT_LEASE => config.heartbeat_lease = seconds(name, raw, 1.0, 86_400.0)?,
                ENV_LEASE_MARGIN => config.lease_margin = seconds(name, raw, 0.0, 86_400.0)?,
                ENV_USE_CASES => {
                    let use_cases: Vec<String> = raw
                        .split(',')
                        .map(|s| s.trim().to_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if use_cases.is_empty() {
                        return Err(config_error(
                            name,
                            "a comma-separated list of use cases",
                            raw,
                        ));
                    }
                    config.use_cases = use_cases;
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// Sets [`tenant_labels`](Self::tenant_labels), the per-tenant series policy.
    pub fn with_tenant_labels(mut self, policy: jobs_core::TenantLabelPolicy) -> Self {
        self.tenant_labels = policy;
        self
    }

    /// Sets the receive loops per use case (at least 1).
    pub fn with_receive_loops(mut self, loops: usize) -> Self {
        self.receive_loops = loops.max(1);
        self
    }

    /// Sets the use cases to poll.
    pub fn with_use_cases<I, S>(mut self, use_cases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.use_cases = use_cases.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the concurrency.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the long-poll wait.
    pub fn with_receive_wait(mut self, wait: Duration) -> Self {
        self.receive_wait = wait;
        self
    }

    /// Sets the heartbeat lease.
    pub fn with_heartbeat_lease(mut self, lease: Duration) -> Self {
        self.heartbeat_lease = lease;
        self
    }

    /// Sets the shutdown grace.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets the pause after store or transport failures.
    pub fn with_error_backoff(mut self, backoff: Duration) -> Self {
        self.error_backoff = backoff;
        self
    }

    /// How often a job's lease is renewed: a third of the lease. After a failed renewal (store
    /// error) the next one comes after at most a second.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.heartbeat_lease / 3).max(Duration::from_millis(10))
    }

    /// How long before its lease's last *confirmed* expiry a handler is stopped: a sixth of the
    /// lease (5 s of the default 30 s).
    ///
    /// The worker tracks, as a local instant, until when the store has confirmed each job's
    /// lease: the instant the claim (or the last successful heartbeat) was *sent* plus the lease,
    /// which the store's own `now() + lease` cannot precede. A handler still running when local
    /// time reaches that instant minus this margin is cancelled and dropped and its outcome
    /// discarded (metric `async_jobs_worker_lease_lost_total{stage="unconfirmed"}`): past the
    /// expiry the reaper may already have handed the job on, and the handler would run unfenced.
    /// With heartbeats every third of the lease, that takes about two and a half intervals of
    /// failed (or hanging) renewals, or a process paused that long. The margin covers the time
    /// it takes to stop the handler and some clock drift between the host and the database.
    pub fn lease_safety_margin(&self) -> Duration {
        self.heartbeat_lease / 6
    }

    /// How long a finished job's outcome may take to be recorded while the worker keeps renewing
    /// its lease: ten leases (5 minutes of the default 30 s lease).
    ///
    /// The lease is renewed from the claim until the outcome is written, so a slow store does not
    /// hand a job whose handler succeeded to another worker. This bounds that wait for a store
    /// that keeps renewing leases but never takes the write (a hung connection, a write that
    /// keeps failing): past it renewals stop, the lease lapses, and the reaper retries the job,
    /// which then runs again (at least once). The same bound applies to each batched completion
    /// call, so one hung call cannot hold every later success.
    pub fn recording_limit(&self) -> Duration {
        self.heartbeat_lease.saturating_mul(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            WorkerConfig::from_vars(none).unwrap(),
            WorkerConfig::default()
        );
        let c = WorkerConfig::from_vars([
            (ENV_CONCURRENCY, "3"),
            (ENV_SHUTDOWN_GRACE, "2.5"),
            (ENV_USE_CASES, " Notifications, message_labeling ,"),
            (ENV_RECEIVE_WAIT, "1"),
            (ENV_HEARTBEAT_LEASE, "9"),
            (ENV_LEASE_MARGIN, "0"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.shutdown_grace, Duration::from_millis(2500));
        assert_eq!(c.use_cases, vec!["notifications", "message_labeling"]);
        assert_eq!(c.receive_wait, Duration::from_secs(1));
        assert_eq!(c.heartbeat_interval(), Duration::from_secs(3));
        assert_eq!(c.lease_safety_margin(), Duration::from_millis(1500));
        assert_eq!(c.lease_margin, Duration::ZERO);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, raw) in [
            (ENV_CONCURRENCY, "0"),
            (ENV_CONCURRENCY, "ten"),
            (ENV_SHUTDOWN_GRACE, "-1"),
            (ENV_SHUTDOWN_GRACE, "NaN"),
            (ENV_RECEIVE_WAIT, "21"),
            (ENV_HEARTBEAT_LEASE, "0.5"),
            (ENV_USE_CASES, " , "),
        ] {
            let err = WorkerConfig::from_vars([(var, raw)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var), "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }
}
