//! Small statistics helpers: percentiles and rates.

use serde::Serialize;

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// The `q` quantile (0–1) of sorted `v` by nearest rank; 0 for an empty sample.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of `samples_ms` (any order).
pub fn percentiles(mut samples_ms: Vec<f64>) -> Percentiles {
    samples_ms.sort_by(f64::total_cmp);
    Percentiles {
        n: samples_ms.len(),
        p50_ms: round3(quantile(&samples_ms, 0.50)),
        p95_ms: round3(quantile(&samples_ms, 0.95)),
        p99_ms: round3(quantile(&samples_ms, 0.99)),
        max_ms: round3(samples_ms.last().copied().unwrap_or(0.0)),
    }
}

/// `n / seconds`, rounded to one decimal.
pub fn rate(n: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    (n as f64 / seconds * 10.0).round() / 10.0
}

/// Rounds to three decimals (for JSON output).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(v);
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(percentiles(Vec::new()).p99_ms, 0.0);
        assert_eq!(rate(10, 2.0), 5.0);
    }
}
