//! Scheduler leader election on a Postgres session advisory lock.
//!
//! The leader holds `pg_try_advisory_lock(hashtext('async_jobs.scheduler:' || schema))` on a
//! dedicated connection (never a pooled one: the lock belongs to the session). If the leader's
//! process dies or its connection drops, Postgres ends the session and frees the lock, and a
//! standby's next [`LeaderElection::try_acquire`] takes over.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobs_core::leader::{LeaderElection, LeaderLease};
use jobs_core::StoreError;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::tls::PgConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a successful check of the lock's session stands. The scheduler asks after every tick,
/// and a busy one ticks every few milliseconds: asking the server each time cost a round trip per
/// pick. A session the
/// server ends is seen as soon as its connection reports closing; a connection that goes silent
/// without closing is found up to this much later (plus the check's own timeout). Two leaders
/// for that long are harmless: picks of one use case are serialised by the store's own lock (see
/// `lease_due`), so caps and order hold; cron slots are fenced by their `next_run_at` and
/// idempotency key, and prunes are idempotent.
const VERIFIED_FOR: Duration = Duration::from_millis(500);

/// Leader election for the schedulers of one schema.
#[derive(Debug, Clone)]
pub struct PgLeaderElection {
    connector: PgConnector,
    lock_name: String,
}

impl PgLeaderElection {
    /// Election among schedulers using `schema`, connecting with `dsn` (its `sslmode` and
    /// `sslrootcert` as [`crate::tls`] reads them; no CA file).
    pub fn new(dsn: &str, schema: &str) -> Result<Self, StoreError> {
        let connector =
            PgConnector::new(dsn, None).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(PgLeaderElection::with_connector(connector, schema))
    }

    /// Election among schedulers using `schema`, connecting with `connector` (the store's
    /// settings and TLS). The lock's session is named `<application_name>-leader`
    /// (`async-jobs-scheduler-leader` when the connection string names none).
    pub fn with_connector(mut connector: PgConnector, schema: &str) -> Self {
        let config = connector.config_mut();
        config.connect_timeout(CONNECT_TIMEOUT);
        let name = match config.get_application_name() {
            Some(name) => format!("{name}-leader"),
            None => "async-jobs-scheduler-leader".to_owned(),
        };
        config.application_name(name);
        PgLeaderElection {
            connector,
            lock_name: format!("async_jobs.scheduler:{schema}"),
        }
    }
}

struct PgLeaderLease {
    client: Client,
    connection: JoinHandle<()>,
    lock_name: String,
    /// When the session last answered.
    verified_at: Instant,
}

#[async_trait]
impl LeaderElection for PgLeaderElection {
    async fn try_acquire(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable("connecting for leader election timed out".into())
            })?
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "connecting for leader election: {}",
                    crate::tls::describe_error(&e)
                ))
            })?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %crate::tls::describe_error(&e), "leader-election connection closed");
            }
        });
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1))",
                &[&self.lock_name],
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("leader lock query: {e}")))?;
        let acquired: bool = row.get(0);
        if acquired {
            Ok(Some(Box::new(PgLeaderLease {
                client,
                connection,
                lock_name: self.lock_name.clone(),
                verified_at: Instant::now(),
            })))
        } else {
            connection.abort();
            Ok(None)
        }
    }
}

#[async_trait]
impl LeaderLease for PgLeaderLease {
    async fn is_held(&mut self) -> bool {
        if self.client.is_closed() {
            return false;
        }
        if self.verified_at.elapsed() < VERIFIED_FOR {
            return true;
        }
        let held = matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        );
        if held {
            self.verified_at = Instant::now();
        }
        held
    }

    async fn release(self: Box<Self>) {
        let _ = tokio::time::timeout(
            CHECK_TIMEOUT,
            self.client.execute(
                "SELECT pg_advisory_unlock(hashtext($1))",
                &[&self.lock_name],
            ),
        )
        .await;
        drop(self.client);
        self.connection.abort();
    }
}
