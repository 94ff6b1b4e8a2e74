//! The SQL of every store operation, rendered once per schema.
//!
//! Conventions: `$1` is always the injected clock's time or NULL, and `t.now` (from
//! `coalesce($1, now())`) is the only "now" a statement uses, so production compares with the
//! database clock and tests with their manual clock through the same text. Durations are bigint
//! microseconds, turned into intervals with `* interval '1 microsecond'`.

/// The lease transaction's `SET LOCAL`s, as a literal (for `concat!`); why each is there is at
/// `LEASE_BEGIN` in store.rs.
macro_rules! lease_settings {
    () => {
        "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; \
         SET LOCAL synchronous_commit = off"
    };
}
pub(crate) use lease_settings;

use crate::row::{job_columns, JOB_COLUMNS};
use crate::schema::SchemaName;

/// `interval` from a bigint microsecond expression.
macro_rules! us {
    ($e:expr) => {
        concat!("(", $e, " * interval '1 microsecond')")
    };
}

const NOW: &str = "(SELECT coalesce($1::timestamptz, now()) AS now) t";
const UNFINISHED: &str = "('pending', 'dispatched', 'running')";
/// A claimed job (`j`) set to expire at its deadline that reached its worker after it.
const LATE: &str = "(j.expire_at_deadline AND j.deadline_at < t.now)";
/// The claim's columns but the lease's end: `running` and the attempt counted, or, for a late job
/// that expires at its deadline, `expired` without an attempt (the store reports the lease lost).
const CLAIM_OR_EXPIRE: &str = "status = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN 'expired' ELSE 'running' END, \
     attempts = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN j.attempts ELSE j.attempts + 1 END, \
     started_at = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN j.started_at ELSE t.now END, \
     first_started_at = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN j.first_started_at \
         ELSE coalesce(j.first_started_at, j.started_at, t.now) END, \
     finished_at = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN t.now ELSE j.finished_at END, \
     last_error = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN 'expired: it would have started after its deadline' ELSE j.last_error END, \
     lease_token = CASE WHEN (j.expire_at_deadline AND j.deadline_at < t.now) THEN NULL ELSE j.lease_token END";

/// When the reaper first looks at a job the pick leased: at the end of its dispatch lease or
/// after this (10 s), whichever is first. The claim and heartbeats move the lease's end, which
/// fences, but not the look (`reap_at`), so that they change no indexed column and are HOT
/// updates; a look that finds the lease still running moves the next look to its end
/// (`reap_later`). Jobs that finish within their first look (the many short ones) are never
/// looked at. A lease shorter than the time to the look moves the look earlier
/// ([`EARLIER_LOOK`]), so the reaper is never later than the lease's end.
const REAP_FIRST_LOOK: &str = "interval '10 seconds'";

/// `reap_at` of a claim or heartbeat taking a lease of `$4` µs: the look comes no later than the
/// lease's end. Unchanged (a HOT update) while the look comes first.
const EARLIER_LOOK: &str =
    "reap_at = CASE WHEN j.reap_at > t.now + ($4::bigint * interval '1 microsecond') \
     THEN t.now + ($4::bigint * interval '1 microsecond') ELSE j.reap_at END";

/// The dashboard's recent activity (`ApiStore::activity`, rules in `jobs_core::activity`): $1 the
/// clock, $2 the window in minutes, $3 the bound on rows examined, $4 the tenant or NULL.
///
/// Bounded whatever the table's size. For every tenant, `fin0` walks `jobs_finished_idx`
/// backwards from now and stops after $3 + 1 rows (the extra one only says the bound cut the
/// window). For one tenant it walks that tenant's newest $3 + 1 jobs (`jobs_tenant_list_idx`;
/// ids are UUIDv7, in creation order) and keeps those finished in the window: the bound counts
/// the tenant's own jobs only, so another tenant's volume never shows in a tenant's figures, not
/// even as a cut window. `fly` reads the in-flight jobs (dispatched or running: the caps bound
/// them) through their partial indexes, at most $3. No index is added for it: every
/// index costs each job write, and `finished_at`'s exists for pruning. Minutes are UTC. Always
/// one row at least (the window's start and the truncation flag, with NULL groups when nothing
/// happened).
fn activity_sql(jobs: &str) -> String {
    const MINUTE: &str = "(date_trunc('minute', t.now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    format!(
        "WITH w AS MATERIALIZED (SELECT {MINUTE} - ($2::int - 1) * interval '1 minute' AS since FROM {NOW}), \
         fin0 AS MATERIALIZED ( \
             (SELECT j.tenant_id, j.use_case, j.status, j.finished_at, j.first_started_at, j.started_at, j.deadline_at \
                 FROM {jobs} j WHERE $4::text IS NULL AND j.finished_at >= (SELECT since FROM w) \
                 ORDER BY j.finished_at DESC LIMIT $3::bigint + 1) \
             UNION ALL \
             (SELECT x.tenant_id, x.use_case, x.status, x.finished_at, x.first_started_at, x.started_at, x.deadline_at \
                 FROM (SELECT j.tenant_id, j.use_case, j.status, j.finished_at, j.first_started_at, j.started_at, j.deadline_at \
                     FROM {jobs} j WHERE j.tenant_id = $4::text ORDER BY j.id DESC LIMIT $3::bigint + 1) x \
                 WHERE x.finished_at >= (SELECT since FROM w))), \
         fin AS MATERIALIZED (SELECT * FROM (SELECT * FROM fin0 ORDER BY finished_at DESC LIMIT $3::bigint) x \
             WHERE x.status IN ('succeeded', 'dead', 'cancelled', 'expired')), \
         fly AS (SELECT * FROM (SELECT j.tenant_id, j.use_case, j.first_started_at, j.started_at, j.deadline_at \
             FROM {jobs} j WHERE j.queue = 3 AND j.first_started_at >= (SELECT since FROM w) \
             AND ($4::text IS NULL OR j.tenant_id = $4::text) LIMIT $3::bigint) y), \
         started AS (SELECT use_case, first_started_at, started_at, deadline_at FROM fin \
             UNION ALL SELECT use_case, first_started_at, started_at, deadline_at FROM fly), \
         ev AS (SELECT use_case, finished_at AS at, status AS what FROM fin \
             UNION ALL \
             SELECT use_case, first_started_at, \
                 CASE WHEN first_started_at > deadline_at THEN 'missed' ELSE 'met' END FROM started \
                 WHERE first_started_at >= (SELECT since FROM w) \
                 AND (started_at = first_started_at OR first_started_at > deadline_at) \
             UNION ALL \
             SELECT use_case, finished_at, 'missed' FROM fin \
                 WHERE status = 'expired' AND first_started_at IS NULL), \
         g AS (SELECT use_case, date_trunc('minute', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute, \
                 what, count(*) AS n FROM ev GROUP BY 1, 2, 3) \
         SELECT w.since, (SELECT count(*) FROM fin0) > $3::bigint AS truncated, \
             g.use_case, g.minute, g.what, g.n \
         FROM w LEFT JOIN g ON true"
    )
}

/// The backlog (due pending jobs, not paused) per use case, or per use case and tenant: one row
/// `(at, use_case, tenant_id, n, oldest)` per group, or one row of `at` and NULLs when nothing is
/// due. It reads only the indexes of pending jobs (docs/postgres.md, "The backlog"):
///
/// - ready jobs, from `jobs_tenant_pick_idx` (every ready job that is not held; the branch
///   repeats its predicate so the planner can use it): index-only, as `use_case` and `tenant_id`
///   are keys and `run_at` is INCLUDEd;
/// - jobs whose `run_at` has come but which no pick has promoted yet (`ready = false`): one
///   range probe of `jobs_scheduled_idx` per use case that has scheduled jobs (found by a loose
///   scan of the same index), so a large backlog scheduled for later is not walked (`OFFSET 0`
///   keeps the planner from flattening the probe into a join that scans the index by `run_at`);
/// - tenant pauses are the `held` mark (set in the pause's transaction); a use case paused for
///   every tenant is filtered by the (small) pauses table.
fn backlog(jobs: &str, pauses: &str, by_tenant: bool) -> String {
    // Per use case, every row's tenant is NULL, so grouping by it too changes nothing.
    let tenant = if by_tenant {
        "j.tenant_id"
    } else {
        "NULL::text"
    };
    let now = "coalesce($1::timestamptz, now())";
    format!(
        "WITH RECURSIVE sched AS ( \
             (SELECT s.use_case FROM {jobs} s WHERE s.queue = 1 AND NOT s.held \
                 ORDER BY s.use_case LIMIT 1) \
             UNION ALL \
             SELECT (SELECT s.use_case FROM {jobs} s WHERE s.queue = 1 AND NOT s.held \
                 AND s.use_case > u.use_case ORDER BY s.use_case LIMIT 1) \
             FROM sched u WHERE u.use_case IS NOT NULL), \
         due AS ( \
             SELECT j.use_case, {tenant} AS tenant_id, j.run_at FROM {jobs} j \
                 WHERE j.queue = 2 AND NOT j.held AND j.run_at <= {now} \
             UNION ALL \
             SELECT x.use_case, x.tenant_id, x.run_at FROM sched u CROSS JOIN LATERAL ( \
                 SELECT j.use_case, {tenant} AS tenant_id, j.run_at FROM {jobs} j \
                 WHERE j.use_case = u.use_case AND j.queue = 1 AND NOT j.held \
                 AND j.run_at <= {now} OFFSET 0) x WHERE u.use_case IS NOT NULL), \
         grouped AS ( \
             SELECT d.use_case, d.tenant_id, count(*) AS n, min(d.run_at) AS oldest FROM due d \
                 WHERE d.use_case NOT IN (SELECT z.use_case FROM {pauses} z WHERE z.tenant_id = '') \
                 GROUP BY d.use_case, d.tenant_id) \
         SELECT {now} AS at, g.use_case, g.tenant_id, g.n, g.oldest FROM (SELECT 1) one LEFT JOIN grouped g ON true \
         ORDER BY g.use_case COLLATE \"C\", g.tenant_id COLLATE \"C\""
    )
}

/// The reaper's candidates (`due`: ids, at most $2, earliest look first) among the in-flight jobs
/// whose `reap_at` has come ($1 now) and that meet `cond` (on `d`): a loose scan of
/// `jobs_in_flight_idx` finds the use cases with jobs in flight, then one range of that index per
/// use case (it is keyed by use case first, as it also serves the pick's in-flight count).
/// Starts a `WITH RECURSIVE` list.
fn reap_due(jobs: &str, cond: &str) -> String {
    format!(
        "WITH RECURSIVE ucs AS ( \
             (SELECT f.use_case FROM {jobs} f WHERE f.queue = 3 ORDER BY f.use_case LIMIT 1) \
             UNION ALL \
             SELECT (SELECT f.use_case FROM {jobs} f WHERE f.queue = 3 AND f.use_case > u.use_case \
                 ORDER BY f.use_case LIMIT 1) FROM ucs u WHERE u.use_case IS NOT NULL), \
         due AS MATERIALIZED ( \
             SELECT c.id FROM ucs u CROSS JOIN LATERAL ( \
                 SELECT d.id, d.reap_at FROM {jobs} d WHERE d.use_case = u.use_case AND d.queue = 3 \
                 AND d.reap_at <= coalesce($1::timestamptz, now()) AND {cond} \
                 ORDER BY d.reap_at LIMIT $2) c \
             WHERE u.use_case IS NOT NULL ORDER BY c.reap_at LIMIT $2)"
    )
}

/// Rendered statements for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) schema: SchemaName,
    pub(crate) insert_one: String,
    pub(crate) insert_many: String,
    pub(crate) insert_many_payload: String,
    pub(crate) reserve_tags: String,
    pub(crate) prune_reserve: String,
    pub(crate) by_key: String,
    pub(crate) by_keys: String,
    pub(crate) quota_counts: String,
    pub(crate) quota_lock: String,
    pub(crate) lease_lock: String,
    pub(crate) lease_due: String,
    pub(crate) promote: String,
    pub(crate) expire: String,
    pub(crate) get: String,
    pub(crate) cancel: String,
    pub(crate) retry: String,
    pub(crate) status_of: String,
    pub(crate) status_for_update: String,
    pub(crate) claim: String,
    pub(crate) claim_many: String,
    pub(crate) complete_many: String,
    pub(crate) heartbeat: String,
    pub(crate) complete: String,
    pub(crate) fail: String,
    pub(crate) finish_cancelled: String,
    pub(crate) release: String,
    pub(crate) reap_dispatched: String,
    pub(crate) return_dispatched: String,
    pub(crate) reap_running: String,
    pub(crate) reap_later: String,
    pub(crate) counts: String,
    pub(crate) tenant_counts: String,
    pub(crate) activity: String,
    pub(crate) backlog_by_use_case: String,
    pub(crate) backlog_by_tenant: String,
    pub(crate) prune: String,
    pub(crate) pause: String,
    pub(crate) hold: String,
    pub(crate) resume: String,
    pub(crate) unhold: String,
    pub(crate) pauses: String,
    pub(crate) rate_wait: String,
    pub(crate) rate_limits_read: String,
    pub(crate) rate_limits_clear: String,
    pub(crate) prune_buckets: String,
    pub(crate) rate_limits_insert: String,
    pub(crate) rate_limits_mark: String,
    pub(crate) queue_position: String,
    pub(crate) record_drain_rate: String,
}

impl Sql {
    pub(crate) fn new(schema: SchemaName) -> Sql {
        let s = schema.as_str();
        let jobs = format!("{s}.jobs");
        let pauses = format!("{s}.pauses");
        let rate_limits = format!("{s}.rate_limits");
        let buckets = format!("{s}.rate_buckets");
        let clock = format!("{s}.fair_clock");
        let reserve = format!("{s}.fair_reserve");
        // The tag before the first of a tenant's jobs becoming ready now (`jobs_core::fair`): the
        // use case's clock, or the tenant's highest tag when further on (the last entry of its
        // range in jobs_quota_idx).
        let fair_base = |tenant: &str, use_case: &str| {
            format!(
                "greatest(coalesce((SELECT fc.vtime FROM {clock} fc WHERE fc.use_case = {use_case}), 0),                      coalesce((SELECT fq.fair_tag FROM {jobs} fq WHERE fq.tenant_id = {tenant} AND fq.use_case = {use_case}                          AND fq.finished_at IS NULL ORDER BY fq.fair_tag DESC LIMIT 1), 0))"
            )
        };
        // The tenants of use case $2 with ready limited jobs, one index probe each (a loose scan
        // of jobs_tenant_pick_idx's limited part), with the tokens each holds now (NULL: no limit applies any
        // more, take as many as the pick allows) and its limit. Paused tenants are left out.
        let allowances = format!(
            "lim_t AS ( \
                 (SELECT p.tenant_id FROM {jobs} p WHERE p.use_case = $2 AND p.queue = 2 \
                     AND NOT p.held AND p.limited ORDER BY p.tenant_id LIMIT 1) \
                 UNION ALL \
                 SELECT (SELECT p.tenant_id FROM {jobs} p WHERE p.use_case = $2 AND p.queue = 2 \
                     AND NOT p.held AND p.limited AND p.tenant_id > l.tenant_id ORDER BY p.tenant_id LIMIT 1) \
                 FROM lim_t l WHERE l.tenant_id IS NOT NULL), \
             allow AS MATERIALIZED ( \
                 SELECT l.tenant_id, r.per_second, \
                     CASE WHEN r.per_second IS NULL THEN NULL ELSE least(r.burst::float8, coalesce(b.tokens \
                         + r.per_second * greatest(0, extract(epoch FROM t.now - b.updated_at)::float8), r.burst::float8)) END AS tokens \
                 FROM lim_t l CROSS JOIN {NOW} \
                 LEFT JOIN LATERAL (SELECT r.per_second, r.burst FROM {rate_limits} r \
                     WHERE r.use_case = $2 AND r.tenant_id IN (l.tenant_id, '') ORDER BY r.tenant_id = '' LIMIT 1) r ON true \
                 LEFT JOIN {buckets} b ON b.use_case = $2 AND b.tenant_id = l.tenant_id \
                 WHERE l.tenant_id IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = $2 AND z.tenant_id = l.tenant_id))"
        );
        let cols = job_columns("j");
        let plain_cols = JOB_COLUMNS.join(", ");
        let insert_columns = "id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts, \
             backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us, \
             deadline_at, timeout_us, idempotency_key, cancel_requested, created_at, updated_at, ready, \
             traceparent, tracestate, held, limited, expire_at_deadline, fair_tag, fair_step";
        // A fenced update: `set` applies to the job with id $2, status `status` and token $3.
        let fenced = |status: &str, set: &str, extra: &str| {
            format!(
                "UPDATE {jobs} j SET {set}, updated_at = t.now FROM {NOW} \
                 WHERE j.id = $2 AND j.status = '{status}' AND j.lease_token = $3{extra} RETURNING {cols}"
            )
        };
        // The same for many jobs: $2 ids and $3 tokens as parallel arrays; each row written
        // returns `returning` and the token it matched.
        let fenced_many = |status: &str, set: &str, returning: &str| {
            format!(
                "UPDATE {jobs} j SET {set}, updated_at = t.now \
                 FROM {NOW}, unnest($2::uuid[], $3::uuid[]) AS k(id, token) \
                 WHERE j.id = k.id AND j.status = '{status}' AND j.lease_token = k.token RETURNING {returning}, k.token AS matched_token"
            )
        };
        let cleared = "lease_token = NULL, lease_expires_at = NULL";
        let insert_many = format!(
                "WITH v AS MATERIALIZED ( \
                     SELECT x.*, coalesce(x.run_at, n.now) <= n.now AS due, n.now FROM (SELECT coalesce($1::timestamptz, now()) AS now) n, \
                     unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::smallint[], \
                        $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::timestamptz[], \
                        $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::text[], $19::boolean[], $20::float8[], $21::float8[]) \
                     WITH ORDINALITY AS x(id, tenant_id, use_case, kind, payload, priority, max_attempts, strategy, base_us, cap_us, \
                          jitter, run_at, tolerance_us, timeout_us, key, traceparent, tracestate, expire_at_deadline, step, pre, ord)), \
                 k AS MATERIALIZED ( \
                     SELECT d.tenant_id, d.use_case, \
                         EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = d.use_case AND z.tenant_id = d.tenant_id) AS held, \
                         EXISTS (SELECT 1 FROM {rate_limits} r WHERE r.use_case = d.use_case AND r.tenant_id IN (d.tenant_id, '')) AS limited, \
                         coalesce(d.pre, {base}) AS base \
                     FROM (SELECT tenant_id, use_case, max(pre) AS pre FROM v GROUP BY tenant_id, use_case) d), \
                 u AS ( \
                     SELECT v.*, k.held, k.limited, k.base, CASE WHEN v.step > 0 AND v.due AND NOT k.held \
                         THEN row_number() OVER (PARTITION BY v.tenant_id, v.use_case, v.step > 0 AND v.due AND NOT k.held \
                             ORDER BY v.ord) END AS turn \
                     FROM v JOIN k ON k.tenant_id = v.tenant_id AND k.use_case = v.use_case) \
                 INSERT INTO {jobs} ({insert_columns}) \
                 SELECT u.id, u.tenant_id, u.use_case, u.kind, u.payload, 'pending', u.priority, 0, u.max_attempts, \
                        u.strategy, u.base_us, u.cap_us, u.jitter, coalesce(u.run_at, u.now), u.tolerance_us, \
                        greatest(coalesce(u.run_at, u.now), u.now) + {tol}, u.timeout_us, u.key, false, u.now, u.now, \
                        u.due, u.traceparent, u.tracestate, u.held, u.limited, u.expire_at_deadline, \
                        CASE WHEN u.turn IS NULL THEN 0 ELSE u.base + u.turn * u.step END, u.step \
                 FROM u \
                 RETURNING id, created_at, run_at, deadline_at{{returning}}",
                tol = us!("u.tolerance_us"),
                base = fair_base("d.tenant_id", "d.use_case"),
            );
        Sql {
            insert_one: format!(
                "INSERT INTO {jobs} ({insert_columns}) \
                 SELECT $2::uuid, $3::text, $4::text, $5::text, $6::jsonb, 'pending', $7::smallint, 0, $8::bigint, \
                        $9::text, $10::bigint, $11::bigint, $12::text, coalesce($13::timestamptz, t.now), $14::bigint, \
                        greatest(coalesce($13::timestamptz, t.now), t.now) + {tol}, $15::bigint, $16::text, false, t.now, t.now, \
                        coalesce($13::timestamptz, t.now) <= t.now, $18::text, $19::text, \
                        EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = $4 AND z.tenant_id = $3), \
                        EXISTS (SELECT 1 FROM {rate_limits} r WHERE r.use_case = $4 AND r.tenant_id IN ($3, '')), \
                        $20::boolean, \
                        CASE WHEN $21::float8 > 0 AND coalesce($13::timestamptz, t.now) <= t.now \
                            AND NOT EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = $4 AND z.tenant_id = $3) \
                            THEN coalesce($22::float8, {base}) + $21::float8 ELSE 0 END, $21::float8 \
                 FROM {NOW} \
                 WHERE $17::bigint IS NULL OR (SELECT count(*) FROM (SELECT 1 FROM {jobs} q \
                     WHERE q.tenant_id = $3 AND q.use_case = $4 AND q.finished_at IS NULL LIMIT $17) c) < $17 \
                 ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
                 RETURNING {plain_cols}",
                tol = us!("$14::bigint"),
                base = fair_base("$3", "$4"),
            ),
            // One row per entry; what depends only on the entry's tenant and use case (its
            // pause, its rate limit, the base of its turns) is read once per pair (`k`), not once
            // per row.
            // The insert answers only what it decided (the request is the rest of each job);
            // `insert_many_payload` also its stored payload, for payloads jsonb may rewrite.
            insert_many: insert_many.replace("{returning}", ""),
            insert_many_payload: insert_many.replace("{returning}", ", payload"),
            // Reserves fair-share turns for the due jobs of fair use cases ($2 use cases, $3
            // tenants, $4 run_at, $5 steps, one entry per job; $1 now) that are not paused, and
            // answers each (use case, tenant)'s base: its jobs take the turns base + k × step, k =
            // 1..n in the order of the batch. The base is the tenant's next turn as the insert
            // would read it (the clock, or its highest tag among committed jobs), or after the
            // turns reserved in the last 10 s if those go further (enqueues not committed yet).
            // Run in a transaction of its own (see migration 10).
            reserve_tags: format!(
                "WITH v AS (SELECT x.use_case, x.tenant_id, x.step FROM {NOW}, \
                     unnest($2::text[], $3::text[], $4::timestamptz[], $5::float8[]) AS x(use_case, tenant_id, run_at, step) \
                     WHERE x.step > 0 AND coalesce(x.run_at, t.now) <= t.now), \
                 g AS (SELECT d.use_case, d.tenant_id, d.n * d.step AS span, {base} AS floor FROM \
                     (SELECT use_case, tenant_id, max(step) AS step, count(*) AS n FROM v GROUP BY use_case, tenant_id) d \
                     WHERE NOT EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = d.use_case AND z.tenant_id = d.tenant_id)) \
                 INSERT INTO {reserve} AS f (use_case, tenant_id, last_tag, reserved, at) \
                 SELECT g.use_case, g.tenant_id, g.floor + g.span, g.span, t.now FROM g, {NOW} \
                 ORDER BY g.use_case, g.tenant_id \
                 ON CONFLICT (use_case, tenant_id) DO UPDATE SET \
                     last_tag = greatest(excluded.last_tag - excluded.reserved, \
                         CASE WHEN f.at > excluded.at - interval '10 seconds' THEN f.last_tag ELSE 0 END) + excluded.reserved, \
                     reserved = excluded.reserved, at = excluded.at \
                 RETURNING f.use_case, f.tenant_id, f.last_tag - f.reserved AS base",
                base = fair_base("d.tenant_id", "d.use_case"),
            ),
            prune_reserve: format!(
                "DELETE FROM {reserve} f USING {NOW} WHERE f.at < t.now - interval '1 hour'"
            ),
            by_key: format!("SELECT {cols} FROM {jobs} j WHERE j.tenant_id = $1 AND j.idempotency_key = $2"),
            by_keys: format!(
                "SELECT {cols} FROM {jobs} j JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, key) \
                 ON j.tenant_id = k.tenant_id AND j.idempotency_key = k.key"
            ),
            quota_counts: format!(
                "SELECT k.tenant_id, k.use_case, (SELECT count(*) FROM {jobs} q WHERE q.tenant_id = k.tenant_id \
                     AND q.use_case = k.use_case AND q.finished_at IS NULL) AS used \
                 FROM unnest($1::text[], $2::text[]) AS k(tenant_id, use_case)"
            ),
            // Two-key advisory locks: the first key names the purpose, the second hashes the
            // schema and the subject. Keys are given as one array, locked in array order.
            quota_lock: "SELECT count(pg_advisory_xact_lock(hashtext('async_jobs.quota'), hashtext(k))) \
                         FROM unnest($1::text[]) AS k"
                .to_owned(),
            lease_lock: "SELECT pg_advisory_xact_lock(hashtext('async_jobs.lease'), hashtext($1))".to_owned(),
            // The pick hands out turns (`jobs_core::fair`), in two lanes merged in tag order: the
            // main index (tenants without a rate limit) walked from the lowest tag, and for each
            // rate-limited tenant its own earliest deadlines, as many as its whole tokens. Each
            // main-lane tenant's turns go to its earliest deadlines (`chosen`, one probe of
            // jobs_tenant_pick_idx per tenant served), and the tags of turns it did not use in
            // this order move to the jobs it keeps (`displaced` ← `gained`); the use case's clock
            // moves to the highest tag handed out (a leased job keeps at most that tag: in flight
            // it holds the turn it used, not a later one). With every tag 0 (plain EDF) the
            // turns are the EDF prefix and nothing moves. The room under the cap is counted once;
            // a paused use case has none. Candidates are read without locks (picks of a use case
            // are serialised by its advisory lock) and carry their row's address (`ctid`): the
            // rows to lease are locked by address (`locked`, no index descent), skipping any row
            // another session holds (a cancel, a re-mark of rate limits: the pick never waits on
            // a row lock while it holds the use case's pick lock), and re-checked on the version
            // locked (`status`, `held`), so a job cancelled or held meanwhile is not leased; the
            // lease (`leased`) updates exactly the locked rows, by address. Each leased limited
            // job takes a token from its tenant's bucket in the same statement.
            //
            // A job set to expire whose deadline has passed is never a candidate, in either lane:
            // the expiry before the pick ends at most a batch of them, and any left over wait for
            // the next pick's expiry instead of being leased late.
            //
            // `limited` is only where a job is indexed, not what limits it: a job whose flag is
            // stale (enqueued in a transaction that overlapped a change of limits, or brought
            // back from a finished state) but whose tenant is limited now is never leased from
            // the main lane: the pick marks it `limited` instead (`healed`), and the lane takes
            // it, by its bucket, from the next pick on. The update finds rows by primary key
            // (`= ANY(ARRAY(…))`): joined to a CTE, the planner cannot see how few rows it holds
            // and was seen to hash the whole table instead.
            lease_due: format!(
                "WITH RECURSIVE {allowances}, \
                 room AS MATERIALIZED (SELECT CASE WHEN EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = $2 AND z.tenant_id = '') \
                     THEN 0 ELSE greatest(0, least($3::bigint, $4::bigint - (SELECT count(*) FROM (SELECT 1 FROM {jobs} f \
                         WHERE f.use_case = $2 AND f.queue = 3 LIMIT $4::bigint) x))) END AS n), \
                 held_t AS MATERIALIZED (SELECT coalesce(array_agg(z.tenant_id), '{{}}') AS tenants FROM {pauses} z WHERE z.use_case = $2), \
                 limits AS MATERIALIZED (SELECT coalesce(bool_or(r.tenant_id = ''), false) AS every, \
                     coalesce(array_agg(r.tenant_id), '{{}}') AS tenants FROM {rate_limits} r WHERE r.use_case = $2), \
                 main AS MATERIALIZED ( \
                     SELECT p.id, p.ctid AS tid, p.tenant_id, p.fair_tag, p.deadline_at, p.priority, false AS lim, \
                         (SELECT every FROM limits) OR p.tenant_id = ANY ((SELECT tenants FROM limits)::text[]) AS stale \
                     FROM {jobs} p, {NOW} \
                     WHERE p.use_case = $2 AND p.queue = 2 AND NOT p.held AND NOT p.limited \
                     AND p.run_at <= t.now AND NOT (p.expire_at_deadline AND p.deadline_at < t.now) \
                     AND p.tenant_id <> ALL ((SELECT tenants FROM held_t)::text[]) \
                     ORDER BY p.fair_tag, p.deadline_at, p.priority DESC, p.id \
                     LIMIT (SELECT n FROM room)), \
                 lane AS ( \
                     SELECT c.id, c.tid, a.tenant_id, c.fair_tag, c.deadline_at, c.priority, true AS lim \
                     FROM allow a CROSS JOIN room, LATERAL ( \
                         SELECT p.id, p.ctid AS tid, p.fair_tag, p.deadline_at, p.priority FROM {jobs} p, {NOW} \
                         WHERE p.use_case = $2 AND p.limited AND p.tenant_id = a.tenant_id AND p.queue = 2 \
                         AND NOT p.held AND p.run_at <= t.now \
                         AND NOT (p.expire_at_deadline AND p.deadline_at < t.now) \
                         ORDER BY p.deadline_at, p.priority DESC, p.id \
                         LIMIT least(room.n, coalesce(floor(a.tokens)::bigint, room.n))) c \
                     WHERE room.n > 0 AND (a.tokens IS NULL OR a.tokens >= 1)), \
                 picked AS MATERIALIZED ( \
                     SELECT u.id, u.tid, u.tenant_id, u.fair_tag, u.lim FROM ( \
                         SELECT id, tid, tenant_id, fair_tag, deadline_at, priority, lim FROM main WHERE NOT stale \
                         UNION ALL SELECT id, tid, tenant_id, fair_tag, deadline_at, priority, lim FROM lane) u \
                     ORDER BY u.fair_tag, u.deadline_at, u.priority DESC, u.id LIMIT (SELECT n FROM room)), \
                 turns AS MATERIALIZED (SELECT tenant_id, count(*) AS n FROM picked WHERE NOT lim GROUP BY tenant_id), \
                 chosen AS MATERIALIZED ( \
                     SELECT c.id, c.tid, c.fair_tag, tu.tenant_id FROM turns tu, LATERAL ( \
                         SELECT p.id, p.ctid AS tid, p.fair_tag FROM {jobs} p, {NOW} \
                         WHERE p.use_case = $2 AND NOT p.limited AND p.tenant_id = tu.tenant_id AND p.queue = 2 \
                         AND NOT p.held AND p.run_at <= t.now \
                         AND NOT (p.expire_at_deadline AND p.deadline_at < t.now) \
                         ORDER BY p.deadline_at, p.priority DESC, p.id LIMIT tu.n) c), \
                 locked AS MATERIALIZED ( \
                     SELECT j.ctid AS tid FROM {jobs} j \
                     WHERE j.ctid = ANY (ARRAY(SELECT tid FROM chosen UNION ALL SELECT tid FROM picked WHERE lim)) \
                     AND j.status = 'pending' AND NOT j.held \
                     FOR NO KEY UPDATE OF j SKIP LOCKED), \
                 leased AS ( \
                     UPDATE {jobs} j SET status = 'dispatched', lease_token = gen_random_uuid(), \
                         lease_expires_at = t.now + {lease}, reap_at = t.now + least({lease}, {first_look}), \
                         dispatched_at = t.now, updated_at = t.now, \
                         fair_tag = least(j.fair_tag, (SELECT max(fair_tag) FROM picked)) \
                     FROM {NOW} \
                     WHERE j.ctid = ANY (ARRAY(SELECT tid FROM locked)) AND j.status = 'pending' AND NOT j.held \
                     RETURNING j.id, j.lease_token, j.tenant_id, j.use_case, j.kind, j.attempts, j.deadline_at, j.priority, \
                         j.id = ANY (ARRAY(SELECT id FROM picked WHERE lim)) AS lim), \
                 displaced AS ( \
                     SELECT s.id, s.tenant_id, row_number() OVER (PARTITION BY s.tenant_id ORDER BY s.fair_tag, s.id) AS k \
                     FROM picked s WHERE NOT s.lim AND s.id NOT IN (SELECT id FROM chosen)), \
                 gained AS ( \
                     SELECT c.tenant_id, c.fair_tag, row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.fair_tag, c.id) AS k \
                     FROM chosen c WHERE c.id NOT IN (SELECT id FROM picked)), \
                 swapped AS ( \
                     UPDATE {jobs} j SET fair_tag = g.fair_tag FROM displaced d JOIN gained g ON g.tenant_id = d.tenant_id AND g.k = d.k \
                     WHERE j.id = d.id AND j.status = 'pending'), \
                 clocked AS ( \
                     INSERT INTO {clock} AS fc (use_case, vtime) SELECT $2, max(fair_tag) FROM picked HAVING count(*) > 0 \
                     ON CONFLICT (use_case) DO UPDATE SET vtime = greatest(fc.vtime, excluded.vtime)), \
                 healed AS ( \
                     UPDATE {jobs} j SET limited = true \
                     WHERE j.id = ANY (ARRAY(SELECT id FROM main WHERE stale)) AND j.status = 'pending' AND NOT j.limited), \
                 spent AS ( \
                     INSERT INTO {buckets} AS b (use_case, tenant_id, tokens, updated_at) \
                     SELECT $2, a.tenant_id, a.tokens - k.n, t.now \
                     FROM allow a JOIN (SELECT tenant_id, count(*) AS n FROM leased WHERE lim GROUP BY tenant_id) k \
                         ON k.tenant_id = a.tenant_id CROSS JOIN {NOW} \
                     WHERE a.tokens IS NOT NULL \
                     ON CONFLICT (use_case, tenant_id) DO UPDATE SET tokens = excluded.tokens, \
                         updated_at = greatest(b.updated_at, excluded.updated_at)) \
                 SELECT id, lease_token, tenant_id, use_case, kind, attempts, deadline_at, priority FROM leased",
                lease = us!("$5::bigint"),
                first_look = REAP_FIRST_LOOK,
            ),
            // The shortest wait for a token among the limited tenants of use case $2 with due
            // jobs and less than one token ($1 now).
            rate_wait: format!(
                "WITH RECURSIVE {allowances} \
                 SELECT min((1 - a.tokens) / a.per_second) FROM allow a WHERE a.tokens < 1 \
                 AND EXISTS (SELECT 1 FROM {jobs} p, {NOW} WHERE p.use_case = $2 AND p.tenant_id = a.tenant_id \
                     AND p.queue = 2 AND NOT p.held AND p.limited AND p.run_at <= t.now) \
                 AND NOT EXISTS (SELECT 1 FROM {pauses} z WHERE z.use_case = $2 AND z.tenant_id = '')"
            ),
            rate_limits_read: format!(
                "SELECT use_case, tenant_id, per_second, burst FROM {rate_limits} \
                 ORDER BY use_case COLLATE \"C\", tenant_id COLLATE \"C\""
            ),
            rate_limits_clear: format!("DELETE FROM {rate_limits}"),
            // Buckets that have refilled (a full bucket and no bucket are the same to the pick),
            // or whose limit is gone; with the prune ($1 now). A pick that took tokens meanwhile
            // holds the row, and the delete re-checks the new version.
            prune_buckets: format!(
                "DELETE FROM {buckets} b USING {NOW} WHERE NOT EXISTS (SELECT 1 FROM {rate_limits} r \
                     WHERE r.use_case = b.use_case AND r.tenant_id IN (b.tenant_id, '') \
                     AND b.tokens + r.per_second * greatest(0, extract(epoch FROM t.now - b.updated_at)::float8) < r.burst)"
            ),
            rate_limits_insert: format!(
                "INSERT INTO {rate_limits} (use_case, tenant_id, per_second, burst) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::int[]) \
                 ON CONFLICT (use_case, tenant_id) DO UPDATE SET per_second = excluded.per_second, burst = excluded.burst"
            ),
            // After the limits of use cases $1 changed: the next 5,000 jobs by id after $2 (NULL:
            // from the first), each unfinished one of those use cases marked `limited` exactly when
            // a limit applies to its tenant; answers the last id examined (none: done). Run in
            // batches of their own, outside any pick lock: the pick does not trust the flag.
            rate_limits_mark: format!(
                "WITH r AS (SELECT q.id, q.use_case, q.tenant_id, q.status FROM {jobs} q \
                     WHERE $2::uuid IS NULL OR q.id > $2 ORDER BY q.id LIMIT 5000), \
                 w AS (SELECT r.id, EXISTS (SELECT 1 FROM {rate_limits} l WHERE l.use_case = r.use_case \
                         AND l.tenant_id IN (r.tenant_id, '')) AS want \
                     FROM r WHERE r.use_case = ANY($1::text[]) AND r.status IN {UNFINISHED}), \
                 fixed AS (UPDATE {jobs} j SET limited = w.want FROM w WHERE j.id = w.id AND j.limited IS DISTINCT FROM w.want) \
                 SELECT (SELECT r.id FROM r ORDER BY r.id DESC LIMIT 1)"
            ),
            // Where pending job $2 stands ($1 now, $3 the bound): one statement, reading a
            // bounded prefix of jobs_pick_idx (the jobs before it in the pick order: the row
            // comparison on (fair_tag, deadline_at) is the index range, the rest of the key a
            // filter on it), jobs_in_flight_idx for the use case's in-flight count, and the
            // fair_clock row for the drain rate.
            queue_position: format!(
                "SELECT t.now AS at, z.paused, \
                     CASE WHEN m.ready AND NOT z.paused THEN (SELECT count(*) FROM (SELECT 1 FROM {jobs} p \
                         WHERE p.use_case = m.use_case AND p.queue = 2 AND NOT p.held AND NOT p.limited \
                         AND (p.fair_tag, p.deadline_at) <= (m.fair_tag, m.deadline_at) \
                         AND (p.fair_tag < m.fair_tag OR p.deadline_at < m.deadline_at OR p.priority > m.priority \
                             OR (p.priority = m.priority AND p.id < m.id)) \
                         LIMIT $3) a) ELSE 0 END AS ahead, \
                     (SELECT count(*) FROM {jobs} f WHERE f.use_case = m.use_case AND f.queue = 3) AS in_flight, \
                     fc.drain_rate, fc.drain_rate_at \
                 FROM {jobs} m CROSS JOIN {NOW} \
                 CROSS JOIN LATERAL (SELECT m.held OR EXISTS (SELECT 1 FROM {pauses} q \
                     WHERE q.use_case = m.use_case AND q.tenant_id IN ('', m.tenant_id)) AS paused) z \
                 LEFT JOIN {clock} fc ON fc.use_case = m.use_case \
                 WHERE m.id = $2 AND m.status = 'pending'"
            ),
            // The drain rate $3 of use case $2, stored with the store's now ($1); a new row's
            // clock starts at 0, as the pick's does.
            record_drain_rate: format!(
                "INSERT INTO {clock} AS fc (use_case, vtime, drain_rate, drain_rate_at) \
                 SELECT $2, 0, $3::float8, t.now FROM {NOW} \
                 ON CONFLICT (use_case) DO UPDATE SET drain_rate = excluded.drain_rate, drain_rate_at = excluded.drain_rate_at"
            ),
            // Pending jobs of use case $2 set to expire whose deadline passed ($1 now), earliest
            // first, at most $3: expired (run in the lease transaction, before the pick).
            expire: format!(
                "WITH late AS ( \
                     SELECT e.id FROM {jobs} e, {NOW} \
                     WHERE e.use_case = $2 AND e.queue IN (1, 2) AND e.expire_at_deadline AND e.deadline_at < t.now \
                     ORDER BY e.deadline_at LIMIT $3 FOR UPDATE OF e SKIP LOCKED) \
                 UPDATE {jobs} j SET status = 'expired', finished_at = t.now, updated_at = t.now, \
                     last_error = 'expired: it would have started after its deadline', {cleared} \
                 FROM late, {NOW} WHERE j.id = late.id"
            ),
            // Before each pick (in the lease transaction, under the use case's pick lock), jobs
            // take their tenants' next turns (`jobs_core::fair`), per tenant in deadline order:
            // - scheduled → ready: pending jobs of use case $2 whose run_at has come, oldest
            //   first, at most $3;
            // - re-based: ready jobs whose tag fell below the clock, at most $3 (a tag read
            //   before a long caller's transaction committed, a job back from a release, a reap
            //   or a failure without backoff, a retry while its tenant was paused, a job from
            //   before migration 9): their tenant's next turns, not turns it did not use in time.
            //   Rate-limited tenants' jobs are left as they are (their tokens pace them).
            promote: format!(
                "WITH clock AS MATERIALIZED (SELECT coalesce((SELECT fc.vtime FROM {clock} fc WHERE fc.use_case = $2), 0) AS v), \
                 sched AS ( \
                     SELECT s.id, s.tenant_id, s.fair_step, s.deadline_at, s.priority FROM {jobs} s, {NOW} \
                     WHERE s.use_case = $2 AND s.queue = 1 AND NOT s.held AND s.run_at <= t.now \
                     ORDER BY s.run_at LIMIT $3 FOR UPDATE OF s SKIP LOCKED), \
                 stale AS ( \
                     SELECT s.id, s.tenant_id, s.fair_step, s.deadline_at, s.priority FROM {jobs} s \
                     WHERE s.use_case = $2 AND s.queue = 2 AND NOT s.held AND NOT s.limited \
                     AND s.fair_tag < (SELECT v FROM clock) AND s.fair_step > 0 \
                     ORDER BY s.fair_tag LIMIT $3 FOR UPDATE OF s SKIP LOCKED), \
                 due AS MATERIALIZED ( \
                     SELECT s.id, s.tenant_id, s.fair_step, row_number() OVER (PARTITION BY s.tenant_id \
                         ORDER BY s.deadline_at, s.priority DESC, s.id) AS turn \
                     FROM (SELECT * FROM sched UNION SELECT * FROM stale) s), \
                 bases AS MATERIALIZED ( \
                     SELECT d.tenant_id, {base} AS base FROM (SELECT DISTINCT tenant_id FROM due) d) \
                 UPDATE {jobs} j SET ready = true, \
                     fair_tag = CASE WHEN due.fair_step > 0 THEN b.base + due.turn * due.fair_step ELSE 0 END \
                 FROM due JOIN bases b ON b.tenant_id = due.tenant_id WHERE j.id = due.id",
                base = fair_base("d.tenant_id", "$2"),
            ),
            get: format!("SELECT {cols} FROM {jobs} j WHERE j.id = $1"),
            cancel: format!(
                "UPDATE {jobs} j SET \
                     status = CASE WHEN j.status IN ('pending', 'dispatched') THEN 'cancelled' ELSE j.status END, \
                     cancel_requested = j.cancel_requested OR j.status = 'running', \
                     lease_token = CASE WHEN j.status IN ('pending', 'dispatched') THEN NULL ELSE j.lease_token END, \
                     lease_expires_at = CASE WHEN j.status IN ('pending', 'dispatched') THEN NULL ELSE j.lease_expires_at END, \
                     finished_at = CASE WHEN j.status IN ('pending', 'dispatched') THEN t.now ELSE j.finished_at END, \
                     updated_at = CASE WHEN j.finished_at IS NULL THEN t.now ELSE j.updated_at END \
                 FROM {NOW} WHERE j.id = $2 RETURNING {cols}"
            ),
            // $3: the quota (NULL = none), counted in this statement: with a quota the caller
            // holds the tenant's quota lock, taken in an earlier statement of the transaction.
            retry: format!(
                "UPDATE {jobs} j SET status = 'pending', ready = false, attempts = 0, run_at = t.now, \
                     deadline_at = t.now + {tol}, {cleared}, cancel_requested = false, finished_at = NULL, \
                     updated_at = t.now, limited = EXISTS (SELECT 1 FROM {rate_limits} l \
                         WHERE l.use_case = j.use_case AND l.tenant_id IN (j.tenant_id, '')) \
                 FROM {NOW} WHERE j.id = $2 AND j.status IN ('dead', 'cancelled', 'expired') \
                     AND ($3::bigint IS NULL OR (SELECT count(*) FROM (SELECT 1 FROM {jobs} q \
                         WHERE q.tenant_id = j.tenant_id AND q.use_case = j.use_case \
                         AND q.finished_at IS NULL LIMIT $3) c) < $3) \
                 RETURNING {cols}",
                tol = us!("j.delay_tolerance_us"),
            ),
            status_of: format!("SELECT status, tenant_id, use_case FROM {jobs} WHERE id = $1"),
            status_for_update: format!("SELECT status FROM {jobs} WHERE id = $1 FOR UPDATE"),
            claim: fenced(
                "dispatched",
                &format!(
                    "{CLAIM_OR_EXPIRE}, lease_expires_at = CASE WHEN {LATE} THEN NULL ELSE t.now + {lease} END, {EARLIER_LOOK}",
                    lease = us!("$4::bigint")
                ),
                "",
            ),
            claim_many: fenced_many(
                "dispatched",
                &format!(
                    "{CLAIM_OR_EXPIRE}, lease_expires_at = CASE WHEN {LATE} THEN NULL ELSE t.now + {lease} END, {EARLIER_LOOK}",
                    lease = us!("$4::bigint")
                ),
                &cols,
            ),
            // Only the ids: the worker needs no more than which completions were written.
            complete_many: fenced_many(
                "running",
                &format!("status = 'succeeded', {cleared}, finished_at = t.now"),
                "j.id",
            ),
            heartbeat: fenced(
                "running",
                &format!("lease_expires_at = t.now + {}, {EARLIER_LOOK}", us!("$4::bigint")),
                "",
            ),
            complete: fenced("running", &format!("status = 'succeeded', {cleared}, finished_at = t.now"), ""),
            // $4: error text; $5: retry delay in µs or NULL for dead.
            fail: fenced(
                "running",
                &format!(
                    "last_error = $4::text, {cleared}, \
                     status = CASE WHEN j.cancel_requested THEN 'cancelled' \
                                   WHEN $5::bigint IS NOT NULL THEN 'pending' ELSE 'dead' END, \
                     run_at = CASE WHEN NOT j.cancel_requested AND $5::bigint IS NOT NULL \
                                   THEN t.now + {delay} ELSE j.run_at END, \
                     deadline_at = CASE WHEN NOT j.cancel_requested AND $5::bigint IS NOT NULL \
                                   THEN t.now + {delay} + {tol} ELSE j.deadline_at END, \
                     ready = j.cancel_requested OR $5::bigint IS NULL, \
                     finished_at = CASE WHEN j.cancel_requested OR $5::bigint IS NULL THEN t.now ELSE j.finished_at END",
                    delay = us!("$5::bigint"),
                    tol = us!("j.delay_tolerance_us"),
                ),
                "",
            ),
            finish_cancelled: fenced(
                "running",
                &format!("status = 'cancelled', {cleared}, finished_at = t.now"),
                " AND j.cancel_requested",
            ),
            release: fenced(
                "running",
                &format!(
                    "{cleared}, \
                     status = CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'pending' END, ready = j.cancel_requested, \
                     attempts = CASE WHEN j.cancel_requested THEN j.attempts ELSE greatest(j.attempts - 1, 0) END, \
                     run_at = CASE WHEN j.cancel_requested THEN j.run_at ELSE least(j.run_at, t.now) END, \
                     finished_at = CASE WHEN j.cancel_requested THEN t.now ELSE j.finished_at END"
                ),
                "",
            ),
            reap_dispatched: format!(
                "{due}, \
                 doomed AS ( \
                     SELECT d.id FROM {jobs} d, {NOW} \
                     WHERE d.id = ANY (ARRAY(SELECT id FROM due)) AND d.status = 'dispatched' AND d.lease_expires_at <= t.now \
                     FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE {jobs} j SET status = 'pending', ready = false, {cleared}, updated_at = t.now \
                 FROM doomed, {NOW} WHERE j.id = doomed.id RETURNING j.status",
                due = reap_due(&jobs, "d.status = 'dispatched' AND d.lease_expires_at <= coalesce($1::timestamptz, now())"),
            ),
            // In-flight jobs the reaper looked at before their lease ended (a running job that
            // outlived its first look or renewed its lease, a dispatched job not claimed by then):
            // the reaper's next look is the lease's end.
            reap_later: format!(
                "{due}, \
                 live AS ( \
                     SELECT d.id FROM {jobs} d, {NOW} \
                     WHERE d.id = ANY (ARRAY(SELECT id FROM due)) AND d.queue = 3 AND d.lease_expires_at > t.now \
                     AND d.reap_at < d.lease_expires_at \
                     FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE {jobs} j SET reap_at = j.lease_expires_at FROM live WHERE j.id = live.id",
                due = reap_due(&jobs, "d.lease_expires_at > coalesce($1::timestamptz, now())"),
            ),
            // The reaper's dispatched → pending, early and fenced per entry by the token.
            return_dispatched: format!(
                "UPDATE {jobs} j SET status = 'pending', ready = false, {cleared}, updated_at = t.now \
                 FROM {NOW}, unnest($2::uuid[], $3::uuid[]) AS k(id, token) \
                 WHERE j.id = k.id AND j.status = 'dispatched' AND j.lease_token = k.token"
            ),
            reap_running: format!(
                "{due}, \
                 doomed AS ( \
                     SELECT d.id FROM {jobs} d, {NOW} \
                     WHERE d.id = ANY (ARRAY(SELECT id FROM due)) AND d.status = 'running' AND d.lease_expires_at <= t.now \
                     FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE {jobs} j SET {cleared}, updated_at = t.now, \
                     ready = j.cancel_requested OR j.attempts >= j.max_attempts, \
                     last_error = 'lease expired: the worker stopped heartbeating', \
                     status = CASE WHEN j.cancel_requested THEN 'cancelled' \
                                   WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'pending' END, \
                     run_at = CASE WHEN NOT j.cancel_requested AND j.attempts < j.max_attempts \
                                   THEN t.now ELSE j.run_at END, \
                     deadline_at = CASE WHEN NOT j.cancel_requested AND j.attempts < j.max_attempts \
                                   THEN t.now + {tol} ELSE j.deadline_at END, \
                     finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts \
                                   THEN t.now ELSE j.finished_at END \
                 FROM doomed, {NOW} WHERE j.id = doomed.id RETURNING j.status",
                tol = us!("j.delay_tolerance_us"),
                due = reap_due(&jobs, "d.status = 'running' AND d.lease_expires_at <= coalesce($1::timestamptz, now())"),
            ),
            counts: format!("SELECT use_case, status, count(*) AS n FROM {jobs} GROUP BY use_case, status ORDER BY 1, 2"),
            // One tenant's counts: a walk of jobs_tenant_list_idx over its rows.
            tenant_counts: format!(
                "SELECT use_case, status, count(*) AS n FROM {jobs} WHERE tenant_id = $1 \
                 GROUP BY use_case, status ORDER BY 1, 2"
            ),
            activity: activity_sql(&jobs),
            backlog_by_use_case: backlog(&jobs, &pauses, false),
            backlog_by_tenant: backlog(&jobs, &pauses, true),
            // Pauses: '' is the whole use case. Pausing a paused scope keeps its first
            // paused_at: the conflict arm rewrites the row as it is (it sees and locks the
            // latest committed version, so a concurrent first pause is returned too).
            pause: format!(
                "INSERT INTO {pauses} AS z (use_case, tenant_id, paused_at) \
                 SELECT $2, $3, t.now FROM {NOW} \
                 ON CONFLICT (use_case, tenant_id) DO UPDATE SET paused_at = z.paused_at \
                 RETURNING z.paused_at"
            ),
            // A tenant's pause marks its unfinished jobs held (out of the pick's index); run in
            // the pause's transaction, under the use case's pick lock.
            hold: format!(
                "UPDATE {jobs} SET held = true WHERE use_case = $1 AND tenant_id = $2 \
                 AND finished_at IS NULL AND NOT held"
            ),
            resume: format!("DELETE FROM {pauses} WHERE use_case = $1 AND tenant_id = $2"),
            // A resumed tenant's ready jobs take turns from the clock on, in deadline order (a
            // pause banks no turns); its scheduled ones are tagged when promoted.
            unhold: format!(
                "WITH h AS MATERIALIZED ( \
                     SELECT q.id, q.fair_step > 0 AND q.queue = 2 AS tagged, q.status = 'pending' AS waiting, \
                         q.fair_step, row_number() OVER (PARTITION BY q.fair_step > 0 AND q.queue = 2 \
                             ORDER BY q.deadline_at, q.priority DESC, q.id) AS turn \
                     FROM {jobs} q WHERE q.use_case = $1 AND q.tenant_id = $2 AND q.held), \
                 c AS (SELECT coalesce((SELECT fc.vtime FROM {clock} fc WHERE fc.use_case = $1), 0) AS base) \
                 UPDATE {jobs} j SET held = false, \
                     fair_tag = CASE WHEN h.tagged THEN c.base + h.turn * h.fair_step WHEN h.waiting THEN 0 ELSE j.fair_tag END \
                 FROM h, c WHERE j.id = h.id AND j.held"
            ),
            pauses: format!(
                "SELECT use_case, tenant_id, paused_at FROM {pauses} \
                 ORDER BY use_case COLLATE \"C\", tenant_id COLLATE \"C\""
            ),
            prune: format!(
                "WITH doomed AS ( \
                     SELECT d.id FROM {jobs} d, {NOW} \
                     WHERE d.finished_at < t.now - {age} AND d.status IN ('succeeded', 'dead', 'cancelled', 'expired') \
                     ORDER BY d.finished_at LIMIT $3 FOR UPDATE OF d SKIP LOCKED) \
                 DELETE FROM {jobs} j USING doomed WHERE j.id = doomed.id",
                age = us!("$2::bigint"),
            ),
            schema,
        }
    }

    /// The list query of `shape`. Parameters, in this order, only for what is present: tenant,
    /// use case, status, kind, created_after, created_before, after-id; then the rows to fetch
    /// (page size + 1); then, unless the shape is plain, the scan window (`i64::MAX` for none)
    /// and, with a budget, the byte budget.
    ///
    /// Plain (no window, no budget) it is one flat `SELECT … WHERE <filters> ORDER BY id DESC
    /// LIMIT n` (no `$n IS NULL OR …`, which defeats indexes under generic plans). Otherwise:
    ///
    /// - **Scan window.** The innermost query walks the candidates' ids, `WHERE tenant_id = $t AND
    ///   id < $after ORDER BY id DESC LIMIT $window` (the tenant's index `jobs_tenant_list_idx`,
    ///   index-only when there is no other filter, or the primary key backwards without a
    ///   tenant), and only marks which pass the other filters (`hit`) and their position (`rn`).
    ///   The rows kept, the hits and the window's last row (`rn = $window`: the store turns it
    ///   into `next` when the window ends before the page fills), are joined back to the table by
    ///   primary key for their columns. The executor pulls rows lazily, so a page that fills
    ///   early reads no further, and a sparse filter reads at most `$window` candidates. The
    ///   window's `LIMIT` is a scalar subquery on purpose: the planner cannot see its value, so
    ///   it plans the walk as an ordered index scan that can stop early. With a plain `$window`
    ///   it may pick a bitmap scan plus sort when it expects the tenant to hold fewer rows than
    ///   the window (seen at 1,000,000 rows for a 1,000-job tenant); a bitmap scan reads every
    ///   row of the tenant before the `LIMIT` applies, so a wrong row estimate (a tenant that
    ///   grew since `ANALYZE`, or one outside its most-common-values list) would turn it into
    ///   the unbounded scan the window is there to prevent.
    /// - **Byte budget.** A running `sum(octet_length(payload::text))` over the hits says whether
    ///   each still fits; a payload that does not is not sent (`NULL`). `octet_length(payload::
    ///   text)` is the length of the JSON text the API will send (PostgreSQL prints a space after
    ///   each `:` and `,`, so a little above the compact JSON); `pg_column_size(payload)` would
    ///   not need to read the payload but counts its stored, compressed form, which for a
    ///   compressible payload is many times smaller than its text and would let a page go far
    ///   over its budget. The store fetches such a statement through a portal, a few rows at a
    ///   time, and stops at the first job that does not fit, so payloads past the cut are not
    ///   even read.
    pub(crate) fn list(&self, shape: ListShape) -> String {
        const CONDITIONS: [&str; 7] = [
            "j.tenant_id = $",
            "j.use_case = $",
            "j.status = $",
            "j.kind = $",
            "j.created_at >= $",
            "j.created_at < $",
            "j.id < $",
        ];
        // Conditions the candidate walk applies itself: the tenant (its index) and the cursor.
        const WALK: [bool; 7] = [true, false, false, false, false, false, true];
        let plain = !shape.bounded && !shape.budget;
        let mut walk = Vec::new();
        let mut others = Vec::new();
        let mut n = 0;
        for (i, (cond, on)) in CONDITIONS.iter().zip(shape.present).enumerate() {
            if on {
                n += 1;
                let clause = format!("{cond}{n}");
                if WALK[i] || plain {
                    walk.push(clause);
                } else {
                    others.push(clause);
                }
            }
        }
        let fetch = n + 1;
        let window = n + 2;
        let budget = n + 3;
        let where_ = if walk.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", walk.join(" AND "))
        };
        let columns: Vec<&str> = JOB_COLUMNS
            .iter()
            .copied()
            .filter(|c| shape.payload || *c != "payload")
            .collect();
        let cols = |alias: &str| {
            columns
                .iter()
                .map(|c| format!("{alias}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let jobs = format!("{}.jobs", self.schema);
        if plain {
            return format!(
                "SELECT {} FROM {jobs} j{where_} ORDER BY j.id DESC LIMIT ${fetch}",
                cols("j"),
            );
        }
        let hit = if others.is_empty() {
            "true".to_owned()
        } else {
            others.join(" AND ")
        };
        const WINDOW: &str =
            "(ORDER BY m.id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)";
        let walked = format!(
            "SELECT w.id, w.hit, row_number() OVER (ORDER BY w.id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rn \
             FROM (SELECT j.id, {hit} AS hit FROM {jobs} j{where_} ORDER BY j.id DESC LIMIT (SELECT ${window}::bigint)) w"
        );
        let (sums, fits) = if shape.budget {
            (
                format!(
                    ", count(*) FILTER (WHERE m.hit) OVER {WINDOW} AS hit_no, \
                     sum(CASE WHEN m.hit THEN octet_length(j.payload::text) ELSE 0 END) OVER {WINDOW} AS bytes_through"
                ),
                format!("(b.hit_no = 1 OR b.bytes_through <= ${budget}::bigint)"),
            )
        } else {
            (String::new(), "true".to_owned())
        };
        let outer: Vec<String> = columns
            .iter()
            .map(|c| {
                if *c == "payload" && shape.budget {
                    format!("CASE WHEN {fits} THEN b.payload END AS payload")
                } else {
                    format!("b.{c}")
                }
            })
            .collect();
        let bytes = if shape.budget {
            "b.bytes_through"
        } else {
            "NULL::bigint"
        };
        format!(
            "SELECT {outer}, b.hit, b.rn, {fits} AS fits, {bytes} AS bytes_through FROM ( \
                 SELECT {cols}, m.hit, m.rn{sums} \
                 FROM ({walked}) m JOIN {jobs} j ON j.id = m.id \
                 WHERE m.hit OR m.rn = ${window}::bigint) b \
             ORDER BY b.id DESC LIMIT ${fetch}",
            outer = outer.join(", "),
            cols = cols("j"),
        )
    }
}

/// What a list statement reads and how it bounds itself (see [`Sql::list`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListShape {
    /// Filters present: tenant, use case, status, kind, created_after, created_before, after-id.
    pub present: [bool; 7],
    /// Read the payload column.
    pub payload: bool,
    /// Cut the page at a payload byte budget (only with `payload`).
    pub budget: bool,
    /// Examine at most a window of candidates.
    pub bounded: bool,
}

/// The list statement of `shape` in `schema`, for the `explain` example.
#[doc(hidden)]
pub fn list_statement(schema: SchemaName, shape: ListShape) -> String {
    Sql::new(schema).list(shape)
}

/// The store's hot statements, for the `explain` example (which prints their plans at scale).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct HotStatements {
    /// `lease_due`: $1 now, $2 use case, $3 limit, $4 cap, $5 lease µs.
    pub lease_due: String,
    /// What the lease's transaction sets before its statements (`SET LOCAL …`; see
    /// `LEASE_BEGIN` in store.rs), for plans that match production's.
    pub lease_settings: &'static str,
    /// Promotion of scheduled jobs whose run_at has come (before each pick): $1 now, $2 use
    /// case, $3 limit.
    pub promote: String,
    /// Expiry of pending jobs set to expire whose deadline passed (before each pick): $1 now, $2
    /// use case, $3 limit.
    pub expire: String,
    /// Dispatched-lease reaping: $1 now, $2 limit.
    pub reap_dispatched: String,
    /// Running-lease reaping: $1 now, $2 limit.
    pub reap_running: String,
    /// Single enqueue with the quota count (see the insert's parameters in `enqueue.rs`).
    pub insert_one: String,
    /// Idempotency look-up: $1 tenant, $2 key.
    pub by_key: String,
    /// Listing by tenant as the API asks (no payloads, scan window): $1 tenant, $2 after id, $3
    /// limit + 1, $4 scan window.
    pub list_by_tenant: String,
    /// Claim: $1 now, $2 id, $3 token, $4 lease µs.
    pub claim: String,
    /// Prune: $1 now, $2 age µs, $3 limit.
    pub prune: String,
    /// A pending job's queue position (the predicted start): $1 now, $2 id, $3 bound.
    pub queue_position: String,
}

/// The lease transaction's settings, after its BEGIN (see `LEASE_BEGIN` in store.rs).
pub(crate) const LEASE_SETTINGS: &str = lease_settings!();

/// The hot statements of `schema`.
#[doc(hidden)]
pub fn hot_statements(schema: SchemaName) -> HotStatements {
    let sql = Sql::new(schema);
    HotStatements {
        list_by_tenant: sql.list(ListShape {
            present: [true, false, false, false, false, false, true],
            payload: false,
            budget: false,
            bounded: true,
        }),
        lease_due: sql.lease_due,
        lease_settings: LEASE_SETTINGS,
        promote: sql.promote,
        expire: sql.expire,
        reap_dispatched: sql.reap_dispatched,
        reap_running: sql.reap_running,
        insert_one: sql.insert_one,
        by_key: sql.by_key,
        claim: sql.claim,
        prune: sql.prune,
        queue_position: sql.queue_position,
    }
}
