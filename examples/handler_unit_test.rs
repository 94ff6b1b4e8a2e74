//! Unit-testing your handlers and your enqueueing code with `jobs_core::testkit` — no database,
//! no queue, no worker process.
//!
//! ```sh
//! cargo run --example handler_unit_test     # runs the checks from `main` and prints them
//! cargo test --example handler_unit_test    # runs the same checks as #[tokio::test]s
//! ```
//!
//! Three tools cover most handler tests:
//! - [`run_handler`] runs one registered handler on a payload exactly as a worker would (own task,
//!   timeout, panics contained) and returns its result;
//! - [`TestPlatform`] is an in-memory store + `JobService` + manual clock: enqueue through your real
//!   code, then [`TestPlatform::work_until_idle`] runs every due job inline (lease, claim, run,
//!   record the outcome with retries and backoff) and reports what happened;
//! - [`assert_enqueued`] checks that your code enqueued exactly one job of a type, and returns it
//!   so you can look at its payload and settings.
//!
//! The job is typed: `SendEmail` implements [`JobType`], so the enqueueing code
//! ([`EnqueueRequest::of`]) and the handler ([`JobHandler`], registered with
//! `HandlerRegistry::register_job`) take its name, use case and shape from one declaration.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobs_core::testkit::{assert_enqueued, run_handler, TestPlatform};
use jobs_core::{
    EnqueueError, EnqueueRequest, HandlerError, HandlerRegistry, HandlerResult, JobContext,
    JobHandler, JobService, JobStatus, JobType,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// The application code under test.
// ---------------------------------------------------------------------------------------------

/// A `send_email` job: its payload, and where its name and use case are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SendEmail {
    to: String,
    subject: String,
    body: String,
}

impl JobType for SendEmail {
    const KIND: &'static str = "send_email";
    const USE_CASE: Option<&'static str> = Some("notifications");
}

/// Something that delivers mail; a fake in tests, SES or SMTP in production.
trait Mailer: Send + Sync + 'static {
    /// Delivers one message, or says why not (`Err(true)` = worth retrying).
    fn deliver(&self, email: &SendEmail) -> Result<(), bool>;
}

/// The `send_email` handler: rejects bad addresses for good, retries transient mailer errors.
struct SendEmailHandler<M> {
    mailer: M,
}

impl<M: Mailer> JobHandler for SendEmailHandler<M> {
    type Job = SendEmail;

    async fn handle(&self, _ctx: JobContext, email: SendEmail) -> HandlerResult {
        if !email.to.contains('@') {
            return Err(HandlerError::permanent(format!(
                "'{}' is not an email address",
                email.to
            )));
        }
        match self.mailer.deliver(&email) {
            Ok(()) => Ok(()),
            Err(true) => Err(HandlerError::retryable("mail server busy")),
            Err(false) => Err(HandlerError::permanent("mail server rejected the message")),
        }
    }
}

/// Application code that enqueues: what a signup does after creating the user.
async fn request_welcome_email(
    jobs: &JobService,
    tenant: &str,
    address: &str,
) -> Result<(), EnqueueError> {
    let email = SendEmail {
        to: address.to_owned(),
        subject: "Welcome!".to_owned(),
        body: "Thanks for signing up.".to_owned(),
    };
    // Kind "send_email", use case "notifications", the payload as JSON; a value that does not
    // serialize would come back as an invalid request.
    jobs.enqueue(
        EnqueueRequest::of(tenant, &email)?
            .max_attempts(3)
            .idempotency_key(format!("welcome:{address}")),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test doubles.
// ---------------------------------------------------------------------------------------------

/// A mailer that fails with a retryable error the first `busy_times` calls, then delivers.
#[derive(Clone, Default)]
struct FakeMailer {
    busy_times: u32,
    calls: Arc<AtomicU32>,
}

impl FakeMailer {
    fn busy_for(busy_times: u32) -> Self {
        FakeMailer {
            busy_times,
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Mailer for FakeMailer {
    fn deliver(&self, _email: &SendEmail) -> Result<(), bool> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call <= self.busy_times {
            Err(true)
        } else {
            Ok(())
        }
    }
}

fn registry(mailer: FakeMailer) -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    handlers.register_job(SendEmailHandler { mailer });
    handlers
}

// ---------------------------------------------------------------------------------------------
// The checks: each returns Err with a message instead of panicking, so `main` can report them;
// the #[cfg(test)] module runs the same functions as tests.
// ---------------------------------------------------------------------------------------------

type Check = Result<(), String>;

fn ensure(cond: bool, what: impl Into<String>) -> Check {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// One handler call, three outcomes: success, permanent failure on bad input, permanent failure
/// on a payload that does not decode.
async fn handler_runs_directly() -> Check {
    let handlers = registry(FakeMailer::default());
    let good = serde_json::json!({"to": "ada@example.com", "subject": "hi", "body": "hello"});
    let result = run_handler(&handlers, SendEmail::KIND, good).await;
    ensure(
        result.is_ok(),
        format!("valid email should succeed, got {result:?}"),
    )?;

    let bad = serde_json::json!({"to": "not-an-address", "subject": "hi", "body": "hello"});
    let result = run_handler(&handlers, SendEmail::KIND, bad).await;
    ensure(
        matches!(result, Err(HandlerError::Permanent { .. })),
        format!("a bad address should fail permanently, got {result:?}"),
    )?;

    let garbage = serde_json::json!({"recipient": 42});
    let result = run_handler(&handlers, SendEmail::KIND, garbage).await;
    ensure(
        matches!(&result, Err(HandlerError::Permanent { message }) if message.contains("does not decode")),
        format!("an undecodable payload should fail permanently, got {result:?}"),
    )
}

/// Your enqueueing code, checked with `assert_enqueued`, then worked to completion inline.
async fn signup_enqueues_one_welcome_email() -> Check {
    let platform = TestPlatform::new();
    request_welcome_email(&platform.service, "acme", "ada@example.com")
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?;
    // Idempotent: a retried signup does not send two emails.
    request_welcome_email(&platform.service, "acme", "ada@example.com")
        .await
        .map_err(|e| format!("second enqueue failed: {e}"))?;

    let job = assert_enqueued(platform.store.as_ref(), SendEmail::KIND).await;
    ensure(
        job.tenant_id == "acme",
        format!("tenant is {}", job.tenant_id),
    )?;
    ensure(
        job.status == JobStatus::Pending,
        format!("status is {}", job.status),
    )?;
    let email: SendEmail =
        serde_json::from_value(job.payload.clone()).map_err(|e| format!("payload: {e}"))?;
    ensure(
        email.to == "ada@example.com",
        format!("recipient is {}", email.to),
    )?;

    let mailer = FakeMailer::default();
    let report = platform.work_until_idle(&registry(mailer.clone())).await;
    ensure(
        report.succeeded == 1 && report.attempts == 1,
        format!("expected one successful attempt, got {report:?}"),
    )?;
    ensure(
        mailer.calls() == 1,
        format!("mailer called {} times", mailer.calls()),
    )?;
    let done = platform
        .service
        .store()
        .get(job.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the job vanished")?;
    ensure(
        done.status == JobStatus::Succeeded,
        format!("final status is {}", done.status),
    )
}

/// A transient failure is retried after its backoff: move the test clock instead of sleeping.
async fn transient_failures_are_retried_after_backoff() -> Check {
    let platform = TestPlatform::new();
    request_welcome_email(&platform.service, "acme", "bob@example.com")
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?;
    let mailer = FakeMailer::busy_for(1);
    let handlers = registry(mailer.clone());

    let first = platform.work_until_idle(&handlers).await;
    ensure(
        first.retried == 1 && first.succeeded == 0,
        format!("first pass should schedule a retry, got {first:?}"),
    )?;
    let job = assert_enqueued(platform.store.as_ref(), SendEmail::KIND).await;
    ensure(
        job.status == JobStatus::Pending && job.attempts == 1,
        format!(
            "after one failure: status {} attempts {}",
            job.status, job.attempts
        ),
    )?;

    // The retry is not due yet; jump past the longest possible backoff.
    platform.advance(job.backoff.cap + Duration::from_secs(1));
    let second = platform.work_until_idle(&handlers).await;
    ensure(
        second.succeeded == 1,
        format!("second pass should succeed, got {second:?}"),
    )?;
    ensure(
        mailer.calls() == 2,
        format!("mailer called {} times", mailer.calls()),
    )
}

/// Exhausting `max_attempts` makes the job dead (and it can then be retried by hand).
async fn exhausted_attempts_end_dead() -> Check {
    let platform = TestPlatform::new();
    request_welcome_email(&platform.service, "acme", "eve@example.com")
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?;
    let mailer = FakeMailer::busy_for(u32::MAX);
    let handlers = registry(mailer.clone());
    let mut dead = 0;
    for _ in 0..3 {
        dead += platform.work_until_idle(&handlers).await.dead;
        platform.advance(Duration::from_secs(24 * 3600));
    }
    ensure(
        dead == 1,
        format!("expected the job to die once, got {dead}"),
    )?;
    ensure(
        mailer.calls() == 3,
        format!("mailer called {} times", mailer.calls()),
    )?;
    let job = assert_enqueued(platform.store.as_ref(), SendEmail::KIND).await;
    ensure(
        job.status == JobStatus::Dead,
        format!("final status is {}", job.status),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let checks: [(&str, Check); 4] = [
        ("handler_runs_directly", handler_runs_directly().await),
        (
            "signup_enqueues_one_welcome_email",
            signup_enqueues_one_welcome_email().await,
        ),
        (
            "transient_failures_are_retried_after_backoff",
            transient_failures_are_retried_after_backoff().await,
        ),
        (
            "exhausted_attempts_end_dead",
            exhausted_attempts_end_dead().await,
        ),
    ];
    let mut failed = 0;
    for (name, result) in &checks {
        match result {
            Ok(()) => println!("ok    {name}"),
            Err(why) => {
                failed += 1;
                println!("FAIL  {name}: {why}");
            }
        }
    }
    println!(
        "{} of {} checks passed",
        checks.len() - failed,
        checks.len()
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn handler_runs_directly() {
        super::handler_runs_directly().await.unwrap();
    }

    #[tokio::test]
    async fn signup_enqueues_one_welcome_email() {
        super::signup_enqueues_one_welcome_email().await.unwrap();
    }

    #[tokio::test]
    async fn transient_failures_are_retried_after_backoff() {
        super::transient_failures_are_retried_after_backoff()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn exhausted_attempts_end_dead() {
        super::exhausted_attempts_end_dead().await.unwrap();
    }
}
