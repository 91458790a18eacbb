//! What the rest of a fleet adds to a load counted here: the other instances' totals as of
//! the last exchange with Redis, and, until the next one, the assumption that each of them
//! is adding what this instance adds (see README, "Running a fleet").

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

/// The fleet's part of one counter (a deployment's admitted tokens, the retry budget's
/// requests or retries). Lock-free: the request path adds and reads, the sync task writes.
#[derive(Debug)]
pub struct FleetCount {
    /// The other members' published totals at the last exchange.
    others: AtomicU64,
    /// What the other members added between their last two exchanges: about what each has
    /// added, unseen, since its last one.
    others_recent: AtomicU64,
    /// What this instance assumed the peers added until its last exchange, less what they
    /// were seen to publish since the one before: their additions it has not seen yet. Kept
    /// for one interval, by which every live peer has published.
    carry: AtomicU64,
    /// Added here since the last report to the fleet.
    unsynced: AtomicI64,
    /// Members other than this one, as of the last exchange.
    peers: AtomicU32,
    /// Non-zero while no fleet view is current: the load is this instance's times this many
    /// (1 for a single gateway, the last known fleet size while Redis is out of reach).
    scale: AtomicU32,
}

impl Default for FleetCount {
    fn default() -> Self {
        FleetCount {
            others: AtomicU64::new(0),
            others_recent: AtomicU64::new(0),
            carry: AtomicU64::new(0),
            unsynced: AtomicI64::new(0),
            peers: AtomicU32::new(0),
            scale: AtomicU32::new(1),
        }
    }
}

impl FleetCount {
    /// Counts `n` (negative for a correction) added to the local total.
    pub fn add(&self, n: i64) {
        self.unsynced.fetch_add(n, Relaxed);
    }

    /// The fleet's total, given this instance's own.
    pub fn total(&self, own: u64) -> u64 {
        let scale = self.scale.load(Relaxed);
        if scale > 0 {
            return own.saturating_mul(u64::from(scale));
        }
        // What the others added since their last exchange is unseen: assume each peer adds
        // what this instance added since its own (a burst that lands on all of them at once
        // is seen whole), or what the peers added between their last two exchanges (a burst
        // already under way stays seen across an exchange), whichever is more.
        // An exchange does not drop what was assumed before it and is not published yet
        // (`carry`): a burst under way stays seen across an exchange.
        let unsynced = self.unsynced.load(Relaxed).max(0) as u64;
        let mirrored = unsynced
            .saturating_mul(u64::from(self.peers.load(Relaxed)))
            .saturating_add(self.carry.load(Relaxed));
        own.saturating_add(self.others.load(Relaxed))
            .saturating_add(mirrored.max(self.others_recent.load(Relaxed)))
    }

    /// What was added since the last report; pass it to [`FleetCount::apply`].
    pub fn unsynced(&self) -> i64 {
        self.unsynced.load(Relaxed)
    }

    /// The exchange that carried `reported` came back: the others' totals, what they added
    /// between their last two exchanges, and the fleet size.
    pub fn apply(&self, others: u64, others_recent: u64, members: u32, reported: i64) {
        let assumed = (reported.max(0) as u64).saturating_mul(u64::from(self.peers.load(Relaxed)));
        let seen = others.saturating_sub(self.others.load(Relaxed));
        let fresh = self.scale.load(Relaxed) == 0;
        self.carry.store(
            if fresh {
                assumed.saturating_sub(seen)
            } else {
                0
            },
            Relaxed,
        );
        self.unsynced.fetch_sub(reported, Relaxed);
        self.others.store(others, Relaxed);
        self.others_recent.store(others_recent, Relaxed);
        self.peers.store(members.saturating_sub(1), Relaxed);
        self.scale.store(0, Relaxed);
    }

    /// No fleet view: this instance's load stands for `members` instances'.
    pub fn fall_back(&self, members: u32) {
        self.scale.store(members.max(1), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_gateway_counts_its_own() {
        let c = FleetCount::default();
        c.add(500);
        assert_eq!(c.total(500), 500);
    }

    #[test]
    fn peers_are_assumed_to_match_this_instance_until_the_next_exchange() {
        let c = FleetCount::default();
        c.add(1_000);
        let reported = c.unsynced();
        c.add(300); // during the round trip
        c.apply(4_000, 0, 3, reported);
        // Own 1_300, others 4_000, and 300 unsynced for each of the 2 peers.
        assert_eq!(c.total(1_300), 1_300 + 4_000 + 600);
        // The next exchange: this instance assumed the 2 peers added 300 each; they were
        // seen to publish 200 more between them: 400 of the assumption stays for an interval.
        c.apply(4_200, 0, 3, 300);
        assert_eq!(c.total(1_300), 1_300 + 4_200 + 400);
        // Peers that added 2_000 between their last two exchanges are assumed to go on.
        c.apply(4_200, 2_000, 3, 0);
        assert_eq!(c.total(1_300), 1_300 + 4_200 + 2_000);
        c.fall_back(3);
        assert_eq!(
            c.total(1_300),
            3_900,
            "without a view: own times the fleet size"
        );
    }
}
