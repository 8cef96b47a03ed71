//! Percentiles of one run and medians over repeated runs.

use serde::Serialize;

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Dist {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

impl Dist {
    /// From samples in microseconds.
    pub fn from_micros(mut samples: Vec<u64>) -> Dist {
        if samples.is_empty() {
            return Dist::default();
        }
        samples.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let sum: u128 = samples.iter().map(|&v| u128::from(v)).sum();
        Dist {
            count: samples.len(),
            p50_ms: ms(rank(&samples, 50.0)),
            p90_ms: ms(rank(&samples, 90.0)),
            p99_ms: ms(rank(&samples, 99.0)),
            max_ms: ms(*samples.last().unwrap_or(&0)),
            mean_ms: sum as f64 / samples.len() as f64 / 1000.0,
        }
    }

    /// The same distribution shifted by `-by_ms` (e.g. the stand-in's pacing).
    pub fn minus(self, by_ms: f64) -> Dist {
        Dist {
            count: self.count,
            p50_ms: self.p50_ms - by_ms,
            p90_ms: self.p90_ms - by_ms,
            p99_ms: self.p99_ms - by_ms,
            max_ms: self.max_ms - by_ms,
            mean_ms: self.mean_ms - by_ms,
        }
    }

    /// Percentile by percentile difference `self - base` (an estimate of what `self` adds).
    pub fn diff(self, base: Dist) -> Dist {
        Dist {
            count: self.count,
            p50_ms: self.p50_ms - base.p50_ms,
            p90_ms: self.p90_ms - base.p90_ms,
            p99_ms: self.p99_ms - base.p99_ms,
            max_ms: self.max_ms - base.max_ms,
            mean_ms: self.mean_ms - base.mean_ms,
        }
    }

    /// The field-wise median of several runs' distributions.
    pub fn median_of(runs: &[Dist]) -> Dist {
        let pick = |f: fn(&Dist) -> f64| median(runs.iter().map(f).collect());
        Dist {
            count: runs.iter().map(|d| d.count).max().unwrap_or(0),
            p50_ms: pick(|d| d.p50_ms),
            p90_ms: pick(|d| d.p90_ms),
            p99_ms: pick(|d| d.p99_ms),
            max_ms: pick(|d| d.max_ms),
            mean_ms: pick(|d| d.mean_ms),
        }
    }
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Least-squares slope of `y` over `x` (units of y per unit of x); 0 with fewer than 2 points.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let d = Dist::from_micros((1..=100).map(|v| v * 1000).collect());
        assert_eq!(d.count, 100);
        assert_eq!(d.p50_ms, 50.0);
        assert_eq!(d.p99_ms, 99.0);
        assert_eq!(d.max_ms, 100.0);
        assert!((d.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Dist::from_micros(vec![7000]).p99_ms, 7.0);
        assert_eq!(Dist::from_micros(Vec::new()), Dist::default());
    }

    #[test]
    fn medians_and_slopes() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 2.0 * x as f64 + 1.0)).collect();
        assert!((slope(&line) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), 0.0);
    }
}
