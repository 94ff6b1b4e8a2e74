//! A worker's lease: claim, heartbeat and the outcomes it records (complete, fail, release), one
//! by one and in batches.

use std::time::Duration;

use crate::job::{JobId, LeaseToken};
use crate::status::JobStatus;
use crate::store::{Failure, LeaseError};

use super::{pick, Fixture, MakeStore, LEASE, SECOND};

pub async fn dispatch_claim_heartbeat_complete(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let job = f.due("acme", "alpha").await;
    let (id, token) = f.dispatch_one("alpha").await;
    assert_eq!(id, job.id);
    f.clock.advance(SECOND);
    let claimed = f
        .store
        .claim(id, token, Duration::from_secs(45))
        .await
        .unwrap();
    assert_eq!(claimed.status, JobStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.lease_token, Some(token));
    assert_eq!(claimed.started_at, Some(f.now()));
    assert_eq!(
        claimed.lease_expires_at,
        Some(f.now() + chrono::TimeDelta::seconds(45))
    );
    assert_eq!(
        claimed.payload, job.payload,
        "the claim returns the payload"
    );
    f.clock.advance(Duration::from_secs(10));
    let hb = f
        .store
        .heartbeat(id, token, Duration::from_secs(45))
        .await
        .unwrap();
    assert_eq!(
        hb.lease_expires_at,
        f.now() + chrono::TimeDelta::seconds(45)
    );
    assert!(!hb.cancel_requested);
    assert_eq!(f.get(id).await.lease_expires_at, Some(hb.lease_expires_at));
    f.clock.advance(SECOND);
    let done = f.store.complete(id, token).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.finished_at, Some(f.now()));
    assert_eq!(done.lease_token, None);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.attempts, 1);
    assert_eq!(f.get(id).await, done);
    // Completing twice is refused: one final state.
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
}

pub async fn batch_claim_and_complete_match_one_by_one(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    assert!(f.store.claim_many(Vec::new(), LEASE).await.is_empty());
    assert!(f.store.complete_many(Vec::new()).await.is_empty());
    let jobs = [
        f.due("acme", "alpha").await,
        f.due("acme", "alpha").await,
        f.due("acme", "alpha").await,
    ];
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(leased.len(), 3);
    let token = |id: JobId| {
        leased
            .iter()
            .find(|d| d.job_id == id)
            .expect("leased")
            .lease_token
    };
    let (a, b, c) = (jobs[0].id, jobs[1].id, jobs[2].id);
    f.clock.advance(SECOND);
    let claimed = f
        .store
        .claim_many(
            vec![
                (a, token(a)),
                (b, LeaseToken::generate()),
                (c, token(c)),
                (a, token(a)),
            ],
            Duration::from_secs(45),
        )
        .await;
    assert_eq!(claimed.len(), 4);
    for (i, id) in [(0, a), (2, c)] {
        let job = claimed[i].as_ref().expect("claimed");
        assert_eq!(job.id, id);
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.started_at, Some(f.now()));
        assert_eq!(
            job.lease_expires_at,
            Some(f.now() + chrono::TimeDelta::seconds(45))
        );
        assert_eq!(
            job.payload, jobs[0].payload,
            "the claim returns the payload"
        );
        assert_eq!(&f.get(id).await, job);
    }
    assert_eq!(claimed[1], Err(LeaseError::LeaseLost(b)));
    assert_eq!(
        claimed[3],
        Err(LeaseError::LeaseLost(a)),
        "claimed once only"
    );
    assert_eq!(f.get(b).await.status, JobStatus::Dispatched);
    f.clock.advance(SECOND);
    let done = f
        .store
        .complete_many(vec![
            (c, LeaseToken::generate()),
            (a, token(a)),
            (b, token(b)),
        ])
        .await;
    assert_eq!(done[0], Err(LeaseError::LeaseLost(c)));
    assert_eq!(done[1], Ok(()), "completed");
    let finished = f.get(a).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert_eq!(finished.finished_at, Some(f.now()));
    assert_eq!(finished.lease_token, None);
    assert_eq!(finished.lease_expires_at, None);
    assert_eq!(
        done[2],
        Err(LeaseError::LeaseLost(b)),
        "b was never claimed"
    );
    assert_eq!(f.get(c).await.status, JobStatus::Running);
    assert_eq!(
        f.store.complete_many(vec![(a, token(a))]).await,
        vec![Err(LeaseError::LeaseLost(a))],
        "one final state"
    );
}

pub async fn fail_retries_with_backoff_then_dies(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    let failed = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "smtp timeout".into(),
                retry_in: Some(Duration::from_secs(20)),
            },
        )
        .await
        .unwrap();
    let retry_at = f.now() + chrono::TimeDelta::seconds(20);
    assert_eq!(failed.status, JobStatus::Pending);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("smtp timeout"));
    assert_eq!(failed.run_at, retry_at);
    assert_eq!(
        failed.deadline_at,
        retry_at + chrono::TimeDelta::seconds(60),
        "deadline follows run_at"
    );
    assert_eq!((failed.lease_token, failed.lease_expires_at), (None, None));
    assert_eq!(failed.finished_at, None);
    // Not due before its backoff passes.
    assert!(f
        .store
        .lease_due("alpha", pick(10))
        .await
        .unwrap()
        .is_empty());
    f.clock.advance(Duration::from_secs(20));
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].attempt, 2);
    let token = leased[0].lease_token;
    let second = f.store.claim(job.id, token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    // A permanent failure (no retry) is dead at once, attempts left or not.
    let dead = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "bad address".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.finished_at, Some(f.now()));
    assert_eq!(dead.last_error.as_deref(), Some("bad address"));
    assert_eq!(dead.attempts, 2);
    assert!(f
        .store
        .lease_due("alpha", pick(10))
        .await
        .unwrap()
        .is_empty());
}

pub async fn release_returns_the_job_without_penalty(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    assert_eq!(job.attempts, 1);
    f.clock.advance(Duration::from_secs(5));
    let released = f.store.release(job.id, token).await.unwrap();
    assert_eq!(released.status, JobStatus::Pending);
    assert_eq!(released.attempts, 0, "shutdown is not an attempt");
    assert!(released.run_at <= f.now(), "due at once");
    assert_eq!(
        (released.lease_token, released.lease_expires_at),
        (None, None)
    );
    assert_eq!(
        f.store.complete(job.id, token).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!((leased.len(), leased[0].attempt), (1, 1));
    // With a cancel request, release ends it cancelled instead.
    let (job, token) = f.running("acme", "beta").await;
    f.store.cancel(job.id).await.unwrap();
    assert_eq!(
        f.store.release(job.id, token).await.unwrap().status,
        JobStatus::Cancelled
    );
}
