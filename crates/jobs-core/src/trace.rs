//! The W3C trace context a job carries from the request that enqueued it to its handler.
//!
//! [`TraceContext`] holds a parsed `traceparent` (version `00`: trace id, parent span id, flags)
//! and an optional `tracestate`. It is only data: this crate knows no OpenTelemetry. The HTTP API
//! reads it from the `traceparent` / `tracestate` headers, the stores keep it with the job, and the
//! worker makes the handler's span a child of it (see `jobs_http::telemetry`).
//!
//! Parsing never panics. Following the W3C recommendation, an invalid `traceparent` is not an
//! error for the request: callers ignore it ([`TraceContext::from_headers`] returns `None`). An
//! invalid or oversized `tracestate` is dropped while the `traceparent` is kept.
//!
//! ```
//! use jobs_core::TraceContext;
//!
//! let tc = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(tc.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(tc.is_sampled());
//! assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest `tracestate` kept, in bytes (the W3C's recommended propagation limit). A longer
/// one is dropped.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A validated W3C trace context: the `traceparent` of the enqueuing request's span, plus its
/// `tracestate` if one came and was acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    tracestate: Option<String>,
}

/// Why a `traceparent` was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    /// Not `00-<32 hex>-<16 hex>-<2 hex>` (55 characters, lowercase hex).
    #[error("traceparent must be 00-<32 hex>-<16 hex>-<2 hex> in lowercase")]
    Format,
    /// A version other than `00`.
    #[error("only traceparent version 00 is supported")]
    Version,
    /// The trace id is all zeros.
    #[error("the trace id must not be all zeros")]
    ZeroTraceId,
    /// The parent id is all zeros.
    #[error("the parent id must not be all zeros")]
    ZeroParentId,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes lowercase hex into `out` (`hex.len() == 2 * out.len()`).
fn decode_hex(hex: &[u8], out: &mut [u8]) -> Result<(), TraceParentError> {
    if hex.len() != out.len() * 2 {
        return Err(TraceParentError::Format);
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_value(pair[0]).ok_or(TraceParentError::Format)?;
        let lo = hex_value(pair[1]).ok_or(TraceParentError::Format)?;
        *byte = (hi << 4) | lo;
    }
    Ok(())
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// An acceptable `tracestate`: 1 to [`MAX_TRACESTATE_BYTES`] bytes of printable ASCII, not only
/// separators. Members are not interpreted (vendors own them).
fn acceptable_tracestate(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TRACESTATE_BYTES
        && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && s.bytes().any(|b| !matches!(b, b' ' | b'\t' | b','))
}

impl TraceContext {
    /// Parses a `traceparent` header value (surrounding whitespace is ignored).
    pub fn parse(traceparent: &str) -> Result<TraceContext, TraceParentError> {
        let s = traceparent.trim_matches([' ', '\t']).as_bytes();
        if s.len() < 55 || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return Err(TraceParentError::Format);
        }
        let mut version = [0u8; 1];
        decode_hex(&s[0..2], &mut version)?;
        match version[0] {
            0xff => return Err(TraceParentError::Version),
            // Version 00 is exactly 55 characters.
            0 if s.len() != 55 => return Err(TraceParentError::Format),
            0 => {}
            // W3C versioning: a later version is read by its first 55 characters when it is
            // exactly that long or continues with `-` (its own fields are not understood).
            _ if s.len() != 55 && s[55] != b'-' => return Err(TraceParentError::Format),
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        decode_hex(&s[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        decode_hex(&s[36..52], &mut parent_id)?;
        let mut flags = [0u8; 1];
        decode_hex(&s[53..55], &mut flags)?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceContext {
            trace_id,
            parent_id,
            flags: flags[0],
            tracestate: None,
        })
    }

    /// The context of the `traceparent` and `tracestate` header values, or `None` when there is
    /// no `traceparent` or it is invalid (W3C: an invalid one is ignored, not refused). The
    /// `tracestate` is kept only when acceptable (see [`Self::with_tracestate`]).
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let tc = Self::parse(traceparent?).ok()?;
        Some(match tracestate {
            Some(state) => tc.with_tracestate(state),
            None => tc,
        })
    }

    /// A context from raw ids: `None` if either is all zeros.
    pub fn from_parts(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceContext {
            trace_id,
            parent_id,
            flags,
            tracestate: None,
        })
    }

    /// Adds a `tracestate`, trimmed; an empty, oversized (over [`MAX_TRACESTATE_BYTES`]) or
    /// non-printable one is dropped, leaving none.
    pub fn with_tracestate(mut self, tracestate: &str) -> Self {
        let state = tracestate.trim_matches([' ', '\t']);
        self.tracestate = acceptable_tracestate(state).then(|| state.to_owned());
        self
    }

    /// The 16-byte trace id.
    pub const fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte id of the span the job's handler span becomes a child of.
    pub const fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// True if the sampled flag is set.
    pub const fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate`, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        encode_hex(&self.trace_id)
    }

    /// The parent id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        encode_hex(&self.parent_id)
    }

    /// The `traceparent` header value (`00-<trace id>-<parent id>-<flags>`).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id_hex(),
            self.parent_id_hex(),
            encode_hex(&[self.flags])
        )
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl FromStr for TraceContext {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The JSON form: `{"traceparent": "00-…", "tracestate": "…"}` (`tracestate` only when present).
#[derive(Serialize, Deserialize)]
struct Wire {
    traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl Serialize for TraceContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            traceparent: self.traceparent(),
            tracestate: self.tracestate.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TraceContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let tc = TraceContext::parse(&wire.traceparent).map_err(serde::de::Error::custom)?;
        Ok(match wire.tracestate {
            Some(state) => tc.with_tracestate(&state),
            None => tc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_a_valid_traceparent() {
        let tc = TraceContext::parse(VALID).unwrap();
        assert_eq!(tc.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(tc.flags(), 1);
        assert!(tc.is_sampled());
        assert_eq!(tc.traceparent(), VALID);
        assert_eq!(tc.to_string(), VALID);
        assert_eq!(tc.tracestate(), None);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.is_sampled());
        // Whitespace around the value is optional whitespace in HTTP.
        assert_eq!(TraceContext::parse(&format!(" {VALID}\t")).unwrap(), tc);
        assert_eq!(VALID.parse::<TraceContext>().unwrap(), tc);
        // A later version is read by its first 55 characters and carried on as version 00.
        let later = VALID.replacen("00-", "01-", 1);
        assert_eq!(TraceContext::parse(&later).unwrap(), tc);
        assert_eq!(
            TraceContext::parse(&format!("{later}-what-comes-next")).unwrap(),
            tc
        );
    }

    #[test]
    fn refuses_every_malformed_traceparent() {
        let cases: Vec<(String, TraceParentError)> = vec![
            (String::new(), TraceParentError::Format),
            ("garbage".into(), TraceParentError::Format),
            (VALID.to_uppercase(), TraceParentError::Format),
            (VALID.replacen("00-", "ff-", 1), TraceParentError::Version),
            (
                format!("{}x", VALID.replacen("00-", "01-", 1)),
                TraceParentError::Format,
            ),
            (VALID.replacen("00-", "0g-", 1), TraceParentError::Format),
            (format!("{VALID}-00"), TraceParentError::Format),
            (VALID[..54].to_owned(), TraceParentError::Format),
            (VALID.replace('-', "_"), TraceParentError::Format),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
                TraceParentError::ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
                TraceParentError::ZeroParentId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01".into(),
                TraceParentError::Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x".into(),
                TraceParentError::Format,
            ),
            // Multi-byte characters where hex belongs: never sliced mid-character.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01".into(),
                TraceParentError::Format,
            ),
            (format!("{}é", &VALID[..53]), TraceParentError::Format),
        ];
        for (input, want) in cases {
            assert_eq!(TraceContext::parse(&input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn invalid_headers_are_ignored_and_bad_tracestate_dropped() {
        assert_eq!(TraceContext::from_headers(None, Some("a=b")), None);
        assert_eq!(TraceContext::from_headers(Some("nope"), Some("a=b")), None);
        let tc = TraceContext::from_headers(
            Some(VALID),
            Some(" congo=t61rcWkgMzE,rojo=00f067aa0ba902b7 "),
        )
        .unwrap();
        assert_eq!(
            tc.tracestate(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        for bad in [
            "",
            " , ",
            "a=\u{7f}",
            "a=é",
            &format!("a={}", "x".repeat(511)),
        ] {
            let tc = TraceContext::from_headers(Some(VALID), Some(bad)).unwrap();
            assert_eq!(tc.tracestate(), None, "{bad:?}");
        }
        let at_limit = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES - 2));
        assert_eq!(
            TraceContext::from_headers(Some(VALID), Some(&at_limit))
                .unwrap()
                .tracestate(),
            Some(at_limit.as_str())
        );
    }

    #[test]
    fn from_parts_refuses_zero_ids() {
        assert!(TraceContext::from_parts([0; 16], [1; 8], 1).is_none());
        assert!(TraceContext::from_parts([1; 16], [0; 8], 1).is_none());
        let tc = TraceContext::from_parts([0xab; 16], [0x01; 8], 0).unwrap();
        assert_eq!(TraceContext::parse(&tc.traceparent()).unwrap(), tc);
    }

    #[test]
    fn json_round_trips_and_validates() {
        let tc = TraceContext::parse(VALID).unwrap().with_tracestate("k=v");
        let json = serde_json::to_value(&tc).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"traceparent": VALID, "tracestate": "k=v"})
        );
        assert_eq!(serde_json::from_value::<TraceContext>(json).unwrap(), tc);
        let bare = serde_json::to_value(TraceContext::parse(VALID).unwrap()).unwrap();
        assert_eq!(bare, serde_json::json!({"traceparent": VALID}));
        assert!(
            serde_json::from_value::<TraceContext>(serde_json::json!({"traceparent": "x"}))
                .is_err()
        );
        assert!(serde_json::from_value::<TraceContext>(serde_json::json!("x")).is_err());
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: Vec<char> = "0123456789abcdefABCDEF- \té\u{0}".chars().collect();
        for _ in 0..20_000 {
            let len = rng.usize(0..70);
            let s: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            if let Ok(tc) = TraceContext::parse(&s) {
                assert_eq!(TraceContext::parse(&tc.traceparent()).unwrap(), tc);
            }
            let _ = TraceContext::from_headers(Some(VALID), Some(&s));
        }
    }
}
