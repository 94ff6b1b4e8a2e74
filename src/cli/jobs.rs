//! `async-jobs jobs …`, `pause`, `resume` and `pauses`: the operator's commands over the HTTP API (the same API and the same
//! authentication as any client, so they work against a deployed API).
//!
//! Where: `--api-url` or `ASYNC_JOBS_API_URL` (default `http://127.0.0.1:8080`); who:
//! `--token` or `ASYNC_JOBS_API_TOKEN` (the operator token sees every tenant, a tenant key its
//! own). Output: a table for people, `--output json` for scripts. Exit status (stable, for
//! scripts): see [`Exit`].

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use async_jobs::app::settings::redact_url;
use async_jobs::core::{EnqueueRequest, Env, Job, JobId, JobStatus, Pause, PauseScope};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use jobs_client::{BulkFilter, ClientError, JobView, JobsClient, ListQuery};
use serde_json::json;

/// The API's address.
pub(crate) const API_URL_VAR: &str = "ASYNC_JOBS_API_URL";
/// The bearer token the commands present.
pub(crate) const API_TOKEN_VAR: &str = "ASYNC_JOBS_API_TOKEN";
const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// The exit status of an operator command: one per kind of outcome, so a script can branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: the API could not be reached, timed out or failed (5xx): try again later.
    Unavailable = 1,
    /// 2: bad command line or setting (clap's usage errors are 2 as well), including an API URL
    /// that does not lead to the API (404 `unknown_route`).
    Usage = 2,
    /// 3: no such job or schedule (or not visible with these credentials).
    NotFound = 3,
    /// 4: the credentials were refused (401/403).
    Auth = 4,
    /// 5: the API refused the request (invalid input, a transition the job's status does not
    /// allow, a quota).
    Refused = 5,
}

impl Exit {
    pub(crate) fn of(e: &ClientError) -> Exit {
        match e {
            ClientError::JobNotFound { .. } => Exit::NotFound,
            ClientError::RemoteHttp {
                status: 404, code, ..
            } if code == "schedule_not_found" => Exit::NotFound,
            ClientError::AuthToken { .. } => Exit::Auth,
            ClientError::Validation { .. } | ClientError::QuotaExceeded { .. } => Exit::Refused,
            // 404 other than a missing job: no such route, so the API URL (or prefix) is wrong.
            ClientError::RemoteHttp { status: 404, .. } => Exit::Usage,
            ClientError::RemoteHttp { status, .. } if *status < 500 => Exit::Refused,
            ClientError::Config(_) => Exit::Usage,
            _ => Exit::Unavailable,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Where the API is and how to call it.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The API's base URL [default: ASYNC_JOBS_API_URL, else http://127.0.0.1:8080].
    #[arg(long, global = true)]
    api_url: Option<String>,
    /// The bearer token: the operator token or a tenant key [default: ASYNC_JOBS_API_TOKEN].
    #[arg(long, global = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts (the API's job objects).
    Json,
}

/// The job commands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List jobs, newest first (filters combine; --all follows the cursor to the end).
    List(ListArgs),
    /// Show one job, with its payload.
    Get {
        /// The job id.
        id: JobId,
    },
    /// Put a dead, cancelled or expired job back to pending (a fresh set of attempts).
    Retry {
        /// The job id.
        id: JobId,
    },
    /// Cancel a job (pending at once; a running one when its handler stops).
    Cancel {
        /// The job id.
        id: JobId,
    },
    /// Enqueue one job.
    Enqueue(EnqueueArgs),
    /// Retry every dead, cancelled or expired job the filters match (quotas hold: a retry over quota is
    /// skipped and counted), in batches of --limit until none is left.
    BulkRetry(BulkArgs),
    /// Cancel every pending, dispatched or running job the filters match, in batches.
    BulkCancel(BulkArgs),
}

/// The job filters `jobs list`, `bulk-retry` and `bulk-cancel` share.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Use case.
    #[arg(long)]
    use_case: Option<String>,
    /// Status (pending, dispatched, running, succeeded, dead, cancelled, expired).
    #[arg(long, value_parser = parse_status)]
    status: Option<JobStatus>,
    /// Job type.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    created_after: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    created_before: Option<DateTime<Utc>>,
}

/// Filters of `jobs bulk-retry` and `bulk-cancel`.
#[derive(Debug, Args)]
pub(crate) struct BulkArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Jobs per call (1 to 10000; the API's default 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: Option<u32>,
}

/// Filters of `jobs list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Jobs per page (1 to 500).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: Option<u32>,
    /// Start from this cursor (a previous page's next_cursor).
    #[arg(long)]
    cursor: Option<String>,
    /// Every page, not only the first.
    #[arg(long)]
    all: bool,
}

/// What `jobs enqueue` sends.
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    /// Tenant.
    #[arg(long)]
    tenant: String,
    /// Use case.
    #[arg(long)]
    use_case: String,
    /// Job type (the handler's name).
    #[arg(long = "type")]
    kind: String,
    /// The payload, as JSON.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    payload: serde_json::Value,
    /// Idempotency key: a second enqueue with it returns the first job.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Attempts before the job is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// How late after it is due the job may still start (seconds).
    #[arg(long)]
    tolerance_seconds: Option<u64>,
    /// `true`: not started by its deadline, the job ends `expired` instead of running late;
    /// absent: the use case's default.
    #[arg(long)]
    expire_at_deadline: Option<bool>,
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    s.parse::<JobStatus>().map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time like 2026-12-03T10:00:00Z: {e}"))
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("expected JSON: {e}"))
}

/// The client the flags and the environment describe (one snapshot, flags win).
fn client(conn: &Connection) -> Result<JobsClient, String> {
    let env = Env::from_process();
    let url = conn
        .api_url
        .clone()
        .or_else(|| env.get(API_URL_VAR).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let token = conn
        .token
        .clone()
        .or_else(|| env.get(API_TOKEN_VAR).map(str::to_owned));
    let mut builder = JobsClient::builder(url).timeout(Duration::from_secs(30));
    if let Some(token) = token {
        builder = builder.bearer_token(token);
    }
    builder.build().map_err(|e| e.to_string())
}

/// `--print-config` of the job commands: where they would call, and whether with a token.
pub(crate) fn describe(conn: &Connection) -> serde_json::Value {
    let env = Env::from_process();
    json!({
        "command": "jobs",
        "api_url": redact_url(
            &conn
                .api_url
                .clone()
                .or_else(|| env.get(API_URL_VAR).map(str::to_owned))
                .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
        ),
        "token": conn.token.is_some() || env.is_set(API_TOKEN_VAR),
        "output": match conn.output { Output::Table => "table", Output::Json => "json" },
    })
}

/// Runs a job command and returns its exit status (errors go to stderr as one line).
pub(crate) fn run(conn: &Connection, command: JobsCommand) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        match command {
            JobsCommand::List(args) => list(&client, args).await.map(|(jobs, next)| {
                print_list(output, &jobs, next.as_deref());
            }),
            JobsCommand::Get { id } => client.get_view(id).await.map(|v| print_view(output, &v)),
            JobsCommand::Retry { id } => client.retry(id).await.map(|j| print_job(output, &j)),
            JobsCommand::Cancel { id } => client.cancel(id).await.map(|j| print_job(output, &j)),
            JobsCommand::Enqueue(args) => {
                let mut req =
                    EnqueueRequest::new(args.tenant, args.use_case, args.kind, args.payload);
                if let Some(key) = args.idempotency_key {
                    req = req.idempotency_key(key);
                }
                if let Some(n) = args.max_attempts {
                    req = req.max_attempts(n);
                }
                if let Some(s) = args.tolerance_seconds {
                    req = req.delay_tolerance(Duration::from_secs(s));
                }
                if let Some(expire) = args.expire_at_deadline {
                    req = req.expire_at_deadline(expire);
                }
                client.enqueue(req).await.map(|j| print_job(output, &j))
            }
            JobsCommand::BulkRetry(args) => bulk(&client, output, true, args).await,
            JobsCommand::BulkCancel(args) => bulk(&client, output, false, args).await,
        }
    })
}

/// Runs a bulk action batch by batch until no job is left, and prints the totals.
async fn bulk(
    client: &JobsClient,
    output: Output,
    retry: bool,
    args: BulkArgs,
) -> Result<(), ClientError> {
    let f = args.filter;
    let mut filter = BulkFilter {
        tenant_id: f.tenant,
        use_case: f.use_case,
        status: f.status,
        kind: f.kind,
        created_after: f.created_after,
        created_before: f.created_before,
        limit: args.limit,
        cursor: None,
    };
    let (mut matched, mut changed, mut skipped_status, mut skipped_quota, mut calls) =
        (0, 0, 0, 0, 0u64);
    loop {
        let r = match retry {
            true => client.bulk_retry(&filter).await?,
            false => client.bulk_cancel(&filter).await?,
        };
        calls += 1;
        matched += r.matched;
        changed += r.changed;
        skipped_status += r.skipped_status;
        skipped_quota += r.skipped_quota;
        match r.next_cursor {
            Some(next) if filter.cursor.as_deref() == Some(next.as_str()) => {
                return Err(ClientError::InvalidResponse(
                    "the API answered a batch with the cursor it was asked for".to_owned(),
                ))
            }
            Some(next) => filter.cursor = Some(next),
            None => break,
        }
    }
    match output {
        Output::Json => out(&format!(
            "{}\n",
            json!({"matched": matched, "changed": changed, "skipped_status": skipped_status,
                   "skipped_quota": skipped_quota, "calls": calls})
        )),
        Output::Table => out(&format!(
            "{} {changed} of {matched} matching jobs (skipped: {skipped_status} by status, \
             {skipped_quota} over quota; {calls} calls)\n",
            if retry { "retried" } else { "cancelled" }
        )),
    }
    Ok(())
}

/// What `async-jobs pause` and `resume` act on.
#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    /// The use case.
    use_case: String,
    /// Only this tenant within the use case (default: every tenant).
    #[arg(long)]
    tenant: Option<String>,
}

impl PauseArgs {
    fn scope(self) -> PauseScope {
        match self.tenant {
            Some(t) => PauseScope::tenant(self.use_case, t),
            None => PauseScope::use_case(self.use_case),
        }
    }
}

/// `async-jobs pause`: prints the pause in force.
pub(crate) fn pause(conn: &Connection, args: PauseArgs) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        let pause = client.pause(&args.scope()).await?;
        print_pauses(output, std::slice::from_ref(&pause));
        Ok(())
    })
}

/// `async-jobs resume`: prints whether it was paused.
pub(crate) fn resume(conn: &Connection, args: PauseArgs) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        let scope = args.scope();
        let resumed = client.resume(&scope).await?;
        match output {
            Output::Json => out(&format!(
                "{}\n",
                json!({"use_case": scope.use_case, "tenant_id": scope.tenant_id, "resumed": resumed})
            )),
            Output::Table => out(&format!(
                "{} {}\n",
                describe_scope(&scope),
                if resumed { "resumed" } else { "was not paused" }
            )),
        }
        Ok(())
    })
}

/// `async-jobs pauses`: prints the pauses in force.
pub(crate) fn pauses(conn: &Connection) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        let pauses = client.pauses().await?;
        print_pauses(output, &pauses);
        Ok(())
    })
}

/// `async-jobs rate-limits`: prints the rate limits in force.
pub(crate) fn rate_limits(conn: &Connection) -> ExitCode {
    let output = conn.output;
    call(conn, |client| async move {
        let limits = client.rate_limits().await?;
        if output == Output::Json {
            out(&format!("{}\n", json!({"rate_limits": limits})));
            return Ok(());
        }
        let rows: Vec<[String; 4]> = limits
            .iter()
            .map(|l| {
                [
                    l.use_case.clone(),
                    l.tenant_id.clone().unwrap_or_else(|| "*".to_owned()),
                    l.per_second.to_string(),
                    l.burst.to_string(),
                ]
            })
            .collect();
        out(&table(
            &["USE CASE", "TENANT", "PER SECOND", "BURST"],
            &rows,
        ));
        out(&format!("({} limits)\n", rows.len()));
        Ok(())
    })
}

fn describe_scope(scope: &PauseScope) -> String {
    match &scope.tenant_id {
        Some(t) => format!("{} (tenant {t})", scope.use_case),
        None => format!("{} (every tenant)", scope.use_case),
    }
}

fn print_pauses(output: Output, pauses: &[Pause]) {
    if output == Output::Json {
        out(&format!("{}\n", json!({"pauses": pauses})));
        return;
    }
    let rows: Vec<[String; 3]> = pauses
        .iter()
        .map(|p| {
            [
                p.scope.use_case.clone(),
                p.scope.tenant_id.clone().unwrap_or_else(|| "*".to_owned()),
                time(Some(p.paused_at)),
            ]
        })
        .collect();
    out(&table(&["USE CASE", "TENANT", "PAUSED AT"], &rows));
    out(&format!("({} paused)\n", rows.len()));
}

/// Runs `body` with the client the flags and environment describe, on a small runtime, and maps
/// the outcome to the exit status (errors go to stderr as one line).
pub(crate) fn call<F, Fut>(conn: &Connection, body: F) -> ExitCode
where
    F: FnOnce(JobsClient) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let client = match client(conn) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("async-jobs: {e}");
            return Exit::Usage.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("async-jobs: cannot start the async runtime: {e}");
            return Exit::Unavailable.into();
        }
    };
    match runtime.block_on(body(client)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            eprintln!("async-jobs: {}", e.to_string().replace('\n', " "));
            Exit::of(&e).into()
        }
    }
}

async fn list(
    client: &JobsClient,
    args: ListArgs,
) -> Result<(Vec<Job>, Option<String>), ClientError> {
    let f = args.filter;
    let mut query = ListQuery {
        tenant_id: f.tenant,
        use_case: f.use_case,
        status: f.status,
        kind: f.kind,
        created_after: f.created_after,
        created_before: f.created_before,
        cursor: args.cursor,
        limit: args.limit,
        include_payload: false,
    };
    let mut jobs = Vec::new();
    loop {
        let page = client.list(&query).await?;
        jobs.extend(page.jobs);
        match page.next_cursor {
            // A cursor that answers with itself would page for ever.
            Some(next) if args.all && query.cursor.as_deref() == Some(next.as_str()) => {
                return Err(ClientError::InvalidResponse(
                    "the API answered a page with the cursor it was asked for".to_owned(),
                ))
            }
            Some(next) if args.all => query.cursor = Some(next),
            next => return Ok((jobs, next)),
        }
    }
}

pub(crate) fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// Writes to stdout, ignoring a closed pipe (`… | head`).
pub(crate) fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn print_list(output: Output, jobs: &[Job], next: Option<&str>) {
    if output == Output::Json {
        out(&format!("{}\n", json!({"jobs": jobs, "next_cursor": next})));
        return;
    }
    let header = [
        "ID", "TENANT", "USE CASE", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "DEADLINE",
    ];
    let rows: Vec<[String; 8]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.to_string(),
                j.tenant_id.clone(),
                j.use_case.clone(),
                j.kind.clone(),
                j.status.to_string(),
                format!("{}/{}", j.attempts, j.max_attempts),
                time(Some(j.created_at)),
                time(Some(j.deadline_at)),
            ]
        })
        .collect();
    let mut text = table(&header, &rows);
    match next {
        Some(cursor) => text.push_str(&format!(
            "({} jobs; more with --cursor {cursor} or --all)\n",
            rows.len()
        )),
        None => text.push_str(&format!("({} jobs)\n", rows.len())),
    }
    out(&text);
}

/// `header` and `rows` in aligned columns, one line each.
pub(crate) fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// A job with its predicted start (`jobs get`): JSON as the API answers, or the job's lines
/// with `predicted` and `at risk` after `deadline`.
fn print_view(output: Output, view: &JobView) {
    if output == Output::Json {
        out(&format!("{}\n", json!(view)));
        return;
    }
    let p = &view.prediction;
    let predicted = p.predicted_start_at.map_or_else(
        || "-".to_owned(),
        |t| format!("{} (estimate)", time(Some(t))),
    );
    let at_risk = p.at_risk.map_or("-", |r| if r { "yes" } else { "no" });
    print_job_lines(
        &view.job,
        &[("predicted", predicted), ("at risk", at_risk.to_owned())],
    );
}

fn print_job(output: Output, job: &Job) {
    if output == Output::Json {
        out(&format!("{}\n", json!(job)));
        return;
    }
    print_job_lines(job, &[]);
}

/// The job's lines, with `extra` after the deadline.
fn print_job_lines(job: &Job, extra: &[(&str, String)]) {
    let payload = serde_json::to_string_pretty(&job.payload).unwrap_or_default();
    let fields = [
        ("id", job.id.to_string()),
        ("tenant", job.tenant_id.clone()),
        ("use case", job.use_case.clone()),
        ("type", job.kind.clone()),
        ("status", job.status.to_string()),
        ("attempts", format!("{}/{}", job.attempts, job.max_attempts)),
        ("created", time(Some(job.created_at))),
        ("run at", time(Some(job.run_at))),
        ("deadline", time(Some(job.deadline_at))),
    ];
    let after = [
        ("dispatched", time(job.dispatched_at)),
        ("started", time(job.started_at)),
        ("finished", time(job.finished_at)),
        (
            "last error",
            job.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("payload", payload),
    ];
    let mut text = String::new();
    let extra = extra.iter().map(|(n, v)| (*n, v.clone()));
    for (name, value) in fields.into_iter().chain(extra).chain(after) {
        text.push_str(&format!("{name:<11} {value}\n"));
    }
    out(&text);
}
