//! Edge counters: open client connections against the cap, and the edge limits that fired.

use prometheus::{IntCounter, IntGauge};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A limit that closed a connection or refused a request, as counted in
/// `spillway_client_limits_total{limit}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    HeadTimeout,
    HeadTooLarge,
    IdleTimeout,
    BodyTimeout,
    ConnectionCap,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::HeadTimeout,
        Limit::HeadTooLarge,
        Limit::IdleTimeout,
        Limit::BodyTimeout,
        Limit::ConnectionCap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HeadTimeout => "head_timeout",
            Limit::HeadTooLarge => "head_too_large",
            Limit::IdleTimeout => "idle_timeout",
            Limit::BodyTimeout => "body_timeout",
            Limit::ConnectionCap => "connection_cap",
        }
    }
}

/// Open client connections and the limits that fired, shared by every listener.
pub struct EdgeCounters {
    open: AtomicUsize,
    /// Whether the cap is refusing connections, so that the log says so once per episode.
    at_cap: AtomicBool,
    gauge: IntGauge,
    fired: [IntCounter; Limit::ALL.len()],
}

impl EdgeCounters {
    pub fn new(metrics: &super::metrics::Metrics) -> Self {
        EdgeCounters {
            open: AtomicUsize::new(0),
            at_cap: AtomicBool::new(false),
            gauge: metrics.client_connections.clone(),
            fired: Limit::ALL.map(|l| metrics.client_limits.with_label_values(&[l.as_str()])),
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn fired(&self, limit: Limit) {
        self.fired[limit as usize].inc();
    }

    /// Counts a new connection unless `max` are open; says so in the log once per episode.
    pub fn try_open(&self, max: usize) -> bool {
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.fired(Limit::ConnectionCap);
            if !self.at_cap.swap(true, Ordering::Relaxed) {
                log::warn!("{max} client connections are open: new ones are closed at once");
            }
            return false;
        }
        if self.at_cap.swap(false, Ordering::Relaxed) {
            log::info!("client connections are below the cap of {max} again");
        }
        self.gauge.inc();
        true
    }

    pub fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}
