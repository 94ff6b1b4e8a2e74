//! Smoke run of every scenario with tiny sizes through the `jobs-bench` binary, so the harness
//! never rots: each prints one JSON line whose figures are sane. Needs Postgres on the bench URL
//! and, for the SQS scenarios, the emulator (`AWS_ENDPOINT_URL_SQS`, set by `scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_jobs-bench"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("running jobs-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jobs-bench {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line expected, got {stdout}");
    serde_json::from_str(lines[0]).expect("the line is JSON")
}

fn positive(v: &serde_json::Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    let x = cur
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing in {v}"));
    assert!(x.is_finite() && x > 0.0, "{path} = {x} in {v}");
    x
}

#[test]
fn enqueue_smoke() {
    let v = run(&[
        "enqueue",
        "--jobs",
        "200",
        "--tasks",
        "4",
        "--batch-size",
        "50",
        "--connections",
        "4",
    ]);
    assert_eq!(v["scenario"], "enqueue");
    for mode in ["single", "batch", "http"] {
        positive(&v, &format!("{mode}.jobs_per_s"));
    }
}

#[test]
fn e2e_inproc_smoke() {
    let v = run(&[
        "e2e-inproc",
        "--jobs",
        "300",
        "--cap",
        "100",
        "--concurrency",
        "20",
        "--dispatch-batch",
        "50",
    ]);
    positive(&v, "jobs_per_s");
    // The worker claims each received batch in one call and completes successes in batches:
    // at most one call of each per job, and no single-job claims or completions.
    let claims = positive(&v, "store_calls_per_job.claim_many");
    assert!(claims <= 1.0, "at most one claim call per job: {v}");
    let completes = positive(&v, "store_calls_per_job.complete_many");
    assert!(completes <= 1.0, "at most one completion call per job: {v}");
    assert!(
        v["store_calls_per_job"]["claim"].is_null(),
        "no single claims: {v}"
    );
    assert!(
        v["store_calls_per_job"]["complete"].is_null(),
        "no single completions: {v}"
    );
    positive(&v, "commits_per_job");
}

#[test]
fn e2e_inproc_with_history_and_pruning_smoke() {
    let v = run(&[
        "e2e-inproc",
        "--jobs",
        "300",
        "--cap",
        "100",
        "--concurrency",
        "20",
        "--dispatch-batch",
        "50",
        "--history",
        "2000",
        "--prune-during",
        "1000",
        "--prune-batch",
        "200",
    ]);
    positive(&v, "jobs_per_s");
    assert_eq!(v["history"], 2000, "{v}");
    assert_eq!(
        v["pruning"]["pruned"], 1000,
        "the pruner deleted its goal: {v}"
    );
    // Three row versions per job (lease, claim, complete), the claim a HOT update.
    let updates = positive(&v, "postgres.row_updates_per_job");
    assert!((2.9..=3.1).contains(&updates), "{v}");
    positive(&v, "postgres.wal_bytes_per_job");
    positive(&v, "postgres.commits_per_job");
}

#[test]
fn e2e_inproc_with_the_scheduler_pruning_smoke() {
    let v = run(&[
        "e2e-inproc",
        "--jobs",
        "1000",
        "--cap",
        "100",
        "--concurrency",
        "20",
        "--dispatch-batch",
        "50",
        "--history",
        "2000",
        "--scheduler-prunes",
        "--prune-batch",
        "100",
    ]);
    positive(&v, "jobs_per_s");
    assert_eq!(v["pruning"]["by"], "scheduler", "{v}");
    // The scheduler's first prune batch comes at once, while the 1,000 jobs run (tens of ms).
    let pruned = positive(&v, "pruning.pruned_during_run");
    assert!((100.0..=2000.0).contains(&pruned), "{v}");
}

#[test]
fn scheduler_only_smoke() {
    let v = run(&["scheduler-only", "--jobs", "500", "--dispatch-batch", "100"]);
    positive(&v, "jobs_per_s");
    let leases = positive(&v, "store_calls_per_job.lease_due");
    assert!(
        leases <= 0.02,
        "one pick per batch at most, and then some: {v}"
    );
    assert!(
        v["store_calls_per_job"]["claim_many"].is_null(),
        "no worker: {v}"
    );
}

#[test]
fn e2e_sqs_and_memory_smoke() {
    let v = run(&[
        "e2e-sqs",
        "--jobs",
        "40",
        "--cap",
        "20",
        "--concurrency",
        "10",
        "--ceiling-messages",
        "40",
    ]);
    positive(&v, "jobs_per_s");
    positive(&v, "emulator_ceiling.messages_per_s");
    positive(&v, "sqs_requests_per_job");
    for role in ["api", "scheduler", "worker"] {
        let rss = positive(&v, &format!("rss_mib.peak.{role}"));
        assert!(rss < 1024.0, "{role} uses {rss} MiB");
    }
}

#[test]
fn latency_smoke() {
    let v = run(&[
        "latency",
        "--mode",
        "inproc",
        "--jobs",
        "10",
        "--interval-ms",
        "10",
    ]);
    let p50 = positive(&v, "enqueue_to_start.p50_ms");
    assert!(p50 < 5_000.0, "{v}");
    assert!(v["enqueue_to_done"]["p99_ms"].as_f64().unwrap() >= p50);
    let v = run(&[
        "latency",
        "--mode",
        "sqs",
        "--jobs",
        "5",
        "--interval-ms",
        "20",
        "--baseline-samples",
        "5",
    ]);
    positive(&v, "enqueue_to_start.p50_ms");
    positive(&v, "emulator_send_to_receive.p50_ms");
}

#[test]
fn scale_smoke() {
    let v = run(&[
        "scale",
        "--sizes",
        "200,1000",
        "--rounds",
        "3",
        "--due-per-round",
        "10",
        "--enqueue-samples",
        "10",
        "--idle-samples",
        "5",
    ]);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    positive(&steps[1], "tick.p50_ms");
    positive(&steps[1], "enqueue.p50_ms");
    positive(&steps[1], "idle_start.p50_ms");
    assert!(steps[1]["pending_jobs"].as_i64().unwrap() >= 1000);
}

#[test]
fn scale_smoke_with_earlier_deadlines_ahead() {
    let v = run(&[
        "scale",
        "--shape",
        "earlier",
        "--sizes",
        "0,2000",
        "--rounds",
        "3",
        "--due-per-round",
        "10",
        "--enqueue-samples",
        "10",
        "--idle-samples",
        "5",
    ]);
    assert_eq!(v["shape"], "earlier");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    positive(&steps[1], "idle_start.p50_ms");
    assert!(steps[1]["pending_jobs"].as_i64().unwrap() >= 2000);
}

#[test]
fn scale_smoke_with_finished_history() {
    let v = run(&[
        "scale",
        "--shape",
        "finished",
        "--sizes",
        "0,3000",
        "--rounds",
        "3",
        "--due-per-round",
        "10",
        "--enqueue-samples",
        "10",
        "--idle-samples",
        "5",
    ]);
    assert_eq!(v["shape"], "finished");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    positive(&steps[1], "tick.p50_ms");
    positive(&steps[1], "idle_start.p50_ms");
    // The history, and the jobs the rounds finished (every one settled: none pending).
    assert!(steps[1]["finished_jobs"].as_i64().unwrap() >= 3000);
    assert_eq!(steps[1]["pending_jobs"].as_i64().unwrap(), 0);
}

#[test]
fn scale_smoke_with_a_backlog_over_many_tenants() {
    for (plain, shuffled) in [(false, false), (true, false), (false, true)] {
        let mut args = vec![
            "scale",
            "--shape",
            "tenants",
            "--sizes",
            "0,20000",
            "--rounds",
            "3",
            "--due-per-round",
            "10",
            "--enqueue-samples",
            "10",
        ];
        if plain {
            args.push("--plain-edf");
        }
        if shuffled {
            args.push("--shuffled-deadlines");
        }
        let v = run(&args);
        assert_eq!(v["shuffled_deadlines"], shuffled);
        assert_eq!(v["shape"], "tenants");
        assert_eq!(v["pick"], if plain { "plain_edf" } else { "fair_edf" });
        let steps = v["steps"].as_array().unwrap();
        positive(&steps[1], "tick.p50_ms");
        positive(&steps[1], "enqueue.p50_ms");
        assert!(steps[1]["pending_jobs"].as_i64().unwrap() >= 19_000);
    }
}

#[test]
fn deadline_smoke() {
    let v = run(&[
        "deadline",
        "--duration-s",
        "20",
        "--cap",
        "4",
        "--store",
        "both",
    ]);
    for store in ["memory", "postgres"] {
        let s = &v["stores"][store];
        for order in ["fifo", "edf", "fair_edf"] {
            let rate = positive(s, &format!("orders.{order}.overall.hit_rate"));
            assert!(rate <= 1.0);
            assert!(s["orders"][order]["flood"]["jobs"].as_u64().unwrap() > 0);
        }
        // Fair EDF protects the well-behaved tenants that plain EDF starves.
        let good = positive(s, "targets.good_min_hit_rate_fair");
        assert!(good >= 0.95, "{store}: {s}");
        positive(s, "targets.fair_over_edf_throughput");
        positive(s, "weighted_2_1_1.heavy.share");
        // The predicted start's error, steady and overloaded, plain and fair EDF.
        for load in ["steady", "overload"] {
            for order in ["edf", "fair_edf"] {
                let p = &s["prediction"][load]["orders"][order];
                assert!(
                    p["predicted"].as_u64().unwrap() > 0,
                    "{store} {load} {order}: {p}"
                );
                let median = p["median_abs_error_s"].as_f64().unwrap();
                let p90 = p["p90_abs_error_s"].as_f64().unwrap();
                assert!(
                    median >= 0.0 && p90 >= median,
                    "{store} {load} {order}: {p}"
                );
            }
        }
        // Below the capacity a job starts within a step or two of its prediction.
        let steady = s["prediction"]["steady"]["orders"]["fair_edf"]["p90_abs_error_s"]
            .as_f64()
            .unwrap();
        assert!(steady <= 0.5, "{store}: {steady}");
    }
}
