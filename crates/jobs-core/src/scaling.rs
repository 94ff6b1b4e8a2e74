//! The scaling signal: how long the backlog would take to drain at the rate jobs are leaving it.
//!
//! **Backlog seconds** of a use case = due pending jobs ([`crate::backlog`]) ÷ the recent rate at
//! which its due jobs start ([`DrainRate`]: an exponentially weighted average over a window, one
//! minute by default). The rate is floored at a configured minimum ([`backlog_seconds`]), so the
//! signal stays finite — and large — when nothing drains the backlog (no worker running, all of
//! them stuck): a target-tracking policy then scales out instead of reading "no data".
//!
//! Why this one number: the rate grows with the number of workers (until the use case's cap is
//! reached), so backlog seconds falls in proportion as workers are added — the shape target
//! tracking needs (AWS's "backlog per instance" for SQS is the same idea). Its target is a
//! latency a team can state: "drain what is waiting within 60 s". It is zero when nothing waits,
//! so an idle system scales in to its minimum. (Required workers, `due ÷ target ÷ one worker's
//! rate`, needs one worker's rate, which the scheduler cannot measure; backlog seconds needs
//! only the total.)
//!
//! Pure maths, no clock: callers pass the time elapsed between observations.

use std::time::Duration;

/// The default averaging window of [`DrainRate`].
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// The default floor of the drain rate (jobs per second) in [`backlog_seconds`]: about what one
/// worker task with the default concurrency (10) sustains on ten-second jobs. Set it to one
/// worker task's throughput (`ASYNC_JOBS_WORKER_CONCURRENCY` ÷ a typical run time).
pub const DEFAULT_MIN_RATE: f64 = 1.0;

/// An exponentially weighted moving average of a rate (events per second), fed with counts over
/// irregular intervals.
///
/// Each observation of `events` over `elapsed` weighs `1 − e^(−elapsed/window)` against the past,
/// so what happened a window ago counts `1/e` as much as what happened just now, however often it
/// is observed. Until a whole window has been observed the average is over the time observed
/// (bias-corrected: a constant rate reads exactly from the first observation, instead of rising
/// from zero), so a scheduler that just became leader does not report a spurious zero rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainRate {
    window: f64,
    /// The weighted sum of per-second rates.
    weighted: f64,
    /// The total weight of the time observed (→ 1 after a few windows).
    weight: f64,
    /// Events observed over no elapsed time, carried into the next observation.
    carried: u64,
}

impl DrainRate {
    /// A rate with no observation yet, averaged over `window` (at least a millisecond).
    pub fn new(window: Duration) -> Self {
        DrainRate {
            window: window.as_secs_f64().max(0.001),
            weighted: 0.0,
            weight: 0.0,
            carried: 0,
        }
    }

    /// Adds `events` that happened over the last `elapsed`.
    pub fn observe(&mut self, elapsed: Duration, events: u64) {
        let events = events.saturating_add(std::mem::take(&mut self.carried));
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            self.carried = events;
            return;
        }
        let alpha = 1.0 - (-secs / self.window).exp();
        let rate = events as f64 / secs;
        self.weighted = self.weighted * (1.0 - alpha) + alpha * rate;
        self.weight = self.weight * (1.0 - alpha) + alpha;
    }

    /// The average rate in events per second (0 before any time was observed).
    pub fn per_second(&self) -> f64 {
        if self.weight > 0.0 {
            (self.weighted / self.weight).max(0.0)
        } else {
            0.0
        }
    }
}

impl Default for DrainRate {
    fn default() -> Self {
        DrainRate::new(DEFAULT_RATE_WINDOW)
    }
}

/// Backlog seconds: `due ÷ max(rate, min_rate)`, the time the due jobs would take to start at
/// the recent drain rate, never slower than `min_rate` jobs per second. Zero when nothing is due;
/// always finite and non-negative. A `min_rate` that is not a positive number is taken as
/// [`DEFAULT_MIN_RATE`]; a `rate` that is not a non-negative number as zero.
pub fn backlog_seconds(due: u64, rate: f64, min_rate: f64) -> f64 {
    if due == 0 {
        return 0.0;
    }
    let floor = if min_rate.is_finite() && min_rate > 0.0 {
        min_rate
    } else {
        DEFAULT_MIN_RATE
    };
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        0.0
    };
    (due as f64 / rate.max(floor)).min(f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn backlog_seconds_table() {
        // (due, rate, floor, expected)
        let cases = [
            (0, 0.0, 1.0, 0.0),
            (0, 50.0, 1.0, 0.0),
            (100, 10.0, 1.0, 10.0),
            (100, 0.0, 1.0, 100.0), // nothing drains: the floor
            (100, 0.5, 2.0, 50.0),  // slower than the floor: the floor
            (100, 0.0, 0.0, 100.0), // a floor that is no number: the default
            (100, f64::NAN, 4.0, 25.0),
            (100, f64::INFINITY, 4.0, 25.0),
            (100, -3.0, 4.0, 25.0),
            (100, 3.0, f64::NAN, 100.0 / 3.0),
        ];
        for (due, rate, floor, want) in cases {
            let got = backlog_seconds(due, rate, floor);
            assert!(
                close(got, want),
                "{due} / max({rate}, {floor}) = {got}, not {want}"
            );
        }
        assert!(backlog_seconds(u64::MAX, 0.0, f64::MIN_POSITIVE).is_finite());
    }

    #[test]
    fn a_constant_rate_reads_exactly_from_the_first_observation() {
        let mut r = DrainRate::default();
        assert_eq!(r.per_second(), 0.0);
        r.observe(5 * S, 50);
        assert!(close(r.per_second(), 10.0));
        for _ in 0..100 {
            r.observe(5 * S, 50);
        }
        assert!(close(r.per_second(), 10.0));
    }

    #[test]
    fn the_rate_follows_a_change_within_a_few_windows() {
        let mut r = DrainRate::new(60 * S);
        for _ in 0..60 {
            r.observe(5 * S, 100); // 20/s for five minutes
        }
        for _ in 0..12 {
            r.observe(5 * S, 0); // then nothing for one window
        }
        // What was seen a window ago weighs 1/e (over the weight of the six windows seen).
        let after_one = r.per_second();
        let e = |x: f64| x.exp();
        let want = 20.0 * (1.0 - e(-5.0)) * e(-1.0) / (1.0 - e(-6.0));
        assert!(close(after_one, want), "{after_one} vs {want}");
        for _ in 0..48 {
            r.observe(5 * S, 0);
        }
        assert!(r.per_second() < 20.0 * 0.02, "{}", r.per_second());
    }

    #[test]
    fn events_over_no_time_are_carried_not_lost() {
        let mut r = DrainRate::new(60 * S);
        r.observe(Duration::ZERO, 30);
        assert_eq!(r.per_second(), 0.0);
        r.observe(3 * S, 0);
        assert!(close(r.per_second(), 10.0));
    }

    proptest! {
        #[test]
        fn backlog_seconds_is_finite_bounded_and_monotone(
            due in 0u64..u64::MAX / 2,
            rate in prop_oneof![Just(0.0), 0.0f64..1e9, Just(f64::NAN), Just(f64::INFINITY), -1e9f64..0.0],
            floor in prop_oneof![1e-6f64..1e6, Just(0.0), Just(f64::NAN)],
        ) {
            let s = backlog_seconds(due, rate, floor);
            prop_assert!(s.is_finite() && s >= 0.0);
            prop_assert_eq!(s == 0.0, due == 0);
            let f = if floor.is_finite() && floor > 0.0 { floor } else { DEFAULT_MIN_RATE };
            // Never slower than the floor.
            prop_assert!(s <= due as f64 / f * (1.0 + 1e-12));
            // More waiting, more seconds; a faster drain, fewer.
            prop_assert!(backlog_seconds(due + 1, rate, floor) >= s);
            if rate.is_finite() && rate > 0.0 {
                prop_assert!(backlog_seconds(due, rate * 2.0, floor) <= s);
            }
        }

        #[test]
        fn the_rate_stays_within_the_observed_rates(
            steps in proptest::collection::vec((1u64..120_000, 0u64..100_000), 1..50),
        ) {
            let mut r = DrainRate::default();
            let (mut lo, mut hi) = (f64::MAX, 0.0f64);
            for (ms, events) in steps {
                let rate = events as f64 / (ms as f64 / 1000.0);
                lo = lo.min(rate);
                hi = hi.max(rate);
                r.observe(Duration::from_millis(ms), events);
                let got = r.per_second();
                prop_assert!(got.is_finite());
                prop_assert!(got >= lo * (1.0 - 1e-9) && got <= hi * (1.0 + 1e-9), "{} not in [{}, {}]", got, lo, hi);
            }
        }
    }
}
