//! The fault suite (GitHub issue 7): real `async-jobs scheduler` and `async-jobs worker` processes against
//! real Postgres and the SQS emulator, one fault per scenario. After each run an SQL invariant
//! check over the whole jobs table (`common::faults::check_invariants`) and the sample handlers'
//! side-effect log (one row per (job, attempt) run) show that every job reached exactly one final
//! state and how many times each handler ran. Scenario 6 (Postgres restart) is in
//! `tests/fault_postgres_restart.rs`; scenario 12 (hostile HTTP) in
//! `crates/jobs-http/tests/hostile.rs`. Figures and findings: RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{World, CAP};
use faults::{
    assert_caps, check_invariants, enable_side_effects, executions, log_of, runs, wait_for,
    wait_quiescent, Check, Sampler,
};
use jobs_core::config::QuotaConfig;
use jobs_core::transport::OutgoingMessage;
use jobs_core::{
    Backoff, BackoffStrategy, DispatchMessage, DispatchStore, EnqueueError, EnqueueRequest, Jitter,
    JobId, JobService, JobStatus, PickRequest, PlatformConfig, TenantScope, Transport,
    UseCaseConfig,
};
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

fn email(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"to": "ada@example.com", "subject": "hi", "body": "hello", "sleep_ms": 10});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

fn label(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"message_id": "m", "text": "invoice overdue", "sleep_ms": 10});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

fn quick_backoff() -> Backoff {
    Backoff {
        strategy: BackoffStrategy::Constant,
        base: Duration::from_millis(200),
        cap: Duration::from_millis(200),
        jitter: Jitter::None,
    }
}

fn mail(extra: serde_json::Value) -> EnqueueRequest {
    EnqueueRequest::new("acme", "notifications", "send_email", email(extra))
}

async fn enqueue(w: &World, req: EnqueueRequest) -> JobId {
    w.service.enqueue(req).await.unwrap().job.id
}

async fn world(tag: &str) -> World {
    let mut w = World::new(tag).await;
    enable_side_effects(&mut w).await;
    w
}

/// Waits until attempt `attempt` of `id` has started its handler; returns the worker's pid.
async fn started(w: &World, id: JobId, attempt: i64) -> i64 {
    let schema = w.schema.clone();
    wait_for(&format!("{id} attempt {attempt} to start"), LONG, || {
        let schema = schema.clone();
        async move {
            runs(&schema, id)
                .await
                .into_iter()
                .find(|r| r.attempt == attempt)
                .map(|r| r.worker_pid)
        }
    })
    .await
}

fn pid_of(w: &mut World, i: usize) -> i64 {
    i64::from(w.proc(i).pid())
}

// 1. kill -9 of a worker mid-job: reclaimed after its lease, completes, one final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_a_worker_killed_mid_job_loses_nothing() {
    let mut w = world("f01").await;
    w.scheduler("scheduler");
    let a = w.worker("worker-a", &[]);
    let id = enqueue(&w, mail(json!({"sleep_ms": 2000}))).await;
    let a_pid = started(&w, id, 1).await;
    assert_eq!(a_pid, pid_of(&mut w, a));
    w.proc(a).signal("KILL");
    let killed = Instant::now();
    let b = w.worker("worker-b", &[]);
    let job = w.wait_status(id, JobStatus::Succeeded, LONG).await;
    let recovered = killed.elapsed();
    assert_eq!(
        job.attempts, 2,
        "the killed attempt counts, the next one succeeds"
    );
    let r = runs(&w.schema, id).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (r[0].worker_pid, r[1].worker_pid),
        (a_pid, pid_of(&mut w, b))
    );
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.count("succeeded"), 1);
    eprintln!(
        "figures s01: time to recover {recovered:?}, executions {}",
        f.executions
    );
    w.cleanup().await;
}

// 2. The scheduler dies between the store commit of a lease and the SQS send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_a_scheduler_killed_between_lease_and_send_strands_nothing() {
    let mut w = world("f02").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue(&w, mail(json!({}))).await);
    }
    let crashing = w.spawn(
        "scheduler",
        "scheduler-crash",
        &[("ASYNC_JOBS_FAULT_CRASH_AFTER_LEASE", "1")],
    );
    let code = w.proc(crashing).wait_exit(LONG);
    assert_ne!(code, Some(0), "the fault point aborted the scheduler");
    let crashed = Instant::now();
    let leased = w
        .counts()
        .await
        .get(&JobStatus::Dispatched)
        .copied()
        .unwrap_or(0);
    assert_eq!(leased, 5, "the lease was committed before the crash");
    assert!(log_of(&w.schema, "scheduler-crash").contains("fault injection"));
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    for id in &ids {
        let job = w.wait_status(*id, JobStatus::Succeeded, LONG).await;
        assert_eq!(job.attempts, 1, "an expired dispatch is not an attempt");
    }
    let recovered = crashed.elapsed();
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!((f.count("succeeded"), f.executions), (5, 5));
    eprintln!("figures s02: 5 stranded leases re-dispatched in {recovered:?}");
    w.cleanup().await;
}

// 3. The same message delivered several times, to two workers at once: exactly one claim wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_duplicate_deliveries_make_exactly_one_claim() {
    let mut w = world("f03").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(enqueue(&w, mail(json!({"sleep_ms": 300}))).await);
    }
    // Lease them as the scheduler would, then send every message three times.
    let leased = w
        .store
        .lease_due(
            "notifications",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 10);
    for copy in 0..3 {
        let msgs = leased
            .iter()
            .enumerate()
            .map(|(i, d)| OutgoingMessage {
                id: format!("{copy}-{i}"),
                body: DispatchMessage::for_dispatch(d).encode(),
            })
            .collect();
        assert!(w
            .sqs
            .send_batch("notifications", msgs)
            .await
            .unwrap()
            .is_empty());
    }
    w.worker("worker-a", &[]);
    w.worker("worker-b", &[]);
    for id in &ids {
        let job = w.wait_status(*id, JobStatus::Succeeded, LONG).await;
        assert_eq!(job.attempts, 1);
        assert_eq!(runs(&w.schema, *id).await.len(), 1);
    }
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!((f.executions, f.re_executed_jobs), (10, 0));
    w.cleanup().await;
}

// 4. A worker paused past its lease while another completes the job: its late completion
//    changes nothing and is logged as lease lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_a_paused_worker_cannot_complete_a_job_it_lost() {
    let mut w = world("f04").await;
    w.scheduler("scheduler");
    let a = w.worker("worker-a", &[]);
    let id = enqueue(&w, mail(json!({"sleep_ms": 2500}))).await;
    let a_pid = started(&w, id, 1).await;
    w.proc(a).signal("STOP");
    let b = w.worker("worker-b", &[]);
    // The reaper hands the job on (3 s heartbeat lease); B starts attempt 2.
    let b_pid = started(&w, id, 2).await;
    assert_eq!((a_pid, b_pid), (pid_of(&mut w, a), pid_of(&mut w, b)));
    // Resume A while B still runs: A's handler is past its sleep and tries to finish attempt 1.
    w.proc(a).signal("CONT");
    let schema = w.schema.clone();
    wait_for("worker-a to log the lost lease", LONG, || {
        let log = log_of(&schema, "worker-a");
        async move { log.contains("lease lost").then_some(()) }
    })
    .await;
    let job = w.wait_status(id, JobStatus::Succeeded, LONG).await;
    assert_eq!(job.attempts, 2);
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.count("succeeded"), 1);
    w.cleanup().await;
}

// 5. A job cancelled while running, or while being reclaimed, never runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_a_cancelled_job_never_runs_again() {
    let mut w = world("f05").await;
    w.scheduler("scheduler");
    let a = w.worker("worker-a", &[]);
    let req = || {
        mail(json!({"sleep_ms": 3000}))
            .max_attempts(5)
            .backoff(quick_backoff())
    };
    // While running.
    let running = enqueue(&w, req()).await;
    started(&w, running, 1).await;
    w.service.cancel(running, &TenantScope::All).await.unwrap();
    w.wait_status(running, JobStatus::Cancelled, LONG).await;
    // While being reclaimed: its worker dies, the cancel lands before the reaper returns it.
    let reclaimed = enqueue(&w, req()).await;
    started(&w, reclaimed, 1).await;
    w.proc(a).signal("KILL");
    let job = w
        .service
        .cancel(reclaimed, &TenantScope::All)
        .await
        .unwrap();
    assert_eq!(
        job.status,
        JobStatus::Running,
        "cancel requested on a running job"
    );
    w.worker("worker-b", &[]);
    w.wait_status(reclaimed, JobStatus::Cancelled, LONG).await;
    // A witness enqueued after both succeeds: the workers ran past them.
    let witness = enqueue(&w, mail(json!({}))).await;
    w.wait_status(witness, JobStatus::Succeeded, LONG).await;
    wait_quiescent(&w.schema, LONG).await;
    for id in [running, reclaimed] {
        assert_eq!(runs(&w.schema, id).await.len(), 1, "ran once, never again");
        assert_eq!(w.job(id).await.status, JobStatus::Cancelled);
    }
    check_invariants(&w.schema, Check::default()).await;
    w.cleanup().await;
}

// 7. The SQS emulator stopped for a while under load (a private moto, so no other test sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_an_sqs_outage_is_ridden_out() {
    let outage = Duration::from_secs(
        std::env::var("ASYNC_JOBS_FAULT_SQS_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let mut moto = PrivateMoto::start();
    let mut w = world("f07").await;
    moto.take_over(&mut w).await;
    // Short SQS timeouts so failed calls surface (and are backed off from) within the outage.
    let sqs_fast = [
        ("ASYNC_JOBS_SQS_REQUEST_TIMEOUT_SECONDS", "2"),
        ("ASYNC_JOBS_SQS_MAX_ATTEMPTS", "1"),
    ];
    w.spawn("scheduler", "scheduler", &sqs_fast);
    w.worker("worker", &sqs_fast);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(enqueue(&w, mail(json!({}))).await);
    }
    w.wait_status(ids[0], JobStatus::Succeeded, LONG).await;
    moto.signal("STOP");
    let stopped = Instant::now();
    // The API keeps accepting jobs during the outage.
    let mut during = 0;
    while stopped.elapsed() < outage {
        ids.push(enqueue(&w, mail(json!({}))).await);
        during += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    moto.signal("CONT");
    let resumed = Instant::now();
    let schema = w.schema.clone();
    // The failed sends surface within the 2 s timeout; allow the log a moment to be written.
    let waited = Instant::now();
    while !log_of(&schema, "scheduler").contains("backing off") {
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "the scheduler backed off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        w.wait_status(*id, JobStatus::Succeeded, LONG).await;
    }
    let drained = resumed.elapsed();
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.count("succeeded"), ids.len() as i64);
    eprintln!(
        "figures s07: outage {outage:?}, {during} jobs accepted during it, drained {} in {drained:?} after",
        ids.len()
    );
    w.cleanup().await;
    drop(moto);
}

// 8. Poison on the queue: garbage, unknown job ids, wrong tokens, wrong queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_poison_messages_are_dropped_and_workers_keep_working() {
    let mut w = world("f08").await;
    let victim = enqueue(&w, mail(json!({}))).await;
    let d = w
        .store
        .lease_due(
            "notifications",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: Duration::from_secs(2),
            },
        )
        .await
        .unwrap()
        .pop()
        .unwrap();
    let mut wrong_token = DispatchMessage::for_dispatch(&d);
    wrong_token.lease_token = jobs_core::LeaseToken::generate();
    let mut unknown = DispatchMessage::for_dispatch(&d);
    unknown.job_id = uuid::Uuid::new_v4();
    let mut misrouted = DispatchMessage::for_dispatch(&d);
    misrouted.use_case = "message_labeling".into();
    let bodies = [
        "garbage".to_owned(),
        String::new(),
        "{}".to_owned(),
        json!({"v": 99, "job_id": victim}).to_string(),
        "\u{0}\u{1}\u{fffd}".to_owned(),
        "x".repeat(200_000),
        wrong_token.encode(),
        unknown.encode(),
        misrouted.encode(),
    ];
    let poison = bodies.len();
    let mut sent = 0;
    for (i, body) in bodies.into_iter().enumerate() {
        let out = OutgoingMessage {
            id: i.to_string(),
            body,
        };
        // SQS itself may refuse some bodies (size, characters): those never reach a worker.
        if let Ok(f) = w.sqs.send_batch("notifications", vec![out]).await {
            sent += usize::from(f.is_empty());
        }
    }
    assert!(
        sent >= poison - 2,
        "most poison reached the queue ({sent}/{poison})"
    );
    w.scheduler("scheduler");
    let worker = w.worker("worker", &[]);
    // The victim's lease expires (its real message was never sent) and it is dispatched again.
    let job = w.wait_status(victim, JobStatus::Succeeded, LONG).await;
    assert_eq!(job.attempts, 1);
    let after = enqueue(&w, mail(json!({}))).await;
    w.wait_status(after, JobStatus::Succeeded, LONG).await;
    w.proc(worker).signal("TERM");
    assert_eq!(w.proc(worker).wait_exit(LONG), Some(0));
    let log = log_of(&w.schema, "worker");
    let dropped = log
        .split("messages_dropped: ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the worker's final report");
    assert!(
        dropped >= sent,
        "every poison message dropped with a metric ({dropped} < {sent})"
    );
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.executions, 2);
    w.cleanup().await;
}

// 9. Handler panic, timeout and a handler that never returns: contained; retried, then dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_panics_timeouts_and_hangs_are_contained() {
    let mut w = world("f09").await;
    w.scheduler("scheduler");
    w.worker("worker", &[]);
    let bad = |extra| {
        mail(extra)
            .max_attempts(2)
            .timeout(Duration::from_secs(1))
            .backoff(quick_backoff())
    };
    let panics = enqueue(&w, bad(json!({"fail": "panic"}))).await;
    let slow = enqueue(&w, bad(json!({"sleep_ms": 60_000}))).await;
    let hangs = enqueue(&w, bad(json!({"fail": "hang"}))).await;
    let fine = enqueue(&w, mail(json!({}))).await;
    for id in [panics, slow, hangs] {
        let job = w.wait_status(id, JobStatus::Dead, LONG).await;
        assert_eq!(job.attempts, 2);
        assert_eq!(
            runs(&w.schema, id).await.len(),
            2,
            "retried once, then dead"
        );
    }
    w.wait_status(fine, JobStatus::Succeeded, LONG).await;
    let after = enqueue(&w, mail(json!({}))).await;
    w.wait_status(after, JobStatus::Succeeded, LONG).await;
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!((f.count("dead"), f.count("succeeded")), (3, 2));
    w.cleanup().await;
}

// 10. SIGTERM to the scheduler and the workers under load: drain within grace, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_sigterm_under_load_drains_and_loses_nothing() {
    let mut w = world("f10").await;
    let grace = 5;
    let env = [("ASYNC_JOBS_SHUTDOWN_GRACE_SECONDS", "5")];
    let s = w.scheduler("scheduler");
    let a = w.worker("worker-a", &env);
    let b = w.worker("worker-b", &env);
    let reqs: Vec<EnqueueRequest> = (0..80)
        .map(|i| mail(json!({"sleep_ms": 300 + (i % 5) * 100})))
        .collect();
    let ids: Vec<JobId> = w
        .service
        .enqueue_many(reqs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let sampler = Sampler::start(&w.schema, Duration::from_millis(25));
    let schema = w.schema.clone();
    wait_for("10 jobs done", LONG, || {
        let schema = schema.clone();
        async move { (executions(&schema).await.len() >= 10).then_some(()) }
    })
    .await;
    let sent = Instant::now();
    for p in [s, a, b] {
        w.proc(p).signal("TERM");
    }
    for p in [s, a, b] {
        let code = w.proc(p).wait_exit(Duration::from_secs(grace + 10));
        assert_eq!(code, Some(0), "{} drains and exits 0", w.proc(p).name);
    }
    let drained = sent.elapsed();
    assert!(
        drained < Duration::from_secs(grace + 5),
        "drained in {drained:?}"
    );
    w.scheduler("scheduler-2");
    w.worker("worker-c", &[]);
    for id in &ids {
        w.wait_status(*id, JobStatus::Succeeded, LONG).await;
    }
    assert_caps(&sampler.stop().await, i64::from(CAP));
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!((f.count("succeeded"), f.executions), (80, 80));
    eprintln!("figures s10: 3 processes drained and exited 0 in {drained:?}");
    w.cleanup().await;
}

/// A tiny deterministic generator (xorshift), so the chaos schedule is reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

// 11. Load and chaos: 5,000 jobs, 3 tenants, 2 use cases, 3 workers, 2 schedulers, random kill -9
//     of workers and of the leader scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_load_and_chaos() {
    let total = env_u64("ASYNC_JOBS_CHAOS_JOBS", 5000) as usize;
    let seed = env_u64("ASYNC_JOBS_CHAOS_SEED", 7);
    let kill_every = Duration::from_millis(env_u64("ASYNC_JOBS_CHAOS_KILL_EVERY_MS", 3000));
    let cap: i64 = 20;
    let quota: u32 = 150;
    let mut rng = Rng(seed | 1);
    let mut w = world("f11").await;
    for (k, v) in [
        ("ASYNC_JOBS_NOTIFICATIONS_MAX_CONCURRENT", cap.to_string()),
        (
            "ASYNC_JOBS_MESSAGE_LABELING_MAX_CONCURRENT",
            cap.to_string(),
        ),
        ("ASYNC_JOBS_WORKER_CONCURRENCY", "20".to_owned()),
    ] {
        w.env.insert(k.to_owned(), v);
    }
    // tenant-q enqueues through a service with a quota; the others are unlimited.
    let mut platform = PlatformConfig::with_use_cases([
        UseCaseConfig::new("notifications", cap as u32, Duration::from_secs(300)),
        UseCaseConfig::new("message_labeling", cap as u32, Duration::from_secs(600)),
    ])
    .with_quotas(QuotaConfig::unlimited().with_limit("tenant-q", "notifications", quota));
    platform
        .use_cases
        .values_mut()
        .for_each(|u| u.queue_url = None);
    let quota_service = JobService::new(w.store.clone(), Arc::new(platform));

    let mut schedulers = [w.scheduler("scheduler-0"), w.scheduler("scheduler-1")];
    let mut workers: Vec<usize> = (0..3)
        .map(|i| w.worker(&format!("worker-{i}-0"), &[]))
        .collect();
    let sampler = Sampler::start(&w.schema, Duration::from_millis(50));
    let started = Instant::now();

    // Most jobs up front (tenants a and b, both use cases), 2% failing for good.
    let mut failing = 0usize;
    let mut ids = Vec::with_capacity(total);
    let quota_jobs = total / 10;
    let bulk = total - quota_jobs;
    for chunk in (0..bulk).collect::<Vec<_>>().chunks(500) {
        let reqs: Vec<EnqueueRequest> = chunk
            .iter()
            .map(|i| {
                let fail = i % 50 == 7;
                failing += usize::from(fail);
                let extra = if fail {
                    json!({"fail": "permanent"})
                } else {
                    json!({})
                };
                let tenant = if i % 2 == 0 { "tenant-a" } else { "tenant-b" };
                let req = if i % 3 == 0 {
                    EnqueueRequest::new(tenant, "message_labeling", "label_message", label(extra))
                } else {
                    EnqueueRequest::new(tenant, "notifications", "send_email", email(extra))
                };
                req.max_attempts(10).backoff(quick_backoff())
            })
            .collect();
        ids.extend(
            w.service
                .enqueue_many(reqs)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.job.id),
        );
    }

    let mut kills = BTreeMap::<&str, u64>::new();
    let mut killed_pids = BTreeSet::<i64>::new();
    let mut quota_refusals = 0u64;
    let mut quota_enqueued = 0usize;
    let mut next_kill = Instant::now() + kill_every;
    let mut generation = 1;
    let deadline = Duration::from_secs(env_u64("ASYNC_JOBS_CHAOS_TIMEOUT_SECONDS", 400));
    let chaos_for = Duration::from_secs(env_u64("ASYNC_JOBS_CHAOS_SECONDS", 60));
    loop {
        // tenant-q trickles its jobs in under its quota.
        while quota_enqueued < quota_jobs {
            let req =
                EnqueueRequest::new("tenant-q", "notifications", "send_email", email(json!({})))
                    .max_attempts(10)
                    .backoff(quick_backoff());
            match quota_service.enqueue(req).await {
                Ok(e) => {
                    ids.push(e.job.id);
                    quota_enqueued += 1;
                }
                Err(EnqueueError::QuotaExceeded { .. }) => {
                    quota_refusals += 1;
                    break;
                }
                Err(e) => panic!("enqueue: {e}"),
            }
        }
        if Instant::now() >= next_kill && started.elapsed() < chaos_for {
            next_kill = Instant::now() + kill_every + Duration::from_millis(rng.below(2000));
            generation += 1;
            if rng.below(3) == 0 {
                // The leader: the scheduler that most recently logged taking the lead.
                let leader = schedulers
                    .iter()
                    .position(|&i| {
                        let name = w.proc(i).name.clone();
                        log_of(&w.schema, &name).contains("became the leader")
                    })
                    .unwrap_or(0);
                let i = schedulers[leader];
                w.proc(i).signal("KILL");
                kills
                    .entry("scheduler")
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                schedulers[leader] = w.scheduler(&format!("scheduler-{leader}-{generation}"));
            } else {
                let victim = rng.below(workers.len() as u64) as usize;
                let i = workers[victim];
                killed_pids.insert(pid_of(&mut w, i));
                w.proc(i).signal("KILL");
                kills.entry("worker").and_modify(|n| *n += 1).or_insert(1);
                workers[victim] = w.worker(&format!("worker-{victim}-{generation}"), &[]);
            }
        }
        let done = {
            let c = w.counts().await;
            c.get(&JobStatus::Succeeded).copied().unwrap_or(0)
                + c.get(&JobStatus::Dead).copied().unwrap_or(0)
        };
        if done as usize == total && quota_enqueued == quota_jobs {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "not drained after {deadline:?}: {:?}",
            w.counts().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let sampled = sampler.stop().await;
    assert_caps(&sampled, cap);
    let q = sampled
        .max_unfinished
        .get(&("tenant-q".to_owned(), "notifications".to_owned()))
        .copied()
        .unwrap_or(0);
    assert!(
        q <= i64::from(quota),
        "tenant-q held {q} unfinished jobs, quota {quota}"
    );

    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(f.jobs as usize, total, "zero lost");
    assert_eq!(
        f.count("succeeded") as usize,
        total - failing,
        "every non-failing job succeeded"
    );
    assert_eq!(f.count("dead") as usize, failing);
    // Re-executions only for jobs whose worker was actually killed.
    let schema = w.schema.clone();
    let client = faults::db().await;
    let rows = client
        .query(
            &format!(
                "SELECT job_id, worker_pid FROM \"{schema}\".handler_runs r
                 WHERE EXISTS (SELECT 1 FROM \"{schema}\".handler_runs l
                               WHERE l.job_id = r.job_id AND l.attempt > r.attempt)"
            ),
            &[],
        )
        .await
        .unwrap();
    let mut unexplained = Vec::new();
    for r in &rows {
        let pid: i64 = r.get(1);
        if !killed_pids.contains(&pid) {
            unexplained.push(r.get::<_, JobId>(0));
        }
    }
    assert!(
        unexplained.is_empty(),
        "{} jobs re-ran though their worker was not killed: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(10)]
    );
    eprintln!(
        "figures s11: {total} jobs ({failing} failing) in {took:?}; kills {kills:?}; \
         re-executed jobs {} ({} executions for {} jobs); max in flight {:?} (cap {cap}); \
         tenant-q max unfinished {q} (quota {quota}, {quota_refusals} refusals); seed {seed}",
        f.re_executed_jobs, f.executions, f.jobs, sampled.max_in_flight
    );
    w.cleanup().await;
}

// 13. The store stalls the worker's completion writes for longer than the lease, and no process
//     dies (`ASYNC_JOBS_FAULT_STALL_COMPLETIONS_MS`, feature `fault-injection` of jobs-worker):
//     heartbeats keep every lease through the recording, so the reaper takes nothing back and no
//     handler runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_a_stalled_store_during_recording_reruns_nothing() {
    let lease = Duration::from_secs(3);
    let stall = Duration::from_secs(10);
    let mut w = world("f13").await;
    let scheduler = w.scheduler("scheduler");
    let worker = w.worker(
        "worker",
        &[
            ("ASYNC_JOBS_WORKER_HEARTBEAT_LEASE_SECONDS", "3"),
            ("ASYNC_JOBS_FAULT_STALL_COMPLETIONS_MS", "10000"),
        ],
    );
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue(&w, mail(json!({}))).await);
    }
    // Wait for every job to end, however it ends, then judge by the side-effect log.
    let schema = w.schema.clone();
    let t = format!("\"{schema}\".jobs");
    wait_for("every job terminal", LONG, || {
        let t = t.clone();
        async move {
            let n: i64 = faults::db()
                .await
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {t} WHERE status IN ('succeeded', 'dead', 'cancelled', 'expired')"
                    ),
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (n == 5).then_some(())
        }
    })
    .await;
    let took = started.elapsed();
    assert!(
        log_of(&w.schema, "worker").contains("fault injection: stalling"),
        "the completion stall was injected (worker built with `--all-features`?)"
    );
    let ran = executions(&w.schema).await;
    let mut rerun = Vec::new();
    for id in &ids {
        let n = ran.get(id).copied().unwrap_or(0);
        if n != 1 {
            let job = w.job(*id).await;
            rerun.push((*id, n, job.status, job.attempts, job.last_error));
        }
    }
    assert!(
        rerun.is_empty(),
        "every job ran exactly once; (job, executions, status, attempts, last error) of those \
         that did not: {rerun:#?}"
    );
    for id in &ids {
        let job = w.job(*id).await;
        assert_eq!(
            (job.status, job.attempts),
            (JobStatus::Succeeded, 1),
            "{job:?}"
        );
    }
    // The outcomes really were recorded a stall (≫ the lease) after the handlers returned.
    let recording: Vec<f64> = faults::db()
        .await
        .query(
            &format!(
                "SELECT extract(epoch FROM j.finished_at - r.ok_at)::float8
                 FROM {t} j JOIN \"{schema}\".handler_runs r ON r.job_id = j.id"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recording.len(), 5);
    let (min, max) = recording
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    assert!(
        min >= stall.as_secs_f64() - 0.5 && min > 2.0 * lease.as_secs_f64(),
        "outcomes recorded {min:.1}–{max:.1} s after the handlers returned; stall {stall:?}"
    );
    assert!(
        !log_of(&w.schema, "scheduler").contains("returned expired leases"),
        "the reaper took no lease back"
    );
    // No process was killed, nor died: both still run, and the worker drains and exits 0.
    for p in [scheduler, worker] {
        assert!(
            w.proc(p).child.try_wait().unwrap().is_none(),
            "{} is still running",
            w.proc(p).name
        );
    }
    w.proc(worker).signal("TERM");
    assert_eq!(w.proc(worker).wait_exit(LONG), Some(0));
    let log = log_of(&w.schema, "worker");
    let report = log
        .lines()
        .rfind(|l| l.contains("worker stopped"))
        .expect("the worker's final report");
    for field in ["succeeded: 5,", "lease_lost: 0,", "unrecorded: 0,"] {
        assert!(report.contains(field), "{field} in {report}");
    }
    let f = check_invariants(&w.schema, Check::default()).await;
    assert_eq!(
        (f.count("succeeded"), f.executions, f.re_executed_jobs),
        (5, 5, 0)
    );
    eprintln!(
        "figures s13: lease {lease:?}, completions stalled {stall:?}: 5 jobs succeeded in {took:?}, \
         outcomes recorded {min:.1}–{max:.1} s after the handlers returned, {} executions, {} re-executions",
        f.executions, f.re_executed_jobs
    );
    w.cleanup().await;
}

/// A moto server of this test alone, on its own port, so it can be stopped without touching the
/// shared one.
struct PrivateMoto {
    child: std::process::Child,
    endpoint: String,
}

impl PrivateMoto {
    fn start() -> PrivateMoto {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let server = root.join(".venv/moto/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/moto.sh start once",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = common::binary("async-jobs")
            .parent()
            .unwrap()
            .join("e2e-logs")
            .join(format!("moto-{port}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let log = std::fs::File::create(log).unwrap();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        PrivateMoto { child, endpoint }
    }

    /// Points the world's processes at this server, with queues of their own.
    async fn take_over(&mut self, w: &mut World) {
        let sqs = jobs_sqs::SqsTransport::builder(BTreeMap::<String, String>::new())
            .endpoint_url(self.endpoint.clone())
            .region("us-east-1")
            .static_credentials("test", "test")
            .build()
            .await
            .unwrap();
        for (uc, var) in [
            ("notifications", "ASYNC_JOBS_SQS_QUEUE_NOTIFICATIONS"),
            ("message_labeling", "ASYNC_JOBS_SQS_QUEUE_MESSAGE_LABELING"),
        ] {
            let url = sqs
                .create_queue(&format!("{}-{uc}", w.schema))
                .await
                .unwrap();
            w.env.insert(var.to_owned(), url);
        }
        w.env
            .insert("AWS_ENDPOINT_URL_SQS".to_owned(), self.endpoint.clone());
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} moto");
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.signal_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrivateMoto {
    fn signal_quietly(&self) -> std::io::Result<std::process::ExitStatus> {
        std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status()
    }
}
