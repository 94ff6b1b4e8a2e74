//! Fault scenario 6: the shared Postgres cluster restarted under load (`pg_ctlcluster restart`),
//! cleanly (`-m fast`) and by a crash (`-m immediate`).
//! Every process must recover without a restart of its own and no job may be lost.
//!
//! It restarts the one cluster every other test uses, so it is a test binary of its own, in the
//! nextest test group `postgres-restart` (`.config/nextest.toml`) and run by `scripts/test.sh` in a
//! second `cargo nextest run` after the main run. It needs root (or the postgres user) and a
//! Debian `pg_ctlcluster`; set `ASYNC_JOBS_FAULT_PG_CLUSTER` to `<version>/<name>` to pick the
//! cluster (default: the first under /etc/postgresql, `main`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{World, CAP};
use faults::{
    assert_caps, check_invariants, enable_side_effects, executions, wait_for, Check, Sampler,
};
use jobs_core::{EnqueueRequest, JobId, JobStatus};
use serde_json::json;

fn cluster() -> (String, String) {
    if let Ok(c) = std::env::var("ASYNC_JOBS_FAULT_PG_CLUSTER") {
        let (v, n) = c.split_once('/').expect("<version>/<name>");
        return (v.to_owned(), n.to_owned());
    }
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql: a Debian PostgreSQL install")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    (versions.pop().expect("a cluster"), "main".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_postgres_restarted_under_load_loses_nothing() {
    restarted_under_load("f06", "fast").await;
}

/// The same with a crash (`-m immediate`: no shutdown checkpoint, recovery from the WAL). The
/// scheduler's leases commit without waiting for their flush, so the crash can lose the last of
/// them: those jobs must come back as pending and their messages' tokens be refused, with nothing
/// lost and no cap exceeded. (Whether a lease was in fact lost depends on the crash's timing; the
/// test holds either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_postgres_crashed_under_load_loses_nothing() {
    restarted_under_load("f06c", "immediate").await;
}

/// One restart at a time, also under a plain `cargo test` (nextest's test group does it there).
static ONE_RESTART_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn restarted_under_load(prefix: &str, mode: &str) {
    let _one = ONE_RESTART_AT_A_TIME.lock().await;
    let mut w = World::new(prefix).await;
    enable_side_effects(&mut w).await;
    let s = w.scheduler("scheduler");
    let a = w.worker("worker-a", &[]);
    let b = w.worker("worker-b", &[]);
    let total = 300;
    let reqs: Vec<EnqueueRequest> = (0..total)
        .map(|i| {
            EnqueueRequest::new(
                format!("tenant-{}", i % 3),
                "notifications",
                "send_email",
                json!({"to": "ada@example.com", "subject": "hi", "body": "b", "sleep_ms": 50}),
            )
            .max_attempts(10)
        })
        .collect();
    let ids: Vec<JobId> = w
        .service
        .enqueue_many(reqs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let sampler = Sampler::start(&w.schema, Duration::from_millis(25));
    let schema = w.schema.clone();
    wait_for("40 jobs run", Duration::from_secs(90), || {
        let schema = schema.clone();
        async move { (executions(&schema).await.len() >= 40).then_some(()) }
    })
    .await;

    let (version, name) = cluster();
    let restarted = Instant::now();
    let status = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            &name,
            "restart",
            "-m",
            mode,
        ])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster restart");
    let before: usize = executions(&schema).await.len();
    // Recovery: the first job run after the restart.
    wait_for(
        "a job to run after the restart",
        Duration::from_secs(90),
        || {
            let schema = schema.clone();
            async move { (executions(&schema).await.len() > before).then_some(()) }
        },
    )
    .await;
    let recovered = restarted.elapsed();
    for id in &ids {
        w.wait_status(*id, JobStatus::Succeeded, Duration::from_secs(180))
            .await;
    }
    let drained = restarted.elapsed();
    for p in [s, a, b] {
        let proc = w.proc(p);
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "{} exited: processes must recover on their own",
            proc.name
        );
    }
    assert_caps(&sampler.stop().await, i64::from(CAP));
    // A worker killed by the restart mid-write may rerun an attempt it could not record.
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.count("succeeded"), total as i64, "no job lost");
    eprintln!(
        "figures s06 ({mode}): {total} jobs; first job after the restart in {recovered:?}; all drained {drained:?} \
         after it; {} executions ({} re-executed jobs)",
        f.executions, f.re_executed_jobs
    );
    w.cleanup().await;
}
