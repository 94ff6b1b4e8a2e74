//! Listing: filters, keyset pagination, payloads left out, the byte budget and the scan bound.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::job::{Job, JobId};
use crate::status::JobStatus;
use crate::store::{JobFilter, JobStore, PageRequest};

use super::{new_job, Fixture, MakeStore};

pub async fn keyset_pagination_returns_every_job_exactly_once(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut all = BTreeSet::new();
    for i in 0..37 {
        let tenant = if i % 3 == 0 { "globex" } else { "acme" };
        all.insert(f.due(tenant, "alpha").await.id);
    }
    for limit in [1, 4, 10, 37, 100] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = f
                .store
                .list(&JobFilter::default(), PageRequest::new(after, limit))
                .await
                .unwrap();
            assert!(page.jobs.len() <= limit as usize);
            seen.extend(page.jobs.iter().map(|j| j.id));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(next), page.jobs.last().map(|j| j.id));
                    after = Some(next);
                }
                None => break,
            }
        }
        let unique: BTreeSet<JobId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "limit {limit}: no duplicates");
        assert_eq!(unique, all, "limit {limit}: every job");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "newest (highest id) first");
    }
    // Jobs added while paging do not disturb the walk: they sort before the cursor.
    let first = f
        .store
        .list(&JobFilter::default(), PageRequest::new(None, 5))
        .await
        .unwrap();
    f.due("acme", "alpha").await;
    let rest = f
        .store
        .list(&JobFilter::default(), PageRequest::new(first.next, 100))
        .await
        .unwrap();
    assert_eq!(first.jobs.len() + rest.jobs.len(), all.len());
}

pub async fn list_filters(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let a1 = f.due("acme", "alpha").await;
    f.clock.advance(Duration::from_secs(10));
    let mut k = new_job("acme", "beta");
    k.kind = "other_kind".into();
    let a2 = f.add(k).await;
    f.clock.advance(Duration::from_secs(10));
    let g1 = f.due("globex", "alpha").await;
    f.store.cancel(g1.id).await.unwrap();
    let page = PageRequest::new(None, 100);
    let ids = |filter: JobFilter| {
        let store = f.store.clone();
        async move {
            store
                .list(&filter, page)
                .await
                .unwrap()
                .jobs
                .into_iter()
                .map(|j| j.id)
                .collect::<BTreeSet<_>>()
        }
    };
    let set = |v: &[JobId]| v.iter().copied().collect::<BTreeSet<_>>();
    let t0 = a1.created_at;
    assert_eq!(
        ids(JobFilter {
            tenant_id: Some("acme".into()),
            ..Default::default()
        })
        .await,
        set(&[a1.id, a2.id])
    );
    assert_eq!(
        ids(JobFilter {
            use_case: Some("alpha".into()),
            ..Default::default()
        })
        .await,
        set(&[a1.id, g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            status: Some(JobStatus::Cancelled),
            ..Default::default()
        })
        .await,
        set(&[g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            kind: Some("other_kind".into()),
            ..Default::default()
        })
        .await,
        set(&[a2.id])
    );
    assert_eq!(
        ids(JobFilter {
            created_after: Some(t0 + chrono::TimeDelta::seconds(5)),
            ..Default::default()
        })
        .await,
        set(&[a2.id, g1.id])
    );
    assert_eq!(
        ids(JobFilter {
            created_before: Some(t0 + chrono::TimeDelta::seconds(10)),
            ..Default::default()
        })
        .await,
        set(&[a1.id])
    );
    assert_eq!(
        ids(JobFilter {
            tenant_id: Some("acme".into()),
            use_case: Some("alpha".into()),
            status: Some(JobStatus::Pending),
            ..Default::default()
        })
        .await,
        set(&[a1.id])
    );
    // Values that look like SQL are just values.
    assert!(ids(JobFilter {
        tenant_id: Some("' OR 1=1 --".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(ids(JobFilter {
        kind: Some("%".into()),
        ..Default::default()
    })
    .await
    .is_empty());
}

/// Every page of `filter` from the start, each with the cursor it was asked with.
async fn walk(
    store: &dyn JobStore,
    filter: &JobFilter,
    page: PageRequest,
) -> Vec<(Option<JobId>, crate::store::Page)> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let got = store
            .list(filter, PageRequest { after, ..page })
            .await
            .unwrap();
        let next = got.next;
        pages.push((after, got));
        assert!(pages.len() < 1000, "the walk does not end");
        match next {
            Some(next) => {
                assert!(after.is_none_or(|a| next < a), "the cursor moves forward");
                after = Some(next);
            }
            None => return pages,
        }
    }
}

/// The ids of a walk, asserting newest first and no repeats.
fn walked_ids(pages: &[(Option<JobId>, crate::store::Page)]) -> Vec<JobId> {
    let ids: Vec<JobId> = pages
        .iter()
        .flat_map(|(_, p)| p.jobs.iter().map(|j| j.id))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, each job once");
    ids
}

pub async fn list_leaves_payloads_out_unless_asked(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    let mut jobs = Vec::new();
    for (i, payload) in [
        json!({"to": "a@b.c", "big": "x".repeat(10_000)}),
        json!([1, 2, {"deep": [null, true]}]),
        json!("just a string"),
        serde_json::Value::Null,
    ]
    .into_iter()
    .enumerate()
    {
        let mut job = new_job(if i % 2 == 0 { "acme" } else { "globex" }, "alpha");
        job.payload = payload;
        jobs.push(f.add(job).await);
    }
    jobs.reverse(); // newest first
    let full: Vec<Job> = {
        let mut v = Vec::new();
        for j in &jobs {
            v.push(f.get(j.id).await);
        }
        v
    };
    let without = |job: &Job| Job {
        payload: serde_json::Value::Null,
        ..job.clone()
    };
    let acme = JobFilter {
        tenant_id: Some("acme".into()),
        ..JobFilter::default()
    };
    let kind = JobFilter {
        kind: Some("test_kind".into()),
        ..JobFilter::default()
    };
    // Every shape a store may build: no filter, tenant, other filters; scan bound or not; a
    // byte budget or not.
    for filter in [JobFilter::default(), acme.clone(), kind] {
        for max_scanned in [None, Some(2), Some(100)] {
            for max_bytes in [None, Some(1)] {
                let page = PageRequest {
                    include_payload: false,
                    max_scanned,
                    max_bytes,
                    ..PageRequest::new(None, 10)
                };
                let listed: Vec<Job> = walk(f.store.as_ref(), &filter, page)
                    .await
                    .into_iter()
                    .flat_map(|(_, p)| p.jobs)
                    .collect();
                let expected: Vec<Job> = full
                    .iter()
                    .filter(|j| filter.matches(j))
                    .map(without)
                    .collect();
                assert_eq!(
                    listed, expected,
                    "{filter:?} {max_scanned:?} {max_bytes:?}: every field but the payload"
                );
                let page = PageRequest {
                    include_payload: true,
                    ..page
                };
                let listed: Vec<Job> = walk(f.store.as_ref(), &filter, page)
                    .await
                    .into_iter()
                    .flat_map(|(_, p)| p.jobs)
                    .collect();
                let expected: Vec<Job> =
                    full.iter().filter(|j| filter.matches(j)).cloned().collect();
                assert_eq!(
                    listed, expected,
                    "{filter:?} {max_scanned:?} {max_bytes:?}: with payloads when asked"
                );
            }
        }
    }
    // The default and `new` keep payloads, as before the option existed.
    let page = f.store.list(&acme, PageRequest::default()).await.unwrap();
    assert_eq!(page.jobs, vec![full[1].clone(), full[3].clone()]);
}

pub async fn list_byte_budget_cuts_pages_and_continues(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // String payloads: their JSON text is the same length in every store (the characters and
    // the two quotes).
    let sizes = [
        1000usize, 1000, 1000, 5000, 1000, 1000, 10, 1000, 1000, 1000,
    ];
    let mut all = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let mut job = new_job(if i % 3 == 0 { "globex" } else { "acme" }, "alpha");
        job.payload = json!("x".repeat(*n));
        let job = f.add(job).await;
        all.push((job.id, (*n as u64) + 2, job.tenant_id));
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.0));
    let size_of = |id: JobId| all.iter().find(|j| j.0 == id).map(|j| j.1).unwrap();
    let budget = 2500u64;
    for (filter, max_scanned) in [
        (JobFilter::default(), None),
        (JobFilter::default(), Some(4)),
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                ..JobFilter::default()
            },
            None,
        ),
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                use_case: Some("alpha".into()),
                ..JobFilter::default()
            },
            Some(3),
        ),
    ] {
        let page = PageRequest {
            include_payload: true,
            max_bytes: Some(budget),
            max_scanned,
            ..PageRequest::new(None, 4)
        };
        let pages = walk(f.store.as_ref(), &filter, page).await;
        let expected: Vec<JobId> = all
            .iter()
            .filter(|j| filter.tenant_id.as_ref().is_none_or(|t| &j.2 == t))
            .map(|j| j.0)
            .collect();
        assert_eq!(walked_ids(&pages), expected, "{filter:?}: every job once");
        let mut cut = 0;
        for (i, (_, p)) in pages.iter().enumerate() {
            let bytes: u64 = p.jobs.iter().map(|j| size_of(j.id)).sum();
            assert!(p.jobs.len() <= 4);
            assert!(
                bytes <= budget || p.jobs.len() == 1,
                "{filter:?}: page {i} holds {bytes} payload bytes in {} jobs",
                p.jobs.len()
            );
            for j in &p.jobs {
                assert_eq!(
                    j.payload.as_str().map(str::len),
                    Some(size_of(j.id) as usize - 2)
                );
            }
            // A page stops only before a job that does not fit, when full, or at the end of
            // its scan window: the next job of the walk would have taken it over the budget.
            if let (Some(next_job), true) = (
                pages.get(i + 1).and_then(|(_, n)| n.jobs.first()),
                max_scanned.is_none() && p.jobs.len() < 4,
            ) {
                assert!(
                    bytes + size_of(next_job.id) > budget,
                    "{filter:?}: page {i} was cut although the next job fits"
                );
                cut += 1;
            }
        }
        if max_scanned.is_none() {
            assert!(cut >= 2, "{filter:?}: the budget cut some pages");
        }
        // A job larger than the whole budget still comes, alone, and the walk goes on.
        let big = all.iter().find(|j| j.1 == 5002).unwrap().0;
        if expected.contains(&big) {
            let (_, p) = pages
                .iter()
                .find(|(_, p)| p.jobs.iter().any(|j| j.id == big))
                .unwrap();
            assert!(p.jobs.len() == 1 || p.jobs.last().map(|j| j.id) == Some(big));
        }
    }
    // Many small payloads: pages of exactly what the budget holds, however the store fetches.
    let mut tiny = Vec::new();
    for _ in 0..45 {
        let mut job = new_job("tiny", "alpha");
        job.payload = json!("x".repeat(10)); // 12 bytes
        tiny.push(f.add(job).await.id);
    }
    tiny.sort_by(|a, b| b.cmp(a));
    let filter = JobFilter {
        tenant_id: Some("tiny".into()),
        ..JobFilter::default()
    };
    for max_scanned in [None, Some(5_000)] {
        let pages = walk(
            f.store.as_ref(),
            &filter,
            PageRequest {
                include_payload: true,
                max_bytes: Some(12 * 20),
                max_scanned,
                ..PageRequest::new(None, 100)
            },
        )
        .await;
        let sizes: Vec<usize> = pages.iter().map(|(_, p)| p.jobs.len()).collect();
        assert_eq!(sizes, vec![20, 20, 5], "{max_scanned:?}");
        assert_eq!(walked_ids(&pages), tiny);
        let all = f
            .store
            .list(
                &filter,
                PageRequest {
                    include_payload: true,
                    max_bytes: Some(1 << 20),
                    max_scanned,
                    ..PageRequest::new(None, 100)
                },
            )
            .await
            .unwrap();
        assert_eq!((all.jobs.len(), all.next), (45, None), "{max_scanned:?}");
    }
    // A budget below every payload: one job per page, each page but the last with a cursor.
    let pages = walk(
        f.store.as_ref(),
        &JobFilter::default(),
        PageRequest {
            include_payload: true,
            max_bytes: Some(1),
            ..PageRequest::new(None, 100)
        },
    )
    .await;
    assert_eq!(pages.len(), sizes.len() + 45);
    assert!(pages.iter().all(|(_, p)| p.jobs.len() == 1));
    // Payloads left out are not counted: the budget does not cut.
    let page = f
        .store
        .list(
            &JobFilter::default(),
            PageRequest {
                include_payload: false,
                max_bytes: Some(1),
                ..PageRequest::new(None, 100)
            },
        )
        .await
        .unwrap();
    assert_eq!((page.jobs.len(), page.next), (sizes.len() + 45, None));
}

/// The page [`PageRequest`] defines for a scan bound (no byte budget): `candidates` newest
/// first, `matching` those passing the other filters.
fn reference_page(
    candidates: &[JobId],
    matching: &BTreeSet<JobId>,
    after: Option<JobId>,
    limit: u32,
    window: u32,
) -> (Vec<JobId>, Option<JobId>) {
    let examined: Vec<JobId> = candidates
        .iter()
        .copied()
        .filter(|id| after.is_none_or(|a| *id < a))
        .take(window as usize)
        .collect();
    let mut page = Vec::new();
    for id in &examined {
        if matching.contains(id) {
            if page.len() == limit as usize {
                return (page.clone(), page.last().copied());
            }
            page.push(*id);
        }
    }
    let next = if examined.len() == window as usize {
        examined.last().copied()
    } else {
        None
    };
    (page, next)
}

pub async fn list_scan_bound_walks_sparse_filters_exactly_once(make: impl MakeStore) {
    let f = Fixture::new(make).await;
    // acme: 30 jobs, 4 of them of a rare type; globex: 10 jobs in between, 3 of them cancelled.
    let mut acme = Vec::new();
    let mut rare = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    let mut everything = Vec::new();
    for i in 0..30 {
        let mut job = new_job("acme", "alpha");
        if [2, 16, 17, 29].contains(&i) {
            job.kind = "rare".into();
        }
        let job = f.add(job).await;
        if job.kind == "rare" {
            rare.insert(job.id);
        }
        acme.push(job.id);
        everything.push(job.id);
        if i % 3 == 0 {
            let other = f.due("globex", "alpha").await;
            if i % 9 == 0 {
                f.store.cancel(other.id).await.unwrap();
                cancelled.insert(other.id);
            }
            everything.push(other.id);
        }
    }
    let desc = |ids: &[JobId]| {
        let mut v = ids.to_vec();
        v.sort_by(|a, b| b.cmp(a));
        v
    };
    let acme = desc(&acme);
    let everything = desc(&everything);
    let cases = [
        (
            JobFilter {
                tenant_id: Some("acme".into()),
                kind: Some("rare".into()),
                ..JobFilter::default()
            },
            &acme,
            &rare,
        ),
        (
            JobFilter {
                status: Some(JobStatus::Cancelled),
                ..JobFilter::default()
            },
            &everything,
            &cancelled,
        ),
    ];
    for (filter, candidates, matching) in cases {
        for (limit, window) in [(2u32, 5u32), (1, 1), (10, 7), (3, 1000)] {
            let page = PageRequest {
                include_payload: false,
                max_scanned: Some(window),
                ..PageRequest::new(None, limit)
            };
            let pages = walk(f.store.as_ref(), &filter, page).await;
            let ids = walked_ids(&pages);
            assert_eq!(
                ids.iter().copied().collect::<BTreeSet<_>>(),
                *matching,
                "{filter:?} limit {limit} window {window}: every match exactly once"
            );
            for (after, p) in &pages {
                assert!(p.jobs.len() <= limit as usize);
                assert_eq!(
                    (p.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), p.next),
                    reference_page(candidates, matching, *after, limit, window),
                    "{filter:?} limit {limit} window {window}: the page after {after:?}"
                );
                // One call examines at most `window` candidates: the candidates below its
                // cursor down to (and including) its next cursor.
                if let Some(next) = p.next {
                    let examined = candidates
                        .iter()
                        .filter(|id| after.is_none_or(|a| **id < a) && **id >= next)
                        .count();
                    assert!(
                        examined <= window as usize,
                        "{filter:?} limit {limit} window {window}: a call examined {examined}"
                    );
                }
            }
            let calls = pages.len();
            let floor = candidates.len().div_ceil(window as usize);
            if (window as usize) < candidates.len() {
                assert!(
                    calls >= floor,
                    "{filter:?} window {window}: {calls} calls cannot cover {} candidates",
                    candidates.len()
                );
                assert!(
                    pages.iter().any(|(_, p)| p.jobs.is_empty() && p.next.is_some()),
                    "{filter:?} limit {limit} window {window}: a window without matches is an empty page with a cursor"
                );
            } else {
                assert_eq!(
                    calls,
                    matching.len().div_ceil(limit as usize).max(1),
                    "{filter:?}: a window wider than the data changes nothing"
                );
            }
        }
    }
}
