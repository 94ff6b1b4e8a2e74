//! Taking work back and cleaning up: the reaper (expired dispatch and run leases), dispatches the
//! transport refused, counts and pruning.

use std::time::Duration;

use crate::job::{new_job_id, JobId, LeaseToken};
use crate::status::JobStatus;
use crate::store::{JobFilter, LeaseError, PageRequest, PickRequest, ReapReport};

use super::{new_job, pick, Fixture, MakeStore, LEASE, SECOND};

pub async fn reaper_returns_expired_dispatches_without_an_attempt(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.due("acme", "alpha").await;
    f.due("acme", "alpha").await;
    let early = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 10,
                limit: 1,
                lease: Duration::from_secs(10),
            },
        )
        .await
        .unwrap();
    let late = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 10,
                limit: 1,
                lease: Duration::from_secs(100),
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(
        f.store.reap_expired(100).await.unwrap(),
        ReapReport {
            dispatch_expired: 1,
            ..ReapReport::default()
        }
    );
    let reaped = f.get(early[0].job_id).await;
    assert_eq!(reaped.status, JobStatus::Pending);
    assert_eq!(
        reaped.attempts, 0,
        "an unclaimed dispatch is not an attempt"
    );
    assert_eq!((reaped.lease_token, reaped.lease_expires_at), (None, None));
    assert_eq!(
        f.get(late[0].job_id).await.status,
        JobStatus::Dispatched,
        "unexpired lease untouched"
    );
    assert_eq!(
        f.store
            .claim(early[0].job_id, early[0].lease_token, LEASE)
            .await,
        Err(LeaseError::LeaseLost(early[0].job_id)),
        "the old dispatch token is dead"
    );
    // The batch limit bounds a pass.
    for _ in 0..5 {
        f.due("acme", "beta").await;
    }
    f.store
        .lease_due(
            "beta",
            PickRequest {
                cap: 10,
                limit: 10,
                lease: SECOND,
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(f.store.reap_expired(2).await.unwrap().dispatch_expired, 2);
    assert_eq!(f.store.reap_expired(100).await.unwrap().dispatch_expired, 3);
    assert_eq!(
        f.store.reap_expired(100).await.unwrap(),
        ReapReport::default()
    );
}

pub async fn reaper_counts_expired_runs_as_attempts(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // Attempt 1 of 3 expires: back to pending, due now, the attempt counted.
    let (first, t1) = f.running("acme", "alpha").await;
    // Attempt 1 of 1 expires: dead.
    let mut last = new_job("acme", "alpha");
    last.max_attempts = 1;
    let last = f.add(last).await;
    let d = f.store.lease_due("alpha", pick(10)).await.unwrap();
    let t2 = d.iter().find(|d| d.job_id == last.id).unwrap().lease_token;
    f.store.claim(last.id, t2, LEASE).await.unwrap();
    // A running job with a cancel request: cancelled.
    let (cancelling, t3) = f.running("acme", "alpha").await;
    f.store.cancel(cancelling.id).await.unwrap();
    // A heartbeat keeps the fourth alive.
    let (alive, t4) = f.running("acme", "alpha").await;
    f.clock.advance(LEASE - SECOND);
    f.store.heartbeat(alive.id, t4, LEASE).await.unwrap();
    f.clock.advance(Duration::from_secs(2));
    let report = f.store.reap_expired(100).await.unwrap();
    assert_eq!(
        report,
        ReapReport {
            dispatch_expired: 0,
            run_expired_retry: 1,
            run_expired_dead: 1,
            run_expired_cancelled: 1,
        }
    );
    let first_now = f.get(first.id).await;
    assert_eq!(first_now.status, JobStatus::Pending);
    assert_eq!(first_now.attempts, 1);
    assert_eq!(first_now.run_at, f.now());
    assert!(first_now.last_error.is_some());
    let last_now = f.get(last.id).await;
    assert_eq!(last_now.status, JobStatus::Dead);
    assert_eq!(last_now.finished_at, Some(f.now()));
    assert_eq!(f.get(cancelling.id).await.status, JobStatus::Cancelled);
    assert_eq!(f.get(alive.id).await.status, JobStatus::Running);
    for (id, t) in [(first.id, t1), (last.id, t2), (cancelling.id, t3)] {
        assert_eq!(
            f.store.complete(id, t).await,
            Err(LeaseError::LeaseLost(id))
        );
    }
}

/// A dispatch the transport refused goes back to pending at once (the reaper's transition,
/// early): fenced by its token, not an attempt, and it frees its place under the cap.
pub async fn unsent_dispatches_go_back_at_once(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(f.due("acme", "alpha").await.id);
    }
    // Cap 3: three leased, the fourth waits.
    let leased = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 3,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 3);
    let (unsent, claimed, cancelled) = (&leased[0], &leased[1], &leased[2]);
    f.store
        .claim(claimed.job_id, claimed.lease_token, LEASE)
        .await
        .unwrap();
    f.store.cancel(cancelled.job_id).await.unwrap();
    let before = f.get(unsent.job_id).await;

    // Only the first is still dispatched under its token: a wrong token, the claimed job and the
    // cancelled one are skipped, and so is an unknown job.
    let returned = f
        .store
        .return_dispatched(vec![
            (unsent.job_id, LeaseToken::generate()),
            (unsent.job_id, unsent.lease_token),
            (claimed.job_id, claimed.lease_token),
            (cancelled.job_id, cancelled.lease_token),
            (new_job_id(), LeaseToken::generate()),
        ])
        .await
        .unwrap();
    assert_eq!(returned, 1);
    let back = f.get(unsent.job_id).await;
    assert_eq!(back.status, JobStatus::Pending);
    assert_eq!(back.attempts, 0, "an unsent dispatch is not an attempt");
    assert_eq!((back.lease_token, back.lease_expires_at), (None, None));
    assert_eq!(
        (back.run_at, back.deadline_at),
        (before.run_at, before.deadline_at),
        "it keeps its place in deadline order"
    );
    assert_eq!(f.get(claimed.job_id).await.status, JobStatus::Running);
    assert_eq!(f.get(cancelled.job_id).await.status, JobStatus::Cancelled);
    assert_eq!(
        f.store
            .claim(unsent.job_id, unsent.lease_token, LEASE)
            .await,
        Err(LeaseError::LeaseLost(unsent.job_id)),
        "the returned dispatch's token is dead"
    );
    // Returning twice changes nothing.
    assert_eq!(
        f.store
            .return_dispatched(vec![(unsent.job_id, unsent.lease_token)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(f.store.return_dispatched(Vec::new()).await.unwrap(), 0);
    // Its place under the cap is free again at once (1 running + 2 new leases = cap 3), without
    // waiting for the dispatch lease to expire; the earlier deadline goes first.
    let again = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 3,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    let again: Vec<JobId> = again.iter().map(|d| d.job_id).collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0], unsent.job_id);
    assert!(ids.contains(&again[1]) && again[1] != unsent.job_id);
}

pub async fn counts_and_prune(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.due("acme", "alpha").await;
    f.due("acme", "alpha").await;
    let (done, t) = f.running("acme", "beta").await;
    f.store.complete(done.id, t).await.unwrap();
    let cancelled = f.due("acme", "beta").await;
    f.store.cancel(cancelled.id).await.unwrap();
    let counts = f.store.counts().await.unwrap();
    let count = |uc: &str, s: JobStatus| {
        counts
            .iter()
            .find(|c| c.use_case == uc && c.status == s)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count("alpha", JobStatus::Pending), 2);
    assert_eq!(count("beta", JobStatus::Succeeded), 1);
    assert_eq!(count("beta", JobStatus::Cancelled), 1);
    assert_eq!(count("beta", JobStatus::Pending), 0);
    // Retention: nothing is old enough yet.
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 100).await.unwrap(),
        0
    );
    f.clock.advance(Duration::from_secs(7200));
    let young = f.due("acme", "beta").await;
    f.store.cancel(young.id).await.unwrap();
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 1).await.unwrap(),
        1,
        "bounded by the limit"
    );
    assert_eq!(
        f.store.prune(Duration::from_secs(3600), 100).await.unwrap(),
        1
    );
    assert_eq!(f.store.get(done.id).await.unwrap(), None);
    assert_eq!(f.store.get(cancelled.id).await.unwrap(), None);
    assert!(
        f.store.get(young.id).await.unwrap().is_some(),
        "recent terminal job kept"
    );
    let pending = f
        .store
        .list(
            &JobFilter {
                status: Some(JobStatus::Pending),
                ..Default::default()
            },
            PageRequest::new(None, 10),
        )
        .await
        .unwrap();
    assert_eq!(pending.jobs.len(), 2, "unfinished jobs are never pruned");
    f.store.ping().await.unwrap();
}
