//! [`PgStore`]: the [`JobStore`](jobs_core::JobStore) port on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use jobs_core::store::{
    ApiStore, DispatchStore, Heartbeat, LeaseStore, MaintenanceStore, PickRequest, ReapReport,
    StatusCount, WakeupStream,
};
use jobs_core::{
    Activity, ActivityQuery, Backlog, BacklogGrouping, BacklogRow, ChangeError, Clock, Dispatch,
    EnqueueError, Enqueued, Failure, Job, JobFilter, JobId, JobStatus, LeaseError, LeaseToken,
    NewJob, Page, PageRequest, Pause, PauseScope, QueuePosition, RateLimit, RecordedRate,
    StoreError, Transition,
};
use tokio_postgres::IsolationLevel;

use crate::enqueue::{self, Db};
use crate::error::{self, Op};
use crate::migrate::{migrate, MigrateError, MigrationReport};
use crate::notify;
use crate::row::{self, error_text, interval_us, micros};
use crate::schema::SchemaName;
use crate::sql::{ListShape, Sql};
use crate::tls::PgConnector;
use crate::wake::{self, Coalescer};

/// Runs `$body` (an async block using the pooled connection `$c`, yielding
/// `Result<T, Op<E>>`) and retries it once on a fresh connection when the first connection turns
/// out to be dead.
macro_rules! with_conn {
    ($self:ident, |$c:ident| $body:expr) => {{
        let mut retried = false;
        loop {
            #[allow(unused_mut)]
            let mut $c = $self.conn().await?;
            match $body.await {
                Err(e) if !retried && e.is_connection_loss() => {
                    tracing::debug!("connection lost; retrying once on a fresh connection");
                    retried = true;
                }
                other => break other.map_err(Op::into_error),
            }
        }
    }};
}

/// A claim's outcome: a job the claim statement expired (it reached its worker after its deadline,
/// set to expire then) is not the worker's to run: the lease is lost.
fn claimed_or_expired(claim: Result<Job, LeaseError>) -> Result<Job, LeaseError> {
    match claim {
        Ok(job) if job.status == JobStatus::Expired => Err(LeaseError::LeaseLost(job.id)),
        other => other,
    }
}

/// Starts a transaction at READ COMMITTED, whatever the session's or database's default: quotas and
/// the cap count take a lock and then count in a later statement, which sees the previous lock
/// holder's commit only under READ COMMITTED (under REPEATABLE READ or SERIALIZABLE the snapshot is
/// taken before the lock is granted).
pub(crate) async fn read_committed(
    c: &mut Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    c.build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
}

/// Readies a caller's transaction for an enqueue: wake-up triggers on for the rest of it (the
/// caller's commit sends the NOTIFY) and, when a quota must be counted, a check that the
/// transaction runs at READ COMMITTED (see [`PgStore::enqueue_in`]).
async fn prepare_caller_tx(
    tx: &tokio_postgres::Transaction<'_>,
    counts_quota: bool,
) -> Result<(), EnqueueError> {
    let row = tx
        .query_one(wake::TRIGGERS_ON_IN_TX, &[])
        .await
        .map_err(|e| EnqueueError::Store(error::pg(&e)))?;
    let level: String = row
        .try_get("isolation")
        .map_err(|e| EnqueueError::Store(error::pg(&e)))?;
    if counts_quota && level != "read committed" {
        return Err(EnqueueError::Store(StoreError::Unsupported(format!(
            "a job with a quota can only be enqueued in a READ COMMITTED transaction (this one is {}): \
             at higher levels the quota count cannot see jobs committed while it waited for the \
             tenant's lock; enqueue it in a READ COMMITTED transaction or without a quota",
            level.to_uppercase()
        ))));
    }
    Ok(())
}

/// Run on every new pooled connection: the store sends its own wake-ups (see `wake.rs`),
/// statements outside an explicit transaction run at READ COMMITTED too, and no statement is
/// JIT-compiled: every store statement reads a handful of index entries, but the planner's
/// estimates for the pick's CTEs on a large backlog cross `jit_above_cost`, and compiling took
/// up to 2 s of a 30 ms pick (seen at 1,000,000 due jobs).
const SESSION_SETUP: &str = "SET async_jobs.notify = 'off'; SET default_transaction_isolation = 'read committed'; SET jit = 'off'";

/// The refusal of a retry of a job in `from`.
fn illegal_retry(from: JobStatus) -> ChangeError {
    ChangeError::Illegal(jobs_core::IllegalTransition {
        from,
        event: Transition::Retry,
    })
}

/// The lease transaction's start. Bitmap scans are off in it: the in-flight count walks
/// `jobs_in_flight_idx`, whose entries of jobs that finished since the last vacuum stay until it
/// runs; a plain index scan marks each dead entry killed the first time it meets it (and skips it
/// after that), where a bitmap scan visits every such heap row again on every pick. Every other
/// read of the transaction is an index or TID scan anyway, and sequential scans are off so that
/// it stays one: on a small table (a new or quiet schema) the planner would otherwise fetch the
/// picked rows by their `ctid` with a scan of the whole table, and keep that plan as the cached
/// generic one while the table grows.
///
/// The lease commits without waiting for its WAL flush (`synchronous_commit = off`): it is
/// visible to every other session at once, and the flush of any later synchronous commit (the
/// worker's claim, which reads the lease) covers it. A crash of the server (or of any backend,
/// which restarts the server) can lose the leases of the last `3 × wal_writer_delay` (600 ms at
/// the default) that no synchronous commit followed, never a claim that saw one: such a job is
/// pending again, its message carries a token the store no longer has (the claim is refused and
/// the message dropped), and the next pick dispatches it anew. Until the crash, readers (the API)
/// may have seen such a job `dispatched` or `expired`; the crash undoes that, as it undoes the
/// pick's other writes. The same holds for what the pick writes beside it (expired
/// deadlines, promoted jobs, rate-limit tokens, the fair-share clock): each is redone by the next
/// pick. Waiting for the flush cost every pick a disk sync, on the path from an idle enqueue to its
/// start and in the loop of a busy scheduler.
const LEASE_BEGIN: &str = concat!(
    "BEGIN ISOLATION LEVEL READ COMMITTED; ",
    crate::sql::lease_settings!()
);

/// The start of a single enqueue's transaction. Its insert reads the tenant's pause, rate limit,
/// quota and fair-share base with subqueries that depend on its parameters, so PostgreSQL keeps
/// choosing a custom plan and planned the insert anew for every job (~0.3 ms, more than it takes
/// to run). The generic plan is as good: every index it needs is chosen without the parameters'
/// values.
const GENERIC_BEGIN: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL plan_cache_mode = force_generic_plan";

/// Runs `run` in a transaction of its own on `client` whose statements use their generic plans
/// ([`GENERIC_BEGIN`]), pipelined with the BEGIN and the COMMIT: one round trip, as the statement
/// alone. `run` must send its statement when first polled: prepare the statement before.
async fn on_generic_plan<T, E, F>(client: &tokio_postgres::Client, run: F) -> Result<T, Op<E>>
where
    F: std::future::Future<Output = Result<T, Op<E>>>,
{
    let (begin, out, commit) = futures_util::future::join3(
        client.batch_execute(GENERIC_BEGIN),
        run,
        client.batch_execute("COMMIT"),
    )
    .await;
    begin?;
    let out = out?;
    commit?;
    Ok(out)
}

/// Most scheduled jobs one pick promotes to ready (in `run_at` order). Jobs that fall due in a
/// larger burst are promoted over the next picks; until then the pick orders by deadline among
/// the promoted ones.
const PROMOTE_BATCH: i64 = 5_000;

/// The most jobs one pick expires (`miss_deadline`); more wait for the next pick.
const EXPIRE_BATCH: i64 = 5_000;

/// Pool settings used by [`PgStore::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections (default 16).
    pub max_size: usize,
    /// How long a caller waits for a free connection before [`StoreError::Unavailable`]
    /// (default 5 s).
    pub wait_timeout: Duration,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// The longest any one statement on the pool's connections may run (PostgreSQL's
    /// `statement_timeout`, set on each session when it is created, rounded up to whole
    /// milliseconds); a statement that runs longer, including one waiting for a lock, is cancelled
    /// and its call fails with [`StoreError::Timeout`]. `None` (the default) leaves the
    /// server's setting (normally no limit).
    ///
    /// Migrations run without it ([`PgStore::migrate`] and [`migrate`](crate::migrate()) on this
    /// pool lift it for their session while they run). Your own statements on connections from
    /// [`PgStore::pool`] are bounded by it too (`SET LOCAL statement_timeout` in a transaction
    /// overrides it).
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

/// [`SESSION_SETUP`] plus the statement timeout, if any (in whole milliseconds, at least 1: `0`
/// would mean no limit).
fn session_setup(statement_timeout: Option<Duration>) -> String {
    match statement_timeout {
        None => SESSION_SETUP.to_owned(),
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000).clamp(1, i32::MAX as u128);
            format!("{SESSION_SETUP}; SET statement_timeout = {ms}")
        }
    }
}

/// The PostgreSQL job store. Cheap to clone (a pool handle and shared statements).
///
/// Time: without [`with_clock`](PgStore::with_clock) every comparison uses the database's
/// `now()`; with it, the clock's time is passed to each statement instead.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Pool,
    pub(crate) sql: Arc<Sql>,
    clock: Option<Arc<dyn Clock>>,
    listen_config: Option<PgConnector>,
    /// Set when the pool's sessions suppress the wake-up triggers: the store sends them itself.
    wakeups: Option<Arc<Coalescer>>,
}

impl PgStore {
    /// A store over `dsn` (a libpq-style key/value string or a `postgres://` URL, with libpq's
    /// `sslmode` and `sslrootcert`: see [`crate::tls`]) in `schema`, with default
    /// [`PoolOptions`]. Does not connect yet and does not migrate: run
    /// [`migrate`](crate::migrate()) (or `async-jobs migrate`) first. Reads no environment
    /// variable: for `ASYNC_JOBS_DB_CA_FILE` build a [`PgConnector`] and use
    /// [`connect_using`](PgStore::connect_using).
    pub fn connect(dsn: &str, schema: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_with(dsn, schema, PoolOptions::default())
    }

    /// Like [`connect`](PgStore::connect) with explicit pool settings.
    pub fn connect_with(
        dsn: &str,
        schema: &str,
        options: PoolOptions,
    ) -> Result<PgStore, StoreError> {
        let connector =
            PgConnector::new(dsn, None).map_err(|e| StoreError::Internal(e.to_string()))?;
        PgStore::connect_using(&connector, schema, options)
    }

    /// A store whose pool and LISTEN connection connect with `connector` (its connection
    /// settings and TLS).
    pub fn connect_using(
        connector: &PgConnector,
        schema: &str,
        options: PoolOptions,
    ) -> Result<PgStore, StoreError> {
        let mut connector = connector.clone();
        let config = connector.config_mut();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let manager = Manager::from_config(
            connector.config().clone(),
            connector.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let setup: Arc<str> = session_setup(options.statement_timeout).into();
        let pool = Pool::builder(manager)
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                let setup = Arc::clone(&setup);
                Box::pin(async move {
                    client
                        .batch_execute(&setup)
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)
                })
            }))
            .max_size(options.max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        let mut store = PgStore::new(pool, schema)?.with_listener(connector);
        store.wakeups = Some(Arc::default());
        Ok(store)
    }

    /// A store over an existing pool. Call [`with_listener`](PgStore::with_listener) (or
    /// [`with_listen_config`](PgStore::with_listen_config)) too if you want [`subscribe`](DispatchStore::subscribe) (the pool does not reveal its
    /// connection settings).
    pub fn new(pool: Pool, schema: &str) -> Result<PgStore, StoreError> {
        let schema = SchemaName::new(schema).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(PgStore {
            pool,
            sql: Arc::new(Sql::new(schema)),
            clock: None,
            listen_config: None,
            wakeups: None,
        })
    }

    /// Uses `clock` instead of the database's `now()` (for tests that move time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PgStore {
        self.clock = Some(clock);
        self
    }

    /// The connection settings for the dedicated LISTEN connection of
    /// [`subscribe`](DispatchStore::subscribe), encrypted as the config's `ssl_mode` says without
    /// checking certificates (see [`PgConnector::from_config`]); use
    /// [`with_listener`](PgStore::with_listener) to check them.
    pub fn with_listen_config(self, config: tokio_postgres::Config) -> Result<PgStore, StoreError> {
        let connector =
            PgConnector::from_config(config).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(self.with_listener(connector))
    }

    /// The connector of the dedicated LISTEN connection of [`subscribe`](DispatchStore::subscribe).
    pub fn with_listener(mut self, connector: PgConnector) -> PgStore {
        self.listen_config = Some(connector);
        self
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        self.sql.schema.as_str()
    }

    /// The NOTIFY channel of this store's wake-ups.
    pub fn channel(&self) -> String {
        self.sql.schema.channel()
    }

    /// The pool (for the caller's own transactions, see [`enqueue_in`](PgStore::enqueue_in)).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// True when `other` is this store: one was cloned from the other (same pool). Two stores
    /// connected separately are not the same store, even to the same database.
    pub fn is_same_store(&self, other: &PgStore) -> bool {
        Arc::ptr_eq(&self.sql, &other.sql)
    }

    /// Applies pending migrations to the store's schema.
    pub async fn migrate(&self) -> Result<MigrationReport, MigrateError> {
        migrate(&self.pool, self.schema()).await
    }

    /// Enqueues `job` inside the caller's transaction: the job exists if and only if the
    /// transaction commits, and its wake-up is sent at commit. Quotas hold a transaction-scoped
    /// lock on the tenant's use case until the transaction ends, so keep such transactions short.
    /// The fair-share tag takes no lock here (outside the caller's transaction an enqueue takes
    /// the tenant's lock for it too): a tag read stale because the transaction committed late is
    /// re-based by the next pick (docs/fairness.md).
    ///
    /// A `deadpool_postgres::Transaction` dereferences to the `tokio_postgres::Transaction` this
    /// takes (`store.enqueue_in(&tx, job)`).
    ///
    /// **Isolation.** A job with a quota needs the transaction at READ COMMITTED (PostgreSQL's
    /// default): the quota is counted after the tenant's lock is granted, and only READ COMMITTED
    /// lets that count see jobs committed while the transaction waited for the lock. At
    /// REPEATABLE READ or SERIALIZABLE the snapshot predates the wait and two transactions
    /// could both admit the last place, so such a transaction is refused with
    /// [`StoreError::Unsupported`] (wrapped in [`EnqueueError::Store`]) before anything is
    /// written; the transaction stays usable. Jobs without a quota may be enqueued at any level.
    pub async fn enqueue_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: NewJob,
    ) -> Result<Enqueued, EnqueueError> {
        prepare_caller_tx(tx, job.quota.is_some()).await?;
        let db = Db {
            client: tx,
            cache: None,
        };
        enqueue::one(&db, &self.sql, self.now(), &job, None)
            .await
            .map_err(Op::into_error)
    }

    /// Enqueues a batch inside the caller's transaction (see [`enqueue_in`](PgStore::enqueue_in)).
    pub async fn enqueue_many_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        prepare_caller_tx(tx, jobs.iter().any(|j| j.quota.is_some())).await?;
        let db = Db {
            client: tx,
            cache: None,
        };
        enqueue::many(&db, &self.sql, self.now(), &jobs, &enqueue::Reserved::new())
            .await
            .map_err(Op::into_error)
    }

    pub(crate) fn now(&self) -> Option<DateTime<Utc>> {
        self.clock.as_ref().map(|c| c.now())
    }

    /// Announces a due job and/or freed capacity after a commit, when this store sends its own
    /// wake-ups (coalesced; see `wake.rs`).
    pub(crate) fn wake(&self, due: bool, freed: bool) {
        if let Some(c) = &self.wakeups {
            if c.note(due, freed) {
                let (c, pool, channel) = (Arc::clone(c), self.pool.clone(), self.channel());
                tokio::spawn(async move { c.send_all(&pool, &channel).await });
            }
        }
    }

    /// Wakes for a job that was written by a fenced update, from its new state.
    fn wake_for(&self, job: &Job) {
        let due = job.status == JobStatus::Pending && job.run_at <= job.updated_at;
        self.wake(due, true);
    }

    pub(crate) async fn conn(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(error::pool)
    }

    /// The rows a fenced many-job update wrote, each read by `read`, keyed by the (id, token)
    /// each matched.
    async fn fenced_many_rows<T: Send>(
        &self,
        sql: &str,
        now: &Option<DateTime<Utc>>,
        ids: &Vec<uuid::Uuid>,
        tokens: &Vec<uuid::Uuid>,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        read: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<((JobId, uuid::Uuid), T)>, StoreError> {
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(sql).await?;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![now, ids, tokens];
            params.extend_from_slice(extra);
            let rows = c.query(&stmt, &params).await?;
            let mut written = Vec::with_capacity(rows.len());
            for r in &rows {
                let token: uuid::Uuid = r.try_get("matched_token")?;
                written.push(((r.try_get::<_, uuid::Uuid>("id")?, token), read(r)?));
            }
            Ok::<_, Op<StoreError>>(written)
        })
    }

    /// Runs a fenced update of many jobs (`sql` takes now, ids, tokens and `extra`) and returns
    /// one result per entry, in input order, each written row read by `read`; each job is
    /// matched once.
    async fn fenced_many<T: Send>(
        &self,
        sql: &str,
        entries: Vec<(JobId, LeaseToken)>,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        read: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    ) -> Vec<Result<T, LeaseError>> {
        if entries.is_empty() {
            return Vec::new();
        }
        let now = self.now();
        let ids: Vec<uuid::Uuid> = entries.iter().map(|(id, _)| *id).collect();
        let tokens: Vec<uuid::Uuid> = entries.iter().map(|(_, t)| t.as_uuid()).collect();
        let written = self
            .fenced_many_rows(sql, &now, &ids, &tokens, extra, read)
            .await;
        match written {
            Err(e) => entries
                .iter()
                .map(|_| Err(LeaseError::Store(e.clone())))
                .collect(),
            Ok(rows) => {
                // Each row was written under exactly one (id, token); the first entry with that
                // pair gets it, any other entry is refused.
                let mut by_key: std::collections::HashMap<(JobId, uuid::Uuid), T> =
                    rows.into_iter().collect();
                entries
                    .into_iter()
                    .map(|(id, token)| {
                        by_key
                            .remove(&(id, token.as_uuid()))
                            .ok_or(LeaseError::LeaseLost(id))
                    })
                    .collect()
            }
        }
    }

    /// Runs a fenced update (`sql` takes now, id, token and `extra`) and returns the job.
    async fn fenced(
        &self,
        sql: &str,
        id: JobId,
        token: LeaseToken,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Job, LeaseError> {
        let now = self.now();
        let token = token.as_uuid();
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(sql).await?;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&now, &id, &token];
            params.extend_from_slice(extra);
            match c.query_opt(&stmt, &params).await? {
                Some(r) => Ok::<_, Op<LeaseError>>(row::job(&r)?),
                None => Err(Op::Fail(LeaseError::LeaseLost(id))),
            }
        })
    }
}

impl PgStore {
    async fn enqueue_inner(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let now = self.now();
        let sql = &*self.sql;
        with_conn!(self, |c| async {
            let mut reserved = None;
            if enqueue::reserves_turn(&job) {
                let stmt = c.prepare_cached(&sql.reserve_tags).await?;
                reserved = enqueue::reserve(&c, &stmt, now, &[&job])
                    .await?
                    .get(&(job.use_case.clone(), job.tenant_id.clone()))
                    .copied();
            }
            if enqueue::takes_tenant_lock(&job) {
                let tx = read_committed(&mut c).await?;
                let db = Db {
                    client: &*tx,
                    cache: Some(&tx.statement_cache),
                };
                let out = enqueue::one(&db, sql, now, &job, reserved).await?;
                tx.commit().await?;
                Ok(out)
            } else {
                // In a transaction of its own that plans the insert once (see GENERIC_BEGIN),
                // pipelined: the same one round trip as the insert alone. The statement is
                // prepared first, so the insert is sent between the BEGIN and the COMMIT.
                c.prepare_cached(&sql.insert_one).await?;
                let db = Db {
                    client: &**c,
                    cache: Some(&c.statement_cache),
                };
                on_generic_plan::<_, EnqueueError, _>(
                    &c,
                    enqueue::one(&db, sql, now, &job, reserved),
                )
                .await
            }
        })
    }

    async fn enqueue_many_inner(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let sql = &*self.sql;
        with_conn!(self, |c| async {
            let mut reserved = enqueue::Reserved::new();
            if jobs.iter().any(enqueue::reserves_turn) {
                let stmt = c.prepare_cached(&sql.reserve_tags).await?;
                let all: Vec<&NewJob> = jobs.iter().collect();
                reserved = enqueue::reserve(&c, &stmt, now, &all).await?;
            }
            if enqueue::needs_transaction(&jobs) {
                let tx = read_committed(&mut c).await?;
                let db = Db {
                    client: &*tx,
                    cache: Some(&tx.statement_cache),
                };
                let out = enqueue::many(&db, sql, now, &jobs, &reserved).await?;
                tx.commit().await?;
                Ok(out)
            } else {
                let db = Db {
                    client: &**c,
                    cache: Some(&c.statement_cache),
                };
                enqueue::many(&db, sql, now, &jobs, &reserved).await
            }
        })
    }

    async fn get_inner(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.get).await?;
            match c.query_opt(&stmt, &[&id]).await? {
                Some(r) => Ok::<_, Op<StoreError>>(Some(row::job(&r)?)),
                None => Ok(None),
            }
        })
    }
}

#[async_trait]
impl ApiStore for PgStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        let out = self.enqueue_inner(job).await?;
        if out.created && out.job.run_at <= out.job.created_at {
            self.wake(true, false);
        }
        Ok(out)
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        let out = self.enqueue_many_inner(jobs).await?;
        if out
            .iter()
            .any(|e| e.created && e.job.run_at <= e.job.created_at)
        {
            self.wake(true, false);
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.get_inner(id).await
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        let status = filter.status.map(JobStatus::as_str);
        let shape = ListShape {
            present: [
                filter.tenant_id.is_some(),
                filter.use_case.is_some(),
                status.is_some(),
                filter.kind.is_some(),
                filter.created_after.is_some(),
                filter.created_before.is_some(),
                page.after.is_some(),
            ],
            payload: page.include_payload,
            budget: page.include_payload && page.max_bytes.is_some(),
            bounded: page.max_scanned.is_some(),
        };
        let sql = self.sql.list(shape);
        let fetch = i64::from(page.limit.max(1)) + 1;
        let window = page.max_scanned.map_or(i64::MAX, |n| i64::from(n.max(1)));
        let budget = page
            .max_bytes
            .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&sql).await?;
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
            if let Some(v) = &filter.tenant_id {
                params.push(v);
            }
            if let Some(v) = &filter.use_case {
                params.push(v);
            }
            if let Some(v) = &status {
                params.push(v);
            }
            if let Some(v) = &filter.kind {
                params.push(v);
            }
            if let Some(v) = &filter.created_after {
                params.push(v);
            }
            if let Some(v) = &filter.created_before {
                params.push(v);
            }
            if let Some(v) = &page.after {
                params.push(v);
            }
            params.push(&fetch);
            if shape.bounded || shape.budget {
                params.push(&window);
            }
            if shape.budget {
                params.push(&budget);
            }
            let mut collect = ListRows::new(shape, page, window);
            if !shape.budget {
                for r in &c.query(&stmt, &params).await? {
                    if !collect.push(r)? {
                        break;
                    }
                }
                return Ok::<_, Op<StoreError>>(collect.finish());
            }
            // With a byte budget, fetch through a portal a few rows at a time and stop at the
            // first job that does not fit: the statement runs only as far as it is fetched, so
            // the payloads past the cut are never read (their sizes never computed).
            let tx = c.build_transaction().read_only(true).start().await?;
            let portal = tx.bind(&stmt, &params).await?;
            let mut batch = LIST_FIRST_BATCH;
            'fetch: loop {
                let rows = tx.query_portal(&portal, batch).await?;
                for r in &rows {
                    if !collect.push(r)? {
                        break 'fetch;
                    }
                }
                if rows.len() < usize::try_from(batch).unwrap_or(usize::MAX) {
                    break;
                }
                batch = collect.next_batch(budget);
            }
            drop(portal);
            tx.commit().await?;
            Ok::<_, Op<StoreError>>(collect.finish())
        })
    }

    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        let now = self.now();
        let job: Job = with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.cancel).await?;
            let r = c
                .query_opt(&stmt, &[&now, &id])
                .await?
                .ok_or(Op::Fail(ChangeError::NotFound(id)))?;
            let job = row::job(&r)?;
            match job.status {
                JobStatus::Succeeded | JobStatus::Dead | JobStatus::Expired => Err(Op::Fail(
                    ChangeError::Illegal(jobs_core::IllegalTransition {
                        from: job.status,
                        event: Transition::Cancel,
                    }),
                )),
                _ => Ok(job),
            }
        })?;
        if job.status == JobStatus::Cancelled {
            self.wake(false, true);
        }
        Ok(job)
    }

    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        let now = self.now();
        let sql = &*self.sql;
        let quota = quota.map(i64::from);
        let job: Job = with_conn!(self, |c| async {
            let status_of = c.prepare_cached(&sql.status_of).await?;
            let retry = c.prepare_cached(&sql.retry).await?;
            let Some(limit) = quota else {
                if let Some(r) = c.query_opt(&retry, &[&now, &id, &quota]).await? {
                    return Ok(row::job(&r)?);
                }
                // Refused: say why.
                return match c.query_opt(&status_of, &[&id]).await? {
                    None => Err(Op::Fail(ChangeError::NotFound(id))),
                    Some(r) => Err(Op::Fail(illegal_retry(row::status(r.get(0))?))),
                };
            };
            // Count as an enqueue does: the tenant's quota lock first, then the count and the
            // write in a later statement (whose snapshot sees the previous holder's commit). The
            // job's row is locked before the write, so when the write admits nothing the only
            // reason left is the quota.
            let Some(r) = c.query_opt(&status_of, &[&id]).await? else {
                return Err(Op::Fail(ChangeError::NotFound(id)));
            };
            let (tenant, use_case): (String, String) = (r.get(1), r.get(2));
            let lock = c.prepare_cached(&sql.quota_lock).await?;
            let lock_row = c.prepare_cached(&sql.status_for_update).await?;
            let tx = read_committed(&mut c).await?;
            tx.execute(&lock, &[&vec![enqueue::quota_key(sql, &tenant, &use_case)]])
                .await?;
            let Some(r) = tx.query_opt(&lock_row, &[&id]).await? else {
                return Err(Op::Fail(ChangeError::NotFound(id)));
            };
            let from = row::status(r.get(0))?;
            if from.apply(Transition::Retry).is_err() {
                return Err(Op::Fail(illegal_retry(from)));
            }
            let written = tx.query_opt(&retry, &[&now, &id, &quota]).await?;
            tx.commit().await?;
            match written {
                Some(r) => Ok(row::job(&r)?),
                None => Err(Op::Fail(ChangeError::QuotaExceeded {
                    tenant_id: tenant,
                    use_case,
                    limit: u32::try_from(limit).unwrap_or(u32::MAX),
                })),
            }
        })?;
        self.wake(true, false);
        Ok(job)
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.counts).await?;
            let mut out = Vec::new();
            for r in c.query(&stmt, &[]).await? {
                let n: i64 = r.get("n");
                out.push(StatusCount {
                    use_case: r.get("use_case"),
                    status: row::status(r.get("status"))?,
                    count: u64::try_from(n).unwrap_or(0),
                });
            }
            Ok::<_, Op<StoreError>>(out)
        })
    }

    async fn activity(&self, query: &ActivityQuery) -> Result<Activity, StoreError> {
        let now = self.now();
        let minutes = i32::try_from(query.window_minutes()).unwrap_or(i32::MAX);
        let max_rows = i64::from(query.max_rows.max(1));
        let tenant = query.tenant_id.as_deref();
        let (counts, rows) = with_conn!(self, |c| async {
            let counts = match tenant {
                None => {
                    let stmt = c.prepare_cached(&self.sql.counts).await?;
                    c.query(&stmt, &[]).await?
                }
                Some(t) => {
                    let stmt = c.prepare_cached(&self.sql.tenant_counts).await?;
                    c.query(&stmt, &[&t]).await?
                }
            };
            let stmt = c.prepare_cached(&self.sql.activity).await?;
            let rows = c
                .query(&stmt, &[&now, &minutes, &max_rows, &tenant])
                .await?;
            Ok::<_, Op<StoreError>>((counts, rows))
        })?;
        let mut out = Activity {
            since: DateTime::<Utc>::MIN_UTC,
            counts: Vec::with_capacity(counts.len()),
            minutes: Default::default(),
            truncated: false,
        };
        for r in counts {
            let n: i64 = r.get("n");
            out.counts.push(StatusCount {
                use_case: r.get("use_case"),
                status: row::status(r.get("status"))?,
                count: u64::try_from(n).unwrap_or(0),
            });
        }
        for r in rows {
            out.since = r.get("since");
            out.truncated = r.get("truncated");
            let (Some(use_case), Some(minute), Some(what), Some(n)) = (
                r.get::<_, Option<String>>("use_case"),
                r.get::<_, Option<DateTime<Utc>>>("minute"),
                r.get::<_, Option<String>>("what"),
                r.get::<_, Option<i64>>("n"),
            ) else {
                continue;
            };
            let n = u64::try_from(n).unwrap_or(0);
            let at = out.minutes.entry((use_case, minute)).or_default();
            match what.as_str() {
                "met" => at.deadlines_met += n,
                "missed" => at.deadlines_missed += n,
                "succeeded" => at.succeeded += n,
                "dead" => at.dead += n,
                "cancelled" => at.cancelled += n,
                "expired" => at.expired += n,
                other => {
                    return Err(StoreError::Internal(format!(
                        "activity: unexpected row kind {other:?}"
                    )))
                }
            }
        }
        Ok(out)
    }

    async fn backlog(&self, grouping: BacklogGrouping) -> Result<Backlog, StoreError> {
        let now = self.now();
        with_conn!(self, |c| async {
            let sql = match grouping {
                BacklogGrouping::UseCase => &self.sql.backlog_by_use_case,
                BacklogGrouping::Tenant => &self.sql.backlog_by_tenant,
            };
            let stmt = c.prepare_cached(sql).await?;
            // No JIT (the planner prices the pick indexes' partial predicates far above the rows
            // they hold, and compiling cost most of a second): every pooled session runs with
            // `jit = off` (SESSION_SETUP).
            let rows = c.query(&stmt, &[&now]).await?;
            let mut backlog = Backlog {
                at: rows.first().map_or_else(Utc::now, |r| r.get("at")),
                rows: Vec::with_capacity(rows.len()),
            };
            for r in rows {
                // The one row of an empty backlog has NULLs but for `at`.
                let Some(use_case) = r.get::<_, Option<String>>("use_case") else {
                    continue;
                };
                let n: i64 = r.get("n");
                backlog.rows.push(BacklogRow {
                    use_case,
                    tenant_id: r.get("tenant_id"),
                    due: u64::try_from(n).unwrap_or(0),
                    oldest_run_at: r.get("oldest"),
                });
            }
            Ok::<_, Op<StoreError>>(backlog)
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |c| async {
            c.simple_query("SELECT 1").await?;
            Ok::<_, Op<StoreError>>(())
        })
    }

    async fn pause(&self, scope: &PauseScope) -> Result<Pause, StoreError> {
        let now = self.now();
        let tenant = scope.tenant_id.as_deref().unwrap_or("");
        let lock_key = format!("{}\u{1f}{}", self.sql.schema, scope.use_case);
        with_conn!(self, |c| async {
            let lock = c.prepare_cached(&self.sql.lease_lock).await?;
            let pause = c.prepare_cached(&self.sql.pause).await?;
            let hold = c.prepare_cached(&self.sql.hold).await?;
            // Under the use case's pick lock: a pick running now finishes first, and every pick
            // after the commit sees the pause. A tenant's unfinished jobs are marked held in the
            // same transaction (out of the pick's index). Pipelined: one round trip.
            let client: &tokio_postgres::Client = &c;
            let (begin, locked, row, held, commit) = futures_util::future::join5(
                client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                client.execute(&lock, &[&lock_key]),
                client.query_one(&pause, &[&now, &scope.use_case, &tenant]),
                async {
                    match tenant.is_empty() {
                        true => Ok(0),
                        false => client.execute(&hold, &[&scope.use_case, &tenant]).await,
                    }
                },
                client.batch_execute("COMMIT"),
            )
            .await;
            begin?;
            locked?;
            let row = row?;
            held?;
            commit?;
            Ok::<_, Op<StoreError>>(Pause {
                scope: scope.clone(),
                paused_at: row.get(0),
            })
        })
    }

    async fn resume(&self, scope: &PauseScope) -> Result<bool, StoreError> {
        let tenant = scope.tenant_id.as_deref().unwrap_or("");
        let lock_key = format!("{}\u{1f}{}", self.sql.schema, scope.use_case);
        let channel = self.channel();
        let notify_here = self.wakeups.is_none();
        let resumed = with_conn!(self, |c| async {
            let lock = c.prepare_cached(&self.sql.lease_lock).await?;
            let resume = c.prepare_cached(&self.sql.resume).await?;
            let unhold = c.prepare_cached(&self.sql.unhold).await?;
            let client: &tokio_postgres::Client = &c;
            let (begin, locked, deleted, rest, commit) = futures_util::future::join5(
                client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                client.execute(&lock, &[&lock_key]),
                client.execute(&resume, &[&scope.use_case, &tenant]),
                async {
                    if !tenant.is_empty() {
                        client.execute(&unhold, &[&scope.use_case, &tenant]).await?;
                    }
                    // No trigger watches the pauses table: announce due jobs at commit (sent
                    // even when a retried resume finds nothing left to delete).
                    if notify_here {
                        client
                            .execute("SELECT pg_notify($1, 'due')", &[&channel])
                            .await?;
                    }
                    Ok::<_, tokio_postgres::Error>(())
                },
                client.batch_execute("COMMIT"),
            )
            .await;
            begin?;
            locked?;
            let deleted = deleted?;
            rest?;
            commit?;
            Ok::<_, Op<StoreError>>(deleted > 0)
        })?;
        self.wake(true, false);
        Ok(resumed)
    }

    async fn queue_position(
        &self,
        id: JobId,
        bound: u32,
    ) -> Result<Option<QueuePosition>, StoreError> {
        let now = self.now();
        let bound = i64::from(bound);
        with_conn!(self, |c| async {
            // On its generic plan: PostgreSQL chose a custom plan for every call, and planning
            // it cost more than running it (every single enqueue over HTTP reads this).
            let stmt = c.prepare_cached(&self.sql.queue_position).await?;
            let row = on_generic_plan::<_, StoreError, _>(&c, async {
                Ok(c.query_opt(&stmt, &[&now, &id, &bound]).await?)
            })
            .await?;
            let Some(r) = row else {
                return Ok::<_, Op<StoreError>>(None);
            };
            let ahead: i64 = r.get("ahead");
            let in_flight: i64 = r.get("in_flight");
            let rate: Option<f64> = r.get("drain_rate");
            let rate_at: Option<DateTime<Utc>> = r.get("drain_rate_at");
            Ok(Some(QueuePosition {
                at: r.get("at"),
                paused: r.get("paused"),
                ahead: u64::try_from(ahead).unwrap_or(0),
                ahead_bounded: ahead >= bound,
                in_flight: u64::try_from(in_flight).unwrap_or(0),
                drain_rate: rate
                    .zip(rate_at)
                    .map(|(per_second, measured_at)| RecordedRate {
                        per_second,
                        measured_at,
                    }),
            }))
        })
    }

    async fn pauses(&self) -> Result<Vec<Pause>, StoreError> {
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.pauses).await?;
            let rows = c.query(&stmt, &[]).await?;
            Ok::<_, Op<StoreError>>(
                rows.iter()
                    .map(|r| {
                        let tenant: String = r.get("tenant_id");
                        Pause {
                            scope: PauseScope {
                                use_case: r.get("use_case"),
                                tenant_id: (!tenant.is_empty()).then_some(tenant),
                            },
                            paused_at: r.get("paused_at"),
                        }
                    })
                    .collect(),
            )
        })
    }
}

#[async_trait]
impl DispatchStore for PgStore {
    async fn lease_due(
        &self,
        use_case: &str,
        pick: PickRequest,
    ) -> Result<Vec<Dispatch>, StoreError> {
        if pick.cap == 0 || pick.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let lock_key = format!("{}\u{1f}{use_case}", self.sql.schema);
        let (cap, limit, lease) = (
            i64::from(pick.cap),
            i64::from(pick.limit),
            interval_us(pick.lease),
        );
        with_conn!(self, |c| async {
            let lock = c.prepare_cached(&self.sql.lease_lock).await?;
            let expire = c.prepare_cached(&self.sql.expire).await?;
            let promote = c.prepare_cached(&self.sql.promote).await?;
            let pick = c.prepare_cached(&self.sql.lease_due).await?;
            // Serialise pickers of this use case; expire the pending jobs set to expire whose
            // deadline passed; promote the scheduled jobs whose run_at has come into the EDF index; then count in-flight jobs in a later statement (whose
            // snapshot sees the previous picker's commit and the promotion) and lease in the same
            // one. The six statements are pipelined: one round trip instead of six. If one
            // fails, the transaction is aborted and the COMMIT rolls it back, so nothing is
            // leased.
            let client: &tokio_postgres::Client = &c;
            let (begin, locked, (expired, promoted), rows, commit) = futures_util::future::join5(
                client.batch_execute(LEASE_BEGIN),
                client.execute(&lock, &[&lock_key]),
                futures_util::future::join(
                    client.execute(&expire, &[&now, &use_case, &EXPIRE_BATCH]),
                    client.execute(&promote, &[&now, &use_case, &PROMOTE_BATCH]),
                ),
                client.query(&pick, &[&now, &use_case, &limit, &cap, &lease]),
                client.batch_execute("COMMIT"),
            )
            .await;
            begin?;
            locked?;
            let expired = expired?;
            if expired > 0 {
                tracing::info!(
                    use_case,
                    expired,
                    "expired jobs not started by their deadline"
                );
            }
            promoted?;
            let rows = rows?;
            commit?;
            let mut leased = rows
                .iter()
                .map(row::dispatch)
                .collect::<Result<Vec<_>, _>>()?;
            leased.sort_by(|(a, pa), (b, pb)| {
                a.deadline_at
                    .cmp(&b.deadline_at)
                    .then(pb.cmp(pa))
                    .then(a.job_id.cmp(&b.job_id))
            });
            Ok::<_, Op<StoreError>>(leased.into_iter().map(|(d, _)| d).collect())
        })
    }

    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        if dispatches.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let ids: Vec<uuid::Uuid> = dispatches.iter().map(|(id, _)| *id).collect();
        let tokens: Vec<uuid::Uuid> = dispatches.iter().map(|(_, t)| t.as_uuid()).collect();
        let returned = with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.return_dispatched).await?;
            Ok::<_, Op<StoreError>>(c.execute(&stmt, &[&now, &ids, &tokens]).await?)
        })?;
        if returned > 0 {
            self.wake(true, true);
        }
        Ok(returned)
    }

    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        let config = self.listen_config.clone().ok_or_else(|| {
            StoreError::Internal(
                "PgStore::subscribe needs the connection settings: build the store with connect() or with_listen_config()"
                    .to_owned(),
            )
        })?;
        Ok(Box::new(notify::subscribe(config, self.channel()).await?))
    }

    async fn set_rate_limits(&self, limits: &[RateLimit]) -> Result<(), StoreError> {
        let mut wanted = limits.to_vec();
        wanted.sort_by(|a, b| (&a.use_case, &a.tenant_id).cmp(&(&b.use_case, &b.tenant_id)));
        wanted.dedup_by(|a, b| a.use_case == b.use_case && a.tenant_id == b.tenant_id);
        if self.rate_limits().await? == wanted {
            return Ok(());
        }
        let channel = self.channel();
        let notify_here = self.wakeups.is_none();
        let affected = with_conn!(self, |c| async {
            let tx = read_committed(&mut c).await?;
            let read = tx.prepare_cached(&self.sql.rate_limits_read).await?;
            let old = tx.query(&read, &[]).await?;
            // Every use case whose limits may change: under each one's pick lock (taken in name
            // order, as no pick holds two), so a pick sees the old limits or the new ones, never
            // a mix.
            let mut affected: Vec<String> = old
                .iter()
                .map(|r| r.get::<_, String>("use_case"))
                .chain(wanted.iter().map(|l| l.use_case.clone()))
                .collect();
            affected.sort();
            affected.dedup();
            let lock = tx.prepare_cached(&self.sql.lease_lock).await?;
            for use_case in &affected {
                let key = format!("{}\u{1f}{use_case}", self.sql.schema);
                tx.execute(&lock, &[&key]).await?;
            }
            tx.execute(&self.sql.rate_limits_clear, &[]).await?;
            let use_cases: Vec<&str> = wanted.iter().map(|l| l.use_case.as_str()).collect();
            let tenants: Vec<&str> = wanted
                .iter()
                .map(|l| l.tenant_id.as_deref().unwrap_or(""))
                .collect();
            let rates: Vec<f64> = wanted.iter().map(|l| l.per_second).collect();
            let bursts: Vec<i32> = wanted
                .iter()
                .map(|l| i32::try_from(l.burst).unwrap_or(i32::MAX))
                .collect();
            tx.execute(
                &self.sql.rate_limits_insert,
                &[&use_cases, &tenants, &rates, &bursts],
            )
            .await?;
            if notify_here {
                tx.execute("SELECT pg_notify($1, 'due')", &[&channel])
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, Op<StoreError>>(affected)
        })?;
        self.wake(true, false);
        // Move the affected use cases' unfinished jobs to the lane their limits call for, a
        // batch at a time and outside any lock: until a job is moved, the pick already treats
        // it by the new limits (see `lease_due` in sql.rs), so this only makes it prompt.
        let mut after: Option<uuid::Uuid> = None;
        loop {
            let last: Option<uuid::Uuid> = with_conn!(self, |c| async {
                let mark = c.prepare_cached(&self.sql.rate_limits_mark).await?;
                let row = c.query_one(&mark, &[&affected, &after]).await?;
                Ok::<_, Op<StoreError>>(row.get(0))
            })?;
            match last {
                Some(id) => after = Some(id),
                None => break,
            }
        }
        Ok(())
    }

    async fn rate_limits(&self) -> Result<Vec<RateLimit>, StoreError> {
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.rate_limits_read).await?;
            let rows = c.query(&stmt, &[]).await?;
            Ok::<_, Op<StoreError>>(
                rows.iter()
                    .map(|r| {
                        let tenant: String = r.get("tenant_id");
                        RateLimit {
                            use_case: r.get("use_case"),
                            tenant_id: (!tenant.is_empty()).then_some(tenant),
                            per_second: r.get("per_second"),
                            burst: u32::try_from(r.get::<_, i32>("burst")).unwrap_or(1),
                        }
                    })
                    .collect(),
            )
        })
    }

    async fn rate_wait(&self, use_case: &str) -> Result<Option<Duration>, StoreError> {
        let now = self.now();
        let secs: Option<f64> = with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.rate_wait).await?;
            let row = c.query_one(&stmt, &[&now, &use_case]).await?;
            Ok::<_, Op<StoreError>>(row.get(0))
        })?;
        Ok(secs.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)))
    }

    async fn record_drain_rate(&self, use_case: &str, per_second: f64) -> Result<(), StoreError> {
        let now = self.now();
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.record_drain_rate).await?;
            c.execute(&stmt, &[&now, &use_case, &per_second]).await?;
            Ok::<_, Op<StoreError>>(())
        })
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        let job = self
            .fenced(&self.sql.claim, id, token, &[&interval_us(lease)])
            .await;
        if matches!(&job, Ok(j) if j.status == JobStatus::Expired) {
            // Dispatched → expired freed a place under the cap.
            self.wake(false, true);
        }
        claimed_or_expired(job)
    }

    async fn claim_many(
        &self,
        claims: Vec<(JobId, LeaseToken)>,
        lease: Duration,
    ) -> Vec<Result<Job, LeaseError>> {
        let lease = interval_us(lease);
        let out = self
            .fenced_many(&self.sql.claim_many, claims, &[&lease], row::job)
            .await;
        if out
            .iter()
            .any(|r| matches!(r, Ok(j) if j.status == JobStatus::Expired))
        {
            // Dispatched → expired freed places under the cap.
            self.wake(false, true);
        }
        out.into_iter().map(claimed_or_expired).collect()
    }

    async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>) -> Vec<Result<(), LeaseError>> {
        let out = self
            .fenced_many(&self.sql.complete_many, done, &[], |_| Ok(()))
            .await;
        if out.iter().any(Result::is_ok) {
            self.wake(false, true);
        }
        out
    }

    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        let job = self
            .fenced(&self.sql.heartbeat, id, token, &[&interval_us(lease)])
            .await?;
        Ok(Heartbeat {
            lease_expires_at: job.lease_expires_at.ok_or_else(|| {
                StoreError::Internal(format!("job {id} is running without a lease"))
            })?,
            cancel_requested: job.cancel_requested,
        })
    }

    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = self.fenced(&self.sql.complete, id, token, &[]).await?;
        self.wake_for(&job);
        Ok(job)
    }

    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        let error = error_text(&failure.error);
        let retry_in = failure.retry_in.map(interval_us);
        let job = self
            .fenced(&self.sql.fail, id, token, &[&error, &retry_in])
            .await?;
        self.wake_for(&job);
        Ok(job)
    }

    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = self
            .fenced(&self.sql.finish_cancelled, id, token, &[])
            .await?;
        self.wake_for(&job);
        Ok(job)
    }

    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        let job = self.fenced(&self.sql.release, id, token, &[]).await?;
        self.wake_for(&job);
        Ok(job)
    }
}

#[async_trait]
impl MaintenanceStore for PgStore {
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        if limit == 0 {
            return Ok(ReapReport::default());
        }
        let now = self.now();
        let limit = i64::from(limit);
        let report: ReapReport = with_conn!(self, |c| async {
            let mut report = ReapReport::default();
            let dispatched = c.prepare_cached(&self.sql.reap_dispatched).await?;
            let running = c.prepare_cached(&self.sql.reap_running).await?;
            let later = c.prepare_cached(&self.sql.reap_later).await?;
            // Three independent statements, pipelined: one round trip. The looks moved by the
            // last are at leases that have not ended, which the first two leave alone.
            let client: &tokio_postgres::Client = &c;
            let (dispatched, running, later) = futures_util::future::join3(
                client.query(&dispatched, &[&now, &limit]),
                client.query(&running, &[&now, &limit]),
                client.execute(&later, &[&now, &limit]),
            )
            .await;
            report.dispatch_expired = dispatched?.len() as u64;
            for r in running? {
                match row::status(r.get(0))? {
                    JobStatus::Pending => report.run_expired_retry += 1,
                    JobStatus::Dead => report.run_expired_dead += 1,
                    _ => report.run_expired_cancelled += 1,
                }
            }
            // The reaps above committed whatever this says: a failed move of the next looks
            // is retried on the next pass.
            if let Err(e) = later {
                tracing::warn!(error = %e, "moving the reaper's next looks failed");
            }
            Ok::<_, Op<StoreError>>(report)
        })?;
        if report.total() > 0 {
            self.wake(true, true);
        }
        Ok(report)
    }

    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        // A cutoff further back than this finds nothing that any clock could have finished.
        const MAX_AGE: Duration = Duration::from_secs(2000 * 366 * 24 * 3600);
        if limit == 0 || older_than > MAX_AGE {
            return Ok(0);
        }
        let now = self.now();
        let full = u64::from(limit);
        let (age, limit) = (micros(older_than), i64::from(limit));
        with_conn!(self, |c| async {
            let stmt = c.prepare_cached(&self.sql.prune).await?;
            let pruned = c.execute(&stmt, &[&now, &age, &limit]).await?;
            // The refilled rate buckets and old fair-share reservations go once per look, with
            // the batch that ends it (not full), not with every batch of a long drain.
            if pruned < full {
                let buckets = c.prepare_cached(&self.sql.prune_buckets).await?;
                c.execute(&buckets, &[&now]).await?;
                let reserve = c.prepare_cached(&self.sql.prune_reserve).await?;
                c.execute(&reserve, &[&now]).await?;
            }
            Ok::<_, Op<StoreError>>(pruned)
        })
    }
}

/// Rows of the first fetch of a list with a byte budget (later fetches are sized from the
/// payloads seen: see [`ListRows::next_batch`]).
const LIST_FIRST_BATCH: i32 = 16;

/// Turns the rows of a list statement ([`crate::sql::Sql::list`]) into a page: up to `limit`
/// hits, `next` after the last job when the page is full or the byte budget is spent, or after
/// the last examined row when the scan window ended first.
struct ListRows {
    shape: ListShape,
    limit: usize,
    window: i64,
    jobs: Vec<jobs_core::Job>,
    next: Option<jobs_core::JobId>,
    /// Payload bytes of the jobs kept, and the largest payload seen.
    used: i64,
    largest: i64,
}

impl ListRows {
    fn new(shape: ListShape, page: PageRequest, window: i64) -> Self {
        ListRows {
            shape,
            limit: page.limit.max(1) as usize,
            window,
            jobs: Vec::new(),
            next: None,
            used: 0,
            largest: 0,
        }
    }

    /// Takes one row; false when the page is complete (read no further).
    fn push(&mut self, r: &tokio_postgres::Row) -> Result<bool, StoreError> {
        let plain = !self.shape.bounded && !self.shape.budget;
        let hit = plain || row::get::<bool>(r, "hit")?;
        if hit {
            let fits = plain || row::get::<bool>(r, "fits")?;
            if self.jobs.len() == self.limit || !fits {
                // Full, or the byte budget is spent: continue after the last job sent.
                self.next = self.jobs.last().map(|j| j.id);
                return Ok(false);
            }
            if self.shape.budget {
                let through = row::get::<Option<i64>>(r, "bytes_through")?.unwrap_or(0);
                self.largest = self.largest.max(through - self.used);
                self.used = through;
            }
            self.jobs.push(row::job_from(r, self.shape.payload)?);
        }
        if !plain && row::get::<Option<i64>>(r, "rn")? == Some(self.window) {
            // The window ended before the page filled: continue after the last examined row.
            self.next = Some(row::get(r, "id")?);
            return Ok(false);
        }
        Ok(true)
    }

    /// How many rows to fetch next: about as many as the rest of the budget holds at the
    /// largest payload seen (at least 4 KiB each), 1 to 128.
    fn next_batch(&self, budget: i64) -> i32 {
        let per_row = self.largest.max(4096);
        let rows = budget.saturating_sub(self.used) / per_row + 1;
        i32::try_from(rows.clamp(1, 128)).unwrap_or(128)
    }

    fn finish(self) -> Page {
        Page {
            jobs: self.jobs,
            next: self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_timeout_is_set_in_whole_milliseconds_never_zero() {
        assert_eq!(session_setup(None), SESSION_SETUP);
        let set = |t: Duration| {
            session_setup(Some(t))
                .strip_prefix(SESSION_SETUP)
                .map(str::to_owned)
        };
        let ms = |n: u64| Some(format!("; SET statement_timeout = {n}"));
        assert_eq!(set(Duration::from_secs(5)), ms(5000));
        assert_eq!(set(Duration::from_micros(1500)), ms(2), "rounded up");
        assert_eq!(set(Duration::from_nanos(1)), ms(1), "0 would mean no limit");
        assert_eq!(set(Duration::ZERO), ms(1));
        assert_eq!(set(Duration::from_secs(u64::MAX)), ms(i32::MAX as u64));
    }
}
