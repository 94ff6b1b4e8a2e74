//! The `Transport` port and the dispatch message it carries.
//!
//! A transport moves *wake-up hints* from the scheduler to workers: one queue per use case, each
//! message naming a job and the lease token of its dispatch. The message is never the authority —
//! the store is — so a lost, duplicated or late message can delay a job but never lose it or run it
//! twice. The contract, checked by [`crate::testkit::transport`]:
//!
//! - [`send_batch`](Transport::send_batch) accepts any number of messages (adapters split them into
//!   the backend's batch size) and reports per-entry failures instead of failing the whole call.
//! - [`receive`](Transport::receive) waits up to `wait` for at least one message and returns up to
//!   `max` (and never more than [`max_receive_batch`](Transport::max_receive_batch), whatever
//!   `max` says); a received message is invisible to other receivers until its visibility timeout ends,
//!   then it is delivered again with a higher `receive_count` unless deleted.
//! - [`delete_batch`](Transport::delete_batch) removes messages by receipt; deleting with a stale
//!   receipt is not an error.
//! - Sending to, receiving from or deleting on an unknown use case is
//!   [`TransportError::UnknownQueue`].

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::job::{Dispatch, JobId, LeaseToken};

/// A message to send. `id` is unique within one call and names the entry in failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Entry id (unique within the call).
    pub id: String,
    /// The body (a [`DispatchMessage`] as JSON, for the platform's own messages).
    pub body: String,
}

/// An opaque handle to delete or change the visibility of one received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The transport's message id (stable across redeliveries).
    pub message_id: String,
    /// The body as sent.
    pub body: String,
    /// The handle for delete and visibility changes of this delivery.
    pub receipt: Receipt,
    /// How many times the message has been received, this time included (1 on first delivery).
    pub receive_count: u32,
}

/// One entry of a batch that the transport did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// The entry id (the [`OutgoingMessage::id`], or the receipt for deletes).
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A transport call failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No queue is configured or exists for the use case.
    #[error("no queue for use case '{0}'")]
    UnknownQueue(String),
    /// The transport cannot be reached now (network, throttling, timeout). Retry with backoff.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// The transport refused the request (bad input, permissions). Retrying will not help.
    #[error("transport rejected the request: {0}")]
    Rejected(String),
}

impl TransportError {
    /// True when the same call may succeed if retried.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Unavailable(_))
    }
}

/// Queues of job wake-ups, one per use case.
#[cfg_attr(any(test, feature = "testkit"), mockall::automock)]
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends messages to the use case's queue. Returns the entries that failed (empty when all
    /// were accepted).
    async fn send_batch(
        &self,
        use_case: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, TransportError>;

    /// The most messages one [`receive`](Transport::receive) returns: SQS's 10 by default.
    /// Receivers ask for up to this many; an in-process transport has no request cost and can
    /// hand out larger batches, which workers then claim in one store round trip.
    fn max_receive_batch(&self) -> u32 {
        SQS_MAX_BATCH
    }

    /// Waits up to `wait` for messages and returns up to `max` of them (`max` is clamped to
    /// `1..=`[`max_receive_batch`](Transport::max_receive_batch)).
    async fn receive(
        &self,
        use_case: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError>;

    /// Deletes received messages. Returns the entries that failed.
    async fn delete_batch(
        &self,
        use_case: &str,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<EntryFailure>, TransportError>;

    /// Makes a received message visible again after `timeout` (zero = now).
    async fn change_visibility(
        &self,
        use_case: &str,
        receipt: Receipt,
        timeout: Duration,
    ) -> Result<(), TransportError>;
}

/// SQS's batch limit: the most messages one `ReceiveMessage` returns and one
/// `SendMessageBatch` / `DeleteMessageBatch` carries.
pub const SQS_MAX_BATCH: u32 = 10;

/// The version of [`DispatchMessage`] this build writes.
pub const MESSAGE_VERSION: u32 = 1;

/// The body of a dispatch message: which job to claim with which token. The payload stays in the
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchMessage {
    /// Format version ([`MESSAGE_VERSION`]).
    pub v: u32,
    /// The job.
    pub job_id: JobId,
    /// The dispatch lease token a worker must present to claim it.
    pub lease_token: LeaseToken,
    /// The use case (a check against a misrouted message).
    pub use_case: String,
    /// The job type (for logs before the claim).
    pub kind: String,
    /// The attempt this dispatch starts.
    pub attempt: u32,
}

/// A message body that is not a dispatch message this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A version this build does not read.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u32),
}

/// Bodies larger than this are refused without parsing.
pub const MAX_MESSAGE_BYTES: usize = 4096;

impl DispatchMessage {
    /// The message for a leased job.
    pub fn for_dispatch(d: &Dispatch) -> Self {
        DispatchMessage {
            v: MESSAGE_VERSION,
            job_id: d.job_id,
            lease_token: d.lease_token,
            use_case: d.use_case.clone(),
            kind: d.kind.clone(),
            attempt: d.attempt,
        }
    }

    /// The JSON body.
    pub fn encode(&self) -> String {
        // Serializing this struct (strings, numbers, UUIDs) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a body, refusing anything unexpected.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::Malformed(format!("{} bytes", body.len())));
        }
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version =
            serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if version.v != MESSAGE_VERSION {
            return Err(MessageError::UnsupportedVersion(version.v));
        }
        serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let m = DispatchMessage {
            v: MESSAGE_VERSION,
            job_id: crate::job::new_job_id(),
            lease_token: LeaseToken::generate(),
            use_case: "notifications".into(),
            kind: "send_email".into(),
            attempt: 2,
        };
        assert_eq!(DispatchMessage::decode(&m.encode()), Ok(m.clone()));
        for garbage in ["", "{", "null", "[]", "{\"v\":1}", "\u{0}", "{\"v\":\"1\"}"] {
            assert!(
                matches!(
                    DispatchMessage::decode(garbage),
                    Err(MessageError::Malformed(_))
                ),
                "{garbage:?}"
            );
        }
        let v2 = m.encode().replace("\"v\":1", "\"v\":2");
        assert_eq!(
            DispatchMessage::decode(&v2),
            Err(MessageError::UnsupportedVersion(2))
        );
        let huge = format!("{{\"v\":1,\"x\":\"{}\"}}", "a".repeat(MAX_MESSAGE_BYTES));
        assert!(DispatchMessage::decode(&huge).is_err());
    }
}
