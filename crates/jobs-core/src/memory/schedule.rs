//! The in-memory [`ScheduleStore`]: schedules in the store's one map, each call atomic under its
//! mutex (so a fired slot's jobs and the advanced `next_run_at` appear together).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::job::NewJob;
use crate::schedule::{Schedule, ScheduleDraft, ScheduleSource};
use crate::schedule_store::{Fired, ScheduleStore};
use crate::store::{EnqueueError, StoreError, Wakeup};

use super::store::{insert, Inner};
use super::MemoryStore;

/// `draft` over `current` (if any): the stored `next_run_at` is kept when cron and zone are the
/// same, and `created_at` always.
fn apply(draft: ScheduleDraft, current: Option<&Schedule>, now: DateTime<Utc>) -> Schedule {
    let next_run_at = match current {
        Some(c) if c.cron == draft.cron && c.timezone == draft.timezone => c.next_run_at,
        _ => draft.next_run_at,
    };
    Schedule {
        name: draft.name,
        cron: draft.cron,
        timezone: draft.timezone,
        template: draft.template,
        missed: draft.missed,
        next_run_at,
        source: draft.source,
        created_at: current.map_or(now, |c| c.created_at),
        updated_at: now,
    }
}

fn fire_locked(
    inner: &mut Inner,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Fired, StoreError> {
    let mut fired = Fired {
        advanced: true,
        ..Fired::default()
    };
    for job in jobs {
        match insert(inner, job, now) {
            Ok(e) if e.created => fired.created += 1,
            Ok(_) => fired.duplicates += 1,
            Err(EnqueueError::QuotaExceeded { .. }) => fired.over_quota += 1,
            Err(EnqueueError::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError::Internal(e.to_string())),
        }
    }
    Ok(fired)
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn create_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if inner.schedules.contains_key(&draft.name) {
            return Ok(None);
        }
        let s = apply(draft, None, now);
        inner.schedules.insert(s.name.clone(), s.clone());
        Ok(Some(s))
    }

    async fn update_schedule(&self, draft: ScheduleDraft) -> Result<Option<Schedule>, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(current) = inner.schedules.get(&draft.name) else {
            return Ok(None);
        };
        let s = apply(draft, Some(current), now);
        inner.schedules.insert(s.name.clone(), s.clone());
        Ok(Some(s))
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().schedules.remove(name).is_some())
    }

    async fn get_schedule(&self, name: &str) -> Result<Option<Schedule>, StoreError> {
        Ok(self.lock().schedules.get(name).cloned())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn sync_config_schedules(&self, drafts: Vec<ScheduleDraft>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let names: std::collections::BTreeSet<String> =
            drafts.iter().map(|d| d.name.clone()).collect();
        inner
            .schedules
            .retain(|name, s| s.source == ScheduleSource::Api || names.contains(name));
        for mut draft in drafts {
            draft.source = ScheduleSource::Config;
            let current = inner.schedules.get(&draft.name).cloned();
            let s = apply(draft, current.as_ref(), now);
            inner.schedules.insert(s.name.clone(), s);
        }
        Ok(())
    }

    async fn fire(
        &self,
        name: &str,
        expected: DateTime<Utc>,
        jobs: Vec<NewJob>,
        next: DateTime<Utc>,
    ) -> Result<Fired, StoreError> {
        let now = self.clock.now();
        let fired = {
            let mut inner = self.lock();
            match inner.schedules.get(name) {
                Some(s) if s.next_run_at == expected => {}
                _ => return Ok(Fired::default()),
            }
            // All or nothing: a store failure part-way leaves no job and no advance.
            let (before_jobs, before_keys) = (inner.jobs.clone(), inner.idempotency.clone());
            match fire_locked(&mut inner, jobs, now) {
                Ok(fired) => {
                    if let Some(s) = inner.schedules.get_mut(name) {
                        s.next_run_at = next;
                    }
                    fired
                }
                Err(e) => {
                    inner.jobs = before_jobs;
                    inner.idempotency = before_keys;
                    return Err(e);
                }
            }
        };
        if fired.created > 0 {
            self.notify(Wakeup::JobDue);
        }
        Ok(fired)
    }
}
