//! Tenant token and request budgets: token buckets refilled continuously, charged with an
//! estimate at admission and corrected with the real usage when the response ends.
//!
//! The store sits behind `BudgetStore` so that a fleet-wide store can replace the local one.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A tenant's limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetLimits {
    pub tokens_per_minute: Option<u64>,
    pub requests_per_minute: Option<u64>,
}

/// What is left after an admission, for the `x-ratelimit-remaining-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remaining {
    pub tokens: Option<u64>,
    pub requests: Option<u64>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverBudget {
    /// Wait this long and the same request fits.
    RetryAfter {
        wait: Duration,
        remaining: Remaining,
        what: &'static str,
    },
    /// The request alone is larger than the whole per-minute budget: waiting cannot help.
    TooLarge {
        estimate: u64,
        tokens_per_minute: u64,
    },
}

/// Where budgets live.
pub trait BudgetStore: Send + Sync {
    /// Charges `tokens` and one request, or says when that would fit.
    fn admit(
        &self,
        limits: BudgetLimits,
        tokens: u64,
        now: Instant,
    ) -> Result<Remaining, OverBudget>;
    /// Replaces a charged estimate by the real usage.
    fn settle(&self, limits: BudgetLimits, charged: u64, actual: u64, now: Instant);
}

/// The longest a tenant is ever told to wait: a minute of debt (see `settle`) plus a minute
/// to refill a request as large as the whole budget.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// A continuously refilled bucket; `level` may go below zero after a correction.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A bucket never used starts full.
    const FULL: Bucket = Bucket {
        level: 0.0,
        last: None,
    };

    fn refill(&mut self, per_minute: u64, now: Instant) {
        let cap = per_minute as f64;
        let level = match self.last {
            None => cap,
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                (self.level + dt * cap / 60.0).min(cap)
            }
        };
        self.level = level;
        self.last = Some(now);
    }

    /// Time until `amount` is available. With the debt bounded (see `settle`) and `amount` at
    /// most a minute's budget, that is at most [`MAX_WAIT`]; the fallback only keeps an
    /// impossible value from panicking in `Duration`.
    fn wait_for(&self, amount: f64, per_minute: u64) -> Duration {
        let missing = (amount - self.level).max(0.0);
        Duration::try_from_secs_f64(missing * 60.0 / per_minute.max(1) as f64)
            .map_or(MAX_WAIT, |w| w.min(MAX_WAIT))
    }
}

/// One process's budgets for one tenant.
#[derive(Debug)]
pub struct LocalBudget {
    inner: Mutex<(Bucket, Bucket)>,
}

impl Default for LocalBudget {
    fn default() -> Self {
        LocalBudget {
            inner: Mutex::new((Bucket::FULL, Bucket::FULL)),
        }
    }
}

impl BudgetStore for LocalBudget {
    fn admit(
        &self,
        limits: BudgetLimits,
        tokens: u64,
        now: Instant,
    ) -> Result<Remaining, OverBudget> {
        if let Some(tpm) = limits.tokens_per_minute {
            if tokens > tpm {
                return Err(OverBudget::TooLarge {
                    estimate: tokens,
                    tokens_per_minute: tpm,
                });
            }
        }
        let mut guard = self.inner.lock();
        let (tok, req) = &mut *guard;
        let mut wait = Duration::ZERO;
        let mut what = "";
        if let Some(tpm) = limits.tokens_per_minute {
            tok.refill(tpm, now);
            let w = tok.wait_for(tokens as f64, tpm);
            if w > wait {
                (wait, what) = (w, "tokens");
            }
        }
        if let Some(rpm) = limits.requests_per_minute {
            req.refill(rpm, now);
            let w = req.wait_for(1.0, rpm);
            if w > wait {
                (wait, what) = (w, "requests");
            }
        }
        let remaining = |tok: &Bucket, req: &Bucket| Remaining {
            tokens: limits.tokens_per_minute.map(|_| tok.level.max(0.0) as u64),
            requests: limits
                .requests_per_minute
                .map(|_| req.level.max(0.0) as u64),
        };
        if !wait.is_zero() {
            return Err(OverBudget::RetryAfter {
                wait,
                remaining: remaining(tok, req),
                what,
            });
        }
        if limits.tokens_per_minute.is_some() {
            tok.level -= tokens as f64;
        }
        if limits.requests_per_minute.is_some() {
            req.level -= 1.0;
        }
        Ok(remaining(tok, req))
    }

    fn settle(&self, limits: BudgetLimits, charged: u64, actual: u64, now: Instant) {
        let Some(tpm) = limits.tokens_per_minute else {
            return;
        };
        let mut guard = self.inner.lock();
        let tok = &mut guard.0;
        tok.refill(tpm, now);
        // A debt beyond one minute's budget cannot come from work the gateway admitted (a
        // request larger than the budget is refused up front): it is an upstream's count
        // gone wrong, which must not lock the tenant out for hours.
        let cap = tpm as f64;
        tok.level = (tok.level + charged as f64 - actual as f64).clamp(-cap, cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BudgetLimits = BudgetLimits {
        tokens_per_minute: Some(6000),
        requests_per_minute: Some(600),
    };

    #[tokio::test(start_paused = true)]
    async fn charges_refuses_with_a_truthful_wait_and_recovers() {
        let b = LocalBudget::default();
        let r = b.admit(LIMITS, 5000, Instant::now()).unwrap();
        assert_eq!(r.tokens, Some(1000));
        assert_eq!(r.requests, Some(599));
        let Err(OverBudget::RetryAfter { wait, what, .. }) = b.admit(LIMITS, 3000, Instant::now())
        else {
            panic!("should be over budget");
        };
        // 2000 missing at 100 tokens/s.
        assert_eq!(what, "tokens");
        assert_eq!(wait, Duration::from_secs(20));
        tokio::time::advance(wait - Duration::from_millis(500)).await;
        assert!(
            b.admit(LIMITS, 3000, Instant::now()).is_err(),
            "less than the wait is not enough"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.admit(LIMITS, 3000, Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn settling_refunds_an_overestimate_and_charges_an_underestimate() {
        let b = LocalBudget::default();
        b.admit(LIMITS, 6000, Instant::now()).unwrap();
        assert!(b.admit(LIMITS, 1000, Instant::now()).is_err());
        b.settle(LIMITS, 6000, 2500, Instant::now());
        assert_eq!(
            b.admit(LIMITS, 1000, Instant::now()).unwrap().tokens,
            Some(2500)
        );
        b.settle(LIMITS, 1000, 4000, Instant::now());
        let Err(OverBudget::RetryAfter { wait, .. }) = b.admit(LIMITS, 1, Instant::now()) else {
            panic!("debt must be paid first");
        };
        assert_eq!(wait, Duration::from_millis(5010));
    }

    /// An upstream reported u64::MAX tokens: the tenant owes a minute of budget, not ages.
    #[tokio::test(start_paused = true)]
    async fn a_wild_usage_leaves_at_most_a_minute_of_debt() {
        let b = LocalBudget::default();
        b.admit(LIMITS, 100, Instant::now()).unwrap();
        b.settle(LIMITS, 100, u64::MAX, Instant::now());
        let Err(OverBudget::RetryAfter { wait, .. }) = b.admit(LIMITS, 6000, Instant::now()) else {
            panic!("in debt");
        };
        assert_eq!(wait, MAX_WAIT);
        tokio::time::advance(MAX_WAIT).await;
        assert!(b.admit(LIMITS, 6000, Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_and_oversized_requests() {
        let b = LocalBudget::default();
        let limits = BudgetLimits {
            tokens_per_minute: None,
            requests_per_minute: Some(2),
        };
        b.admit(limits, 10, Instant::now()).unwrap();
        b.admit(limits, 10, Instant::now()).unwrap();
        let Err(OverBudget::RetryAfter { wait, what, .. }) = b.admit(limits, 10, Instant::now())
        else {
            panic!("third request in the minute");
        };
        assert_eq!((wait, what), (Duration::from_secs(30), "requests"));
        assert_eq!(
            LocalBudget::default().admit(LIMITS, 7000, Instant::now()),
            Err(OverBudget::TooLarge {
                estimate: 7000,
                tokens_per_minute: 6000
            })
        );
        assert!(LocalBudget::default()
            .admit(BudgetLimits::default(), 1 << 40, Instant::now())
            .is_ok());
    }
}
