//! The backlog ([`ApiStore::backlog`](crate::ApiStore::backlog)): due pending jobs per use case
//! and per tenant, and the earliest `run_at` among them.

use std::time::Duration;

use crate::backlog::{BacklogGrouping, BacklogRow};
use crate::pause::PauseScope;
use crate::store::Failure;

use super::{new_job, pick, Fixture, MakeStore, SECOND};

fn row(
    use_case: &str,
    tenant: Option<&str>,
    due: u64,
    oldest: chrono::DateTime<chrono::Utc>,
) -> BacklogRow {
    BacklogRow {
        use_case: use_case.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        due,
        oldest_run_at: oldest,
    }
}

pub async fn backlog_counts_due_pending_jobs_and_the_oldest(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let t0 = f.now();
    let empty = f.store.backlog(BacklogGrouping::UseCase).await.unwrap();
    assert_eq!(empty.at, t0, "read at the store's clock");
    assert!(empty.rows.is_empty());

    // Due: two of acme's (one waiting since t0 - 30 s), one of globex's, one in beta.
    let mut waited = new_job("acme", "alpha");
    waited.run_at = Some(t0 - chrono::Duration::seconds(30));
    f.add(waited).await;
    f.due("acme", "alpha").await;
    f.due("globex", "alpha").await;
    f.due("acme", "beta").await;
    // Not due: scheduled for later; dispatched; running; finished.
    let mut later = new_job("acme", "alpha");
    later.run_at = Some(t0 + chrono::Duration::seconds(60));
    f.add(later).await;
    f.due("initech", "gamma").await;
    f.store.lease_due("gamma", pick(10)).await.unwrap();
    let (running, token) = f.running("initech", "delta").await;
    let (done, done_token) = f.running("initech", "epsilon").await;
    f.store.complete(done.id, done_token).await.unwrap();

    let oldest = t0 - chrono::Duration::seconds(30);
    let backlog = f.store.backlog(BacklogGrouping::UseCase).await.unwrap();
    assert_eq!(
        backlog.rows,
        vec![row("alpha", None, 3, oldest), row("beta", None, 1, t0)]
    );
    assert_eq!(
        backlog.rows[0].oldest_age(backlog.at),
        Duration::from_secs(30)
    );
    let by_tenant = f.store.backlog(BacklogGrouping::Tenant).await.unwrap();
    assert_eq!(
        by_tenant.rows,
        vec![
            row("alpha", Some("acme"), 2, oldest),
            row("alpha", Some("globex"), 1, t0),
            row("beta", Some("acme"), 1, t0),
        ]
    );
    assert_eq!(by_tenant.by_use_case(), backlog.rows);

    // A retry waiting out its backoff is not due until its new run_at; nor is a job scheduled
    // for later — both count once their time has come, whether or not a pick has run since.
    f.store
        .fail(
            running.id,
            token,
            Failure {
                error: "try again".into(),
                retry_in: Some(20 * SECOND),
            },
        )
        .await
        .unwrap();
    assert!(f
        .store
        .backlog(BacklogGrouping::UseCase)
        .await
        .unwrap()
        .rows
        .iter()
        .all(|r| r.use_case != "delta"));
    f.clock.advance(60 * SECOND);
    let t1 = f.now();
    let backlog = f.store.backlog(BacklogGrouping::UseCase).await.unwrap();
    assert_eq!(backlog.at, t1);
    assert_eq!(
        backlog.rows,
        vec![
            row("alpha", None, 4, oldest),
            row("beta", None, 1, t0),
            row("delta", None, 1, t0 + chrono::Duration::seconds(20)),
        ]
    );
    assert_eq!(backlog.rows[0].oldest_age(t1), Duration::from_secs(90));

    // Paused jobs are not in the backlog: a tenant's, then a whole use case's.
    f.store
        .pause(&PauseScope::tenant("alpha", "acme"))
        .await
        .unwrap();
    f.store.pause(&PauseScope::use_case("beta")).await.unwrap();
    let by_tenant = f.store.backlog(BacklogGrouping::Tenant).await.unwrap();
    assert_eq!(
        by_tenant.rows,
        vec![
            row("alpha", Some("globex"), 1, t0),
            row(
                "delta",
                Some("initech"),
                1,
                t0 + chrono::Duration::seconds(20)
            ),
        ]
    );
    f.store
        .resume(&PauseScope::tenant("alpha", "acme"))
        .await
        .unwrap();
    f.store.resume(&PauseScope::use_case("beta")).await.unwrap();

    // Leased jobs leave the backlog; what is left keeps its oldest run_at.
    let leased = f.store.lease_due("alpha", pick(1)).await.unwrap();
    assert_eq!(leased.len(), 1);
    let backlog = f.store.backlog(BacklogGrouping::UseCase).await.unwrap();
    assert_eq!(backlog.rows[0].use_case, "alpha");
    assert_eq!(backlog.rows[0].due, 3);
    assert_eq!(backlog.rows[1], row("beta", None, 1, t0));
}
