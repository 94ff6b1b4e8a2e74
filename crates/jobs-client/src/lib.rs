//! # jobs-client — a typed async client for the async-jobs HTTP API
//!
//! Every endpoint of `jobs-http` is a method of [`JobsClient`]; failures are typed
//! ([`ClientError`]). Calls are retried with capped exponential backoff and jitter on connect
//! errors, timeouts, 5xx and 429 (honouring `Retry-After`, bounded by
//! [`ClientConfig::max_retry_after`]). An enqueue without an idempotency key gets one generated
//! **once per logical enqueue** and reused on every retry, so a retried enqueue never creates two
//! jobs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobs_client::ClientError> {
//! use std::time::Duration;
//! use jobs_client::JobsClient;
//! use jobs_core::EnqueueRequest;
//!
//! let client = JobsClient::builder("http://127.0.0.1:8080").bearer_token("s3cret").build()?;
//! let job = client
//!     .enqueue(EnqueueRequest::new("acme", "notifications", "send_sms", serde_json::json!("+4412345")))
//!     .await?;
//! let done = client.wait_for(job.id, Duration::from_secs(30)).await?;
//! println!("{} ended {}", done.id, done.status);
//! # Ok(()) }
//! ```

//! ## Typed jobs
//!
//! A payload type that implements [`jobs_core::JobType`] builds its request with
//! [`EnqueueRequest::of`](jobs_core::EnqueueRequest::of): the kind and use case come from the
//! type, the payload is its JSON, and a value that does not serialize comes back through `?` as
//! [`ClientError::Validation`] without a request being sent.
//!
//! ```no_run
//! # async fn demo(client: &jobs_client::JobsClient) -> Result<(), jobs_client::ClientError> {
//! use jobs_core::{EnqueueRequest, JobType};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendSms { to: String, text: String }
//!
//! impl JobType for SendSms {
//!     const KIND: &'static str = "send_sms";
//!     const USE_CASE: Option<&'static str> = Some("notifications");
//! }
//!
//! let sms = SendSms { to: "+4412345".into(), text: "hi".into() };
//! let job = client.enqueue(EnqueueRequest::of("acme", &sms)?.max_attempts(3)).await?;
//! assert_eq!(job.kind, SendSms::KIND);
//! # Ok(()) }
//! ```
//!
//! ## Traces
//!
//! An enqueue sends its request's [`EnqueueRequest::trace_context`](jobs_core::EnqueueRequest::trace_context)
//! as the `traceparent` / `tracestate` headers, so the job's handler span joins the caller's trace.
//! With the `otel` feature, an enqueue without one forwards the current `tracing` span's
//! OpenTelemetry context (when the application installed a `tracing-opentelemetry` layer).

mod client;
mod error;

pub use client::{
    BulkFilter, BulkResult, ClientBuilder, ClientConfig, EnqueueOutcome, JobPage, JobsClient,
    ListQuery,
};
pub use error::ClientError;
pub use jobs_core::{JobView, Prediction};
