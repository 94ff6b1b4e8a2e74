//! Recent activity, minute by minute: what the dashboard's overview charts.
//!
//! [`ApiStore::activity`](crate::ApiStore::activity) answers an [`ActivityQuery`] with the job
//! counts by use case and status (of one tenant, or of all) and, for each use case and each minute
//! of the recent window, how many jobs finished (by terminal status) and how many deadlines were
//! met or missed. The rules, which every store follows and the conformance suite checks:
//!
//! - **The window** is `minutes` whole minutes (UTC) ending with the current one, by the store's
//!   clock: it starts at [`window_start`]. A minute is named by its first instant.
//! - **Finished.** A job in a terminal status whose `finished_at` is in the window counts once,
//!   in the minute of its `finished_at`, under its status.
//! - **Deadlines** are judged once per job, at its first start (`first_started_at`), as the
//!   worker's metrics do, and counted in the minute of that first start when it is in the window:
//!   met when it started by its deadline. A job's deadline only ever moves later (a failed attempt
//!   or a manual retry opens a new window), so a job started more than once is judged only when
//!   it is provably late (its first start is after its current deadline); otherwise its deadline
//!   at the first start is no longer known and it is left out. A job that expired without ever
//!   starting missed its deadline, in the minute it expired.
//! - **Bounded.** The store examines at most `max_rows` finished jobs (the most recently finished
//!   first) and at most `max_rows` in-flight jobs, whatever the table's size; `truncated` says the
//!   bound cut the finished jobs, so the earliest minutes may be short. Deadlines are read from
//!   those same jobs: finished or in flight now. A job that first started in the window and waits
//!   `pending` for its next attempt is counted once it runs again or finishes.
//! - **Counts** cost what [`ApiStore::counts`](crate::ApiStore::counts) costs, restricted to the
//!   tenant's jobs when the query names one.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::job::Job;
use crate::status::JobStatus;
use crate::store::StatusCount;

/// The longest window an [`ActivityQuery`] may ask for, in minutes (three hours).
pub const MAX_ACTIVITY_MINUTES: u32 = 180;
/// The window the dashboard shows, in minutes.
pub const DEFAULT_ACTIVITY_MINUTES: u32 = 30;
/// The default bound on the finished (and in-flight) jobs one query examines.
pub const DEFAULT_ACTIVITY_ROWS: u32 = 50_000;

/// What [`ApiStore::activity`](crate::ApiStore::activity) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Only this tenant's jobs; `None`: every tenant's.
    pub tenant_id: Option<String>,
    /// Whole minutes in the window, the current one included (1 to [`MAX_ACTIVITY_MINUTES`]; a
    /// store clamps to that range).
    pub minutes: u32,
    /// Most finished jobs examined, and most in-flight jobs examined (≥ 1).
    pub max_rows: u32,
}

impl ActivityQuery {
    /// Every tenant, the default window and bound.
    pub fn all_tenants() -> Self {
        ActivityQuery {
            tenant_id: None,
            minutes: DEFAULT_ACTIVITY_MINUTES,
            max_rows: DEFAULT_ACTIVITY_ROWS,
        }
    }

    /// The window in minutes, clamped to 1..=[`MAX_ACTIVITY_MINUTES`].
    pub fn window_minutes(&self) -> u32 {
        self.minutes.clamp(1, MAX_ACTIVITY_MINUTES)
    }
}

/// One use case's activity in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteActivity {
    /// Jobs that finished `succeeded` in the minute.
    pub succeeded: u64,
    /// Jobs that finished `dead`.
    pub dead: u64,
    /// Jobs that finished `cancelled`.
    pub cancelled: u64,
    /// Jobs that finished `expired`.
    pub expired: u64,
    /// Jobs that first started in the minute, by their deadline.
    pub deadlines_met: u64,
    /// Jobs that first started in the minute after their deadline, or expired without starting.
    pub deadlines_missed: u64,
}

impl MinuteActivity {
    /// Jobs that finished in the minute, whatever their status.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.dead + self.cancelled + self.expired
    }

    fn add_finished(&mut self, status: JobStatus) {
        match status {
            JobStatus::Succeeded => self.succeeded += 1,
            JobStatus::Dead => self.dead += 1,
            JobStatus::Cancelled => self.cancelled += 1,
            JobStatus::Expired => self.expired += 1,
            _ => {}
        }
    }

    fn add_deadline(&mut self, met: bool) {
        match met {
            true => self.deadlines_met += 1,
            false => self.deadlines_missed += 1,
        }
    }
}

/// The answer to an [`ActivityQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The first instant of the window (the store's clock).
    pub since: DateTime<Utc>,
    /// Jobs by use case and status (the tenant's, when the query names one). Statuses with no
    /// jobs may be left out.
    pub counts: Vec<StatusCount>,
    /// Activity by use case, then minute (first instant). Minutes with nothing are left out.
    pub minutes: BTreeMap<(String, DateTime<Utc>), MinuteActivity>,
    /// The bound on finished jobs cut the window short: its earliest minutes may be incomplete.
    pub truncated: bool,
}

impl Activity {
    /// The activity of `use_case` in each minute of the window, oldest first (`minutes` entries,
    /// zeros where nothing happened).
    pub fn series(&self, use_case: &str, minutes: u32) -> Vec<(DateTime<Utc>, MinuteActivity)> {
        (0..minutes)
            .map(|i| {
                let minute = self.since + TimeDelta::minutes(i64::from(i));
                let at = self
                    .minutes
                    .get(&(use_case.to_owned(), minute))
                    .cloned()
                    .unwrap_or_default();
                (minute, at)
            })
            .collect()
    }
}

/// `t` truncated to its minute (UTC).
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

/// The first instant of a window of `minutes` whole minutes ending with `now`'s minute.
pub fn window_start(now: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
    let back = TimeDelta::minutes(i64::from(minutes.max(1)) - 1);
    minute_of(now)
        .checked_sub_signed(back)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The minute and outcome (`true`: met) of `job`'s deadline if it is judged in a window starting
/// at `since` (see the module docs): a first start in the window, judged when the job started
/// once or is provably late; an expiry in the window of a job that never started, missed.
pub fn deadline_event(job: &Job, since: DateTime<Utc>) -> Option<(DateTime<Utc>, bool)> {
    match job.first_started_at {
        Some(first) if first >= since => {
            let late = first > job.deadline_at;
            (job.started_at == Some(first) || late).then_some((minute_of(first), !late))
        }
        Some(_) => None,
        None => match (job.status, job.finished_at) {
            (JobStatus::Expired, Some(at)) if at >= since => Some((minute_of(at), false)),
            _ => None,
        },
    }
}

/// The reference tally over a store's jobs (the in-memory store's implementation; a database
/// computes the same in one query): `jobs` are every job in the store. As a database walks an
/// index, the bound applies before the tenant filter: the `max_rows` most recently finished jobs
/// of the window (ties in any order) and at most `max_rows` in-flight jobs that first started in
/// it, of every tenant, of which the query's tenant's are counted.
pub fn tally<'a>(
    jobs: impl Iterator<Item = &'a Job>,
    now: DateTime<Utc>,
    query: &ActivityQuery,
) -> Activity {
    let since = window_start(now, query.window_minutes());
    let max_rows = usize::try_from(query.max_rows.max(1)).unwrap_or(usize::MAX);
    let ours = |job: &Job| query.tenant_id.as_ref().is_none_or(|t| &job.tenant_id == t);
    let mut counts: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
    let mut finished: Vec<&Job> = Vec::new();
    let mut in_flight: Vec<&Job> = Vec::new();
    for job in jobs {
        if ours(job) {
            *counts
                .entry((job.use_case.clone(), job.status))
                .or_default() += 1;
        }
        match job.finished_at {
            Some(at) if job.status.is_terminal() && at >= since => finished.push(job),
            _ if job.status.is_in_flight() && job.first_started_at.is_some_and(|t| t >= since) => {
                in_flight.push(job)
            }
            _ => {}
        }
    }
    // The most recently finished first, as a database's index walk.
    finished.sort_by_key(|j| std::cmp::Reverse((j.finished_at, j.id)));
    let truncated = finished.len() > max_rows;
    finished.truncate(max_rows);
    in_flight.truncate(max_rows);
    finished.retain(|j| ours(j));
    in_flight.retain(|j| ours(j));
    let mut minutes: BTreeMap<(String, DateTime<Utc>), MinuteActivity> = BTreeMap::new();
    for job in &finished {
        if let Some(at) = job.finished_at {
            minutes
                .entry((job.use_case.clone(), minute_of(at)))
                .or_default()
                .add_finished(job.status);
        }
    }
    for job in finished.iter().chain(in_flight.iter()) {
        if let Some((minute, met)) = deadline_event(job, since) {
            minutes
                .entry((job.use_case.clone(), minute))
                .or_default()
                .add_deadline(met);
        }
    }
    Activity {
        since,
        counts: counts
            .into_iter()
            .map(|((use_case, status), count)| StatusCount {
                use_case,
                status,
                count,
            })
            .collect(),
        minutes,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_window_ends_with_the_current_minute() {
        let now = at("2026-01-01T10:30:42.5Z");
        assert_eq!(minute_of(now), at("2026-01-01T10:30:00Z"));
        assert_eq!(window_start(now, 1), at("2026-01-01T10:30:00Z"));
        assert_eq!(window_start(now, 30), at("2026-01-01T10:01:00Z"));
        assert_eq!(window_start(now, 0), at("2026-01-01T10:30:00Z"));
        assert_eq!(
            window_start(DateTime::<Utc>::MIN_UTC, 5),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn the_window_is_clamped() {
        let mut q = ActivityQuery::all_tenants();
        q.minutes = 0;
        assert_eq!(q.window_minutes(), 1);
        q.minutes = 100_000;
        assert_eq!(q.window_minutes(), MAX_ACTIVITY_MINUTES);
    }
}
