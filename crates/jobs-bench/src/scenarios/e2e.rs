//! Scenario 2 (end to end, no-op handler) and 6 (resident memory): (a) Postgres and the
//! in-process transport, scheduler and worker in this process; (b) Postgres and the SQS
//! emulator, with separate API, scheduler and worker processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobs_core::leader::SoleLeader;
use jobs_core::memory::MemoryTransport;
use jobs_core::MaintenanceStore as _;
use jobs_core::{JobService, JobStore, Transport};
use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig};
use jobs_worker::{Worker, WorkerConfig};
use serde_json::json;
use tokio::sync::watch;

use crate::count::{counting, Counters, CountingTransport};
use crate::db::{self, BenchDb, USE_CASE};
use crate::procs::{self, Role, RoleArgs, RoleProcess};
use crate::scenarios::sqs_baseline;
use crate::stats::{rate, round3};

/// Scenario 2a's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct InprocArgs {
    /// Jobs to run.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: u64,
    /// The use case's concurrency cap.
    #[arg(long, default_value_t = 2000)]
    pub cap: u32,
    /// Worker concurrency.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Jobs leased per use case per tick.
    #[arg(long, default_value_t = 1000)]
    pub dispatch_batch: u32,
    /// Connection pool size (shared by scheduler and worker).
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
    /// Receive loops per use case (`WorkerConfig::receive_loops`).
    #[arg(long, default_value_t = 1)]
    pub loops: usize,
    /// Most messages one receive of the in-process transport returns
    /// (`MemoryTransport::with_receive_batch`; SQS's limit is 10).
    #[arg(long, default_value_t = jobs_core::memory::DEFAULT_RECEIVE_BATCH)]
    pub receive_batch: u32,
    /// Sets the jobs table's fillfactor before the preload (an experiment: the migrations set
    /// the platform's own).
    #[arg(long)]
    pub fillfactor: Option<u8>,
    /// Finished jobs already in the table before the preload (real history): `succeeded`, over
    /// 100 tenants, finished 2 to 50 hours ago, written by one SQL statement and then vacuumed
    /// and analysed once, as autovacuum would have by then, and checkpointed.
    #[arg(long, default_value_t = 0)]
    pub history: u64,
    /// Prunes up to this many finished jobs (older than an hour) while the measured part runs,
    /// through the store's `prune` in batches of `--prune-batch`, one batch after another on a
    /// connection of its own: the cost of pruning at full speed.
    #[arg(long, default_value_t = 0)]
    pub prune_during: u64,
    /// Jobs deleted per prune call: with `--prune-during` (default 5,000), or the scheduler's
    /// batch with `--scheduler-prunes` (default its own, 1,000).
    #[arg(long)]
    pub prune_batch: Option<u32>,
    /// The scheduler itself prunes while the measured part runs, as in production (its paced
    /// prune loop, `SchedulerConfig::prune_batch` of 1,000 unless `--prune-batch` is given), with
    /// a retention of one hour so that the whole `--history` is due: the cost of the platform's
    /// own pruning, where `--prune-during` measures pruning at full speed.
    #[arg(long, conflicts_with = "prune_during")]
    pub scheduler_prunes: bool,
}

/// Writes `n` finished jobs (history) into the bench schema in one statement, then `VACUUM
/// ANALYZE`s the table.
pub async fn write_history(bench: &BenchDb, n: u64) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let s = &bench.schema;
    let n = i64::try_from(n)?;
    bench
        .admin
        .execute(
            &format!(
                "INSERT INTO {s}.jobs (id, tenant_id, use_case, kind, payload, status, priority, attempts, \
                     max_attempts, backoff_strategy, backoff_base_us, backoff_cap_us, backoff_jitter, run_at, \
                     delay_tolerance_us, deadline_at, timeout_us, cancel_requested, created_at, updated_at, \
                     dispatched_at, started_at, first_started_at, finished_at, ready) \
                 SELECT gen_random_uuid(), 'h' || (g % 100), '{USE_CASE}', 'noop', '{{\"n\": 1}}'::jsonb, 'succeeded', 0, 1, \
                     3, 'exponential', 1000000, 60000000, 'full', f - interval '1 second', 60000000, \
                     f + interval '1 minute', 30000000, false, f - interval '1 second', f, f, f, f, f, true \
                 FROM generate_series(1, $1::bigint) g, \
                     LATERAL (SELECT now() - interval '2 hours' - (g * interval '48 hours') / $1::bigint AS f) t"
            ),
            &[&n],
        )
        .await?;
    bench
        .admin
        .batch_execute(&format!("VACUUM ANALYZE {s}.jobs"))
        .await?;
    // History written long ago has been checkpointed: without this, the run would pay for the
    // load's checkpoint (full-page images of every page it touches first).
    if let Err(e) = bench.admin.batch_execute("CHECKPOINT").await {
        eprintln!("CHECKPOINT after the history failed (not a superuser?): {e}");
    }
    Ok(())
}

/// Enqueues `jobs` immediate jobs in batches of 1000 on a store of its own (closed afterwards
/// so its commits are published before the measured part starts).
pub async fn preload(bench: &BenchDb, jobs: u64) -> anyhow::Result<()> {
    let store: Arc<dyn JobStore> = bench.shared_store(4)?;
    let service = JobService::new(store, Arc::new(db::platform(1)));
    let mut left = jobs;
    while left > 0 {
        let n = left.min(1000);
        service
            .enqueue_many((0..n).map(|_| db::request("t")).collect())
            .await?;
        left -= n;
    }
    Ok(())
}

/// A shutdown signal for in-process components.
pub fn shutdown_pair() -> (
    watch::Sender<bool>,
    impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) {
    let (tx, rx) = watch::channel(false);
    let wait = move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    (tx, wait)
}

fn per_job(counters: &Counters, jobs: u64) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in counters.snapshot() {
        out.insert(k, json!(round3(v as f64 / jobs as f64)));
    }
    out.insert(
        "total".into(),
        json!(round3(counters.total() as f64 / jobs as f64)),
    );
    serde_json::Value::Object(out)
}

/// In-process scheduler and worker over one Postgres store and a memory transport.
pub struct InProcess {
    /// Store calls.
    pub calls: Arc<Counters>,
    /// Transport requests.
    pub requests: Arc<Counters>,
    /// Jobs completed so far.
    pub succeeded: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Starts a scheduler and a worker on `bench`.
    pub fn start(
        bench: &BenchDb,
        cap: u32,
        concurrency: usize,
        scheduler: SchedulerConfig,
        pool: usize,
        loops: usize,
        receive_batch: u32,
    ) -> anyhow::Result<InProcess> {
        let store = Arc::new(counting(Arc::new(bench.store(pool)?)));
        let calls = Arc::clone(&store.interceptor().calls);
        let transport = Arc::new(CountingTransport::new(
            MemoryTransport::new([USE_CASE]).with_receive_batch(receive_batch),
        ));
        let requests = Arc::clone(&transport.requests);
        let platform = Arc::new(db::platform(cap));
        let dispatcher = Dispatcher::new(
            Arc::clone(&store) as Arc<dyn JobStore>,
            Arc::clone(&transport) as Arc<dyn Transport>,
            Arc::clone(&platform),
            scheduler,
        );
        let (stop, wait) = shutdown_pair();
        let scheduler = tokio::spawn({
            let w = wait();
            async move {
                Scheduler::new(dispatcher, Arc::new(SoleLeader))
                    .run(w)
                    .await;
            }
        });
        let mut tasks = vec![scheduler];
        let worker = Worker::new(
            JobService::new(store as Arc<dyn JobStore>, platform),
            transport as Arc<dyn Transport>,
            db::noop_registry(),
            WorkerConfig::default()
                .with_use_cases([USE_CASE])
                .with_concurrency(concurrency)
                .with_receive_wait(Duration::from_secs(1))
                .with_shutdown_grace(Duration::from_secs(5))
                .with_receive_loops(loops),
        );
        let stats = worker.stats();
        let w = wait();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = worker.run(w).await {
                tracing::error!(error = %e, "worker failed");
            }
        }));
        let succeeded: Arc<dyn Fn() -> u64 + Send + Sync> =
            Arc::new(move || stats.snapshot().succeeded);
        Ok(InProcess {
            calls,
            requests,
            succeeded,
            stop,
            tasks,
        })
    }

    /// Waits until the worker has completed `n` jobs in all.
    pub async fn wait_succeeded(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while (self.succeeded)() < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out: {} of {n} jobs succeeded",
                (self.succeeded)()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Stops both and waits for them.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Runs scenario 2a.
pub async fn run_inproc(args: InprocArgs) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "e2e_inproc").await?;
    if let Some(ff) = args.fillfactor {
        anyhow::ensure!((10..=100).contains(&ff), "--fillfactor is 10 to 100");
        bench
            .admin
            .batch_execute(&format!(
                "ALTER TABLE {}.jobs SET (fillfactor = {ff})",
                bench.schema
            ))
            .await?;
    }
    write_history(&bench, args.history).await?;
    preload(&bench, args.jobs).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let commits0 = bench.xact_commit().await?;
    let before = bench.snapshot().await?;
    let pruner = (args.prune_during > 0).then(|| {
        let store = bench.store(1);
        let (goal, batch) = (args.prune_during, args.prune_batch.unwrap_or(5_000));
        tokio::spawn(async move {
            let store = store?;
            let start = Instant::now();
            let mut pruned = 0u64;
            while pruned < goal {
                let n = store
                    .prune(Duration::from_secs(3600), batch.min((goal - pruned) as u32))
                    .await?;
                if n == 0 {
                    break;
                }
                pruned += n;
            }
            anyhow::Ok((pruned, start.elapsed().as_secs_f64()))
        })
    });
    let mut scheduler = SchedulerConfig {
        dispatch_batch: args.dispatch_batch,
        ..SchedulerConfig::default()
    };
    if args.scheduler_prunes {
        // The whole history (finished 2 to 50 hours ago) is past this retention.
        scheduler.retention = Duration::from_secs(3600);
        scheduler.prune_batch = args.prune_batch.unwrap_or(scheduler.prune_batch);
    }
    let start = Instant::now();
    let world = InProcess::start(
        &bench,
        args.cap,
        args.concurrency,
        scheduler,
        args.pool,
        args.loops,
        args.receive_batch,
    )?;
    world
        .wait_succeeded(args.jobs, Duration::from_secs(120 + args.jobs / 100))
        .await?;
    let secs = start.elapsed().as_secs_f64();
    // What is left of the history (its tenants are `h…`) when the measured part ends, before the
    // scheduler (and its pruning) stops.
    let history_left = if args.scheduler_prunes {
        let row = bench
            .admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.jobs WHERE tenant_id LIKE 'h%'",
                    bench.schema
                ),
                &[],
            )
            .await?;
        u64::try_from(row.get::<_, i64>(0))?
    } else {
        args.history
    };
    let (calls, requests) = (Arc::clone(&world.calls), Arc::clone(&world.requests));
    world.stop().await;
    let mut pruned_total = 0;
    let pruning = match pruner {
        Some(task) => {
            let (pruned, prune_secs) = task.await??;
            pruned_total = pruned;
            json!({
                "pruned": pruned,
                "seconds": round3(prune_secs),
                "rows_per_s": rate(pruned, prune_secs),
                "pruned_during_run": (pruned as f64 * (secs / prune_secs).min(1.0)).round(),
            })
        }
        None => serde_json::Value::Null,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commits = bench.xact_commit().await? - commits0;
    let postgres = bench.cost_per_job(&before, args.jobs).await?;
    let succeeded = bench.count_status("succeeded").await?;
    // The scheduler's pruning: what was missing of the history when the measured part ended.
    // Every measured job (tenant `t`, not old enough) must be there, succeeded (checked below
    // against what is left now: the pruner may have taken a batch more before it stopped).
    let pruning = if args.scheduler_prunes {
        pruned_total = args.history.saturating_sub(history_left);
        json!({ "by": "scheduler", "pruned_during_run": pruned_total,
                "rows_per_s": rate(pruned_total, secs) })
    } else {
        pruning
    };
    if args.scheduler_prunes {
        let row = bench
            .admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.jobs WHERE tenant_id NOT LIKE 'h%' AND status = 'succeeded'",
                    bench.schema
                ),
                &[],
            )
            .await?;
        let measured = row.get::<_, i64>(0);
        anyhow::ensure!(
            measured as u64 == args.jobs,
            "{measured} of the {} measured jobs succeeded and are there",
            args.jobs
        );
    } else {
        // The history's jobs are succeeded too, those the pruner left.
        anyhow::ensure!(
            succeeded as u64 == args.jobs + args.history - pruned_total,
            "{succeeded} of {} succeeded ({} of them history, {pruned_total} pruned)",
            args.jobs + args.history - pruned_total,
            args.history
        );
    }
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": "e2e-inproc",
        "history": args.history,
        "pruning": pruning,
        "postgres": postgres,
        "jobs": args.jobs,
        "cap": args.cap,
        "concurrency": args.concurrency,
        "dispatch_batch": args.dispatch_batch,
        "receive_batch": args.receive_batch,
        "loops": args.loops,
        "seconds": round3(secs),
        "jobs_per_s": rate(args.jobs, secs),
        "commits_per_job": round3(commits as f64 / args.jobs as f64),
        "store_calls_per_job": per_job(&calls, args.jobs),
        "transport_calls_per_job": per_job(&requests, args.jobs),
    }))
}

/// Scenario 2b's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct SqsArgs {
    /// Jobs to run.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: u64,
    /// The use case's concurrency cap. It bounds the jobs dispatched and not yet finished, i.e.
    /// the queue's depth, and the emulator slows down sharply as its queue grows (~130
    /// messages/s at a depth of 100, ~270 at 40, ~480 at 20), so the ceiling loop runs at the
    /// same depth.
    #[arg(long, default_value_t = 40)]
    pub cap: u32,
    /// Worker concurrency.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Jobs leased per tick.
    #[arg(long, default_value_t = 50)]
    pub dispatch_batch: u32,
    /// Messages through the bare-SDK ceiling loop.
    #[arg(long, default_value_t = 2_000)]
    pub ceiling_messages: u64,
}

fn sum_requests(lines: &[&serde_json::Value]) -> (u64, serde_json::Map<String, serde_json::Value>) {
    let mut total = 0;
    let mut by_kind = serde_json::Map::new();
    for line in lines {
        if let Some(map) = line.get("sqs_requests").and_then(|v| v.as_object()) {
            for (k, v) in map {
                let n = v.as_u64().unwrap_or(0);
                total += n;
                let prev = by_kind.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                by_kind.insert(k.clone(), json!(prev + n));
            }
        }
    }
    (total, by_kind)
}

/// Runs scenario 2b (and 6: the processes' resident memory at idle and at peak).
pub async fn run_sqs(args: SqsArgs, scenario: &str) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "e2e_sqs").await?;
    let sqs = procs::sqs_transport("").await?;
    let queue_url = sqs.create_queue(&format!("{}-bench", bench.schema)).await?;
    let ceiling_url = sqs
        .create_queue(&format!("{}-ceiling", bench.schema))
        .await?;
    let ceiling = sqs_baseline::ceiling(
        sqs.client(),
        &ceiling_url,
        args.ceiling_messages,
        1,
        u64::from(args.cap),
    )
    .await
    .context("emulator ceiling")?;

    let role = RoleArgs {
        dsn: bench.dsn.clone(),
        schema: bench.schema.clone(),
        queue_url: queue_url.clone(),
        cap: args.cap,
        concurrency: args.concurrency,
        dispatch_batch: args.dispatch_batch,
    };
    let api = RoleProcess::spawn(Role::Api, &role).await?;
    let scheduler = RoleProcess::spawn(Role::Scheduler, &role).await?;
    let worker = RoleProcess::spawn(Role::Worker, &role).await?;
    let addr = api.first_line["listening"]
        .as_str()
        .context("the API did not say where it listens")?
        .to_owned();
    // Idle: let start-up settle (first requests, pools) before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = json!({
        "api": api.rss_mib(), "scheduler": scheduler.rss_mib(), "worker": worker.rss_mib(),
    });
    let pids = [api.pid(), scheduler.pid(), worker.pid()];
    let (peak_stop, peak_rx) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = [0.0f64; 3];
        loop {
            for (p, pid) in peak.iter_mut().zip(pids) {
                *p = p.max(pid.map(procs::rss_mib).unwrap_or(0.0));
            }
            if *peak_rx.borrow() {
                return peak;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let commits0 = bench.xact_commit().await?;
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(1000);
        let jobs: Vec<_> = (0..n).map(|_| db::request("t")).collect();
        let resp = client
            .post(format!("http://{addr}/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "batch enqueue: {}",
            resp.status()
        );
        left -= n;
    }
    let enqueue_secs = start.elapsed().as_secs_f64();
    bench
        .wait_status(
            "succeeded",
            args.jobs as i64,
            Duration::from_millis(100),
            Duration::from_secs(120 + args.jobs / 20),
        )
        .await?;
    let secs = start.elapsed().as_secs_f64();
    peak_stop.send_replace(true);
    let peak = sampler.await?;
    let worker_line = worker.finish().await?;
    let scheduler_line = scheduler.finish().await?;
    let api_line = api.finish().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commits = bench.xact_commit().await? - commits0;
    let (sqs_total, sqs_by_kind) = sum_requests(&[&scheduler_line, &worker_line]);
    let jobs_per_s = rate(args.jobs, secs);
    let ceiling_rate = ceiling["messages_per_s"].as_f64().unwrap_or(0.0);
    for url in [&queue_url, &ceiling_url] {
        let _ = sqs.delete_queue(url).await;
    }
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": scenario,
        "jobs": args.jobs,
        "cap": args.cap,
        "concurrency": args.concurrency,
        "seconds": round3(secs),
        "enqueue_seconds": round3(enqueue_secs),
        "jobs_per_s": jobs_per_s,
        "emulator_ceiling": ceiling,
        "ratio_to_ceiling": round3(if ceiling_rate > 0.0 { jobs_per_s / ceiling_rate } else { 0.0 }),
        "sqs_requests_per_job": round3(sqs_total as f64 / args.jobs as f64),
        "sqs_requests": sqs_by_kind,
        "commits_per_job": round3(commits as f64 / args.jobs as f64),
        "store_calls": {
            "api": api_line["store_calls"], "scheduler": scheduler_line["store_calls"], "worker": worker_line["store_calls"],
        },
        "rss_mib": { "idle": idle, "peak": { "api": peak[0], "scheduler": peak[1], "worker": peak[2] } },
    }))
}

/// The scheduler alone's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    /// Jobs to lease.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: u64,
    /// Jobs leased per use case per tick.
    #[arg(long, default_value_t = 1000)]
    pub dispatch_batch: u32,
}

/// The scheduler alone: `jobs` pre-loaded jobs leased and sent into an in-process transport that
/// nobody reads (the cap is the number of jobs, so it never holds the scheduler back). Its rate
/// is the most the platform could start if workers and their completions cost nothing.
pub async fn run_scheduler_only(args: SchedulerArgs) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "scheduler_only").await?;
    preload(&bench, args.jobs).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = bench.snapshot().await?;
    let cap = u32::try_from(args.jobs).unwrap_or(u32::MAX);
    let store = Arc::new(counting(Arc::new(bench.store(4)?)));
    let calls = Arc::clone(&store.interceptor().calls);
    let transport = Arc::new(CountingTransport::new(MemoryTransport::new([USE_CASE])));
    let requests = Arc::clone(&transport.requests);
    let dispatcher = Dispatcher::new(
        Arc::clone(&store) as Arc<dyn JobStore>,
        Arc::clone(&transport) as Arc<dyn Transport>,
        Arc::new(db::platform(cap)),
        SchedulerConfig {
            dispatch_batch: args.dispatch_batch,
            ..SchedulerConfig::default()
        },
    );
    let (stop, wait) = shutdown_pair();
    let start = Instant::now();
    let scheduler = tokio::spawn({
        let w = wait();
        async move {
            Scheduler::new(dispatcher, Arc::new(SoleLeader))
                .run(w)
                .await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120 + args.jobs / 100);
    while (transport.inner().depth(USE_CASE) as u64) < args.jobs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out: {} of {} jobs sent",
            transport.inner().depth(USE_CASE),
            args.jobs
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.send_replace(true);
    let _ = scheduler.await;
    drop(store);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let postgres = bench.cost_per_job(&before, args.jobs).await?;
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": "scheduler-only",
        "jobs": args.jobs,
        "dispatch_batch": args.dispatch_batch,
        "seconds": round3(secs),
        "jobs_per_s": rate(args.jobs, secs),
        "postgres": postgres,
        "store_calls_per_job": per_job(&calls, args.jobs),
        "transport_calls_per_job": per_job(&requests, args.jobs),
    }))
}
