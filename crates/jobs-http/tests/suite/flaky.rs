//! A `JobStore` wrapper that injects failures into any store, so the same tests run over the
//! in-memory store and a real one.

#![allow(unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::store::{Heartbeat, ReapReport, StatusCount, WakeupStream};
use jobs_core::{
    ChangeError, Dispatch, EnqueueError, Enqueued, Failure, Job, JobFilter, JobId, JobStore,
    LeaseError, LeaseToken, NewJob, Page, PageRequest, StoreError,
};

/// How the next enqueues fail.
#[derive(Debug, Default)]
pub struct Faults {
    /// Fail this many enqueues with `Unavailable` before touching the store.
    pub enqueue_unavailable_before: AtomicU32,
    /// Perform this many enqueues, then report `Unavailable` anyway (a lost response).
    pub enqueue_unavailable_after: AtomicU32,
    /// Fail this many enqueues with `Internal`.
    pub enqueue_internal: AtomicU32,
    /// Fail reads (get/list) with `Unavailable` while set.
    pub reads_unavailable: AtomicBool,
    /// Fail `ping` while set.
    pub ping_fails: AtomicBool,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// The wrapper.
#[derive(Debug)]
pub struct FlakyStore {
    pub inner: Arc<dyn JobStore>,
    pub faults: Faults,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn JobStore>) -> Arc<Self> {
        Arc::new(FlakyStore {
            inner,
            faults: Faults::default(),
        })
    }

    fn enqueue_fault(&self) -> Option<EnqueueError> {
        if take(&self.faults.enqueue_unavailable_before) {
            return Some(StoreError::Unavailable("injected".into()).into());
        }
        if take(&self.faults.enqueue_internal) {
            return Some(StoreError::Internal("injected secret detail".into()).into());
        }
        None
    }

    fn read_fault(&self) -> Result<(), StoreError> {
        if self.faults.reads_unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("injected".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl JobStore for FlakyStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        if let Some(e) = self.enqueue_fault() {
            return Err(e);
        }
        let out = self.inner.enqueue(job).await?;
        if take(&self.faults.enqueue_unavailable_after) {
            return Err(StoreError::Unavailable("injected after commit".into()).into());
        }
        Ok(out)
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        if let Some(e) = self.enqueue_fault() {
            return Err(e);
        }
        self.inner.enqueue_many(jobs).await
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.read_fault()?;
        self.inner.get(id).await
    }
    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        self.read_fault()?;
        self.inner.list(filter, page).await
    }
    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        self.inner.cancel(id).await
    }
    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        self.inner.retry(id, quota).await
    }
    async fn lease_due(
        &self,
        use_case: &str,
        cap: u32,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Dispatch>, StoreError> {
        self.inner.lease_due(use_case, cap, limit, lease).await
    }
    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        self.inner.claim(id, token, lease).await
    }
    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        self.inner.heartbeat(id, token, lease).await
    }
    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.inner.complete(id, token).await
    }
    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        self.inner.fail(id, token, failure).await
    }
    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.inner.finish_cancelled(id, token).await
    }
    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.inner.release(id, token).await
    }
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        self.inner.reap_expired(limit).await
    }
    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.inner.counts().await
    }
    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        self.inner.prune(older_than, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.faults.ping_fails.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.ping().await
    }
    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        self.inner.subscribe().await
    }
}

/// Every job in `store`, walking all pages (works for any store).
pub async fn all_jobs(store: &dyn JobStore) -> Vec<Job> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&JobFilter::default(), PageRequest { after, limit: 500 })
            .await
            .expect("list");
        out.extend(page.jobs);
        match page.next {
            Some(next) => after = Some(next),
            None => break out,
        }
    }
}
