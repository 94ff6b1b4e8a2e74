//! Your own handlers in production (issue 15, item 3): the `own_worker` example — a team's
//! registry run through `async_jobs::app::worker::run` under `app::main_with` — against real Postgres and the SQS
//! emulator, beside the real scheduler. Built by `cargo build --examples --all-features`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::World;
use jobs_core::{Backoff, BackoffStrategy, EnqueueRequest, Jitter, JobId, JobStatus};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

/// Enqueues a job of `kind` (two attempts, 200 ms apart).
async fn enqueue(w: &World, kind: &str, payload: serde_json::Value) -> JobId {
    let req = EnqueueRequest::new("acme", "notifications", kind, payload)
        .max_attempts(2)
        .backoff(Backoff {
            strategy: BackoffStrategy::Constant,
            base: Duration::from_millis(200),
            cap: Duration::from_millis(200),
            jitter: Jitter::None,
        });
    w.service.enqueue(req).await.unwrap().job.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_worker_example_runs_its_handlers_on_postgres_and_sqs() {
    let mut w = World::new("own").await;
    w.scheduler("scheduler");
    w.spawn_args("examples/own_worker", &[], "own-worker", &[]);
    let resized = enqueue(&w, "resize_image", json!({"image": "a.png", "width": 64})).await;
    let refused = enqueue(&w, "resize_image", json!({"image": "a.png", "width": 0})).await;
    let counted = enqueue(&w, "count_words", json!({"text": "one two three"})).await;
    let retried = enqueue(&w, "count_words", json!({"text": "  "})).await;
    // A sample handler's type is unknown to this registry: the job fails as unknown.
    let sample = enqueue(
        &w,
        "send_email",
        json!({"to": "a@b.c", "subject": "s", "body": "b"}),
    )
    .await;

    assert_eq!(
        w.wait_status(resized, JobStatus::Succeeded, LONG)
            .await
            .attempts,
        1
    );
    assert_eq!(
        w.wait_status(counted, JobStatus::Succeeded, LONG)
            .await
            .attempts,
        1
    );
    // A permanent error ends the job at once; a retryable one uses its attempts.
    let dead = w.wait_status(refused, JobStatus::Dead, LONG).await;
    assert_eq!(dead.attempts, 1);
    assert!(dead
        .last_error
        .unwrap()
        .contains("width must be at least 1"));
    let dead = w.wait_status(retried, JobStatus::Dead, LONG).await;
    assert_eq!(dead.attempts, 2);
    assert!(dead.last_error.unwrap().contains("nothing to count yet"));
    let unknown = w.wait_status(sample, JobStatus::Dead, LONG).await;
    assert!(
        unknown.last_error.clone().unwrap().contains("send_email"),
        "{unknown:?}"
    );
    w.cleanup().await;
}
