//! Separate processes for the cross-process scenarios: the bench binary runs itself as an API,
//! scheduler or worker (`jobs-bench role …`), and the parent reads their resident memory.
//!
//! A role process runs until its standard input closes, then shuts down cleanly and prints one
//! JSON line with what it counted (SQS requests, store calls).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobs_core::leader::SoleLeader;
use jobs_core::{JobService, JobStore, Transport};
use jobs_http::{AppState, AuthConfig};
use jobs_scheduler::{Dispatcher, Scheduler, SchedulerConfig};
use jobs_sqs::SqsTransport;
use jobs_worker::{Worker, WorkerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::count::{counting, CountingTransport};
use crate::db::{self, USE_CASE};

/// Which process to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API (prints its address first).
    Api,
    /// The scheduler (leader by itself).
    Scheduler,
    /// The worker with the no-op handler.
    Worker,
}

/// What a role process needs to know.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// Database URL.
    #[arg(long)]
    pub dsn: String,
    /// Schema of the jobs table.
    #[arg(long)]
    pub schema: String,
    /// The bench use case's queue URL (scheduler and worker).
    #[arg(long, default_value = "")]
    pub queue_url: String,
    /// The use case's concurrency cap.
    #[arg(long, default_value_t = 100)]
    pub cap: u32,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Jobs leased per tick.
    #[arg(long, default_value_t = 100)]
    pub dispatch_batch: u32,
}

/// The SQS transport on the emulator named by `AWS_ENDPOINT_URL_SQS`, for `queue_url`.
pub async fn sqs_transport(queue_url: &str) -> anyhow::Result<SqsTransport> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").context(
        "AWS_ENDPOINT_URL_SQS is not set: run `eval \"$(scripts/moto.sh start)\"` first",
    )?;
    let urls: BTreeMap<String, String> = if queue_url.is_empty() {
        BTreeMap::new()
    } else {
        [(USE_CASE.to_owned(), queue_url.to_owned())].into()
    };
    Ok(SqsTransport::builder(urls)
        .endpoint_url(endpoint)
        .region("us-east-1")
        .static_credentials("test", "test")
        .build()
        .await?)
}

async fn stdin_closed() {
    let mut buf = [0u8; 64];
    let mut stdin = tokio::io::stdin();
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Runs a role until standard input closes; prints its counters as one JSON line.
pub async fn run_role(role: Role, args: RoleArgs) -> anyhow::Result<()> {
    let platform = Arc::new(db::platform(args.cap));
    let pg = db::store_on(
        &args.dsn,
        &args.schema,
        jobs_postgres::PoolOptions::default(),
    )?;
    let store = Arc::new(counting(Arc::new(pg)));
    let calls = Arc::clone(&store.interceptor().calls);
    let out = match role {
        Role::Api => {
            let service = JobService::new(store as Arc<dyn JobStore>, platform);
            // Deliberately open (no credentials): it listens on a loopback port of its own for
            // the parent bench process only, like `async-jobs dev` on loopback. It is not
            // `async-jobs api` (which would refuse without credentials or ASYNC_JOBS_AUTH=none).
            let app = jobs_http::router(AppState::new(service, AuthConfig::open()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!(
                "{}",
                serde_json::json!({ "listening": listener.local_addr()?.to_string() })
            );
            jobs_http::server::serve(listener, app, stdin_closed()).await?;
            serde_json::json!({ "role": "api" })
        }
        Role::Scheduler => {
            let transport = Arc::new(CountingTransport::new(
                sqs_transport(&args.queue_url).await?,
            ));
            let requests = Arc::clone(&transport.requests);
            let config = SchedulerConfig {
                dispatch_batch: args.dispatch_batch,
                ..SchedulerConfig::default()
            };
            let dispatcher = Dispatcher::new(
                store as Arc<dyn JobStore>,
                transport as Arc<dyn Transport>,
                platform,
                config,
            );
            println!("{}", serde_json::json!({ "ready": true }));
            Scheduler::new(dispatcher, Arc::new(SoleLeader))
                .run(stdin_closed())
                .await;
            serde_json::json!({ "role": "scheduler", "sqs_requests": requests.snapshot() })
        }
        Role::Worker => {
            let transport = Arc::new(CountingTransport::new(
                sqs_transport(&args.queue_url).await?,
            ));
            let requests = Arc::clone(&transport.requests);
            let service = JobService::new(store as Arc<dyn JobStore>, platform);
            let config = WorkerConfig::default()
                .with_use_cases([USE_CASE])
                .with_concurrency(args.concurrency)
                .with_receive_wait(Duration::from_secs(2))
                .with_shutdown_grace(Duration::from_secs(5));
            let worker = Worker::new(service, transport, db::noop_registry(), config);
            println!("{}", serde_json::json!({ "ready": true }));
            let report = worker.run(stdin_closed()).await?;
            serde_json::json!({
                "role": "worker",
                "succeeded": report.succeeded,
                "sqs_requests": requests.snapshot(),
            })
        }
    };
    let mut out = out;
    out["store_calls"] = serde_json::to_value(calls.snapshot())?;
    println!("{out}");
    Ok(())
}

/// A running role process. Killed if dropped before [`finish`](RoleProcess::finish).
#[derive(Debug)]
pub struct RoleProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The first line the process printed (its address or readiness).
    pub first_line: serde_json::Value,
}

impl RoleProcess {
    /// Starts `jobs-bench role <role>` from the running executable.
    pub async fn spawn(role: Role, args: &RoleArgs) -> anyhow::Result<RoleProcess> {
        let exe = std::env::current_exe()?;
        let role_name = match role {
            Role::Api => "api",
            Role::Scheduler => "scheduler",
            Role::Worker => "worker",
        };
        let mut child = Command::new(exe)
            .args([
                "role",
                role_name,
                "--dsn",
                &args.dsn,
                "--schema",
                &args.schema,
            ])
            .args(["--queue-url", &args.queue_url])
            .args(["--cap", &args.cap.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--dispatch-batch", &args.dispatch_batch.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {role_name} process"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut p = RoleProcess {
            child,
            stdin,
            stdout,
            first_line: serde_json::Value::Null,
        };
        p.first_line = tokio::time::timeout(Duration::from_secs(30), p.next_line())
            .await
            .with_context(|| format!("the {role_name} process did not start in 30 s"))??;
        Ok(p)
    }

    async fn next_line(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).await? == 0 {
            anyhow::bail!("the process exited without output");
        }
        Ok(serde_json::from_str(line.trim())?)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory in MiB now (0 if unknown).
    pub fn rss_mib(&self) -> f64 {
        self.pid().map(rss_mib).unwrap_or(0.0)
    }

    /// Closes its standard input and waits (up to 30 s) for its last line.
    pub async fn finish(mut self) -> anyhow::Result<serde_json::Value> {
        drop(self.stdin.take());
        let last = tokio::time::timeout(Duration::from_secs(30), self.next_line())
            .await
            .context("the process did not stop in 30 s")??;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        Ok(last)
    }
}

/// Resident memory of process `pid` in MiB, from `/proc/<pid>/status` (0 if unreadable).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}
