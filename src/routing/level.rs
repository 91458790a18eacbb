//! A provisioned deployment's utilization modelled as Azure computes it: a leaky bucket of
//! the tokens admitted (prompt plus output limit, corrected by real usage) draining one
//! minute of capacity per minute, set to each reading the deployment reports.
//!
//! The bucket is kept as the instant it would be empty (the virtual scheduling form of a
//! leaky bucket, as in GCRA): one atomic, no background task, and a percentage that needs
//! no capacity, because a full bucket drains in exactly a minute (1% is 0.6 s). Tokens need
//! the capacity to become time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Microseconds one percent of utilization takes to drain.
const US_PER_PERCENT: u64 = 600_000;

#[derive(Debug, Default)]
pub struct Level {
    /// When the bucket is empty, in microseconds of the owner's clock (0: empty).
    empty_at_us: AtomicU64,
}

impl Level {
    /// Adds `tokens` (negative: takes them back) admitted at `now_us` to a deployment of
    /// `capacity_tpm` tokens per minute. The bucket never goes below empty.
    pub fn add(&self, now_us: u64, tokens: i64, capacity_tpm: u64) {
        if capacity_tpm == 0 || tokens == 0 {
            return;
        }
        // tokens × (60 s / capacity), in µs; i128 because a wild count times 6e7 overflows.
        let span = (i128::from(tokens) * 60_000_000 / i128::from(capacity_tpm))
            .clamp(i128::from(-i64::MAX), i128::from(i64::MAX)) as i64;
        let _ = self.empty_at_us.fetch_update(Relaxed, Relaxed, |until| {
            let base = until.max(now_us);
            Some(if span >= 0 {
                base.saturating_add(span as u64)
            } else {
                base.saturating_sub(span.unsigned_abs()).max(now_us)
            })
        });
    }

    /// The deployment reported `percent`: the model takes the truth.
    pub fn set(&self, now_us: u64, percent: f64) {
        let span = (percent.clamp(0.0, 1000.0) * US_PER_PERCENT as f64) as u64;
        self.empty_at_us.store(now_us + span, Relaxed);
    }

    /// Utilization now, in percent.
    pub fn percent(&self, now_us: u64) -> f64 {
        self.empty_at_us.load(Relaxed).saturating_sub(now_us) as f64 / US_PER_PERCENT as f64
    }

    /// How long until utilization falls below `percent`, after `ahead` more tokens go in
    /// first (requests queued before this one) on a deployment of `capacity_tpm`.
    pub fn time_to(
        &self,
        now_us: u64,
        percent: f64,
        ahead: u64,
        capacity_tpm: Option<u64>,
    ) -> Duration {
        let extra = match capacity_tpm {
            Some(cap) if cap > 0 => {
                u64::try_from(u128::from(ahead) * 60_000_000 / u128::from(cap)).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        let below = (percent.max(0.0) * US_PER_PERCENT as f64) as u64;
        let until = self
            .empty_at_us
            .load(Relaxed)
            .max(now_us)
            .saturating_add(extra);
        Duration::from_micros(until.saturating_sub(now_us).saturating_sub(below))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn tokens_fill_and_time_drains() {
        let l = Level::default();
        // 60,000 TPM: 1,000 tokens a second drain; 6,000 tokens are 10%.
        l.add(0, 6_000, 60_000);
        assert!((l.percent(0) - 10.0).abs() < 1e-9);
        assert!((l.percent(3 * S) - 5.0).abs() < 1e-9);
        assert_eq!(l.percent(7 * S), 0.0);
        // Empty buckets start from now, not from the past.
        l.add(10 * S, 600, 60_000);
        assert!((l.percent(10 * S) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn corrections_never_go_below_empty() {
        let l = Level::default();
        l.add(0, 6_000, 60_000);
        l.add(0, -10_000, 60_000);
        assert_eq!(l.percent(0), 0.0);
        l.add(0, i64::MAX, 1);
        assert!(l.percent(0) > 1e6, "saturates, no wrap");
    }

    #[test]
    fn a_reading_replaces_the_model_and_drains_like_azure() {
        let l = Level::default();
        l.add(0, 60_000, 60_000);
        l.set(S, 95.0);
        assert!((l.percent(S) - 95.0).abs() < 1e-9);
        // 95% to 90% is 5 points: 3 s.
        assert_eq!(l.time_to(S, 90.0, 0, None), Duration::from_secs(3));
        // Two requests of 1,000 tokens queued ahead add 2 s at 1,000 tokens/s.
        assert_eq!(
            l.time_to(S, 90.0, 2_000, Some(60_000)),
            Duration::from_secs(5)
        );
        assert_eq!(l.time_to(S, 99.0, 0, None), Duration::ZERO);
    }
}
