//! Rate limits: a limited tenant starts its burst, then its rate, whatever the deadlines, while
//! other tenants take the places; an every-tenant limit gives each tenant a bucket; limits apply
//! to jobs already enqueued and hold under concurrent picks.

use std::time::Duration;

use crate::rate::RateLimit;

use super::{new_job, pick, Fixture, MakeStore};

fn count(leased: &[crate::job::Dispatch], tenant: &str) -> usize {
    leased.iter().filter(|d| d.tenant_id == tenant).count()
}

fn limit(use_case: &str, tenant: Option<&str>, per_second: f64, burst: u32) -> RateLimit {
    RateLimit::new(use_case, tenant.map(str::to_owned), per_second, burst).unwrap()
}

pub async fn a_rate_limited_tenant_starts_its_burst_then_its_rate(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 2.0, 3)])
        .await
        .unwrap();
    // acme's jobs have the earliest deadlines: without the limit they would take every place.
    for _ in 0..10 {
        let mut j = new_job("acme", "alpha");
        j.delay_tolerance = Duration::from_secs(10);
        f.add(j).await;
    }
    for _ in 0..3 {
        f.due("globex", "alpha").await;
        f.due("acme", "beta").await;
    }
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        (count(&leased, "acme"), count(&leased, "globex")),
        (3, 3),
        "the burst"
    );
    assert!(
        leased
            .windows(2)
            .all(|w| w[0].deadline_at <= w[1].deadline_at),
        "still in deadline order"
    );
    // Another use case is not limited.
    assert_eq!(f.store.lease_due("beta", pick(100)).await.unwrap().len(), 3);
    assert_eq!(
        f.store.rate_wait("alpha").await.unwrap(),
        Some(Duration::from_millis(500)),
        "one token every 0.5 s"
    );
    assert_eq!(f.store.rate_wait("beta").await.unwrap(), None);

    f.clock.advance(Duration::from_millis(500));
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        1
    );
    f.clock.advance(Duration::from_millis(250));
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        f.store.rate_wait("alpha").await.unwrap(),
        Some(Duration::from_millis(250))
    );
    // A long quiet spell refills the bucket up to the burst, not beyond.
    f.clock.advance(Duration::from_secs(10));
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        3
    );
    // The cap still counts: 3 + 3 + 1 + 3 in flight under a cap of 11 leaves one place.
    f.clock.advance(Duration::from_secs(10));
    let capped = crate::store::PickRequest {
        cap: 11,
        ..pick(100)
    };
    assert_eq!(f.store.lease_due("alpha", capped).await.unwrap().len(), 1);
    // ...and a job the cap left behind is not waiting on its rate: no wake-up is owed for it.
    assert_eq!(f.store.rate_wait("alpha").await.unwrap(), None);
}

pub async fn an_every_tenant_limit_gives_each_tenant_its_own_bucket(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let limits = [
        limit("alpha", Some("big"), 100.0, 5),
        limit("alpha", None, 1.0, 1),
    ];
    f.store.set_rate_limits(&limits).await.unwrap();
    assert_eq!(
        f.store.rate_limits().await.unwrap(),
        vec![limits[1].clone(), limits[0].clone()],
        "by use case, the every-tenant limit first"
    );
    for tenant in ["a", "b", "big"] {
        for _ in 0..6 {
            f.due(tenant, "alpha").await;
        }
    }
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        (
            count(&leased, "a"),
            count(&leased, "b"),
            count(&leased, "big")
        ),
        (1, 1, 5),
        "a tenant's own limit wins over the every-tenant one"
    );
    assert_eq!(
        f.store.rate_wait("alpha").await.unwrap(),
        Some(Duration::from_millis(10))
    );
    f.clock.advance(Duration::from_secs(1));
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(
        (
            count(&leased, "a"),
            count(&leased, "b"),
            count(&leased, "big")
        ),
        (1, 1, 1)
    );
}

pub async fn changed_rate_limits_apply_to_jobs_already_enqueued(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    for _ in 0..5 {
        f.due("acme", "alpha").await;
    }
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 0.001, 2)])
        .await
        .unwrap();
    // Setting the same limits again changes nothing (the bucket is not refilled).
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        2
    );
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 0.001, 2)])
        .await
        .unwrap();
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    // An every-tenant limit takes over from a removed own limit, with the tenant's bucket.
    f.store
        .set_rate_limits(&[limit("alpha", None, 0.001, 5)])
        .await
        .unwrap();
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    // Lifted: every remaining job starts at once.
    f.store.set_rate_limits(&[]).await.unwrap();
    assert!(f.store.rate_limits().await.unwrap().is_empty());
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        3
    );
    assert_eq!(f.store.rate_wait("alpha").await.unwrap(), None);
}

pub async fn rate_limits_hold_under_concurrent_picks(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 0.001, 5)])
        .await
        .unwrap();
    for _ in 0..40 {
        f.due("acme", "alpha").await;
    }
    let pickers: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            let batch = crate::store::PickRequest {
                limit: 3,
                ..pick(100)
            };
            tokio::spawn(async move { store.lease_due("alpha", batch).await.unwrap().len() })
        })
        .collect();
    let mut total = 0;
    for p in pickers {
        total += p.await.unwrap();
    }
    assert_eq!(total, 5, "eight concurrent pickers share one bucket");
}

pub async fn pruning_keeps_the_buckets_that_have_not_refilled(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 1.0, 2)])
        .await
        .unwrap();
    for _ in 0..6 {
        f.due("acme", "alpha").await;
    }
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        2
    );
    // An empty bucket survives pruning: no burst for free.
    f.store.prune(Duration::from_secs(3600), 100).await.unwrap();
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
    f.clock.advance(Duration::from_millis(1500));
    f.store.prune(Duration::from_secs(3600), 100).await.unwrap();
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        1,
        "a half-refilled bucket survives pruning"
    );
    // A refilled one may go: the same to the pick as a full one.
    f.clock.advance(Duration::from_secs(60));
    f.store.prune(Duration::from_secs(3600), 100).await.unwrap();
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        2
    );
}

pub async fn retried_jobs_come_under_a_limit_set_after_they_finished(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let job = f.due("acme", "alpha").await;
        f.store.cancel(job.id).await.unwrap();
        ids.push(job.id);
    }
    f.store
        .set_rate_limits(&[limit("alpha", Some("acme"), 0.001, 1)])
        .await
        .unwrap();
    for id in ids {
        f.store.retry(id, None).await.unwrap();
    }
    assert_eq!(
        f.store.lease_due("alpha", pick(100)).await.unwrap().len(),
        1
    );
    assert!(f
        .store
        .lease_due("alpha", pick(100))
        .await
        .unwrap()
        .is_empty());
}
