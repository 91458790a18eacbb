//! Failed authentications counted per client address, so that nobody can guess tenant keys
//! at line rate: past the limit, an address gets 429 until its window ends, whatever key it
//! presents. The table is bounded; process-wide, so a reload does not reset it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// How many failures an address may have in a window, and how many addresses are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailurePolicy {
    /// 0: no limit.
    pub limit: u32,
    pub window: Duration,
    pub max_addresses: usize,
}

/// The failures of one address in its current window, which starts at its first failure.
struct Entry {
    since: Instant,
    failures: u32,
    /// Whether reaching the limit in this window was logged already.
    logged: bool,
}

impl Entry {
    fn expired(&self, p: &AuthFailurePolicy, now: Instant) -> bool {
        now.duration_since(self.since) >= p.window
    }

    fn blocked(&self, p: &AuthFailurePolicy, now: Instant) -> bool {
        self.failures >= p.limit && !self.expired(p, now)
    }
}

/// The table of addresses with recent failures, behind one lock. Requests only look at it
/// while some address is blocked: `blocked_until` says until when that may be, so the usual
/// request (nobody blocked) costs one atomic load, not a lock and a lookup.
pub struct AuthFailures {
    table: Mutex<HashMap<IpAddr, Entry>>,
    epoch: Instant,
    /// Milliseconds after `epoch` until which some address may be blocked.
    blocked_until: AtomicU64,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures {
            table: Mutex::default(),
            epoch: Instant::now(),
            blocked_until: AtomicU64::new(0),
        }
    }
}

/// What a counted failure means for its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Still under the limit.
    Under,
    /// This failure reached the limit: the first time in this window (log it once).
    ReachedLimit,
    /// At the limit already.
    Over,
}

/// The key an address is counted under. One IPv6 host usually holds a whole /64, so that
/// is what counts as one address; an IPv4 address mapped into IPv6 counts as itself.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl AuthFailures {
    /// How long `addr` must wait, when it has used up its failures in the current window.
    pub fn blocked(&self, addr: IpAddr, p: &AuthFailurePolicy, now: Instant) -> Option<Duration> {
        if p.limit == 0 || self.ms(now) >= self.blocked_until.load(Relaxed) {
            return None;
        }
        let table = self.table.lock();
        let e = table.get(&key(addr))?;
        e.blocked(p, now)
            .then(|| (e.since + p.window).duration_since(now))
    }

    /// Counts a failed authentication from `addr`.
    pub fn failed(&self, addr: IpAddr, p: &AuthFailurePolicy, now: Instant) -> Counted {
        if p.limit == 0 {
            return Counted::Under;
        }
        let key = key(addr);
        let mut table = self.table.lock();
        if table.len() >= p.max_addresses && !table.contains_key(&key) {
            trim(&mut table, p, now);
        }
        let e = table.entry(key).or_insert(Entry {
            since: now,
            failures: 0,
            logged: false,
        });
        if e.expired(p, now) {
            *e = Entry {
                since: now,
                failures: 0,
                logged: false,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures < p.limit {
            return Counted::Under;
        }
        // Rounded up, so that the fast path never ends a block early.
        let until = self.ms(e.since + p.window).saturating_add(1);
        self.blocked_until.fetch_max(until, Relaxed);
        if e.logged {
            Counted::Over
        } else {
            e.logged = true;
            Counted::ReachedLimit
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.table.lock().len()
    }
}

/// Makes room in a full table: expired entries first, then addresses under the limit, then
/// any. It frees an eighth of the table at once, so that an attacker spraying new addresses
/// pays for the scan, not every request.
fn trim(table: &mut HashMap<IpAddr, Entry>, p: &AuthFailurePolicy, now: Instant) {
    table.retain(|_, e| !e.expired(p, now));
    let target = p.max_addresses.saturating_sub(p.max_addresses.div_ceil(8));
    let mut excess = table.len().saturating_sub(target);
    if excess > 0 {
        table.retain(|_, e| {
            let drop = excess > 0 && !e.blocked(p, now);
            excess -= usize::from(drop);
            !drop
        });
    }
    let mut excess = table.len().saturating_sub(target);
    table.retain(|_, _| {
        let drop = excess > 0;
        excess -= usize::from(drop);
        !drop
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: AuthFailurePolicy = AuthFailurePolicy {
        limit: 3,
        window: Duration::from_secs(10),
        max_addresses: 8,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_blocked_at_the_limit_until_its_window_ends() {
        let f = AuthFailures::default();
        let a = ip("192.0.2.1");
        let start = Instant::now();
        assert_eq!(f.failed(a, &P, start), Counted::Under);
        assert_eq!(f.failed(a, &P, start), Counted::Under);
        assert_eq!(f.blocked(a, &P, start), None);
        assert_eq!(f.failed(a, &P, start), Counted::ReachedLimit);
        assert_eq!(
            f.failed(a, &P, start),
            Counted::Over,
            "logged once per window"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            f.blocked(a, &P, Instant::now()),
            Some(Duration::from_secs(6))
        );
        assert_eq!(f.blocked(ip("192.0.2.2"), &P, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(f.blocked(a, &P, Instant::now()), None);
        assert_eq!(
            f.failed(a, &P, Instant::now()),
            Counted::Under,
            "a new window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_slash_64_counts_as_one_address() {
        let f = AuthFailures::default();
        let now = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            f.failed(ip(host), &P, now);
        }
        assert!(f.blocked(ip("2001:db8::9"), &P, now).is_some());
        assert!(f.blocked(ip("2001:db8:0:1::1"), &P, now).is_none());
        for _ in 0..3 {
            f.failed(ip("::ffff:192.0.2.7"), &P, now);
        }
        assert!(f.blocked(ip("192.0.2.7"), &P, now).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_keeps_blocked_addresses() {
        let f = AuthFailures::default();
        let now = Instant::now();
        let attacker = ip("198.51.100.1");
        for _ in 0..3 {
            f.failed(attacker, &P, now);
        }
        for i in 0..100u8 {
            f.failed(IpAddr::from([203, 0, 113, i]), &P, now);
            assert!(f.tracked() <= P.max_addresses);
        }
        assert!(f.blocked(attacker, &P, now).is_some());
    }

    #[test]
    fn limit_zero_turns_it_off() {
        let f = AuthFailures::default();
        let off = AuthFailurePolicy { limit: 0, ..P };
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(f.failed(ip("192.0.2.1"), &off, now), Counted::Under);
        }
        assert_eq!(f.blocked(ip("192.0.2.1"), &off, now), None);
        assert_eq!(f.tracked(), 0);
    }
}
