//! Live, lock-free state of one deployment: what the request path reads to decide where to
//! send a request, and updates from every response. It outlives config reloads.

use crate::governance::adaptive::RateMeter;
use arc_swap::ArcSwapOption;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Addresses a deployment's host resolved to, and when they go stale.
#[derive(Debug)]
pub struct Resolved {
    pub addrs: Vec<SocketAddr>,
    pub expires: Instant,
}

/// Counters and flags of one deployment, shared by all requests.
#[derive(Debug)]
pub struct DeploymentState {
    /// Requests currently sent to this deployment and not finished.
    pub inflight: AtomicU32,
    /// Active health: false after failed checks or too many passive failures.
    pub healthy: AtomicBool,
    /// DNS cache for hostname endpoints (IP literals never use it).
    pub resolved: ArcSwapOption<Resolved>,
    /// Set while one task refreshes `resolved`, so only one lookup runs at a time.
    pub resolving: AtomicBool,
    /// Measured output rate, for the adaptive synchronous cap.
    pub rate: RateMeter,
}

impl DeploymentState {
    pub fn new() -> Self {
        DeploymentState {
            inflight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            resolved: ArcSwapOption::empty(),
            resolving: AtomicBool::new(false),
            rate: RateMeter::default(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Relaxed);
        InflightGuard(self.clone())
    }
}

impl Default for DeploymentState {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the in-flight count when the attempt ends, however it ends.
#[derive(Debug)]
pub struct InflightGuard(Arc<DeploymentState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_in_flight() {
        let s = Arc::new(DeploymentState::new());
        let a = s.enter();
        let b = s.enter();
        assert_eq!(s.inflight.load(Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(s.inflight.load(Relaxed), 0);
    }
}
