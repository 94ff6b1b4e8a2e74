//! The [`ScheduleStore`] port: cron schedules and their fenced firing (see [`crate::schedule`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::job::NewJob;
use crate::schedule::{Schedule, ScheduleDraft};
use crate::store::StoreError;

/// What one [`ScheduleStore::fire`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// `next_run_at` still held the expected value and was advanced; `false`: another leader
    /// fired these slots already (or the schedule was deleted or changed), and nothing was
    /// written.
    pub advanced: bool,
    /// Jobs inserted.
    pub created: u32,
    /// Jobs whose idempotency key existed already (not inserted again).
    pub duplicates: u32,
    /// Jobs skipped because the tenant's quota was full.
    pub over_quota: u32,
}

/// The schedules' role: create, read, change and delete schedules, and fire their slots.
///
/// The contract (checked by the conformance suite, `testkit/store/schedule.rs`):
///
/// - Names are unique: [`create_schedule`](Self::create_schedule) of an existing name changes
///   nothing and returns `None`.
/// - [`update_schedule`](Self::update_schedule) and [`sync_config_schedules`](Self::sync_config_schedules)
///   keep the stored `next_run_at` when the cron expression and zone are unchanged, and take the
///   draft's otherwise; `created_at` is kept, `updated_at` is the store's now.
/// - **Fencing.** [`fire`](Self::fire) advances `next_run_at` from `expected` to `next` and
///   inserts `jobs` in one atomic step, only if `next_run_at` still equals `expected`;
///   otherwise it writes nothing. Each job is inserted as an enqueue would (its idempotency key
///   deduplicates, its quota is checked atomically), except that a job over its quota is
///   skipped, not an error: the schedule advances regardless.
#[async_trait]
pub trait ScheduleStore: Send + Sync + std::fmt::Debug {
    /// Creates `draft`; `None` if a schedule by that name exists (nothing changed).
    async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError>;

    /// Replaces the definition and source of the schedule `draft.name`; `None` if there is none.
    async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError>;

    /// Deletes the schedule `name`: `true` if it existed.
    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError>;

    /// The schedule `name`.
    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError>;

    /// Makes the configured schedules exactly `drafts`, in one atomic step: each is created or
    /// replaced (whatever its source was: the configuration wins a name), and every other
    /// schedule of source `config` is deleted. Schedules of source `api` are never deleted.
    async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError>;

    /// Fires the schedule `name`'s slots: see the trait docs (fencing).
    async fn fire(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        jobs: Vec<NewJob>,
        next: DateTime<Utc>,
    ) -> Result<Fired, StoreError>;
}
