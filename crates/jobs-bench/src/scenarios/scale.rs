//! Scenario 4: cost at scale — the dispatch tick and a single enqueue with 10,000, 100,000 and
//! 1,000,000 pending jobs in the table, almost all scheduled in the future.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::memory::MemoryTransport;
use jobs_core::{JobService, JobStore, Transport};
use jobs_scheduler::{Dispatcher, SchedulerConfig};
use serde_json::json;

use crate::db::{self, BenchDb, USE_CASE};
use crate::stats::{percentiles, round3};

/// Scenario 4's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// Pending (future) jobs in the table at each step, ascending.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    pub sizes: Vec<u64>,
    /// Ticks measured per size.
    #[arg(long, default_value_t = 30)]
    pub rounds: u32,
    /// Due jobs enqueued before each measured tick.
    #[arg(long, default_value_t = 100)]
    pub due_per_round: u32,
    /// Single enqueues timed per size.
    #[arg(long, default_value_t = 300)]
    pub enqueue_samples: u32,
}

/// Inserts future pending jobs with ordinals `from..to` in one statement.
async fn fill(bench: &BenchDb, from: u64, to: u64) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO {s}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, \
             max_attempts, backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, \
             delay_tolerance_us, deadline_at, timeout_us, cancel_requested, created_at, updated_at) \
         SELECT gen_random_uuid(), 'tenant_' || (g % 100), '{USE_CASE}', 'noop', '{{}}'::jsonb, 'pending', 0, 0, \
             3, 'exponential', 1000000, 60000000, 'full', r, 300000000, r + interval '300 seconds', \
             60000000, false, now(), now() \
         FROM (SELECT g, now() + interval '1 hour' + random() * interval '30 days' AS r \
               FROM generate_series($1::bigint, $2::bigint - 1) g) x",
        s = bench.schema
    );
    bench
        .admin
        .execute(&sql, &[&(from as i64), &(to as i64)])
        .await?;
    bench
        .admin
        .batch_execute(&format!("VACUUM ANALYZE {}.jobs", bench.schema))
        .await?;
    Ok(())
}

/// Runs scenario 4.
pub async fn run(args: ScaleArgs) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "scale").await?;
    let store: Arc<dyn JobStore> = bench.shared_store(2)?;
    let platform = Arc::new(db::platform(100_000));
    let service = JobService::new(Arc::clone(&store), Arc::clone(&platform));
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new([USE_CASE]));
    let dispatcher = Dispatcher::new(
        Arc::clone(&store),
        transport,
        platform,
        SchedulerConfig {
            dispatch_batch: args.due_per_round.max(1),
            ..SchedulerConfig::default()
        },
    );
    let settle = format!(
        "UPDATE {}.jobs SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, \
             finished_at = now(), updated_at = now() \
         WHERE status IN ('dispatched', 'running') OR (status = 'pending' AND run_at <= now())",
        bench.schema
    );
    let mut filled = 0;
    let mut steps = Vec::new();
    for &size in &args.sizes {
        let fill_start = Instant::now();
        if size > filled {
            fill(&bench, filled, size).await?;
            filled = size;
        }
        let fill_s = fill_start.elapsed().as_secs_f64();
        // Warm the caches and the statement cache.
        dispatcher.tick().await?;
        let mut ticks = Vec::new();
        for _ in 0..args.rounds {
            let due = (0..args.due_per_round)
                .map(|_| db::request("due"))
                .collect();
            service.enqueue_many(due).await?;
            let t = Instant::now();
            let report = dispatcher.tick().await?;
            ticks.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                report.dispatched == u64::from(args.due_per_round),
                "a tick dispatched {} of {} due jobs",
                report.dispatched,
                args.due_per_round
            );
            bench.admin.execute(&settle, &[]).await?;
        }
        let mut enqueues = Vec::new();
        for _ in 0..args.enqueue_samples {
            let t = Instant::now();
            service.enqueue(db::request("single")).await?;
            enqueues.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        bench.admin.execute(&settle, &[]).await?;
        let pending = bench.count_status("pending").await?;
        steps.push(json!({
            "pending_jobs": pending,
            "fill_seconds": round3(fill_s),
            "tick": percentiles(ticks),
            "enqueue": percentiles(enqueues),
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ratio = |what: &str| -> f64 {
        let p50 = |s: &serde_json::Value| s[what]["p50_ms"].as_f64().unwrap_or(0.0);
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) if p50(a) > 0.0 => round3(p50(b) / p50(a)),
            _ => 0.0,
        }
    };
    let (tick_ratio, enqueue_ratio) = (ratio("tick"), ratio("enqueue"));
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": "scale",
        "due_per_tick": args.due_per_round,
        "steps": steps,
        "tick_p50_largest_over_smallest": tick_ratio,
        "enqueue_p50_largest_over_smallest": enqueue_ratio,
    }))
}
