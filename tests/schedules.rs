//! Cron schedules end to end (issue 18, item 1): real `async-jobs api`, schedulers and a worker
//! on Postgres and the SQS emulator. A configured per-second schedule and one created with the
//! operator CLI (`async-jobs schedules …`) produce jobs that run, one per slot; the CLI's output
//! and exit statuses; and the leader killed in the middle of a slot — with `kill -9` while it has
//! computed the slot but not committed it, and by an abort right after the commit — leaves
//! exactly one job for that slot, fired by the standby that takes over.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::World;
use jobs_core::{ApiStore, Job, JobFilter, JobStatus, PageRequest, ScheduleStore};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "cron-operator";

/// `async-jobs schedules <args>` against the API on `port`.
fn schedules(port: u16, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::binary("async-jobs"));
    cmd.arg("schedules")
        .args(args)
        .env_clear()
        .env("ASYNC_JOBS_API_URL", format!("http://127.0.0.1:{port}"))
        .env("ASYNC_JOBS_API_TOKEN", TOKEN);
    common::output_within(cmd, Duration::from_secs(30), &args.join(" "))
}

/// [`schedules`] with `--output json`, which must succeed; the parsed output.
fn schedules_json(port: u16, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = schedules(port, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < LONG, "the API did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(schema: &str, name: &str) -> String {
    let dir = common::binary("async-jobs")
        .parent()
        .unwrap()
        .join("e2e-logs");
    std::fs::read_to_string(dir.join(format!("{schema}-{name}.log"))).unwrap_or_default()
}

/// Waits until the log of `name` has a line containing `needle`; returns that line.
async fn wait_log(w: &World, name: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = log_of(&w.schema, name).lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            start.elapsed() < LONG,
            "{name} never logged {needle:?}:\n{}",
            log_of(&w.schema, name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jobs_of(w: &World, tenant: &str) -> Vec<Job> {
    let filter = JobFilter {
        tenant_id: Some(tenant.to_owned()),
        ..JobFilter::default()
    };
    let mut jobs = w
        .store
        .list(&filter, PageRequest::new(None, 10_000))
        .await
        .unwrap()
        .jobs;
    jobs.sort_by_key(|j| j.run_at);
    jobs
}

/// Every job of `tenant` comes from a distinct slot of `schedule`: its key names the schedule and
/// its own `run_at`, and no slot has two jobs.
fn one_job_per_slot(jobs: &[Job], schedule: &str) {
    let mut slots = BTreeSet::new();
    for j in jobs {
        let key = j.idempotency_key.clone().unwrap_or_default();
        let slot = key
            .strip_prefix(&format!("schedule:{schedule}:"))
            .unwrap_or_else(|| panic!("job {} has key {key:?}", j.id));
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(slot).unwrap().into();
        assert_eq!(at, j.run_at, "the job runs at its slot");
        assert!(slots.insert(at), "two jobs for slot {slot}");
    }
}

/// Polls until `tenant` has at least `n` succeeded jobs.
async fn wait_succeeded(w: &World, tenant: &str, n: usize) -> Vec<Job> {
    let start = Instant::now();
    loop {
        let jobs = jobs_of(w, tenant).await;
        if jobs
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .count()
            >= n
        {
            return jobs;
        }
        assert!(
            start.elapsed() < LONG,
            "{tenant}: {} jobs, statuses {:?}",
            jobs.len(),
            jobs.iter().map(|j| j.status).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_and_cli_schedules_run_one_job_per_slot() {
    let mut w = World::new("cron").await;
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
    let configured = json!([{
        "name": "every-second",
        "cron": "* * * * * *",
        "timezone": "Europe/Berlin",
        "template": {"tenant_id": "acme", "use_case": "notifications", "type": "send_email",
                     "payload": {"to": "ada@example.com", "subject": "tick", "body": "b", "sleep_ms": 5},
                     "delay_tolerance_seconds": 30}
    }])
    .to_string();
    w.spawn(
        "scheduler",
        "scheduler",
        &[("ASYNC_JOBS_SCHEDULES", &configured)],
    );
    w.worker("worker", &[]);

    // The operator CLI: create, read, list; errors with their exit statuses.
    let created = schedules_json(
        port,
        &[
            "create",
            "every-2s",
            "--cron",
            "*/2 * * * * *",
            "--tenant",
            "globex",
            "--use-case",
            "notifications",
            "--type",
            "send_email",
            "--payload",
            r#"{"to": "bob@example.com", "subject": "s", "body": "b"}"#,
            "--delay-tolerance",
            "30",
            "--catch-up",
            "2",
        ],
    );
    assert_eq!(created["source"], "api", "{created}");
    assert_eq!(created["missed"], json!({"policy": "catch_up", "max": 2}));
    assert!(created["next_run_at"].is_string(), "{created}");
    let got = schedules_json(port, &["get", "every-2s"]);
    assert_eq!(got["template"]["tenant_id"], "globex");
    let table = schedules(port, &["get", "every-2s"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("next run") && text.contains("*/2 * * * * *"),
        "{text}"
    );
    // The configured one appears once the scheduler leads.
    let start = Instant::now();
    let listed = loop {
        let listed = schedules_json(port, &["list"]);
        if listed["schedules"].as_array().unwrap().len() == 2 {
            break listed;
        }
        assert!(start.elapsed() < LONG, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["schedules"][1]["name"], "every-second");
    assert_eq!(listed["schedules"][1]["source"], "config");
    let table = schedules(port, &["list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("NAME") && text.contains("every-second") && text.contains("(2 schedules)"),
        "{text}"
    );
    let missing = schedules(port, &["get", "nope"]);
    assert_eq!(missing.status.code(), Some(3), "no such schedule");
    let bad = schedules(
        port,
        &[
            "create",
            "bad",
            "--cron",
            "61 * * * *",
            "--tenant",
            "acme",
            "--use-case",
            "notifications",
            "--type",
            "send_email",
        ],
    );
    assert_eq!(bad.status.code(), Some(5), "invalid cron is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_cron"));
    let config_owned = schedules(port, &["delete", "every-second"]);
    assert_eq!(
        config_owned.status.code(),
        Some(5),
        "configured schedules are read-only"
    );
    let unauthorized = {
        let mut cmd = Command::new(common::binary("async-jobs"));
        cmd.args(["schedules", "list"])
            .env_clear()
            .env("ASYNC_JOBS_API_URL", format!("http://127.0.0.1:{port}"))
            .env("ASYNC_JOBS_API_TOKEN", "wrong");
        common::output_within(cmd, Duration::from_secs(30), "schedules list")
    };
    assert_eq!(unauthorized.status.code(), Some(4));

    // Jobs run: one per slot, at the slot, keyed by it.
    let acme = wait_succeeded(&w, "acme", 4).await;
    one_job_per_slot(&acme, "every-second");
    let globex = wait_succeeded(&w, "globex", 2).await;
    one_job_per_slot(&globex, "every-2s");
    for j in &globex {
        assert_eq!(j.run_at.timestamp() % 2, 0, "every second second");
    }
    // The next run time moves on.
    let s = w.store.get_schedule("every-second").await.unwrap().unwrap();
    assert!(s.next_run_at > acme.last().unwrap().run_at);

    // Delete the CLI's schedule: no more jobs for it.
    let deleted = schedules_json(port, &["delete", "every-2s"]);
    assert_eq!(deleted, json!({"name": "every-2s", "deleted": true}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = jobs_of(&w, "globex").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(jobs_of(&w, "globex").await.len(), after);
    assert_eq!(schedules(port, &["get", "every-2s"]).status.code(), Some(3));
    w.cleanup().await;
}

/// The slots named in a fault-injection line (`… slots <t> <t>…`).
fn slots_in(line: &str) -> Vec<String> {
    line.split(" slots ")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_slot_leaves_exactly_one_job_for_that_slot() {
    let mut w = World::new("cronkill").await;
    let schedule = json!([{
        "name": "tick",
        "cron": "* * * * * *",
        "template": {"tenant_id": "acme", "use_case": "notifications", "type": "send_email",
                     "payload": {"to": "ada@example.com", "subject": "tick", "body": "b"},
                     "delay_tolerance_seconds": 60}
    }])
    .to_string();
    let env = [("ASYNC_JOBS_SCHEDULES", schedule.as_str())];
    w.worker("worker", &[]);

    // 1. kill -9 between computing a slot and committing it. The leader stops at the fault
    //    point (its slot computed, nothing written) with a standby waiting; then SIGKILL.
    let mut stalled_env = env.to_vec();
    stalled_env.push(("ASYNC_JOBS_FAULT_STALL_BEFORE_FIRE", "1"));
    let first = w.spawn("scheduler", "scheduler-1", &stalled_env);
    wait_log(&w, "scheduler-1", "became the leader").await;
    let second = w.spawn("scheduler", "scheduler-2", &env);
    let line = wait_log(&w, "scheduler-1", "fault injection: stalled before fire").await;
    let stalled_slots = slots_in(&line);
    assert!(!stalled_slots.is_empty(), "{line}");
    assert!(
        jobs_of(&w, "acme").await.is_empty(),
        "nothing was committed before the kill"
    );
    w.proc(first).signal("KILL");
    w.proc(first).wait_exit(LONG);
    wait_log(&w, "scheduler-2", "became the leader").await;

    // The standby fires the slot: exactly one job for it, then the next slots.
    let jobs = wait_succeeded(&w, "acme", stalled_slots.len() + 2).await;
    one_job_per_slot(&jobs, "tick");
    for slot in &stalled_slots {
        let key = format!("schedule:tick:{slot}");
        let n = jobs
            .iter()
            .filter(|j| j.idempotency_key.as_deref() == Some(key.as_str()))
            .count();
        assert_eq!(n, 1, "slot {slot} of the killed leader has exactly one job");
    }

    // 2. The leader aborts right after committing a slot: its successor does not fire it again.
    w.proc(second).signal("KILL");
    w.proc(second).wait_exit(LONG);
    let mut crash_env = env.to_vec();
    crash_env.push(("ASYNC_JOBS_FAULT_CRASH_AFTER_FIRE", "1"));
    let third = w.spawn("scheduler", "scheduler-3", &crash_env);
    wait_log(&w, "scheduler-3", "became the leader").await;
    w.spawn("scheduler", "scheduler-4", &env);
    let line = wait_log(&w, "scheduler-3", "fault injection: aborting after fire").await;
    let committed_slots = slots_in(&line);
    assert!(!committed_slots.is_empty(), "{line}");
    assert_ne!(w.proc(third).wait_exit(LONG), Some(0), "aborted");
    wait_log(&w, "scheduler-4", "became the leader").await;
    let last: DateTime<Utc> = DateTime::parse_from_rfc3339(committed_slots.last().unwrap())
        .unwrap()
        .into();
    // Wait until the new leader has fired slots after the crash.
    let start = Instant::now();
    let jobs = loop {
        let jobs = jobs_of(&w, "acme").await;
        if jobs.iter().filter(|j| j.run_at > last).count() >= 2 {
            break jobs;
        }
        assert!(start.elapsed() < LONG, "no slot fired after the crash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    one_job_per_slot(&jobs, "tick");
    for slot in stalled_slots.iter().chain(&committed_slots) {
        let key = format!("schedule:tick:{slot}");
        assert_eq!(
            jobs.iter()
                .filter(|j| j.idempotency_key.as_deref() == Some(key.as_str()))
                .count(),
            1,
            "slot {slot}"
        );
    }
    // No slot was lost across the two failovers either (a tolerance of 60 s keeps every slot of
    // the outage in its window): the slots from the first to the last are consecutive seconds.
    let first_at = jobs.first().unwrap().run_at;
    let last_at = jobs.last().unwrap().run_at;
    assert_eq!(
        jobs.len() as i64,
        (last_at - first_at).num_seconds() + 1,
        "every second from {first_at} to {last_at} has its job"
    );
    let _ = wait_succeeded(&w, "acme", jobs.len()).await;
    w.cleanup().await;
}
