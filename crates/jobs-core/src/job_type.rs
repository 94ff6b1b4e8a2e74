//! Typed jobs for Rust producers and handlers: a payload type declares its job type's name (and,
//! optionally, its use case) once, and both sides take it from there.
//!
//! - Producers build requests with [`EnqueueRequest::of`](crate::EnqueueRequest::of) (the
//!   declared use case) or [`EnqueueRequest::typed`](crate::EnqueueRequest::typed) (a use case
//!   named at the call): the kind is [`JobType::KIND`] and the payload the value as JSON. The
//!   request then goes through every enqueue path unchanged: [`JobService::enqueue`] and
//!   [`enqueue_many`], `validate` + a store's transactional enqueue, or the HTTP client.
//! - Handlers are registered with [`HandlerRegistry::register_job`] (a [`JobHandler`]) or
//!   [`HandlerRegistry::register_job_fn`] (a closure taking the job): under [`JobType::KIND`],
//!   given the decoded value. A payload that does not decode is a permanent failure, as for every
//!   handler.
//!
//! The JSON/HTTP path is unchanged: a typed job is an ordinary job whose `type` is its `KIND`, so
//! other languages enqueue it with the same JSON and a typed handler runs it.
//!
//! [`JobService::enqueue`]: crate::JobService::enqueue
//! [`enqueue_many`]: crate::JobService::enqueue_many
//! [`HandlerRegistry::register_job`]: crate::HandlerRegistry::register_job
//! [`HandlerRegistry::register_job_fn`]: crate::HandlerRegistry::register_job_fn
//! [`JobHandler`]: crate::JobHandler

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A job type whose payload is `Self`: the one place its name (and default use case) is written.
///
/// Implement it on the payload struct; producers and handlers then name the type, never the
/// string, so they cannot disagree on the name or the shape.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use jobs_core::testkit::TestPlatform;
/// use jobs_core::{EnqueueRequest, HandlerError, HandlerRegistry, JobContext, JobType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendSms {
///     to: String,
///     text: String,
/// }
///
/// impl JobType for SendSms {
///     const KIND: &'static str = "send_sms";
///     const USE_CASE: Option<&'static str> = Some("notifications");
/// }
///
/// // The handler: registered under "send_sms", given a `SendSms`.
/// let mut handlers = HandlerRegistry::new();
/// handlers.register_job_fn(|_ctx: JobContext, sms: SendSms| async move {
///     if sms.to.starts_with('+') { Ok(()) } else { Err(HandlerError::permanent("not E.164")) }
/// });
///
/// // The producer: kind "send_sms", use case "notifications", payload as JSON.
/// let sms = SendSms { to: "+4412345".into(), text: "hi".into() };
/// let request = EnqueueRequest::of("acme", &sms).unwrap();
/// assert_eq!((request.kind.as_str(), request.use_case.as_str()), ("send_sms", "notifications"));
///
/// let platform = TestPlatform::new();
/// platform.service.enqueue(request.max_attempts(2)).await.unwrap();
/// assert_eq!(platform.work_until_idle(&handlers).await.succeeded, 1);
/// # }
/// ```
pub trait JobType: Serialize + DeserializeOwned + Send + 'static {
    /// The job type's name: the `type` of its jobs (`kind` in the records) and the key its
    /// handler is registered under.
    const KIND: &'static str;

    /// The use case [`EnqueueRequest::of`](crate::EnqueueRequest::of) enqueues jobs of this type
    /// in. `None` (the default): callers name it with
    /// [`EnqueueRequest::typed`](crate::EnqueueRequest::typed).
    const USE_CASE: Option<&'static str> = None;
}
