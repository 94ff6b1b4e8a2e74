//! Cron schedules: periodic jobs.
//!
//! A [`Schedule`] names a cron expression (five fields, or six with leading seconds), an IANA
//! time zone, a job template (tenant, use case, type, payload, tolerance, …) and a policy for
//! missed slots. The scheduler's leader fires it: each *slot* (an occurrence of the cron
//! expression) yields exactly one job, enqueued with `run_at` = the slot and the idempotency key
//! `schedule:<name>:<slot>` ([`slot_key`]).
//!
//! **Exactly one job per slot.** Firing is one store call,
//! [`ScheduleStore::fire`](crate::ScheduleStore::fire): in one transaction it advances the
//! schedule's `next_run_at` *only if it still holds the value the leader read*, and inserts the
//! slots' jobs. A second leader (after a failover mid-slot) that read the same `next_run_at`
//! changes nothing; a leader that died before its commit left `next_run_at` where it was, so its
//! successor fires the slot. The idempotency key is a second guard (the jobs table is unique per
//! tenant and key).
//!
//! **Missed slots.** A slot is *missed* when its job could no longer start in time: the leader
//! fires it after `slot + delay_tolerance` (the template's tolerance, or the use case's default).
//! [`MissedPolicy::Skip`] drops missed slots (the default); [`MissedPolicy::CatchUp`] fires at
//! most `max` of them, the most recent ones. Slots still inside their window are always fired.
//!
//! **A full quota.** A slot whose job would take the tenant over its quota is skipped (logged and
//! counted by the scheduler); the schedule still advances. A schedule never blocks on a quota.
//!
//! **Daylight saving time** (the zone's wall clock): a slot in a gap (02:30 on the spring-forward
//! day in Europe/Berlin) fires at the first instant after the gap; a slot in a repeated hour
//! fires once. Wildcard fields (`*/10 * * * *`) keep their cadence in real time.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::PlatformConfig;
use crate::enqueue::{validate, EnqueueRequest, ValidationError};
use crate::job::NewJob;
use crate::service::TenantScope;
use crate::store::StoreError;

/// Longest schedule name.
pub const MAX_NAME_LEN: usize = 128;
/// Most missed slots a [`MissedPolicy::CatchUp`] may fire at once.
pub const MAX_CATCH_UP: u32 = 1000;
/// Most slots one firing enqueues (a per-second schedule with a long tolerance after a long
/// outage): the older ones are dropped as missed.
pub const MAX_SLOTS_PER_FIRE: usize = 1000;

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn utc() -> String {
    "UTC".to_owned()
}

/// The job a schedule enqueues at each slot: an enqueue request without `run_at` (the slot) and
/// idempotency key (the slot's [`slot_key`]). Validated exactly as an enqueue request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    /// Owner of the jobs.
    pub tenant_id: String,
    /// Use case (must be configured).
    pub use_case: String,
    /// Handler name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Handler input (default `{}`).
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// Start window after the slot, in seconds; absent = the use case's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_tolerance_seconds: Option<f64>,
    /// Tie-breaker among equal deadlines (higher first; default 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::deserialize_option"
    )]
    pub priority: Option<i16>,
    /// Attempt budget; absent = the platform's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole::deserialize_option"
    )]
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit in seconds; absent = the platform's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// End `expired` instead of starting after the deadline; absent = the use case's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at_deadline: Option<bool>,
}

impl JobTemplate {
    /// A template with the required fields.
    pub fn new(
        tenant_id: impl Into<String>,
        use_case: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        JobTemplate {
            tenant_id: tenant_id.into(),
            use_case: use_case.into(),
            kind: kind.into(),
            payload,
            delay_tolerance_seconds: None,
            priority: None,
            max_attempts: None,
            timeout_seconds: None,
            expire_at_deadline: None,
        }
    }

    /// The enqueue request of one slot.
    pub fn request(&self, run_at: Option<DateTime<Utc>>, key: Option<String>) -> EnqueueRequest {
        let mut req = EnqueueRequest::new(
            self.tenant_id.clone(),
            self.use_case.clone(),
            self.kind.clone(),
            self.payload.clone(),
        );
        req.run_at = run_at;
        req.idempotency_key = key;
        req.delay_tolerance_seconds = self.delay_tolerance_seconds;
        req.priority = self.priority;
        req.max_attempts = self.max_attempts;
        req.timeout_seconds = self.timeout_seconds;
        req.expire_at_deadline = self.expire_at_deadline;
        req
    }
}

/// What to do with slots that were missed (see the module docs). In JSON `{"policy": "skip"}` or
/// `{"policy": "catch_up", "max": n}`, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", try_from = "MissedRepr")]
pub enum MissedPolicy {
    /// Drop missed slots; fire only slots still inside their start window.
    #[default]
    Skip,
    /// Fire at most `max` missed slots (the most recent ones), then carry on.
    CatchUp {
        /// The most missed slots fired at once.
        max: u32,
    },
}

/// The JSON of a [`MissedPolicy`], read strictly: serde's internally tagged enums let unknown
/// keys through on a unit variant, and `max` is a whole number in any JSON notation (`3` and
/// `3.0` alike), as everywhere else in the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissedRepr {
    policy: String,
    #[serde(default, deserialize_with = "crate::whole::deserialize_option")]
    max: Option<u32>,
}

impl TryFrom<MissedRepr> for MissedPolicy {
    type Error = String;

    fn try_from(r: MissedRepr) -> Result<Self, String> {
        match (r.policy.as_str(), r.max) {
            ("skip", None) => Ok(MissedPolicy::Skip),
            ("skip", Some(_)) => Err("`max` goes only with the policy `catch_up`".to_owned()),
            ("catch_up", Some(max)) => Ok(MissedPolicy::CatchUp { max }),
            ("catch_up", None) => Err("missing field `max` of the policy `catch_up`".to_owned()),
            (other, _) => Err(format!(
                "unknown policy `{}`, expected `skip` or `catch_up`",
                other.chars().take(64).collect::<String>()
            )),
        }
    }
}

/// Where a schedule was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// `ASYNC_JOBS_SCHEDULES` / `ASYNC_JOBS_SCHEDULES_FILE`: the leader writes it at start;
    /// read-only through the API.
    Config,
    /// Created through the API or the library.
    Api,
}

impl ScheduleSource {
    /// `config` or `api`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Config => "config",
            ScheduleSource::Api => "api",
        }
    }

    /// The source named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(ScheduleSource::Config),
            "api" => Some(ScheduleSource::Api),
            _ => None,
        }
    }
}

/// A schedule's definition, without its name: the body of an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDefinition {
    /// Cron expression: `min hour dom month dow`, or with leading seconds.
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job each slot enqueues.
    pub template: JobTemplate,
    /// Missed-slot policy (default `{"policy": "skip"}`).
    #[serde(default)]
    pub missed: MissedPolicy,
}

/// A schedule to create: a name and a definition (the body of a create, an entry of
/// `ASYNC_JOBS_SCHEDULES`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// Unique name: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Cron expression: `min hour dom month dow`, or with leading seconds.
    pub cron: String,
    /// IANA time zone (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job each slot enqueues.
    pub template: JobTemplate,
    /// Missed-slot policy (default skip).
    #[serde(default)]
    pub missed: MissedPolicy,
}

impl NewSchedule {
    /// A schedule named `name` with `definition`.
    pub fn from_definition(name: impl Into<String>, definition: ScheduleDefinition) -> Self {
        NewSchedule {
            name: name.into(),
            cron: definition.cron,
            timezone: definition.timezone,
            template: definition.template,
            missed: definition.missed,
        }
    }

    /// The definition without the name.
    pub fn definition(&self) -> ScheduleDefinition {
        ScheduleDefinition {
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            template: self.template.clone(),
            missed: self.missed,
        }
    }
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// The job each slot enqueues.
    pub template: JobTemplate,
    /// Missed-slot policy.
    pub missed: MissedPolicy,
    /// The next slot to fire: every slot before it has been fired (or skipped).
    pub next_run_at: DateTime<Utc>,
    /// Where it was declared.
    pub source: ScheduleSource,
    /// When it was created (store clock).
    pub created_at: DateTime<Utc>,
    /// When its definition last changed (store clock).
    pub updated_at: DateTime<Utc>,
}

/// A checked schedule, ready for the store: what [`ScheduleStore`](crate::ScheduleStore) writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDraft {
    /// Unique name.
    pub name: String,
    /// Cron expression (trimmed).
    pub cron: String,
    /// Canonical IANA zone name.
    pub timezone: String,
    /// The template (valid as an enqueue request).
    pub template: JobTemplate,
    /// Missed-slot policy.
    pub missed: MissedPolicy,
    /// Where it was declared.
    pub source: ScheduleSource,
    /// The first slot after now, for a new schedule or one whose cron or zone changed; a store
    /// keeps the stored `next_run_at` when cron and zone are unchanged.
    pub next_run_at: DateTime<Utc>,
}

/// Why a schedule definition was refused. Each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleValidationError {
    /// The name is empty, too long or has characters outside `A-Z a-z 0-9 . _ -`.
    #[error("schedule name must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")]
    InvalidName,
    /// The cron expression does not parse, or never fires.
    #[error("invalid cron expression '{cron}': {reason}")]
    InvalidCron {
        /// The expression (truncated).
        cron: String,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone '{0}' (an IANA name such as Europe/Berlin)")]
    UnknownTimeZone(String),
    /// `missed.max` is above [`MAX_CATCH_UP`].
    #[error("missed.max is {0}; the limit is {MAX_CATCH_UP}")]
    InvalidMissedPolicy(u32),
    /// The template is not a valid enqueue request.
    #[error("template: {0}")]
    Template(#[from] ValidationError),
}

impl ScheduleValidationError {
    /// A stable machine-readable code: the template's own code for a bad template.
    pub const fn code(&self) -> &'static str {
        match self {
            ScheduleValidationError::InvalidName => "invalid_schedule_name",
            ScheduleValidationError::InvalidCron { .. } => "invalid_cron",
            ScheduleValidationError::UnknownTimeZone(_) => "unknown_time_zone",
            ScheduleValidationError::InvalidMissedPolicy(_) => "invalid_missed_policy",
            ScheduleValidationError::Template(e) => e.code(),
        }
    }
}

/// Every IANA time zone name a schedule may use (the tz database chrono-tz carries).
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronTime {
    cron: croner::Cron,
    tz: Tz,
}

impl CronTime {
    /// Parses `cron` (5 fields, or 6 with leading seconds) in the IANA zone `timezone`.
    pub fn parse(cron: &str, timezone: &str) -> Result<CronTime, ScheduleValidationError> {
        let tz = Tz::from_str(timezone.trim()).map_err(|_| {
            ScheduleValidationError::UnknownTimeZone(timezone.chars().take(64).collect())
        })?;
        let invalid = |reason: String| ScheduleValidationError::InvalidCron {
            cron: cron.chars().take(128).collect(),
            reason,
        };
        let trimmed = cron.trim();
        let fields = trimmed.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(invalid(format!(
                "{fields} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (with leading seconds)"
            )));
        }
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(CronTime { cron: parsed, tz })
    }

    /// The zone's canonical name.
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first slot after `t` (at `t` too when `inclusive`), or `None` if there is none.
    pub fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last slot before `t` (at `t` too when `inclusive`), or `None`.
    pub fn previous(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// The slots a schedule fires now, by [`due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Slots to fire, oldest first.
    pub slots: Vec<DateTime<Utc>>,
    /// True if missed slots were dropped (by the policy or [`MAX_SLOTS_PER_FIRE`]).
    pub skipped: bool,
    /// The schedule's next slot after these (strictly after `now`); `None` if the expression
    /// never fires again.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Which slots from `next_run_at` up to `now` fire, under `missed` with the jobs' start window
/// `tolerance`: every slot whose window has not closed (`slot + tolerance >= now`), plus the
/// most recent `max` missed ones under [`MissedPolicy::CatchUp`]. `None` when nothing is due
/// (`now < next_run_at`).
pub fn due(
    cron: &CronTime,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
    missed: MissedPolicy,
    tolerance: Duration,
) -> Option<Due> {
    if now < next_run_at {
        return None;
    }
    let catch_up = match missed {
        MissedPolicy::Skip => 0,
        MissedPolicy::CatchUp { max } => max,
    };
    let tolerance = chrono::Duration::from_std(tolerance).unwrap_or(chrono::Duration::MAX);
    let mut slots = Vec::new();
    let mut missed_taken = 0u32;
    let mut skipped = false;
    // Walk back from now: the most recent slots are the ones a policy keeps.
    let mut cursor = cron.previous(now, true);
    while let Some(slot) = cursor {
        if slot < next_run_at {
            break;
        }
        if slots.len() >= MAX_SLOTS_PER_FIRE {
            skipped = true;
            break;
        }
        let on_time = slot.checked_add_signed(tolerance).is_none_or(|d| d >= now);
        if on_time {
            slots.push(slot);
        } else if missed_taken < catch_up {
            slots.push(slot);
            missed_taken += 1;
        } else {
            // Every earlier slot is missed too, and the policy takes no more.
            skipped = true;
            break;
        }
        cursor = cron.previous(slot, false);
    }
    slots.reverse();
    Some(Due {
        slots,
        skipped,
        next_run_at: cron.next(now, false),
    })
}

/// The idempotency key of `name`'s job for `slot`: `schedule:<name>:<slot, RFC 3339 UTC>`.
pub fn slot_key(name: &str, slot: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}

/// The job of `schedule`'s `slot`, validated as an enqueue request (with `run_at` = the slot and
/// the slot's idempotency key). `now` bounds `run_at` as for any enqueue.
pub fn slot_job(
    name: &str,
    template: &JobTemplate,
    slot: DateTime<Utc>,
    config: &PlatformConfig,
    now: DateTime<Utc>,
) -> Result<NewJob, ValidationError> {
    validate(
        template.request(Some(slot), Some(slot_key(name, slot))),
        config,
        now,
    )
}

fn check_name(name: &str) -> Result<(), ScheduleValidationError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then_some(()).ok_or(ScheduleValidationError::InvalidName)
}

/// Checks `new` against `config` and computes its first slot after `now`: the name, the cron
/// expression (which must fire at least once more), the zone, the policy, and the template
/// exactly as an enqueue request. The template's use case is stored by its configured name.
pub fn check(
    new: NewSchedule,
    source: ScheduleSource,
    config: &PlatformConfig,
    now: DateTime<Utc>,
) -> Result<ScheduleDraft, ScheduleValidationError> {
    check_name(&new.name)?;
    let cron = CronTime::parse(&new.cron, &new.timezone)?;
    if let MissedPolicy::CatchUp { max } = new.missed {
        if max > MAX_CATCH_UP {
            return Err(ScheduleValidationError::InvalidMissedPolicy(max));
        }
    }
    let next_run_at =
        cron.next(now, false)
            .ok_or_else(|| ScheduleValidationError::InvalidCron {
                cron: new.cron.chars().take(128).collect(),
                reason: "it never fires".to_owned(),
            })?;
    // The template must make a valid job for the first slot (with its key, so a name that makes
    // the key too long is refused here rather than at every slot).
    let job = slot_job(&new.name, &new.template, next_run_at, config, now)?;
    let mut template = new.template;
    template.use_case = job.use_case;
    Ok(ScheduleDraft {
        name: new.name,
        cron: new.cron.trim().to_owned(),
        timezone: cron.timezone().to_owned(),
        template,
        missed: new.missed,
        source,
        next_run_at,
    })
}

/// Why a schedule operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The definition is invalid (see the inner error's code).
    #[error(transparent)]
    Invalid(#[from] ScheduleValidationError),
    /// No schedule by that name (or not visible to the caller).
    #[error("schedule '{0}' not found")]
    NotFound(String),
    /// A schedule by that name exists already.
    #[error("schedule '{0}' exists already")]
    Exists(String),
    /// A tenant-scoped caller named another tenant in the template.
    #[error("this credential may not manage schedules of tenant '{0}'")]
    Forbidden(String),
    /// The schedule is declared in the configuration; change it there.
    #[error(
        "schedule '{0}' is declared in the configuration (ASYNC_JOBS_SCHEDULES); change it there"
    )]
    ManagedByConfig(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::JobService {
    fn visible_schedule(
        schedule: Option<Schedule>,
        name: &str,
        caller: &TenantScope,
    ) -> Result<Schedule, ScheduleError> {
        match schedule {
            Some(s) if caller.allows(&s.template.tenant_id) => Ok(s),
            _ => Err(ScheduleError::NotFound(
                name.chars().take(MAX_NAME_LEN).collect(),
            )),
        }
    }

    fn check_schedule(
        &self,
        new: NewSchedule,
        caller: &TenantScope,
    ) -> Result<ScheduleDraft, ScheduleError> {
        if !caller.allows(&new.template.tenant_id) {
            return Err(ScheduleError::Forbidden(
                new.template.tenant_id.chars().take(128).collect(),
            ));
        }
        Ok(check(
            new,
            ScheduleSource::Api,
            self.config(),
            self.clock().now(),
        )?)
    }

    /// Creates a schedule (source `api`). A tenant-scoped caller may create schedules for its own
    /// tenant only.
    pub async fn create_schedule(
        &self,
        new: NewSchedule,
        caller: &TenantScope,
    ) -> Result<Schedule, ScheduleError> {
        let draft = self.check_schedule(new, caller)?;
        self.store()
            .create_schedule(draft.clone())
            .await?
            .ok_or(ScheduleError::Exists(draft.name))
    }

    /// Replaces the definition of the schedule `name`. Its `next_run_at` is recomputed from now
    /// if the cron expression or zone changed, kept otherwise. Schedules declared in the
    /// configuration are refused ([`ScheduleError::ManagedByConfig`]).
    pub async fn update_schedule(
        &self,
        name: &str,
        definition: ScheduleDefinition,
        caller: &TenantScope,
    ) -> Result<Schedule, ScheduleError> {
        let current = Self::visible_schedule(self.store().get_schedule(name).await?, name, caller)?;
        if current.source == ScheduleSource::Config {
            return Err(ScheduleError::ManagedByConfig(current.name));
        }
        let draft = self.check_schedule(NewSchedule::from_definition(name, definition), caller)?;
        self.store()
            .update_schedule(draft)
            .await?
            .ok_or_else(|| ScheduleError::NotFound(name.to_owned()))
    }

    /// Deletes the schedule `name` (jobs it already enqueued stay). Schedules declared in the
    /// configuration are refused.
    pub async fn delete_schedule(
        &self,
        name: &str,
        caller: &TenantScope,
    ) -> Result<(), ScheduleError> {
        let current = Self::visible_schedule(self.store().get_schedule(name).await?, name, caller)?;
        if current.source == ScheduleSource::Config {
            return Err(ScheduleError::ManagedByConfig(current.name));
        }
        match self.store().delete_schedule(name).await? {
            true => Ok(()),
            false => Err(ScheduleError::NotFound(name.to_owned())),
        }
    }

    /// The schedule `name`, if the caller may see it.
    pub async fn schedule(
        &self,
        name: &str,
        caller: &TenantScope,
    ) -> Result<Schedule, ScheduleError> {
        Self::visible_schedule(self.store().get_schedule(name).await?, name, caller)
    }

    /// The schedules the caller may see (a tenant: those whose template is its own), by name.
    pub async fn schedules(&self, caller: &TenantScope) -> Result<Vec<Schedule>, StoreError> {
        let mut all = self.store().schedules().await?;
        all.retain(|s| caller.allows(&s.template.tenant_id));
        Ok(all)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn template() -> JobTemplate {
        JobTemplate::new(
            "acme",
            "notifications",
            "send_email",
            json!({"to": "a@b.c"}),
        )
    }

    fn new(cron: &str, tz: &str) -> NewSchedule {
        NewSchedule {
            name: "nightly".into(),
            cron: cron.into(),
            timezone: tz.into(),
            template: template(),
            missed: MissedPolicy::Skip,
        }
    }

    #[test]
    fn five_and_six_field_expressions_parse_in_a_zone() {
        let c = CronTime::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            c.next(at("2026-01-01T10:07:30Z"), false),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let s = CronTime::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            s.next(at("2026-01-01T10:07:31Z"), false),
            Some(at("2026-01-01T10:07:40Z"))
        );
        let ny = CronTime::parse("0 9 * * *", "America/New_York").unwrap();
        assert_eq!(
            ny.next(at("2026-01-01T00:00:00Z"), false),
            Some(at("2026-01-01T14:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_zones_and_names_are_refused_with_codes() {
        let config = PlatformConfig::default();
        let now = at("2026-01-01T00:00:00Z");
        let code = |n: NewSchedule| {
            check(n, ScheduleSource::Api, &config, now)
                .unwrap_err()
                .code()
        };
        assert_eq!(code(new("61 * * * *", "UTC")), "invalid_cron");
        assert_eq!(code(new("* * *", "UTC")), "invalid_cron");
        assert_eq!(code(new("0 0 0 * * * 2030", "UTC")), "invalid_cron");
        assert_eq!(
            code(new("0 0 30 2 *", "UTC")),
            "invalid_cron",
            "never fires"
        );
        assert_eq!(code(new("0 * * * *", "Mars/Olympus")), "unknown_time_zone");
        let mut bad = new("0 * * * *", "UTC");
        bad.name = "has space".into();
        assert_eq!(code(bad), "invalid_schedule_name");
        let mut bad = new("0 * * * *", "UTC");
        bad.template.use_case = "nope".into();
        assert_eq!(code(bad), "unknown_use_case");
        let mut bad = new("0 * * * *", "UTC");
        bad.template.max_attempts = Some(0);
        assert_eq!(code(bad), "max_attempts_zero");
        let mut bad = new("0 * * * *", "UTC");
        bad.missed = MissedPolicy::CatchUp {
            max: MAX_CATCH_UP + 1,
        };
        assert_eq!(code(bad), "invalid_missed_policy");
    }

    #[test]
    fn check_computes_the_first_slot_and_canonical_names() {
        let draft = check(
            new(" 0 3 * * * ", "Europe/Berlin"),
            ScheduleSource::Config,
            &PlatformConfig::default(),
            at("2026-07-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(draft.cron, "0 3 * * *");
        assert_eq!(draft.timezone, "Europe/Berlin");
        // 03:00 CEST is 01:00 UTC.
        assert_eq!(draft.next_run_at, at("2026-07-02T01:00:00Z"));
        assert_eq!(draft.source, ScheduleSource::Config);
    }

    #[test]
    fn nothing_is_due_before_next_run_at() {
        let c = CronTime::parse("0 * * * *", "UTC").unwrap();
        let next = at("2026-01-01T10:00:00Z");
        assert_eq!(
            due(
                &c,
                next,
                at("2026-01-01T09:59:59Z"),
                MissedPolicy::Skip,
                Duration::from_secs(60)
            ),
            None
        );
        let d = due(&c, next, next, MissedPolicy::Skip, Duration::from_secs(60)).unwrap();
        assert_eq!(d.slots, vec![next]);
        assert!(!d.skipped);
        assert_eq!(d.next_run_at, Some(at("2026-01-01T11:00:00Z")));
    }

    #[test]
    fn skip_drops_missed_slots_and_catch_up_fires_the_latest_few() {
        let c = CronTime::parse("0 * * * *", "UTC").unwrap();
        let next = at("2026-01-01T10:00:00Z");
        // Down from 10:00 to 15:00:30: slots 10..15 are due; only 15:00 is inside its window.
        let now = at("2026-01-01T15:00:30Z");
        let tol = Duration::from_secs(60);
        let skip = due(&c, next, now, MissedPolicy::Skip, tol).unwrap();
        assert_eq!(skip.slots, vec![at("2026-01-01T15:00:00Z")]);
        assert!(skip.skipped);
        assert_eq!(skip.next_run_at, Some(at("2026-01-01T16:00:00Z")));

        let two = due(&c, next, now, MissedPolicy::CatchUp { max: 2 }, tol).unwrap();
        assert_eq!(
            two.slots,
            vec![
                at("2026-01-01T13:00:00Z"),
                at("2026-01-01T14:00:00Z"),
                at("2026-01-01T15:00:00Z")
            ]
        );
        assert!(two.skipped);

        let all = due(&c, next, now, MissedPolicy::CatchUp { max: 100 }, tol).unwrap();
        assert_eq!(all.slots.len(), 6);
        assert_eq!(all.slots[0], next);
        assert!(!all.skipped);

        // Every slot missed (now past 15:00's window too): skip fires nothing but still advances.
        let late = at("2026-01-01T15:30:00Z");
        let none = due(&c, next, late, MissedPolicy::Skip, tol).unwrap();
        assert!(none.slots.is_empty());
        assert!(none.skipped);
        assert_eq!(none.next_run_at, Some(at("2026-01-01T16:00:00Z")));
    }

    #[test]
    fn a_long_tolerance_keeps_slots_on_time() {
        let c = CronTime::parse("*/10 * * * * *", "UTC").unwrap();
        let next = at("2026-01-01T10:00:00Z");
        let d = due(
            &c,
            next,
            at("2026-01-01T10:00:35Z"),
            MissedPolicy::Skip,
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(d.slots.len(), 4);
        assert!(!d.skipped);
        assert_eq!(d.next_run_at, Some(at("2026-01-01T10:00:40Z")));
    }

    #[test]
    fn daylight_saving_in_berlin() {
        // Spring forward: 2026-03-29 02:00 CET -> 03:00 CEST. 02:30 does not exist that day.
        let daily = CronTime::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let before = at("2026-03-28T12:00:00Z");
        // 02:30 CET on the 28th... the next is the 29th: fired at the first instant after the
        // gap, 03:00 CEST = 01:00 UTC.
        assert_eq!(daily.next(before, false), Some(at("2026-03-29T01:00:00Z")));
        // The day after, back to 02:30 CEST = 00:30 UTC.
        assert_eq!(
            daily.next(at("2026-03-29T01:00:00Z"), false),
            Some(at("2026-03-30T00:30:00Z"))
        );
        // Fall back: 2026-10-25 03:00 CEST -> 02:00 CET. 02:30 happens twice; it fires once.
        let oct = at("2026-10-24T12:00:00Z");
        let first = daily.next(oct, false).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        assert_eq!(daily.next(first, false), Some(at("2026-10-26T01:30:00Z")));
        // Hourly across the spring gap: 01:00 CET, then 03:00 CEST (one hour of real time).
        let hourly = CronTime::parse("0 * * * *", "Europe/Berlin").unwrap();
        let slots = due(
            &hourly,
            at("2026-03-29T00:00:00Z"),
            at("2026-03-29T01:00:00Z"),
            MissedPolicy::CatchUp { max: 10 },
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            slots.slots,
            vec![at("2026-03-29T00:00:00Z"), at("2026-03-29T01:00:00Z")]
        );
        assert_eq!(slots.next_run_at, Some(at("2026-03-29T02:00:00Z")));
    }

    #[test]
    fn slot_jobs_carry_the_slot_and_its_key() {
        let config = PlatformConfig::default();
        let slot = at("2026-01-01T10:00:00Z");
        let job = slot_job("nightly", &template(), slot, &config, slot).unwrap();
        assert_eq!(job.run_at, Some(slot));
        assert_eq!(
            job.idempotency_key.as_deref(),
            Some("schedule:nightly:2026-01-01T10:00:00Z")
        );
        assert_eq!(job.kind, "send_email");
        assert_eq!(job.tenant_id, "acme");
    }

    #[test]
    fn json_shapes() {
        let s: NewSchedule = serde_json::from_value(json!({
            "name": "n", "cron": "* * * * *",
            "template": {"tenant_id": "a", "use_case": "notifications", "type": "t"}
        }))
        .unwrap();
        assert_eq!(s.timezone, "UTC");
        assert_eq!(s.missed, MissedPolicy::Skip);
        assert_eq!(s.template.payload, json!({}));
        let c: MissedPolicy =
            serde_json::from_value(json!({"policy": "catch_up", "max": 3})).unwrap();
        assert_eq!(c, MissedPolicy::CatchUp { max: 3 });
        let whole: MissedPolicy =
            serde_json::from_value(json!({"policy": "catch_up", "max": 3.0})).unwrap();
        assert_eq!(whole, MissedPolicy::CatchUp { max: 3 });
        for bad in [
            json!({"policy": "skip", "x": 1}),
            json!({"policy": "skip", "max": 1}),
            json!({"policy": "catch_up"}),
            json!({"policy": "later"}),
            json!({"max": 1}),
        ] {
            assert!(
                serde_json::from_value::<MissedPolicy>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::to_value(MissedPolicy::CatchUp { max: 2 }).unwrap(),
            json!({"policy": "catch_up", "max": 2})
        );
        assert_eq!(
            serde_json::to_value(MissedPolicy::Skip).unwrap(),
            json!({"policy": "skip"})
        );
        assert!(serde_json::from_value::<NewSchedule>(json!({
            "name": "n", "cron": "* * * * *", "extra": 1,
            "template": {"tenant_id": "a", "use_case": "notifications", "type": "t"}
        }))
        .is_err());
    }
}
