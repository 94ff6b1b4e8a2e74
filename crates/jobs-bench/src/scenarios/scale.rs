//! Scenario 4: cost at scale — the dispatch tick, a single enqueue and an idle start (one due job
//! enqueued into an idle system, then one tick) with 0, 10,000, 100,000 and 1,000,000 pending
//! jobs in the table, almost all scheduled in the future. Two shapes of that future backlog:
//! `later` (deadlines after the due jobs', 1 hour to 30 days ahead) and `earlier` (reminders 20–30
//! minutes ahead with 0–60 s of tolerance, whose deadlines sort *before* the due jobs' 1-hour
//! deadlines: the shape that made the old pick walk the whole backlog on every tick). A third,
//! `tenants`, is a real due backlog: every pending job ready now, spread over 10,000 tenants with
//! their fair-share tags (100 per tenant at 1,000,000), so each tick leases from the backlog in
//! turn order; `--plain-edf` runs it with the use case's fair share off (every tag 0) to compare
//! the two picks in the same run. A fourth, `finished`, is history: the table holds that many
//! finished (`succeeded`) jobs over 100 tenants and no pending ones, as a system that keeps its
//! history for days (`--sizes 0,1000000,5000000`); `pending_jobs` then counts only the due jobs
//! left between rounds (none), and `finished_jobs` the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobs_core::memory::MemoryTransport;
use jobs_core::{JobService, JobStore, Transport};
use jobs_scheduler::{Dispatcher, SchedulerConfig};
use serde_json::json;

use crate::db::{self, BenchDb, USE_CASE};
use crate::stats::{percentiles, round3};

/// Where the future backlog's deadlines fall relative to the due jobs'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// `run_at` 1 hour to 30 days ahead, 300 s tolerance: deadlines after the due jobs'.
    Later,
    /// `run_at` 20–30 minutes ahead, 0–60 s tolerance: deadlines before the due jobs' (which get
    /// one hour of tolerance).
    Earlier,
    /// Due now, spread over 10,000 tenants, tagged as each tenant's turns: the pick leases from
    /// this backlog (no idle-start samples: the system is never idle).
    Tenants,
    /// No backlog: finished jobs (history), as `e2e-inproc --history` writes them.
    Finished,
}

impl Shape {
    const fn as_str(self) -> &'static str {
        match self {
            Shape::Later => "later",
            Shape::Earlier => "earlier",
            Shape::Tenants => "tenants",
            Shape::Finished => "finished",
        }
    }
}

/// Scenario 4's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// Pending (future) jobs in the table at each step, ascending (0: the empty-table baseline).
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 10_000, 100_000, 1_000_000])]
    pub sizes: Vec<u64>,
    /// The future backlog's shape.
    #[arg(long, value_enum, default_value_t = Shape::Later)]
    pub shape: Shape,
    /// Ticks measured per size.
    #[arg(long, default_value_t = 30)]
    pub rounds: u32,
    /// Due jobs enqueued before each measured tick.
    #[arg(long, default_value_t = 100)]
    pub due_per_round: u32,
    /// Single enqueues timed per size.
    #[arg(long, default_value_t = 300)]
    pub enqueue_samples: u32,
    /// Idle starts timed per size (enqueue one due job, then one tick).
    #[arg(long, default_value_t = 100)]
    pub idle_samples: u32,
    /// The use case's pick without fair share (plain EDF, every tag 0).
    #[arg(long)]
    pub plain_edf: bool,
    /// `tenants` shape: deadlines at random within each tenant (its k-th job's deadline has
    /// nothing to do with its k-th turn), the fair pick's worst case: almost every turn goes to
    /// another job than the one holding the tag, and the tags move (see docs/fairness.md). By
    /// default a tenant's later jobs have later deadlines, as with one tolerance per use case.
    #[arg(long)]
    pub shuffled_deadlines: bool,
}

/// Tenants of the `tenants` shape.
const BACKLOG_TENANTS: u64 = 10_000;

/// Inserts future pending jobs with ordinals `from..to` in one statement, as the store's enqueue
/// would write them (scheduled: not `ready` until the pick promotes them).
async fn fill(bench: &BenchDb, args: &ScaleArgs, from: u64, to: u64) -> anyhow::Result<()> {
    let shape = args.shape;
    match shape {
        Shape::Tenants => {
            return fill_tenants(bench, args.plain_edf, args.shuffled_deadlines, from, to).await
        }
        Shape::Finished => return crate::scenarios::e2e::write_history(bench, to - from).await,
        Shape::Later | Shape::Earlier => {}
    }
    let (run_at, tolerance_s) = match shape {
        Shape::Later => (
            "now() + interval '1 hour' + random() * interval '30 days'",
            "300",
        ),
        Shape::Earlier | Shape::Tenants | Shape::Finished => (
            "now() + interval '20 minutes' + random() * interval '10 minutes'",
            "floor(random() * 61)",
        ),
    };
    let sql = format!(
        "INSERT INTO {s}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, \
             max_attempts, backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, \
             delay_tolerance_us, deadline_at, timeout_us, cancel_requested, created_at, updated_at, ready) \
         SELECT gen_random_uuid(), 'tenant_' || (g % 100), '{USE_CASE}', 'noop', '{{}}'::jsonb, 'pending', 0, 0, \
             3, 'exponential', 1000000, 60000000, 'full', r, tol * 1000000, r + tol * interval '1 second', \
             60000000, false, now(), now(), r <= now() \
         FROM (SELECT g, {run_at} AS r, ({tolerance_s})::bigint AS tol \
               FROM generate_series($1::bigint, $2::bigint - 1) g) x",
        s = bench.schema
    );
    insert_range(bench, &sql, from, to).await
}

/// Inserts due pending jobs with ordinals `from..to` over [`BACKLOG_TENANTS`] tenants, each
/// tenant's k-th job holding its k-th turn (tag k, weight 1), or tag 0 in plain EDF; deadlines
/// 5 minutes + k seconds (+ up to 1 s) out, or, `shuffled`, anywhere 5–10 minutes out.
async fn fill_tenants(
    bench: &BenchDb,
    plain_edf: bool,
    shuffled: bool,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let deadline = if shuffled {
        "now() + interval '5 minutes' + random() * interval '5 minutes'".to_owned()
    } else {
        format!(
            "now() + interval '5 minutes' + (g / {BACKLOG_TENANTS}) * interval '1 second' + random() * interval '1 second'"
        )
    };
    let (tag, step) = if plain_edf {
        ("0", "0")
    } else {
        ("(g / {BACKLOG_TENANTS} + 1)::float8", "1")
    };
    let tag = tag.replace("{BACKLOG_TENANTS}", &BACKLOG_TENANTS.to_string());
    let sql = format!(
        "INSERT INTO {s}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, \
             max_attempts, backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, \
             delay_tolerance_us, deadline_at, timeout_us, cancel_requested, created_at, updated_at, ready, \
             fair_tag, fair_step) \
         SELECT gen_random_uuid(), 'tenant_' || (g % {BACKLOG_TENANTS}), '{USE_CASE}', 'noop', '{{}}'::jsonb, 'pending', 0, 0, \
             3, 'exponential', 1000000, 60000000, 'full', now(), 300000000, {deadline}, \
             60000000, false, now(), now(), true, {tag}, {step} \
         FROM generate_series($1::bigint, $2::bigint - 1) g",
        s = bench.schema
    );
    insert_range(bench, &sql, from, to).await
}

/// Runs `sql` (an insert of the ordinals `$1..$2`) for `from..to`, then refreshes the table's
/// visibility map and statistics, as a settled production table would have them.
async fn insert_range(bench: &BenchDb, sql: &str, from: u64, to: u64) -> anyhow::Result<()> {
    bench
        .admin
        .execute(sql, &[&(from as i64), &(to as i64)])
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
    let platform = {
        let mut p = db::platform(100_000);
        for uc in p.use_cases.values_mut() {
            uc.fair_share = !args.plain_edf;
        }
        Arc::new(p)
    };
    let service = JobService::new(Arc::clone(&store), Arc::clone(&platform));
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new([USE_CASE]));
    let dispatcher = Dispatcher::new(
        store.clone(),
        transport,
        platform,
        SchedulerConfig {
            dispatch_batch: args.due_per_round.max(1),
            ..SchedulerConfig::default()
        },
    );
    // Finish what the ticks leased (and, but in the `tenants` shape, the due jobs left over).
    let settle = format!(
        "UPDATE {}.jobs SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, \
             finished_at = now(), updated_at = now() \
         WHERE status IN ('dispatched', 'running'){}",
        bench.schema,
        if args.shape == Shape::Tenants {
            ""
        } else {
            " OR (status = 'pending' AND run_at <= now())"
        }
    );
    let idle_samples = if args.shape == Shape::Tenants {
        0
    } else {
        args.idle_samples
    };
    let mut filled = 0;
    let mut steps = Vec::new();
    for &size in &args.sizes {
        let fill_start = Instant::now();
        if size > filled {
            fill(&bench, &args, filled, size).await?;
            filled = size;
        }
        let fill_s = fill_start.elapsed().as_secs_f64();
        // Warm the caches and the statement cache.
        dispatcher.tick().await?;
        let mut ticks = Vec::new();
        for _ in 0..args.rounds {
            let due = (0..args.due_per_round).map(|_| due(args.shape)).collect();
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
        // Idle start: one due job into an idle system, dispatched by the next tick.
        let mut idle = Vec::new();
        for _ in 0..idle_samples {
            let t = Instant::now();
            service.enqueue(due(args.shape)).await?;
            let report = dispatcher.tick().await?;
            idle.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                report.dispatched == 1,
                "an idle tick dispatched {} jobs",
                report.dispatched
            );
            bench.admin.execute(&settle, &[]).await?;
        }
        let pending = bench.count_status("pending").await?;
        let finished = if args.shape == Shape::Finished {
            bench.count_status("succeeded").await?
        } else {
            0
        };
        steps.push(json!({
            "pending_jobs": pending,
            "finished_jobs": finished,
            "fill_seconds": round3(fill_s),
            "tick": percentiles(ticks),
            "enqueue": percentiles(enqueues),
            "idle_start": percentiles(idle),
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
    let (tick_ratio, enqueue_ratio, idle_ratio) =
        (ratio("tick"), ratio("enqueue"), ratio("idle_start"));
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": "scale",
        "shape": args.shape.as_str(),
        "pick": if args.plain_edf { "plain_edf" } else { "fair_edf" },
        "shuffled_deadlines": args.shuffled_deadlines,
        "due_per_tick": args.due_per_round,
        "steps": steps,
        "tick_p50_largest_over_smallest": tick_ratio,
        "enqueue_p50_largest_over_smallest": enqueue_ratio,
        "idle_start_p50_largest_over_smallest": idle_ratio,
    }))
}

/// A due job: the use case's 300 s tolerance, or an hour when the backlog's deadlines must sort
/// before it.
fn due(shape: Shape) -> jobs_core::EnqueueRequest {
    let req = db::request("due");
    match shape {
        Shape::Later | Shape::Tenants | Shape::Finished => req,
        Shape::Earlier => req.delay_tolerance(Duration::from_secs(3600)),
    }
}
