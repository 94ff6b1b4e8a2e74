//! The queue position behind a job's predicted start (`crate::predict`): the jobs ahead of it
//! are exactly the jobs the pick starts before it, in a fair mix and in plain EDF; paused,
//! scheduled and finished jobs; the bound; the in-flight count and the recorded drain rate.

use std::time::Duration;

use crate::job::{new_job_id, JobId, NewJob};
use crate::pause::PauseScope;
use crate::store::PickRequest;

use super::{new_job, Fixture, MakeStore, LEASE};

fn job(tenant: &str, weight: Option<u32>, tolerance_s: u64) -> NewJob {
    let mut job = new_job(tenant, "alpha");
    job.fair_weight = weight;
    job.delay_tolerance = Duration::from_secs(tolerance_s);
    job
}

async fn ahead(f: &Fixture, id: JobId) -> u64 {
    f.store
        .queue_position(id, 1000)
        .await
        .unwrap()
        .expect("a pending job has a position")
        .ahead
}

/// Leases one job at a time until none is left and checks each had exactly as many jobs ahead
/// as were leased before it.
async fn positions_match_the_pick(f: &Fixture, ids: &[JobId]) {
    let mut expected = Vec::new();
    for id in ids {
        expected.push((ahead(f, *id).await, *id));
    }
    expected.sort();
    let positions: Vec<u64> = expected.iter().map(|e| e.0).collect();
    let all: Vec<u64> = (0..ids.len() as u64).collect();
    assert_eq!(positions, all, "each job has a place of its own");
    for (i, (_, id)) in expected.iter().enumerate() {
        let pick = PickRequest {
            cap: 100_000,
            limit: 1,
            lease: LEASE,
        };
        let leased = f.store.lease_due("alpha", pick).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(
            leased[0].job_id, *id,
            "pick {i} starts the job with {i} ahead"
        );
        assert!(f.store.queue_position(*id, 1000).await.unwrap().is_none());
    }
}

pub async fn queue_positions_follow_the_pick_order(make: impl MakeStore) {
    // A fair mix: weights 2:1, one tenant's jobs enqueued before the other's.
    let f = Fixture::new(&make).await;
    let mut ids = Vec::new();
    let heavy = (0..6).map(|_| job("heavy", Some(2), 60)).collect();
    for e in f.store.enqueue_many(heavy).await.unwrap() {
        ids.push(e.job.id);
    }
    f.clock.advance(Duration::from_millis(5));
    for _ in 0..3 {
        ids.push(f.add(job("light", Some(1), 60)).await.id);
    }
    // The light tenant's first job goes ahead of most of heavy's backlog.
    assert!(
        ahead(&f, ids[6]).await <= 2,
        "light's first turn comes early"
    );
    positions_match_the_pick(&f, &ids).await;

    // Plain EDF: the deadline order, whoever sent the job and whatever its arrival.
    let f = Fixture::new(make).await;
    let mut ids = Vec::new();
    for (tenant, tolerance) in [("a", 30), ("b", 10), ("a", 20), ("b", 40), ("c", 5)] {
        ids.push(f.add(job(tenant, None, tolerance)).await.id);
    }
    assert_eq!(ahead(&f, ids[0]).await, 3);
    assert_eq!(ahead(&f, ids[4]).await, 0);
    positions_match_the_pick(&f, &ids).await;
}

pub async fn queue_position_counts_in_flight_bounds_and_reads_the_drain_rate(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    assert!(f
        .store
        .queue_position(new_job_id(), 10)
        .await
        .unwrap()
        .is_none());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(f.add(job("a", Some(1), 60)).await.id);
    }
    f.dispatch_one("alpha").await;
    f.dispatch_one("alpha").await;
    let last = ids[4];
    let pos = f.store.queue_position(last, 1000).await.unwrap().unwrap();
    assert_eq!(pos.ahead, 2);
    assert!(!pos.ahead_bounded && !pos.paused);
    assert_eq!(pos.in_flight, 2);
    assert_eq!(pos.at, f.now());
    assert_eq!(pos.drain_rate, None);
    // The bound: counted up to it, and flagged.
    let pos = f.store.queue_position(last, 1).await.unwrap().unwrap();
    assert_eq!((pos.ahead, pos.ahead_bounded), (1, true));
    let pos = f.store.queue_position(last, 2).await.unwrap().unwrap();
    assert_eq!((pos.ahead, pos.ahead_bounded), (2, true));

    // The drain rate, with when it was stored; a later one replaces it.
    f.store.record_drain_rate("alpha", 2.5).await.unwrap();
    let measured = f.now();
    f.clock.advance(Duration::from_secs(3));
    f.store.record_drain_rate("other", 9.0).await.unwrap();
    let rate = f.store.queue_position(last, 10).await.unwrap().unwrap();
    let rate = rate.drain_rate.expect("a recorded rate");
    assert_eq!((rate.per_second, rate.measured_at), (2.5, measured));
    f.store.record_drain_rate("alpha", 4.0).await.unwrap();
    let rate = f.store.queue_position(last, 10).await.unwrap().unwrap();
    let rate = rate.drain_rate.expect("a recorded rate");
    assert_eq!((rate.per_second, rate.measured_at), (4.0, f.now()));
    // The pick still works with the rate stored beside its clock.
    f.dispatch_one("alpha").await;
}

pub async fn paused_and_scheduled_jobs_hold_no_place(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let a1 = f.add(job("a", Some(1), 60)).await.id;
    let b1 = f.add(job("b", Some(1), 60)).await.id;
    let a2 = f.add(job("a", Some(1), 60)).await.id;
    assert_eq!(ahead(&f, a2).await, 2);
    // A paused tenant: its jobs are paused (no place) and not counted ahead of the others'.
    f.store
        .pause(&PauseScope::tenant("alpha", "b"))
        .await
        .unwrap();
    let pos = f.store.queue_position(b1, 100).await.unwrap().unwrap();
    assert!(pos.paused);
    assert_eq!(pos.ahead, 0);
    assert_eq!(ahead(&f, a2).await, 1);
    f.store
        .resume(&PauseScope::tenant("alpha", "b"))
        .await
        .unwrap();
    // A paused use case: every job of it is paused.
    f.store.pause(&PauseScope::use_case("alpha")).await.unwrap();
    assert!(
        f.store
            .queue_position(a1, 100)
            .await
            .unwrap()
            .unwrap()
            .paused
    );
    f.store
        .resume(&PauseScope::use_case("alpha"))
        .await
        .unwrap();
    assert!(
        !f.store
            .queue_position(a1, 100)
            .await
            .unwrap()
            .unwrap()
            .paused
    );
    // A job scheduled for later holds no place yet, and is not counted ahead of others.
    let mut later = job("c", Some(1), 60);
    later.run_at = Some(f.now() + chrono::TimeDelta::seconds(60));
    let later = f.add(later).await.id;
    let pos = f.store.queue_position(later, 100).await.unwrap().unwrap();
    assert_eq!((pos.ahead, pos.paused), (0, false));
    assert_eq!(ahead(&f, a1).await, 0);
    // Finished or cancelled: no position.
    f.store.cancel(a1).await.unwrap();
    assert!(f.store.queue_position(a1, 100).await.unwrap().is_none());
}
