//! The handler side: typed handlers registered by job type, the context they run with, and what
//! they return.
//!
//! ```
//! use jobs_core::handler::{HandlerRegistry, HandlerError, JobContext};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct SendEmail { to: String }
//!
//! let mut registry = HandlerRegistry::new();
//! registry.register_fn("send_email", |ctx: JobContext, p: SendEmail| async move {
//!     if p.to.is_empty() {
//!         return Err(HandlerError::permanent("no recipient"));
//!     }
//!     tracing::info!(job_id = %ctx.job_id, to = %p.to, "sending");
//!     Ok(())
//! });
//! assert!(registry.contains("send_email"));
//! ```
//!
//! A payload type that implements [`JobType`] names its kind once, for producers and handlers:
//! register its handler with [`HandlerRegistry::register_job`] (a [`JobHandler`]) or
//! [`HandlerRegistry::register_job_fn`] (a closure), and enqueue it with
//! [`EnqueueRequest::of`](crate::EnqueueRequest::of).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::job::{Job, JobId};
use crate::job_type::JobType;

/// How a handler ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another attempt (if any are left), optionally not before `retry_after`.
    #[error("{message}")]
    Retryable {
        /// What went wrong.
        message: String,
        /// Overrides the backoff delay for the next attempt.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time (bad input, payload that does not decode): dead now.
    #[error("{message}")]
    Permanent {
        /// What went wrong.
        message: String,
    },
    /// The handler stopped because its cancellation signal fired.
    #[error("cancelled")]
    Cancelled,
}

impl HandlerError {
    /// A retryable failure.
    pub fn retryable(message: impl fmt::Display) -> Self {
        HandlerError::Retryable {
            message: message.to_string(),
            retry_after: None,
        }
    }

    /// A retryable failure whose next attempt should wait `delay`.
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> Self {
        HandlerError::Retryable {
            message: message.to_string(),
            retry_after: Some(delay),
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl fmt::Display) -> Self {
        HandlerError::Permanent {
            message: message.to_string(),
        }
    }

    /// A stable label for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            HandlerError::Retryable { .. } => "retryable",
            HandlerError::Permanent { .. } => "permanent",
            HandlerError::Cancelled => "cancelled",
        }
    }
}

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// Fires a [`CancellationSignal`].
#[derive(Debug)]
pub struct CancelHandle {
    tx: watch::Sender<bool>,
}

impl CancelHandle {
    /// Fires the signal (idempotent).
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
}

/// Tells a handler to stop. Handlers check it at convenient points, or select on
/// [`cancelled`](Self::cancelled).
#[derive(Debug, Clone)]
pub struct CancellationSignal {
    rx: watch::Receiver<bool>,
}

impl CancellationSignal {
    /// A handle and its signal.
    pub fn new() -> (CancelHandle, CancellationSignal) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle { tx }, CancellationSignal { rx })
    }

    /// A signal that never fires.
    pub fn never() -> CancellationSignal {
        let (tx, rx) = watch::channel(false);
        // Keeping no sender means `changed()` errors; `cancelled()` then waits forever.
        drop(tx);
        CancellationSignal { rx }
    }

    /// True once cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when cancellation is requested (never, if it never is).
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job.
    pub job_id: JobId,
    /// Its owner.
    pub tenant_id: String,
    /// Its use case.
    pub use_case: String,
    /// Its type.
    pub kind: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// The attempt budget.
    pub max_attempts: u32,
    /// When the job was due.
    pub run_at: DateTime<Utc>,
    /// The latest acceptable start.
    pub deadline_at: DateTime<Utc>,
    /// The attempt's time limit.
    pub timeout: Duration,
    /// Fires when the job is cancelled or the worker must stop.
    pub cancel: CancellationSignal,
    /// A span carrying job id, tenant, use case, kind and attempt.
    pub span: tracing::Span,
}

impl JobContext {
    /// The context for a claimed job.
    pub fn for_job(job: &Job, cancel: CancellationSignal) -> Self {
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            tenant_id = %job.tenant_id,
            use_case = %job.use_case,
            kind = %job.kind,
            attempt = job.attempts,
        );
        JobContext {
            job_id: job.id,
            tenant_id: job.tenant_id.clone(),
            use_case: job.use_case.clone(),
            kind: job.kind.clone(),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            deadline_at: job.deadline_at,
            timeout: job.timeout,
            cancel,
            span,
        }
    }

    /// True if this is the last attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// A typed handler for one job type.
pub trait Handler: Send + Sync + 'static {
    /// The payload type, decoded from the job's JSON payload.
    type Payload: DeserializeOwned + Send + 'static;

    /// The job type this handler runs.
    const KIND: &'static str;

    /// Runs one attempt.
    fn handle(
        &self,
        ctx: JobContext,
        payload: Self::Payload,
    ) -> impl Future<Output = HandlerResult> + Send;
}

/// A handler for the typed job [`Self::Job`](JobHandler::Job): registered with
/// [`HandlerRegistry::register_job`] under the job type's [`KIND`](JobType::KIND), given the
/// decoded job. Unlike [`Handler`], it names no kind of its own, so it cannot disagree with the
/// producers that enqueue the same type.
///
/// ```
/// use jobs_core::{HandlerError, HandlerRegistry, HandlerResult, JobContext, JobHandler, JobType};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct ResizeImage { image: String, width: u32 }
///
/// impl JobType for ResizeImage {
///     const KIND: &'static str = "resize_image";
/// }
///
/// struct Resizer { max_width: u32 }
///
/// impl JobHandler for Resizer {
///     type Job = ResizeImage;
///
///     async fn handle(&self, _ctx: JobContext, job: ResizeImage) -> HandlerResult {
///         if job.width == 0 || job.width > self.max_width {
///             return Err(HandlerError::permanent(format!("width {} is out of range", job.width)));
///         }
///         Ok(())
///     }
/// }
///
/// let mut registry = HandlerRegistry::new();
/// registry.register_job(Resizer { max_width: 4096 });
/// assert!(registry.contains(ResizeImage::KIND));
/// ```
pub trait JobHandler: Send + Sync + 'static {
    /// The job type this handler runs.
    type Job: JobType;

    /// Runs one attempt.
    fn handle(&self, ctx: JobContext, job: Self::Job)
        -> impl Future<Output = HandlerResult> + Send;
}

/// A [`JobHandler`] seen as a [`Handler`] whose kind and payload are its job type's.
struct ByJobType<H>(H);

impl<H: JobHandler> Handler for ByJobType<H> {
    type Payload = H::Job;
    const KIND: &'static str = <H::Job as JobType>::KIND;

    fn handle(
        &self,
        ctx: JobContext,
        payload: Self::Payload,
    ) -> impl Future<Output = HandlerResult> + Send {
        self.0.handle(ctx, payload)
    }
}

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

type ErasedHandler = dyn Fn(JobContext, serde_json::Value) -> HandlerFuture + Send + Sync;

/// Handlers by job type.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, Arc<ErasedHandler>>,
}

impl fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerRegistry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn decode<P: DeserializeOwned>(kind: &str, payload: serde_json::Value) -> Result<P, HandlerError> {
    serde_json::from_value(payload)
        .map_err(|e| HandlerError::permanent(format!("payload of '{kind}' does not decode: {e}")))
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        HandlerRegistry::default()
    }

    /// Registers a typed handler under [`Handler::KIND`] (replacing any earlier one).
    pub fn register<H: Handler>(&mut self, handler: H) -> &mut Self {
        let handler = Arc::new(handler);
        let erased = move |ctx: JobContext, payload: serde_json::Value| -> HandlerFuture {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let payload = decode::<H::Payload>(H::KIND, payload)?;
                handler.handle(ctx, payload).await
            })
        };
        self.handlers.insert(H::KIND.to_owned(), Arc::new(erased));
        self
    }

    /// Registers a closure for `kind`; its payload type is decoded with serde.
    pub fn register_fn<P, F, Fut>(&mut self, kind: &str, f: F) -> &mut Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let f = Arc::new(f);
        let owned_kind = kind.to_owned();
        let erased = move |ctx: JobContext, payload: serde_json::Value| -> HandlerFuture {
            let f = Arc::clone(&f);
            let kind = owned_kind.clone();
            Box::pin(async move {
                let payload = decode::<P>(&kind, payload)?;
                f(ctx, payload).await
            })
        };
        self.handlers.insert(kind.to_owned(), Arc::new(erased));
        self
    }

    /// Registers a typed-job handler under its job type's [`KIND`](JobType::KIND) (replacing any
    /// earlier one). A payload that does not decode into the job type is a permanent failure.
    pub fn register_job<H: JobHandler>(&mut self, handler: H) -> &mut Self {
        self.register(ByJobType(handler))
    }

    /// Registers a closure for the job type `J` under [`J::KIND`](JobType::KIND) (replacing any
    /// earlier one); `J` is usually inferred from the closure's argument. A payload that does not
    /// decode into `J` is a permanent failure.
    pub fn register_job_fn<J, F, Fut>(&mut self, f: F) -> &mut Self
    where
        J: JobType,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register_fn(J::KIND, f)
    }

    /// True if a handler is registered for `kind`.
    pub fn contains(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }

    /// The registered job types.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Runs the handler for `ctx.kind` on `payload`. An unknown type or an undecodable payload is a
    /// permanent failure. Panics propagate: callers that must survive them run this in a task.
    pub fn run(&self, ctx: JobContext, payload: serde_json::Value) -> HandlerFuture {
        match self.handlers.get(&ctx.kind) {
            Some(handler) => handler(ctx, payload),
            None => {
                let kind = ctx.kind.clone();
                Box::pin(async move {
                    Err(HandlerError::permanent(format!(
                        "no handler registered for type '{kind}'"
                    )))
                })
            }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the handler for `ctx.kind` in its own task with `ctx.timeout` as the limit, so that a
/// panic or a handler that never returns is contained: a panic becomes a retryable failure
/// (`"handler panicked: …"`), a timeout a retryable failure (`"timed out after …"`), and the task
/// is aborted. Workers and test helpers both run handlers through this.
pub async fn run_guarded(
    registry: &HandlerRegistry,
    ctx: JobContext,
    payload: serde_json::Value,
) -> HandlerResult {
    use tracing::Instrument;
    let timeout = ctx.timeout;
    let span = ctx.span.clone();
    let mut task = tokio::spawn(registry.run(ctx, payload).instrument(span));
    // If the caller drops this future (a worker past its drain deadline), the handler task must
    // stop too, or it would keep causing side effects after its job was released.
    let _abort_on_drop = AbortOnDrop(task.abort_handle());
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => {
            let panic = join.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(HandlerError::retryable(format!(
                "handler panicked: {message}"
            )))
        }
        Ok(Err(_cancelled)) => Err(HandlerError::retryable("handler task was cancelled")),
        Err(_elapsed) => {
            task.abort();
            Err(HandlerError::retryable(format!(
                "timed out after {timeout:?}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Echo {
        fail: Option<String>,
    }

    struct EchoHandler;

    impl Handler for EchoHandler {
        type Payload = Echo;
        const KIND: &'static str = "echo";

        async fn handle(&self, _ctx: JobContext, p: Echo) -> HandlerResult {
            match p.fail.as_deref() {
                None => Ok(()),
                Some("permanent") => Err(HandlerError::permanent("bad")),
                Some(other) => Err(HandlerError::retryable(other)),
            }
        }
    }

    fn ctx(kind: &str) -> JobContext {
        JobContext {
            job_id: crate::job::new_job_id(),
            tenant_id: "t".into(),
            use_case: "u".into(),
            kind: kind.into(),
            attempt: 1,
            max_attempts: 3,
            run_at: Utc::now(),
            deadline_at: Utc::now(),
            timeout: Duration::from_secs(1),
            cancel: CancellationSignal::never(),
            span: tracing::Span::none(),
        }
    }

    #[tokio::test]
    async fn typed_and_closure_handlers_dispatch_by_kind() {
        let mut r = HandlerRegistry::new();
        r.register(EchoHandler)
            .register_fn("double", |_ctx, n: u64| async move {
                if n.checked_mul(2).is_some() {
                    Ok(())
                } else {
                    Err(HandlerError::permanent("overflow"))
                }
            });
        assert_eq!(r.kinds().collect::<Vec<_>>(), ["double", "echo"]);
        assert_eq!(r.run(ctx("echo"), json!({})).await, Ok(()));
        assert_eq!(
            r.run(ctx("echo"), json!({"fail": "permanent"})).await,
            Err(HandlerError::permanent("bad"))
        );
        assert_eq!(
            r.run(ctx("echo"), json!({"fail": "later"})).await,
            Err(HandlerError::retryable("later"))
        );
        assert_eq!(r.run(ctx("double"), json!(4)).await, Ok(()));
        assert!(matches!(
            r.run(ctx("double"), json!(u64::MAX)).await,
            Err(HandlerError::Permanent { .. })
        ));
    }

    #[tokio::test]
    async fn undecodable_payload_and_unknown_kind_are_permanent() {
        let mut r = HandlerRegistry::new();
        r.register(EchoHandler);
        let err = r.run(ctx("echo"), json!({"fail": 7})).await.unwrap_err();
        assert!(
            matches!(&err, HandlerError::Permanent { message } if message.contains("does not decode")),
            "{err:?}"
        );
        let err = r.run(ctx("nope"), json!({})).await.unwrap_err();
        assert!(
            matches!(&err, HandlerError::Permanent { message } if message.contains("no handler")),
            "{err:?}"
        );
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
    struct Resize {
        width: u32,
    }

    impl JobType for Resize {
        const KIND: &'static str = "resize";
    }

    /// Remembers the jobs it was given; refuses width 0 for good.
    #[derive(Default)]
    struct Resizer {
        seen: std::sync::Mutex<Vec<Resize>>,
    }

    impl JobHandler for Arc<Resizer> {
        type Job = Resize;

        async fn handle(&self, _ctx: JobContext, job: Resize) -> HandlerResult {
            let width = job.width;
            self.seen.lock().unwrap().push(job);
            if width == 0 {
                return Err(HandlerError::permanent("width 0"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn job_handlers_run_under_their_job_types_kind() {
        let resizer = Arc::new(Resizer::default());
        let mut r = HandlerRegistry::new();
        r.register_job(Arc::clone(&resizer));
        assert_eq!(r.kinds().collect::<Vec<_>>(), [Resize::KIND]);

        let payload = serde_json::to_value(Resize { width: 640 }).unwrap();
        assert_eq!(r.run(ctx(Resize::KIND), payload).await, Ok(()));
        assert_eq!(
            r.run(ctx("resize"), json!({"width": 0})).await,
            Err(HandlerError::permanent("width 0"))
        );
        assert_eq!(
            *resizer.seen.lock().unwrap(),
            [Resize { width: 640 }, Resize { width: 0 }]
        );

        // A payload of the wrong shape never reaches the handler.
        let err = r
            .run(ctx("resize"), json!({"width": "wide"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HandlerError::Permanent { message }
                if message.starts_with("payload of 'resize' does not decode")),
            "{err:?}"
        );
        assert_eq!(resizer.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn job_closures_run_under_their_job_types_kind() {
        let mut r = HandlerRegistry::new();
        r.register_job_fn(|ctx: JobContext, job: Resize| async move {
            if ctx.kind == Resize::KIND && job.width > 0 {
                Ok(())
            } else {
                Err(HandlerError::permanent("unexpected"))
            }
        });
        assert!(r.contains("resize"));
        assert_eq!(r.run(ctx("resize"), json!({"width": 1})).await, Ok(()));
        let err = r
            .run(ctx("resize"), json!({"width": -1}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HandlerError::Permanent { message }
                if message.starts_with("payload of 'resize' does not decode")),
            "{err:?}"
        );
        // A later registration for the same job type replaces the earlier one, as by kind.
        r.register_job_fn(|_ctx, _job: Resize| async move { Err(HandlerError::retryable("busy")) });
        assert_eq!(
            r.run(ctx("resize"), json!({"width": 1})).await,
            Err(HandlerError::retryable("busy"))
        );
    }

    #[tokio::test]
    async fn guarded_run_contains_panics_and_timeouts() {
        let mut r = HandlerRegistry::new();
        r.register_fn("panic", |_ctx, _p: serde_json::Value| async move {
            if true {
                panic!("kaboom");
            }
            Ok(())
        });
        r.register_fn("hang", |_ctx, _p: serde_json::Value| async move {
            std::future::pending::<()>().await;
            Ok(())
        });
        r.register(EchoHandler);
        let err = run_guarded(&r, ctx("panic"), json!({})).await.unwrap_err();
        assert!(
            matches!(&err, HandlerError::Retryable { message, .. } if message.contains("kaboom")),
            "{err:?}"
        );
        let mut hang = ctx("hang");
        hang.timeout = Duration::from_millis(50);
        let err = run_guarded(&r, hang, json!({})).await.unwrap_err();
        assert!(
            matches!(&err, HandlerError::Retryable { message, .. } if message.contains("timed out")),
            "{err:?}"
        );
        assert_eq!(run_guarded(&r, ctx("echo"), json!({})).await, Ok(()));
    }

    #[tokio::test]
    async fn cancellation_signal() {
        let (handle, signal) = CancellationSignal::new();
        assert!(!signal.is_cancelled());
        let waiter = tokio::spawn({
            let s = signal.clone();
            async move { s.cancelled().await }
        });
        handle.cancel();
        waiter.await.unwrap();
        assert!(signal.is_cancelled());
        let never = CancellationSignal::never();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), never.cancelled())
                .await
                .is_err()
        );
    }
}
