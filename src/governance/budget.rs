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

    /// Refills `1/share` of a `per_minute` budget, up to `1/share` of it or `floor`, whichever
    /// is more: a share smaller than one typical request would refuse every request, where
    /// holding one request at `1/share` of the rate keeps the fleet's rate (see `admit`).
    fn refill(&mut self, per_minute: u64, share: u32, floor: f64, now: Instant) {
        let part = per_minute as f64 / f64::from(share.max(1));
        let cap = part.max(floor.min(per_minute as f64));
        let level = match self.last {
            // A new bucket starts with its share, not the floor: a fleet of many, all new,
            // must not admit a request each beyond the limit.
            None => part,
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                (self.level + dt * cap / 60.0).min(cap)
            }
        };
        self.level = level;
        self.last = Some(now);
    }

    /// Time until `amount` is available at `1/share` of the rate. With the debt bounded (see
    /// `settle`) and `amount` at most a minute's budget, that is at most [`MAX_WAIT`] for one
    /// instance; the cap keeps a fleet's share, and an impossible value, from going beyond.
    fn wait_for(&self, amount: f64, per_minute: u64, share: u32) -> Duration {
        let missing = (amount - self.level).max(0.0);
        let rate = per_minute.max(1) as f64 / f64::from(share.max(1));
        Duration::try_from_secs_f64(missing * 60.0 / rate).map_or(MAX_WAIT, |w| w.min(MAX_WAIT))
    }
}

/// One dimension (tokens or requests) of a tenant's budget on this instance.
#[derive(Debug, Clone, Copy)]
struct Dim {
    bucket: Bucket,
    /// What this instance owes the fleet's bucket at the next exchange: its unused lease,
    /// less what it spent since (negative after spending in local mode). See `ops::fleet`.
    owed: f64,
    /// Amounts asked for since the last exchange, admitted or not: this instance's weight
    /// when the fleet shares out the budget.
    demand: f64,
    /// What the fleet's bucket held beyond every lease at the last exchange.
    unleased: f64,
}

impl Dim {
    const NEW: Dim = Dim {
        bucket: Bucket::FULL,
        owed: 0.0,
        demand: 0.0,
        unleased: 0.0,
    };

    /// How long until `amount` fits: on a local bucket, at `1/share` of the rate; on a fleet
    /// lease, the next exchange but one (this request's demand weighs in it) plus the time
    /// the fleet's bucket needs to hold `amount` beyond the leases, at the full rate.
    fn wait_for(
        &self,
        amount: f64,
        per_minute: u64,
        local: bool,
        share: u32,
        hint: Duration,
    ) -> Duration {
        if local {
            return self.bucket.wait_for(amount, per_minute, share);
        }
        if self.bucket.level >= amount {
            return Duration::ZERO;
        }
        let missing = (amount - self.unleased).max(0.0);
        let refill = Duration::try_from_secs_f64(missing * 60.0 / per_minute.max(1) as f64)
            .unwrap_or(MAX_WAIT);
        (hint * 2).saturating_add(refill).min(MAX_WAIT)
    }

    fn charge(&mut self, amount: f64, per_minute: u64) {
        let cap = per_minute as f64;
        self.bucket.level -= amount;
        self.owed = (self.owed - amount).clamp(-cap, cap);
    }
}

/// How this instance's buckets relate to the fleet's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Each bucket holds and refills `1/share` of the limit: `share` is 1 for a single
    /// gateway, the last known fleet size while Redis is out of reach.
    Local { share: u32 },
    /// Each bucket holds the lease the fleet granted at the last exchange and does not
    /// refill until the next one; after `until` without one, `Local { share: members }`.
    Fleet { until: Instant, members: u32 },
}

#[derive(Debug)]
struct State {
    tok: Dim,
    req: Dim,
    mode: Mode,
    /// Mean token charge of recent requests: the smallest lease worth granting.
    unit: f64,
    /// The fleet's sync interval, for the wait a lease-less refusal announces.
    next_exchange: Duration,
}

/// One process's budgets for one tenant: the whole budget for a single gateway, or this
/// instance's lease of a fleet's budget (see README, "Running a fleet").
#[derive(Debug)]
pub struct LocalBudget {
    inner: Mutex<State>,
}

impl Default for LocalBudget {
    fn default() -> Self {
        Self::with_share(1)
    }
}

/// What an instance sends the fleet about one dimension of a tenant's budget.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DimReport {
    /// Added to the fleet's bucket: the unused lease, less local spending and corrections.
    pub give_back: f64,
    pub demand: f64,
    /// The smallest useful lease: one typical request.
    pub unit: f64,
}

/// What one exchange granted this instance; see [`LocalBudget::grant`].
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The token and request leases.
    pub lease: (f64, f64),
    /// What the fleet's token and request buckets hold beyond every lease.
    pub unleased: (f64, f64),
    pub members: u32,
    /// The sync interval: when this instance next asks for a lease.
    pub next_exchange: Duration,
    /// The lease holds until then without a further exchange.
    pub until: Instant,
    pub now: Instant,
}

/// Both dimensions; see [`LocalBudget::report`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetReport {
    pub tokens: DimReport,
    pub requests: DimReport,
}

impl LocalBudget {
    /// A budget that holds `1/share` of the limits until the fleet says otherwise.
    pub fn with_share(share: u32) -> Self {
        LocalBudget {
            inner: Mutex::new(State {
                tok: Dim::NEW,
                req: Dim::NEW,
                mode: Mode::Local {
                    share: share.max(1),
                },
                unit: 0.0,
                next_exchange: Duration::ZERO,
            }),
        }
    }

    /// Takes what the fleet is owed and the demand since the last report. If the exchange
    /// fails, [`LocalBudget::restore`] puts them back.
    pub fn report(&self) -> BudgetReport {
        let mut s = self.inner.lock();
        let unit = s.unit.max(1.0);
        let take = |d: &mut Dim, unit: f64| {
            let r = DimReport {
                give_back: d.owed,
                demand: d.demand,
                unit,
            };
            d.owed = 0.0;
            d.demand = 0.0;
            r
        };
        let tokens = take(&mut s.tok, unit);
        let requests = take(&mut s.req, 1.0);
        BudgetReport { tokens, requests }
    }

    /// Undoes a [`LocalBudget::report`] the fleet never received.
    pub fn restore(&self, r: &BudgetReport) {
        let mut s = self.inner.lock();
        s.tok.owed += r.tokens.give_back;
        s.tok.demand += r.tokens.demand;
        s.req.owed += r.requests.give_back;
        s.req.demand += r.requests.demand;
    }

    /// The fleet granted these leases (in place of the ones given back at the report):
    /// they are all this instance may admit until the next exchange or `until`.
    pub fn grant(&self, g: Grant) {
        let mut guard = self.inner.lock();
        let s = &mut *guard;
        for (d, lease, unleased) in [
            (&mut s.tok, g.lease.0, g.unleased.0),
            (&mut s.req, g.lease.1, g.unleased.1),
        ] {
            // What was spent since the report is already in `owed` (negative).
            d.owed += lease;
            d.bucket.level = d.owed;
            d.bucket.last = Some(g.now);
            d.unleased = unleased;
        }
        s.next_exchange = g.next_exchange;
        s.mode = Mode::Fleet {
            until: g.until,
            members: g.members.max(1),
        };
    }

    /// Redis is out of reach: hold and refill `1/members` of the limits from now on.
    pub fn fall_back(&self, members: u32, now: Instant) {
        let mut s = self.inner.lock();
        s.fall_back(members, now);
    }

    /// The fleet size this budget currently divides by (1 for a single gateway).
    pub fn share(&self) -> u32 {
        match self.inner.lock().mode {
            Mode::Local { share } => share,
            Mode::Fleet { members, .. } => members,
        }
    }
}

impl State {
    fn fall_back(&mut self, members: u32, now: Instant) {
        if matches!(self.mode, Mode::Fleet { .. }) {
            // The lease left is kept and refills from now on at this instance's share.
            self.tok.bucket.last = Some(now);
            self.req.bucket.last = Some(now);
        }
        self.mode = Mode::Local {
            share: members.max(1),
        };
    }

    /// The divisor for refills and waits, after expiring a fleet lease that outlived its
    /// exchange. `None`: a fleet lease, which does not refill.
    fn refill_share(&mut self, now: Instant) -> (Option<u32>, u32) {
        if let Mode::Fleet { until, members } = self.mode {
            if now <= until {
                return (None, members);
            }
            // The lease held until `until`; the share refills from then.
            self.fall_back(members, until);
        }
        match self.mode {
            Mode::Local { share } => (Some(share), share),
            Mode::Fleet { members, .. } => (None, members),
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
        let s = &mut *guard;
        let (refill, share) = s.refill_share(now);
        let local = refill.is_some();
        let hint = s.next_exchange;
        let mut wait = Duration::ZERO;
        let mut what = "";
        if let Some(tpm) = limits.tokens_per_minute {
            // A slow mean: the fleet's smallest useful lease is one typical request.
            s.unit = if s.unit == 0.0 {
                tokens as f64
            } else {
                s.unit * 0.9 + tokens as f64 * 0.1
            };
            if local {
                s.tok
                    .bucket
                    .refill(tpm, share, s.unit.max(tokens as f64), now);
            }
            s.tok.demand += tokens as f64;
            let w = s.tok.wait_for(tokens as f64, tpm, local, share, hint);
            if w > wait {
                (wait, what) = (w, "tokens");
            }
        }
        if let Some(rpm) = limits.requests_per_minute {
            if local {
                s.req.bucket.refill(rpm, share, 1.0, now);
            }
            s.req.demand += 1.0;
            let w = s.req.wait_for(1.0, rpm, local, share, hint);
            if w > wait {
                (wait, what) = (w, "requests");
            }
        }
        // The headers speak for the tenant, not for this instance: scale the share back up.
        let remaining = |s: &State| Remaining {
            tokens: limits
                .tokens_per_minute
                .map(|_| (s.tok.bucket.level.max(0.0) * f64::from(share)) as u64),
            requests: limits
                .requests_per_minute
                .map(|_| (s.req.bucket.level.max(0.0) * f64::from(share)) as u64),
        };
        if !wait.is_zero() {
            return Err(OverBudget::RetryAfter {
                wait,
                remaining: remaining(s),
                what,
            });
        }
        if let Some(tpm) = limits.tokens_per_minute {
            s.tok.charge(tokens as f64, tpm);
        }
        if let Some(rpm) = limits.requests_per_minute {
            s.req.charge(1.0, rpm);
        }
        Ok(remaining(s))
    }

    fn settle(&self, limits: BudgetLimits, charged: u64, actual: u64, now: Instant) {
        let Some(tpm) = limits.tokens_per_minute else {
            return;
        };
        let mut guard = self.inner.lock();
        let s = &mut *guard;
        let (refill, share) = s.refill_share(now);
        if let Some(share) = refill {
            let floor = s.unit;
            s.tok.bucket.refill(tpm, share, floor, now);
        }
        // A debt beyond one minute's budget cannot come from work the gateway admitted (a
        // request larger than the budget is refused up front): it is an upstream's count
        // gone wrong, which must not lock the tenant out for hours.
        // A fleet lease may be larger than an even share: only a local bucket has that cap.
        let cap = if refill.is_some() {
            (tpm as f64 / f64::from(share)).max(s.unit.min(tpm as f64))
        } else {
            tpm as f64
        };
        let delta = charged as f64 - actual as f64;
        s.tok.bucket.level = (s.tok.bucket.level + delta).clamp(-cap, cap);
        s.tok.owed = (s.tok.owed + delta).clamp(-(tpm as f64), tpm as f64);
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

    fn grant(tokens: f64, requests: f64, members: u32, now: Instant) -> Grant {
        Grant {
            lease: (tokens, requests),
            unleased: (0.0, 0.0),
            members,
            next_exchange: Duration::from_millis(100),
            until: now + Duration::from_millis(300),
            now,
        }
    }

    /// A fleet of three: each member holds a third until the fleet grants leases, admits only
    /// from its lease, gives back what it did not spend, and falls back to a third of the
    /// limits (refilled at a third of the rate) when the exchanges stop.
    #[tokio::test(start_paused = true)]
    async fn a_fleet_member_admits_from_its_lease_and_falls_back_to_its_share() {
        let limits = BudgetLimits {
            tokens_per_minute: Some(6000),
            requests_per_minute: None,
        };
        let b = LocalBudget::with_share(3);
        let now = Instant::now();
        assert!(b.admit(limits, 2000, now).is_ok(), "a third of 6000");
        assert!(b.admit(limits, 1, now).is_err());
        // The first exchange: the 2000 spent locally is owed to the fleet's bucket, and the
        // demand counts the refused token too.
        let r = b.report();
        assert_eq!(r.tokens.give_back, -2000.0);
        assert_eq!(r.tokens.demand, 2001.0);
        b.grant(grant(3000.0, 0.0, 3, now));
        assert_eq!(b.share(), 3);
        assert!(b.admit(limits, 2500, now).is_ok());
        assert!(b.admit(limits, 600, now).is_err(), "500 left of the lease");
        // No refill between exchanges: a lease is all there is.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(b.admit(limits, 600, Instant::now()).is_err());
        // Spent during the round trip counts against the next lease.
        let r = b.report();
        assert_eq!(r.tokens.give_back, 500.0);
        assert!(b.admit(limits, 400, Instant::now()).is_ok());
        b.grant(grant(1000.0, 0.0, 3, Instant::now()));
        assert!(b.admit(limits, 600, Instant::now()).is_ok(), "1000 - 400");
        assert!(b.admit(limits, 1, Instant::now()).is_err());
        // An exchange that failed gives its report back for the next one.
        let r = b.report();
        b.restore(&r);
        assert_eq!(b.report(), r);
        // Exchanges stop: past the lease's validity the member refills a third of the rate.
        tokio::time::advance(Duration::from_millis(3300)).await;
        assert!(
            b.admit(limits, 100, Instant::now()).is_ok(),
            "3 s at 2000/min once the lease's 300 ms ran out"
        );
        assert!(b.admit(limits, 1, Instant::now()).is_err());
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(b.admit(limits, 2000, Instant::now()).is_ok(), "full third");
        assert!(
            b.admit(limits, 1, Instant::now()).is_err(),
            "never more than a third"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_explicit_fall_back_keeps_the_lease_and_refills_at_the_share() {
        let limits = BudgetLimits {
            tokens_per_minute: None,
            requests_per_minute: Some(60),
        };
        let b = LocalBudget::with_share(1);
        let _ = b.report();
        b.grant(Grant {
            until: Instant::now() + Duration::from_secs(1),
            ..grant(0.0, 5.0, 2, Instant::now())
        });
        for _ in 0..5 {
            b.admit(limits, 0, Instant::now()).unwrap();
        }
        b.fall_back(2, Instant::now());
        let Err(OverBudget::RetryAfter { wait, .. }) = b.admit(limits, 0, Instant::now()) else {
            panic!("the lease is spent");
        };
        assert_eq!(wait, Duration::from_secs(2), "30 a minute on this member");
        // While in fallback, what it spends is owed to the fleet when Redis comes back.
        tokio::time::advance(wait).await;
        b.admit(limits, 0, Instant::now()).unwrap();
        assert_eq!(b.report().requests.give_back, -6.0 + 5.0);
    }

    /// Without a lease, a refusal announces the next exchange but one, plus what the fleet's
    /// bucket still has to refill; and a share smaller than one request still holds one.
    #[tokio::test(start_paused = true)]
    async fn refusals_without_a_lease_announce_the_fleets_wait() {
        let limits = BudgetLimits {
            tokens_per_minute: Some(6000),
            requests_per_minute: None,
        };
        let b = LocalBudget::with_share(1);
        let _ = b.report();
        b.grant(Grant {
            unleased: (700.0, 0.0),
            ..grant(0.0, 0.0, 10, Instant::now())
        });
        let Err(OverBudget::RetryAfter { wait, .. }) = b.admit(limits, 1000, Instant::now()) else {
            panic!("no lease");
        };
        // 300 tokens short at 100 a second, and two exchanges of 100 ms.
        assert_eq!(wait, Duration::from_millis(3200));
        // Fifty members in fallback: a share of 120 tokens, but a request of 1000 still fits
        // once a fiftieth of the rate has refilled it (a new bucket starts at its share).
        let b = LocalBudget::with_share(50);
        assert!(b.admit(limits, 100, Instant::now()).is_ok());
        assert!(b.admit(limits, 1000, Instant::now()).is_err());
        tokio::time::advance(Duration::from_secs(490)).await;
        assert!(b.admit(limits, 1000, Instant::now()).is_ok());
    }
}
