//! Prints the plans of `GET /jobs`'s list statements at 1,000,000 jobs: each documented filter
//! as the API sends it now (no payloads, a window of 5,000 candidates), beside the statement it
//! sent before (every filter in one `WHERE`, payloads read, no window).
//!
//! ```text
//! cargo run -p jobs-postgres --release --example explain_list
//! ```
//!
//! Uses `ASYNC_JOBS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/async_jobs_test`;
//! TLS as `sslmode` in it and `ASYNC_JOBS_DB_CA_FILE` say),
//! creates the schema `explain_list_1m` (dropped first if it exists), fills it with
//! generate_series: one big tenant `t_big` holding a fifth of the jobs, 800 tenants sharing the
//! rest, ids ordered like UUID v7 (by `created_at`, over 30 days), one job in ~1,000 of a rare
//! type, statuses as in the `explain` example; plus tenant `t_fat` with 600 jobs of ~250 KB
//! incompressible payloads (the byte-budget case). Then `VACUUM ANALYZE` and `EXPLAIN (ANALYZE,
//! BUFFERS)` of each statement. Set `EXPLAIN_ROWS` for another size and `EXPLAIN_KEEP=1` to keep
//! the schema.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use jobs_core::{ApiStore, JobFilter, JobStatus, PageRequest};
use jobs_postgres::sql::{list_statement, ListShape};
use jobs_postgres::SchemaName;
use tokio_postgres::types::ToSql;

const SCHEMA: &str = "explain_list_1m";
const WINDOW: i64 = 5_000;

/// Filters present: tenant, use case, status, kind, created_after, created_before, after-id.
type Present = [bool; 7];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("ASYNC_JOBS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/async_jobs_test".to_owned());
    let rows: i64 = std::env::var("EXPLAIN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (client, connection) = jobs_postgres::PgConnector::from_env_ca(&url)?
        .connect()
        .await?;
    tokio::spawn(connection);

    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await?;
    jobs_postgres::migrate(&client, SCHEMA).await?;
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO {SCHEMA}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts,
                 backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us,
                 deadline_at, timeout_us, lease_token, lease_expires_at, cancel_requested,
                 created_at, updated_at, finished_at, ready)
             SELECT (lpad(to_hex((extract(epoch FROM s.created_at) * 1000)::bigint), 12, '0') || '7'
                         || substr(md5(g::text), 1, 19))::uuid,
                 CASE WHEN g % 5 = 0 THEN 't_big' ELSE 't_' || (g % 1000) END, 'uc_' || (g % 4),
                 CASE WHEN g % 1009 = 0 THEN 'rare_kind' ELSE 'send_email' END, '{{\"n\": 1}}'::jsonb,
                 s.status, 0, 1, 5, 'exponential', 1000000, 3600000000, 'full',
                 s.created_at, 300000000, s.created_at + interval '5 minutes', 30000000,
                 CASE WHEN s.status IN ('dispatched', 'running') THEN md5('t' || g)::uuid END,
                 CASE WHEN s.status IN ('dispatched', 'running') THEN now() + interval '5 minutes' END,
                 false, s.created_at, s.created_at,
                 CASE WHEN s.status IN ('succeeded', 'dead', 'cancelled') THEN s.created_at + interval '1 minute' END,
                 true
             FROM generate_series(1, {rows}) g,
             LATERAL (SELECT now() - ({rows} - g) * (interval '30 days' / {rows}) AS created_at,
                             abs(hashint4(g::int)) % 100 AS h) c,
             LATERAL (SELECT c.created_at, CASE WHEN c.h < 10 THEN 'pending' WHEN c.h = 10 THEN 'dispatched'
                                  WHEN c.h = 11 THEN 'running' WHEN c.h < 14 THEN 'dead'
                                  WHEN c.h = 14 THEN 'cancelled' ELSE 'succeeded' END AS status) s;
             INSERT INTO {SCHEMA}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, max_attempts,
                 backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, delay_tolerance_us,
                 deadline_at, timeout_us, cancel_requested, created_at, updated_at, finished_at, ready)
             SELECT gen_random_uuid(), 't_fat', 'uc_0', 'send_email',
                 jsonb_build_object('blob', (SELECT string_agg(md5(g || ':' || i), '') FROM generate_series(1, 7800) i)),
                 'succeeded', 0, 1, 5, 'exponential', 1000000, 3600000000, 'full', now(), 300000000,
                 now() + interval '5 minutes', 30000000, false, now(), now(), now(), true
             FROM generate_series(1, 600) g;"
        ))
        .await?;
    client
        .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.jobs"))
        .await?;
    println!(
        "-- generated {rows} + 600 jobs in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    for r in client
        .query(
            &format!(
                "SELECT tenant_id, count(*), count(*) FILTER (WHERE kind = 'rare_kind'), \
                        count(*) FILTER (WHERE status = 'dead') \
                 FROM {SCHEMA}.jobs WHERE tenant_id IN ('t_big', 't_42', 't_fat') GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .await?
    {
        println!(
            "--   {:<6} {} jobs, {} rare_kind, {} dead",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
            r.get::<_, i64>(3)
        );
    }
    println!();

    let schema = SchemaName::new(SCHEMA)?;
    let statement = |present: Present, now: bool| {
        list_statement(
            schema.clone(),
            ListShape {
                present,
                payload: !now,
                budget: false,
                bounded: now,
            },
        )
    };
    let day_ago = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let old_from = chrono::Utc::now() - chrono::TimeDelta::days(21);
    let old_to = chrono::Utc::now() - chrono::TimeDelta::days(20);
    let fetch = 51i64;
    let window = WINDOW;
    let budget = 4i64 * 1024 * 1024;
    const T: bool = true;
    const F: bool = false;
    // (name, filters present, parameters before the fetch/window ones)
    let cases: Vec<(&str, Present, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "tenant only (t_big, 200,000 jobs), first page of 50",
            [T, F, F, F, F, F, F],
            vec![&"t_big"],
        ),
        (
            "tenant + rare type (t_big, ~200 rare_kind jobs among 200,000)",
            [T, F, F, T, F, F, F],
            vec![&"t_big", &"rare_kind"],
        ),
        (
            "tenant + status (t_big, status dead, 2 %)",
            [T, F, T, F, F, F, F],
            vec![&"t_big", &"dead"],
        ),
        (
            "tenant + created range, the last day (t_big)",
            [T, F, F, F, T, F, F],
            vec![&"t_big", &day_ago],
        ),
        (
            "tenant + created range 20-21 days ago (t_big)",
            [T, F, F, F, T, T, F],
            vec![&"t_big", &old_from, &old_to],
        ),
        (
            "no tenant + status (dead, 2 % of 1,000,000)",
            [F, F, T, F, F, F, F],
            vec![&"dead"],
        ),
        (
            "no tenant + rare type (~1,000 of 1,000,000)",
            [F, F, F, T, F, F, F],
            vec![&"rare_kind"],
        ),
    ];
    let store = jobs_postgres::PgStore::connect(&url, SCHEMA)?;
    let mut summary = Vec::new();
    for (i, (name, present, params)) in cases.iter().enumerate() {
        let mut before = params.clone();
        before.push(&fetch);
        let before_ms = explain(
            &client,
            &format!("{name} — before"),
            &statement(*present, false),
            &before,
            false,
        )
        .await?;
        let mut now = before.clone();
        now.push(&window);
        let now_ms = explain(
            &client,
            &format!("{name} — now"),
            &statement(*present, true),
            &now,
            true,
        )
        .await?;
        let filter = filter_of(i, day_ago, old_from, old_to);
        let page = PageRequest {
            include_payload: false,
            max_scanned: Some(WINDOW as u32),
            max_bytes: Some(budget as u64),
            ..PageRequest::new(None, 50)
        };
        let (old_ms, _) = timed_list(&store, &filter, PageRequest::new(None, 50)).await?;
        let (first_ms, first_len) = timed_list(&store, &filter, page).await?;
        let (calls, total_ms, found) = walk(&store, &filter, page).await?;
        summary.push(format!(
            "| {name} | {before_ms:.1} | {old_ms:.1} | {now_ms:.1} | {first_ms:.1} ({first_len} jobs) | {calls} calls, {total_ms:.0} ms, {found} jobs |"
        ));
    }
    // The byte budget over 600 payloads of ~250 KB: a page of up to 500 with payloads.
    let fetch_500 = 501i64;
    let with_budget = list_statement(
        schema.clone(),
        ListShape {
            present: [T, F, F, F, F, F, F],
            payload: true,
            budget: true,
            bounded: true,
        },
    );
    let fat = JobFilter {
        tenant_id: Some("t_fat".into()),
        ..JobFilter::default()
    };
    let before_ms = explain(
        &client,
        "tenant t_fat (600 × 250 KB payloads), limit 500 — before: payloads, no budget",
        &statement([T, F, F, F, F, F, F], false),
        &[&"t_fat", &fetch_500],
        false,
    )
    .await?;
    let whole_ms = explain(
        &client,
        "tenant t_fat, limit 500, include_payload, 4 MiB budget — the whole statement (the store stops fetching at the cut)",
        &with_budget,
        &[&"t_fat", &fetch_500, &window, &budget],
        true,
    )
    .await?;
    let page = PageRequest {
        include_payload: true,
        max_scanned: Some(WINDOW as u32),
        max_bytes: Some(budget as u64),
        ..PageRequest::new(None, 500)
    };
    let (store_ms, len) = timed_list(&store, &fat, page).await?;
    let (old_ms, old_len) = timed_list(&store, &fat, PageRequest::new(None, 500)).await?;
    summary.push(format!(
        "| t_fat, limit 500, with payloads | {before_ms:.1} | {old_ms:.1} ({old_len} jobs, 125 MB) | {whole_ms:.1} (statement run to the end) | {store_ms:.1} ({len} jobs, 4 MB, through the portal) | |"
    ));
    println!("| case | before: statement ms | before: `PgStore::list` ms | now: statement ms | now: `PgStore::list` ms | walking every page now |");
    println!("|---|---|---|---|---|---|");
    for line in summary {
        println!("{line}");
    }
    println!();
    if std::env::var("EXPLAIN_KEEP").is_err() {
        client
            .batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
            .await?;
    }
    Ok(())
}

/// Prints the plan of `statement` (when `print`) and returns its execution time in ms (median
/// of three runs after a warm-up).
async fn explain(
    client: &tokio_postgres::Client,
    name: &str,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
    print: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}");
    client.query(&sql, params).await?;
    let mut times = Vec::new();
    let mut plan = Vec::new();
    for _ in 0..3 {
        plan = client.query(&sql, params).await?;
        let last: String = plan.last().unwrap().get(0);
        let ms: f64 = last
            .trim_start_matches("Execution Time: ")
            .trim_end_matches(" ms")
            .parse()?;
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    if print {
        println!("### {name}\n");
        println!("```text");
        for line in plan {
            println!("{}", line.get::<_, String>(0));
        }
        println!("```\n");
    }
    Ok(times[1])
}

/// The store's own call (what the API waits for): median of three after a warm-up.
async fn timed_list(
    store: &jobs_postgres::PgStore,
    filter: &JobFilter,
    page: PageRequest,
) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    store.list(filter, page).await?;
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..3 {
        let started = Instant::now();
        len = store.list(filter, page).await?.jobs.len();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[1], len))
}

/// Walks every page: calls, total ms, jobs found.
async fn walk(
    store: &jobs_postgres::PgStore,
    filter: &JobFilter,
    page: PageRequest,
) -> Result<(usize, f64, usize), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let (mut calls, mut found, mut after) = (0, 0, None);
    loop {
        let got = store.list(filter, PageRequest { after, ..page }).await?;
        calls += 1;
        found += got.jobs.len();
        match got.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok((calls, started.elapsed().as_secs_f64() * 1000.0, found))
}

/// The filter of case `i` (in the order of `cases`).
fn filter_of(
    i: usize,
    day_ago: chrono::DateTime<chrono::Utc>,
    old_from: chrono::DateTime<chrono::Utc>,
    old_to: chrono::DateTime<chrono::Utc>,
) -> JobFilter {
    let big = Some("t_big".to_owned());
    match i {
        0 => JobFilter {
            tenant_id: big,
            ..JobFilter::default()
        },
        1 => JobFilter {
            tenant_id: big,
            kind: Some("rare_kind".into()),
            ..JobFilter::default()
        },
        2 => JobFilter {
            tenant_id: big,
            status: Some(JobStatus::Dead),
            ..JobFilter::default()
        },
        3 => JobFilter {
            tenant_id: big,
            created_after: Some(day_ago),
            ..JobFilter::default()
        },
        4 => JobFilter {
            tenant_id: big,
            created_after: Some(old_from),
            created_before: Some(old_to),
            ..JobFilter::default()
        },
        5 => JobFilter {
            status: Some(JobStatus::Dead),
            ..JobFilter::default()
        },
        _ => JobFilter {
            kind: Some("rare_kind".into()),
            ..JobFilter::default()
        },
    }
}
