//! The in-memory transport: one queue per use case with SQS-like visibility timeouts.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::transport::{
    EntryFailure, OutgoingMessage, Receipt, ReceivedMessage, Transport, TransportError,
};

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    /// The receipt of the latest delivery, the one that changes visibility.
    receipt: Option<String>,
    /// Receipts of earlier deliveries: still good for deleting the message, as on SQS.
    superseded: Vec<String>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: Vec<Stored>,
}

/// A [`Transport`] in process memory. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    queues: Arc<Mutex<BTreeMap<String, Queue>>>,
    arrived: Arc<Notify>,
    /// Numbers message ids and receipts, after a random prefix drawn once per transport: unique
    /// within the transport and its clones by the number, and in logs across processes by the
    /// prefix, without a random number (a system call each) per message.
    next_id: Arc<AtomicU64>,
    id_prefix: Arc<str>,
    visibility_timeout: Duration,
    receive_batch: u32,
}

/// The default visibility timeout (as SQS's default).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`Transport::max_receive_batch`] of the in-memory transport. Larger than SQS's 10:
/// a receive here costs no request, and a worker claims each received batch in one store round
/// trip, so bigger batches mean fewer claims and commits per job.
pub const DEFAULT_RECEIVE_BATCH: u32 = 250;

impl MemoryTransport {
    /// A transport with one empty queue per use case.
    pub fn new<I, S>(use_cases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MemoryTransport {
            queues: Arc::new(Mutex::new(
                use_cases
                    .into_iter()
                    .map(|u| (u.into(), Queue::default()))
                    .collect(),
            )),
            arrived: Arc::new(Notify::new()),
            next_id: Arc::new(AtomicU64::new(1)),
            id_prefix: Uuid::new_v4().simple().to_string()[..8].into(),
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            receive_batch: DEFAULT_RECEIVE_BATCH,
        }
    }

    /// Sets the most messages one receive returns (at least 1); [`SQS_MAX_BATCH`] mimics SQS.
    ///
    /// [`SQS_MAX_BATCH`]: crate::transport::SQS_MAX_BATCH
    pub fn with_receive_batch(mut self, max: u32) -> Self {
        self.receive_batch = max.max(1);
        self
    }

    /// Sets how long a received message stays invisible.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Messages in the use case's queue, visible or not (a test helper).
    pub fn depth(&self, use_case: &str) -> usize {
        self.lock().get(use_case).map_or(0, |q| q.messages.len())
    }

    /// A fresh id: `kind`, the transport's prefix and a number no other id of it has.
    fn fresh_id(&self, kind: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n}", self.id_prefix)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `max` visible messages, or says when the next one becomes visible.
    fn take(
        &self,
        use_case: &str,
        max: usize,
    ) -> Result<(Vec<ReceivedMessage>, Option<Instant>), TransportError> {
        let now = Instant::now();
        let mut queues = self.lock();
        let queue = queues
            .get_mut(use_case)
            .ok_or_else(|| TransportError::UnknownQueue(use_case.to_owned()))?;
        let mut out = Vec::new();
        for m in queue
            .messages
            .iter_mut()
            .filter(|m| m.visible_at <= now)
            .take(max)
        {
            let receipt = self.fresh_id("receipt");
            if let Some(old) = m.receipt.replace(receipt.clone()) {
                m.superseded.push(old);
            }
            m.receive_count += 1;
            m.visible_at = now + self.visibility_timeout;
            out.push(ReceivedMessage {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
                receipt: Receipt(receipt),
                receive_count: m.receive_count,
            });
        }
        let next_visible = queue.messages.iter().map(|m| m.visible_at).min();
        Ok((out, next_visible))
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn send_batch(
        &self,
        use_case: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        {
            let mut queues = self.lock();
            let queue = queues
                .get_mut(use_case)
                .ok_or_else(|| TransportError::UnknownQueue(use_case.to_owned()))?;
            let now = Instant::now();
            queue.messages.extend(messages.into_iter().map(|m| Stored {
                message_id: self.fresh_id("message"),
                body: m.body,
                visible_at: now,
                receive_count: 0,
                receipt: None,
                superseded: Vec::new(),
            }));
        }
        self.arrived.notify_waiters();
        Ok(Vec::new())
    }

    fn max_receive_batch(&self) -> u32 {
        self.receive_batch
    }

    async fn receive(
        &self,
        use_case: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        let max = max.clamp(1, self.receive_batch) as usize;
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a send between the look and the wait wakes us.
            let arrived = self.arrived.notified();
            let (messages, next_visible) = self.take(use_case, max)?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_visible
                .filter(|t| *t > now)
                .map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn delete_batch(
        &self,
        use_case: &str,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        let mut queues = self.lock();
        let queue = queues
            .get_mut(use_case)
            .ok_or_else(|| TransportError::UnknownQueue(use_case.to_owned()))?;
        // As on SQS (docs/sqs.md), any receipt the message was delivered with deletes it, a
        // superseded one too; a receipt of a deleted message, or an unknown one, is ignored.
        let receipts: HashSet<&str> = receipts.iter().map(|r| r.0.as_str()).collect();
        queue.messages.retain(|m| {
            let named = |r: &str| receipts.contains(r);
            !(m.receipt.as_deref().is_some_and(named) || m.superseded.iter().any(|r| named(r)))
        });
        Ok(Vec::new())
    }

    async fn change_visibility(
        &self,
        use_case: &str,
        receipt: Receipt,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        {
            let mut queues = self.lock();
            let queue = queues
                .get_mut(use_case)
                .ok_or_else(|| TransportError::UnknownQueue(use_case.to_owned()))?;
            if let Some(m) = queue
                .messages
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(receipt.0.as_str()))
            {
                m.visible_at = Instant::now() + timeout;
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UC: &str = "alpha";

    async fn receive_one(t: &MemoryTransport) -> ReceivedMessage {
        let mut got = t.receive(UC, 1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1);
        got.remove(0)
    }

    #[tokio::test]
    async fn a_superseded_receipt_still_deletes_its_message_as_on_sqs() {
        let t = MemoryTransport::new([UC]);
        t.send_batch(
            UC,
            vec![OutgoingMessage {
                id: "0".into(),
                body: "b".into(),
            }],
        )
        .await
        .unwrap();
        let first = receive_one(&t).await;
        t.change_visibility(UC, first.receipt.clone(), Duration::ZERO)
            .await
            .unwrap();
        let second = receive_one(&t).await;
        assert_eq!(second.message_id, first.message_id);
        assert_ne!(second.receipt, first.receipt);
        // The superseded receipt no longer changes visibility …
        t.change_visibility(UC, first.receipt.clone(), Duration::ZERO)
            .await
            .unwrap();
        assert!(t
            .receive(UC, 1, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty());
        // … but deletes the message, and deleting again is fine.
        t.delete_batch(UC, vec![first.receipt.clone()])
            .await
            .unwrap();
        assert_eq!(t.depth(UC), 0);
        t.delete_batch(UC, vec![second.receipt, first.receipt])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn ids_and_receipts_are_unique_and_differ_between_transports() {
        let (a, b) = (MemoryTransport::new([UC]), MemoryTransport::new([UC]));
        for t in [&a, &b] {
            t.send_batch(
                UC,
                (0..3)
                    .map(|i| OutgoingMessage {
                        id: i.to_string(),
                        body: "b".into(),
                    })
                    .collect(),
            )
            .await
            .unwrap();
        }
        let ra = a.receive(UC, 10, Duration::from_secs(1)).await.unwrap();
        let rb = b.receive(UC, 10, Duration::from_secs(1)).await.unwrap();
        let ids: HashSet<String> = ra
            .iter()
            .chain(&rb)
            .flat_map(|m| [m.message_id.clone(), m.receipt.0.clone()])
            .collect();
        assert_eq!(ids.len(), 12, "{ids:?}");
    }
}
