//! Scenario 1: enqueue throughput — one at a time from many tasks, through the batch API, and
//! through the HTTP API from many connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use jobs_core::{JobService, JobStore};
use jobs_http::{AppState, AuthConfig};
use serde_json::json;

use crate::db::{self, BenchDb};
use crate::stats::{rate, round3};

/// Scenario 1's sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct EnqueueArgs {
    /// Jobs per mode.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// Tasks enqueueing one at a time.
    #[arg(long, default_value_t = 16)]
    pub tasks: u64,
    /// Jobs per batch call.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u64,
    /// Tasks calling the batch API at once.
    #[arg(long, default_value_t = 2)]
    pub batch_tasks: u64,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 32)]
    pub connections: u64,
    /// Connection pool size of the store.
    #[arg(long, default_value_t = 32)]
    pub pool: usize,
}

/// Runs `tasks` tasks taking turns on a shared counter of `jobs` items; returns seconds.
async fn split<F, Fut>(jobs: u64, tasks: u64, step: u64, f: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let f = Arc::new(f);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (next, f) = (Arc::clone(&next), Arc::clone(&f));
        set.spawn(async move {
            loop {
                let at = next.fetch_add(step, Ordering::Relaxed);
                if at >= jobs {
                    return Ok::<_, anyhow::Error>(());
                }
                f(step.min(jobs - at)).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Runs scenario 1.
pub async fn run(args: EnqueueArgs) -> anyhow::Result<serde_json::Value> {
    let bench = BenchDb::fresh(&db::database_url(), "enqueue").await?;
    let store: Arc<dyn JobStore> = bench.shared_store(args.pool)?;
    let service = JobService::new(store, Arc::new(db::platform(100)));

    let commits0 = bench.xact_commit().await?;
    let s = service.clone();
    let single_s = split(args.jobs, args.tasks, 1, move |_| {
        let s = s.clone();
        async move {
            s.enqueue(db::request("t1")).await?;
            Ok(())
        }
    })
    .await?;

    let s = service.clone();
    let batch_s = split(args.jobs, args.batch_tasks, args.batch_size, move |n| {
        let s = s.clone();
        async move {
            let reqs = (0..n).map(|_| db::request("t2")).collect();
            s.enqueue_many(reqs).await?;
            Ok(())
        }
    })
    .await?;

    // Deliberately open (no credentials): an in-process server on a loopback port of its own,
    // for the benchmark's client only (the same as `async-jobs dev` on loopback).
    let app = jobs_http::router(AppState::new(service.clone(), AuthConfig::open()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jobs", listener.local_addr()?);
    // The server loop users run (connection limits included), not a bare axum::serve.
    let server = tokio::spawn(jobs_http::server::serve(
        listener,
        app,
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize)
        .build()?;
    let body = serde_json::to_vec(&db::request("t3"))?;
    let http_s = split(args.jobs, args.connections, 1, move |_| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "HTTP enqueue: {}",
                resp.status()
            );
            Ok(())
        }
    })
    .await
    .context("HTTP enqueue")?;
    server.abort();
    drop(service);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let commits = bench.xact_commit().await? - commits0;
    let total = bench.count_status("pending").await?;
    anyhow::ensure!(
        total as u64 == 3 * args.jobs,
        "expected {} jobs, found {total}",
        3 * args.jobs
    );
    let server_info = bench.server_info().await?;
    bench.drop_schema().await?;
    Ok(json!({
        "scenario": "enqueue",
        "jobs_per_mode": args.jobs,
        "single": { "tasks": args.tasks, "seconds": round3(single_s), "jobs_per_s": rate(args.jobs, single_s) },
        "batch": { "batch_size": args.batch_size, "tasks": args.batch_tasks, "seconds": round3(batch_s), "jobs_per_s": rate(args.jobs, batch_s) },
        "http": { "connections": args.connections, "seconds": round3(http_s), "jobs_per_s": rate(args.jobs, http_s) },
        "commits_per_job_all_modes": round3(commits as f64 / (3 * args.jobs) as f64),
        "postgres": server_info,
    }))
}
