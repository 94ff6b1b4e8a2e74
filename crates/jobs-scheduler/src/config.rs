//! Scheduler settings, from the environment.

use std::time::Duration;

use jobs_core::ConfigError;

/// How the scheduler paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Poll interval when no wake-up arrives (`ASYNC_JOBS_SCHEDULER_TICK_MS`, default 1000).
    pub tick_interval: Duration,
    /// How long a dispatched job waits for a worker's claim before the reaper returns it
    /// (`ASYNC_JOBS_DISPATCH_LEASE_SECONDS`, default 300).
    pub dispatch_lease: Duration,
    /// Most jobs leased per use case per tick (`ASYNC_JOBS_DISPATCH_BATCH`, default 100).
    pub dispatch_batch: u32,
    /// Most jobs reaped per state per reap (`ASYNC_JOBS_REAP_BATCH`, default 500). The loop
    /// reaps again at once while a reap returns leases.
    pub reap_batch: u32,
    /// Terminal jobs older than this are pruned (`ASYNC_JOBS_RETENTION_HOURS`, default 168).
    pub retention: Duration,
    /// How often to look for jobs to prune when the last look found fewer than a batch
    /// (`ASYNC_JOBS_PRUNE_INTERVAL_SECONDS`, default 60). While batches come back full, the next
    /// follows after a pause three times as long as the batch took (never longer than this), so
    /// pruning takes at most a quarter of one connection's time (while a batch takes less than a
    /// third of this): on the bench machine ~16,600–20,300 jobs a second while scenario 2a ran
    /// (BENCHMARKS.md).
    pub prune_interval: Duration,
    /// Most jobs deleted per prune statement (`ASYNC_JOBS_PRUNE_BATCH`, default 1000): one
    /// short transaction each.
    pub prune_batch: u32,
    /// How often a standby tries to become leader (`ASYNC_JOBS_LEADER_POLL_MS`, default 1000).
    pub leader_poll: Duration,
    /// First delay after a failed tick; doubles up to `max_backoff` (default 200 ms).
    pub min_backoff: Duration,
    /// Longest delay after repeated failures (default 10 s).
    pub max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick_interval: Duration::from_secs(1),
            dispatch_lease: Duration::from_secs(300),
            dispatch_batch: 100,
            reap_batch: 500,
            retention: Duration::from_secs(168 * 3600),
            prune_interval: Duration::from_secs(60),
            prune_batch: 1000,
            leader_poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

fn number<T: std::str::FromStr + PartialOrd + Copy>(
    get: &dyn Fn(&str) -> Option<String>,
    var: &str,
    min: T,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<T>()
            .ok()
            .filter(|v| *v >= min)
            .ok_or_else(|| ConfigError {
                variable: var.to_owned(),
                expected: expected.to_owned(),
                got: raw.chars().take(200).collect(),
            }),
    }
}

impl SchedulerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&jobs_core::Env::from_process().lookup())
    }

    /// Reads settings through `get` (the environment, or a test's map).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = SchedulerConfig::default();
        let ms = |var: &str, default: Duration| {
            number::<u64>(get, var, 1, default.as_millis() as u64, "milliseconds ≥ 1")
                .map(Duration::from_millis)
        };
        let secs = |var: &str, default: Duration| {
            number::<u64>(get, var, 1, default.as_secs(), "seconds ≥ 1").map(Duration::from_secs)
        };
        Ok(SchedulerConfig {
            tick_interval: ms("ASYNC_JOBS_SCHEDULER_TICK_MS", d.tick_interval)?,
            dispatch_lease: secs("ASYNC_JOBS_DISPATCH_LEASE_SECONDS", d.dispatch_lease)?,
            dispatch_batch: number(
                get,
                "ASYNC_JOBS_DISPATCH_BATCH",
                1,
                d.dispatch_batch,
                "a whole number ≥ 1",
            )?,
            reap_batch: number(
                get,
                "ASYNC_JOBS_REAP_BATCH",
                1,
                d.reap_batch,
                "a whole number ≥ 1",
            )?,
            retention: number::<u64>(get, "ASYNC_JOBS_RETENTION_HOURS", 1, 168, "hours ≥ 1")
                .map(|h| Duration::from_secs(h.saturating_mul(3600)))?,
            prune_interval: secs("ASYNC_JOBS_PRUNE_INTERVAL_SECONDS", d.prune_interval)?,
            prune_batch: number(
                get,
                "ASYNC_JOBS_PRUNE_BATCH",
                1,
                d.prune_batch,
                "a whole number ≥ 1",
            )?,
            leader_poll: ms("ASYNC_JOBS_LEADER_POLL_MS", d.leader_poll)?,
            min_backoff: d.min_backoff,
            max_backoff: d.max_backoff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_and_overrides() {
        let none = SchedulerConfig::from_lookup(&|_| None).unwrap();
        assert_eq!(none, SchedulerConfig::default());
        let vars: HashMap<&str, &str> = [
            ("ASYNC_JOBS_SCHEDULER_TICK_MS", "50"),
            ("ASYNC_JOBS_DISPATCH_LEASE_SECONDS", "7"),
        ]
        .into();
        let c = SchedulerConfig::from_lookup(&|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.tick_interval, Duration::from_millis(50));
        assert_eq!(c.dispatch_lease, Duration::from_secs(7));
        for bad in ["0", "-1", "soon", ""] {
            let err = SchedulerConfig::from_lookup(&|k| {
                (k == "ASYNC_JOBS_DISPATCH_BATCH").then(|| bad.to_string())
            })
            .unwrap_err();
            assert_eq!(err.variable, "ASYNC_JOBS_DISPATCH_BATCH");
        }
    }
}
