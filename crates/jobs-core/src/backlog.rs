//! The backlog: jobs that could start now but have not, per use case (and per tenant on
//! request), as [`ApiStore::backlog`](crate::ApiStore::backlog) reads it.
//!
//! A job is in the backlog — *due and pending* — when its status is `pending`, its `run_at` has
//! come (the store's clock) and it is not paused (neither its use case nor its tenant in it,
//! [`ApiStore::pause`](crate::ApiStore::pause)). Jobs scheduled for later, retries waiting out
//! their backoff and paused jobs are not: no worker could take them now. Jobs held back only by
//! a tenant's rate limit are (they are due; the limit decides when they start).
//!
//! Two readers use it: the scheduler's backlog gauges and scaling signal
//! (`jobs_scheduler::BacklogMonitor`), and anyone who shows "age of the oldest pending job"
//! (a dashboard): [`BacklogRow::oldest_age`] measures it against the store's own clock.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How [`ApiStore::backlog`](crate::ApiStore::backlog) groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacklogGrouping {
    /// One row per use case with due jobs (`tenant_id: None`).
    #[default]
    UseCase,
    /// One row per (use case, tenant) with due jobs. Costs more on a large backlog (the store
    /// reads each due job's tenant); [`Backlog::by_use_case`] folds it back.
    Tenant,
}

/// The due pending jobs of one use case, or of one tenant in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogRow {
    /// Use case.
    pub use_case: String,
    /// The tenant, with [`BacklogGrouping::Tenant`]; `None` for a whole use case.
    pub tenant_id: Option<String>,
    /// How many jobs are due and pending (at least one: groups without due jobs have no row).
    pub due: u64,
    /// The earliest `run_at` among them: the job that has waited longest since it became due.
    pub oldest_run_at: DateTime<Utc>,
}

impl BacklogRow {
    /// How long the oldest due job has waited at `now` (zero if `now` is before its `run_at`).
    pub fn oldest_age(&self, now: DateTime<Utc>) -> Duration {
        (now - self.oldest_run_at)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }
}

/// The backlog at one moment of the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// When it was read, by the store's clock (the database's in production): ages are measured
    /// from here, so a host's clock skew does not bend them.
    pub at: DateTime<Utc>,
    /// One row per group with due jobs, ordered by use case, then tenant.
    pub rows: Vec<BacklogRow>,
}

impl Backlog {
    /// The rows folded to one per use case (counts added, the earliest `run_at` kept): the same
    /// as reading with [`BacklogGrouping::UseCase`].
    pub fn by_use_case(&self) -> Vec<BacklogRow> {
        let mut folded: BTreeMap<&str, BacklogRow> = BTreeMap::new();
        for row in &self.rows {
            folded
                .entry(&row.use_case)
                .and_modify(|r| {
                    r.due = r.due.saturating_add(row.due);
                    r.oldest_run_at = r.oldest_run_at.min(row.oldest_run_at);
                })
                .or_insert_with(|| BacklogRow {
                    use_case: row.use_case.clone(),
                    tenant_id: None,
                    due: row.due,
                    oldest_run_at: row.oldest_run_at,
                });
        }
        folded.into_values().collect()
    }

    /// The row of `use_case` as a whole, if it has due jobs (folding tenant rows if need be).
    pub fn use_case(&self, use_case: &str) -> Option<BacklogRow> {
        self.by_use_case()
            .into_iter()
            .find(|r| r.use_case == use_case)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(use_case: &str, tenant: Option<&str>, due: u64, secs: i64) -> BacklogRow {
        BacklogRow {
            use_case: use_case.into(),
            tenant_id: tenant.map(str::to_owned),
            due,
            oldest_run_at: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn tenant_rows_fold_to_use_case_rows() {
        let backlog = Backlog {
            at: DateTime::from_timestamp(100, 0).unwrap(),
            rows: vec![
                row("a", Some("t1"), 3, 50),
                row("a", Some("t2"), 4, 40),
                row("b", Some("t1"), 1, 90),
            ],
        };
        assert_eq!(
            backlog.by_use_case(),
            vec![row("a", None, 7, 40), row("b", None, 1, 90)]
        );
        let a = backlog.use_case("a").unwrap();
        assert_eq!(a.oldest_age(backlog.at), Duration::from_secs(60));
        assert!(backlog.use_case("c").is_none());
        // A run_at after the reading's clock (clock steps) is an age of zero, not a panic.
        assert_eq!(
            row("a", None, 1, 200).oldest_age(backlog.at),
            Duration::ZERO
        );
    }
}
