//! Calling a remote async-jobs API with the typed client: enqueue, wait for the result, list.
//!
//! ```sh
//! # an API to talk to: the whole stack (`async-jobs dev`, open without credentials on 127.0.0.1;
//! # or deploy/docker-compose.yml, token from ASYNC_JOBS_ENQUEUE_AUTH_TOKEN, default change-me),
//! # or just the API with an in-memory store (its jobs stay pending: no worker runs them), which
//! # refuses to start without credentials:
//! export ASYNC_JOBS_ENQUEUE_AUTH_TOKEN=change-me
//! ASYNC_JOBS_STORE=memory cargo run --bin async-jobs -- api &
//!
//! cargo run --example remote_client     # sends the same token
//! ```
//!
//! Settings: `ASYNC_JOBS_API_URL` (default `http://127.0.0.1:8080`, include the prefix if the
//! router is mounted under one), `ASYNC_JOBS_ENQUEUE_AUTH_TOKEN` (bearer token, if the API
//! requires one), `EXAMPLE_WAIT_SECONDS` (how long to wait for the job, default 30).

use std::time::Duration;

use jobs_client::{ClientError, JobsClient, ListQuery};
use jobs_core::EnqueueRequest;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base =
        std::env::var("ASYNC_JOBS_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let wait = std::env::var("EXAMPLE_WAIT_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);

    let mut builder = JobsClient::builder(&base).timeout(Duration::from_secs(10));
    if let Ok(token) = std::env::var("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN") {
        if !token.is_empty() {
            builder = builder.bearer_token(token);
        }
    }
    let client = builder.build()?;

    // 1. Enqueue. Without an explicit idempotency key the client makes one per logical enqueue
    //    and reuses it on retries, so a retried request never creates two jobs.
    let job = client
        .enqueue(EnqueueRequest::new(
            "acme",
            "notifications",
            "send_email",
            json!({"to": "ada@example.com", "subject": "Hello", "body": "From the remote client example."}),
        ))
        .await?;
    println!(
        "enqueued {} ({}), status {}, deadline {}",
        job.id, job.kind, job.status, job.deadline_at
    );

    // 2. Wait for it to finish (succeeded, dead, cancelled or expired).
    match client.wait_for(job.id, wait).await {
        Ok(done) => println!(
            "job {} finished {} after {} attempt(s){}",
            done.id,
            done.status,
            done.attempts,
            done.last_error
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ),
        Err(ClientError::WaitTimeout { waited, last, .. }) => println!(
            "job {} still {} after {waited:?} — is a scheduler and a worker running?",
            job.id,
            last.map_or("unknown".to_owned(), |j| j.status.to_string())
        ),
        Err(e) => return Err(e.into()),
    }

    // 3. List the tenant's send_email jobs, newest first (first page).
    let page = client
        .list(&ListQuery {
            tenant_id: Some("acme".to_owned()),
            kind: Some("send_email".to_owned()),
            limit: Some(10),
            ..ListQuery::default()
        })
        .await?;
    println!("acme's latest send_email jobs:");
    for j in &page.jobs {
        println!(
            "  {}  {:<10} attempts {}  created {}",
            j.id,
            j.status.to_string(),
            j.attempts,
            j.created_at
        );
    }
    if page.next_cursor.is_some() {
        println!("  … more on the next page (pass next_cursor as ListQuery::cursor)");
    }
    Ok(())
}
