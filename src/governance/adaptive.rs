//! The adaptive synchronous cap: from each deployment's measured output rate (tokens per
//! second, an EWMA over real responses) and the synchronous window, the largest output that
//! still finishes in time. When a deployment slows down, its cap drops before timeouts do.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// Responses shorter than this say more about time-to-first-token than about the rate.
pub const MIN_SAMPLE_TOKENS: u64 = 32;
/// Weight of a new sample in the average when it is slower than the average: a slowdown
/// must lower the cap within a few responses, before requests start to time out.
const ALPHA_DOWN: f64 = 0.5;
/// Weight of a faster sample: the cap rises back cautiously.
const ALPHA_UP: f64 = 0.1;
/// A measurement older than this no longer describes the deployment: fall back to the
/// static cap until fresh samples arrive.
pub const STALE_AFTER: Duration = Duration::from_secs(300);

/// Output rate of one deployment, updated lock-free by every finished response.
#[derive(Debug)]
pub struct RateMeter {
    epoch: Instant,
    /// EWMA of tokens/s as `f64` bits; 0 until the first sample.
    tps_bits: AtomicU64,
    /// Milliseconds after `epoch` of the last sample.
    last_ms: AtomicU64,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            epoch: Instant::now(),
            tps_bits: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl RateMeter {
    /// Records a response that produced `tokens` in `elapsed` (for a synchronous response,
    /// its whole duration, so the rate already includes prompt processing: conservative).
    pub fn record(&self, tokens: u64, elapsed: Duration, now: Instant) {
        if tokens < MIN_SAMPLE_TOKENS || elapsed.is_zero() {
            return;
        }
        let sample = tokens as f64 / elapsed.as_secs_f64();
        let stale = self.rate(now).is_none();
        let _ = self.tps_bits.fetch_update(Relaxed, Relaxed, |bits| {
            let old = f64::from_bits(bits);
            let alpha = if sample < old { ALPHA_DOWN } else { ALPHA_UP };
            let new = if bits == 0 || stale {
                sample
            } else {
                old + alpha * (sample - old)
            };
            Some(new.to_bits())
        });
        self.last_ms.store(
            now.saturating_duration_since(self.epoch).as_millis() as u64,
            Relaxed,
        );
    }

    /// The measured rate, or `None` without a recent sample.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let bits = self.tps_bits.load(Relaxed);
        if bits == 0 {
            return None;
        }
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Relaxed));
        (now.saturating_duration_since(last) <= STALE_AFTER).then(|| f64::from_bits(bits))
    }
}

/// How the rate becomes a cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptivePolicy {
    /// The synchronous window (`timeouts.sync_total_ms`).
    pub window: Duration,
    /// Fraction of the window the output may use (the rest absorbs queueing and jitter).
    pub safety: f64,
    /// Never cap below this, however slow the measurement.
    pub floor: u32,
}

impl AdaptivePolicy {
    /// The largest output that finishes within the window at `rate` tokens/s.
    pub fn cap(&self, rate: f64) -> u32 {
        let tokens = rate * self.window.as_secs_f64() * self.safety;
        (tokens.min(u32::MAX as f64) as u32).max(self.floor)
    }

    /// The adaptive cap for a deployment, when it has a fresh measurement.
    pub fn cap_for(&self, meter: &RateMeter, now: Instant) -> Option<u32> {
        meter.rate(now).map(|r| self.cap(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AdaptivePolicy = AdaptivePolicy {
        window: Duration::from_secs(60),
        safety: 0.8,
        floor: 100,
    };

    #[tokio::test(start_paused = true)]
    async fn cap_follows_the_measured_rate_down_and_back() {
        let meter = RateMeter::default();
        assert_eq!(POLICY.cap_for(&meter, Instant::now()), None);
        // 33 tokens/s, as measured on GPT-4o-mini: 33 × 60 × 0.8 = 1584.
        meter.record(330, Duration::from_secs(10), Instant::now());
        assert_eq!(POLICY.cap_for(&meter, Instant::now()), Some(1584));
        // The deployment slows to 10 tokens/s: the cap falls with every sample.
        let mut last = 1584;
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(5)).await;
            meter.record(100, Duration::from_secs(10), Instant::now());
            let cap = POLICY.cap_for(&meter, Instant::now()).unwrap();
            assert!(cap <= last);
            last = cap;
        }
        assert!((480..=500).contains(&last), "{last}");
        // Recovery is slower than the fall: one fast sample lifts the cap only a little.
        meter.record(330, Duration::from_secs(10), Instant::now());
        let up = POLICY.cap_for(&meter, Instant::now()).unwrap();
        assert!(up > last && up < 700, "{up}");
        // No traffic for longer than STALE_AFTER: the measurement is dropped.
        tokio::time::advance(STALE_AFTER + Duration::from_secs(1)).await;
        assert_eq!(POLICY.cap_for(&meter, Instant::now()), None);
        // A fresh sample replaces the stale average instead of blending with it.
        meter.record(660, Duration::from_secs(10), Instant::now());
        assert_eq!(POLICY.cap_for(&meter, Instant::now()), Some(3168));
    }

    #[tokio::test(start_paused = true)]
    async fn tiny_samples_are_ignored_and_the_floor_holds() {
        let meter = RateMeter::default();
        meter.record(5, Duration::from_secs(10), Instant::now());
        assert_eq!(meter.rate(Instant::now()), None);
        meter.record(40, Duration::from_secs(40), Instant::now());
        assert_eq!(POLICY.cap_for(&meter, Instant::now()), Some(100));
    }
}
