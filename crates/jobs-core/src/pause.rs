//! Pause and resume: a use case for every tenant, or one tenant within a use case.
//!
//! A paused scope's jobs stay `pending`: the pick ([`crate::JobStore::lease_due`]) passes them
//! over. Jobs already dispatched or running finish; enqueue, cancel and retry work as usual.
//! Pauses are state in the store, so they survive restarts and hold for every scheduler.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a pause covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PauseScope {
    /// The use case.
    pub use_case: String,
    /// One tenant of it; `None` pauses the whole use case.
    pub tenant_id: Option<String>,
}

impl PauseScope {
    /// The whole use case.
    pub fn use_case(use_case: impl Into<String>) -> Self {
        PauseScope {
            use_case: use_case.into(),
            tenant_id: None,
        }
    }

    /// One tenant within the use case.
    pub fn tenant(use_case: impl Into<String>, tenant_id: impl Into<String>) -> Self {
        PauseScope {
            use_case: use_case.into(),
            tenant_id: Some(tenant_id.into()),
        }
    }

    /// True if a job of `tenant_id` in `use_case` is held by this pause.
    pub fn holds(&self, use_case: &str, tenant_id: &str) -> bool {
        self.use_case == use_case && self.tenant_id.as_deref().is_none_or(|t| t == tenant_id)
    }
}

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// What it covers.
    #[serde(flatten)]
    pub scope: PauseScope,
    /// Since when (the store's clock).
    pub paused_at: DateTime<Utc>,
}

/// Why a pause or resume was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PauseError {
    /// The use case is not configured, or the tenant id is not one a job could have.
    #[error(transparent)]
    Invalid(#[from] crate::ValidationError),
    /// A tenant-scoped caller asked to pause or resume: that is the operator's (a tenant must not
    /// lift a pause an operator put on it).
    #[error(
        "only the operator may pause or resume; a tenant key may list the pauses that hold it"
    )]
    Forbidden,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl crate::JobService {
    /// `scope` with the use case's configured name, if the caller may act on it.
    fn check_pause(
        &self,
        scope: PauseScope,
        caller: &crate::TenantScope,
    ) -> Result<PauseScope, PauseError> {
        let Some(use_case) = self.config().use_case(&scope.use_case) else {
            return Err(crate::ValidationError::UnknownUseCase(
                scope.use_case.chars().take(128).collect(),
            )
            .into());
        };
        let scope = PauseScope {
            use_case: use_case.name.clone(),
            tenant_id: scope.tenant_id,
        };
        if let Some(tenant) = &scope.tenant_id {
            let max = self.config().limits.max_tenant_len;
            crate::enqueue::check_name(
                tenant,
                "tenant_id",
                max,
                crate::ValidationError::EmptyTenant,
                |len, max| crate::ValidationError::TenantTooLong { len, max },
            )?;
        }
        match caller {
            crate::TenantScope::All => Ok(scope),
            crate::TenantScope::Tenant(_) => Err(PauseError::Forbidden),
        }
    }

    /// Pauses `scope` (idempotent: pausing a paused scope returns the pause in force, with its
    /// first `paused_at`). Its pending jobs stay pending until [`resume`](Self::resume); jobs
    /// already dispatched or running finish.
    pub async fn pause(
        &self,
        scope: PauseScope,
        caller: &crate::TenantScope,
    ) -> Result<Pause, PauseError> {
        let scope = self.check_pause(scope, caller)?;
        Ok(self.store().pause(&scope).await?)
    }

    /// Resumes `scope`: `true` if it was paused. Its due jobs join the next pick (the store wakes
    /// the scheduler).
    pub async fn resume(
        &self,
        scope: PauseScope,
        caller: &crate::TenantScope,
    ) -> Result<bool, PauseError> {
        let scope = self.check_pause(scope, caller)?;
        Ok(self.store().resume(&scope).await?)
    }

    /// The pauses in force that the caller may see: all of them for [`crate::TenantScope::All`];
    /// for a tenant, the whole-use-case pauses and its own.
    pub async fn pauses(
        &self,
        caller: &crate::TenantScope,
    ) -> Result<Vec<Pause>, crate::StoreError> {
        let mut pauses = self.store().pauses().await?;
        pauses.retain(|p| match &p.scope.tenant_id {
            None => true,
            Some(t) => caller.allows(t),
        });
        Ok(pauses)
    }
}
