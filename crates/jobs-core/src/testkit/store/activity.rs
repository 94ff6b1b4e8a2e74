//! Recent activity (`ApiStore::activity`, the dashboard's overview): jobs finished per minute by
//! status, deadlines met and missed per minute of the first start, scoped to a tenant, bounded.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::activity::{ActivityQuery, MinuteActivity};
use crate::job::{JobId, LeaseToken};
use crate::status::JobStatus;
use crate::store::Failure;

use super::{new_job, pick, Fixture, MakeStore, LEASE};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn query(tenant: Option<&str>, minutes: u32, max_rows: u32) -> ActivityQuery {
    ActivityQuery {
        tenant_id: tenant.map(str::to_owned),
        minutes,
        max_rows,
    }
}

fn minute(
    succeeded: u64,
    dead: u64,
    cancelled: u64,
    expired: u64,
    met: u64,
    missed: u64,
) -> MinuteActivity {
    MinuteActivity {
        succeeded,
        dead,
        cancelled,
        expired,
        deadlines_met: met,
        deadlines_missed: missed,
    }
}

impl Fixture {
    /// Leases every due job of `use_case`: each job's token.
    async fn lease_all(&self, use_case: &str) -> HashMap<JobId, LeaseToken> {
        let leased = self.store.lease_due(use_case, pick(1000)).await.unwrap();
        leased
            .into_iter()
            .map(|d| (d.job_id, d.lease_token))
            .collect()
    }
}

pub async fn activity_counts_finished_jobs_and_deadlines_per_minute(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.clock.set(at("2026-03-01T12:00:10Z"));
    // 12:00:10: A starts in time and succeeds; G starts in time and fails (retried at once, a
    // new window); B waits; E (expires 10 s after) waits in beta.
    let a = f.due("acme", "alpha").await;
    let g = f.due("acme", "alpha").await;
    let tokens = f.lease_all("alpha").await;
    f.store.claim(a.id, tokens[&a.id], LEASE).await.unwrap();
    f.store.complete(a.id, tokens[&a.id]).await.unwrap();
    f.store.claim(g.id, tokens[&g.id], LEASE).await.unwrap();
    let again = Failure {
        error: "try again".into(),
        retry_in: Some(Duration::ZERO),
    };
    f.store.fail(g.id, tokens[&g.id], again).await.unwrap();
    let b = f.due("acme", "alpha").await;
    let mut e = new_job("acme", "beta");
    e.delay_tolerance = Duration::from_secs(10);
    e.expire_at_deadline = true;
    let e = f.add(e).await;

    // 12:02:20: B starts late and dies; G starts a second time (its first start was in time,
    // its deadline has moved since: left out); C starts in time and runs on; F (another
    // tenant) starts in time and succeeds; D is cancelled; E expires without starting.
    f.clock.set(at("2026-03-01T12:02:20Z"));
    let c = f.due("acme", "alpha").await;
    let other = f.due("other", "alpha").await;
    let d = f.due("acme", "beta").await;
    f.store.cancel(d.id).await.unwrap();
    let tokens = f.lease_all("alpha").await;
    for id in [b.id, g.id, c.id, other.id] {
        f.store.claim(id, tokens[&id], LEASE).await.unwrap();
    }
    let dead = Failure {
        error: "no".into(),
        retry_in: None,
    };
    f.store.fail(b.id, tokens[&b.id], dead).await.unwrap();
    f.store.complete(other.id, tokens[&other.id]).await.unwrap();
    assert!(f.lease_all("beta").await.is_empty(), "E expires instead");
    assert_eq!(f.get(e.id).await.status, JobStatus::Expired);

    let all = f.store.activity(&query(None, 3, 1000)).await.unwrap();
    assert_eq!(all.since, at("2026-03-01T12:00:00Z"));
    assert!(!all.truncated);
    let key = |uc: &str, t: &str| (uc.to_owned(), at(t));
    assert_eq!(
        all.minutes.get(&key("alpha", "2026-03-01T12:00:00Z")),
        Some(&minute(1, 0, 0, 0, 1, 0)),
        "A: succeeded and met; G's first start is left out"
    );
    assert_eq!(
        all.minutes.get(&key("alpha", "2026-03-01T12:02:00Z")),
        Some(&minute(1, 1, 0, 0, 2, 1)),
        "B dead and missed, C (running) and F met, F succeeded"
    );
    assert_eq!(
        all.minutes.get(&key("beta", "2026-03-01T12:02:00Z")),
        Some(&minute(0, 0, 1, 1, 0, 1)),
        "D cancelled, E expired without starting: missed"
    );
    assert_eq!(all.minutes.len(), 3, "{:?}", all.minutes);
    let count = |counts: &[crate::store::StatusCount], uc: &str, s: JobStatus| {
        counts
            .iter()
            .find(|c| c.use_case == uc && c.status == s)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count(&all.counts, "alpha", JobStatus::Succeeded), 2);
    assert_eq!(count(&all.counts, "alpha", JobStatus::Running), 2);
    assert_eq!(count(&all.counts, "beta", JobStatus::Expired), 1);
    let series = all.series("alpha", 3);
    assert_eq!(series.len(), 3);
    assert_eq!(
        series[1],
        (at("2026-03-01T12:01:00Z"), MinuteActivity::default())
    );

    // One tenant: its jobs only, counts included.
    let acme = f
        .store
        .activity(&query(Some("acme"), 3, 1000))
        .await
        .unwrap();
    assert_eq!(
        acme.minutes.get(&key("alpha", "2026-03-01T12:02:00Z")),
        Some(&minute(0, 1, 0, 0, 1, 1))
    );
    assert_eq!(count(&acme.counts, "alpha", JobStatus::Succeeded), 1);
    let nobody = f
        .store
        .activity(&query(Some("nobody"), 3, 1000))
        .await
        .unwrap();
    assert!(nobody.minutes.is_empty() && nobody.counts.is_empty());

    // A shorter window leaves the first minute out.
    let two = f.store.activity(&query(None, 2, 1000)).await.unwrap();
    assert_eq!(two.since, at("2026-03-01T12:01:00Z"));
    assert!(!two
        .minutes
        .contains_key(&key("alpha", "2026-03-01T12:00:00Z")));
    assert_eq!(two.minutes.len(), 2);
}

pub async fn activity_examines_a_bounded_number_of_jobs(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    f.clock.set(at("2026-03-01T12:00:10Z"));
    for _ in 0..5 {
        let j = f.due("acme", "alpha").await;
        f.store.cancel(j.id).await.unwrap();
        f.clock.advance(Duration::from_secs(1));
    }
    let exact = f.store.activity(&query(None, 5, 5)).await.unwrap();
    assert!(!exact.truncated, "five finished jobs fit a bound of five");
    let cut = f.store.activity(&query(None, 5, 2)).await.unwrap();
    assert!(cut.truncated);
    let finished: u64 = cut.minutes.values().map(MinuteActivity::finished).sum();
    assert_eq!(finished, 2, "the two most recently finished");
    // A job finished before the window is not examined at all.
    f.clock.advance(Duration::from_secs(600));
    let later = f.store.activity(&query(None, 5, 2)).await.unwrap();
    assert!(!later.truncated && later.minutes.is_empty());
    assert_eq!(later.counts.len(), 1, "counts cover every job");
}
