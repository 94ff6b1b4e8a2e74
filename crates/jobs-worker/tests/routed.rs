//! The worker over a [`RoutedStore`]: the dispatch message's use case takes the claim, the
//! heartbeats and the outcome straight to that use case's store, so another store being down is
//! never asked.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use common::*;
use jobs_core::clock::ManualClock;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::memory::MemoryStore;
use jobs_core::{EnqueueRequest, JobService, JobStatus, JobStore, RoutedStore, StoreError};
use serde_json::json;

/// Fails every call while `down` is set, counting the worker's (lease) calls.
#[derive(Debug, Default)]
struct Outage {
    down: AtomicBool,
    lease_calls: AtomicUsize,
}

#[async_trait]
impl Interceptor for Outage {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if matches!(
            op,
            StoreOp::Claim
                | StoreOp::ClaimMany
                | StoreOp::Heartbeat
                | StoreOp::Complete
                | StoreOp::CompleteMany
                | StoreOp::Fail
                | StoreOp::Release
        ) {
            self.lease_calls.fetch_add(1, Ordering::SeqCst);
        }
        match self.down.load(Ordering::SeqCst) {
            true => Err(StoreError::Unavailable("injected outage".into())),
            false => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_claimed_and_completed_in_its_use_cases_store_without_probing() {
    let clock = Arc::new(ManualClock::at(Utc::now()));
    // notifications lives in `own`; the default store is down.
    let own = Arc::new(MemoryStore::new(clock.clone()));
    let down = Arc::new(InterceptedStore::new(
        Arc::new(MemoryStore::new(clock.clone())) as Arc<dyn JobStore>,
        Outage::default(),
    ));
    down.interceptor().down.store(true, Ordering::SeqCst);
    let routed: Arc<dyn JobStore> = Arc::new(
        RoutedStore::new(down.clone() as Arc<dyn JobStore>)
            .with_route(NOTIFICATIONS, own.clone() as Arc<dyn JobStore>),
    );
    let mut h = Harness::start_with(
        registry(),
        worker_config(),
        clock.clone(),
        own.clone(),
        routed,
    );
    // Enqueued by another process (the API): the worker's routed store has never seen the job.
    let api = JobService::new(own.clone(), Arc::new(platform_config())).with_clock(clock);
    let job = api
        .enqueue(EnqueueRequest::new(
            "acme",
            NOTIFICATIONS,
            "send_sms",
            json!({"to": "+1555", "text": "x"}),
        ))
        .await
        .unwrap()
        .job;
    assert_eq!(h.dispatch().await, 1);
    let done = h.wait_status(job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 1);
    let report = h.shutdown().await;
    assert_eq!((report.claimed, report.succeeded), (1, 1));
    assert_eq!(
        down.interceptor().lease_calls.load(Ordering::SeqCst),
        0,
        "the store that is down was never asked"
    );
}
