//! State shared by every service of one gateway process: the current config (swapped whole
//! on reload, read lock-free per request) and where it came from.

use crate::config::Config;
use crate::routing::retry_budget::RetryBudget;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One per process; the proxy, the admin endpoints and background tasks hold an `Arc` of it.
pub struct Shared {
    config: ArcSwap<Config>,
    /// The file the config was read from; `None` for configs built in code (demo, tests).
    pub config_path: Option<PathBuf>,
    spin: AtomicU32,
    /// Process-wide, so that no reload resets it.
    pub retry_budget: RetryBudget,
}

impl Shared {
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            config_path,
            spin: AtomicU32::new(0),
            retry_budget: RetryBudget::default(),
        })
    }

    /// The config a new request runs on until it ends.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Installs a new config for requests that start from now on.
    pub fn swap_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// A cheap rotating number that spreads ties between equal choices.
    pub fn spin(&self) -> u32 {
        self.spin.fetch_add(1, Ordering::Relaxed)
    }
}
