//! The worker against in-memory ports: outcomes, failures, bad messages, duplicates, the
//! concurrency limit and cancellation.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use jobs_core::job::new_job_id;
use jobs_core::{
    DispatchMessage, DispatchStore, EnqueueRequest, HandlerError, JobContext, JobStatus,
    LeaseStore, LeaseToken, MaintenanceStore, PickRequest, TenantScope,
};
use jobs_worker::{WorkerConfig, WorkerError};
use serde_json::json;

fn email(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"to": "ada@example.com", "subject": "hi", "body": "hello"});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_every_use_case_succeed() {
    let mut h = Harness::start(registry(), worker_config());
    let a = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({})))
        .await;
    let b = h
        .enqueue(
            NOTIFICATIONS,
            "send_sms",
            json!({"to": "+4412345", "text": "hi"}),
        )
        .await;
    let c = h
        .enqueue(
            LABELING,
            "label_message",
            json!({"message_id": "m1", "text": "urgent refund?"}),
        )
        .await;
    assert_eq!(h.dispatch().await, 3);
    for id in [a.id, b.id, c.id] {
        let done = h.wait_status(id, JobStatus::Succeeded).await;
        assert_eq!(done.attempts, 1);
        assert_eq!(done.lease_token, None);
        assert!(done.finished_at.is_some());
    }
    h.wait_drained().await;
    let report = h.shutdown().await;
    assert_eq!(report.claimed, 3);
    assert_eq!(report.succeeded, 3);
    assert_eq!(report.messages_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_then_die_after_max_attempts() {
    let mut h = Harness::start(registry(), worker_config());
    let job = h
        .enqueue_req(
            EnqueueRequest::new(
                "acme",
                NOTIFICATIONS,
                "send_email",
                email(json!({"fail": "retryable"})),
            )
            .max_attempts(3)
            .backoff(one_second_backoff()),
        )
        .await;
    for attempt in 1..=2 {
        assert_eq!(h.dispatch().await, 1);
        let failed = h
            .wait_job(job.id, "back to pending", |j| {
                j.status == JobStatus::Pending && j.attempts == attempt
            })
            .await;
        assert_eq!(failed.run_at, h.clock_now() + Duration::from_secs(1));
        assert!(
            failed
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("simulated retryable")),
            "{failed:?}"
        );
        assert_eq!(h.dispatch().await, 0, "not due before its backoff");
        h.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(h.dispatch().await, 1);
    let dead = h.wait_status(job.id, JobStatus::Dead).await;
    assert_eq!(dead.attempts, 3);
    let report = h.shutdown().await;
    assert_eq!((report.failed, report.dead), (2, 1));
    assert_eq!(
        (
            report.claimed,
            report.deadlines_met,
            report.deadlines_missed
        ),
        (3, 1, 0),
        "three attempts of one job: its deadline is counted once, at the first start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_times_succeeds_on_a_later_attempt() {
    let mut h = Harness::start(registry(), worker_config());
    let job = h
        .enqueue_req(
            EnqueueRequest::new(
                "acme",
                NOTIFICATIONS,
                "send_sms",
                json!({"to": "+1555", "text": "x", "fail_times": 1}),
            )
            .backoff(one_second_backoff()),
        )
        .await;
    h.dispatch().await;
    h.wait_job(job.id, "first attempt failed", |j| {
        j.attempts == 1 && j.status == JobStatus::Pending
    })
    .await;
    h.clock.advance(Duration::from_secs(1));
    h.dispatch().await;
    let done = h.wait_status(job.id, JobStatus::Succeeded).await;
    assert_eq!(done.attempts, 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_and_unknown_types_are_dead_at_once() {
    let mut h = Harness::start(registry(), worker_config());
    let permanent = h
        .enqueue(
            NOTIFICATIONS,
            "send_email",
            email(json!({"fail": "permanent"})),
        )
        .await;
    let bad_payload = h
        .enqueue(NOTIFICATIONS, "send_email", json!({"to": 42}))
        .await;
    let unknown = h.enqueue(NOTIFICATIONS, "no_such_type", json!({})).await;
    h.dispatch().await;
    for (id, needle) in [
        (permanent.id, "simulated permanent"),
        (bad_payload.id, "does not decode"),
        (unknown.id, "no handler registered"),
    ] {
        let dead = h.wait_status(id, JobStatus::Dead).await;
        assert_eq!(dead.attempts, 1);
        assert!(
            dead.last_error
                .as_deref()
                .is_some_and(|e| e.contains(needle)),
            "{dead:?}"
        );
    }
    let report = h.shutdown().await;
    assert_eq!(report.dead, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_timeouts_are_contained_and_the_worker_keeps_working() {
    let mut h = Harness::start(registry(), worker_config());
    let panics = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({"fail": "panic"})))
        .await;
    let hangs = h
        .enqueue_req(
            EnqueueRequest::new(
                "acme",
                NOTIFICATIONS,
                "send_email",
                email(json!({"fail": "hang"})),
            )
            .timeout(Duration::from_millis(200)),
        )
        .await;
    h.dispatch().await;
    let p = h
        .wait_job(panics.id, "panic recorded", |j| {
            j.status == JobStatus::Pending && j.attempts == 1
        })
        .await;
    assert!(
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{p:?}"
    );
    let t = h
        .wait_job(hangs.id, "timeout recorded", |j| {
            j.status == JobStatus::Pending && j.attempts == 1
        })
        .await;
    assert!(
        t.last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{t:?}"
    );

    let after = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({})))
        .await;
    h.dispatch().await;
    h.wait_status(after.id, JobStatus::Succeeded).await;
    let report = h.shutdown().await;
    assert_eq!((report.failed, report.succeeded), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_misrouted_and_stale_messages_are_deleted() {
    let mut h = Harness::start(registry(), worker_config());
    // A job whose message we forge with the wrong token, and one that runs normally.
    let forged = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({})))
        .await;
    let leased = h
        .store
        .lease_due(
            NOTIFICATIONS,
            PickRequest {
                cap: 50,
                limit: 50,
                lease: Duration::from_secs(300),
            },
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let mut wrong_token = DispatchMessage::for_dispatch(&leased[0]);
    wrong_token.lease_token = LeaseToken::generate();
    let mut no_such_job = wrong_token.clone();
    no_such_job.job_id = new_job_id();
    let mut misrouted = DispatchMessage::for_dispatch(&leased[0]);
    misrouted.use_case = LABELING.into();
    let v2 = DispatchMessage::for_dispatch(&leased[0])
        .encode()
        .replace("\"v\":1", "\"v\":2");
    h.send_raw(
        NOTIFICATIONS,
        vec![
            "not json".into(),
            String::new(),
            "{\"v\":1}".into(),
            v2,
            "x".repeat(10_000),
            misrouted.encode(),
            wrong_token.encode(),
            no_such_job.encode(),
        ],
    )
    .await;
    let good = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({})))
        .await;
    h.dispatch().await;
    h.wait_status(good.id, JobStatus::Succeeded).await;
    h.wait_drained().await;
    eventually("every bad message counted", || async {
        (h.stats.snapshot().messages_dropped == 8).then_some(())
    })
    .await;
    // The forged messages changed nothing: the job still waits for its real message.
    assert_eq!(h.job(forged.id).await.status, JobStatus::Dispatched);
    let report = h.shutdown().await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(report.claimed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_message_runs_the_handler_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = registry();
    let counter = runs.clone();
    registry.register_fn("count", move |_ctx: JobContext, _p: serde_json::Value| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(())
        }
    });
    let mut h = Harness::start(registry, worker_config().with_concurrency(4));
    let job = h.enqueue(NOTIFICATIONS, "count", json!({})).await;
    let leased = h
        .store
        .lease_due(
            NOTIFICATIONS,
            PickRequest {
                cap: 50,
                limit: 50,
                lease: Duration::from_secs(300),
            },
        )
        .await
        .unwrap();
    let body = DispatchMessage::for_dispatch(&leased[0]).encode();
    h.send_raw(
        NOTIFICATIONS,
        vec![body.clone(), body.clone(), body.clone()],
    )
    .await;
    h.wait_status(job.id, JobStatus::Succeeded).await;
    h.wait_drained().await;
    // A late duplicate after the job finished is stale too.
    h.send_raw(NOTIFICATIONS, vec![body]).await;
    h.wait_drained().await;
    let report = h.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(report.claimed, 1);
    assert_eq!(report.messages_dropped, 3);
    assert_eq!(h.job(job.id).await.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_never_exceeds_the_limit_across_use_cases() {
    const LIMIT: usize = 3;
    let current = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let mut registry = registry();
    let (cur, max) = (current.clone(), max_seen.clone());
    registry.register_fn("track", move |_ctx: JobContext, _p: serde_json::Value| {
        let (cur, max) = (cur.clone(), max.clone());
        async move {
            let now = cur.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
            cur.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let mut h = Harness::start(registry, worker_config().with_concurrency(LIMIT));
    let mut ids = Vec::new();
    for i in 0..16 {
        let use_case = if i % 2 == 0 { NOTIFICATIONS } else { LABELING };
        ids.push(h.enqueue(use_case, "track", json!({})).await.id);
    }
    assert_eq!(h.dispatch().await, 16);
    for id in &ids {
        h.wait_status(*id, JobStatus::Succeeded).await;
    }
    let report = h.shutdown().await;
    assert_eq!(report.succeeded, 16);
    assert_eq!(report.messages_dropped, 0);
    let max = max_seen.load(Ordering::SeqCst);
    assert!(max <= LIMIT, "ran {max} at once, limit {LIMIT}");
    assert_eq!(max, LIMIT, "the limit is also used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_reaches_the_handler_and_ends_it_cancelled() {
    let started = Arc::new(tokio::sync::Notify::new());
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    let mut registry = registry();
    let (st, saw) = (started.clone(), saw_cancel.clone());
    registry.register_fn(
        "wait_for_cancel",
        move |ctx: JobContext, _p: serde_json::Value| {
            let (st, saw) = (st.clone(), saw.clone());
            async move {
                st.notify_one();
                ctx.cancel.cancelled().await;
                saw.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::Cancelled)
            }
        },
    );
    let mut h = Harness::start(registry, worker_config());
    let job = h.enqueue(NOTIFICATIONS, "wait_for_cancel", json!({})).await;
    h.dispatch().await;
    tokio::time::timeout(PATIENCE, started.notified())
        .await
        .expect("handler started");
    assert_eq!(h.job(job.id).await.status, JobStatus::Running);
    h.service.cancel(job.id, &TenantScope::All).await.unwrap();
    let done = h.wait_status(job.id, JobStatus::Cancelled).await;
    assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
    assert!(done.finished_at.is_some());
    let report = h.shutdown().await;
    assert_eq!(report.cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_leased() {
    let mut h = Harness::start(registry(), worker_config());
    let job = h
        .enqueue(NOTIFICATIONS, "send_email", email(json!({"sleep_ms": 600})))
        .await;
    h.dispatch().await;
    let running = h.wait_status(job.id, JobStatus::Running).await;
    let first_lease = running.lease_expires_at.unwrap();
    // The lease is 300 ms of store time; move the store clock and watch heartbeats renew it.
    h.clock.advance(Duration::from_millis(250));
    h.wait_job(job.id, "a renewed lease", |j| {
        j.lease_expires_at.is_some_and(|t| t > first_lease)
    })
    .await;
    assert_eq!(h.store.reap_expired(10).await.unwrap().total(), 0);
    h.wait_status(job.id, JobStatus::Succeeded).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_handler_and_records_nothing() {
    let mut h = Harness::start(registry(), worker_config());
    let job = h
        .enqueue(
            NOTIFICATIONS,
            "send_email",
            email(json!({"sleep_ms": 60_000})),
        )
        .await;
    h.dispatch().await;
    h.wait_status(job.id, JobStatus::Running).await;
    // Another actor takes the job over (as the reaper or a shutdown of a "previous owner"
    // would): the worker's next heartbeat is refused.
    let token = h.job(job.id).await.lease_token.unwrap();
    h.store.release(job.id, token).await.unwrap();
    eventually("lease loss noticed", || async {
        (h.stats.snapshot().lease_lost == 1).then_some(())
    })
    .await;
    let after = h.job(job.id).await;
    assert_eq!(after.status, JobStatus::Pending, "the worker wrote nothing");
    assert_eq!(after.last_error, None);
    let report = h.shutdown().await;
    assert_eq!(report.lease_lost, 1);
    assert_eq!(report.failed + report.succeeded, 0);
}

#[tokio::test]
async fn unknown_use_cases_and_bad_settings_are_refused() {
    let h = Harness::start(registry(), worker_config().with_use_cases(["billing"]));
    let err = h.join_err().await;
    assert_eq!(err, WorkerError::UnknownUseCase("billing".into()));
    let h = Harness::start(registry(), WorkerConfig::default().with_concurrency(0));
    assert!(matches!(h.join_err().await, WorkerError::InvalidConfig(_)));
}
