//! Connection limits of the server loop ([`crate::server`]): how long a client may take to send a
//! request, how long a kept-alive connection may sit idle, and how many connections are held.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `ASYNC_JOBS_HTTP_HEADER_TIMEOUT_SECONDS` | 10 | from a request's first byte to its last header line |
//! | `ASYNC_JOBS_HTTP_BODY_TIMEOUT_SECONDS` | 30 | from the end of the headers to the end of the body (total, not per read) |
//! | `ASYNC_JOBS_HTTP_IDLE_TIMEOUT_SECONDS` | 75 | a kept-alive connection with no request in progress |
//! | `ASYNC_JOBS_HTTP_MAX_CONNECTIONS` | 512 | connections held at once |
//! | `ASYNC_JOBS_HTTP_SHUTDOWN_GRACE_SECONDS` | 20 | on shutdown, how long requests in progress may take to finish |
//!
//! The body timeout also bounds a response the client stops reading: no bytes taken for that
//! long closes the connection. Being total, it implies a least upload rate: an 8 MiB batch in
//! 30 s needs about 280 KB/s; raise it for slower clients. The shutdown grace stays below ECS's
//! default 30 s `stopTimeout`, so the process closes what is left itself before it is killed.
//!
//! The idle default is above the 60 s idle timeout of an AWS Application Load Balancer: a target
//! that closes kept-alive connections before the balancer does makes it answer 502 now and then.

use std::time::Duration;

use jobs_core::ConfigError;

/// [`ServerLimits::header_timeout`] variable.
pub const ENV_HEADER_TIMEOUT: &str = "ASYNC_JOBS_HTTP_HEADER_TIMEOUT_SECONDS";
/// [`ServerLimits::body_timeout`] variable.
pub const ENV_BODY_TIMEOUT: &str = "ASYNC_JOBS_HTTP_BODY_TIMEOUT_SECONDS";
/// [`ServerLimits::idle_timeout`] variable.
pub const ENV_IDLE_TIMEOUT: &str = "ASYNC_JOBS_HTTP_IDLE_TIMEOUT_SECONDS";
/// [`ServerLimits::max_connections`] variable.
pub const ENV_MAX_CONNECTIONS: &str = "ASYNC_JOBS_HTTP_MAX_CONNECTIONS";
/// [`ServerLimits::shutdown_grace`] variable.
pub const ENV_SHUTDOWN_GRACE: &str = "ASYNC_JOBS_HTTP_SHUTDOWN_GRACE_SECONDS";

/// Connection limits. Each one bounds what a client that sends slowly, or not at all, can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A connection on which a request has begun is closed unless the whole request head
    /// (request line and headers) arrives within this time of its first byte.
    pub header_timeout: Duration,
    /// A request's body must arrive within this time of the end of its head, in total; reading
    /// it fails after that and the request is answered 408 `body_timeout`. A response the
    /// client takes no bytes of for this long is abandoned (the connection is closed).
    pub body_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Connections held at once. At the cap a new connection replaces the longest-waiting one
    /// that is not serving a request (new or mid-head first, then idle; each only after half a
    /// second of waiting); when every held connection is serving one, new connections wait in
    /// the listen queue.
    pub max_connections: usize,
    /// On shutdown, connections not serving a request are closed at once; the others may finish
    /// their request for this long, then are closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl ServerLimits {
    /// Reads the limits from the process environment (see the module docs); unset variables keep
    /// their defaults. The error names the first bad variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(jobs_core::Env::from_process().pairs())
    }

    /// Reads the limits from `(name, value)` pairs, as [`from_env`](Self::from_env) does. An
    /// empty value counts as unset.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut limits = ServerLimits::default();
        for (name, value) in vars {
            let (name, raw) = (name.as_ref(), value.as_ref());
            if raw.trim().is_empty() {
                continue;
            }
            match name {
                ENV_HEADER_TIMEOUT => {
                    limits.header_timeout = ConfigError::seconds(name, raw, 0.01, 3600.0)?;
                }
                ENV_BODY_TIMEOUT => {
                    limits.body_timeout = ConfigError::seconds(name, raw, 0.01, 3600.0)?;
                }
                ENV_IDLE_TIMEOUT => {
                    limits.idle_timeout = ConfigError::seconds(name, raw, 0.01, 86_400.0)?;
                }
                ENV_SHUTDOWN_GRACE => {
                    limits.shutdown_grace = ConfigError::seconds(name, raw, 0.0, 3600.0)?;
                }
                ENV_MAX_CONNECTIONS => {
                    let n = ConfigError::integer(name, raw, 1, 1_000_000)?;
                    limits.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
                }
                _ => {}
            }
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_environment_and_name_a_bad_variable() {
        assert_eq!(
            ServerLimits::from_vars(Vec::<(String, String)>::new()).unwrap(),
            ServerLimits::default()
        );
        let l = ServerLimits::from_vars([
            (ENV_HEADER_TIMEOUT, "2.5"),
            (ENV_BODY_TIMEOUT, "60"),
            (ENV_IDLE_TIMEOUT, "120"),
            (ENV_MAX_CONNECTIONS, " 100 "),
            (ENV_SHUTDOWN_GRACE, "5"),
        ])
        .unwrap();
        assert_eq!(l.header_timeout, Duration::from_millis(2500));
        assert_eq!(l.body_timeout, Duration::from_secs(60));
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.max_connections, 100);
        assert_eq!(l.shutdown_grace, Duration::from_secs(5));
        for (var, bad) in [
            (ENV_HEADER_TIMEOUT, "0"),
            (ENV_HEADER_TIMEOUT, "ten"),
            (ENV_BODY_TIMEOUT, "-1"),
            (ENV_IDLE_TIMEOUT, "inf"),
            (ENV_MAX_CONNECTIONS, "0"),
            (ENV_MAX_CONNECTIONS, "1.5"),
        ] {
            let err = ServerLimits::from_vars([(var, bad)]).unwrap_err();
            assert_eq!(err.variable, var, "{bad}");
        }
    }
}
