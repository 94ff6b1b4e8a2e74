//! Retry backoff: how long a failed job waits before its next attempt.
//!
//! Pure arithmetic on [`Duration`]s with saturating maths, so no attempt number or base duration
//! can overflow or panic. Randomness for jitter is passed in (a number in `[0, 1)`), which keeps
//! the function deterministic under test.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration_secs;

/// How the delay grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffStrategy {
    /// `base × 2^(attempt−1)` (the default).
    #[default]
    Exponential,
    /// `base × attempt`.
    Linear,
    /// `base` every time.
    Constant,
}

/// How the computed delay is randomised so that retries of many jobs do not arrive in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The exact delay.
    None,
    /// Uniform in `[0, delay]` ("full jitter"; the default).
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]` ("equal jitter").
    Equal,
}

/// A job's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// How the delay grows.
    #[serde(default)]
    pub strategy: BackoffStrategy,
    /// The first delay (and the unit of growth).
    #[serde(rename = "base_seconds", with = "duration_secs")]
    pub base: Duration,
    /// No delay is ever longer than this.
    #[serde(rename = "cap_seconds", with = "duration_secs")]
    pub cap: Duration,
    /// Randomisation applied after capping.
    #[serde(default)]
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// Exponential from 1 s, capped at 1 h, full jitter.
    fn default() -> Self {
        Backoff {
            strategy: BackoffStrategy::Exponential,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// The delay before the retry that follows failed attempt number `attempt` (1-based),
    /// before jitter: never above `cap`, monotone in `attempt`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let attempt = attempt.max(1);
        let raw = match self.strategy {
            BackoffStrategy::Constant => self.base,
            BackoffStrategy::Linear => self.base.saturating_mul(attempt),
            BackoffStrategy::Exponential => {
                // 2^127 ns already exceeds Duration::MAX, so larger exponents change nothing.
                let factor = 1u128 << (attempt - 1).min(127);
                saturating_from_nanos(self.base.as_nanos().saturating_mul(factor))
            }
        };
        raw.min(self.cap)
    }

    /// The delay with jitter applied. `unit` is a random number in `[0, 1)` (values outside are
    /// clamped), e.g. from [`fastrand::f64`].
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let delay = self.base_delay(attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self.jitter {
            Jitter::None => delay,
            Jitter::Full => scale(delay, unit),
            Jitter::Equal => {
                let half = delay / 2;
                half + scale(delay - half, unit)
            }
        }
    }

    /// The delay with jitter from the thread-local random generator.
    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

/// A duration from nanoseconds, saturating at [`Duration::MAX`].
fn saturating_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10^9, so it fits in u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `d × unit` for `unit` in `[0, 1]`, never above `d`.
fn scale(d: Duration, unit: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * unit)
        .unwrap_or(d)
        .min(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(strategy: BackoffStrategy, base: u64, cap: u64, jitter: Jitter) -> Backoff {
        Backoff {
            strategy,
            base: Duration::from_secs(base),
            cap: Duration::from_secs(cap),
            jitter,
        }
    }

    #[test]
    fn table_of_exact_delays() {
        let s = Duration::from_secs;
        let cases = [
            (BackoffStrategy::Exponential, 1, s(1)),
            (BackoffStrategy::Exponential, 2, s(2)),
            (BackoffStrategy::Exponential, 3, s(4)),
            (BackoffStrategy::Exponential, 10, s(512)),
            (BackoffStrategy::Exponential, 11, s(1000)),
            (BackoffStrategy::Linear, 1, s(1)),
            (BackoffStrategy::Linear, 7, s(7)),
            (BackoffStrategy::Linear, 5000, s(1000)),
            (BackoffStrategy::Constant, 1, s(1)),
            (BackoffStrategy::Constant, 99, s(1)),
        ];
        for (strategy, attempt, expected) in cases {
            let b = policy(strategy, 1, 1000, Jitter::None);
            assert_eq!(
                b.delay(attempt, 0.5),
                expected,
                "{strategy:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        let b = policy(BackoffStrategy::Exponential, 3, 100, Jitter::None);
        assert_eq!(b.base_delay(0), b.base_delay(1));
    }

    #[test]
    fn jitter_bounds() {
        let b = policy(BackoffStrategy::Constant, 10, 10, Jitter::Full);
        assert_eq!(b.delay(1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(5));
        let e = Backoff {
            jitter: Jitter::Equal,
            ..b
        };
        assert_eq!(e.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(e.delay(1, 1.0), Duration::from_secs(10));
        assert_eq!(b.delay(1, f64::NAN), Duration::ZERO);
        assert_eq!(b.delay(1, 7.0), Duration::from_secs(10));
    }

    fn any_strategy() -> impl Strategy<Value = BackoffStrategy> {
        prop_oneof![
            Just(BackoffStrategy::Exponential),
            Just(BackoffStrategy::Linear),
            Just(BackoffStrategy::Constant)
        ]
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
    }

    const TEN_YEARS: u64 = 10 * 366 * 24 * 3600;

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        (
            any_strategy(),
            0u64..=TEN_YEARS * 1_000_000_000,
            0u64..=TEN_YEARS * 1_000_000_000,
            any_jitter(),
        )
            .prop_map(|(strategy, base, cap, jitter)| Backoff {
                strategy,
                base: Duration::from_nanos(base),
                cap: Duration::from_nanos(cap),
                jitter,
            })
    }

    proptest! {
        #[test]
        fn never_above_cap(b in any_backoff(), attempt in any::<u32>(), unit in any::<f64>()) {
            prop_assert!(b.delay(attempt, unit) <= b.cap);
            prop_assert!(b.base_delay(attempt) <= b.cap);
        }

        #[test]
        fn jittered_within_bounds(b in any_backoff(), attempt in any::<u32>(), unit in 0.0f64..1.0) {
            let exact = b.base_delay(attempt);
            let d = b.delay(attempt, unit);
            prop_assert!(d <= exact);
            if b.jitter == Jitter::Equal {
                prop_assert!(d >= exact / 2);
            }
            if b.jitter == Jitter::None {
                prop_assert_eq!(d, exact);
            }
        }

        #[test]
        fn monotone_without_jitter(b in any_backoff(), a in any::<u32>(), step in 0u32..1000) {
            let later = a.saturating_add(step);
            prop_assert!(b.base_delay(a) <= b.base_delay(later));
        }

        #[test]
        fn huge_attempts_and_durations_reach_the_cap(strategy in any_strategy(), attempt in (u32::MAX - 10)..=u32::MAX) {
            let b = Backoff { strategy, base: Duration::from_secs(TEN_YEARS), cap: Duration::MAX, jitter: Jitter::None };
            let d = b.base_delay(attempt);
            prop_assert!(d >= b.base.min(b.cap));
            let capped = Backoff { cap: Duration::from_secs(60), ..b };
            prop_assert_eq!(capped.base_delay(attempt), Duration::from_secs(60));
        }
    }
}
