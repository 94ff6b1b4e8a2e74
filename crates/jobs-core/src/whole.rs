//! Whole numbers in JSON the way JSON Schema counts them: `3`, `3.0` and `3e0` are the same
//! integer, so an integer field accepts any number without a fractional part within its range,
//! and names the range when refusing one.

use serde::de::{self, Deserializer, Visitor};

/// An integer type a JSON field can hold.
pub trait Whole: Sized + TryFrom<i64> {
    /// The smallest value.
    const MIN: i64;
    /// The largest value.
    const MAX: i64;
}

impl Whole for u32 {
    const MIN: i64 = 0;
    const MAX: i64 = u32::MAX as i64;
}

impl Whole for i16 {
    const MIN: i64 = i16::MIN as i64;
    const MAX: i64 = i16::MAX as i64;
}

struct WholeVisitor<T>(std::marker::PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn out_of_range<E: de::Error>(shown: &dyn std::fmt::Display) -> E {
        E::custom(format!(
            "expected a whole number from {} to {}, got {shown}",
            T::MIN,
            T::MAX
        ))
    }
}

impl<T: Whole> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a whole number from {} to {}", T::MIN, T::MAX)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        if (T::MIN..=T::MAX).contains(&v) {
            T::try_from(v).map_err(|_| Self::out_of_range(&v))
        } else {
            Err(Self::out_of_range(&v))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(Self::out_of_range(&v)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if v.is_finite() && v.fract() == 0.0 && v >= T::MIN as f64 && v <= T::MAX as f64 {
            // In range and whole, so the conversion is exact.
            self.visit_i64(v as i64)
        } else if v.is_finite() && v.fract() == 0.0 {
            Err(Self::out_of_range(&v))
        } else {
            Err(E::custom(format!(
                "expected a whole number from {} to {}, got {v}",
                T::MIN,
                T::MAX
            )))
        }
    }
}

struct OptionVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Whole> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a whole number from {} to {}, or null", T::MIN, T::MAX)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(WholeVisitor(std::marker::PhantomData))
            .map(Some)
    }
}

/// `deserialize_with` for an `Option<u32>` or `Option<i16>` field: `null`, or a whole number in
/// range (`3.0` included).
pub fn deserialize_option<'de, D: Deserializer<'de>, T: Whole>(
    d: D,
) -> Result<Option<T>, D::Error> {
    d.deserialize_option(OptionVisitor(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::deserialize_option")]
        n: Option<u32>,
        #[serde(default, deserialize_with = "super::deserialize_option")]
        p: Option<i16>,
    }

    fn parse(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_any_notation() {
        let t = parse(r#"{"n": 3.0, "p": -2e0}"#).unwrap();
        assert_eq!((t.n, t.p), (Some(3), Some(-2)));
        let t = parse(r#"{"n": null}"#).unwrap();
        assert_eq!((t.n, t.p), (None, None));
        assert_eq!(parse(r#"{"n": 4294967295}"#).unwrap().n, Some(u32::MAX));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "3"}"#,
            r#"{"p": 32768}"#,
            r#"{"p": 18446744073709551615}"#,
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("expected a whole number from"), "{bad}: {err}");
        }
    }
}
