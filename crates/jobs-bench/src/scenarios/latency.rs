//! Scenario 3: latency at idle — immediate jobs enqueued one at a time, some milliseconds apart;
//! enqueue-to-start and enqueue-to-done percentiles from the database's own timestamps
//! (`created_at`, `started_at`, `finished_at`: one clock for every process).

use std::sync::Arc;
use std::time::Duration;

use jobs_core::memory::DEFAULT_RECEIVE_BATCH;
use jobs_core::{JobId, JobService, JobStore};
use serde_json::json;

use crate::db::{self, BenchDb};
use crate::procs::{self, Role, RoleArgs, RoleProcess};
use crate::scenarios::e2e::InProcess;
use crate::scenarios::sqs_baseline;
use crate::stats::{percentiles, round3, Percentiles};

/// Where the jobs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// (a) Postgres + in-process transport.
    Inproc,
    /// (b) Postgres + SQS emulator, separate processes.
    Sqs,
}

/// Scenario 3's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Which deployment.
    #[arg(long, value_enum, default_value_t = Mode::Inproc)]
    pub mode: Mode,
    /// Jobs measured.
    #[arg(long, default_value_t = 500)]
    pub jobs: u64,
    /// Pause between enqueues, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Samples of the emulator's own send-to-receive latency (mode sqs).
    #[arg(long, default_value_t = 200)]
    pub baseline_samples: u64,
}

/// Enqueues `n` jobs `interval` apart; returns their ids.
async fn trickle(service: &JobService, n: u64, interval: Duration) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(n as usize);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..n {
        tick.tick().await;
        ids.push(service.enqueue(db::request("t")).await?.job.id);
    }
    Ok(ids)
}

/// Percentiles of one run's hops, from the database's own timestamps.
struct Measured {
    start: Percentiles,
    done: Percentiles,
    to_dispatch: Percentiles,
    dispatch_to_start: Percentiles,
}

impl Measured {
    /// The hops as JSON: enqueue → start and → done (the figures), and enqueue → start
    /// split at the lease commit (scheduler) and from there to the claim (send, transport,
    /// receive, claim), which says where a slow tail comes from.
    fn json(&self) -> serde_json::Value {
        json!({
            "enqueue_to_start": self.start,
            "enqueue_to_done": self.done,
            "enqueue_to_dispatch": self.to_dispatch,
            "dispatch_to_start": self.dispatch_to_start,
        })
    }
}

async fn measured(bench: &BenchDb, ids: &[JobId]) -> anyhow::Result<Measured> {
    let rows = bench
        .admin
        .query(
            &format!(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000, \
                        extract(epoch FROM finished_at - created_at)::float8 * 1000, \
                        extract(epoch FROM dispatched_at - created_at)::float8 * 1000, \
                        extract(epoch FROM started_at - dispatched_at)::float8 * 1000 \
                 FROM {}.jobs WHERE id = ANY($1) AND status = 'succeeded'",
                bench.schema
            ),
            &[&ids],
        )
        .await?;
    anyhow::ensure!(
        rows.len() == ids.len(),
        "{} of {} jobs succeeded",
        rows.len(),
        ids.len()
    );
    let column = |i: usize| percentiles(rows.iter().map(|r| r.get::<_, f64>(i)).collect());
    Ok(Measured {
        start: column(0),
        done: column(1),
        to_dispatch: column(2),
        dispatch_to_start: column(3),
    })
}

/// Runs scenario 3.
pub async fn run(args: LatencyArgs) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "latency").await?;
    let store: Arc<dyn JobStore> = bench.shared_store(2)?;
    let service = JobService::new(store, Arc::new(db::platform(10)));
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let wait_all = Duration::from_secs(60 + args.jobs * args.interval_ms / 1000);
    let out = match args.mode {
        Mode::Inproc => {
            let world = InProcess::start(
                &bench,
                10,
                10,
                jobs_scheduler::SchedulerConfig {
                    dispatch_batch: 100,
                    ..jobs_scheduler::SchedulerConfig::default()
                },
                4,
                1,
                DEFAULT_RECEIVE_BATCH,
            )?;
            // Warm up the pools and the LISTEN connection.
            trickle(&service, 5, interval).await?;
            world.wait_succeeded(5, Duration::from_secs(30)).await?;
            let ids = trickle(&service, args.jobs, interval).await?;
            world.wait_succeeded(5 + args.jobs, wait_all).await?;
            world.stop().await;
            measured(&bench, &ids).await?.json()
        }
        Mode::Sqs => {
            let sqs = procs::sqs_transport("").await?;
            let queue_url = sqs.create_queue(&format!("{}-bench", bench.schema)).await?;
            let role = RoleArgs {
                dsn: bench.dsn.clone(),
                schema: bench.schema.clone(),
                queue_url: queue_url.clone(),
                cap: 10,
                concurrency: 10,
                dispatch_batch: 100,
            };
            let scheduler = RoleProcess::spawn(Role::Scheduler, &role).await?;
            let worker = RoleProcess::spawn(Role::Worker, &role).await?;
            trickle(&service, 5, interval).await?;
            bench
                .wait_status(
                    "succeeded",
                    5,
                    Duration::from_millis(20),
                    Duration::from_secs(30),
                )
                .await?;
            let ids = trickle(&service, args.jobs, interval).await?;
            bench
                .wait_status(
                    "succeeded",
                    5 + args.jobs as i64,
                    Duration::from_millis(50),
                    wait_all,
                )
                .await?;
            worker.finish().await?;
            scheduler.finish().await?;
            let hops = measured(&bench, &ids).await?;
            let baseline_url = sqs
                .create_queue(&format!("{}-latency", bench.schema))
                .await?;
            let baseline = sqs_baseline::send_to_receive(
                sqs.client(),
                &baseline_url,
                args.baseline_samples,
                interval,
            )
            .await?;
            for url in [&queue_url, &baseline_url] {
                let _ = sqs.delete_queue(url).await;
            }
            let ratio = if baseline.p99_ms > 0.0 {
                hops.start.p99_ms / baseline.p99_ms
            } else {
                0.0
            };
            let mut out = hops.json();
            out["emulator_send_to_receive"] = json!(baseline);
            out["start_p99_over_emulator_p99"] = json!(round3(ratio));
            out
        }
    };
    bench.drop_schema().await?;
    let mut out = out;
    out["scenario"] = json!("latency");
    out["mode"] = json!(match args.mode {
        Mode::Inproc => "inproc",
        Mode::Sqs => "sqs",
    });
    out["jobs"] = json!(args.jobs);
    out["interval_ms"] = json!(args.interval_ms);
    Ok(out)
}
