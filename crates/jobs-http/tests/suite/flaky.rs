//! Failures injected into any store (through `jobs_core::intercept`), so the same tests run over
//! the in-memory store and a real one.

#![allow(unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::{Job, JobFilter, JobStore, PageRequest, StoreError};

/// How the next enqueues fail.
#[derive(Debug, Default)]
pub struct Faults {
    /// Fail this many enqueues with `Unavailable` before touching the store.
    pub enqueue_unavailable_before: AtomicU32,
    /// Perform this many enqueues, then report `Unavailable` anyway (a lost response).
    pub enqueue_unavailable_after: AtomicU32,
    /// Fail this many enqueues with `Internal`.
    pub enqueue_internal: AtomicU32,
    /// Fail this many enqueues with `Timeout` (a statement cut by the statement timeout).
    pub enqueue_timeout: AtomicU32,
    /// Fail reads (get/list) with `Unavailable` while set.
    pub reads_unavailable: AtomicBool,
    /// Fail `ping` while set.
    pub ping_fails: AtomicBool,
    /// Fail `queue_position` (the predicted start's read) while set.
    pub position_unavailable: AtomicBool,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Interceptor for Faults {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        match op {
            StoreOp::Enqueue | StoreOp::EnqueueMany => {
                if take(&self.enqueue_unavailable_before) {
                    return Err(StoreError::Unavailable("injected".into()));
                }
                if take(&self.enqueue_internal) {
                    return Err(StoreError::Internal("injected secret detail".into()));
                }
                if take(&self.enqueue_timeout) {
                    return Err(StoreError::Timeout("injected".into()));
                }
            }
            StoreOp::Get | StoreOp::List if self.reads_unavailable.load(Ordering::SeqCst) => {
                return Err(StoreError::Unavailable("injected".into()));
            }
            StoreOp::QueuePosition if self.position_unavailable.load(Ordering::SeqCst) => {
                return Err(StoreError::Unavailable("injected".into()));
            }
            StoreOp::Ping if self.ping_fails.load(Ordering::SeqCst) => {
                return Err(StoreError::Unavailable("injected".into()));
            }
            _ => {}
        }
        Ok(())
    }

    async fn after(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        if op == StoreOp::Enqueue && take(&self.enqueue_unavailable_after) {
            return Err(StoreError::Unavailable("injected after commit".into()));
        }
        Ok(())
    }
}

/// Any store with [`Faults`] switched on and off by the test (`store.interceptor()`).
pub type FlakyStore = InterceptedStore<Faults>;

/// Wraps `inner` with no fault set.
pub fn flaky(inner: Arc<dyn JobStore>) -> Arc<FlakyStore> {
    Arc::new(InterceptedStore::new(inner, Faults::default()))
}

/// Every job in `store`, walking all pages (works for any store).
pub async fn all_jobs(store: &dyn JobStore) -> Vec<Job> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&JobFilter::default(), PageRequest::new(after, 500))
            .await
            .expect("list");
        out.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => break out,
        }
    }
}
