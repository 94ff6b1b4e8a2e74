//! Deadlines: which transitions open a new window, which keep it, and where a window starts.

use std::time::Duration;

use crate::status::JobStatus;
use crate::store::Failure;

use super::{new_job, pick, Fixture, MakeStore, LEASE, SECOND};

/// The deadline rules of `docs/state_machine.md`: `deadline_at` is the latest start of the next
/// attempt (`run_at + delay_tolerance`); a failed attempt (handler failure or lost worker) and a
/// manual retry open a new window; release and the return of a dispatch keep it (no attempt
/// started). `first_started_at` is set by the first claim and never changes, so the deadline is
/// measured once per job.
pub async fn deadline_rules_per_transition(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let minute = chrono::TimeDelta::seconds(60);
    let job = f.due("acme", "alpha").await;
    let enqueued_at = f.now();
    assert_eq!(job.deadline_at, enqueued_at + minute);
    assert_eq!(job.first_started_at, None);

    // Dispatch expiry and a returned dispatch keep the window.
    let (id, token) = f.dispatch_one("alpha").await;
    f.clock.advance(Duration::from_secs(61));
    f.store.return_dispatched(vec![(id, token)]).await.unwrap();
    assert_eq!(f.get(id).await.deadline_at, enqueued_at + minute);
    let (_, token) = f.dispatch_one("alpha").await;
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    assert_eq!(f.get(id).await.deadline_at, enqueued_at + minute);

    // The first claim records the first start; release keeps the window and the first start.
    let (_, token2) = f.dispatch_one("alpha").await;
    assert_ne!(token, token2);
    let first_start = f.now();
    let claimed = f.store.claim(id, token2, LEASE).await.unwrap();
    assert_eq!(claimed.first_started_at, Some(first_start));
    assert_eq!(claimed.started_at, Some(first_start));
    f.clock.advance(Duration::from_secs(5));
    let released = f.store.release(id, token2).await.unwrap();
    assert_eq!(released.deadline_at, enqueued_at + minute);
    assert_eq!(released.first_started_at, Some(first_start));

    // A reclaim is not a first start.
    let (_, token3) = f.dispatch_one("alpha").await;
    let again = f.store.claim_many(vec![(id, token3)], LEASE).await;
    let again = again.into_iter().next().unwrap().unwrap();
    assert_eq!(again.first_started_at, Some(first_start));
    assert_eq!(again.started_at, Some(f.now()));

    // A failed attempt opens a new window after the backoff.
    let failed = f
        .store
        .fail(
            id,
            token3,
            Failure {
                error: "boom".into(),
                retry_in: Some(Duration::from_secs(10)),
            },
        )
        .await
        .unwrap();
    let retry_at = f.now() + chrono::TimeDelta::seconds(10);
    assert_eq!(
        (failed.run_at, failed.deadline_at),
        (retry_at, retry_at + minute)
    );
    assert_eq!(failed.first_started_at, Some(first_start));

    // So does a lost worker (running lease expired: a failed attempt, due now).
    f.clock.advance(Duration::from_secs(10));
    let (_, token4) = f.dispatch_one("alpha").await;
    f.store.claim(id, token4, LEASE).await.unwrap();
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let reaped = f.get(id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(
        (reaped.run_at, reaped.deadline_at),
        (f.now(), f.now() + minute)
    );

    // A manual retry opens a new window; the first start stays.
    let (_, token5) = f.dispatch_one("alpha").await;
    f.store.claim(id, token5, LEASE).await.unwrap();
    f.store
        .fail(
            id,
            token5,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(3600));
    let retried = f.store.retry(id, None).await.unwrap();
    assert_eq!(retried.deadline_at, f.now() + minute);
    assert_eq!(retried.first_started_at, Some(first_start));
}

/// A `run_at` far in the past is due at once, but its deadline counts from the enqueue, so it
/// cannot sort ahead of every other job (review finding: a `run_at` in year 1 with a tolerance of
/// 0 gave a deadline in year 1).
pub async fn a_past_run_at_gets_its_deadline_from_now(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let mut honest = new_job("acme", "alpha");
    honest.delay_tolerance = Duration::from_secs(5);
    let honest = f.add(honest).await;
    let mut gamer = new_job("mallory", "alpha");
    gamer.run_at = Some(now - chrono::TimeDelta::days(365 * 50));
    gamer.delay_tolerance = Duration::ZERO;
    let gamer = f.add(gamer).await;
    assert_eq!(
        gamer.run_at,
        now - chrono::TimeDelta::days(365 * 50),
        "run_at kept"
    );
    assert_eq!(
        gamer.deadline_at, now,
        "deadline from now, not from the past run_at"
    );
    assert_eq!(honest.deadline_at, now + chrono::TimeDelta::seconds(5));
    // The batch path does the same.
    let mut batch = new_job("mallory", "alpha");
    batch.run_at = Some(now - chrono::TimeDelta::days(1));
    batch.delay_tolerance = Duration::from_secs(30);
    let out = f.store.enqueue_many(vec![batch]).await.unwrap();
    assert_eq!(out[0].job.deadline_at, now + chrono::TimeDelta::seconds(30));
    // It is due at once, and in deadline order with the rest.
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(
        leased.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![gamer.id, honest.id, out[0].job.id]
    );
}
