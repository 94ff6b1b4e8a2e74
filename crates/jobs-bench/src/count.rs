//! Counting decorators: how many store calls and transport requests a run makes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::store::{Heartbeat, ReapReport, StatusCount, WakeupStream};
use jobs_core::transport::{EntryFailure, OutgoingMessage, Receipt, ReceivedMessage};
use jobs_core::{
    ChangeError, Dispatch, EnqueueError, Enqueued, Failure, Job, JobFilter, JobId, JobStore,
    LeaseError, LeaseToken, NewJob, Page, PageRequest, StoreError, Transport, TransportError,
};

/// Named counters.
#[derive(Debug, Default)]
pub struct Counters(std::sync::Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>);

impl Counters {
    /// Adds `n` to `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        let counter = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(name).or_default())
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, v)| ((*k).to_owned(), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// The sum of every counter.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// A [`JobStore`] that counts calls per method and forwards them.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    /// Calls per method.
    pub calls: Arc<Counters>,
}

impl<S> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            calls: Arc::default(),
        }
    }
}

#[async_trait]
impl<S: JobStore> JobStore for CountingStore<S> {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EnqueueError> {
        self.calls.add("enqueue", 1);
        self.inner.enqueue(job).await
    }
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EnqueueError> {
        self.calls.add("enqueue_many", 1);
        self.inner.enqueue_many(jobs).await
    }
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.calls.add("get", 1);
        self.inner.get(id).await
    }
    async fn list(&self, filter: &JobFilter, page: PageRequest) -> Result<Page, StoreError> {
        self.calls.add("list", 1);
        self.inner.list(filter, page).await
    }
    async fn cancel(&self, id: JobId) -> Result<Job, ChangeError> {
        self.calls.add("cancel", 1);
        self.inner.cancel(id).await
    }
    async fn retry(&self, id: JobId, quota: Option<u32>) -> Result<Job, ChangeError> {
        self.calls.add("retry", 1);
        self.inner.retry(id, quota).await
    }
    async fn lease_due(
        &self,
        use_case: &str,
        cap: u32,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Dispatch>, StoreError> {
        self.calls.add("lease_due", 1);
        self.inner.lease_due(use_case, cap, limit, lease).await
    }
    async fn claim(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Job, LeaseError> {
        self.calls.add("claim", 1);
        self.inner.claim(id, token, lease).await
    }
    async fn claim_many(
        &self,
        claims: Vec<(JobId, LeaseToken)>,
        lease: Duration,
    ) -> Vec<Result<Job, LeaseError>> {
        self.calls.add("claim_many", 1);
        self.inner.claim_many(claims, lease).await
    }
    async fn complete_many(&self, done: Vec<(JobId, LeaseToken)>) -> Vec<Result<Job, LeaseError>> {
        self.calls.add("complete_many", 1);
        self.inner.complete_many(done).await
    }
    async fn heartbeat(
        &self,
        id: JobId,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Heartbeat, LeaseError> {
        self.calls.add("heartbeat", 1);
        self.inner.heartbeat(id, token, lease).await
    }
    async fn complete(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.calls.add("complete", 1);
        self.inner.complete(id, token).await
    }
    async fn fail(
        &self,
        id: JobId,
        token: LeaseToken,
        failure: Failure,
    ) -> Result<Job, LeaseError> {
        self.calls.add("fail", 1);
        self.inner.fail(id, token, failure).await
    }
    async fn finish_cancelled(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.calls.add("finish_cancelled", 1);
        self.inner.finish_cancelled(id, token).await
    }
    async fn release(&self, id: JobId, token: LeaseToken) -> Result<Job, LeaseError> {
        self.calls.add("release", 1);
        self.inner.release(id, token).await
    }
    async fn reap_expired(&self, limit: u32) -> Result<ReapReport, StoreError> {
        self.calls.add("reap_expired", 1);
        self.inner.reap_expired(limit).await
    }
    async fn return_dispatched(
        &self,
        dispatches: Vec<(JobId, LeaseToken)>,
    ) -> Result<u64, StoreError> {
        self.calls.add("return_dispatched", 1);
        self.inner.return_dispatched(dispatches).await
    }
    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.calls.add("counts", 1);
        self.inner.counts().await
    }
    async fn prune(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        self.calls.add("prune", 1);
        self.inner.prune(older_than, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.calls.add("ping", 1);
        self.inner.ping().await
    }
    async fn subscribe(&self) -> Result<Box<dyn WakeupStream>, StoreError> {
        self.inner.subscribe().await
    }
}

/// SQS's batch size: a batch call of `n` entries is `ceil(n / 10)` requests.
const SQS_BATCH: u64 = 10;

fn requests(entries: usize) -> u64 {
    (entries as u64).div_ceil(SQS_BATCH).max(1)
}

/// A [`Transport`] that counts the SQS requests its calls amount to (`SendMessageBatch`,
/// `ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibility`) and forwards them.
#[derive(Debug)]
pub struct CountingTransport<T> {
    inner: T,
    /// Requests per kind.
    pub requests: Arc<Counters>,
}

impl<T> CountingTransport<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        CountingTransport {
            inner,
            requests: Arc::default(),
        }
    }
}

#[async_trait]
impl<T: Transport> Transport for CountingTransport<T> {
    async fn send_batch(
        &self,
        use_case: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        self.requests.add("send_batch", requests(messages.len()));
        self.inner.send_batch(use_case, messages).await
    }
    fn max_receive_batch(&self) -> u32 {
        self.inner.max_receive_batch()
    }
    async fn receive(
        &self,
        use_case: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        self.requests.add("receive", 1);
        self.inner.receive(use_case, max, wait).await
    }
    async fn delete_batch(
        &self,
        use_case: &str,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        self.requests.add("delete_batch", requests(receipts.len()));
        self.inner.delete_batch(use_case, receipts).await
    }
    async fn change_visibility(
        &self,
        use_case: &str,
        receipt: Receipt,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        self.requests.add("change_visibility", 1);
        self.inner
            .change_visibility(use_case, receipt, timeout)
            .await
    }
}
