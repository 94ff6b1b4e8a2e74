//! # jobs-sqs — the async-jobs [`Transport`](jobs_core::Transport) on Amazon SQS
//!
//! One standard SQS queue per use case carries the scheduler's wake-up hints to the workers. The
//! bodies are opaque to this crate (the platform writes [`jobs_core::DispatchMessage::encode`]);
//! Postgres stays the authority, so SQS's at-least-once delivery is enough.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobs_sqs::{queue_urls_from_env, SqsTransport};
//!
//! // ASYNC_JOBS_SQS_QUEUE_<USE_CASE>=<queue URL> for each use case; AWS_REGION, credentials and
//! // optionally AWS_ENDPOINT_URL_SQS as the AWS SDK reads them.
//! let transport = SqsTransport::from_env(queue_urls_from_env()?).await?;
//! # let _ = transport; Ok(()) }
//! ```
//!
//! ## What it does for you
//!
//! - **Batches**: sends and deletes any number of entries in SQS batches of 10, maps SQS's
//!   per-entry failures back to your ids, and refuses bodies SQS would refuse before sending so one
//!   bad entry cannot fail a whole batch.
//! - **Long polling** up to 20 s with `ApproximateReceiveCount` as
//!   [`ReceivedMessage::receive_count`](jobs_core::transport::ReceivedMessage::receive_count).
//! - **Bounded time**: a connect timeout, a per-attempt timeout above each call's long-poll wait,
//!   a few retries with backoff ([`SqsOptions`]); a bounded credentials load, so a host without an
//!   instance metadata service does not hang.
//! - **Errors** by what the caller does next: unknown or missing queue →
//!   [`UnknownQueue`](jobs_core::TransportError::UnknownQueue); timeouts, I/O, throttling, 5xx →
//!   [`Unavailable`](jobs_core::TransportError::Unavailable); any other refusal →
//!   [`Rejected`](jobs_core::TransportError::Rejected).
//!
//! See `docs/sqs.md` for the configuration, the reasons behind the defaults, and testing against
//! moto (`eval "$(scripts/moto.sh start)"`).

mod batch;
mod config;
mod error;
mod options;
mod transport;

pub use config::{queue_urls_from_config, queue_urls_from_env};
pub use error::SqsConfigError;
pub use options::{SqsOptions, DEFAULT_MAX_MESSAGE_BYTES, MAX_BATCH_ENTRIES, MAX_WAIT};
pub use transport::{SqsTransport, SqsTransportBuilder};
