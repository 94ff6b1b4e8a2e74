//! `JobService`: the domain rules on top of any [`JobStore`].
//!
//! Enqueue validates and resolves defaults and quotas, then lets the store insert atomically;
//! cancel and retry are scoped to a tenant when the caller is; the failure path turns a handler's
//! outcome into success, a retry with backoff, a dead job or a cancellation.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::PlatformConfig;
use crate::enqueue::{validate, EnqueueRequest, ValidationError};
use crate::handler::{HandlerError, HandlerResult};
use crate::job::{Enqueued, Job, JobId, LeaseToken};
use crate::predict::{self, JobView, Prediction};
use crate::status::JobStatus;
use crate::store::{
    ChangeError, EnqueueError, Failure, JobFilter, JobStore, LeaseError, Page, PageRequest,
    StoreError,
};

/// Longest `last_error` kept, in bytes.
pub const MAX_ERROR_BYTES: usize = 2000;

/// Whose jobs a caller may see and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (operators, trusted services).
    All,
    /// Only this tenant's jobs; anything else is reported as not found.
    Tenant(String),
}

impl TenantScope {
    /// True if the caller may act on `tenant_id`'s jobs.
    pub fn allows(&self, tenant_id: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Tenant(t) => t == tenant_id,
        }
    }
}

/// The failure to record for a handler error on `job` (whose `attempts` is the attempt that
/// failed). `unit` in `[0, 1)` drives backoff jitter.
pub fn failure_for(job: &Job, error: &HandlerError, unit: f64) -> Failure {
    let attempts_left = job.attempts < job.max_attempts;
    let retry_in = match error {
        HandlerError::Permanent { .. } => None,
        _ if !attempts_left => None,
        HandlerError::Retryable {
            retry_after: Some(delay),
            ..
        } => Some(*delay),
        HandlerError::Retryable {
            retry_after: None, ..
        }
        | HandlerError::Cancelled => Some(job.backoff.delay(job.attempts, unit)),
    };
    Failure {
        error: truncate_error(&error.to_string()),
        retry_in,
    }
}

/// Cuts an error message to [`MAX_ERROR_BYTES`] on a character boundary.
pub fn truncate_error(message: &str) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The domain service: enqueue, inspect, cancel, retry and record outcomes.
#[derive(Debug, Clone)]
pub struct JobService {
    store: Arc<dyn JobStore>,
    config: Arc<PlatformConfig>,
    clock: Arc<dyn Clock>,
}

impl JobService {
    /// A service over `store` with the host clock.
    pub fn new(store: Arc<dyn JobStore>, config: Arc<PlatformConfig>) -> Self {
        JobService {
            store,
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for validation (the `run_at` horizon).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<PlatformConfig> {
        &self.config
    }

    /// The clock validation reads.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Validates and enqueues one job.
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<Enqueued, EnqueueError> {
        let job = validate(req, &self.config, self.clock.now())?;
        self.store.enqueue(job).await
    }

    /// Validates and enqueues a batch in one transaction (all or none).
    pub async fn enqueue_many(
        &self,
        reqs: Vec<EnqueueRequest>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let max = self.config.limits.max_batch;
        if reqs.is_empty() || reqs.len() > max {
            return Err(ValidationError::BatchSize { max }.into());
        }
        let now = self.clock.now();
        let jobs = reqs
            .into_iter()
            .enumerate()
            .map(|(index, req)| {
                validate(req, &self.config, now)
                    .map_err(|source| EnqueueError::InvalidInBatch { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store.enqueue_many(jobs).await
    }

    /// The job, if it exists and `scope` may see it.
    pub async fn get(&self, id: JobId, scope: &TenantScope) -> Result<Option<Job>, StoreError> {
        Ok(self
            .store
            .get(id)
            .await?
            .filter(|job| scope.allows(&job.tenant_id)))
    }

    /// The predicted start of `job` ([`crate::predict`]): an estimate from the jobs ahead of it
    /// in the pick order, the free places under its use case's cap and the drain rate the
    /// scheduler recorded. One store read ([`ApiStore::queue_position`](crate::ApiStore::queue_position)),
    /// made only for a pending job of a configured use case. It never fails: when the read
    /// fails, the failure is logged and the answer is [`Prediction::unknown`], so a caller
    /// that enqueued or read the job still gets it.
    pub async fn predict(&self, job: &Job) -> Prediction {
        if job.status != JobStatus::Pending {
            return Prediction::unknown();
        }
        let Some(cap) = self
            .config
            .use_cases
            .get(&job.use_case)
            .map(|u| u.max_concurrent)
        else {
            return Prediction::unknown();
        };
        match self
            .store
            .queue_position(job.id, predict::DEFAULT_AHEAD_BOUND)
            .await
        {
            Ok(position) => predict::from_position(job, position.as_ref(), cap),
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "reading the queue position for the predicted start failed");
                Prediction::unknown()
            }
        }
    }

    /// Validates and enqueues one job, then predicts its start ([`JobService::predict`], after
    /// the insert and outside its transaction; a failed prediction leaves it unknown).
    pub async fn enqueue_with_prediction(
        &self,
        req: EnqueueRequest,
    ) -> Result<(Enqueued, Prediction), EnqueueError> {
        let outcome = self.enqueue(req).await?;
        let prediction = self.predict(&outcome.job).await;
        Ok((outcome, prediction))
    }

    /// The job with its predicted start, if it exists and `scope` may see it.
    pub async fn get_with_prediction(
        &self,
        id: JobId,
        scope: &TenantScope,
    ) -> Result<Option<JobView>, StoreError> {
        let Some(job) = self.get(id, scope).await? else {
            return Ok(None);
        };
        let prediction = self.predict(&job).await;
        Ok(Some(JobView { job, prediction }))
    }

    /// Lists jobs visible to `scope`. A tenant-scoped caller only ever sees its own tenant, whatever
    /// the filter says.
    pub async fn list(
        &self,
        mut filter: JobFilter,
        page: PageRequest,
        scope: &TenantScope,
    ) -> Result<Page, StoreError> {
        // Validation refuses NUL in every stored name, so such a filter matches nothing (and some
        // stores cannot even compare text containing NUL).
        let has_nul = |v: &Option<String>| v.as_deref().is_some_and(|s| s.contains('\0'));
        if has_nul(&filter.tenant_id) || has_nul(&filter.use_case) || has_nul(&filter.kind) {
            return Ok(Page {
                jobs: Vec::new(),
                next: None,
            });
        }
        if let TenantScope::Tenant(own) = scope {
            match &filter.tenant_id {
                Some(asked) if asked != own => {
                    return Ok(Page {
                        jobs: Vec::new(),
                        next: None,
                    })
                }
                _ => filter.tenant_id = Some(own.clone()),
            }
        }
        self.store.list(&filter, page).await
    }

    /// Recent activity ([`crate::activity`]) of the jobs `scope` may see: a tenant-scoped caller
    /// only ever gets its own tenant's, whatever the query names.
    pub async fn activity(
        &self,
        mut query: crate::activity::ActivityQuery,
        scope: &TenantScope,
    ) -> Result<crate::activity::Activity, StoreError> {
        if let TenantScope::Tenant(own) = scope {
            query.tenant_id = Some(own.clone());
        }
        if query.tenant_id.as_deref().is_some_and(|t| t.contains('\0')) {
            // No job has such a tenant (validation refuses NUL), and some stores cannot compare it.
            return Ok(crate::activity::Activity {
                since: crate::activity::window_start(self.clock.now(), query.window_minutes()),
                counts: Vec::new(),
                minutes: Default::default(),
                truncated: false,
            });
        }
        self.store.activity(&query).await
    }

    /// The due backlog ([`crate::backlog`]) `scope` may see: per use case for every tenant, or,
    /// with a tenant (always its own for a tenant-scoped caller), that tenant's rows only.
    pub async fn backlog(
        &self,
        tenant: Option<String>,
        scope: &TenantScope,
    ) -> Result<crate::backlog::Backlog, StoreError> {
        let tenant = match scope {
            TenantScope::Tenant(own) => Some(own.clone()),
            TenantScope::All => tenant,
        };
        let Some(tenant) = tenant else {
            return self
                .store
                .backlog(crate::backlog::BacklogGrouping::UseCase)
                .await;
        };
        let mut backlog = self
            .store
            .backlog(crate::backlog::BacklogGrouping::Tenant)
            .await?;
        backlog
            .rows
            .retain(|r| r.tenant_id.as_deref() == Some(tenant.as_str()));
        Ok(backlog)
    }

    /// Cancels a job visible to `scope` (see [`ApiStore::cancel`](crate::store::ApiStore::cancel)).
    pub async fn cancel(&self, id: JobId, scope: &TenantScope) -> Result<Job, ChangeError> {
        self.visible(id, scope).await?;
        self.store.cancel(id).await
    }

    /// Retries a dead, cancelled or expired job visible to `scope`. The retried job counts against its
    /// tenant's quota exactly as an enqueue does ([`ChangeError::QuotaExceeded`] when full).
    pub async fn retry(&self, id: JobId, scope: &TenantScope) -> Result<Job, ChangeError> {
        // tenant_id and use_case never change, so resolving the quota before the write leaves no
        // race; the store counts and writes atomically.
        let job = match self.store.get(id).await? {
            Some(job) if scope.allows(&job.tenant_id) => job,
            _ => return Err(ChangeError::NotFound(id)),
        };
        let quota = self.config.quotas.limit_for(&job.tenant_id, &job.use_case);
        self.store.retry(id, quota).await
    }

    async fn visible(&self, id: JobId, scope: &TenantScope) -> Result<(), ChangeError> {
        if *scope == TenantScope::All {
            return Ok(());
        }
        // tenant_id never changes, so checking it before the write leaves no race.
        match self.store.get(id).await? {
            Some(job) if scope.allows(&job.tenant_id) => Ok(()),
            _ => Err(ChangeError::NotFound(id)),
        }
    }

    /// Records the outcome of an attempt of `job` (as returned by the claim) under `token`:
    /// success completes it; a failure retries it with backoff or kills it, following
    /// [`failure_for`]; a job with a pending cancel request ends cancelled.
    pub async fn record_outcome(
        &self,
        job: &Job,
        token: LeaseToken,
        outcome: &HandlerResult,
    ) -> Result<Job, LeaseError> {
        match outcome {
            Ok(()) => self.store.complete(job.id, token).await,
            Err(error) => {
                let failure = failure_for(job, error, fastrand::f64());
                self.store.fail(job.id, token, failure).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{Backoff, BackoffStrategy, Jitter};
    use crate::clock::ManualClock;
    use crate::memory::MemoryStore;
    use crate::store::MockJobStore;
    use std::time::Duration;

    fn job(attempts: u32, max_attempts: u32) -> Job {
        Job {
            use_case: "notifications".into(),
            payload: serde_json::json!({}),
            status: JobStatus::Running,
            attempts,
            max_attempts,
            backoff: Backoff {
                strategy: BackoffStrategy::Exponential,
                base: Duration::from_secs(2),
                cap: Duration::from_secs(60),
                jitter: Jitter::None,
            },
            ..crate::job::fixture(ManualClock::default().now())
        }
    }

    #[test]
    fn failure_decisions() {
        let retry = HandlerError::retryable("boom");
        assert_eq!(
            failure_for(&job(1, 3), &retry, 0.0).retry_in,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            failure_for(&job(2, 3), &retry, 0.0).retry_in,
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            failure_for(&job(3, 3), &retry, 0.0).retry_in,
            None,
            "last attempt → dead"
        );
        assert_eq!(
            failure_for(&job(1, 3), &HandlerError::permanent("x"), 0.0).retry_in,
            None
        );
        let after = HandlerError::retry_after("slow down", Duration::from_secs(42));
        assert_eq!(
            failure_for(&job(1, 3), &after, 0.0).retry_in,
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            failure_for(&job(1, 3), &HandlerError::Cancelled, 0.0).retry_in,
            Some(Duration::from_secs(2))
        );
        let long = HandlerError::retryable("é".repeat(5000));
        let f = failure_for(&job(1, 3), &long, 0.0);
        assert!(f.error.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
    }

    #[test]
    fn a_deadline_is_measured_once_at_the_first_start() {
        use crate::deadline::{first_start_outcome, DeadlineOutcome};
        let mut j = job(1, 3);
        let t = j.deadline_at;
        assert_eq!(first_start_outcome(&j), None, "not started");
        j.started_at = Some(t);
        j.first_started_at = Some(t);
        assert_eq!(first_start_outcome(&j), Some(DeadlineOutcome::Met));
        let late = t + chrono::TimeDelta::seconds(7);
        j.started_at = Some(late);
        j.first_started_at = Some(late);
        assert_eq!(
            first_start_outcome(&j),
            Some(DeadlineOutcome::Missed {
                late: Duration::from_secs(7)
            })
        );
        // A reclaim (release, retry) is not a first start.
        j.started_at = Some(late + chrono::TimeDelta::seconds(60));
        assert_eq!(first_start_outcome(&j), None);
    }

    #[tokio::test]
    async fn tenant_scope_hides_other_tenants() {
        let clock = Arc::new(ManualClock::default());
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let svc = JobService::new(store, Arc::new(PlatformConfig::default())).with_clock(clock);
        let a = svc
            .enqueue(EnqueueRequest::new(
                "a",
                "notifications",
                "k",
                serde_json::json!({}),
            ))
            .await
            .unwrap()
            .job;
        let b_scope = TenantScope::Tenant("b".into());
        assert_eq!(svc.get(a.id, &b_scope).await.unwrap(), None);
        assert_eq!(
            svc.cancel(a.id, &b_scope).await,
            Err(ChangeError::NotFound(a.id))
        );
        assert_eq!(
            svc.retry(a.id, &b_scope).await,
            Err(ChangeError::NotFound(a.id))
        );
        let page = PageRequest::new(None, 10);
        let filter = JobFilter {
            tenant_id: Some("a".into()),
            ..JobFilter::default()
        };
        assert!(svc
            .list(filter, page, &b_scope)
            .await
            .unwrap()
            .jobs
            .is_empty());
        assert!(svc
            .list(JobFilter::default(), page, &b_scope)
            .await
            .unwrap()
            .jobs
            .is_empty());
        let a_scope = TenantScope::Tenant("a".into());
        assert_eq!(
            svc.list(JobFilter::default(), page, &a_scope)
                .await
                .unwrap()
                .jobs
                .len(),
            1
        );
        assert_eq!(
            svc.get(a.id, &a_scope).await.unwrap().map(|j| j.id),
            Some(a.id)
        );
        assert_eq!(svc.get(a.id, &b_scope).await.unwrap(), None);
        assert_eq!(
            svc.cancel(a.id, &a_scope).await.unwrap().status,
            JobStatus::Cancelled
        );
    }

    #[tokio::test]
    async fn store_failures_surface_as_typed_errors() {
        let mut store = MockJobStore::new();
        store.expect_enqueue().returning(|_| {
            Err(EnqueueError::Store(StoreError::Unavailable(
                "connection refused".into(),
            )))
        });
        store
            .expect_complete()
            .returning(|id, _| Err(LeaseError::LeaseLost(id)));
        let svc = JobService::new(Arc::new(store), Arc::new(PlatformConfig::default()));
        let err = svc
            .enqueue(EnqueueRequest::new(
                "a",
                "notifications",
                "k",
                serde_json::json!({}),
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EnqueueError::Store(e) if e.is_retryable()),
            "{err:?}"
        );
        let j = job(1, 3);
        assert_eq!(
            svc.record_outcome(&j, LeaseToken::generate(), &Ok(()))
                .await,
            Err(LeaseError::LeaseLost(j.id))
        );
    }

    #[tokio::test]
    async fn invalid_requests_never_reach_the_store() {
        // A mock with no expectations panics if called.
        let svc = JobService::new(
            Arc::new(MockJobStore::new()),
            Arc::new(PlatformConfig::default()),
        );
        let err = svc
            .enqueue(EnqueueRequest::new(
                "",
                "notifications",
                "k",
                serde_json::json!({}),
            ))
            .await
            .unwrap_err();
        assert_eq!(err, EnqueueError::Invalid(ValidationError::EmptyTenant));
        let err = svc.enqueue_many(vec![]).await.unwrap_err();
        assert!(matches!(
            err,
            EnqueueError::Invalid(ValidationError::BatchSize { .. })
        ));
        let reqs = vec![
            EnqueueRequest::new("a", "notifications", "k", serde_json::json!({})),
            EnqueueRequest::new("a", "nope", "k", serde_json::json!({})),
        ];
        let err = svc.enqueue_many(reqs).await.unwrap_err();
        assert!(
            matches!(err, EnqueueError::InvalidInBatch { index: 1, .. }),
            "{err:?}"
        );
    }
}
