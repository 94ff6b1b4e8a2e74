//! Enqueue: one job or a batch, on a pooled connection or inside the caller's transaction.
//!
//! Quotas are made atomic with a transaction-scoped advisory lock per (schema, tenant, use case):
//! the lock is taken in one statement and the count happens in a later one, so under READ
//! COMMITTED the count's snapshot sees every job committed by the previous holder of the lock.
//! (Counting in the same statement as taking the lock would not: its snapshot predates the wait.)

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use deadpool_postgres::StatementCache;
use jobs_core::{EnqueueError, Enqueued, Job, NewJob, StoreError};
use tokio_postgres::{GenericClient, Statement};

use crate::error::Op;
use crate::row::{self, jitter_str, micros, strategy_str, trace_columns};
use crate::sql::Sql;

/// A connection or transaction, with a statement cache when it comes from the pool.
pub(crate) struct Db<'a, C> {
    pub(crate) client: &'a C,
    pub(crate) cache: Option<&'a StatementCache>,
}

impl<C: GenericClient + Sync> Db<'_, C> {
    /// The prepared statement for `sql` (cached per connection when possible).
    pub(crate) async fn stmt(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        match self.cache {
            Some(cache) => cache.prepare(self.client.client(), sql).await,
            None => self.client.prepare(sql).await,
        }
    }
}

/// The advisory-lock key of a quota.
pub(crate) fn quota_key(sql: &Sql, tenant: &str, use_case: &str) -> String {
    format!("{}\u{1f}{tenant}\u{1f}{use_case}", sql.schema)
}

fn quota_exceeded(job: &NewJob, limit: u32) -> EnqueueError {
    EnqueueError::QuotaExceeded {
        tenant_id: job.tenant_id.clone(),
        use_case: job.use_case.clone(),
        limit,
    }
}

/// True when `job` takes its tenant's enqueue lock in its use case (in a transaction of the
/// store's own or the caller's): to count its quota. Under that lock its fair-share tag is read
/// with every earlier enqueue of the tenant committed, too.
pub(crate) fn takes_tenant_lock(job: &NewJob) -> bool {
    job.quota.is_some()
}

/// Fair-share turns reserved before an insert: (use case, tenant) → the base of its jobs' turns.
pub(crate) type Reserved = HashMap<(String, String), f64>;

/// True when `job`, enqueued by the store itself, reserves its fair-share turn first
/// ([`reserve`]): a job of a fair use case without a quota (with a quota, the tenant's lock
/// already orders its enqueues).
pub(crate) fn reserves_turn(job: &NewJob) -> bool {
    job.quota.is_none() && job.fair_step() > 0.0
}

/// Reserves the fair-share turns of `jobs` ([`reserves_turn`]) in a transaction of its own on
/// `client`, committed at once and without waiting for its WAL flush (`Sql::reserve_tags`,
/// migration 10): concurrent enqueues of one tenant take distinct turns while holding the
/// tenant's reservation row only for that moment, not until their own insert commits.
pub(crate) async fn reserve(
    client: &tokio_postgres::Client,
    stmt: &Statement,
    now: Option<DateTime<Utc>>,
    jobs: &[&NewJob],
) -> Result<Reserved, tokio_postgres::Error> {
    let jobs: Vec<&NewJob> = jobs.iter().copied().filter(|j| reserves_turn(j)).collect();
    if jobs.is_empty() {
        return Ok(Reserved::new());
    }
    let use_cases: Vec<&str> = jobs.iter().map(|j| j.use_case.as_str()).collect();
    let tenants: Vec<&str> = jobs.iter().map(|j| j.tenant_id.as_str()).collect();
    let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
    let steps: Vec<f64> = jobs.iter().map(|j| j.fair_step()).collect();
    // Pipelined: one round trip. A failed reservation rolls back at the COMMIT.
    let (begin, rows, commit) = futures_util::future::join3(
        client.batch_execute(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off",
        ),
        client.query(stmt, &[&now, &use_cases, &tenants, &run_ats, &steps]),
        client.batch_execute("COMMIT"),
    )
    .await;
    begin?;
    let rows = rows?;
    commit?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// True when enqueueing `jobs` needs a transaction (locks or look-ups before the insert).
pub(crate) fn needs_transaction(jobs: &[NewJob]) -> bool {
    jobs.iter().any(takes_tenant_lock)
}

/// Inserts one job. With a quota ([`takes_tenant_lock`]), `db` must be a transaction (the lock
/// lasts until its end). `reserved`: the base of its fair-share turn, when [`reserve`] took it.
pub(crate) async fn one<C: GenericClient + Sync>(
    db: &Db<'_, C>,
    sql: &Sql,
    now: Option<DateTime<Utc>>,
    job: &NewJob,
    reserved: Option<f64>,
) -> Result<Enqueued, Op<EnqueueError>> {
    if takes_tenant_lock(job) {
        let lock = db.stmt(&sql.quota_lock).await?;
        db.client
            .execute(
                &lock,
                &[&vec![quota_key(sql, &job.tenant_id, &job.use_case)]],
            )
            .await?;
    }
    let insert = db.stmt(&sql.insert_one).await?;
    let quota = job.quota.map(i64::from);
    let (traceparent, tracestate) = trace_columns(job.trace_context.as_ref());
    let row = db
        .client
        .query_opt(
            &insert,
            &[
                &now,
                &job.id,
                &job.tenant_id,
                &job.use_case,
                &job.kind,
                &job.payload,
                &job.priority,
                &i64::from(job.max_attempts),
                &strategy_str(job.backoff.strategy),
                &micros(job.backoff.base),
                &micros(job.backoff.cap),
                &jitter_str(job.backoff.jitter),
                &job.run_at,
                &micros(job.delay_tolerance),
                &micros(job.timeout),
                &job.idempotency_key,
                &quota,
                &traceparent,
                &tracestate,
                &job.expire_at_deadline,
                &job.fair_step(),
                &reserved,
            ],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Enqueued {
            job: row::job(&row)?,
            created: true,
        });
    }
    if let Some(key) = &job.idempotency_key {
        let by_key = db.stmt(&sql.by_key).await?;
        if let Some(row) = db.client.query_opt(&by_key, &[&job.tenant_id, key]).await? {
            return Ok(Enqueued {
                job: row::job(&row)?,
                created: false,
            });
        }
    }
    match job.quota {
        Some(limit) => Err(Op::Fail(quota_exceeded(job, limit))),
        // Only an idempotency conflict skips the insert, and then the key's job exists; it can
        // only have vanished if it was pruned in between.
        None => Err(Op::Fail(EnqueueError::Store(StoreError::Conflict(
            format!(
                "job {} was neither inserted nor found by its idempotency key; retry",
                job.id
            ),
        )))),
    }
}

/// What the batch insert decided for one job.
struct Decided {
    created_at: DateTime<Utc>,
    run_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    /// The stored payload, when the batch asked for it back.
    payload: Option<serde_json::Value>,
}

/// True when `v` holds a floating-point number anywhere (jsonb may spell it differently).
fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

/// `job` as its row reads back: the durations the columns hold in whole microseconds.
fn stored(mut job: Job) -> Job {
    let us = |d| std::time::Duration::from_micros(u64::try_from(micros(d)).unwrap_or(0));
    job.backoff.base = us(job.backoff.base);
    job.backoff.cap = us(job.backoff.cap);
    job.delay_tolerance = us(job.delay_tolerance);
    job.timeout = us(job.timeout);
    job
}

/// Where one batch entry's result comes from.
enum Slot {
    Existing(Box<Job>),
    Inserted(uuid::Uuid),
    SameAs(usize),
}

/// Inserts a batch: all or none. `db` must be a transaction unless no job has a quota or an
/// idempotency key ([`needs_transaction`]); a concurrent insert of the same idempotency key
/// then fails the batch with a conflict.
pub(crate) async fn many<C: GenericClient + Sync>(
    db: &Db<'_, C>,
    sql: &Sql,
    now: Option<DateTime<Utc>>,
    jobs: &[NewJob],
    reserved: &Reserved,
) -> Result<Vec<Enqueued>, Op<EnqueueError>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // Lock every (tenant, use case) the batch counts a quota of or tags, in a fixed order so
    // batches cannot deadlock.
    let locks: BTreeSet<String> = jobs
        .iter()
        .filter(|j| takes_tenant_lock(j))
        .map(|j| quota_key(sql, &j.tenant_id, &j.use_case))
        .collect();
    if !locks.is_empty() {
        let lock = db.stmt(&sql.quota_lock).await?;
        db.client
            .execute(&lock, &[&locks.into_iter().collect::<Vec<_>>()])
            .await?;
    }

    let mut existing: HashMap<(String, String), Job> = HashMap::new();
    let keyed: Vec<(&str, &str)> = jobs
        .iter()
        .filter_map(|j| {
            j.idempotency_key
                .as_deref()
                .map(|k| (j.tenant_id.as_str(), k))
        })
        .collect();
    if !keyed.is_empty() {
        let by_keys = db.stmt(&sql.by_keys).await?;
        let (tenants, keys): (Vec<&str>, Vec<&str>) = keyed.into_iter().unzip();
        for r in db.client.query(&by_keys, &[&tenants, &keys]).await? {
            let job = row::job(&r)?;
            if let Some(key) = job.idempotency_key.clone() {
                existing.insert((job.tenant_id.clone(), key), job);
            }
        }
    }

    let mut used: HashMap<(String, String), u64> = HashMap::new();
    let quota_pairs: BTreeSet<(&str, &str)> = jobs
        .iter()
        .filter(|j| j.quota.is_some())
        .map(|j| (j.tenant_id.as_str(), j.use_case.as_str()))
        .collect();
    if !quota_pairs.is_empty() {
        let counts = db.stmt(&sql.quota_counts).await?;
        let (tenants, use_cases): (Vec<&str>, Vec<&str>) = quota_pairs.into_iter().unzip();
        for r in db.client.query(&counts, &[&tenants, &use_cases]).await? {
            let n: i64 = r.get("used");
            used.insert(
                (r.get("tenant_id"), r.get("use_case")),
                u64::try_from(n).unwrap_or(0),
            );
        }
    }

    // Decide each entry in order, exactly as inserting them one by one would.
    let mut slots = Vec::with_capacity(jobs.len());
    let mut batch_keys: HashMap<(&str, &str), usize> = HashMap::new();
    let mut to_insert: Vec<&NewJob> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(key) = job.idempotency_key.as_deref() {
            if let Some(found) = existing.get(&(job.tenant_id.clone(), key.to_owned())) {
                slots.push(Slot::Existing(Box::new(found.clone())));
                continue;
            }
            if let Some(&first) = batch_keys.get(&(job.tenant_id.as_str(), key)) {
                slots.push(Slot::SameAs(first));
                continue;
            }
            batch_keys.insert((job.tenant_id.as_str(), key), i);
        }
        if let Some(count) = used.get_mut(&(job.tenant_id.clone(), job.use_case.clone())) {
            if let Some(limit) = job.quota {
                if *count >= u64::from(limit) {
                    return Err(Op::Fail(quota_exceeded(job, limit)));
                }
            }
            *count += 1;
        }
        slots.push(Slot::Inserted(job.id));
        to_insert.push(job);
    }

    let mut inserted: HashMap<uuid::Uuid, Decided> = HashMap::with_capacity(to_insert.len());
    if !to_insert.is_empty() {
        // jsonb keeps a number's value, not its spelling: a float like 1e16 reads back as the
        // integer 10000000000000000. A batch with floats in its payloads takes them back.
        let floats = to_insert.iter().any(|j| has_float(&j.payload));
        let insert = db
            .stmt(if floats {
                &sql.insert_many_payload
            } else {
                &sql.insert_many
            })
            .await?;
        let col = |f: &dyn Fn(&NewJob) -> i64| to_insert.iter().map(|j| f(j)).collect::<Vec<i64>>();
        let ids: Vec<uuid::Uuid> = to_insert.iter().map(|j| j.id).collect();
        let tenants: Vec<&str> = to_insert.iter().map(|j| j.tenant_id.as_str()).collect();
        let use_cases: Vec<&str> = to_insert.iter().map(|j| j.use_case.as_str()).collect();
        let kinds: Vec<&str> = to_insert.iter().map(|j| j.kind.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = to_insert.iter().map(|j| &j.payload).collect();
        let priorities: Vec<i16> = to_insert.iter().map(|j| j.priority).collect();
        let max_attempts = col(&|j| i64::from(j.max_attempts));
        let strategies: Vec<&str> = to_insert
            .iter()
            .map(|j| strategy_str(j.backoff.strategy))
            .collect();
        let bases = col(&|j| micros(j.backoff.base));
        let caps = col(&|j| micros(j.backoff.cap));
        let jitters: Vec<&str> = to_insert
            .iter()
            .map(|j| jitter_str(j.backoff.jitter))
            .collect();
        let run_ats: Vec<Option<DateTime<Utc>>> = to_insert.iter().map(|j| j.run_at).collect();
        let tolerances = col(&|j| micros(j.delay_tolerance));
        let timeouts = col(&|j| micros(j.timeout));
        let keys: Vec<Option<&str>> = to_insert
            .iter()
            .map(|j| j.idempotency_key.as_deref())
            .collect();
        let traces: Vec<(Option<String>, Option<&str>)> = to_insert
            .iter()
            .map(|j| trace_columns(j.trace_context.as_ref()))
            .collect();
        let traceparents: Vec<Option<&str>> = traces.iter().map(|t| t.0.as_deref()).collect();
        let tracestates: Vec<Option<&str>> = traces.iter().map(|t| t.1).collect();
        let expires: Vec<bool> = to_insert.iter().map(|j| j.expire_at_deadline).collect();
        let steps: Vec<f64> = to_insert.iter().map(|j| j.fair_step()).collect();
        let pre: Vec<Option<f64>> = to_insert
            .iter()
            .map(|j| {
                reserved
                    .get(&(j.use_case.clone(), j.tenant_id.clone()))
                    .copied()
            })
            .collect();
        let rows = db
            .client
            .query(
                &insert,
                &[
                    &now,
                    &ids,
                    &tenants,
                    &use_cases,
                    &kinds,
                    &payloads,
                    &priorities,
                    &max_attempts,
                    &strategies,
                    &bases,
                    &caps,
                    &jitters,
                    &run_ats,
                    &tolerances,
                    &timeouts,
                    &keys,
                    &traceparents,
                    &tracestates,
                    &expires,
                    &steps,
                    &pre,
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                    Op::Fail(EnqueueError::Store(StoreError::Conflict(format!(
                        "a concurrent enqueue inserted the same job or idempotency key: {e}"
                    ))))
                }
                _ => Op::Pg(e),
            })?;
        // The insert answers only what it decided (the clock's now, when each job is due, its
        // deadline); the rest is the request as stored (`stored`).
        for r in &rows {
            let id: uuid::Uuid = r.try_get(0)?;
            let payload = if floats {
                Some(
                    r.try_get::<_, Option<serde_json::Value>>(4)?
                        .unwrap_or(serde_json::Value::Null),
                )
            } else {
                None
            };
            inserted.insert(
                id,
                Decided {
                    created_at: r.try_get(1)?,
                    run_at: r.try_get(2)?,
                    deadline_at: r.try_get(3)?,
                    payload,
                },
            );
        }
    }

    let mut results: Vec<Enqueued> = Vec::with_capacity(slots.len());
    for (slot, job) in slots.into_iter().zip(jobs) {
        let enqueued = match slot {
            Slot::Existing(job) => Enqueued {
                job: *job,
                created: false,
            },
            Slot::Inserted(id) => {
                let decided = inserted.remove(&id).ok_or_else(|| {
                    StoreError::Internal(format!("inserted job {id} was not returned"))
                })?;
                let mut job = job.clone().into_pending(
                    decided.created_at,
                    decided.run_at,
                    decided.deadline_at,
                );
                if let Some(payload) = decided.payload {
                    job.payload = payload;
                }
                Enqueued {
                    job: stored(job),
                    created: true,
                }
            }
            Slot::SameAs(first) => Enqueued {
                job: results
                    .get(first)
                    .map(|e| e.job.clone())
                    .ok_or_else(|| StoreError::Internal("batch slot out of order".to_owned()))?,
                created: false,
            },
        };
        results.push(enqueued);
    }
    Ok(results)
}
