//! Time between tokens, summarised in bounded memory: an exact mean over every gap, and a
//! 95th percentile over a fixed-size uniform sample of the gaps.
//!
//! A long completion has thousands of gaps and a gateway holds thousands of streams, so the
//! gaps are not all kept. The first `RESERVOIR` gaps are kept exactly (a typical answer fits,
//! and its p95 is then exact); after that, reservoir sampling (Vitter's algorithm R) keeps a
//! uniform sample of them all. The sampler's seed is fixed so a replayed stream gives the
//! same summary.

use std::time::Duration;

/// Gaps kept for the percentile: 2048 × 4 bytes = 8 KiB per stream at most.
pub const RESERVOIR: usize = 2048;

/// Any fixed value works; fixing it makes results reproducible.
const SEED: u64 = 0x5350_494c_4c57_4159;

/// The running summary of the gaps of one stream.
#[derive(Debug, Clone)]
pub struct Gaps {
    count: u64,
    total: Duration,
    /// Gaps in microseconds: finer than any network timing, and half the size of nanos.
    sample: Vec<u32>,
    rng: fastrand::Rng,
}

impl Default for Gaps {
    fn default() -> Self {
        Self {
            count: 0,
            total: Duration::ZERO,
            sample: Vec::new(),
            rng: fastrand::Rng::with_seed(SEED),
        }
    }
}

impl Gaps {
    /// Records one gap.
    pub fn record(&mut self, gap: Duration) {
        self.total = self.total.saturating_add(gap);
        let micros = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
        if self.sample.len() < RESERVOIR {
            self.sample.push(micros);
        } else {
            // Algorithm R: the (count+1)-th gap replaces a random slot with probability
            // RESERVOIR / (count+1), which keeps the sample uniform over all gaps.
            let slot = self.rng.u64(0..=self.count);
            if let Some(kept) = usize::try_from(slot)
                .ok()
                .and_then(|s| self.sample.get_mut(s))
            {
                *kept = micros;
            }
        }
        self.count += 1;
    }

    /// Gaps recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact mean of every gap recorded.
    pub fn mean(&self) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let nanos = self.total.as_nanos() / u128::from(self.count);
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// The 95th percentile (nearest rank: the smallest gap with at least 95% of the gaps at
    /// or below it), exact up to `RESERVOIR` gaps, estimated from the sample beyond.
    pub fn p95(&self) -> Option<Duration> {
        if self.sample.is_empty() {
            return None;
        }
        let mut sorted = self.sample.clone();
        // ceil(0.95 n) as a 1-based rank, in integers to avoid float rounding at the edges.
        let rank = (sorted.len() * 95).div_ceil(100).max(1);
        let (_, nth, _) = sorted.select_nth_unstable(rank - 1);
        Some(Duration::from_micros(u64::from(*nth)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn empty_has_no_summary() {
        let g = Gaps::default();
        assert_eq!(g.mean(), None);
        assert_eq!(g.p95(), None);
    }

    #[test]
    fn exact_mean_and_nearest_rank_p95() {
        let mut g = Gaps::default();
        for n in 1..=100 {
            g.record(ms(n));
        }
        assert_eq!(g.mean(), Some(Duration::from_micros(50_500)));
        assert_eq!(g.p95(), Some(ms(95)));

        let mut one = Gaps::default();
        one.record(ms(7));
        assert_eq!(one.p95(), Some(ms(7)));
        assert_eq!(one.mean(), Some(ms(7)));
    }

    #[test]
    fn memory_stays_bounded_and_the_estimate_stays_close() {
        let mut g = Gaps::default();
        // 100_000 gaps, uniform over 1..=1000 ms: true p95 is 950 ms.
        for i in 0..100_000u64 {
            g.record(ms(1 + (i * 7919) % 1000));
        }
        assert_eq!(g.count(), 100_000);
        assert_eq!(g.sample.len(), RESERVOIR);
        let p95 = g.p95().map(|d| d.as_millis()).unwrap_or(0);
        assert!((920..=980).contains(&p95), "p95 estimate {p95} ms");
        assert_eq!(g.mean().map(|d| d.as_micros()), Some(500_500));
    }
}
