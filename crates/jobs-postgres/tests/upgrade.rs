//! Schema upgrades on populated databases, and the due-only pick that migration 3 brought.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{admin_client, database_url, fresh_schema};
use jobs_core::{
    ApiStore, Clock, DispatchStore, JobStatus, LeaseStore, LeaseToken, MaintenanceStore,
    ManualClock, PickRequest,
};
use jobs_postgres::migrate::migrate_to;
use jobs_postgres::PgStore;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(300);

/// An admin connection, a fresh schema migrated to the latest version, and its store reading a
/// manual clock set to the database's time.
async fn migrated_at_db_now() -> (tokio_postgres::Client, String, PgStore, Arc<ManualClock>) {
    let admin = admin_client().await;
    let schema = fresh_schema();
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    store.migrate().await.unwrap();
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let clock = Arc::new(ManualClock::at(now));
    let store = store.with_clock(clock.clone());
    (admin, schema, store, clock)
}

/// Enqueues `jobs` in batches of 1,000.
async fn enqueue_in_batches(store: &PgStore, jobs: impl IntoIterator<Item = jobs_core::NewJob>) {
    let jobs: Vec<_> = jobs.into_iter().collect();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk.to_vec()).await.unwrap();
    }
}

/// The versions a migration from `first - 1` applies: `first` through the latest.
fn applied_from(first: i32) -> Vec<i32> {
    jobs_postgres::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| *v >= first)
        .collect()
}

/// Inserts a job row as a version-2 schema holds it.
#[allow(clippy::too_many_arguments)]
async fn insert_v2(
    client: &tokio_postgres::Client,
    schema: &str,
    id: Uuid,
    status: &str,
    run_at: DateTime<Utc>,
    token: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    attempts: i64,
) {
    let sql = format!(
        "INSERT INTO {schema}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, \
             max_attempts, backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, \
             delay_tolerance_us, deadline_at, timeout_us, lease_token, lease_expires_at, created_at, \
             updated_at, dispatched_at, started_at, finished_at) \
         VALUES ($1::uuid, 'acme', 'alpha', 'k', '{{\"n\": 1}}', $2, 0, $3, 3, 'exponential', 1000000, \
             60000000, 'none', $4::timestamptz, 60000000, $4::timestamptz + interval '60 seconds', 30000000, $5, $6, $4, $4, \
             CASE WHEN $5::uuid IS NULL THEN NULL ELSE $4 END, $7, \
             CASE WHEN $2 IN ('succeeded', 'dead', 'cancelled') THEN $4 END)"
    );
    client
        .execute(
            &sql,
            &[
                &id,
                &status,
                &attempts,
                &run_at,
                &token,
                &lease_expires_at,
                &started_at,
            ],
        )
        .await
        .unwrap();
}

/// A database populated at version 2 with jobs in every state upgrades in place: every job keeps
/// its state and token, due pending jobs are ready, future ones wait for promotion, started
/// jobs keep their first start, and the store then works on all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v2_with_jobs_in_every_state() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    let report = migrate_to(&admin, &schema, 2).await.unwrap();
    assert_eq!(report.applied, vec![1, 2]);

    // The database's clock: the migration compares run_at with now().
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let ago = |s: i64| now - TimeDelta::seconds(s);
    let ahead = |s: i64| now + TimeDelta::seconds(s);
    let ids: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let (dispatch_token, run_token) = (Uuid::new_v4(), Uuid::new_v4());
    let rows = [
        (ids[0], "pending", ago(30), None, None, None, 0),
        (ids[1], "pending", ahead(600), None, None, None, 0),
        (
            ids[2],
            "dispatched",
            ago(20),
            Some(dispatch_token),
            Some(ahead(300)),
            None,
            0,
        ),
        (
            ids[3],
            "running",
            ago(20),
            Some(run_token),
            Some(ahead(300)),
            Some(ago(5)),
            1,
        ),
        (ids[4], "succeeded", ago(100), None, None, Some(ago(90)), 1),
        (ids[5], "dead", ago(100), None, None, Some(ago(90)), 3),
        (ids[6], "cancelled", ago(100), None, None, None, 0),
        // A retry waiting out its backoff (pending, started before, run_at ahead).
        (ids[7], "pending", ahead(120), None, None, Some(ago(10)), 1),
    ];
    for (id, status, run_at, token, expires, started, attempts) in rows {
        insert_v2(
            &admin, &schema, id, status, run_at, token, expires, started, attempts,
        )
        .await;
    }

    let store = PgStore::connect(&database_url(), &schema).unwrap();
    let report = store.migrate().await.unwrap();
    assert_eq!(report.applied, applied_from(3));
    assert!(
        store.migrate().await.unwrap().applied.is_empty(),
        "idempotent"
    );

    // Jobs from before migration 4 have no trace context.
    for id in &ids {
        assert_eq!(store.get(*id).await.unwrap().unwrap().trace_context, None);
    }

    // Every job kept its state; the new columns say what they should.
    let flags = admin
        .query(
            &format!("SELECT id, status, ready, first_started_at, started_at FROM {schema}.jobs"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(flags.len(), 8);
    for r in &flags {
        let id: Uuid = r.get(0);
        let status: String = r.get(1);
        let ready: bool = r.get(2);
        let first: Option<DateTime<Utc>> = r.get(3);
        let started: Option<DateTime<Utc>> = r.get(4);
        let i = ids.iter().position(|x| *x == id).unwrap();
        assert_eq!(status, rows[i].1, "job {i} kept its status");
        assert_eq!(
            ready,
            !(i == 1 || i == 7),
            "job {i}: only future pending jobs wait"
        );
        assert_eq!(
            first, None,
            "job {i}: no backfill (the claim takes started_at)"
        );
        assert_eq!(started, rows[i].5, "job {i} kept its start");
    }

    // The store works on every one of them.
    let clock = Arc::new(ManualClock::at(now));
    let store = store.with_clock(clock.clone());
    let leased = store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 100,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![ids[0]],
        "only the due pending job"
    );
    let claimed = store
        .claim(ids[2], LeaseToken::from_uuid(dispatch_token), LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.status, JobStatus::Running);
    assert!(claimed.first_started_at.is_some());
    store
        .complete(ids[3], LeaseToken::from_uuid(run_token))
        .await
        .unwrap();
    assert_eq!(
        store.retry(ids[5], Some(10)).await.unwrap().status,
        JobStatus::Pending
    );
    assert_eq!(
        store.retry(ids[6], None).await.unwrap().status,
        JobStatus::Pending
    );
    // Future jobs are promoted when their run_at comes and leased with the rest.
    clock.advance(Duration::from_secs(601));
    let later = store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 100,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    let mut later_ids: Vec<Uuid> = later.iter().map(|d| d.job_id).collect();
    later_ids.sort();
    let mut expected = vec![ids[1], ids[5], ids[6], ids[7]];
    expected.sort();
    assert_eq!(later_ids, expected);
    // A job that started before the upgrade keeps that start as its first: its next claim is
    // not a first start.
    let retry_token = later
        .iter()
        .find(|d| d.job_id == ids[7])
        .unwrap()
        .lease_token;
    let reclaimed = store.claim(ids[7], retry_token, LEASE).await.unwrap();
    assert_eq!(reclaimed.first_started_at, rows[7].5);
    assert_ne!(reclaimed.started_at, reclaimed.first_started_at);
    // One that never started gets its first start at its claim.
    assert_eq!(claimed.first_started_at, claimed.started_at);

    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A database populated at version 3 gains the trace context columns (migration 4): its jobs read
/// back without one and keep working; new jobs, single, batch and transactional, store theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v3_adds_the_trace_context() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 3).await.unwrap().applied,
        vec![1, 2, 3]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let run_token = Uuid::new_v4();
    let (old_pending, old_running) = (Uuid::now_v7(), Uuid::now_v7());
    let ago = now - TimeDelta::seconds(10);
    insert_v2(
        &admin,
        &schema,
        old_pending,
        "pending",
        ago,
        None,
        None,
        None,
        0,
    )
    .await;
    insert_v2(
        &admin,
        &schema,
        old_running,
        "running",
        ago,
        Some(run_token),
        Some(now + TimeDelta::seconds(300)),
        Some(ago),
        1,
    )
    .await;

    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(4));
    let columns: Vec<(String, String)> = admin
        .query(
            "SELECT column_name::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'jobs' AND column_name IN ('traceparent', 'tracestate') \
             ORDER BY column_name",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("traceparent".to_owned(), "YES".to_owned()),
            ("tracestate".to_owned(), "YES".to_owned())
        ]
    );
    let clock = Arc::new(ManualClock::at(now));
    let store = store.with_clock(clock);
    for id in [old_pending, old_running] {
        assert_eq!(store.get(id).await.unwrap().unwrap().trace_context, None);
    }
    let done = store
        .complete(old_running, LeaseToken::from_uuid(run_token))
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.trace_context),
        (JobStatus::Succeeded, None)
    );
    let leased = store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);

    // New jobs keep theirs: single, batch, and inside the caller's transaction.
    let tc = jobs_core::testkit::store::trace_context(7);
    let mut one = common::new_job("acme", "beta");
    one.trace_context = Some(tc.clone());
    let one = store.enqueue(one).await.unwrap().job;
    assert_eq!(one.trace_context.as_ref(), Some(&tc));
    let mut batch = vec![
        common::new_job("acme", "beta"),
        common::new_job("acme", "beta"),
    ];
    batch[1].trace_context = Some(tc.clone());
    let stored = store.enqueue_many(batch).await.unwrap();
    assert_eq!(stored[0].job.trace_context, None);
    assert_eq!(stored[1].job.trace_context.as_ref(), Some(&tc));
    let mut client = common::connect(&tokio_postgres::Config::from_str(&database_url()).unwrap())
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let mut in_tx = common::new_job("acme", "beta");
    in_tx.trace_context = Some(tc.clone());
    let in_tx = store.enqueue_in(&tx, in_tx).await.unwrap().job;
    let mut many_in_tx = common::new_job("acme", "beta");
    many_in_tx.trace_context = Some(tc.clone());
    let many_in_tx = store
        .enqueue_many_in(&tx, vec![many_in_tx])
        .await
        .unwrap()
        .remove(0)
        .job;
    tx.commit().await.unwrap();
    for id in [one.id, in_tx.id, many_in_tx.id] {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().trace_context.as_ref(),
            Some(&tc),
            "job {id}"
        );
    }
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Sums a key over every node of an EXPLAIN (FORMAT JSON) plan.
fn sum_key(node: &serde_json::Value, key: &str) -> f64 {
    let own = node
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let children = node
        .get("Plans")
        .and_then(serde_json::Value::as_array)
        .map(|plans| plans.iter().map(|p| sum_key(p, key)).sum())
        .unwrap_or(0.0);
    own + children
}

/// VACUUM ANALYZE of `schema`'s jobs, then the pick explained (as [`explain_pick`]), until it
/// touches fewer than `max_hits` buffers or 30 s have passed. A rewrite of many rows (a pause, a
/// change of limits) leaves dead index entries that only a vacuum removes, and a vacuum cannot
/// remove them while a transaction of another test in this database is older than the rewrite;
/// the claims are about the pick once they are gone.
async fn vacuumed_pick(
    admin: &tokio_postgres::Client,
    schema: &str,
    now: DateTime<Utc>,
    max_hits: f64,
) -> (serde_json::Value, f64, f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        admin
            .batch_execute(&format!("VACUUM ANALYZE {schema}.jobs"))
            .await
            .unwrap();
        let (plan, removed, hits) = explain_pick(schema, now).await;
        if hits < max_hits || std::time::Instant::now() > deadline {
            return (plan, removed, hits);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pick of use case `alpha` at `now` in `schema`, explained and rolled back: the plan, the rows
/// its filters removed (summed over the plan's nodes) and the buffers it touched.
async fn explain_pick(schema: &str, now: DateTime<Utc>) -> (serde_json::Value, f64, f64) {
    let hot = jobs_postgres::sql::hot_statements(jobs_postgres::SchemaName::new(schema).unwrap());
    let client = common::connect(&tokio_postgres::Config::from_str(&database_url()).unwrap())
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let plan: serde_json::Value = client
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", hot.lease_due),
            &[&Some(now), &"alpha", &100_i64, &100_i64, &300_000_000_i64],
        )
        .await
        .unwrap()
        .get(0);
    client.batch_execute("ROLLBACK").await.unwrap();
    let root = &plan[0]["Plan"];
    let removed = sum_key(root, "Rows Removed by Filter");
    // A node's buffer counts include every node below it: the root's are the statement's.
    let hits: f64 = ["Shared Hit Blocks", "Shared Read Blocks"]
        .iter()
        .filter_map(|k| root[k].as_f64())
        .sum();
    (plan, removed, hits)
}

/// The pick reads only due jobs: 20,000 reminders scheduled ten minutes ahead with deadlines
/// before the due job's are not walked (before migration 3 the index scan filtered all 20,000
/// out on every tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pick_does_not_walk_jobs_scheduled_for_later() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let now = clock.now();
    let future = (0..20_000).map(|i| {
        let mut j = common::new_job("acme", "alpha");
        j.run_at = Some(now + TimeDelta::seconds(600));
        j.delay_tolerance = Duration::from_secs(1 + i % 50);
        j
    });
    enqueue_in_batches(&store, future).await;
    let mut due = common::new_job("acme", "alpha");
    due.delay_tolerance = Duration::from_secs(3600);
    let due = store.enqueue(due).await.unwrap().job;
    admin
        .batch_execute(&format!("ANALYZE {schema}.jobs"))
        .await
        .unwrap();

    let (plan, removed, hits) = explain_pick(&schema, clock.now()).await;
    assert!(
        removed < 100.0,
        "the pick filtered out {removed} rows: {plan:#}"
    );
    assert!(hits < 200.0, "the pick touched {hits} buffers: {plan:#}");

    let leased = store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 100,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![due.id]
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// The queue position behind a predicted start reads a bounded prefix of the pick index: a job
/// at the head of 20,000 due jobs or 51 jobs into them reads about as many index entries, and one
/// at the back of the queue stops at the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_position_reads_only_the_jobs_ahead_up_to_the_bound() {
    use jobs_core::ApiStore as _;
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let jobs = (0..20_301).map(|i| {
        let mut j = common::new_job(&format!("t{}", i % 50), "alpha");
        j.delay_tolerance = Duration::from_secs(if i < 300 { 60 } else { 3600 });
        j
    });
    enqueue_in_batches(&store, jobs).await;
    let mut mine = common::new_job("me", "alpha");
    mine.delay_tolerance = Duration::from_secs(120);
    mine.fair_weight = None;
    let mine = store.enqueue(mine).await.unwrap().job;
    // A tenant new to the use case: its first turn comes right after each tenant's first.
    let mut fresh = common::new_job("fresh", "alpha");
    fresh.delay_tolerance = Duration::from_secs(120);
    fresh.fair_weight = Some(1);
    let fresh = store.enqueue(fresh).await.unwrap().job;
    // Behind its tenant's 406 turns: behind more jobs than the bound.
    let mut last = common::new_job("t0", "alpha");
    last.delay_tolerance = Duration::from_secs(7200);
    last.fair_weight = Some(1);
    let last = store.enqueue(last).await.unwrap().job;
    admin
        .batch_execute(&format!("VACUUM ANALYZE {schema}.jobs"))
        .await
        .unwrap();
    let hot = jobs_postgres::sql::hot_statements(jobs_postgres::SchemaName::new(&schema).unwrap());
    let cases = [
        (&mine, 10_000_i64, 0_u64),
        (&fresh, 10_000, 51),
        (&last, 1_000, 1_000),
    ];
    for (job, bound, ahead) in cases {
        admin.batch_execute("BEGIN").await.unwrap();
        let plan: serde_json::Value = admin
            .query_one(
                &format!(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}",
                    hot.queue_position
                ),
                &[&Some(clock.now()), &job.id, &bound],
            )
            .await
            .unwrap()
            .get(0);
        admin.batch_execute("ROLLBACK").await.unwrap();
        let root = &plan[0]["Plan"];
        let removed = sum_key(root, "Rows Removed by Filter");
        let hits: f64 = ["Shared Hit Blocks", "Shared Read Blocks"]
            .iter()
            .filter_map(|k| root[k].as_f64())
            .sum();
        assert!(removed < 1_500.0, "filtered out {removed} rows: {plan:#}");
        assert!(hits < 400.0, "touched {hits} buffers: {plan:#}");
        let pos = store
            .queue_position(job.id, u32::try_from(bound).unwrap())
            .await
            .unwrap()
            .unwrap();
        // `me` is tagged 0 (no fair step): ahead of every tagged job. `fresh` comes after `me`
        // and the 50 tenants' first turns (tag 1, earlier deadlines).
        assert_eq!(pos.ahead, ahead, "{pos:?}");
        assert_eq!(pos.ahead_bounded, ahead == 1_000);
    }
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A database populated at version 4 gains the pauses table (migration 5): nothing is paused, so
/// its due jobs are picked as before; a pause then holds them and a resume lets them go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v4_adds_pauses_and_holds_nothing() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 4).await.unwrap().applied,
        vec![1, 2, 3, 4]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let ago = now - TimeDelta::seconds(10);
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [first, second] {
        insert_v2(&admin, &schema, id, "pending", ago, None, None, None, 0).await;
    }
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(5));
    let one = PickRequest {
        cap: 100,
        limit: 1,
        lease: LEASE,
    };
    assert_eq!(store.lease_due("alpha", one).await.unwrap().len(), 1);
    store
        .pause(&jobs_core::PauseScope::use_case("alpha"))
        .await
        .unwrap();
    assert!(store.lease_due("alpha", one).await.unwrap().is_empty());
    assert!(store
        .resume(&jobs_core::PauseScope::use_case("alpha"))
        .await
        .unwrap());
    assert_eq!(store.lease_due("alpha", one).await.unwrap().len(), 1);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A paused tenant's backlog costs the pick nothing: 20,000 due jobs of a paused tenant with the
/// earliest deadlines are held out of the pick's index, so leasing the other tenant's job reads a
/// handful of rows, not the backlog (a check on the pauses table alone would walk all 20,000 on
/// every tick, under the use case's pick lock). Jobs enqueued while the pause holds are held too;
/// a resume puts them all back in the pick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_backlog_is_not_walked_by_the_pick() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let flooder = jobs_core::PauseScope::tenant("alpha", "flooder");
    let mut batch = Vec::new();
    for i in 0..20_000 {
        let mut j = common::new_job("flooder", "alpha");
        j.delay_tolerance = Duration::from_secs(1 + i % 50);
        batch.push(j);
        if batch.len() == 1000 {
            store
                .enqueue_many(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
        if i == 9_999 {
            // Half before the pause (marked by it), half after (marked at enqueue).
            store.pause(&flooder).await.unwrap();
        }
    }
    let mut other = common::new_job("acme", "alpha");
    other.delay_tolerance = Duration::from_secs(3600);
    let other = store.enqueue(other).await.unwrap().job;
    // The pause rewrote 10,000 rows; their old pick-index entries go with the next vacuum (until
    // then each scan skips them once marked dead).
    let (plan, removed, hits) = vacuumed_pick(&admin, &schema, clock.now(), 200.0).await;
    assert!(
        removed < 100.0,
        "the pick filtered out {removed} rows: {plan:#}"
    );
    assert!(hits < 200.0, "the pick touched {hits} buffers: {plan:#}");

    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![other.id]
    );
    assert!(store.resume(&flooder).await.unwrap());
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(leased.len(), 99, "the cap of 100, one already in flight");
    assert!(leased.iter().all(|d| d.tenant_id == "flooder"));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A database populated at version 5 gains rate limits (migration 6): nothing is limited, so its
/// due jobs are picked as before; a limit set afterwards applies to the jobs already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v5_adds_rate_limits_and_limits_nothing() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 5).await.unwrap().applied,
        vec![1, 2, 3, 4, 5]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let ago = now - TimeDelta::seconds(10);
    for _ in 0..4 {
        insert_v2(
            &admin,
            &schema,
            Uuid::now_v7(),
            "pending",
            ago,
            None,
            None,
            None,
            0,
        )
        .await;
    }
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(6));
    let one = PickRequest {
        cap: 100,
        limit: 1,
        lease: LEASE,
    };
    assert_eq!(store.lease_due("alpha", one).await.unwrap().len(), 1);
    let tenant: String = admin
        .query_one(&format!("SELECT tenant_id FROM {schema}.jobs LIMIT 1"), &[])
        .await
        .unwrap()
        .get(0);
    store
        .set_rate_limits(&[jobs_core::RateLimit::new("alpha", Some(tenant), 0.001, 2).unwrap()])
        .await
        .unwrap();
    let all = PickRequest { limit: 100, ..one };
    assert_eq!(
        store.lease_due("alpha", all).await.unwrap().len(),
        2,
        "the burst"
    );
    assert!(store.lease_due("alpha", all).await.unwrap().is_empty());
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A rate-limited tenant's backlog costs the pick next to nothing: 20,000 due jobs of a limited
/// tenant with the earliest deadlines sit in an index of their own, so a pick that leases its one
/// token's worth and the other tenant's job reads a handful of rows, not the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_backlog_is_not_walked_by_the_pick() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let limits = [jobs_core::RateLimit::new("alpha", Some("flooder".into()), 1.0, 1).unwrap()];
    let mut batch = Vec::new();
    for i in 0..20_000 {
        let mut j = common::new_job("flooder", "alpha");
        j.delay_tolerance = Duration::from_secs(1 + i % 50);
        batch.push(j);
        if batch.len() == 1000 {
            store
                .enqueue_many(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
        if i == 9_999 {
            // Half before the limit (marked when it is set), half after (marked at enqueue).
            store.set_rate_limits(&limits).await.unwrap();
        }
    }
    let mut other = common::new_job("acme", "alpha");
    other.delay_tolerance = Duration::from_secs(3600);
    let other = store.enqueue(other).await.unwrap().job;
    // Setting the limit rewrote 10,000 rows (as the pause above).
    let (plan, removed, hits) = vacuumed_pick(&admin, &schema, clock.now(), 200.0).await;
    assert!(
        removed < 100.0,
        "the pick filtered out {removed} rows: {plan:#}"
    );
    assert!(hits < 200.0, "the pick touched {hits} buffers: {plan:#}");

    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    let leased = store.lease_due("alpha", pick).await.unwrap();
    let mut tenants: Vec<&str> = leased.iter().map(|d| d.tenant_id.as_str()).collect();
    tenants.sort_unstable();
    assert_eq!(
        tenants,
        ["acme", "flooder"],
        "one token, and the other tenant's job"
    );
    assert!(leased.iter().any(|d| d.job_id == other.id));
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        store.lease_due("alpha", pick).await.unwrap().len(),
        1,
        "burst 1"
    );
    store.set_rate_limits(&[]).await.unwrap();
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(
        leased.len(),
        97,
        "lifted: the cap of 100, three already in flight"
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// An every-tenant limit over many tenants: the pick reads each limited tenant's head, but locks
/// and writes only the rows it leases (the lane's candidates are read without locks), so a pick
/// of 100 over 1,000 tenants with bursts of 10 locks and updates 100 rows, not 10,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pick_over_many_limited_tenants_locks_only_what_it_leases() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    store
        .set_rate_limits(&[jobs_core::RateLimit::new("alpha", None, 10.0, 10).unwrap()])
        .await
        .unwrap();
    let jobs = (0..1_000).flat_map(|tenant| {
        (0..20).map(move |_| common::new_job(&format!("tenant-{tenant}"), "alpha"))
    });
    enqueue_in_batches(&store, jobs).await;
    admin
        .batch_execute(&format!("VACUUM ANALYZE {schema}.jobs"))
        .await
        .unwrap();
    let (plan, _, hits) = explain_pick(&schema, clock.now()).await;
    // Rows of a node kind (`LockRows`, or an UPDATE of the jobs table), over the whole plan.
    fn rows_of(node: &serde_json::Value, update: bool) -> f64 {
        let own = match (node["Node Type"].as_str(), node["Operation"].as_str()) {
            (Some("LockRows"), _) if !update => node["Actual Rows"].as_f64().unwrap_or(0.0),
            (Some("ModifyTable"), Some("Update")) if update => {
                node["Actual Rows"].as_f64().unwrap_or(0.0)
            }
            _ => 0.0,
        };
        own + node["Plans"]
            .as_array()
            .map(|p| p.iter().map(|n| rows_of(n, update)).sum())
            .unwrap_or(0.0)
    }
    assert_eq!(rows_of(&plan[0]["Plan"], false), 100.0, "locked: {plan:#}");
    assert_eq!(rows_of(&plan[0]["Plan"], true), 100.0, "updated: {plan:#}");
    eprintln!("pick over 1,000 limited tenants: {hits} buffers");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A database populated at version 6 gains expiry (migration 8): its jobs keep their status and
/// run late as before (none is set to expire); a job enqueued to expire afterwards expires at its
/// deadline, and the new status is accepted by the table's CHECK.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v6_adds_expiry_and_expires_nothing_old() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 6).await.unwrap().applied,
        vec![1, 2, 3, 4, 5, 6]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let long_ago = now - TimeDelta::seconds(3600);
    let old = Uuid::now_v7();
    insert_v2(
        &admin, &schema, old, "pending", long_ago, None, None, None, 0,
    )
    .await;
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(7));
    let clock = Arc::new(ManualClock::at(now));
    let store = store.with_clock(clock.clone());
    let mut expiring = common::new_job("acme", "alpha");
    expiring.expire_at_deadline = true;
    expiring.delay_tolerance = Duration::from_secs(1);
    let expiring = store.enqueue(expiring).await.unwrap().job;
    clock.advance(Duration::from_secs(5));
    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![old],
        "the old job runs late as before"
    );
    let expired = store.get(expiring.id).await.unwrap().unwrap();
    assert_eq!(expired.status, jobs_core::JobStatus::Expired);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// The expiry before each pick reads only jobs set to expire: 20,000 late jobs that may run late
/// are not walked (they are not in `jobs_expiry_idx`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_does_not_walk_late_jobs_that_run_late() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let late = (0..20_000).map(|_| {
        let mut j = common::new_job("acme", "alpha");
        j.delay_tolerance = Duration::from_secs(1);
        j
    });
    enqueue_in_batches(&store, late).await;
    let mut expiring = common::new_job("acme", "alpha");
    expiring.expire_at_deadline = true;
    expiring.delay_tolerance = Duration::from_secs(1);
    let expiring = store.enqueue(expiring).await.unwrap().job;
    clock.advance(Duration::from_secs(10));
    admin
        .batch_execute(&format!("VACUUM ANALYZE {schema}.jobs"))
        .await
        .unwrap();
    let hot = jobs_postgres::sql::hot_statements(jobs_postgres::SchemaName::new(&schema).unwrap());
    admin.batch_execute("BEGIN").await.unwrap();
    let plan: serde_json::Value = admin
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}", hot.expire),
            &[&Some(clock.now()), &"alpha", &5000_i64],
        )
        .await
        .unwrap()
        .get(0);
    admin.batch_execute("ROLLBACK").await.unwrap();
    let root = &plan[0]["Plan"];
    let removed = sum_key(root, "Rows Removed by Filter");
    let hits: f64 = ["Shared Hit Blocks", "Shared Read Blocks"]
        .iter()
        .filter_map(|k| root[k].as_f64())
        .sum();
    assert!(
        removed < 100.0,
        "expiry filtered out {removed} rows: {plan:#}"
    );
    assert!(hits < 100.0, "expiry touched {hits} buffers: {plan:#}");
    let pick = PickRequest {
        cap: 5,
        limit: 5,
        lease: LEASE,
    };
    assert_eq!(store.lease_due("alpha", pick).await.unwrap().len(), 5);
    let expired = store.get(expiring.id).await.unwrap().unwrap();
    assert_eq!(expired.status, jobs_core::JobStatus::Expired);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// A database populated at version 5 (jobs, a pause) gains the schedules table (migration 7, with 6 and 8):
/// the jobs and the pause are kept, and a schedule's slot then fires once into the same jobs
/// table, its idempotency key deduplicating against the jobs already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_from_v5_adds_schedules() {
    use jobs_core::schedule::{slot_job, JobTemplate, MissedPolicy, ScheduleDraft, ScheduleSource};
    use jobs_core::{PlatformConfig, ScheduleStore};

    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 5).await.unwrap().applied,
        vec![1, 2, 3, 4, 5]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let ago = now - TimeDelta::seconds(10);
    let old = Uuid::now_v7();
    insert_v2(&admin, &schema, old, "pending", ago, None, None, None, 0).await;
    admin
        .execute(
            &format!("INSERT INTO {schema}.pauses (use_case, tenant_id) VALUES ('beta', '')"),
            &[],
        )
        .await
        .unwrap();

    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(6));
    assert_eq!(
        store.get(old).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    assert_eq!(store.pauses().await.unwrap().len(), 1);
    assert!(store.schedules().await.unwrap().is_empty());

    let slot = DateTime::<Utc>::from_timestamp(now.timestamp(), 0).unwrap();
    let template = JobTemplate::new("acme", "notifications", "send_email", serde_json::json!({}));
    let draft = ScheduleDraft {
        name: "upgraded".into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        template: template.clone(),
        missed: MissedPolicy::Skip,
        source: ScheduleSource::Api,
        next_run_at: slot,
    };
    store.create_schedule(draft).await.unwrap().unwrap();
    let job = slot_job("upgraded", &template, slot, &PlatformConfig::default(), now).unwrap();
    let next = slot + TimeDelta::seconds(1);
    let fired = store
        .fire("upgraded", slot, vec![job.clone()], next)
        .await
        .unwrap();
    assert!(fired.advanced);
    assert_eq!(fired.created, 1);
    let again = store.fire("upgraded", slot, vec![job], next).await.unwrap();
    assert!(!again.advanced);
    assert_eq!(
        store
            .get_schedule("upgraded")
            .await
            .unwrap()
            .unwrap()
            .next_run_at,
        next
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// More overdue jobs set to expire than one pick expires: the rest are not leased late, they wait
/// for the next pick's expiry; jobs still in time are leased meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overdue_expiring_jobs_beyond_the_expiry_batch_are_not_leased() {
    let (admin, schema, store, clock) = migrated_at_db_now().await;
    let overdue = (0..5_010).map(|_| {
        let mut j = common::new_job("acme", "alpha");
        j.expire_at_deadline = true;
        j.delay_tolerance = Duration::from_secs(1);
        j
    });
    enqueue_in_batches(&store, overdue).await;
    let mut in_time = common::new_job("acme", "alpha");
    in_time.expire_at_deadline = true;
    in_time.delay_tolerance = Duration::from_secs(3600);
    let in_time = store.enqueue(in_time).await.unwrap().job;
    clock.advance(Duration::from_secs(10));
    let pick = PickRequest {
        cap: 100,
        limit: 100,
        lease: LEASE,
    };
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![in_time.id],
        "none of the overdue ones"
    );
    assert!(store.lease_due("alpha", pick).await.unwrap().is_empty());
    let pending: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {schema}.jobs WHERE status = 'pending'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "the second pick expired the rest");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Migration 9 (fair share) on a database with a pending backlog: the old jobs keep tag 0 (and
/// step 1) and drain first, in deadline order; jobs enqueued after it are tagged as turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_share_upgrade_keeps_the_backlog_first_and_tags_new_jobs() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 8).await.unwrap().applied,
        vec![1, 2, 3, 4, 5, 6, 7, 8]
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let old: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &old {
        insert_v2(
            &admin,
            &schema,
            *id,
            "pending",
            now - TimeDelta::seconds(10),
            None,
            None,
            None,
            0,
        )
        .await;
    }
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(9));
    let store = store.with_clock(Arc::new(ManualClock::at(now)));
    let tags = |ids: Vec<Uuid>| {
        let admin = &admin;
        let schema = &schema;
        async move {
            let rows = admin
                .query(
                    &format!(
                        "SELECT fair_tag, fair_step FROM {schema}.jobs WHERE id = ANY($1) ORDER BY fair_tag"
                    ),
                    &[&ids],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| (r.get::<_, f64>(0), r.get::<_, f64>(1)))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        tags(old.clone()).await,
        vec![(0.0, 1.0); 3],
        "old jobs: tag 0, weight 1"
    );
    // New jobs with earlier deadlines than the backlog's: tagged 1, 2, 3 (tenant `new`, weight 1).
    let mut new_ids = Vec::new();
    for _ in 0..3 {
        let mut job = common::new_job("new", "alpha");
        job.delay_tolerance = Duration::from_secs(1);
        new_ids.push(store.enqueue(job).await.unwrap().job.id);
    }
    assert_eq!(
        tags(new_ids.clone()).await,
        vec![(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)]
    );
    let pick = PickRequest {
        cap: 100,
        limit: 3,
        lease: LEASE,
    };
    let mut first: Vec<Uuid> = store
        .lease_due("alpha", pick)
        .await
        .unwrap()
        .iter()
        .map(|d| d.job_id)
        .collect();
    first.sort();
    let mut want = old.clone();
    want.sort();
    assert_eq!(
        first, want,
        "the backlog from before the upgrade drains first"
    );
    let next = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|d| new_ids.contains(&d.job_id)));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Migration 10 (the HOT claim) on a database populated at version 9 with jobs in every state:
/// each job's `queue` follows its state, in-flight jobs are looked at by the reaper when their
/// lease ends, a finished row written by hand without a finish time gets one (so the new check
/// holds), and the store then leases, claims and reaps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_claim_upgrade_keeps_every_state_and_the_reaper() {
    let admin = admin_client().await;
    let schema = fresh_schema();
    assert_eq!(
        migrate_to(&admin, &schema, 9).await.unwrap().applied,
        (1..=9).collect::<Vec<_>>()
    );
    let now: DateTime<Utc> = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let past = now - TimeDelta::seconds(10);
    let (ready, later, dispatched, running, done) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let (dispatch_token, run_token) = (Uuid::new_v4(), Uuid::new_v4());
    let (ready2, old_lease) = (Uuid::now_v7(), Uuid::now_v7());
    insert_v2(&admin, &schema, ready, "pending", past, None, None, None, 0).await;
    insert_v2(
        &admin, &schema, ready2, "pending", past, None, None, None, 0,
    )
    .await;
    insert_v2(
        &admin, &schema, old_lease, "pending", past, None, None, None, 0,
    )
    .await;
    insert_v2(
        &admin,
        &schema,
        later,
        "pending",
        now + TimeDelta::hours(1),
        None,
        None,
        None,
        0,
    )
    .await;
    insert_v2(
        &admin,
        &schema,
        dispatched,
        "dispatched",
        past,
        Some(dispatch_token),
        Some(now + TimeDelta::seconds(300)),
        None,
        0,
    )
    .await;
    insert_v2(
        &admin,
        &schema,
        running,
        "running",
        past,
        Some(run_token),
        Some(now + TimeDelta::seconds(5)),
        Some(past),
        1,
    )
    .await;
    insert_v2(
        &admin,
        &schema,
        done,
        "succeeded",
        past,
        None,
        None,
        None,
        1,
    )
    .await;
    admin
        .batch_execute(&format!(
            "UPDATE {schema}.jobs SET ready = (run_at <= now()) WHERE status = 'pending'; \
             UPDATE {schema}.jobs SET finished_at = NULL WHERE status = 'succeeded';"
        ))
        .await
        .unwrap();
    let store = PgStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(store.migrate().await.unwrap().applied, applied_from(10));
    let rows = admin
        .query(
            &format!(
                "SELECT id, queue, reap_at IS NOT DISTINCT FROM lease_expires_at, finished_at IS NOT NULL \
                 FROM {schema}.jobs"
            ),
            &[],
        )
        .await
        .unwrap();
    let of = |id: Uuid| {
        rows.iter()
            .find(|r| r.get::<_, Uuid>(0) == id)
            .map(|r| (r.get::<_, i16>(1), r.get::<_, bool>(2), r.get::<_, bool>(3)))
            .unwrap()
    };
    assert_eq!(of(ready), (2, false, false), "due pending: ready");
    assert_eq!(of(later).0, 1, "future pending: waits for promotion");
    assert_eq!(
        of(dispatched),
        (3, true, false),
        "in flight, looked at when its lease ends"
    );
    assert_eq!(of(running), (3, true, false));
    assert_eq!(
        of(done),
        (0, false, true),
        "a finished row without a finish time gets one"
    );
    // A scheduler from before the upgrade (a rolling deploy) leases a job its way: `reap_at`
    // keeps its default, due at once.
    admin
        .execute(
            &format!(
                "UPDATE {schema}.jobs SET status = 'dispatched', lease_token = gen_random_uuid(), \
                 lease_expires_at = $2, dispatched_at = $2 WHERE id = $1"
            ),
            &[&old_lease, &(now + TimeDelta::seconds(5))],
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::at(now));
    let store = store.with_clock(clock.clone());
    let pick = PickRequest {
        cap: 4,
        limit: 10,
        lease: LEASE,
    };
    let leased = store.lease_due("alpha", pick).await.unwrap();
    assert_eq!(
        leased.len(),
        1,
        "the cap of 4 counts the three in flight (one leased the old way): one of the two ready jobs"
    );
    store
        .claim(
            dispatched,
            LeaseToken::from_uuid(dispatch_token),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let report = store.reap_expired(10).await.unwrap();
    assert_eq!(
        (report.run_expired_retry, report.dispatch_expired),
        (1, 1),
        "the running job and the job leased the old way, whose leases ended, are reaped, nothing else"
    );
    assert_eq!(
        store.get(running).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
