//! End to end: the real `async-jobs scheduler` and `async-jobs worker` binaries against real Postgres and the
//! SQS emulator. Each test has its own schema and queues, so they run in parallel.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{World, CAP};
use jobs_core::{Backoff, BackoffStrategy, EnqueueRequest, Jitter, JobId, JobStatus, TenantScope};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn email(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 10});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

fn quick_backoff() -> Backoff {
    Backoff {
        strategy: BackoffStrategy::Constant,
        base: Duration::from_millis(200),
        cap: Duration::from_millis(200),
        jitter: Jitter::None,
    }
}

async fn enqueue(w: &World, req: EnqueueRequest) -> JobId {
    w.service.enqueue(req).await.unwrap().job.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_through_the_library_succeeds() {
    let mut w = World::new("ok").await;
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let id = enqueue(
        &w,
        EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))),
    )
    .await;
    let job = w.wait_status(id, JobStatus::Succeeded, LONG).await;
    assert_eq!(job.attempts, 1);
    assert!(job.started_at.is_some() && job.finished_at.is_some());
    let labeled = enqueue(
        &w,
        EnqueueRequest::new(
            "globex",
            "message_labeling",
            "label_message",
            json!({"message_id": "m1", "text": "invoice overdue"}),
        ),
    )
    .await;
    w.wait_status(labeled, JobStatus::Succeeded, LONG).await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_retries_with_backoff_and_ends_dead() {
    let mut w = World::new("retry").await;
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let id = enqueue(
        &w,
        EnqueueRequest::new(
            "acme",
            "notifications",
            "send_email",
            email(json!({"fail": "retryable"})),
        )
        .max_attempts(3)
        .backoff(quick_backoff()),
    )
    .await;
    let job = w.wait_status(id, JobStatus::Dead, LONG).await;
    assert_eq!(job.attempts, 3, "every attempt used, none more");
    assert!(job.last_error.is_some());
    // A job that fails twice then succeeds ends succeeded on attempt 3.
    let flaky = enqueue(
        &w,
        EnqueueRequest::new(
            "acme",
            "notifications",
            "send_email",
            email(json!({"fail_times": 2})),
        )
        .max_attempts(5)
        .backoff(quick_backoff()),
    )
    .await;
    let job = w.wait_status(flaky, JobStatus::Succeeded, LONG).await;
    assert_eq!(job.attempts, 3);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_fails_and_retries() {
    let mut w = World::new("timeout").await;
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let id = enqueue(
        &w,
        EnqueueRequest::new(
            "acme",
            "notifications",
            "send_email",
            email(json!({"fail": "hang"})),
        )
        .timeout(Duration::from_secs(1))
        .max_attempts(2)
        .backoff(quick_backoff()),
    )
    .await;
    let job = w.wait_status(id, JobStatus::Dead, LONG).await;
    assert_eq!(job.attempts, 2);
    assert!(job.last_error.unwrap_or_default().contains("timed out"));
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pending_job_never_runs() {
    let mut w = World::new("cancel").await;
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let id = enqueue(
        &w,
        EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))).run_at(later),
    )
    .await;
    let cancelled = w.service.cancel(id, &TenantScope::All).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    // A job enqueued after it, due at the same time, succeeds: the system ran past the cancelled one.
    let witness = enqueue(
        &w,
        EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))).run_at(later),
    )
    .await;
    w.wait_status(witness, JobStatus::Succeeded, LONG).await;
    let job = w.job(id).await;
    assert_eq!(
        (job.status, job.attempts, job.started_at),
        (JobStatus::Cancelled, 0, None)
    );
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_never_exceeded_while_200_jobs_run() {
    let mut w = World::new("cap").await;
    w.scheduler("scheduler");
    w.worker("worker-a", &[]);
    w.worker("worker-b", &[]);
    let reqs: Vec<EnqueueRequest> = (0..200)
        .map(|i| {
            EnqueueRequest::new(
                format!("tenant-{}", i % 3),
                "notifications",
                "send_email",
                email(json!({"sleep_ms": 30})),
            )
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
    let start = Instant::now();
    let mut max_in_flight = 0;
    let mut samples = 0;
    loop {
        let counts = w.counts().await;
        let in_flight = counts.get(&JobStatus::Dispatched).copied().unwrap_or(0)
            + counts.get(&JobStatus::Running).copied().unwrap_or(0);
        max_in_flight = max_in_flight.max(in_flight);
        samples += 1;
        assert!(
            in_flight <= u64::from(CAP),
            "{in_flight} in flight with a cap of {CAP}"
        );
        if counts.get(&JobStatus::Succeeded).copied().unwrap_or(0) == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "not done: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        max_in_flight >= 2,
        "the sampling saw concurrency ({max_in_flight})"
    );
    assert!(samples > 10);
    for id in ids {
        assert_eq!(w.job(id).await.attempts, 1);
    }
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scheduler_takes_over_when_the_leader_is_killed() {
    let mut w = World::new("failover").await;
    let leader = w.scheduler("scheduler-1");
    w.worker("worker", &[]);
    let first = enqueue(
        &w,
        EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))),
    )
    .await;
    w.wait_status(first, JobStatus::Succeeded, LONG).await;
    // scheduler-1 is the leader (it dispatched alone); start a standby, then kill the leader.
    w.scheduler("scheduler-2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.proc(leader).signal("KILL");
    assert!(w
        .proc(leader)
        .wait_exit(Duration::from_secs(5))
        .is_none_or(|_| true));
    let killed_at = Instant::now();
    let second = enqueue(
        &w,
        EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))),
    )
    .await;
    w.wait_status(second, JobStatus::Succeeded, Duration::from_secs(30))
        .await;
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_busy_worker_drains_and_loses_nothing() {
    let mut w = World::new("drain").await;
    w.scheduler("scheduler");
    let worker = w.worker("worker-1", &[("ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS", "1")]);
    // Two quick jobs and three that outlast the grace period.
    let mut quick = Vec::new();
    for _ in 0..2 {
        quick.push(
            enqueue(
                &w,
                EnqueueRequest::new(
                    "acme",
                    "notifications",
                    "send_email",
                    email(json!({"sleep_ms": 200})),
                ),
            )
            .await,
        );
    }
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(
            enqueue(
                &w,
                EnqueueRequest::new(
                    "acme",
                    "notifications",
                    "send_email",
                    email(json!({"sleep_ms": 4000})),
                ),
            )
            .await,
        );
    }
    for id in &slow {
        w.wait_status(*id, JobStatus::Running, LONG).await;
    }
    w.proc(worker).signal("TERM");
    let code = w.proc(worker).wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "the worker drains and exits 0");
    for id in &slow {
        let job = w.job(*id).await;
        // Released to pending; the scheduler may already have dispatched it again.
        assert!(
            matches!(job.status, JobStatus::Pending | JobStatus::Dispatched),
            "released, not lost: {}",
            job.status
        );
        assert_eq!(job.attempts, 0, "no attempt penalty for a shutdown");
    }
    // A new worker finishes everything.
    w.worker("worker-2", &[]);
    let all: BTreeSet<JobId> = quick.iter().chain(slow.iter()).copied().collect();
    for id in all {
        let job = w.wait_status(id, JobStatus::Succeeded, LONG).await;
        assert!(job.attempts <= 1);
    }
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_move_during_a_run() {
    let mut w = World::new("metrics").await;
    let (sched_port, worker_port) = (common::free_port(), common::free_port());
    // Through the product binary's subcommands, which serve the ops endpoints.
    let sched_addr = format!("127.0.0.1:{sched_port}");
    let worker_addr = format!("127.0.0.1:{worker_port}");
    w.spawn_args(
        "async-jobs",
        &["scheduler"],
        "scheduler",
        &[("ASYNC_JOBS_HEALTH_ADDR", &sched_addr)],
    );
    w.spawn_args(
        "async-jobs",
        &["worker"],
        "worker",
        &[("ASYNC_JOBS_HEALTH_ADDR", &worker_addr)],
    );
    // Wait for both ops endpoints, then read the counters before any job ran.
    let start = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{worker_port}/healthz"))
        .await
        .is_err()
        || reqwest::get(format!("http://127.0.0.1:{sched_port}/readyz"))
            .await
            .is_err()
    {
        assert!(start.elapsed() < LONG, "ops endpoints never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = r#"outcome="succeeded""#;
    let before_done = common::metric_sum(
        &common::http_get(worker_port, "/metrics").await,
        "async_jobs_worker_jobs_total",
        ok,
    );
    let before_sent = common::metric_sum(
        &common::http_get(sched_port, "/metrics").await,
        "async_jobs_dispatched_total",
        "",
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            enqueue(
                &w,
                EnqueueRequest::new("acme", "notifications", "send_email", email(json!({}))),
            )
            .await,
        );
    }
    for id in &ids {
        w.wait_status(*id, JobStatus::Succeeded, LONG).await;
    }
    let after_done = common::metric_sum(
        &common::http_get(worker_port, "/metrics").await,
        "async_jobs_worker_jobs_total",
        ok,
    );
    let after_sent = common::metric_sum(
        &common::http_get(sched_port, "/metrics").await,
        "async_jobs_dispatched_total",
        "",
    );
    assert_eq!(
        after_done - before_done,
        3.0,
        "worker counted three successes"
    );
    assert!(
        after_sent - before_sent >= 3.0,
        "scheduler counted the dispatches: {before_sent} → {after_sent}"
    );
    let ready = common::http_get(worker_port, "/readyz").await;
    assert!(ready.contains("ready"), "{ready}");
    w.cleanup().await;
}
