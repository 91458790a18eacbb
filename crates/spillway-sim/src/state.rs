//! State shared by every connection of one simulated deployment.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::config::SimConfig;
use super::entra::Issuer;
use super::faults::Faults;
use super::limits::Limiter;
use super::record::Recorder;

#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration as spawned; the timing fields in it are only initial values.
    pub cfg: SimConfig,
    ttft_ns: AtomicU64,
    tbt_ns: AtomicU64,
    natural_tokens: AtomicU32,
    pub limiter: Limiter,
    pub faults: Faults,
    pub recorder: Arc<Recorder>,
    /// The token service, and what `auth: entra` checks Bearer tokens against.
    pub issuer: Issuer,
    /// Becomes true when the simulator shuts down; hung requests wait on it.
    pub shutdown: watch::Receiver<bool>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    pub fn new(cfg: SimConfig, issuer: Issuer, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            ttft_ns: AtomicU64::new(nanos(cfg.ttft)),
            tbt_ns: AtomicU64::new(nanos(cfg.tbt)),
            natural_tokens: AtomicU32::new(cfg.natural_tokens),
            limiter: Limiter::new(cfg.mode, Instant::now()),
            faults: Faults::default(),
            recorder: Arc::new(Recorder::new(cfg.record_limit)),
            issuer,
            shutdown,
            cfg,
        }
    }

    pub fn ttft(&self) -> Duration {
        Duration::from_nanos(self.ttft_ns.load(Ordering::Relaxed))
    }

    pub fn tbt(&self) -> Duration {
        Duration::from_nanos(self.tbt_ns.load(Ordering::Relaxed))
    }

    pub fn natural_tokens(&self) -> u32 {
        self.natural_tokens.load(Ordering::Relaxed)
    }

    pub fn set_ttft(&self, d: Duration) {
        self.ttft_ns.store(nanos(d), Ordering::Relaxed);
    }

    pub fn set_tbt(&self, d: Duration) {
        self.tbt_ns.store(nanos(d), Ordering::Relaxed);
    }

    pub fn set_natural_tokens(&self, n: u32) {
        self.natural_tokens.store(n, Ordering::Relaxed);
    }
}
