//! Strict RFC 3339 date-times: the one format the JSON API accepts for a time (`run_at`, the list
//! filters), with an error message that names the format and shows what was given.
//!
//! What JSON Schema's `format: date-time` describes, plus one spelling RFC 3339 itself allows
//! (§5.6, NOTE): a space instead of `T` between date and time, which Python's `str(datetime)` and
//! many SQL clients produce and which the API accepted before it was strict. Everything else that
//! chrono's relaxed parser takes (`+0000` offsets, missing seconds) is refused.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};

/// What an accepted value looks like, for messages.
pub const EXPECTED: &str = "an RFC 3339 date-time (like 2026-01-31T12:00:00Z)";

/// Parses an RFC 3339 date-time (`T`, `t` or a space between date and time; `Z`, `z` or a
/// `±hh:mm` offset). `Err` is the message: what was expected and what was given.
pub fn parse(raw: &str) -> Result<DateTime<Utc>, String> {
    let separator_ok = matches!(raw.as_bytes().get(10), Some(b'T' | b't' | b' '));
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) if separator_ok => Ok(t.with_timezone(&Utc)),
        _ => Err(format!("expected {EXPECTED}, got {}", describe(raw))),
    }
}

/// `an empty string`, or the value quoted (its first 64 characters).
fn describe(raw: &str) -> String {
    if raw.is_empty() {
        return "an empty string".to_owned();
    }
    let mut shown: String = raw.chars().take(64).collect();
    if shown.len() < raw.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

struct DateTimeVisitor;

impl Visitor<'_> for DateTimeVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse(v).map_err(E::custom)
    }
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{EXPECTED} or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(DateTimeVisitor).map(Some)
    }
}

/// `deserialize_with` for an `Option<DateTime<Utc>>` field: `null` or a strict RFC 3339 string.
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    d.deserialize_option(OptionVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_only() {
        for ok in [
            "2026-01-31T12:00:00Z",
            "2026-01-31t12:00:00z",
            "2026-01-31T12:00:00.123456+02:00",
            "2026-01-31 12:00:00Z",
            "2026-01-31 12:00:00.5+00:00",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2026-01-31_12:00:00Z",
            "2026-01-31 12:00:00+0000",
            "2026-01-31 12:00Z",
            "2026-01-31",
            "now",
            "2026-01-31T12:00:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("").unwrap_err(),
            "expected an RFC 3339 date-time (like 2026-01-31T12:00:00Z), got an empty string"
        );
        assert!(parse("soon").unwrap_err().ends_with("got \"soon\""));
        assert!(parse(&"x".repeat(500)).unwrap_err().len() < 200);
    }

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "deserialize_option")]
        at: Option<DateTime<Utc>>,
    }

    #[test]
    fn deserializes_null_absent_and_strings() {
        let t: T = serde_json::from_str("{}").unwrap();
        assert!(t.at.is_none());
        let t: T = serde_json::from_str(r#"{"at": null}"#).unwrap();
        assert!(t.at.is_none());
        let t: T = serde_json::from_str(r#"{"at": "2026-01-31T12:00:00Z"}"#).unwrap();
        assert!(t.at.is_some());
        let err = serde_json::from_str::<T>(r#"{"at": ""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("got an empty string"), "{err}");
        let err = serde_json::from_str::<T>(r#"{"at": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected an RFC 3339 date-time"), "{err}");
    }
}
