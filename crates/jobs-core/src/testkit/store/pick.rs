//! The scheduler's pick (`lease_due`): due jobs only, earliest deadline first, never above a use
//! case's cap, even when pickers race.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::job::{JobId, LeaseToken};
use crate::status::JobStatus;
use crate::store::{Failure, PickRequest};

use super::{new_job, pick, Fixture, MakeStore, LEASE};

pub async fn lease_due_is_earliest_deadline_first(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let at = |secs: i64| now + chrono::TimeDelta::seconds(secs);
    let mk = |run_at_offset: i64, tolerance: u64, priority: i16| {
        let mut j = new_job("acme", "alpha");
        j.run_at = Some(at(run_at_offset));
        j.delay_tolerance = Duration::from_secs(tolerance);
        j.priority = priority;
        j
    };
    // deadline = max(run_at, now) + tolerance
    let late = f.add(mk(-100, 900, 0)).await; // deadline +900
    let urgent = f.add(mk(-10, 10, 0)).await; // deadline +10
    let middle = f.add(mk(-50, 100, 0)).await; // deadline +100
    let tie_low = f.add(mk(-5, 300, 1)).await; // deadline +300, priority 1
    let tie_high = f.add(mk(0, 300, 9)).await; // deadline +300, priority 9
    let future = f.add(mk(30, 1, 0)).await; // not due yet (deadline +31)
    let other_uc = f
        .add({
            let mut j = mk(-1000, 0, 0);
            j.use_case = "beta".into();
            j
        })
        .await;
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    let order: Vec<JobId> = leased.iter().map(|d| d.job_id).collect();
    assert_eq!(
        order,
        vec![urgent.id, middle.id, tie_high.id, tie_low.id, late.id]
    );
    for d in &leased {
        assert_eq!(d.use_case, "alpha");
        assert_eq!(d.attempt, 1);
        assert_eq!(d.tenant_id, "acme");
        let job = f.get(d.job_id).await;
        assert_eq!(job.status, JobStatus::Dispatched);
        assert_eq!(job.lease_token, Some(d.lease_token));
        assert_eq!(
            job.lease_expires_at,
            Some(now + chrono::TimeDelta::seconds(60))
        );
        assert_eq!(job.dispatched_at, Some(now));
        assert_eq!(job.deadline_at, d.deadline_at);
    }
    let tokens: BTreeSet<LeaseToken> = leased.iter().map(|d| d.lease_token).collect();
    assert_eq!(tokens.len(), leased.len(), "each lease has its own token");
    assert_eq!(f.get(future.id).await.status, JobStatus::Pending);
    assert_eq!(f.get(other_uc.id).await.status, JobStatus::Pending);
    // Once its run_at passes, the future job is due.
    f.clock.advance(Duration::from_secs(30));
    let next = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        next.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![future.id]
    );
    // The limit bounds a pick even when capacity is larger, and the earliest deadlines go first.
    for i in 0..5 {
        f.add(mk(0, 100 + i, 0)).await;
    }
    let two = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 2,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    assert!(two[0].deadline_at <= two[1].deadline_at);
}

/// Jobs scheduled for later whose deadlines sort before the due ones never take a due job's
/// place, and join the EDF order as soon as their `run_at` comes — also a retry waiting out its
/// backoff, and jobs that fall due between two picks.
pub async fn scheduled_jobs_join_the_pick_when_due(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let now = f.now();
    let mk = |run_at_offset: i64, tolerance: u64| {
        let mut j = new_job("acme", "alpha");
        j.run_at = Some(now + chrono::TimeDelta::seconds(run_at_offset));
        j.delay_tolerance = Duration::from_secs(tolerance);
        j
    };
    // 30 reminders 10 minutes ahead with 1 s of tolerance (deadline +601 s) sort before the
    // due jobs with an hour of tolerance (deadline ≥ +3600 s).
    let mut reminders = Vec::new();
    for i in 0..30 {
        reminders.push(f.add(mk(600, 1 + i)).await.id);
    }
    let due: Vec<JobId> = [
        f.add(mk(-10, 3600)).await.id,
        f.add(mk(0, 3700)).await.id,
        f.add(mk(-5, 3800)).await.id,
    ]
    .to_vec();
    let first = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 2,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        due[..2].to_vec(),
        "the due jobs, earliest deadline first, whatever is scheduled ahead"
    );
    // A retry waiting out its backoff is not due either.
    let (failing, token) = f.dispatch_one("alpha").await;
    assert_eq!(failing, due[2]);
    f.store.claim(failing, token, LEASE).await.unwrap();
    f.store
        .fail(
            failing,
            token,
            Failure {
                error: "boom".into(),
                retry_in: Some(Duration::from_secs(300)),
            },
        )
        .await
        .unwrap();
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    // After the backoff the retry is due; the reminders are not yet.
    f.clock.advance(Duration::from_secs(300));
    let retried = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        retried.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![due[2]]
    );
    // A later job with a long tolerance, due now: it must wait behind the reminders once they
    // fall due, because their deadlines are earlier.
    let patient = f.add(mk(300, 7200)).await.id;
    f.clock.advance(Duration::from_secs(301));
    let batch = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 100,
                limit: 10,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        reminders[..10].to_vec(),
        "promoted jobs take their place in deadline order"
    );
    let rest = f.store.lease_due("alpha", pick(100)).await.unwrap();
    let mut expected = reminders[10..].to_vec();
    expected.push(patient);
    assert_eq!(rest.iter().map(|d| d.job_id).collect::<Vec<_>>(), expected);
}

pub async fn lease_due_respects_the_cap(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    for _ in 0..10 {
        f.due("acme", "alpha").await;
    }
    let first = f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 3,
                limit: 100,
                lease: LEASE,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        f.store
            .lease_due(
                "alpha",
                PickRequest {
                    cap: 3,
                    limit: 100,
                    lease: LEASE
                }
            )
            .await
            .unwrap()
            .is_empty(),
        "cap reached"
    );
    // Running jobs hold their slot too.
    let d = &first[0];
    f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
    assert!(f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 3,
                limit: 100,
                lease: LEASE
            }
        )
        .await
        .unwrap()
        .is_empty());
    // A finished job frees exactly one slot.
    f.store.complete(d.job_id, d.lease_token).await.unwrap();
    assert_eq!(
        f.store
            .lease_due(
                "alpha",
                PickRequest {
                    cap: 3,
                    limit: 100,
                    lease: LEASE
                }
            )
            .await
            .unwrap()
            .len(),
        1
    );
    // A lower cap than the jobs in flight leases nothing (no underflow).
    assert!(f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 1,
                limit: 100,
                lease: LEASE
            }
        )
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .store
        .lease_due(
            "alpha",
            PickRequest {
                cap: 0,
                limit: 100,
                lease: LEASE
            }
        )
        .await
        .unwrap()
        .is_empty());
}

pub async fn concurrent_lease_due_never_exceeds_the_cap(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    for _ in 0..40 {
        f.due("acme", "alpha").await;
    }
    for round in 0..3 {
        let mut handles = Vec::new();
        for _ in 0..8 {
            let store = f.store.clone();
            handles.push(tokio::spawn(async move {
                store
                    .lease_due(
                        "alpha",
                        PickRequest {
                            cap: 5,
                            limit: 3,
                            lease: LEASE,
                        },
                    )
                    .await
            }));
        }
        let mut leased = Vec::new();
        for h in handles {
            leased.extend(h.await.unwrap().unwrap());
        }
        let ids: BTreeSet<JobId> = leased.iter().map(|d| d.job_id).collect();
        assert_eq!(ids.len(), leased.len(), "no job leased twice");
        assert_eq!(
            leased.len(),
            5,
            "round {round}: exactly the cap, never more"
        );
        // Finish them all to free the cap for the next round.
        for d in leased {
            f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
            f.store.complete(d.job_id, d.lease_token).await.unwrap();
        }
    }
}
