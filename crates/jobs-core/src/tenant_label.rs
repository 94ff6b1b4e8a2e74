//! The `tenant` label of per-tenant metrics, bounded.
//!
//! A platform can serve tens of thousands of tenants, and every distinct label value is a time
//! series kept by Prometheus (and billed by CloudWatch), so per-tenant series are opt-in and
//! capped ([`TenantLabelPolicy`], read from `ASYNC_JOBS_METRICS_TENANT_LABELS` and
//! `ASYNC_JOBS_METRICS_TENANT_LABELS_MAX`):
//!
//! - `off` (the default): no per-tenant series at all.
//! - `all`: each tenant gets its own label, up to the cap per process; tenants seen after the
//!   cap was reached report as `tenant="other"`.
//! - a comma-separated list of tenant ids: those tenants get their own label (the cap still
//!   applies); every other tenant reports as `tenant="other"`.
//!
//! A tenant keeps the label it was first given for the life of the process, so a series never
//! changes meaning; a process holds at most `max + 1` tenant values per metric and use case.
//! The per-use-case series are separate metrics and are not affected by the policy.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

/// The label value of tenants without a label of their own.
pub const OTHER: &str = "other";

/// The default cap on distinct tenant labels per process.
pub const DEFAULT_MAX_TENANTS: usize = 100;

/// Which tenants get a label of their own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TenantLabels {
    /// No per-tenant series.
    #[default]
    Off,
    /// Every tenant, up to the cap.
    All,
    /// These tenants (up to the cap); the rest are [`OTHER`].
    Only(BTreeSet<String>),
}

impl TenantLabels {
    /// Parses `off`, `all` or a comma-separated list of tenant ids (blank items are refused).
    pub fn parse(raw: &str) -> Result<TenantLabels, String> {
        match raw.trim() {
            "off" => Ok(TenantLabels::Off),
            "all" => Ok(TenantLabels::All),
            "" => Err("`off`, `all` or a comma-separated list of tenant ids".to_owned()),
            list => {
                let mut tenants = BTreeSet::new();
                for item in list.split(',') {
                    let tenant = item.trim();
                    if tenant.is_empty() {
                        return Err("a comma-separated list of tenant ids, none blank".to_owned());
                    }
                    tenants.insert(tenant.to_owned());
                }
                Ok(TenantLabels::Only(tenants))
            }
        }
    }

    /// The setting's value as it would be written (`off`, `all`, or the sorted list).
    pub fn describe(&self) -> String {
        match self {
            TenantLabels::Off => "off".to_owned(),
            TenantLabels::All => "all".to_owned(),
            TenantLabels::Only(t) => t.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }
}

/// The label policy: which tenants, and at most how many distinct ones per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLabelPolicy {
    /// Which tenants get a label of their own.
    pub labels: TenantLabels,
    /// At most this many distinct tenant labels per process (then [`OTHER`]).
    pub max_tenants: usize,
}

impl Default for TenantLabelPolicy {
    fn default() -> Self {
        TenantLabelPolicy {
            labels: TenantLabels::Off,
            max_tenants: DEFAULT_MAX_TENANTS,
        }
    }
}

impl TenantLabelPolicy {
    /// No per-tenant series.
    pub fn off() -> Self {
        TenantLabelPolicy::default()
    }

    /// Whether per-tenant series are wanted at all.
    pub fn is_on(&self) -> bool {
        self.labels != TenantLabels::Off
    }
}

/// Hands out tenant labels under a [`TenantLabelPolicy`], remembering which tenants got their own
/// (at most `max_tenants` of them).
#[derive(Debug)]
pub struct TenantLabeler {
    policy: TenantLabelPolicy,
    labelled: Mutex<HashSet<String>>,
}

impl TenantLabeler {
    /// A labeler with no tenant labelled yet.
    pub fn new(policy: TenantLabelPolicy) -> Self {
        TenantLabeler {
            policy,
            labelled: Mutex::new(HashSet::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &TenantLabelPolicy {
        &self.policy
    }

    /// The `tenant` label for `tenant`: `None` when the policy is off, else the tenant's own id
    /// (if the policy names it and it is, or can still become, one of the `max_tenants` labelled)
    /// or [`OTHER`].
    pub fn label(&self, tenant: &str) -> Option<String> {
        let wanted = match &self.policy.labels {
            TenantLabels::Off => return None,
            TenantLabels::All => true,
            TenantLabels::Only(tenants) => tenants.contains(tenant),
        };
        if !wanted {
            return Some(OTHER.to_owned());
        }
        let mut labelled = self
            .labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if labelled.contains(tenant) {
            return Some(tenant.to_owned());
        }
        if labelled.len() < self.policy.max_tenants {
            labelled.insert(tenant.to_owned());
            return Some(tenant.to_owned());
        }
        Some(OTHER.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(labels: TenantLabels, max: usize) -> TenantLabeler {
        TenantLabeler::new(TenantLabelPolicy {
            labels,
            max_tenants: max,
        })
    }

    #[test]
    fn parses_the_setting() {
        assert_eq!(TenantLabels::parse("off"), Ok(TenantLabels::Off));
        assert_eq!(TenantLabels::parse(" all "), Ok(TenantLabels::All));
        let list = TenantLabels::parse("globex, acme,acme").unwrap();
        assert_eq!(
            list,
            TenantLabels::Only(["acme".to_owned(), "globex".to_owned()].into())
        );
        assert_eq!(list.describe(), "acme,globex");
        for bad in ["", " ", "acme,,globex", "acme,"] {
            assert!(TenantLabels::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn off_gives_no_label() {
        let l = policy(TenantLabels::Off, 10);
        assert_eq!(l.label("acme"), None);
        assert!(!l.policy().is_on());
    }

    #[test]
    fn all_labels_the_first_tenants_up_to_the_cap_then_other() {
        let l = policy(TenantLabels::All, 2);
        assert_eq!(l.label("a").as_deref(), Some("a"));
        assert_eq!(l.label("b").as_deref(), Some("b"));
        assert_eq!(l.label("c").as_deref(), Some(OTHER));
        // A labelled tenant keeps its label; an overflowed one stays other.
        assert_eq!(l.label("a").as_deref(), Some("a"));
        assert_eq!(l.label("c").as_deref(), Some(OTHER));
        let distinct: HashSet<String> = (0..10_000)
            .filter_map(|i| l.label(&format!("t{i}")))
            .collect();
        assert_eq!(distinct, HashSet::from([OTHER.to_owned()]));
    }

    #[test]
    fn a_list_labels_only_its_tenants() {
        let l = policy(TenantLabels::parse("acme,globex,initech").unwrap(), 2);
        assert_eq!(l.label("zeta").as_deref(), Some(OTHER));
        assert_eq!(l.label("globex").as_deref(), Some("globex"));
        assert_eq!(l.label("acme").as_deref(), Some("acme"));
        assert_eq!(l.label("initech").as_deref(), Some(OTHER), "over the cap");
    }
}
