//! Prints the plans of the store's hot queries at 1,000,000 jobs.
//!
//! ```text
//! cargo run -p jobs-postgres --release --example explain
//! ```
//!
//! Uses `ASYNC_JOBS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/async_jobs_test`;
//! TLS as `sslmode` in it and `ASYNC_JOBS_DB_CA_FILE` say),
//! creates the schema `explain_1m` (dropped first if it exists), fills it with generate_series,
//! analyzes it and runs `EXPLAIN (ANALYZE, BUFFERS)` of each statement inside a rolled-back
//! transaction. Set `EXPLAIN_ROWS` for another size and `EXPLAIN_KEEP=1` to keep the schema.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use tokio_postgres::types::ToSql;

const SCHEMA: &str = "explain_1m";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ASYNC_JOBS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/async_jobs_test".to_owned());
    let rows: i64 = std::env::var("EXPLAIN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (mut client, connection) = jobs_postgres::PgConnector::from_env_ca(&url)?
        .connect()
        .await?;
    tokio::spawn(connection);

    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await?;
    jobs_postgres::migrate(&client, SCHEMA).await?;
    let started = Instant::now();
    // 1M jobs: 1,000 tenants, 4 use cases; ~10% pending (run_at within ±1 h of now), 1% dispatched
    // and 1% running (a third of their leases expired), the rest finished over the last 30 days.
    client
        .batch_execute(&format!(
            "INSERT INTO {SCHEMA}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts,
                 backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us,
                 deadline_at, timeout_us, idempotency_key, lease_token, lease_expires_at, cancel_requested,
                 created_at, updated_at, finished_at, ready)
             SELECT md5(g::text)::uuid, 't_' || (g % 1000), 'uc_' || (g % 4), 'send_email', '{{\"n\": 1}}'::jsonb,
                 s.status, (g % 3)::smallint, 1, 5, 'exponential', 1000000, 3600000000, 'full',
                 s.run_at, 300000000, s.run_at + interval '5 minutes', 30000000,
                 CASE WHEN g % 10 = 0 THEN 'key-' || g END,
                 CASE WHEN s.status IN ('dispatched', 'running') THEN md5('t' || g)::uuid END,
                 CASE WHEN s.status IN ('dispatched', 'running')
                      THEN now() + ((g % 3) - 1) * interval '10 minutes' END,
                 false, s.run_at - interval '1 minute', s.run_at,
                 CASE WHEN s.status IN ('succeeded', 'dead', 'cancelled') THEN s.run_at + interval '1 minute' END,
                 s.status <> 'pending' OR s.run_at <= now()
             FROM generate_series(1, {rows}) g,
             LATERAL (SELECT CASE WHEN g % 100 < 10 THEN 'pending' WHEN g % 100 = 10 THEN 'dispatched'
                                  WHEN g % 100 = 11 THEN 'running' WHEN g % 100 < 14 THEN 'dead'
                                  WHEN g % 100 = 14 THEN 'cancelled' ELSE 'succeeded' END AS status,
                             CASE WHEN g % 100 < 10 THEN now() + ((g % 7200) - 3600) * interval '1 second'
                                  ELSE now() - (g % 2592000) * interval '1 second' END AS run_at) s;
             -- The shape that used to make the pick walk: use case uc_r holds {reminders} reminders
             -- 10-20 minutes ahead with 0-60 s of tolerance, whose deadlines sort before its
             -- 1,000 due jobs' (one hour of tolerance).
             INSERT INTO {SCHEMA}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts,
                 backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us,
                 deadline_at, timeout_us, cancel_requested, created_at, updated_at, ready)
             SELECT gen_random_uuid(), 't_' || (g % 1000), 'uc_r', 'remind', '{{}}'::jsonb, 'pending', 0, 0, 5,
                 'exponential', 1000000, 3600000000, 'full', r.run_at, r.tol_s::bigint * 1000000,
                 r.run_at + r.tol_s * interval '1 second', 30000000, false, now(), now(), r.run_at <= now()
             FROM generate_series(1, {reminders} + 1000) g,
             LATERAL (SELECT CASE WHEN g <= {reminders} THEN now() + interval '10 minutes' + (g % 600) * interval '1 second'
                                  ELSE now() - interval '1 minute' END AS run_at,
                             CASE WHEN g <= {reminders} THEN g % 61 ELSE 3600 END AS tol_s) r;
             ANALYZE {SCHEMA}.jobs;",
            reminders = rows / 5
        ))
        .await?;
    println!(
        "-- generated {rows} jobs in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    let counts = client
        .query(
            &format!("SELECT status, count(*) FROM {SCHEMA}.jobs GROUP BY 1 ORDER BY 1"),
            &[],
        )
        .await?;
    for r in counts {
        println!("--   {:<10} {}", r.get::<_, String>(0), r.get::<_, i64>(1));
    }
    println!();

    let sql = jobs_postgres::sql::hot_statements(jobs_postgres::SchemaName::new(SCHEMA)?);
    let none: Option<chrono::DateTime<chrono::Utc>> = None;
    let some_id: uuid::Uuid = client
        .query_one(&format!("SELECT id FROM {SCHEMA}.jobs WHERE tenant_id = 't_42' ORDER BY id DESC OFFSET 10 LIMIT 1"), &[])
        .await?
        .get(0);
    let claim_id: uuid::Uuid = client
        .query_one(
            &format!("SELECT id FROM {SCHEMA}.jobs WHERE status = 'dispatched' LIMIT 1"),
            &[],
        )
        .await?
        .get(0);
    let token = uuid::Uuid::new_v4();
    let new_id = uuid::Uuid::now_v7();
    let no_run_at: Option<chrono::DateTime<chrono::Utc>> = None;
    let no_key: Option<String> = None;
    let cases: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "lease_due (EDF pick under the cap, 50 of use case uc_1)",
            &sql.lease_due,
            vec![&none, &"uc_1", &50i64, &100_000i64, &300_000_000i64],
        ),
        (
            "promote (scheduled jobs of uc_r whose run_at has come, limit 5000; none yet)",
            &sql.promote,
            vec![&none, &"uc_r", &5000i64],
        ),
        (
            "lease_due with an earlier-deadline future backlog (50 of uc_r, behind 200,000 reminders)",
            &sql.lease_due,
            vec![&none, &"uc_r", &50i64, &100_000i64, &300_000_000i64],
        ),
        (
            "reap_expired: dispatched (limit 500)",
            &sql.reap_dispatched,
            vec![&none, &500i64],
        ),
        (
            "reap_expired: running (limit 500)",
            &sql.reap_running,
            vec![&none, &500i64],
        ),
        (
            "enqueue with quota (count of tenant t_42 in uc_2, quota 1000)",
            &sql.insert_one,
            vec![
                &none,
                &new_id,
                &"t_42",
                &"uc_2",
                &"send_email",
                &serde_json::Value::Null,
                &0i16,
                &5i64,
                &"exponential",
                &1_000_000i64,
                &3_600_000_000i64,
                &"full",
                &no_run_at,
                &300_000_000i64,
                &30_000_000i64,
                &no_key,
                &1000i64,
            ],
        ),
        (
            "idempotency look-up",
            &sql.by_key,
            vec![&"t_10", &"key-10010"],
        ),
        (
            "list by tenant, keyset page of 50 after a cursor (as the API asks: no payloads, window of 5,000)",
            &sql.list_by_tenant,
            vec![&"t_42", &some_id, &51i64, &5000i64],
        ),
        (
            "claim (fenced by status and token)",
            &sql.claim,
            vec![&none, &claim_id, &token, &330_000_000i64],
        ),
        (
            "prune (terminal, finished > 7 days ago, limit 1000)",
            &sql.prune,
            vec![&none, &604_800_000_000i64, &1000i64],
        ),
    ];
    for (name, statement, params) in cases {
        let tx = client.transaction().await?;
        if name.starts_with("lease_due") {
            // As the store's lease transaction runs it.
            tx.batch_execute(sql.lease_settings).await?;
        }
        let plan = tx
            .query(
                &format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}"),
                &params,
            )
            .await?;
        tx.rollback().await?;
        println!("### {name}\n");
        println!("```text");
        for line in plan {
            println!("{}", line.get::<_, String>(0));
        }
        println!("```\n");
    }
    if std::env::var("EXPLAIN_KEEP").is_err() {
        client
            .batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
            .await?;
    }
    Ok(())
}
