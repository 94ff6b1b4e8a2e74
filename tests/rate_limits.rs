//! Rate limits end to end (issue 18, item 3): two real `async-jobs scheduler` processes and a
//! worker on Postgres and the SQS emulator. A tenant limited to 20 jobs a second (burst 10) with a
//! backlog of 200 starts them at 20 a second, measured from the jobs' start times, within 10%,
//! across a kill -9 of the leading scheduler (the bucket is state in Postgres, shared by whoever
//! leads); an unlimited tenant's jobs, enqueued at the same moment, are not held behind them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::World;
use jobs_core::{DispatchStore, EnqueueRequest, JobId, JobStatus};
use serde_json::json;

const RATE: f64 = 20.0;
const BURST: usize = 10;
const LIMITED: usize = 200;
const FREE: usize = 50;
const TOKEN: &str = "rate-operator";

/// `async-jobs <args> --output json` against the API on `port` (retried while the API starts).
fn cli(port: u16, args: &[&str]) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let mut cmd = std::process::Command::new(common::binary("async-jobs"));
        cmd.args(args)
            .args(["--output", "json"])
            .env_clear()
            .env("ASYNC_JOBS_API_URL", format!("http://127.0.0.1:{port}"))
            .env("ASYNC_JOBS_API_TOKEN", TOKEN);
        let out = common::output_within(cmd, Duration::from_secs(30), &args.join(" "));
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn requests(tenant: &str, n: usize) -> Vec<EnqueueRequest> {
    (0..n)
        .map(|_| {
            EnqueueRequest::new(
                tenant,
                "notifications",
                "send_email",
                json!({"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 0}),
            )
        })
        .collect()
}

async fn start_times(w: &World, ids: &[JobId]) -> Vec<DateTime<Utc>> {
    let mut times = Vec::new();
    for id in ids {
        let job = w
            .wait_status(*id, JobStatus::Succeeded, Duration::from_secs(60))
            .await;
        times.push(job.started_at.unwrap());
    }
    times.sort();
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_two_schedulers_and_a_leader_kill() {
    let mut w = World::new("rate").await;
    let limits =
        format!(r#"{{"acme": {{"notifications": {{"per_second": {RATE}, "burst": {BURST}}}}}}}"#);
    for (k, v) in [
        ("ASYNC_JOBS_PER_TENANT_RATE_LIMITS", limits.as_str()),
        // The cap is not what limits here.
        ("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", "200"),
        ("ASYNC_JOBS_WORKER_CONCURRENCY", "40"),
    ] {
        w.env.insert(k.to_owned(), v.to_owned());
    }
    let first = w.scheduler("scheduler-1");
    // The leader writes the limits when it takes over; enqueue once they are in force.
    let start = Instant::now();
    while w.store.rate_limits().await.unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no leader wrote the limits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.scheduler("scheduler-2");
    w.worker("worker", &[]);

    // The operator sees the limits in force through the API.
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
    let listed = cli(port, &["rate-limits"]);
    assert_eq!(
        listed,
        json!({"rate_limits": [{"use_case": "notifications", "tenant_id": "acme",
                                "per_second": RATE, "burst": BURST}]})
    );

    let limited: Vec<JobId> = w
        .service
        .enqueue_many(requests("acme", LIMITED))
        .await
        .unwrap()
        .iter()
        .map(|e| e.job.id)
        .collect();
    let free: Vec<JobId> = w
        .service
        .enqueue_many(requests("globex", FREE))
        .await
        .unwrap()
        .iter()
        .map(|e| e.job.id)
        .collect();

    // A third of the way through, the leader dies; the standby takes over with the same bucket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.proc(first).signal("KILL");
    w.proc(first).wait_exit(Duration::from_secs(10));

    let acme = start_times(&w, &limited).await;
    let globex = start_times(&w, &free).await;
    let span = (acme[LIMITED - 1] - acme[0]).num_microseconds().unwrap() as f64 / 1e6;
    // The burst starts at once, the rest one token at a time.
    let measured = (LIMITED - BURST) as f64 / span;
    eprintln!(
        "acme: {LIMITED} jobs started over {span:.2} s: {measured:.2} jobs/s (limit {RATE}, burst {BURST})"
    );
    assert!(
        (measured - RATE).abs() <= RATE * 0.10,
        "measured {measured:.2} jobs/s against a limit of {RATE}"
    );
    // Nor faster at any moment: no window holds more starts than the burst plus the rate over
    // it (give or take three for the spread between a dispatch and its worker's claim).
    for i in 0..LIMITED {
        for j in i + 1..LIMITED {
            let window = (acme[j] - acme[i]).num_microseconds().unwrap() as f64 / 1e6;
            let allowed = BURST as f64 + RATE * window + 3.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} starts within {window:.3} s",
                j - i + 1
            );
        }
    }
    // The unlimited tenant was not held behind the limited backlog.
    let free_span = (globex[FREE - 1] - acme[0]).num_milliseconds();
    assert!(
        free_span < 4_000,
        "globex's last job started {free_span} ms after acme's first"
    );
    w.cleanup().await;
}
