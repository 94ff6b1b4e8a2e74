//! The schema the tables live in, validated so it can be spliced into SQL text safely.

use std::fmt;

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "async_jobs";

/// A schema name that is safe to splice into SQL unquoted: 1–40 characters of `[a-z0-9_]`,
/// not starting with a digit and not starting with `pg_`.
///
/// The limit of 40 leaves room for derived names (the NOTIFY channel `<schema>_wakeup`) inside
/// PostgreSQL's 63-byte identifier limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

/// The schema name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema name {0:?}: use 1-40 characters of a-z, 0-9 and _, not starting with a digit or pg_")]
pub struct InvalidSchemaName(pub String);

impl SchemaName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<SchemaName, InvalidSchemaName> {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit()
            && !name.starts_with("pg_");
        if ok {
            Ok(SchemaName(name.to_owned()))
        } else {
            Err(InvalidSchemaName(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The LISTEN/NOTIFY channel of this schema's wake-ups.
    pub fn channel(&self) -> String {
        format!("{}_wakeup", self.0)
    }

    /// `sql` with every `__SCHEMA__` replaced by this name.
    pub(crate) fn render(&self, sql: &str) -> String {
        sql.replace("__SCHEMA__", &self.0)
    }
}

impl Default for SchemaName {
    fn default() -> Self {
        SchemaName(DEFAULT_SCHEMA.to_owned())
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_refuses_the_rest() {
        for ok in ["async_jobs", "a", "_x1", "t_0123456789abcdef"] {
            assert!(SchemaName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "Async",
            "a-b",
            "a;drop",
            "pg_temp",
            "a b",
            &"x".repeat(41),
            "é",
        ] {
            assert!(SchemaName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_and_names_the_channel() {
        let s = SchemaName::new("jobs_a").unwrap();
        assert_eq!(
            s.render("SELECT * FROM __SCHEMA__.jobs; '__SCHEMA___wakeup'"),
            "SELECT * FROM jobs_a.jobs; 'jobs_a_wakeup'"
        );
        assert_eq!(s.channel(), "jobs_a_wakeup");
    }
}
