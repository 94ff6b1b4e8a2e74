//! Weighted fair share inside EDF (`crate::fair`): turns split by weight, a flooder queues
//! behind its own jobs, each turn goes to its tenant's earliest deadline, nothing is banked by an
//! idle, paused or scheduled tenant, and plain EDF when the use case does not share.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::job::{Dispatch, NewJob};
use crate::pause::PauseScope;
use crate::store::Failure;

use crate::store::PickRequest;

use super::{new_job, Fixture, MakeStore, LEASE};

/// A pick of up to `n` jobs under a cap that never binds (the jobs leased before stay in flight).
fn pick(n: u32) -> PickRequest {
    PickRequest {
        cap: 100_000,
        limit: n,
        lease: LEASE,
    }
}

fn weighted(tenant: &str, weight: Option<u32>, tolerance_s: u64) -> NewJob {
    let mut job = new_job(tenant, "alpha");
    job.fair_weight = weight;
    job.delay_tolerance = Duration::from_secs(tolerance_s);
    job
}

async fn enqueue(f: &Fixture, tenant: &str, weight: Option<u32>, tolerance_s: u64, n: usize) {
    let jobs = (0..n)
        .map(|_| weighted(tenant, weight, tolerance_s))
        .collect();
    f.store.enqueue_many(jobs).await.unwrap();
}

fn per_tenant(leased: &[Dispatch]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in leased {
        *m.entry(d.tenant_id.clone()).or_default() += 1;
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

pub async fn fair_share_splits_turns_by_weight(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // Enqueued one after another, in one batch each: the order of arrival does not matter.
    enqueue(&f, "heavy", Some(2), 60, 40).await;
    enqueue(&f, "b", Some(1), 60, 40).await;
    enqueue(&f, "c", Some(1), 60, 40).await;
    let leased = f.store.lease_due("alpha", pick(20)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("heavy", 10), ("b", 5), ("c", 5)]),
        "2:1:1"
    );
    // The next turns keep the ratio; a tenant alone takes every slot (work-conserving).
    let leased = f.store.lease_due("alpha", pick(40)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("heavy", 20), ("b", 10), ("c", 10)])
    );
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("heavy", 10), ("b", 25), ("c", 25)]),
        "what heavy leaves goes to the others"
    );
}

pub async fn a_flooder_queues_behind_its_own_jobs(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // The flooder's 100 jobs have deadlines 5 s out; the others' an hour out.
    enqueue(&f, "flood", Some(1), 5, 100).await;
    let first = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(
        per_tenant(&first),
        counts(&[("flood", 10)]),
        "alone it takes all"
    );
    enqueue(&f, "b", Some(1), 3600, 1).await;
    enqueue(&f, "c", Some(1), 3600, 2).await;
    // b and c start at the clock, level with the flooder's next turn: they go now, although
    // every one of the flooder's deadlines is earlier.
    let next = f.store.lease_due("alpha", pick(5)).await.unwrap();
    assert_eq!(
        per_tenant(&next),
        counts(&[("flood", 2), ("b", 1), ("c", 2)])
    );
}

pub async fn each_turn_goes_to_the_tenants_earliest_deadline(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // a queues five loose jobs, then a tight one; b six loose ones.
    enqueue(&f, "a", Some(1), 600, 5).await;
    let tight = f.add(weighted("a", Some(1), 1)).await;
    enqueue(&f, "b", Some(1), 600, 6).await;
    let leased = f.store.lease_due("alpha", pick(2)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 1), ("b", 1)]));
    assert!(
        leased.iter().any(|d| d.job_id == tight.id),
        "a's first turn goes to its earliest deadline, not its first job"
    );
    // The turn a used out of order is not a turn more: a and b keep alternating.
    for _ in 0..5 {
        let leased = f.store.lease_due("alpha", pick(2)).await.unwrap();
        assert_eq!(per_tenant(&leased), counts(&[("a", 1), ("b", 1)]));
    }
    assert!(f
        .store
        .lease_due("alpha", pick(2))
        .await
        .unwrap()
        .is_empty());
}

pub async fn idle_paused_and_scheduled_tenants_bank_no_turns(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    enqueue(&f, "a", Some(1), 600, 40).await;
    enqueue(&f, "b", Some(1), 600, 20).await;
    let mut later = weighted("c", Some(1), 600);
    later.run_at = Some(f.now() + chrono::TimeDelta::seconds(10));
    let later: Vec<NewJob> = (0..10)
        .map(|_| {
            let mut j = later.clone();
            j.id = crate::job::new_job_id();
            j
        })
        .collect();
    f.store.enqueue_many(later).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 5), ("b", 5)]));

    // b pauses: a takes every turn meanwhile.
    let pause = PauseScope::tenant("alpha", "b");
    f.store.pause(&pause).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 10)]));
    // Resumed, b shares from now on; it does not get back the turns it missed.
    f.store.resume(&pause).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 5), ("b", 5)]));

    // c's scheduled jobs take turns from when they become due, not from their enqueue.
    f.clock.advance(Duration::from_secs(10));
    let leased = f.store.lease_due("alpha", pick(9)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 3), ("b", 3), ("c", 3)]));

    // A tenant idle until now starts level with the others, not ahead of them.
    enqueue(&f, "d", Some(1), 600, 10).await;
    let leased = f.store.lease_due("alpha", pick(8)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("a", 2), ("b", 2), ("c", 2), ("d", 2)])
    );
}

pub async fn a_use_case_without_fair_share_is_plain_edf(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    enqueue(&f, "flood", None, 5, 20).await;
    enqueue(&f, "b", None, 3600, 5).await;
    let leased = f.store.lease_due("alpha", pick(20)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("flood", 20)]),
        "earliest deadlines first, whoever sent them"
    );
    let leased = f.store.lease_due("alpha", pick(20)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("b", 5)]));
}

pub async fn a_retried_job_takes_its_tenants_next_turn(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    enqueue(&f, "a", Some(1), 600, 1).await;
    let (id, token) = f.dispatch_one("alpha").await;
    f.store
        .claim(id, token, Duration::from_secs(60))
        .await
        .unwrap();
    let failure = Failure {
        error: "boom".to_owned(),
        retry_in: None,
    };
    f.store.fail(id, token, failure).await.unwrap();
    enqueue(&f, "a", Some(1), 600, 3).await;
    enqueue(&f, "b", Some(1), 600, 4).await;
    // The retry is a's fourth job waiting: behind its three, level with b's fourth.
    f.store.retry(id, None).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(6)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 3), ("b", 3)]));
    let leased = f.store.lease_due("alpha", pick(2)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 1), ("b", 1)]));
}

pub async fn concurrent_enqueues_of_a_tenant_take_distinct_turns(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                store.enqueue(weighted("par", Some(1), 600)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..200 {
        f.add(weighted("seq", Some(1), 600)).await;
    }
    // Eight connections of one tenant are still one tenant: 1:1.
    let leased = f.store.lease_due("alpha", pick(200)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("par", 100), ("seq", 100)]));
}

pub async fn a_failure_without_backoff_is_not_a_free_turn(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut flaky = weighted("a", Some(1), 60);
    flaky.max_attempts = 1000;
    flaky.backoff = crate::backoff::Backoff {
        strategy: crate::backoff::BackoffStrategy::Constant,
        base: Duration::ZERO,
        cap: Duration::ZERO,
        jitter: crate::backoff::Jitter::None,
    };
    let flaky = f.add(flaky).await;
    enqueue(&f, "a", Some(1), 600, 20).await;
    enqueue(&f, "b", Some(1), 600, 21).await;
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..10 {
        let leased = f.store.lease_due("alpha", pick(2)).await.unwrap();
        for d in &leased {
            *total.entry(d.tenant_id.clone()).or_default() += 1;
            if d.job_id == flaky.id {
                f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
                let failure = Failure {
                    error: "again".to_owned(),
                    retry_in: Some(Duration::ZERO),
                };
                f.store
                    .fail(d.job_id, d.lease_token, failure)
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(total, counts(&[("a", 10), ("b", 10)]), "20 turns, 1:1");
}

pub async fn a_retry_while_paused_banks_no_turns(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    enqueue(&f, "b", Some(1), 600, 5).await;
    let leased = f.store.lease_due("alpha", pick(5)).await.unwrap();
    for d in &leased {
        f.store.claim(d.job_id, d.lease_token, LEASE).await.unwrap();
        let failure = Failure {
            error: "dead".to_owned(),
            retry_in: None,
        };
        f.store
            .fail(d.job_id, d.lease_token, failure)
            .await
            .unwrap();
    }
    let pause = PauseScope::tenant("alpha", "b");
    f.store.pause(&pause).await.unwrap();
    for d in &leased {
        f.store.retry(d.job_id, None).await.unwrap();
    }
    enqueue(&f, "a", Some(1), 600, 100).await;
    let leased_a = f.store.lease_due("alpha", pick(50)).await.unwrap();
    assert_eq!(per_tenant(&leased_a), counts(&[("a", 50)]));
    f.store.resume(&pause).await.unwrap();
    let leased = f.store.lease_due("alpha", pick(6)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("a", 3), ("b", 3)]),
        "b starts level, no credit"
    );
}

pub async fn rate_limited_turns_move_the_clock(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let every = crate::rate::RateLimit::new("alpha", None, 1000.0, 1000).unwrap();
    f.store.set_rate_limits(&[every]).await.unwrap();
    enqueue(&f, "a", Some(1), 600, 40).await;
    let leased = f.store.lease_due("alpha", pick(20)).await.unwrap();
    assert_eq!(per_tenant(&leased), counts(&[("a", 20)]));
    enqueue(&f, "d", Some(1), 600, 20).await;
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(
        per_tenant(&leased),
        counts(&[("a", 5), ("d", 5)]),
        "d starts level, no credit"
    );
}
