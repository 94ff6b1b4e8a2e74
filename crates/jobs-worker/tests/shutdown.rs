//! Shutdown drain and store failures.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::*;
use jobs_core::clock::ManualClock;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::memory::MemoryStore;
use jobs_core::{JobContext, JobStatus, StoreError};
use serde_json::json;

fn sleeper(ms: u64) -> serde_json::Value {
    json!({"to": "+1555", "text": "x", "sleep_ms": ms})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_jobs_finish_during_the_grace() {
    // A long receive wait: shutdown must not wait for the in-flight long poll.
    let config = worker_config().with_receive_wait(std::time::Duration::from_secs(20));
    let mut h = Harness::start(registry(), config);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.enqueue(NOTIFICATIONS, "send_sms", sleeper(300)).await.id);
    }
    h.dispatch().await;
    for id in &ids {
        h.wait_status(*id, JobStatus::Running).await;
    }
    let asked = tokio::time::Instant::now();
    let report = h.shutdown().await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        asked.elapsed()
    );
    for id in &ids {
        assert_eq!(h.job(*id).await.status, JobStatus::Succeeded);
    }
    assert_eq!(report.succeeded, 3);
    assert_eq!(report.released, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_outlasting_the_grace_are_released_without_penalty() {
    let mut registry = registry();
    // Ignores cancellation entirely.
    registry.register_fn(
        "stubborn",
        |_ctx: JobContext, _p: serde_json::Value| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        },
    );
    let config = worker_config().with_shutdown_grace(Duration::from_millis(300));
    let mut h = Harness::start(registry, config);
    let stubborn = h.enqueue(NOTIFICATIONS, "stubborn", json!({})).await;
    // Cooperative: sees the cancel fired at the end of the grace.
    let cooperative = h.enqueue(NOTIFICATIONS, "send_sms", sleeper(60_000)).await;
    let quick = h.enqueue(NOTIFICATIONS, "send_sms", sleeper(100)).await;
    h.dispatch().await;
    for id in [stubborn.id, cooperative.id, quick.id] {
        h.wait_status(id, JobStatus::Running).await;
    }
    let report = h.shutdown().await;
    for id in [stubborn.id, cooperative.id] {
        let job = h.job(id).await;
        assert_eq!(job.status, JobStatus::Pending, "{job:?}");
        assert_eq!(job.attempts, 0, "released without penalty");
        assert_eq!(job.lease_token, None);
        assert!(job.run_at <= h.clock_now(), "due again at once");
    }
    assert_eq!(h.job(quick.id).await.status, JobStatus::Succeeded);
    assert_eq!(report.released, 2);
    assert_eq!(report.succeeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_nothing_running_returns_at_once() {
    let mut h = Harness::start(
        registry(),
        worker_config().with_receive_wait(Duration::from_secs(20)),
    );
    // Let the loops start polling.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let asked = tokio::time::Instant::now();
    let report = h.shutdown().await;
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(report, jobs_worker::WorkerReport::default());
}

/// The first `claim_failures` claim calls fail as if the database were down.
#[derive(Debug)]
struct FlakyClaims {
    claim_failures: AtomicU32,
}

#[async_trait]
impl Interceptor for FlakyClaims {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if !matches!(op, StoreOp::Claim | StoreOp::ClaimMany) {
            return Ok(());
        }
        let failing = self
            .claim_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_claim_leaves_the_message_for_redelivery() {
    let clock = Arc::new(ManualClock::at(Utc::now()));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let flaky = Arc::new(FlakyClaims {
        claim_failures: AtomicU32::new(2),
    });
    let intercepted = Arc::new(InterceptedStore::new(store.clone(), Arc::clone(&flaky)));
    let mut h = Harness::start_with(registry(), worker_config(), clock, store, intercepted);
    let job = h.enqueue(NOTIFICATIONS, "send_sms", sleeper(0)).await;
    h.dispatch().await;
    // Redelivered after the 300 ms visibility timeout, twice, then claimed.
    let done = h.wait_status(job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(flaky.claim_failures.load(Ordering::SeqCst), 0);
    h.wait_drained().await;
    let report = h.shutdown().await;
    assert_eq!(report.messages_dropped, 0);
    assert_eq!(report.claimed, 1);
}
