//! `jobs-bench`: one subcommand per benchmark scenario, each printing one JSON line.

use clap::{Parser, Subcommand};
use jobs_bench::procs::{self, Role, RoleArgs};
use jobs_bench::scenarios::{deadline, e2e, enqueue, latency, scale};

#[derive(Debug, Parser)]
#[command(
    name = "jobs-bench",
    about = "async-jobs benchmarks: one JSON line per scenario run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 1: enqueue throughput (single from N tasks, batch, HTTP).
    Enqueue(enqueue::EnqueueArgs),
    /// 2a: end to end, Postgres + in-process transport.
    E2eInproc(e2e::InprocArgs),
    /// 2a's scheduler alone: lease and send pre-loaded jobs into an in-process sink.
    SchedulerOnly(e2e::SchedulerArgs),
    /// 2b: end to end, Postgres + SQS emulator, separate processes.
    E2eSqs(e2e::SqsArgs),
    /// 3: idle latency percentiles.
    Latency(latency::LatencyArgs),
    /// 4: tick and enqueue cost with many pending jobs.
    Scale(scale::ScaleArgs),
    /// 5: EDF versus FIFO deadline hits under overload.
    Deadline(deadline::DeadlineArgs),
    /// 6: resident memory of API, scheduler and worker (idle and at peak of scenario 2b).
    Memory(e2e::SqsArgs),
    /// Internal: run as one process of the cross-process scenarios.
    #[command(hide = true)]
    Role {
        /// Which process.
        #[arg(value_enum)]
        role: Role,
        #[command(flatten)]
        args: RoleArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let out = match Cli::parse().command {
        Command::Role { role, args } => return procs::run_role(role, args).await,
        Command::Enqueue(a) => enqueue::run(a).await?,
        Command::E2eInproc(a) => e2e::run_inproc(a).await?,
        Command::SchedulerOnly(a) => e2e::run_scheduler_only(a).await?,
        Command::E2eSqs(a) => e2e::run_sqs(a, "e2e-sqs").await?,
        Command::Latency(a) => latency::run(a).await?,
        Command::Scale(a) => scale::run(a).await?,
        Command::Deadline(a) => deadline::run(a).await?,
        Command::Memory(a) => e2e::run_sqs(a, "memory").await?,
    };
    println!("{out}");
    Ok(())
}
