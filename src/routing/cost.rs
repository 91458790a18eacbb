//! What a deployment's served requests cost over the last minute, and how much of it was
//! spillover: the spend rates /status shows. Totals since start are Prometheus counters
//! (`telemetry::cost`); this is only the recent window, kept with the deployment's live state
//! so that a reload keeps it and the request path reaches it without a lookup.

use super::window::TokenWindow;
use std::time::Duration;
use tokio::time::Instant;

/// The window the rates are measured over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Dollars are kept as integer pico-dollars so the lock-free per-second window can hold
/// them: a cached input token at $0.03 per million is 30,000 pico-dollars, so rounding
/// loses nothing that matters, and a slot overflows only past $9 million in one second.
const PICO: f64 = 1e12;

#[derive(Debug)]
pub struct CostMeter {
    epoch: Instant,
    spent: TokenWindow,
    spilled: TokenWindow,
}

impl Default for CostMeter {
    fn default() -> Self {
        CostMeter {
            epoch: Instant::now(),
            spent: TokenWindow::default(),
            spilled: TokenWindow::default(),
        }
    }
}

/// What a deployment served over the recent window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recent {
    /// Cost of the requests served (a provisioned deployment's at its amortised price).
    pub spent_usd: f64,
    /// The part of it served as a spillover from another pool.
    pub spilled_usd: f64,
    /// The time those sums cover: the window, or less in a meter younger than it.
    pub span: Duration,
}

impl Recent {
    /// `usd` spent over `span`, as a rate per hour.
    pub fn per_hour(&self, usd: f64) -> f64 {
        usd * 3600.0 / self.span.as_secs_f64()
    }
}

impl CostMeter {
    /// Adds one served request's cost (dollars, finite and not negative).
    pub fn add(&self, usd: f64, spillover: bool, now: Instant) {
        let sec = now.saturating_duration_since(self.epoch).as_secs();
        // `as` saturates: a broken figure can only fill a slot, never wrap it.
        let pico = (usd * PICO).round() as i64;
        self.spent.add(sec, pico);
        if spillover {
            self.spilled.add(sec, pico);
        }
    }

    /// The last minute's sums.
    pub fn recent(&self, now: Instant) -> Recent {
        let age = now.saturating_duration_since(self.epoch);
        let sec = age.as_secs();
        Recent {
            spent_usd: self.spent.sum(sec) as f64 / PICO,
            spilled_usd: self.spilled.sum(sec) as f64 / PICO,
            // At least a second, so a rate is never a division by zero.
            span: age.clamp(Duration::from_secs(1), WINDOW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sums_the_last_minute_and_its_span() {
        let m = CostMeter::default();
        let t0 = Instant::now();
        m.add(0.002, false, t0);
        m.add(0.001, true, t0 + Duration::from_secs(10));
        let r = m.recent(t0 + Duration::from_secs(30));
        assert!((r.spent_usd - 0.003).abs() < 1e-15, "{r:?}");
        assert!((r.spilled_usd - 0.001).abs() < 1e-15, "{r:?}");
        // Thirty seconds old: $0.003 in 30 s is $0.36 an hour.
        assert_eq!(r.span, Duration::from_secs(30));
        assert!((r.per_hour(r.spent_usd) - 0.36).abs() < 1e-12);
        let later = m.recent(t0 + Duration::from_secs(65));
        assert_eq!(later.span, WINDOW);
        assert!((later.spent_usd - 0.001).abs() < 1e-15, "the first left");
        assert_eq!(m.recent(t0).span, Duration::from_secs(1));
    }
}
