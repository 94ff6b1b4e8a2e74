//! # jobs-bench — the benchmark harness of async-jobs
//!
//! Every scenario of the benchmark issue is a function here that runs against a real Postgres
//! (and, for the cross-process scenarios, the SQS emulator) and returns one JSON object; the
//! `jobs-bench` binary prints it as one line. Figures and the exact commands are in
//! `BENCHMARKS.md`.
//!
//! | subcommand | scenario |
//! |---|---|
//! | `enqueue` | 1: single enqueue from N tasks, batch enqueue, HTTP enqueue from N connections |
//! | `e2e-inproc` | 2a: Postgres + in-process transport, scheduler and worker in one process |
//! | `e2e-sqs` | 2b: Postgres + SQS emulator, separate API, scheduler and worker processes (and 6: their RSS) |
//! | `latency` | 3: idle enqueue-to-start / enqueue-to-done percentiles, `--mode inproc` or `sqs` |
//! | `scale` | 4: tick time and enqueue latency with 10k / 100k / 1M pending jobs |
//! | `deadline` | 5: EDF versus FIFO under 1.5× overload, per tenant |
//! | `memory` | 6: resident memory of the API, scheduler and worker at idle and at peak |
//!
//! Each scenario works in its own fresh schema of the bench database
//! (`ASYNC_JOBS_BENCH_DATABASE_URL`, default [`db::DEFAULT_URL`]: loopback without TLS,
//! created if missing) and drops it afterwards, so commit counts from `pg_stat_database` belong
//! to the benchmark alone.

pub mod count;
pub mod db;
pub mod procs;
pub mod scenarios;
pub mod stats;

pub use db::BenchDb;
