//! Expiry at the deadline: a job set to expire that has not started by its deadline ends
//! `expired` (`miss_deadline`) instead of running late, whether the pick finds it pending (waiting
//! for capacity, a pause or its turn) or a worker's claim finds it dispatched too late; other
//! jobs run late as before; a retry by hand opens a new window.

use std::time::Duration;

use crate::pause::PauseScope;
use crate::status::JobStatus;
use crate::store::LeaseError;

use super::{new_job, pick, Fixture, MakeStore, LEASE};

fn expiring(tenant: &str, use_case: &str, tolerance: u64) -> crate::job::NewJob {
    let mut j = new_job(tenant, use_case);
    j.delay_tolerance = Duration::from_secs(tolerance);
    j.expire_at_deadline = true;
    j
}

pub async fn a_job_set_to_expire_does_not_start_after_its_deadline(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let late = f.add(expiring("acme", "alpha", 10)).await;
    assert!(late.expire_at_deadline);
    let in_time = f.add(expiring("acme", "alpha", 60)).await;
    let mut runs_late = new_job("acme", "alpha");
    runs_late.delay_tolerance = Duration::from_secs(5);
    let runs_late = f.add(runs_late).await;
    assert!(!runs_late.expire_at_deadline);
    f.clock.advance(Duration::from_secs(20));
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    let mut ids: Vec<_> = leased.iter().map(|d| d.job_id).collect();
    ids.sort();
    let mut want = vec![in_time.id, runs_late.id];
    want.sort();
    assert_eq!(
        ids, want,
        "the late one that may run late runs; the expiring one does not"
    );
    let expired = f.get(late.id).await;
    assert_eq!(expired.status, JobStatus::Expired);
    assert_eq!(expired.finished_at, Some(f.now()));
    assert_eq!(expired.attempts, 0);
    assert!(expired.last_error.unwrap().contains("deadline"));
    assert!(expired.lease_token.is_none());
    // Terminal: cancel refuses it, retry opens a new window.
    assert!(f.store.cancel(late.id).await.is_err());
    let retried = f.store.retry(late.id, None).await.unwrap();
    assert_eq!(retried.status, JobStatus::Pending);
    assert_eq!(retried.deadline_at, f.now() + chrono::Duration::seconds(10));
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job_id, late.id);
}

pub async fn expiry_holds_while_a_job_waits_for_a_pause_or_capacity(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.store.pause(&PauseScope::use_case("alpha")).await.unwrap();
    let paused = f.add(expiring("acme", "alpha", 10)).await;
    // Capacity: beta's cap of 1 is taken by a running job.
    let (_running, _token) = f.running("acme", "beta").await;
    let waiting = f.add(expiring("acme", "beta", 10)).await;
    let scheduled = {
        let mut j = expiring("acme", "beta", 5);
        j.run_at = Some(f.now() + chrono::Duration::seconds(3));
        f.add(j).await
    };
    f.clock.advance(Duration::from_secs(11));
    let beta = crate::store::PickRequest {
        cap: 1,
        ..pick(100)
    };
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    assert!(f.store.lease_due("beta", beta).await.unwrap().is_empty());
    for id in [paused.id, waiting.id] {
        assert_eq!(f.get(id).await.status, JobStatus::Expired);
    }
    // Run at +3 s with 5 s to start: its deadline (+8 s) has passed too.
    assert_eq!(f.get(scheduled.id).await.status, JobStatus::Expired);
}

pub async fn a_late_claim_expires_the_job_instead_of_running_it(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let job = f.add(expiring("acme", "alpha", 10)).await;
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(leased.len(), 1);
    // The message reaches a worker 11 s later (a backed-up queue).
    f.clock.advance(Duration::from_secs(11));
    let claim = f.store.claim(job.id, leased[0].lease_token, LEASE).await;
    assert_eq!(claim, Err(LeaseError::LeaseLost(job.id)));
    let expired = f.get(job.id).await;
    assert_eq!(expired.status, JobStatus::Expired);
    assert_eq!((expired.attempts, expired.started_at), (0, None));
    assert!(expired.lease_token.is_none());
    // In time, the same job claims and runs.
    f.store.retry(job.id, None).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    f.clock.advance(Duration::from_secs(9));
    let many = f
        .store
        .claim_many(vec![(job.id, leased[0].lease_token)], LEASE)
        .await;
    assert_eq!(many[0].as_ref().unwrap().status, JobStatus::Running);
}

pub async fn a_job_released_after_its_deadline_expires_instead_of_restarting(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let job = f.add(expiring("acme", "alpha", 10)).await;
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    f.clock.advance(Duration::from_secs(5));
    let token = leased[0].lease_token;
    let running = f.store.claim(job.id, token, LEASE).await.unwrap();
    assert_eq!(running.first_started_at, Some(f.now()));
    // The worker shuts down after the deadline: released, the attempt not counted, the window
    // kept. Its next start would be late, so the next pick expires it.
    f.clock.advance(Duration::from_secs(10));
    f.store.release(job.id, token).await.unwrap();
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    let expired = f.get(job.id).await;
    assert_eq!(expired.status, JobStatus::Expired);
    assert_eq!(
        expired.first_started_at, running.first_started_at,
        "its first start stays"
    );
}
