//! Throttling as Azure does it: the PTU leaky bucket and the Standard TPM/RPM windows.
//!
//! The bucket and the windows are pure structs that take the current `Instant` as an argument,
//! so their arithmetic is unit-tested with explicit instants and no waiting.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::config::SimMode;

/// Azure enforces Standard quotas over short windows; 10 s is the coarser of the two it uses.
const WINDOW: Duration = Duration::from_secs(10);
const WINDOWS_PER_MINUTE: u64 = 6;

/// A refused admission: how long the client should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Throttled {
    pub retry_after: Duration,
    /// PTU always sends `retry-after-ms`; Standard only `retry-after`.
    pub with_ms: bool,
    /// Which quota ran out, for the error message.
    pub kind: QuotaKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaKind {
    Tokens,
    Requests,
    Provisioned,
}

/// PTU utilization: a leaky bucket of capacity `tokens_per_minute`, draining at capacity/60 per second.
#[derive(Debug, Clone)]
pub(crate) struct LeakyBucket {
    capacity: f64,
    level: f64,
    last: Instant,
}

impl LeakyBucket {
    pub fn new(tokens_per_minute: u64, now: Instant) -> Self {
        Self {
            capacity: tokens_per_minute as f64,
            level: 0.0,
            last: now,
        }
    }

    fn drain_per_sec(&self) -> f64 {
        self.capacity / 60.0
    }

    /// Drains lazily: the level only needs to be right when someone looks at it.
    fn drain(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level - elapsed * self.drain_per_sec()).max(0.0);
        if now > self.last {
            self.last = now;
        }
    }

    pub fn utilization(&mut self, now: Instant) -> f64 {
        self.drain(now);
        self.level / self.capacity * 100.0
    }

    /// Over 100% the request is refused outright; otherwise its estimate goes into the bucket,
    /// which may then overflow past 100% (one large request can do that, as on Azure).
    pub fn admit(&mut self, estimate: u64, now: Instant) -> Result<(), Throttled> {
        self.drain(now);
        if self.level > self.capacity {
            let secs = (self.level - self.capacity) / self.drain_per_sec();
            let ms = ((secs * 1000.0).ceil() as u64).max(1);
            return Err(Throttled {
                retry_after: Duration::from_millis(ms),
                with_ms: true,
                kind: QuotaKind::Provisioned,
            });
        }
        self.level += estimate as f64;
        Ok(())
    }

    /// Replaces the admission estimate by what the request really cost.
    pub fn correct(&mut self, estimate: u64, actual: u64, now: Instant) {
        self.drain(now);
        self.level = (self.level + actual as f64 - estimate as f64).max(0.0);
    }
}

/// Standard quotas: tokens and requests per fixed 10-second window.
#[derive(Debug, Clone)]
pub(crate) struct RateWindows {
    tokens_limit: u64,
    requests_limit: u64,
    origin: Instant,
    index: u64,
    tokens: u64,
    requests: u64,
}

/// Proof of admission in a given window, so a correction never leaks into a later window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowTicket {
    index: u64,
    charged: u64,
}

impl RateWindows {
    pub fn new(tokens_per_minute: u64, now: Instant) -> Self {
        // RPM = 6 per 1000 TPM, and each quota is split evenly over the windows of a minute.
        let rpm = tokens_per_minute * 6 / 1000;
        Self {
            tokens_limit: (tokens_per_minute / WINDOWS_PER_MINUTE).max(1),
            requests_limit: (rpm / WINDOWS_PER_MINUTE).max(1),
            origin: now,
            index: 0,
            tokens: 0,
            requests: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let index = (elapsed / WINDOW.as_nanos()) as u64;
        if index > self.index {
            self.index = index;
            self.tokens = 0;
            self.requests = 0;
        }
    }

    fn reset_in(&self, now: Instant) -> Duration {
        let window_nanos = WINDOW.as_nanos() as u64;
        let end = self.origin + Duration::from_nanos((self.index + 1) * window_nanos);
        end.saturating_duration_since(now)
    }

    /// Charges the estimate before anything runs; a large `max_tokens` alone can thus be refused.
    pub fn admit(&mut self, estimate: u64, now: Instant) -> Result<WindowTicket, Throttled> {
        self.roll(now);
        let kind = if self.requests >= self.requests_limit {
            Some(QuotaKind::Requests)
        } else if self.tokens + estimate > self.tokens_limit {
            Some(QuotaKind::Tokens)
        } else {
            None
        };
        if let Some(kind) = kind {
            let secs = self.reset_in(now).as_secs_f64().ceil().max(1.0);
            return Err(Throttled {
                retry_after: Duration::from_secs(secs as u64),
                with_ms: false,
                kind,
            });
        }
        self.requests += 1;
        self.tokens += estimate;
        Ok(WindowTicket {
            index: self.index,
            charged: estimate,
        })
    }

    /// Replaces the estimate by the real usage, if the window it was charged to is still current.
    pub fn correct(&mut self, ticket: WindowTicket, actual: u64, now: Instant) {
        self.roll(now);
        if ticket.index == self.index {
            self.tokens = (self.tokens + actual).saturating_sub(ticket.charged);
        }
    }

    /// `(requests, tokens)` still available in the current window.
    pub fn remaining(&mut self, now: Instant) -> (u64, u64) {
        self.roll(now);
        (
            self.requests_limit.saturating_sub(self.requests),
            self.tokens_limit.saturating_sub(self.tokens),
        )
    }
}

/// What admission charged, handed back at the end to correct it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ticket {
    Free,
    Provisioned { estimate: u64 },
    Standard(WindowTicket),
}

/// The throttling of one simulated deployment, shared by all its connections.
#[derive(Debug)]
pub(crate) enum Limiter {
    Unlimited,
    Provisioned(Mutex<LeakyBucket>),
    Standard(Mutex<RateWindows>),
}

/// The state is plain numbers that are valid after any partial update, so a panic elsewhere
/// while holding the lock must not take the simulator down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Limiter {
    pub fn new(mode: SimMode, now: Instant) -> Self {
        match mode {
            SimMode::Unlimited => Limiter::Unlimited,
            SimMode::Provisioned { tokens_per_minute } => {
                Limiter::Provisioned(Mutex::new(LeakyBucket::new(tokens_per_minute, now)))
            }
            SimMode::Standard { tokens_per_minute } => {
                Limiter::Standard(Mutex::new(RateWindows::new(tokens_per_minute, now)))
            }
        }
    }

    pub fn admit(&self, estimate: u64, now: Instant) -> Result<Ticket, Throttled> {
        match self {
            Limiter::Unlimited => Ok(Ticket::Free),
            Limiter::Provisioned(b) => lock(b)
                .admit(estimate, now)
                .map(|()| Ticket::Provisioned { estimate }),
            Limiter::Standard(w) => lock(w).admit(estimate, now).map(Ticket::Standard),
        }
    }

    pub fn settle(&self, ticket: Ticket, actual: u64, now: Instant) {
        match (self, ticket) {
            (Limiter::Provisioned(b), Ticket::Provisioned { estimate }) => {
                lock(b).correct(estimate, actual, now)
            }
            (Limiter::Standard(w), Ticket::Standard(t)) => lock(w).correct(t, actual, now),
            _ => {}
        }
    }

    pub fn utilization(&self, now: Instant) -> f64 {
        match self {
            Limiter::Provisioned(b) => lock(b).utilization(now),
            _ => 0.0,
        }
    }

    /// The throttling headers Azure puts on every answer of this kind of deployment.
    pub fn headers(&self, now: Instant) -> Vec<(&'static str, String)> {
        match self {
            Limiter::Unlimited => Vec::new(),
            Limiter::Provisioned(b) => vec![(
                "azure-openai-deployment-utilization",
                format!("{:.1}%", lock(b).utilization(now)),
            )],
            Limiter::Standard(w) => {
                let (requests, tokens) = lock(w).remaining(now);
                vec![
                    ("x-ratelimit-remaining-requests", requests.to_string()),
                    ("x-ratelimit-remaining-tokens", tokens.to_string()),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_throttles_only_once_over_capacity() {
        let t0 = Instant::now();
        // 600 TPM: capacity 600 tokens, draining 10 tokens per second.
        let mut b = LeakyBucket::new(600, t0);
        assert_eq!(b.admit(600, t0), Ok(()));
        assert_eq!(b.utilization(t0), 100.0);
        // Exactly 100% is not "over": the next request still gets in and overflows the bucket.
        assert_eq!(b.admit(50, t0), Ok(()));
        let err = b.admit(1, t0).unwrap_err();
        // 50 tokens over capacity at 10 tokens/s: 5 s.
        assert_eq!(err.retry_after, ms(5000));
        assert!(err.with_ms);
        assert_eq!(err.kind, QuotaKind::Provisioned);
        // A refused request adds nothing.
        assert!((b.utilization(t0) - 650.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn bucket_retry_after_is_rounded_up_and_at_least_one_ms() {
        let t0 = Instant::now();
        let mut b = LeakyBucket::new(600, t0);
        b.admit(600, t0).unwrap();
        b.admit(1, t0).unwrap();
        // 1 token over at 10 tokens/s is 100 ms; 99.95 ms later 0.0005 tokens remain over: 1 ms (rounded up).
        let later = t0 + Duration::from_micros(99_950);
        assert_eq!(b.admit(1, later).unwrap_err().retry_after, ms(1));
        let mut b = LeakyBucket::new(600, t0);
        b.admit(600, t0).unwrap();
        b.admit(1, t0).unwrap();
        assert_eq!(b.admit(1, t0 + ms(33)).unwrap_err().retry_after, ms(67));
    }

    #[test]
    fn bucket_recovers_after_draining() {
        let t0 = Instant::now();
        let mut b = LeakyBucket::new(600, t0);
        b.admit(600, t0).unwrap();
        b.admit(50, t0).unwrap();
        let wait = b.admit(1, t0).unwrap_err().retry_after;
        // One millisecond early it is still over; on time it admits again.
        assert!(b.admit(1, t0 + wait - ms(1)).is_err());
        assert_eq!(b.admit(1, t0 + wait), Ok(()));
        // Draining never goes below empty.
        assert_eq!(b.utilization(t0 + Duration::from_secs(3600)), 0.0);
    }

    #[test]
    fn bucket_is_corrected_by_real_usage() {
        let t0 = Instant::now();
        let mut b = LeakyBucket::new(6000, t0);
        b.admit(4100, t0).unwrap();
        // Estimated 4100, really used 100 tokens.
        b.correct(4100, 100, t0);
        assert!((b.utilization(t0) - 100.0 / 60.0).abs() < 1e-9);
        // A request that used more than estimated raises the level.
        b.admit(10, t0).unwrap();
        b.correct(10, 3010, t0);
        assert!((b.utilization(t0) - 3110.0 / 60.0).abs() < 1e-9);
        // A correction on a drained bucket never makes the level negative.
        let late = t0 + Duration::from_secs(120);
        b.correct(1000, 0, late);
        assert_eq!(b.utilization(late), 0.0);
    }

    #[test]
    fn windows_limit_requests() {
        let t0 = Instant::now();
        // 6000 TPM: 1000 tokens and 36 RPM, so 6 requests, per 10 s window.
        let mut w = RateWindows::new(6000, t0);
        for i in 0..6 {
            assert!(w.admit(10, t0 + ms(i)).is_ok());
        }
        assert_eq!(w.remaining(t0), (0, 940));
        let err = w.admit(10, t0 + ms(2500)).unwrap_err();
        assert_eq!(err.kind, QuotaKind::Requests);
        // 7.5 s until the window resets, rounded up.
        assert_eq!(err.retry_after, Duration::from_secs(8));
        assert!(!err.with_ms);
    }

    #[test]
    fn windows_limit_tokens_by_estimate() {
        let t0 = Instant::now();
        let mut w = RateWindows::new(6000, t0);
        assert!(w.admit(900, t0).is_ok());
        let err = w.admit(101, t0).unwrap_err();
        assert_eq!(err.kind, QuotaKind::Tokens);
        assert_eq!(err.retry_after, Duration::from_secs(10));
        assert!(w.admit(100, t0).is_ok());
        // A single estimate larger than the window can never pass.
        let mut w = RateWindows::new(6000, t0);
        assert_eq!(w.admit(1001, t0).unwrap_err().kind, QuotaKind::Tokens);
    }

    #[test]
    fn windows_reset() {
        let t0 = Instant::now();
        let mut w = RateWindows::new(1000, t0);
        // 1000 TPM: 166 tokens and 1 request per window.
        assert!(w.admit(100, t0).is_ok());
        let err = w.admit(1, t0 + ms(9_999)).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(1));
        assert!(w.admit(166, t0 + ms(10_000)).is_ok());
        assert_eq!(w.remaining(t0 + ms(10_001)), (0, 0));
        assert_eq!(w.remaining(t0 + ms(20_000)), (1, 166));
    }

    #[test]
    fn windows_correction_stays_in_its_window() {
        let t0 = Instant::now();
        let mut w = RateWindows::new(6000, t0);
        let ticket = w.admit(900, t0).unwrap();
        w.correct(ticket, 50, t0 + ms(10));
        assert_eq!(w.remaining(t0 + ms(10)), (5, 950));
        let late = w.admit(500, t0 + ms(20)).unwrap();
        // Finished in the next window: the old charge is gone, nothing to correct there.
        w.correct(late, 5000, t0 + ms(10_000));
        assert_eq!(w.remaining(t0 + ms(10_000)), (6, 1000));
    }

    #[test]
    fn limiter_headers() {
        let t0 = Instant::now();
        let l = Limiter::new(
            SimMode::Provisioned {
                tokens_per_minute: 1000,
            },
            t0,
        );
        let ticket = l.admit(893, t0).unwrap();
        assert_eq!(
            l.headers(t0),
            vec![("azure-openai-deployment-utilization", "89.3%".to_string())]
        );
        l.settle(ticket, 0, t0);
        assert_eq!(l.utilization(t0), 0.0);
        let l = Limiter::new(
            SimMode::Standard {
                tokens_per_minute: 6000,
            },
            t0,
        );
        l.admit(100, t0).unwrap();
        assert_eq!(
            l.headers(t0),
            vec![
                ("x-ratelimit-remaining-requests", "5".to_string()),
                ("x-ratelimit-remaining-tokens", "900".to_string()),
            ]
        );
        assert!(Limiter::new(SimMode::Unlimited, t0).headers(t0).is_empty());
    }
}
