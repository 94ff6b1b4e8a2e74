//! Pause and resume: a paused use case, or a paused tenant in it, is passed over by the pick;
//! in-flight jobs finish; pauses are idempotent and listed; a resume wakes the scheduler.

use std::time::Duration;

use crate::pause::PauseScope;
use crate::status::JobStatus;
use crate::store::Wakeup;

use super::{pick, Fixture, MakeStore, LEASE};

fn leased_tenants(leased: &[crate::job::Dispatch]) -> Vec<String> {
    let mut t: Vec<String> = leased.iter().map(|d| d.tenant_id.clone()).collect();
    t.sort();
    t
}

pub async fn a_paused_use_case_or_tenant_is_passed_over_by_the_pick(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // One running job, then the pause: it finishes as usual.
    let (running, token) = f.running("acme", "alpha").await;
    let whole = f.store.pause(&PauseScope::use_case("alpha")).await.unwrap();
    assert_eq!(whole.scope, PauseScope::use_case("alpha"));
    assert_eq!(whole.paused_at, f.now());
    for tenant in ["acme", "acme", "globex"] {
        f.due(tenant, "alpha").await;
    }
    let other = f.due("acme", "beta").await;
    assert!(
        f.store
            .lease_due("alpha", pick(100))
            .await
            .unwrap()
            .is_empty(),
        "a paused use case leases nothing"
    );
    // Other use cases are not affected; a running job of the paused one completes.
    let beta = f.store.lease_due("beta", pick(100)).await.unwrap();
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].job_id, other.id);
    let done = f.store.complete(running.id, token).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);

    // Pausing again is idempotent: the first paused_at stays.
    f.clock.advance(Duration::from_secs(30));
    let again = f.store.pause(&PauseScope::use_case("alpha")).await.unwrap();
    assert_eq!(again, whole);

    // A tenant pause inside the use case, then the whole use case resumed: only that tenant's
    // jobs wait.
    let acme = PauseScope::tenant("alpha", "acme");
    let tenant_pause = f.store.pause(&acme).await.unwrap();
    assert_eq!(tenant_pause.paused_at, f.now());
    assert_eq!(
        f.store.pauses().await.unwrap(),
        vec![whole.clone(), tenant_pause.clone()],
        "listed by use case, the whole use case before its tenants"
    );
    assert!(f
        .store
        .resume(&PauseScope::use_case("alpha"))
        .await
        .unwrap());
    assert!(
        !f.store
            .resume(&PauseScope::use_case("alpha"))
            .await
            .unwrap(),
        "resuming what is not paused says so"
    );
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(leased_tenants(&leased), ["globex"]);
    assert_eq!(f.store.pauses().await.unwrap(), vec![tenant_pause]);

    // Resuming the tenant releases its jobs to the next pick, earliest deadline first as ever.
    assert!(f.store.resume(&acme).await.unwrap());
    let leased = f.store.lease_due("alpha", pick(100)).await.unwrap();
    assert_eq!(leased_tenants(&leased), ["acme", "acme"]);
    assert!(leased[0].deadline_at <= leased[1].deadline_at);
    assert!(f.store.pauses().await.unwrap().is_empty());
}

pub async fn a_paused_scope_still_takes_enqueues_cancels_and_claims(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let job = f.due("acme", "alpha").await;
    let (leased_id, token) = f.dispatch_one("alpha").await;
    assert_eq!(leased_id, job.id);
    f.store
        .pause(&PauseScope::tenant("alpha", "acme"))
        .await
        .unwrap();
    // A job dispatched before the pause is still claimed and completed.
    f.store.claim(job.id, token, LEASE).await.unwrap();
    f.store.complete(job.id, token).await.unwrap();
    // Enqueue and cancel work as usual; the job waits pending.
    let waiting = f.due("acme", "alpha").await;
    assert_eq!(waiting.status, JobStatus::Pending);
    assert!(f
        .store
        .lease_due("alpha", pick(10))
        .await
        .unwrap()
        .is_empty());
    let cancelled = f.store.cancel(waiting.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    // A pause of one tenant leaves another tenant's tenant pause and the other use cases alone.
    assert!(!f
        .store
        .resume(&PauseScope::tenant("alpha", "globex"))
        .await
        .unwrap());
    assert!(!f
        .store
        .resume(&PauseScope::use_case("alpha"))
        .await
        .unwrap());
    assert_eq!(f.store.pauses().await.unwrap().len(), 1);
}

pub async fn resuming_wakes_the_scheduler(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.store.pause(&PauseScope::use_case("alpha")).await.unwrap();
    f.due("acme", "alpha").await;
    let mut wake = f.store.subscribe().await.unwrap();
    assert!(f
        .store
        .resume(&PauseScope::use_case("alpha"))
        .await
        .unwrap());
    let mut woke = false;
    while let Ok(Some(w)) = tokio::time::timeout(Duration::from_secs(10), wake.next()).await {
        if matches!(w, Wakeup::JobDue | Wakeup::Resync) {
            woke = true;
            break;
        }
    }
    assert!(woke, "a resume wakes the scheduler");
    assert_eq!(f.store.lease_due("alpha", pick(10)).await.unwrap().len(), 1);
}
