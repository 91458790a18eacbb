//! A lock-free sliding window of token counts (one slot per second over a minute): the
//! tokens a deployment was sent recently, to predict its utilization before Azure reports it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

const SLOTS: usize = 60;

/// Sums per-second counts over the last minute. Slots are reused by second number, and a slot
/// whose stamp is old is treated as empty, so no background task is needed.
#[derive(Debug)]
pub struct TokenWindow {
    counts: [AtomicI64; SLOTS],
    stamps: [AtomicU64; SLOTS],
}

impl Default for TokenWindow {
    fn default() -> Self {
        TokenWindow {
            counts: std::array::from_fn(|_| AtomicI64::new(0)),
            stamps: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }
}

impl TokenWindow {
    /// Adds `tokens` (negative for a correction) at second `sec`.
    pub fn add(&self, sec: u64, tokens: i64) {
        let i = (sec % SLOTS as u64) as usize;
        let stamp = self.stamps[i].load(Relaxed);
        if stamp != sec {
            // First use of this slot in this second: reset it. A race with another writer
            // may lose a few tokens of one second, which the estimate tolerates.
            if self.stamps[i]
                .compare_exchange(stamp, sec, Relaxed, Relaxed)
                .is_ok()
            {
                self.counts[i].store(0, Relaxed);
            }
        }
        saturating_add(&self.counts[i], tokens);
    }

    /// Corrects what was added at second `sec` by `delta`, in that second's slot, while the
    /// window still holds it. Once that second has left the window the correction is
    /// dropped: applied at a later second, it would hide that second's real traffic.
    /// Returns whether it was applied.
    pub fn amend(&self, sec: u64, delta: i64) -> bool {
        let i = (sec % SLOTS as u64) as usize;
        let applies = self.stamps[i].load(Relaxed) == sec;
        if applies {
            saturating_add(&self.counts[i], delta);
        }
        applies
    }

    /// Tokens added in the minute ending at second `sec` (never negative).
    pub fn sum(&self, sec: u64) -> u64 {
        let mut total = 0i64;
        for i in 0..SLOTS {
            let stamp = self.stamps[i].load(Relaxed);
            if stamp != u64::MAX && stamp <= sec && sec - stamp < SLOTS as u64 {
                total = total.saturating_add(self.counts[i].load(Relaxed));
            }
        }
        total.max(0) as u64
    }
}

/// Adds without wrapping: counts come from estimates and upstream usage, and a wrapped slot
/// would turn a flood of tokens into a negative count, hiding the deployment's load. A CAS
/// loop instead of `fetch_add`, which wraps silently.
fn saturating_add(slot: &AtomicI64, delta: i64) {
    let _ = slot.fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_add(delta)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_last_minute_only() {
        let w = TokenWindow::default();
        w.add(100, 500);
        w.add(100, 250);
        w.add(130, 1000);
        assert_eq!(w.sum(130), 1750);
        assert_eq!(w.sum(159), 1750);
        assert_eq!(w.sum(160), 1000, "second 100 has left the window");
        w.add(160, 7);
        assert_eq!(
            w.sum(160),
            1007,
            "slot reused for second 160 starts from zero"
        );
        assert_eq!(w.sum(300), 0);
    }

    #[test]
    fn corrections_never_make_it_negative() {
        let w = TokenWindow::default();
        w.add(5, 100);
        w.add(6, -300);
        assert_eq!(w.sum(6), 0);
    }

    #[test]
    fn amends_land_in_their_own_second_while_it_is_in_the_window() {
        let w = TokenWindow::default();
        w.add(10, 400);
        w.add(20, 100);
        w.amend(10, -300);
        assert_eq!(w.sum(20), 200);
        assert_eq!(
            w.sum(70),
            100,
            "the amended second left with its correction"
        );
        w.add(75, 50);
        w.amend(20, -100);
        assert_eq!(
            w.sum(75),
            50,
            "second 20 is gone: its correction is dropped"
        );
    }
}
