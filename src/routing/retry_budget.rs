//! The retry budget: retries may be at most a fraction of recent requests (plus a small
//! floor), so that an outage turns into failed requests, never into a retry storm.

use super::fleet::FleetCount;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use tokio::time::Instant;

const SLOTS: usize = 10;

/// Requests and retries per second over the last ten seconds.
#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    stamps: [AtomicU64; SLOTS],
    requests: [AtomicU32; SLOTS],
    retries: [AtomicU32; SLOTS],
    /// The rest of the fleet's requests and retries, so the share holds fleet-wide.
    pub fleet_requests: FleetCount,
    pub fleet_retries: FleetCount,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            epoch: Instant::now(),
            stamps: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            requests: std::array::from_fn(|_| AtomicU32::new(0)),
            retries: std::array::from_fn(|_| AtomicU32::new(0)),
            fleet_requests: FleetCount::default(),
            fleet_retries: FleetCount::default(),
        }
    }
}

impl RetryBudget {
    fn slot(&self, now: Instant) -> (usize, u64) {
        let sec = now.saturating_duration_since(self.epoch).as_secs();
        let i = (sec % SLOTS as u64) as usize;
        let stamp = self.stamps[i].load(Relaxed);
        if stamp != sec
            && self.stamps[i]
                .compare_exchange(stamp, sec, Relaxed, Relaxed)
                .is_ok()
        {
            self.requests[i].store(0, Relaxed);
            self.retries[i].store(0, Relaxed);
        }
        (i, sec)
    }

    fn totals(&self, sec: u64) -> (u64, u64) {
        let (mut req, mut ret) = (0u64, 0u64);
        for i in 0..SLOTS {
            let stamp = self.stamps[i].load(Relaxed);
            if stamp != u64::MAX && stamp <= sec && sec - stamp < SLOTS as u64 {
                req += u64::from(self.requests[i].load(Relaxed));
                ret += u64::from(self.retries[i].load(Relaxed));
            }
        }
        (req, ret)
    }

    /// This instance's requests and retries over the last ten seconds.
    pub fn own(&self, now: Instant) -> (u64, u64) {
        let sec = now.saturating_duration_since(self.epoch).as_secs();
        self.totals(sec)
    }

    /// Counts a new client request.
    pub fn on_request(&self, now: Instant) {
        let (i, _) = self.slot(now);
        self.requests[i].fetch_add(1, Relaxed);
        self.fleet_requests.add(1);
    }

    /// Takes one retry from the budget if there is room: `percent` of the requests of the
    /// last ten seconds, plus `min_per_second` × 10, across the fleet when there is one.
    pub fn try_retry(&self, percent: f64, min_per_second: u32, now: Instant) -> bool {
        let (i, sec) = self.slot(now);
        let (requests, retries) = self.totals(sec);
        let (requests, retries) = (
            self.fleet_requests.total(requests),
            self.fleet_retries.total(retries),
        );
        let allowed = requests as f64 * percent / 100.0 + f64::from(min_per_second) * SLOTS as f64;
        if (retries as f64) < allowed {
            self.retries[i].fetch_add(1, Relaxed);
            self.fleet_retries.add(1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_a_fraction_of_requests() {
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.on_request(Instant::now());
        }
        let granted = (0..1000)
            .filter(|_| b.try_retry(20.0, 0, Instant::now()))
            .count();
        assert_eq!(granted, 200);
        // Ten seconds later the window has moved on: the budget is back, and without
        // requests only the floor remains.
        tokio::time::advance(Duration::from_secs(10)).await;
        let granted = (0..100)
            .filter(|_| b.try_retry(20.0, 1, Instant::now()))
            .count();
        assert_eq!(granted, 10);
    }
}
