//! Pause and resume end to end (issue 18, item 2): real `async-jobs api`, two schedulers and a
//! worker on Postgres and the SQS emulator, driven by the operator CLI (`async-jobs pause`,
//! `resume`, `pauses`) against the API. A paused use case, or a paused tenant, keeps its jobs
//! pending with two schedulers running and across a scheduler restart; a resume lets them run.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::World;
use jobs_core::{EnqueueRequest, JobId, JobStatus};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
/// How long a paused job is watched to stay pending (many scheduler ticks of 200 ms).
const HELD: Duration = Duration::from_secs(3);
const TOKEN: &str = "pause-operator";

/// `async-jobs <args> --output json` against the API on `port`; the parsed output.
fn cli(port: u16, args: &[&str]) -> Value {
    let mut cmd = Command::new(common::binary("async-jobs"));
    cmd.args(args)
        .args(["--output", "json"])
        .env_clear()
        .env("ASYNC_JOBS_API_URL", format!("http://127.0.0.1:{port}"))
        .env("ASYNC_JOBS_API_TOKEN", TOKEN);
    let out = common::output_within(cmd, Duration::from_secs(30), &args.join(" "));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn enqueue(w: &World, tenant: &str) -> JobId {
    let payload =
        json!({"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 10});
    w.service
        .enqueue(EnqueueRequest::new(
            tenant,
            "notifications",
            "send_email",
            payload,
        ))
        .await
        .unwrap()
        .job
        .id
}

/// Asserts every job in `ids` stays pending for [`HELD`].
async fn stays_pending(w: &World, ids: &[JobId]) {
    let start = Instant::now();
    while start.elapsed() < HELD {
        for id in ids {
            assert_eq!(
                w.job(*id).await.status,
                JobStatus::Pending,
                "{id} ran while paused"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < LONG, "the API did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_hold_across_schedulers_and_restarts_and_resume_runs_the_jobs() {
    let mut w = World::new("pause").await;
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    w.spawn(
        "api",
        "api",
        &[
            ("ASYNC_JOBS_API_ADDR", &addr),
            ("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", TOKEN),
        ],
    );
    wait_listening(port);
    let first = w.scheduler("scheduler-1");
    w.scheduler("scheduler-2");
    w.worker("worker", &[]);

    // The whole use case paused: nothing runs, with two schedulers ticking.
    let pause = cli(port, &["pause", "notifications"]);
    assert_eq!(pause["pauses"][0]["use_case"], "notifications", "{pause}");
    assert!(pause["pauses"][0]["tenant_id"].is_null(), "{pause}");
    let (acme, globex) = (enqueue(&w, "acme").await, enqueue(&w, "globex").await);
    stays_pending(&w, &[acme, globex]).await;
    // Metrics show it (the API's first scrape reads the store).
    let metrics = common::http_get(port, "/metrics").await;
    assert_eq!(
        common::metric_sum(
            &metrics,
            "async_jobs_use_case_paused",
            "use_case=\"notifications\""
        ),
        1.0,
        "{metrics}"
    );

    // The pause is state, not memory: a scheduler restarted (kill -9) still honours it.
    w.proc(first).signal("KILL");
    w.proc(first).wait_exit(LONG);
    w.scheduler("scheduler-3");
    stays_pending(&w, &[acme, globex]).await;

    // One tenant paused, the use case resumed: the other tenant's job runs, acme's waits.
    cli(port, &["pause", "notifications", "--tenant", "acme"]);
    let resumed = cli(port, &["resume", "notifications"]);
    assert_eq!(resumed["resumed"], true, "{resumed}");
    w.wait_status(globex, JobStatus::Succeeded, LONG).await;
    stays_pending(&w, &[acme]).await;
    let listed = cli(port, &["pauses"]);
    assert_eq!(
        listed["pauses"],
        json!([{"use_case": "notifications", "tenant_id": "acme",
                "paused_at": listed["pauses"][0]["paused_at"]}]),
        "{listed}"
    );

    // Resuming the tenant: its job starts within moments (the resume wakes the scheduler).
    let resumed = cli(port, &["resume", "notifications", "--tenant", "acme"]);
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let done = w.wait_status(acme, JobStatus::Succeeded, LONG).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(cli(port, &["pauses"])["pauses"], json!([]));
    w.cleanup().await;
}
