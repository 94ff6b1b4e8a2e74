//! Timeouts, retries and limits of the SQS transport.

use std::time::Duration;

/// The longest long poll SQS allows (`WaitTimeSeconds` ≤ 20).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// The most entries SQS takes in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The message size limit SQS has enforced on every queue since its start (256 KiB). Newer queues
/// may accept up to 1 MiB; the smaller limit is the default because it holds for every queue.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How the transport talks to SQS. The defaults suit ECS: a failing endpoint is noticed within
/// seconds, a healthy long poll is never cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsOptions {
    /// TCP/TLS connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Attempt timeout of a call that does not wait (send, delete, visibility change). A receive's
    /// attempt timeout is its long-poll wait plus this.
    pub request_timeout: Duration,
    /// Attempts per call, the first included (1 = no retries). Retries use the SDK's standard
    /// mode: exponential backoff with jitter, for throttling, 5xx, timeouts and I/O errors.
    pub max_attempts: u32,
    /// Bodies larger than this are reported as failed entries without being sent; it is also the
    /// most bytes one batch call carries.
    pub max_message_bytes: usize,
}

impl Default for SqsOptions {
    fn default() -> Self {
        SqsOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl SqsOptions {
    /// The defaults overridden by `ASYNC_JOBS_SQS_CONNECT_TIMEOUT_SECONDS`,
    /// `ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS` (both > 0, fractions allowed) and
    /// `ASYNC_JOBS_SQS_MAX_ATTEMPTS` (≥ 1). The error names the variable.
    pub fn from_env() -> Result<Self, jobs_core::ConfigError> {
        Self::from_lookup(&jobs_core::Env::from_process().lookup())
    }

    /// [`SqsOptions::from_env`] over any variable lookup (for tests).
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, jobs_core::ConfigError> {
        let bad = |variable: &str, expected: &str, got: &str| jobs_core::ConfigError {
            variable: variable.to_owned(),
            expected: expected.to_owned(),
            got: got.chars().take(200).collect(),
        };
        let seconds =
            |variable: &str, default: Duration| -> Result<Duration, jobs_core::ConfigError> {
                match get(variable) {
                    None => Ok(default),
                    Some(raw) => raw
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0)
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| bad(variable, "seconds > 0", &raw)),
                }
            };
        let defaults = SqsOptions::default();
        let max_attempts = match get("ASYNC_JOBS_SQS_MAX_ATTEMPTS") {
            None => defaults.max_attempts,
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("ASYNC_JOBS_SQS_MAX_ATTEMPTS", "a whole number ≥ 1", &raw))?,
        };
        Ok(SqsOptions {
            connect_timeout: seconds(
                "ASYNC_JOBS_SQS_CONNECT_TIMEOUT_SECONDS",
                defaults.connect_timeout,
            )?,
            request_timeout: seconds(
                "ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS",
                defaults.request_timeout,
            )?,
            max_attempts,
            ..defaults
        })
    }

    /// One attempt per call: failures surface at once (for tests of failure paths).
    pub fn without_retries(mut self) -> Self {
        self.max_attempts = 1;
        self
    }

    /// Sets the attempts per call (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the attempt timeout of non-waiting calls (and the margin above a long poll).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the per-message (and per-batch) byte limit.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The attempt timeout of a receive that long-polls for `wait`.
    pub(crate) fn receive_attempt_timeout(&self, wait: Duration) -> Duration {
        wait.min(MAX_WAIT).saturating_add(self.request_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_errors() {
        let none = SqsOptions::from_lookup(&|_| None).unwrap();
        assert_eq!(none, SqsOptions::default());
        let set =
            |k: &'static str, v: &'static str| move |name: &str| (name == k).then(|| v.to_owned());
        let o =
            SqsOptions::from_lookup(&set("ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS", "1.5")).unwrap();
        assert_eq!(o.request_timeout, Duration::from_millis(1500));
        let o = SqsOptions::from_lookup(&set("ASYNC_JOBS_SQS_MAX_ATTEMPTS", "1")).unwrap();
        assert_eq!(o.max_attempts, 1);
        for (k, v) in [
            ("ASYNC_JOBS_SQS_MAX_ATTEMPTS", "0"),
            ("ASYNC_JOBS_SQS_CONNECT_TIMEOUT_SECONDS", "-1"),
            ("ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS", "soon"),
        ] {
            assert_eq!(SqsOptions::from_lookup(&set(k, v)).unwrap_err().variable, k);
        }
    }

    #[test]
    fn receive_timeout_is_above_the_longest_wait() {
        let o = SqsOptions::default();
        assert!(o.receive_attempt_timeout(Duration::from_secs(3600)) > MAX_WAIT);
        assert_eq!(o.receive_attempt_timeout(Duration::ZERO), o.request_timeout);
        assert_eq!(o.clone().without_retries().max_attempts, 1);
        assert_eq!(o.with_max_attempts(0).max_attempts, 1);
    }
}
