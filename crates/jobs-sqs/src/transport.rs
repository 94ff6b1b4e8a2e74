//! [`SqsTransport`]: the [`Transport`] port on Amazon SQS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use jobs_core::transport::{
    EntryFailure, OutgoingMessage, Receipt, ReceivedMessage, Transport, TransportError,
    SQS_MAX_BATCH,
};

use crate::batch::{self, PreparedSend};
use crate::config::{self, Overrides};
use crate::error::{map_sdk_error, service_code, SqsConfigError};
use crate::options::{SqsOptions, MAX_WAIT};

/// The longest visibility timeout SQS accepts (12 hours).
const MAX_VISIBILITY_SECS: u64 = 43_200;

/// A [`Transport`] on Amazon SQS (or an emulator such as moto): one queue per use case.
///
/// Cheap to clone (the SDK client and the queue map are shared).
#[derive(Debug, Clone)]
pub struct SqsTransport {
    client: aws_sdk_sqs::Client,
    queues: Arc<BTreeMap<String, String>>,
    options: SqsOptions,
}

/// Builds an [`SqsTransport`] from the SDK's standard configuration chain plus explicit overrides.
#[derive(Debug, Clone)]
pub struct SqsTransportBuilder {
    queue_urls: BTreeMap<String, String>,
    options: SqsOptions,
    overrides: Overrides,
}

impl SqsTransportBuilder {
    /// Replaces the timeouts, retries and limits.
    pub fn options(mut self, options: SqsOptions) -> Self {
        self.options = options;
        self
    }

    /// Talks to this endpoint instead of the one the chain finds (`AWS_ENDPOINT_URL_SQS`, or AWS).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.overrides.endpoint_url = Some(url.into());
        self
    }

    /// Uses this region instead of the one the chain finds (`AWS_REGION`, profile, …).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.overrides.region = Some(region.into());
        self
    }

    /// Uses fixed credentials instead of the credentials chain (for emulators and tests: nothing
    /// else is probed, not even the instance metadata service).
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.overrides.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// Loads the configuration and builds the transport. Fails when no region is found or a
    /// queue URL is not an http(s) URL. Makes no request to SQS.
    pub async fn build(self) -> Result<SqsTransport, SqsConfigError> {
        config::check_urls(&self.queue_urls)?;
        let client = config::load_client(&self.options, self.overrides).await?;
        Ok(SqsTransport::from_client(
            client,
            self.queue_urls,
            self.options,
        ))
    }
}

impl SqsTransport {
    /// A builder over the SDK's standard chain, for these queues (use case → queue URL).
    pub fn builder<I, K, V>(queue_urls: I) -> SqsTransportBuilder
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        SqsTransportBuilder {
            queue_urls: queue_urls
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            options: SqsOptions::default(),
            overrides: Overrides::default(),
        }
    }

    /// The transport for these queues (use case → queue URL) configured by the SDK's standard
    /// chain (`AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, credentials chain) with
    /// [`SqsOptions::from_env`] (the defaults unless `ASYNC_JOBS_SQS_*` overrides are set). See [`crate::queue_urls_from_env`] for the queue map.
    pub async fn from_env<I, K, V>(queue_urls: I) -> Result<Self, SqsConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let options =
            SqsOptions::from_env().map_err(|e| SqsConfigError::Platform(e.to_string()))?;
        Self::builder(queue_urls).options(options).build().await
    }

    /// A transport on a client you configured yourself. The options' timeouts apply per call on
    /// top of the client's configuration; its retry setting is the client's own.
    pub fn from_client<I, K, V>(
        client: aws_sdk_sqs::Client,
        queue_urls: I,
        options: SqsOptions,
    ) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        SqsTransport {
            client,
            queues: Arc::new(
                queue_urls
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            options,
        }
    }

    /// The same client and options for another set of queues.
    pub fn with_queue_urls<I, K, V>(&self, queue_urls: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_client(self.client.clone(), queue_urls, self.options.clone())
    }

    /// The queue URL of a use case.
    pub fn queue_url(&self, use_case: &str) -> Option<&str> {
        self.queues.get(use_case).map(String::as_str)
    }

    /// The configured use cases.
    pub fn use_cases(&self) -> impl Iterator<Item = &str> {
        self.queues.keys().map(String::as_str)
    }

    /// The SDK client (for operations this transport does not wrap).
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// Creates a standard queue named `name` (or finds the existing one with the same attributes)
    /// and returns its URL. For tests and provisioning scripts; production queues come from
    /// infrastructure code.
    pub async fn create_queue(&self, name: &str) -> Result<String, TransportError> {
        let out = self
            .client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error(name, &e))?;
        out.queue_url().map(str::to_owned).ok_or_else(|| {
            TransportError::Unavailable(format!("CreateQueue of '{name}' returned no URL"))
        })
    }

    /// Deletes the queue at `queue_url` (test clean-up). A queue that does not exist is not an
    /// error.
    pub async fn delete_queue(&self, queue_url: &str) -> Result<(), TransportError> {
        match self.client.delete_queue().queue_url(queue_url).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_sdk_error(queue_url, &e) {
                TransportError::UnknownQueue(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn url(&self, use_case: &str) -> Result<&str, TransportError> {
        self.queue_url(use_case)
            .ok_or_else(|| TransportError::UnknownQueue(use_case.to_owned()))
    }

    fn call_override(&self, attempt: Duration) -> aws_sdk_sqs::config::Builder {
        aws_sdk_sqs::config::Builder::default()
            .timeout_config(config::timeouts(&self.options, attempt))
    }

    /// Sends one chunk; returns its failed entries.
    async fn send_chunk(
        &self,
        use_case: &str,
        url: &str,
        chunk: &[OutgoingMessage],
    ) -> Result<Vec<EntryFailure>, TransportError> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(batch::entry_id(i))
                .message_body(&m.body)
                .build()
                .map_err(|e| TransportError::Rejected(e.to_string()))?;
            entries.push(entry);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .customize()
            .config_override(self.call_override(self.options.request_timeout))
            .send()
            .await
            .map_err(|e| map_sdk_error(use_case, &e))?;
        let ids: Vec<String> = chunk.iter().map(|m| m.id.clone()).collect();
        Ok(batch::entry_failures(
            &ids,
            out.successful().iter().map(|s| s.id()),
            out.failed(),
        ))
    }

    /// Deletes one chunk; returns its failed entries (named by receipt).
    async fn delete_chunk(
        &self,
        use_case: &str,
        url: &str,
        chunk: &[Receipt],
    ) -> Result<Vec<EntryFailure>, TransportError> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, r) in chunk.iter().enumerate() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(batch::entry_id(i))
                .receipt_handle(&r.0)
                .build()
                .map_err(|e| TransportError::Rejected(e.to_string()))?;
            entries.push(entry);
        }
        let out = self
            .client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .customize()
            .config_override(self.call_override(self.options.request_timeout))
            .send()
            .await
            .map_err(|e| map_sdk_error(use_case, &e))?;
        let ids: Vec<String> = chunk.iter().map(|r| r.0.clone()).collect();
        Ok(batch::entry_failures(
            &ids,
            out.successful().iter().map(|s| s.id()),
            out.failed(),
        ))
    }
}

/// Whole seconds for SQS, rounded up so a sub-second wait still long-polls (and a sub-second
/// visibility change still hides the message), capped at `max`.
fn whole_secs(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

/// Change-visibility error codes meaning "this receipt no longer names an in-flight message":
/// deleted, redelivered under a newer receipt, or already visible.
fn is_gone(code: Option<&str>, message: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
                | "ReceiptHandleIsInvalid"
        )
    ) || (code == Some("InvalidParameterValue")
        && message.is_some_and(|m| m.contains("does not exist or is not available")))
}

#[async_trait]
impl Transport for SqsTransport {
    /// Sends in SQS batches of at most 10 entries and [`SqsOptions::max_message_bytes`] bytes.
    ///
    /// Entries SQS would refuse (empty, too large, characters outside SQS's set) are reported as
    /// failed without being sent, so they cannot fail their neighbours. Entries SQS refuses are
    /// reported with its code and message. When a whole batch call fails: if no earlier batch of
    /// this call delivered anything, the call returns the error (nothing was sent); otherwise that
    /// batch's entries and those of every later batch (not attempted) are reported as failed with
    /// the error, so the caller knows exactly which ids to retry.
    async fn send_batch(
        &self,
        use_case: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        let url = self.url(use_case)?;
        let PreparedSend {
            chunks,
            mut refused,
        } = batch::prepare_send(messages, self.options.max_message_bytes);
        let mut sent_any = false;
        for (i, chunk) in chunks.iter().enumerate() {
            match self.send_chunk(use_case, url, chunk).await {
                Ok(failures) => {
                    sent_any |= failures.len() < chunk.len();
                    refused.extend(failures);
                }
                Err(e) if !sent_any => return Err(e),
                Err(e) => {
                    tracing::warn!(use_case, error = %e, "SQS send batch failed after earlier batches were sent");
                    let reason = e.to_string();
                    let rest = chunks[i..].iter().flatten().map(|m| m.id.as_str());
                    refused.extend(batch::all_failed(rest, &reason));
                    break;
                }
            }
        }
        Ok(refused)
    }

    /// Long-polls (`WaitTimeSeconds` = `wait` rounded up to whole seconds, at most 20) for up to
    /// `max` messages (clamped to 1..=10), asking for `ApproximateReceiveCount`.
    async fn receive(
        &self,
        use_case: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, TransportError> {
        let url = self.url(use_case)?;
        let max = i32::try_from(max.clamp(1, SQS_MAX_BATCH)).unwrap_or(10);
        let wait_secs = whole_secs(wait, MAX_WAIT.as_secs());
        let attempt = self
            .options
            .receive_attempt_timeout(Duration::from_secs(u64::try_from(wait_secs).unwrap_or(20)));
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(self.call_override(attempt))
            .send()
            .await
            .map_err(|e| map_sdk_error(use_case, &e))?;
        let mut received = Vec::new();
        for m in out.messages() {
            let (Some(message_id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                tracing::warn!(
                    use_case,
                    "SQS returned a message without an id or receipt; skipped"
                );
                continue;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1);
            received.push(ReceivedMessage {
                message_id: message_id.to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receipt: Receipt(receipt.to_owned()),
                receive_count,
            });
        }
        Ok(received)
    }

    /// Deletes in SQS batches of 10 (duplicate receipts sent once). A superseded receipt of a
    /// message that still exists deletes it, and one of a deleted message is OK (as SQS does);
    /// receipts SQS cannot read are reported as failed entries named by the receipt. A whole
    /// batch call that fails is handled as in [`send_batch`](Transport::send_batch).
    async fn delete_batch(
        &self,
        use_case: &str,
        receipts: Vec<Receipt>,
    ) -> Result<Vec<EntryFailure>, TransportError> {
        let url = self.url(use_case)?;
        let chunks = batch::chunk_receipts(receipts);
        let mut failures = Vec::new();
        let mut deleted_any = false;
        for (i, chunk) in chunks.iter().enumerate() {
            match self.delete_chunk(use_case, url, chunk).await {
                Ok(f) => {
                    deleted_any |= f.len() < chunk.len();
                    failures.extend(f);
                }
                Err(e) if !deleted_any => return Err(e),
                Err(e) => {
                    tracing::warn!(use_case, error = %e, "SQS delete batch failed after earlier batches were deleted");
                    let reason = e.to_string();
                    let rest = chunks[i..].iter().flatten().map(|r| r.0.as_str());
                    failures.extend(batch::all_failed(rest, &reason));
                    break;
                }
            }
        }
        Ok(failures)
    }

    /// `ChangeMessageVisibility` with `timeout` rounded up to whole seconds (at most 12 h). A
    /// receipt that no longer names an in-flight message (deleted, superseded, already visible)
    /// is OK, as in the in-memory transport: there is nothing left to change.
    async fn change_visibility(
        &self,
        use_case: &str,
        receipt: Receipt,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let url = self.url(use_case)?;
        let result = self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(whole_secs(timeout, MAX_VISIBILITY_SECS))
            .customize()
            .config_override(self.call_override(self.options.request_timeout))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if is_gone(
                    service_code(&e),
                    e.as_service_error().and_then(ProvideErrorMetadata::message),
                ) =>
            {
                tracing::debug!(use_case, code = ?service_code(&e), "visibility change of a message no longer in flight ignored");
                Ok(())
            }
            Err(e) => Err(map_sdk_error(use_case, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up_and_cap() {
        assert_eq!(whole_secs(Duration::ZERO, 20), 0);
        assert_eq!(whole_secs(Duration::from_millis(100), 20), 1);
        assert_eq!(whole_secs(Duration::from_secs(2), 20), 2);
        assert_eq!(whole_secs(Duration::from_millis(2001), 20), 3);
        assert_eq!(whole_secs(Duration::MAX, 20), 20);
        assert_eq!(whole_secs(Duration::MAX, MAX_VISIBILITY_SECS), 43_200);
    }

    #[test]
    fn gone_receipts() {
        assert!(is_gone(Some("ReceiptHandleIsInvalid"), None));
        assert!(is_gone(
            Some("AWS.SimpleQueueService.MessageNotInflight"),
            None
        ));
        assert!(is_gone(
            Some("InvalidParameterValue"),
            Some("Value x for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.")
        ));
        assert!(!is_gone(
            Some("InvalidParameterValue"),
            Some("VisibilityTimeout is invalid")
        ));
        assert!(!is_gone(Some("AccessDenied"), None));
    }
}
