//! Bulk actions: retry or cancel every job that matches a filter, in bounded batches.
//!
//! [`JobService::bulk`](crate::JobService::bulk) walks the matching jobs page by page (newest
//! first, by id, so a job changed on the way is never met twice) and applies the action to each
//! through the same path as a single retry or cancel: the state table decides which jobs may
//! change, and a bulk retry counts against each tenant's quota exactly as one retry does (a job
//! that would take its tenant over quota is skipped and counted). One call handles at most
//! `limit` matching jobs and answers a cursor for the rest.

use serde::{Deserialize, Serialize};

use crate::job::JobId;
use crate::store::{ChangeError, JobFilter, PageRequest, StoreError};
use crate::TenantScope;

/// Most jobs one bulk call examines (the default is [`DEFAULT_BULK_LIMIT`]).
pub const MAX_BULK_LIMIT: u32 = 10_000;
/// Jobs one bulk call examines unless told otherwise.
pub const DEFAULT_BULK_LIMIT: u32 = 1_000;
/// Jobs read per page while walking the matches.
const PAGE: u32 = 500;

/// What a bulk call does to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Dead, cancelled or expired → pending, with a fresh set of attempts.
    Retry,
    /// Pending or dispatched → cancelled; running → cancel requested.
    Cancel,
}

/// What a bulk call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkOutcome {
    /// Jobs that matched the filter and were examined.
    pub matched: u64,
    /// Jobs the action changed.
    pub changed: u64,
    /// Matching jobs whose status does not allow the action (a succeeded job for cancel, a
    /// pending one for retry) or needs no change (a cancelled job for cancel).
    pub skipped_status: u64,
    /// Matching jobs a retry would have taken over their tenant's quota.
    pub skipped_quota: u64,
    /// More jobs may match: continue from this job (exclusive) with another call. `None` when
    /// the walk reached the end.
    pub next: Option<JobId>,
}

impl crate::JobService {
    /// Applies `action` to the jobs matching `filter` that `scope` may see, newest first,
    /// starting after job `after`: at most `limit` (1 to [`MAX_BULK_LIMIT`]) matching jobs per
    /// call. Each job goes through [`retry`](Self::retry) or [`cancel`](Self::cancel), so the
    /// state table and the quotas hold exactly as for one job. A store failure stops the call
    /// (what was changed stays changed; calling again skips it by its status).
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: JobFilter,
        limit: u32,
        after: Option<JobId>,
        scope: &TenantScope,
    ) -> Result<BulkOutcome, StoreError> {
        let limit = limit.clamp(1, MAX_BULK_LIMIT);
        let mut outcome = BulkOutcome::default();
        let mut after = after;
        loop {
            let left = u64::from(limit).saturating_sub(outcome.matched);
            let size = u32::try_from(left).unwrap_or(PAGE).min(PAGE);
            let page = self
                .list(filter.clone(), PageRequest::new(after, size), scope)
                .await?;
            for job in &page.jobs {
                outcome.matched += 1;
                if action == BulkAction::Cancel && job.status == crate::JobStatus::Cancelled {
                    outcome.skipped_status += 1;
                    continue;
                }
                let result = match action {
                    BulkAction::Retry => self.retry(job.id, scope).await.map(drop),
                    BulkAction::Cancel => self.cancel(job.id, scope).await.map(drop),
                };
                match result {
                    Ok(()) => outcome.changed += 1,
                    Err(ChangeError::Illegal(_)) => outcome.skipped_status += 1,
                    Err(ChangeError::QuotaExceeded { .. }) => outcome.skipped_quota += 1,
                    // Pruned or gone since the page was read: nothing to do.
                    Err(ChangeError::NotFound(_)) => {}
                    Err(ChangeError::Store(e)) => return Err(e),
                }
            }
            let Some(next) = page.next else {
                outcome.next = None;
                return Ok(outcome);
            };
            after = Some(next);
            if outcome.matched >= u64::from(limit) {
                outcome.next = after;
                return Ok(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryStore;
    use crate::{EnqueueRequest, JobService, JobStatus, PlatformConfig, QuotaConfig};

    async fn service_with_quota() -> JobService {
        let store = Arc::new(MemoryStore::new(Arc::new(ManualClock::default())));
        let config = PlatformConfig::default().with_quotas(QuotaConfig::unlimited().with_limit(
            "acme",
            "notifications",
            3,
        ));
        JobService::new(store, Arc::new(config))
    }

    async fn add(s: &JobService, tenant: &str) -> JobId {
        let req = EnqueueRequest::new(tenant, "notifications", "k", serde_json::json!({}));
        s.enqueue(req).await.unwrap().job.id
    }

    fn filter(status: JobStatus) -> JobFilter {
        JobFilter {
            status: Some(status),
            ..JobFilter::default()
        }
    }

    #[tokio::test]
    async fn bulk_cancel_then_retry_in_batches_with_quotas() {
        let s = service_with_quota().await;
        let all = TenantScope::All;
        let mut acme = Vec::new();
        for _ in 0..3 {
            acme.push(add(&s, "acme").await);
        }
        let globex: Vec<JobId> = [add(&s, "globex").await, add(&s, "globex").await].into();
        // Cancel every pending job, two per call: three calls, the cursor carrying on.
        let mut total = BulkOutcome::default();
        let mut after = None;
        let mut calls = 0;
        loop {
            let o = s
                .bulk(
                    BulkAction::Cancel,
                    filter(JobStatus::Pending),
                    2,
                    after,
                    &all,
                )
                .await
                .unwrap();
            calls += 1;
            assert!(o.matched <= 2);
            total.matched += o.matched;
            total.changed += o.changed;
            match o.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!((total.matched, total.changed), (5, 5));
        assert!(calls >= 3, "bounded batches: {calls} calls");
        // A cancel of cancelled jobs changes nothing: every one is skipped as illegal.
        let again = s
            .bulk(BulkAction::Cancel, JobFilter::default(), 100, None, &all)
            .await
            .unwrap();
        assert_eq!(
            (again.matched, again.changed, again.skipped_status),
            (5, 0, 5)
        );
        // acme holds a new pending job: a bulk retry of its three cancelled ones fits two.
        add(&s, "acme").await;
        let retried = s
            .bulk(
                BulkAction::Retry,
                filter(JobStatus::Cancelled),
                100,
                None,
                &all,
            )
            .await
            .unwrap();
        assert_eq!(retried.matched, 5);
        assert_eq!(retried.changed, 4, "globex's two and acme's two");
        assert_eq!(retried.skipped_quota, 1, "acme's quota of 3 holds");
        assert_eq!(retried.next, None);
        for id in &globex {
            assert_eq!(
                s.get(*id, &all).await.unwrap().unwrap().status,
                JobStatus::Pending
            );
        }
    }

    #[tokio::test]
    async fn a_tenant_scope_bulk_touches_only_its_own_jobs() {
        let s = service_with_quota().await;
        let mine = add(&s, "acme").await;
        let theirs = add(&s, "globex").await;
        let scope = TenantScope::Tenant("acme".into());
        let o = s
            .bulk(BulkAction::Cancel, JobFilter::default(), 100, None, &scope)
            .await
            .unwrap();
        assert_eq!((o.matched, o.changed), (1, 1));
        let all = TenantScope::All;
        assert_eq!(
            s.get(mine, &all).await.unwrap().unwrap().status,
            JobStatus::Cancelled
        );
        assert_eq!(
            s.get(theirs, &all).await.unwrap().unwrap().status,
            JobStatus::Pending
        );
        // Asking for another tenant with a tenant scope matches nothing.
        let other = JobFilter {
            tenant_id: Some("globex".into()),
            ..JobFilter::default()
        };
        let o = s
            .bulk(BulkAction::Cancel, other, 100, None, &scope)
            .await
            .unwrap();
        assert_eq!(o.matched, 0);
    }
}
