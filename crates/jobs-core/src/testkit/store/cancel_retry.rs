//! Cancel and manual retry, edge by edge of the state table, and cooperative cancellation of a
//! running job.

use std::time::Duration;

use crate::job::{new_job_id, LeaseToken};
use crate::status::{JobStatus, Transition};
use crate::store::{ChangeError, Failure, LeaseError};

use super::{pick, Fixture, MakeStore, LEASE, SECOND};

pub async fn cancel_follows_the_state_table(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let pending = f.due("acme", "alpha").await;
    f.clock.advance(SECOND);
    let c = f.store.cancel(pending.id).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert_eq!(c.finished_at, Some(f.now()));
    // Cancelling again changes nothing.
    assert_eq!(f.store.cancel(pending.id).await.unwrap(), c);
    // Dispatched: cancelled, and the dispatch token can no longer claim it.
    f.due("acme", "alpha").await;
    let (id, token) = f.dispatch_one("alpha").await;
    let c = f.store.cancel(id).await.unwrap();
    assert_eq!((c.status, c.lease_token), (JobStatus::Cancelled, None));
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert!(
        f.store
            .lease_due("alpha", pick(10))
            .await
            .unwrap()
            .is_empty(),
        "never run again"
    );
    // Succeeded and dead cannot be cancelled.
    let (done, t) = f.running("acme", "alpha").await;
    f.store.complete(done.id, t).await.unwrap();
    assert_eq!(
        f.store.cancel(done.id).await,
        Err(ChangeError::Illegal(crate::IllegalTransition {
            from: JobStatus::Succeeded,
            event: Transition::Cancel
        }))
    );
    let (dead, t) = f.running("acme", "alpha").await;
    f.store
        .fail(
            dead.id,
            t,
            Failure {
                error: "x".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(f.store.cancel(dead.id).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Dead)
    );
    let unknown = new_job_id();
    assert_eq!(
        f.store.cancel(unknown).await,
        Err(ChangeError::NotFound(unknown))
    );
}

pub async fn running_cancel_is_cooperative(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let (job, token) = f.running("acme", "alpha").await;
    let c = f.store.cancel(job.id).await.unwrap();
    assert_eq!((c.status, c.cancel_requested), (JobStatus::Running, true));
    assert!(
        f.store
            .heartbeat(job.id, token, LEASE)
            .await
            .unwrap()
            .cancel_requested
    );
    // finish_cancelled needs the token.
    let wrong = LeaseToken::generate();
    assert_eq!(
        f.store.finish_cancelled(job.id, wrong).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    let done = f.store.finish_cancelled(job.id, token).await.unwrap();
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.finished_at, Some(f.now()));
    // A failing handler of a cancelled job does not go back to pending.
    let (job, token) = f.running("acme", "alpha").await;
    f.store.cancel(job.id).await.unwrap();
    let failed = f
        .store
        .fail(
            job.id,
            token,
            Failure {
                error: "stopped".into(),
                retry_in: Some(SECOND),
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, JobStatus::Cancelled);
    f.clock.advance(Duration::from_secs(5));
    assert!(
        f.store
            .lease_due("alpha", pick(10))
            .await
            .unwrap()
            .is_empty(),
        "never run again"
    );
    // finish_cancelled without a cancel request is refused.
    let (job, token) = f.running("acme", "alpha").await;
    assert_eq!(
        f.store.finish_cancelled(job.id, token).await,
        Err(LeaseError::LeaseLost(job.id))
    );
    assert_eq!(f.get(job.id).await.status, JobStatus::Running);
    // A job that completes despite a cancel request succeeded: the work was done.
    f.store.cancel(job.id).await.unwrap();
    assert_eq!(
        f.store.complete(job.id, token).await.unwrap().status,
        JobStatus::Succeeded
    );
}

pub async fn retry_follows_the_state_table(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let (dead, t) = f.running("acme", "alpha").await;
    f.store
        .fail(
            dead.id,
            t,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(3600));
    let retried = f.store.retry(dead.id, None).await.unwrap();
    assert_eq!(retried.status, JobStatus::Pending);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.run_at, f.now());
    assert_eq!(
        retried.deadline_at,
        f.now() + chrono::TimeDelta::seconds(60)
    );
    assert_eq!(retried.finished_at, None);
    assert_eq!(f.store.lease_due("alpha", pick(10)).await.unwrap().len(), 1);

    let cancelled = f.due("acme", "beta").await;
    f.store.cancel(cancelled.id).await.unwrap();
    let again = f.store.retry(cancelled.id, None).await.unwrap();
    assert_eq!(
        (again.status, again.cancel_requested),
        (JobStatus::Pending, false)
    );

    let pending = f.due("acme", "beta").await;
    assert!(
        matches!(f.store.retry(pending.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Pending)
    );
    let (running, t) = f.running("acme", "gamma").await;
    assert!(
        matches!(f.store.retry(running.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Running)
    );
    f.store.complete(running.id, t).await.unwrap();
    assert!(
        matches!(f.store.retry(running.id, None).await, Err(ChangeError::Illegal(e)) if e.from == JobStatus::Succeeded)
    );
    let unknown = new_job_id();
    assert_eq!(
        f.store.retry(unknown, None).await,
        Err(ChangeError::NotFound(unknown))
    );
}
