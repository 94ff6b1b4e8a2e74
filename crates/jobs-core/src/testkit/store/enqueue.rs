//! What enqueue stores and returns: every field, the store's clock, idempotency keys, batches,
//! and the trace context a job carries through every later write.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::job::{new_job_id, JobId, LeaseToken, NewJob};
use crate::status::JobStatus;
use crate::store::{EnqueueError, Failure, JobFilter, PageRequest};
use crate::trace::TraceContext;

use super::{new_job, pick, trace_context, Fixture, MakeStore, LEASE, SECOND};

pub async fn enqueue_then_get(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut input = new_job("acme", "alpha");
    let run_at = f.now() + chrono::TimeDelta::seconds(90);
    input.run_at = Some(run_at);
    input.priority = -7;
    input.idempotency_key = Some("key-1".into());
    input.delay_tolerance = Duration::from_millis(2500);
    let enqueued = f.store.enqueue(input.clone()).await.unwrap();
    assert!(enqueued.created);
    let job = f.get(input.id).await;
    assert_eq!(job, enqueued.job, "enqueue returns the stored job");
    assert_eq!(job.id, input.id);
    assert_eq!(job.tenant_id, "acme");
    assert_eq!(job.use_case, "alpha");
    assert_eq!(job.kind, "test_kind");
    assert_eq!(job.payload, input.payload);
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.priority, -7);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.backoff, input.backoff);
    assert_eq!(job.run_at, run_at);
    assert_eq!(job.delay_tolerance, Duration::from_millis(2500));
    assert_eq!(
        job.deadline_at,
        run_at + chrono::TimeDelta::milliseconds(2500)
    );
    assert_eq!(job.timeout, Duration::from_secs(30));
    assert_eq!(job.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(job.lease_token, None);
    assert_eq!(job.lease_expires_at, None);
    assert!(!job.cancel_requested);
    assert_eq!(job.last_error, None);
    assert_eq!(job.created_at, f.now());
    assert_eq!(job.updated_at, f.now());
    assert_eq!(
        (job.dispatched_at, job.started_at, job.finished_at),
        (None, None, None)
    );
    assert_eq!(f.store.get(new_job_id()).await.unwrap(), None);
}

pub async fn enqueue_without_run_at_uses_store_clock(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.clock.advance(Duration::from_secs(3600));
    let job = f.due("acme", "alpha").await;
    assert_eq!(job.run_at, f.now());
    assert_eq!(job.deadline_at, f.now() + chrono::TimeDelta::seconds(60));
}

pub async fn idempotent_enqueue_returns_the_same_job(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut first = new_job("acme", "alpha");
    first.idempotency_key = Some("order-42".into());
    first.quota = Some(1);
    let a = f.store.enqueue(first.clone()).await.unwrap();
    assert!(a.created);
    // Same key, new id, quota full: the existing job comes back, no quota error.
    let mut again = first.clone();
    again.id = new_job_id();
    let b = f.store.enqueue(again).await.unwrap();
    assert!(!b.created);
    assert_eq!(b.job.id, a.job.id);
    // Still the same after the job finished.
    f.store.cancel(a.job.id).await.unwrap();
    let mut third = first.clone();
    third.id = new_job_id();
    let c = f.store.enqueue(third).await.unwrap();
    assert_eq!((c.created, c.job.id), (false, a.job.id));
    // Keys are per tenant.
    let mut other = first.clone();
    other.id = new_job_id();
    other.tenant_id = "globex".into();
    let d = f.store.enqueue(other).await.unwrap();
    assert!(d.created);
    assert_ne!(d.job.id, a.job.id);
    // Concurrent enqueues with one key create exactly one job.
    let mut handles = Vec::new();
    for _ in 0..20 {
        let store = f.store.clone();
        let mut job = new_job("initech", "alpha");
        job.idempotency_key = Some("same".into());
        handles.push(tokio::spawn(async move { store.enqueue(job).await }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let e = h.await.unwrap().unwrap();
        ids.insert(e.job.id);
        created += usize::from(e.created);
    }
    assert_eq!((ids.len(), created), (1, 1));
}

pub async fn enqueue_many_is_all_or_nothing(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let batch: Vec<NewJob> = (0..5)
        .map(|i| {
            let mut j = new_job("acme", if i % 2 == 0 { "alpha" } else { "beta" });
            j.kind = format!("kind_{i}");
            j
        })
        .collect();
    let ids: Vec<JobId> = batch.iter().map(|j| j.id).collect();
    let out = f.store.enqueue_many(batch).await.unwrap();
    assert_eq!(
        out.iter().map(|e| e.job.id).collect::<Vec<_>>(),
        ids,
        "results in input order"
    );
    assert!(out
        .iter()
        .all(|e| e.created && e.job.status == JobStatus::Pending));
    assert_eq!(out[3].job.kind, "kind_3");
    // Three jobs against a quota of 2: the whole batch is refused and nothing is inserted.
    let over: Vec<NewJob> = (0..3)
        .map(|_| {
            let mut j = new_job("globex", "alpha");
            j.quota = Some(2);
            j
        })
        .collect();
    let over_ids: Vec<JobId> = over.iter().map(|j| j.id).collect();
    assert!(matches!(
        f.store.enqueue_many(over).await,
        Err(EnqueueError::QuotaExceeded { limit: 2, .. })
    ));
    for id in over_ids {
        assert_eq!(f.store.get(id).await.unwrap(), None, "no partial batch");
    }
    // A duplicate key inside a later batch returns the existing job.
    let mut keyed = new_job("acme", "alpha");
    keyed.idempotency_key = Some("k".into());
    let first = f.store.enqueue(keyed.clone()).await.unwrap().job;
    keyed.id = new_job_id();
    let again = f
        .store
        .enqueue_many(vec![keyed, new_job("acme", "alpha")])
        .await
        .unwrap();
    assert_eq!((again[0].created, again[0].job.id), (false, first.id));
    assert!(again[1].created);
}

/// A batch answers each job exactly as the store then reads it back, whatever its fields: times
/// and durations finer than the store keeps, past and future `run_at`, keys, trace contexts,
/// payloads of every JSON shape, every backoff, weights and priorities; also the entries answered
/// by an existing key.
pub async fn enqueue_many_returns_the_stored_jobs(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut existing = new_job("acme", "alpha");
    existing.idempotency_key = Some("old".into());
    f.add(existing.clone()).await;
    f.clock.advance(Duration::from_millis(1234));
    let payloads = [
        serde_json::json!(null),
        serde_json::json!({"b": 1, "a": [1.5, -2, "x", {"z": null}], "u": "héllo ✓"}),
        serde_json::json!([
            18_446_744_073_709_551_615u64,
            -9_223_372_036_854_775_808i64,
            0.1
        ]),
        serde_json::json!("text"),
        serde_json::json!(true),
        // Floats a JSON store may spell differently (1e16 as an integer, -0 as 0).
        serde_json::json!({"f": [1e16, -1.5e16, -0.0, 1e300, 1.7e18, 2.5e-7, 123_456_789.125]}),
    ];
    let mut batch = Vec::new();
    for (i, payload) in payloads.into_iter().enumerate() {
        let mut j = new_job(if i % 2 == 0 { "acme" } else { "globex" }, "alpha");
        j.payload = payload;
        j.kind = format!("kind_{i}");
        j.priority = i16::try_from(i).unwrap() * 3 - 5;
        j.max_attempts = 1 + u32::try_from(i).unwrap();
        j.backoff.base = Duration::from_nanos(1_500_000_789);
        j.backoff.cap = Duration::from_nanos(600_000_000_001);
        j.delay_tolerance = Duration::from_nanos(2_500_000_007 * (i as u64 + 1));
        j.timeout = Duration::from_nanos(30_000_000_999);
        j.expire_at_deadline = i % 2 == 1;
        j.fair_weight = [None, Some(1), Some(3), None, Some(7), Some(2)][i];
        j.run_at = match i {
            0 => None,
            1 => Some(f.now() + chrono::TimeDelta::nanoseconds(90_000_000_123)),
            2 => Some(f.now() - chrono::TimeDelta::seconds(30)),
            _ => Some(f.now() + chrono::TimeDelta::microseconds(1)),
        };
        if i % 2 == 0 {
            j.idempotency_key = Some(format!("key-{i}"));
        }
        if i != 3 {
            j.trace_context = Some(trace_context(u8::try_from(i).unwrap() + 1));
        }
        batch.push(j);
    }
    let mut again = existing.clone();
    again.id = new_job_id();
    batch.push(again);
    let out = f.store.enqueue_many(batch.clone()).await.unwrap();
    assert_eq!(out.len(), batch.len());
    for (input, got) in batch.iter().zip(&out) {
        let stored = f.get(got.job.id).await;
        assert_eq!(
            got.job, stored,
            "batch entry {} answers the stored job",
            input.kind
        );
    }
    assert!(out[..6].iter().all(|e| e.created));
    assert_eq!((out[6].created, out[6].job.id), (false, existing.id));
}

/// The enqueuer's trace context is stored with the job, single and batch, and read back by every
/// read (get, list, claim, batch claim); it survives an automatic retry, the reaper and a manual
/// retry. A job without one reads back without one.
pub async fn trace_context_round_trips_and_survives_retries(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let tc = trace_context(1);
    let mut input = new_job("acme", "alpha");
    input.trace_context = Some(tc.clone());
    let enqueued = f.store.enqueue(input.clone()).await.unwrap();
    assert_eq!(enqueued.job.trace_context.as_ref(), Some(&tc));
    assert_eq!(f.get(input.id).await.trace_context.as_ref(), Some(&tc));
    let plain = f.due("acme", "beta").await;
    assert_eq!(plain.trace_context, None);
    assert_eq!(f.get(plain.id).await.trace_context, None);
    let bare = TraceContext::from_parts([9; 16], [8; 8], 0).unwrap();
    let mut no_state = new_job("acme", "beta");
    no_state.trace_context = Some(bare.clone());
    let no_state = f.add(no_state).await;
    assert_eq!(f.get(no_state.id).await.trace_context, Some(bare));

    // Batch: each job keeps its own (or none).
    let batch: Vec<NewJob> = (2..5u8)
        .map(|n| {
            let mut j = new_job("acme", "gamma");
            j.trace_context = (n != 3).then(|| trace_context(n));
            j
        })
        .collect();
    let stored = f.store.enqueue_many(batch.clone()).await.unwrap();
    for (want, got) in batch.iter().zip(&stored) {
        assert_eq!(got.job.trace_context, want.trace_context);
        assert_eq!(f.get(want.id).await.trace_context, want.trace_context);
    }
    let listed = f
        .store
        .list(
            &JobFilter {
                use_case: Some("gamma".into()),
                ..JobFilter::default()
            },
            PageRequest::new(None, 100),
        )
        .await
        .unwrap()
        .jobs;
    assert_eq!(listed.len(), 3);
    for job in &listed {
        let want = batch.iter().find(|b| b.id == job.id).unwrap();
        assert_eq!(job.trace_context, want.trace_context, "list");
    }
    // A batch claim hands the worker the context.
    let leased = f.store.lease_due("gamma", pick(10)).await.unwrap();
    let claims: Vec<(JobId, LeaseToken)> =
        leased.iter().map(|d| (d.job_id, d.lease_token)).collect();
    for (result, want) in f
        .store
        .claim_many(claims, LEASE)
        .await
        .into_iter()
        .zip(&leased)
    {
        let job = result.unwrap();
        assert_eq!(job.id, want.job_id);
        let input = batch.iter().find(|b| b.id == job.id).unwrap();
        assert_eq!(job.trace_context, input.trace_context, "claim_many");
    }

    // Claim, fail with a retry, claim again: still there.
    let (id, token) = f.dispatch_one("alpha").await;
    assert_eq!(id, input.id);
    let claimed = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(claimed.trace_context.as_ref(), Some(&tc));
    let failed = f
        .store
        .fail(
            id,
            token,
            Failure {
                error: "later".into(),
                retry_in: Some(SECOND),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.trace_context.as_ref(), Some(&tc));
    f.clock.advance(SECOND);
    let (_, token) = f.dispatch_one("alpha").await;
    let second = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(second.trace_context.as_ref(), Some(&tc));
    // The reaper sends the expired run back; then it dies and is retried by hand.
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let reaped = f.get(id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(reaped.trace_context.as_ref(), Some(&tc));
    let (_, token) = f.dispatch_one("alpha").await;
    f.store.claim(id, token, LEASE).await.unwrap();
    let dead = f
        .store
        .fail(
            id,
            token,
            Failure {
                error: "gone".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    let retried = f.store.retry(id, None).await.unwrap();
    assert_eq!(retried.trace_context.as_ref(), Some(&tc));
    let (_, token) = f.dispatch_one("alpha").await;
    let last = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(last.trace_context, Some(tc));
}
