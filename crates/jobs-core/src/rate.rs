//! Rate limits: how fast a tenant's jobs of a use case may start, as a token bucket.
//!
//! A limit is `per_second` with a `burst`: a tenant that has started nothing for a while may start
//! `burst` jobs at once, then one every `1 / per_second` seconds. Limits are enforced in the pick
//! ([`crate::DispatchStore::lease_due`]) from state in the store, so they hold across every
//! scheduler; a limited job waits `pending` and is never refused (quotas refuse, with 429).
//!
//! Configured beside the quotas, in `ASYNC_JOBS_PER_TENANT_RATE_LIMITS`: a JSON object keyed by
//! tenant id (`"*"`: every tenant without an entry of its own, each with a bucket of its own), of
//! use case → limit, where a limit is a number (jobs per second, burst = that number rounded up)
//! or `{"per_second": …, "burst": …}`:
//!
//! ```json
//! {"acme": {"notifications": {"per_second": 5, "burst": 20}}, "*": {"notifications": 50}}
//! ```
//!
//! The scheduler writes the configured limits to the store when it becomes leader
//! ([`crate::DispatchStore::set_rate_limits`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ANY_TENANT;

/// The largest configurable rate, in jobs per second.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The largest configurable burst.
pub const MAX_BURST: u32 = 1_000_000;

/// One rate limit: a use case, for one tenant or for every tenant without one of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// The use case.
    pub use_case: String,
    /// The tenant; `None`: every tenant of the use case without a limit of its own, each
    /// counted on its own (not a shared bucket).
    pub tenant_id: Option<String>,
    /// Jobs started per second, on average (> 0).
    pub per_second: f64,
    /// Jobs that may start at once after a quiet spell (≥ 1).
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` with `burst`, or an error naming what is wrong.
    pub fn new(
        use_case: impl Into<String>,
        tenant_id: Option<String>,
        per_second: f64,
        burst: u32,
    ) -> Result<Self, String> {
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= MAX_PER_SECOND) {
            return Err(format!(
                "per_second must be a number above 0 and at most {MAX_PER_SECOND}, not {per_second}"
            ));
        }
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(format!(
                "burst must be a whole number from 1 to {MAX_BURST}, not {burst}"
            ));
        }
        Ok(RateLimit {
            use_case: use_case.into(),
            tenant_id,
            per_second,
            burst,
        })
    }

    /// The default burst for a rate: the rate rounded up, at least 1.
    pub fn default_burst(per_second: f64) -> u32 {
        per_second.ceil().clamp(1.0, f64::from(MAX_BURST)) as u32
    }

    /// The tokens a bucket holds at `now`, having held `tokens` at `since` (refilled at
    /// `per_second`, never above `burst`). A bucket never seen is full.
    pub fn tokens_at(&self, bucket: Option<(f64, DateTime<Utc>)>, now: DateTime<Utc>) -> f64 {
        let burst = f64::from(self.burst);
        match bucket {
            None => burst,
            Some((tokens, since)) => {
                let elapsed = (now - since).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                (tokens + self.per_second * elapsed.max(0.0)).min(burst)
            }
        }
    }

    /// How long until a bucket holding `tokens` (< 1) has a whole token.
    pub fn wait_for_token(&self, tokens: f64) -> Duration {
        let secs = ((1.0 - tokens) / self.per_second).max(0.0);
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

// `per_second` is never NaN for a limit made by `RateLimit::new` or parsed from configuration.
impl Eq for RateLimit {}

/// The configured rate limits (see the module docs for the JSON form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// By use case, then tenant (`None` = every tenant).
    limits: BTreeMap<(String, Option<String>), RateLimit>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LimitJson {
    PerSecond(f64),
    Full(FullJson),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullJson {
    per_second: f64,
    #[serde(default)]
    burst: Option<f64>,
}

impl RateLimitConfig {
    /// No limits.
    pub fn none() -> Self {
        RateLimitConfig::default()
    }

    /// Adds (or replaces) a limit.
    pub fn with(mut self, limit: RateLimit) -> Self {
        self.limits
            .insert((limit.use_case.clone(), limit.tenant_id.clone()), limit);
        self
    }

    /// Parses the JSON form (see the module docs).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, BTreeMap<String, LimitJson>> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut config = RateLimitConfig::default();
        for (tenant, per_use_case) in raw {
            if tenant.is_empty() {
                return Err("a tenant id may not be empty (\"*\" is every tenant)".to_owned());
            }
            let tenant_id = (tenant != ANY_TENANT).then(|| tenant.clone());
            for (use_case, limit) in per_use_case {
                let (per_second, burst) = match limit {
                    LimitJson::PerSecond(r) => (r, None),
                    LimitJson::Full(FullJson { per_second, burst }) => (per_second, burst),
                };
                let burst = match burst {
                    None => RateLimit::default_burst(per_second),
                    Some(b) if b.fract() == 0.0 && (1.0..=f64::from(MAX_BURST)).contains(&b) => {
                        b as u32
                    }
                    Some(b) => {
                        return Err(format!(
                            "{tenant} / {use_case}: burst must be a whole number from 1 to {MAX_BURST}, not {b}"
                        ))
                    }
                };
                let key = (use_case.to_lowercase(), tenant_id.clone());
                if config.limits.contains_key(&key) {
                    return Err(format!(
                        "{tenant} / {use_case}: the use case is named twice (names are not case-sensitive)"
                    ));
                }
                let limit = RateLimit::new(key.0, key.1, per_second, burst)
                    .map_err(|e| format!("{tenant} / {use_case}: {e}"))?;
                config = config.with(limit);
            }
        }
        Ok(config)
    }

    /// The limits in the JSON form they are configured with.
    pub fn to_json(&self) -> serde_json::Value {
        let mut tenants = serde_json::Map::new();
        for limit in self.limits.values() {
            let tenant = limit.tenant_id.as_deref().unwrap_or(ANY_TENANT).to_owned();
            let entry = tenants
                .entry(tenant)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(map) = entry {
                map.insert(
                    limit.use_case.clone(),
                    serde_json::json!({"per_second": limit.per_second, "burst": limit.burst}),
                );
            }
        }
        serde_json::Value::Object(tenants)
    }

    /// Every limit, by use case then tenant (every-tenant limits first).
    pub fn all(&self) -> Vec<RateLimit> {
        self.limits.values().cloned().collect()
    }

    /// True when no limit is configured.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// True if some tenant of `use_case` is limited.
    pub fn limits_use_case(&self, use_case: &str) -> bool {
        self.limits.keys().any(|(uc, _)| uc == use_case)
    }

    /// The use cases named by a limit.
    pub fn use_cases(&self) -> impl Iterator<Item = &str> {
        self.limits.keys().map(|(uc, _)| uc.as_str())
    }

    /// The limit of `tenant` in `use_case`: its own, else the every-tenant one.
    pub fn limit_for(&self, tenant: &str, use_case: &str) -> Option<&RateLimit> {
        lookup(self.limits.values(), tenant, use_case)
    }
}

impl crate::JobService {
    /// The rate limits in force (as the store enforces them) that the caller may see: all of
    /// them for [`crate::TenantScope::All`]; for a tenant, the every-tenant limits and its own.
    pub async fn rate_limits(
        &self,
        caller: &crate::TenantScope,
    ) -> Result<Vec<RateLimit>, crate::StoreError> {
        let mut limits = self.store().rate_limits().await?;
        limits.retain(|l| l.tenant_id.as_deref().is_none_or(|t| caller.allows(t)));
        Ok(limits)
    }
}

/// The limit of `tenant` in `use_case` among `limits`: its own, else the every-tenant one (the
/// reference rule for every store).
pub fn lookup<'a>(
    limits: impl IntoIterator<Item = &'a RateLimit>,
    tenant: &str,
    use_case: &str,
) -> Option<&'a RateLimit> {
    let mut any = None;
    for l in limits {
        if l.use_case != use_case {
            continue;
        }
        match l.tenant_id.as_deref() {
            Some(t) if t == tenant => return Some(l),
            None => any = Some(l),
            Some(_) => {}
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_numbers_and_objects_with_default_bursts() {
        let c = RateLimitConfig::from_json(
            r#"{"acme": {"Notifications": {"per_second": 5, "burst": 20}}, "*": {"notifications": 2.5}}"#,
        )
        .unwrap();
        let acme = c.limit_for("acme", "notifications").unwrap();
        assert_eq!((acme.per_second, acme.burst), (5.0, 20));
        let other = c.limit_for("globex", "notifications").unwrap();
        assert_eq!(
            (other.per_second, other.burst, other.tenant_id.clone()),
            (2.5, 3, None)
        );
        assert!(c.limit_for("acme", "message_labeling").is_none());
        assert!(c.limits_use_case("notifications") && !c.limits_use_case("message_labeling"));
        assert_eq!(
            RateLimitConfig::from_json(&c.to_json().to_string()).unwrap(),
            c
        );
        let whole = RateLimitConfig::from_json(r#"{"a": {"n": {"per_second": 5, "burst": 20.0}}}"#);
        assert_eq!(whole.unwrap().limit_for("a", "n").unwrap().burst, 20);
    }

    #[test]
    fn refuses_what_cannot_be_a_rate() {
        for bad in [
            r#"{"a": {"n": 0}}"#,
            r#"{"a": {"n": -1}}"#,
            r#"{"a": {"n": {"per_second": 1, "burst": 0}}}"#,
            r#"{"a": {"n": 1e300}}"#,
            r#"{"": {"n": 1}}"#,
            r#"{"a": 5}"#,
            r#"[1]"#,
            r#"{"a": {"n": {"per_second": 5, "brust": 20}}}"#,
            r#"{"a": {"n": {"per_second": 5, "burst": 2.5}}}"#,
            r#"{"a": {"n": 1, "N": 2}}"#,
        ] {
            assert!(RateLimitConfig::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_refills_at_the_rate_up_to_the_burst() {
        let l = RateLimit::new("n", None, 4.0, 10).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(l.tokens_at(None, t0), 10.0);
        let t1 = t0 + chrono::Duration::milliseconds(500);
        assert_eq!(l.tokens_at(Some((0.0, t0)), t1), 2.0);
        assert_eq!(l.tokens_at(Some((9.5, t0)), t1), 10.0);
        assert_eq!(l.wait_for_token(0.5), Duration::from_millis(125));
    }
}
