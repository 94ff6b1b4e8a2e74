//! Fencing: a write that follows a lease changes a job only while the job is in the expected status
//! and holds that lease's token.

use crate::job::LeaseToken;
use crate::status::JobStatus;
use crate::store::{Failure, LeaseError};

use super::{Fixture, MakeStore, LEASE, SECOND};

pub async fn stale_tokens_change_nothing(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let fail = || Failure {
        error: "x".into(),
        retry_in: Some(SECOND),
    };
    // Pending: nothing fenced applies.
    let pending = f.due("acme", "alpha").await;
    let any = LeaseToken::generate();
    assert_eq!(
        f.store.claim(pending.id, any, LEASE).await,
        Err(LeaseError::LeaseLost(pending.id))
    );
    assert_eq!(
        f.store.complete(pending.id, any).await,
        Err(LeaseError::LeaseLost(pending.id))
    );
    assert_eq!(f.get(pending.id).await, pending);

    // Dispatched: a wrong token cannot claim; the right token cannot complete before claiming.
    let (id, token) = f.dispatch_one("alpha").await;
    let before = f.get(id).await;
    assert_eq!(
        f.store.claim(id, any, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.heartbeat(id, token, LEASE).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, token, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.release(id, token).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, before);

    // Running: a second claim with the same token loses; other tokens change nothing.
    let running = f.store.claim(id, token, LEASE).await.unwrap();
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, any).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, any, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.heartbeat(id, any, LEASE).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.release(id, any).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.finish_cancelled(id, any).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, running);

    // The lease expires, the reaper hands the job back, someone else leases it: the old worker's
    // late writes all lose.
    f.clock.advance(LEASE + SECOND);
    f.store.reap_expired(100).await.unwrap();
    let (again, new_token) = f.dispatch_one("alpha").await;
    assert_eq!(again, id);
    assert_ne!(new_token, token);
    let snapshot = f.get(id).await;
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.claim(id, token, LEASE).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.fail(id, token, fail()).await.map(|_| ()),
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(f.get(id).await, snapshot);
    let second = f.store.claim(id, new_token, LEASE).await.unwrap();
    assert_eq!(second.attempts, 2);
    assert_eq!(
        f.store.complete(id, token).await,
        Err(LeaseError::LeaseLost(id))
    );
    assert_eq!(
        f.store.complete(id, new_token).await.unwrap().status,
        JobStatus::Succeeded
    );
}
