//! # jobs-samples — the reference worker's handlers
//!
//! Sample handlers mirroring the original service: notifications (`send_email`, `send_sms`) and
//! messaging (`label_message`). `async-jobs worker` and `async-jobs dev` run them; your own worker
//! runs your own registry (see `async_jobs::app`). They live outside the worker library so the
//! runtime carries no demo code and no database driver.
//!
//! They log, simulate work and can be told to fail, which makes them useful for demos and
//! end-to-end tests. Every payload also accepts these optional fields:
//!
//! | field | effect |
//! |---|---|
//! | `"sleep_ms": n` | simulate `n` ms of work (instead of the registry's default delay); stops early on cancel |
//! | `"fail": "retryable"` | fail with a retryable error |
//! | `"fail": "permanent"` | fail with a permanent error (the job goes dead at once) |
//! | `"fail": "panic"` | panic (contained by the worker, counted as a retryable failure) |
//! | `"fail": "hang"` | never return, ignoring cancellation (the job's timeout ends it) |
//! | `"fail_times": n` | fail only the first `n` attempts (`"fail"` defaults to `"retryable"`) |
//!
//! ## Side-effect log (fault tests)
//!
//! With a [`SideEffectLog`] installed ([`install_side_effect_log`]; `async-jobs worker` and `dev` do
//! so when `ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN` is set, in `ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA`,
//! default `public`), every sample handler run inserts `(job_id, attempt, worker_pid, at)` into a
//! `handler_runs` table with `UNIQUE (job_id, attempt)` when it starts, and stamps `ok_at` when it
//! returns `Ok`. A second run of the same attempt increments `duplicates` instead of failing. Off
//! by default.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use jobs_core::testkit::run_handler;
//! use jobs_samples::sample_registry;
//! use serde_json::json;
//!
//! let handlers = sample_registry();
//! let ok = json!({"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 0});
//! assert!(run_handler(&handlers, "send_email", ok).await.is_ok());
//! let bad = json!({"to": "ada@example.com", "subject": "hi", "body": "x", "fail": "permanent"});
//! assert!(run_handler(&handlers, "send_email", bad).await.is_err());
//! # }
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jobs_core::{Handler, HandlerError, HandlerRegistry, HandlerResult, JobContext, JobId};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The variable naming the database of the side-effect log (off when unset).
pub const ENV_SIDE_EFFECTS_DSN: &str = "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_DSN";
/// The variable naming the schema of the side-effect log's `handler_runs` table (default `public`).
pub const ENV_SIDE_EFFECTS_SCHEMA: &str = "ASYNC_JOBS_SAMPLE_SIDE_EFFECTS_SCHEMA";

/// How long the log keeps trying one write while the database is unreachable.
const SIDE_EFFECT_PATIENCE: Duration = Duration::from_secs(30);

/// The side-effect log could not be set up or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SideEffectError {
    /// The connection string or its TLS settings are not usable.
    #[error(transparent)]
    Config(#[from] jobs_postgres::DbConfigError),
    /// The schema name is not a plain identifier.
    #[error("invalid {ENV_SIDE_EFFECTS_SCHEMA}: expected letters, digits and '_', got '{0}'")]
    BadSchema(String),
    /// The database could not be reached or refused the write.
    #[error("side-effect log unavailable: {0}")]
    Unavailable(String),
}

/// Records every sample-handler run in `<schema>.handler_runs` (see the module docs), so a test
/// can count how many times each job's handler really ran. Reconnects after database failures.
#[derive(Debug)]
pub struct SideEffectLog {
    connector: jobs_postgres::PgConnector,
    schema: String,
    pid: u32,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl SideEffectLog {
    /// A log writing to `dsn`, in `schema` (created with the table on first use). TLS as the
    /// platform's connections: `sslmode` / `sslrootcert` in `dsn`, and `ca_file` (the process's
    /// `ASYNC_JOBS_DB_CA_FILE`) as the trusted roots when the DSN names none.
    pub fn new(
        dsn: &str,
        schema: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, SideEffectError> {
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(SideEffectError::BadSchema(
                schema.chars().take(80).collect(),
            ));
        }
        let connector = jobs_postgres::PgConnector::new(dsn, ca_file)
            .map_err(|e| e.for_dsn_setting(ENV_SIDE_EFFECTS_DSN))?;
        Ok(SideEffectLog {
            connector,
            schema: schema.to_owned(),
            pid: std::process::id(),
            client: Mutex::new(None),
        })
    }

    /// The `CREATE` statements of the table (idempotent).
    pub fn ddl(schema: &str) -> String {
        format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".handler_runs (
                 job_id uuid NOT NULL,
                 attempt bigint NOT NULL,
                 worker_pid bigint NOT NULL,
                 at timestamptz NOT NULL DEFAULT clock_timestamp(),
                 ok_at timestamptz,
                 duplicates integer NOT NULL DEFAULT 0,
                 UNIQUE (job_id, attempt)
             );"
        )
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, SideEffectError> {
        let unavailable = |e: tokio_postgres::Error| SideEffectError::Unavailable(e.to_string());
        let client = self
            .connector
            .connect_spawned()
            .await
            .map_err(SideEffectError::Unavailable)?;
        // Concurrent first runs may race on CREATE ... IF NOT EXISTS; serialise them.
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock(7707); {} SELECT pg_advisory_unlock(7707);",
                SideEffectLog::ddl(&self.schema)
            ))
            .await
            .map_err(unavailable)?;
        Ok(client)
    }

    /// Runs `sql` with `(job_id, attempt, pid)`, reconnecting and retrying for a while when the
    /// database is unreachable.
    async fn write(&self, sql: &str, job_id: JobId, attempt: u32) -> Result<(), SideEffectError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let result = async {
                let mut guard = self.client.lock().await;
                let client = match guard.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => self.connect().await?,
                };
                let done = client
                    .execute(sql, &[&job_id, &i64::from(attempt), &i64::from(self.pid)])
                    .await
                    .map(|_| ())
                    .map_err(|e| SideEffectError::Unavailable(e.to_string()));
                if done.is_ok() {
                    *guard = Some(client);
                }
                done
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() < SIDE_EFFECT_PATIENCE => {
                    tracing::warn!(error = %e, "side-effect log write failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records that attempt `attempt` of `job_id` started here.
    pub async fn record_start(&self, job_id: JobId, attempt: u32) -> Result<(), SideEffectError> {
        let sql = format!(
            "INSERT INTO \"{}\".handler_runs (job_id, attempt, worker_pid) VALUES ($1, $2, $3)
             ON CONFLICT (job_id, attempt) DO UPDATE
             SET duplicates = handler_runs.duplicates + 1, worker_pid = EXCLUDED.worker_pid",
            self.schema
        );
        self.write(&sql, job_id, attempt).await
    }

    /// Records that attempt `attempt` of `job_id` returned `Ok` here.
    pub async fn record_ok(&self, job_id: JobId, attempt: u32) -> Result<(), SideEffectError> {
        let sql = format!(
            "UPDATE \"{}\".handler_runs SET ok_at = clock_timestamp()
             WHERE job_id = $1 AND attempt = $2 AND worker_pid = $3",
            self.schema
        );
        self.write(&sql, job_id, attempt).await
    }
}

static SIDE_EFFECT_LOG: OnceLock<Arc<SideEffectLog>> = OnceLock::new();

/// Makes every sample handler of this process record its runs in `log`. Returns `false` (and
/// changes nothing) if a log was installed already.
pub fn install_side_effect_log(log: Arc<SideEffectLog>) -> bool {
    SIDE_EFFECT_LOG.set(log).is_ok()
}

/// Called first by every sample handler: records the run when a log is installed. A log that
/// stays unreachable fails the attempt (retryable), so no run goes unrecorded.
async fn run_started(ctx: &JobContext) -> HandlerResult {
    if let Some(log) = SIDE_EFFECT_LOG.get() {
        log.record_start(ctx.job_id, ctx.attempt)
            .await
            .map_err(HandlerError::retryable)?;
    }
    Ok(())
}

/// Called by every sample handler that is about to return `Ok`.
async fn run_succeeded(ctx: &JobContext) -> HandlerResult {
    if let Some(log) = SIDE_EFFECT_LOG.get() {
        log.record_ok(ctx.job_id, ctx.attempt)
            .await
            .map_err(HandlerError::retryable)?;
    }
    Ok(())
}

/// The `send_email` job type.
pub const SEND_EMAIL: &str = "send_email";
/// The `send_sms` job type.
pub const SEND_SMS: &str = "send_sms";
/// The `label_message` job type.
pub const LABEL_MESSAGE: &str = "label_message";

/// How a demo payload asks a sample handler to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// A retryable error.
    Retryable,
    /// A permanent error.
    Permanent,
    /// A panic.
    Panic,
    /// Never return.
    Hang,
}

/// The demo controls every sample payload accepts (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DemoControls {
    /// How to fail.
    #[serde(default)]
    pub fail: Option<FailMode>,
    /// Fail only attempts up to this one.
    #[serde(default)]
    pub fail_times: Option<u32>,
    /// Simulated work, in milliseconds.
    #[serde(default)]
    pub sleep_ms: Option<u64>,
}

impl DemoControls {
    /// Simulates work (`sleep_ms`, else `default_delay`), then fails as asked. Cancellation during
    /// the work returns [`HandlerError::Cancelled`].
    pub async fn apply(&self, ctx: &JobContext, default_delay: Duration) -> HandlerResult {
        let work = self.sleep_ms.map_or(default_delay, Duration::from_millis);
        if !work.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(work) => {}
                () = ctx.cancel.cancelled() => return Err(HandlerError::Cancelled),
            }
        }
        let mode = match (self.fail, self.fail_times) {
            (None, None) => return Ok(()),
            (_, Some(n)) if ctx.attempt > n => return Ok(()),
            (mode, _) => mode.unwrap_or(FailMode::Retryable),
        };
        match mode {
            FailMode::Retryable => Err(HandlerError::retryable(format!(
                "simulated retryable failure (attempt {})",
                ctx.attempt
            ))),
            FailMode::Permanent => Err(HandlerError::permanent("simulated permanent failure")),
            FailMode::Panic => panic!("simulated panic (attempt {})", ctx.attempt),
            FailMode::Hang => std::future::pending().await,
        }
    }
}

/// Options shared by the sample handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOptions {
    /// Simulated work when a payload gives no `sleep_ms`.
    pub work_delay: Duration,
}

impl Default for SampleOptions {
    /// 50 ms of simulated work.
    fn default() -> Self {
        SampleOptions {
            work_delay: Duration::from_millis(50),
        }
    }
}

/// `send_email` input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendEmailPayload {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// Demo controls.
    #[serde(flatten)]
    pub demo: DemoControls,
}

/// Sends an email (simulated). A recipient without `@` is a permanent failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendEmail(pub SampleOptions);

impl Handler for SendEmail {
    type Payload = SendEmailPayload;
    const KIND: &'static str = SEND_EMAIL;

    async fn handle(&self, ctx: JobContext, p: SendEmailPayload) -> HandlerResult {
        run_started(&ctx).await?;
        if !p.to.contains('@') {
            return Err(HandlerError::permanent(format!(
                "'{}' is not an email address",
                p.to
            )));
        }
        p.demo.apply(&ctx, self.0.work_delay).await?;
        run_succeeded(&ctx).await?;
        tracing::info!(to = %p.to, subject = %p.subject, body_len = p.body.len(), "email sent");
        Ok(())
    }
}

/// `send_sms` input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendSmsPayload {
    /// Recipient number (E.164, starting with `+`).
    pub to: String,
    /// Message text.
    pub text: String,
    /// Demo controls.
    #[serde(flatten)]
    pub demo: DemoControls,
}

/// Sends an SMS (simulated). A number not starting with `+` is a permanent failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendSms(pub SampleOptions);

impl Handler for SendSms {
    type Payload = SendSmsPayload;
    const KIND: &'static str = SEND_SMS;

    async fn handle(&self, ctx: JobContext, p: SendSmsPayload) -> HandlerResult {
        run_started(&ctx).await?;
        if !p.to.starts_with('+') {
            return Err(HandlerError::permanent(format!(
                "'{}' is not an E.164 number",
                p.to
            )));
        }
        p.demo.apply(&ctx, self.0.work_delay).await?;
        run_succeeded(&ctx).await?;
        tracing::info!(to = %p.to, text_len = p.text.chars().count(), "sms sent");
        Ok(())
    }
}

/// `label_message` input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelMessagePayload {
    /// The message being labelled.
    pub message_id: String,
    /// Its text.
    pub text: String,
    /// Demo controls.
    #[serde(flatten)]
    pub demo: DemoControls,
}

/// Labels a message by keyword rules and logs the labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelMessage(pub SampleOptions);

const LABEL_RULES: &[(&str, &[&str])] = &[
    ("urgent", &["urgent", "asap", "immediately", "emergency"]),
    (
        "billing",
        &["invoice", "payment", "refund", "charge", "billing"],
    ),
    ("support", &["error", "bug", "crash", "broken", "help"]),
    ("sales", &["pricing", "quote", "demo", "trial"]),
    (
        "feedback",
        &["love", "great", "thanks", "awful", "feedback"],
    ),
];

/// The labels the keyword rules give `text` (sorted, `"other"` when none applies; a `?` adds
/// `"question"`).
pub fn labels_for(text: &str) -> Vec<&'static str> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut labels: Vec<&'static str> = LABEL_RULES
        .iter()
        .filter(|(_, keywords)| keywords.iter().any(|k| words.contains(k)))
        .map(|(label, _)| *label)
        .collect();
    if lower.contains('?') {
        labels.push("question");
    }
    if labels.is_empty() {
        labels.push("other");
    }
    labels.sort_unstable();
    labels
}

impl Handler for LabelMessage {
    type Payload = LabelMessagePayload;
    const KIND: &'static str = LABEL_MESSAGE;

    async fn handle(&self, ctx: JobContext, p: LabelMessagePayload) -> HandlerResult {
        run_started(&ctx).await?;
        if p.message_id.trim().is_empty() {
            return Err(HandlerError::permanent("message_id is empty"));
        }
        p.demo.apply(&ctx, self.0.work_delay).await?;
        let labels = labels_for(&p.text);
        run_succeeded(&ctx).await?;
        tracing::info!(message_id = %p.message_id, ?labels, "message labelled");
        Ok(())
    }
}

/// The three sample handlers with the default options.
pub fn sample_registry() -> HandlerRegistry {
    sample_registry_with(SampleOptions::default())
}

/// The three sample handlers with `options`.
pub fn sample_registry_with(options: SampleOptions) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry
        .register(SendEmail(options))
        .register(SendSms(options))
        .register(LabelMessage(options));
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::testkit::{run_handler, test_context};
    use serde_json::json;

    #[test]
    fn keyword_labels() {
        assert_eq!(
            labels_for("URGENT: the invoice payment failed with an error"),
            vec!["billing", "support", "urgent"]
        );
        assert_eq!(labels_for("Can I get a quote?"), vec!["question", "sales"]);
        assert_eq!(labels_for("hello there"), vec!["other"]);
        assert_eq!(labels_for(""), vec!["other"]);
    }

    #[tokio::test]
    async fn demo_controls() {
        let r = sample_registry_with(SampleOptions {
            work_delay: Duration::ZERO,
        });
        let sms = |extra: serde_json::Value| {
            let mut p = json!({"to": "+441234", "text": "hi"});
            if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
                p.extend(extra.clone());
            }
            p
        };
        assert_eq!(run_handler(&r, SEND_SMS, sms(json!({}))).await, Ok(()));
        let err = run_handler(&r, SEND_SMS, sms(json!({"fail": "retryable"}))).await;
        assert!(
            matches!(err, Err(HandlerError::Retryable { .. })),
            "{err:?}"
        );
        let err = run_handler(&r, SEND_SMS, sms(json!({"fail": "permanent"}))).await;
        assert!(
            matches!(err, Err(HandlerError::Permanent { .. })),
            "{err:?}"
        );
        let err = run_handler(&r, SEND_SMS, sms(json!({"fail": "panic"}))).await;
        assert!(
            matches!(&err, Err(HandlerError::Retryable { message, .. }) if message.contains("panicked")),
            "{err:?}"
        );
        // fail_times: attempt 1 (the test context's) fails when n = 1, passes when n = 0.
        let err = run_handler(&r, SEND_SMS, sms(json!({"fail_times": 1}))).await;
        assert!(
            matches!(err, Err(HandlerError::Retryable { .. })),
            "{err:?}"
        );
        assert_eq!(
            run_handler(&r, SEND_SMS, sms(json!({"fail_times": 0}))).await,
            Ok(())
        );
        let err = run_handler(&r, SEND_SMS, json!({"to": "0800", "text": "x"})).await;
        assert!(
            matches!(err, Err(HandlerError::Permanent { .. })),
            "{err:?}"
        );
        let err = run_handler(&r, SEND_SMS, json!({"to": "+1", "fail": "sometimes"})).await;
        assert!(
            matches!(err, Err(HandlerError::Permanent { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn hang_is_ended_by_the_timeout_and_sleep_by_cancel() {
        let r = sample_registry();
        let mut ctx = test_context(SEND_EMAIL);
        ctx.timeout = Duration::from_millis(50);
        let p = json!({"to": "a@b", "subject": "s", "body": "b", "fail": "hang"});
        let err = jobs_core::run_guarded(&r, ctx, p).await;
        assert!(
            matches!(&err, Err(HandlerError::Retryable { message, .. }) if message.contains("timed out")),
            "{err:?}"
        );

        let (cancel, signal) = jobs_core::CancellationSignal::new();
        let mut ctx = test_context(LABEL_MESSAGE);
        ctx.cancel = signal;
        cancel.cancel();
        let p = json!({"message_id": "m1", "text": "hi", "sleep_ms": 60_000});
        assert_eq!(
            jobs_core::run_guarded(&r, ctx, p).await,
            Err(HandlerError::Cancelled)
        );
    }
}
