//! Serde helpers: a [`Duration`] as a JSON number of seconds (fractions allowed).
//!
//! Negative, non-finite or unrepresentable numbers are refused with a message naming the problem.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

/// Writes the duration as seconds (`f64`).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads seconds (`f64` or integer) into a duration.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    from_secs(secs).map_err(de::Error::custom)
}

/// Converts seconds to a duration, refusing negative, non-finite and too-large values.
pub fn from_secs(secs: f64) -> Result<Duration, &'static str> {
    if secs.is_nan() || secs.is_infinite() {
        return Err("seconds must be a finite number");
    }
    if secs < 0.0 {
        return Err("seconds must not be negative");
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "seconds out of range")
}

/// The same for `Option<Duration>` fields.
pub mod option {
    use super::*;

    /// Writes `Some` as seconds and `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    /// Reads seconds or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(secs) => from_secs(secs).map(Some).map_err(de::Error::custom),
            None => Ok(None),
        }
    }
}
