//! Tenant quotas: exact under concurrency, counting only unfinished jobs, on every path that adds
//! one (enqueue, batch, manual retry).

use crate::status::JobStatus;
use crate::store::{ChangeError, EnqueueError, Failure, JobFilter, PageRequest};

use super::{new_job, pick, Fixture, MakeStore, LEASE};

pub async fn quota_is_exact_under_concurrent_enqueues(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut handles = Vec::new();
    for _ in 0..50 {
        let store = f.store.clone();
        let mut job = new_job("acme", "alpha");
        job.quota = Some(10);
        handles.push(tokio::spawn(async move { store.enqueue(job).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(e) => {
                assert!(e.created);
                ok += 1;
            }
            Err(EnqueueError::QuotaExceeded {
                tenant_id,
                use_case,
                limit,
            }) => {
                assert_eq!(
                    (tenant_id.as_str(), use_case.as_str(), limit),
                    ("acme", "alpha", 10)
                );
                refused += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    let listed = f
        .store
        .list(&JobFilter::default(), PageRequest::new(None, 100))
        .await
        .unwrap();
    assert_eq!(listed.jobs.len(), 10);
    // Other tenants and use cases have their own budget.
    let mut other = new_job("globex", "alpha");
    other.quota = Some(10);
    f.store.enqueue(other).await.unwrap();
    let mut other_uc = new_job("acme", "beta");
    other_uc.quota = Some(10);
    f.store.enqueue(other_uc).await.unwrap();
}

pub async fn quota_counts_only_unfinished_jobs(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let limited = || {
        let mut j = new_job("acme", "alpha");
        j.quota = Some(2);
        j
    };
    let a = f.store.enqueue(limited()).await.unwrap().job;
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    // Dispatched and running jobs still count.
    let leased = f.store.lease_due("alpha", pick(10)).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    // A finished job frees its slot.
    let token = leased
        .iter()
        .find(|d| d.job_id == a.id)
        .unwrap()
        .lease_token;
    f.store.claim(a.id, token, LEASE).await.unwrap();
    f.store.complete(a.id, token).await.unwrap();
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
}

/// A manual retry brings a finished job back into its tenant's quota, so it is refused exactly as
/// an enqueue would be (review finding: cancel a, enqueue c, retry a → 3 jobs at quota 2).
pub async fn retry_counts_against_the_quota(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let limited = || {
        let mut j = new_job("acme", "alpha");
        j.quota = Some(2);
        j
    };
    let a = f.store.enqueue(limited()).await.unwrap().job;
    f.store.enqueue(limited()).await.unwrap();
    assert!(matches!(
        f.store.enqueue(limited()).await,
        Err(EnqueueError::QuotaExceeded { .. })
    ));
    f.store.cancel(a.id).await.unwrap();
    f.store.enqueue(limited()).await.unwrap();
    assert_eq!(
        f.store.retry(a.id, Some(2)).await,
        Err(ChangeError::QuotaExceeded {
            tenant_id: "acme".into(),
            use_case: "alpha".into(),
            limit: 2,
        })
    );
    // Refused means unchanged.
    let still = f.store.get(a.id).await.unwrap().unwrap();
    assert_eq!(still.status, JobStatus::Cancelled);
    assert_eq!(f.unfinished("acme", "alpha").await, 2);

    // Dead jobs too, any number of them.
    let mut dead = Vec::new();
    for _ in 0..3 {
        let (job, token) = f.running("acme", "beta").await;
        f.store
            .fail(
                job.id,
                token,
                Failure {
                    error: "boom".into(),
                    retry_in: None,
                },
            )
            .await
            .unwrap();
        dead.push(job.id);
    }
    let mut retried = 0;
    for id in &dead {
        match f.store.retry(*id, Some(2)).await {
            Ok(job) => {
                assert_eq!(job.status, JobStatus::Pending);
                retried += 1;
            }
            Err(ChangeError::QuotaExceeded { limit: 2, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(retried, 2);
    assert_eq!(f.unfinished("acme", "beta").await, 2);
    // Another tenant's budget is its own (acme's beta is full), and no quota means no limit.
    let (other, token) = f.running("globex", "beta").await;
    f.store
        .fail(
            other.id,
            token,
            Failure {
                error: "boom".into(),
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.retry(other.id, Some(2)).await.unwrap().status,
        JobStatus::Pending
    );
    let third = dead[2];
    assert_eq!(
        f.store.retry(third, None).await.unwrap().status,
        JobStatus::Pending
    );
    // A refused retry of a job that is not retryable still says why.
    assert!(matches!(
        f.store.retry(third, Some(0)).await,
        Err(ChangeError::Illegal(e)) if e.from == JobStatus::Pending
    ));
}

/// Mixed concurrent enqueues and retries at quota 10 never leave more than 10 unfinished jobs.
pub async fn quota_is_exact_under_concurrent_enqueues_and_retries(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // 20 cancelled jobs to retry (enqueued without a quota, then cancelled).
    let mut cancelled = Vec::new();
    for _ in 0..20 {
        let job = f.due("acme", "alpha").await;
        f.store.cancel(job.id).await.unwrap();
        cancelled.push(job.id);
    }
    // Three already unfinished.
    for _ in 0..3 {
        f.due("acme", "alpha").await;
    }
    let mut handles = Vec::new();
    for (i, id) in cancelled.into_iter().enumerate() {
        let store = f.store.clone();
        handles.push(tokio::spawn(async move {
            store.retry(id, Some(10)).await.is_ok()
        }));
        let store = f.store.clone();
        let mut job = new_job("acme", "alpha");
        job.quota = Some(10);
        job.priority = i16::try_from(i).unwrap();
        handles.push(tokio::spawn(async move {
            match store.enqueue(job).await {
                Ok(e) => e.created,
                Err(EnqueueError::QuotaExceeded { .. }) => false,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }));
    }
    let mut admitted = 0;
    for h in handles {
        admitted += usize::from(h.await.unwrap());
    }
    assert_eq!(admitted, 7, "3 were there, the quota is 10");
    assert_eq!(f.unfinished("acme", "alpha").await, 10);
}
