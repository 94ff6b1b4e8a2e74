//! Counting decorators: how many store calls and transport requests a run makes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobs_core::intercept::{InterceptedStore, Interceptor, StoreOp};
use jobs_core::transport::{EntryFailure, OutgoingMessage, Receipt, ReceivedMessage};
use jobs_core::{JobStore, StoreError, Transport, TransportError};

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

/// Counts store calls per method (`"claim_many"`, …), around any store.
#[derive(Debug, Default)]
pub struct CountCalls {
    /// Calls per method.
    pub calls: Arc<Counters>,
}

#[async_trait]
impl Interceptor for CountCalls {
    async fn before(&self, op: StoreOp, _entries: usize) -> Result<(), StoreError> {
        self.calls.add(op.as_str(), 1);
        Ok(())
    }
}

/// A [`JobStore`] that counts calls per method and forwards them.
pub type CountingStore = InterceptedStore<CountCalls>;

/// Wraps `inner` in a [`CountingStore`].
pub fn counting(inner: Arc<dyn JobStore>) -> CountingStore {
    InterceptedStore::new(inner, CountCalls::default())
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
    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

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
