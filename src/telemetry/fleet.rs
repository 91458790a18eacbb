//! What an operator sees of the fleet: this instance's mode (fleet, local fallback, off), the
//! members, the age of the last exchange with Redis, on `/status` and as metrics.

use parking_lot::Mutex;
use prometheus::{Counter, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};
use std::time::Duration;
use tokio::time::Instant;

/// Where this instance's shared state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No `fleet:` section: a single gateway.
    Off,
    /// Configured, not yet heard from Redis: budgets hold `1/expected_members`.
    Joining,
    /// The last exchange succeeded: budgets and loads are the fleet's.
    Fleet,
    /// Redis is out of reach: each budget holds `1/members` (the last known fleet size).
    Local,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Joining => "joining",
            Mode::Fleet => "fleet",
            Mode::Local => "local fallback",
        }
    }
}

#[derive(Debug)]
struct View {
    mode: Mode,
    since: Instant,
    instance_id: String,
    redis: String,
    members: u32,
    last_sync: Option<Instant>,
    last_latency: Duration,
    last_error: Option<&'static str>,
}

/// The fleet's status and metrics, written by the sync task, read by `/status`.
pub struct FleetTelemetry {
    view: Mutex<View>,
    members: IntGauge,
    fallback: IntGauge,
    sync_seconds: Histogram,
    errors: IntCounterVec,
    fallback_seconds: Counter,
}

impl FleetTelemetry {
    pub fn new(metrics: &super::metrics::Metrics) -> Self {
        let r = &metrics.registry;
        let members = IntGauge::new(
            "fleet_members",
            "Members of the fleet as of the last exchange with Redis (the last known count while in local fallback).",
        )
        .expect("static metric definition");
        let fallback = IntGauge::new(
            "fleet_fallback",
            "1 while this instance is configured for a fleet but cannot exchange with Redis.",
        )
        .expect("static metric definition");
        let sync_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "fleet_sync_seconds",
                "Duration of each successful exchange with Redis.",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "fleet_redis_errors_total",
                "Failed exchanges with Redis, by kind.",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let fallback_seconds = Counter::new(
            "fleet_fallback_seconds_total",
            "Time spent in local fallback.",
        )
        .expect("static metric definition");
        for m in [
            Box::new(members.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(fallback.clone()),
            Box::new(sync_seconds.clone()),
            Box::new(errors.clone()),
            Box::new(fallback_seconds.clone()),
        ] {
            r.register(m).expect("unique metric name");
        }
        FleetTelemetry {
            view: Mutex::new(View {
                mode: Mode::Off,
                since: Instant::now(),
                instance_id: String::new(),
                redis: String::new(),
                members: 1,
                last_sync: None,
                last_latency: Duration::ZERO,
                last_error: None,
            }),
            members,
            fallback,
            sync_seconds,
            errors,
            fallback_seconds,
        }
    }

    pub fn mode(&self) -> Mode {
        self.view.lock().mode
    }

    /// The last known fleet size (1 when there is no fleet).
    pub fn members(&self) -> u32 {
        self.view.lock().members
    }

    /// Sets the mode; returns the previous one, so the caller logs a change once.
    pub fn set_mode(&self, mode: Mode, now: Instant) -> Mode {
        let mut v = self.view.lock();
        let before = v.mode;
        if before != mode {
            v.mode = mode;
            v.since = now;
        }
        self.fallback.set(i64::from(mode == Mode::Local));
        before
    }

    /// Who this instance is and where its Redis is (never with credentials).
    pub fn set_identity(&self, instance_id: &str, redis: &str, members: u32) {
        let mut v = self.view.lock();
        if v.instance_id != instance_id || v.redis != redis {
            v.instance_id = instance_id.to_string();
            v.redis = redis.to_string();
        }
        if v.last_sync.is_none() {
            v.members = members;
        }
    }

    pub fn synced(&self, members: u32, latency: Duration, now: Instant) {
        let mut v = self.view.lock();
        v.members = members;
        v.last_sync = Some(now);
        v.last_latency = latency;
        v.last_error = None;
        self.members.set(i64::from(members));
        self.sync_seconds.observe(latency.as_secs_f64());
    }

    pub fn failed(&self, kind: &'static str) {
        self.view.lock().last_error = Some(kind);
        self.errors.with_label_values(&[kind]).inc();
    }

    /// Time passed in local fallback.
    pub fn in_fallback_for(&self, d: Duration) {
        self.fallback_seconds.inc_by(d.as_secs_f64());
    }

    /// The fleet part of `/status`.
    pub fn status(&self, now: Instant) -> serde_json::Value {
        let v = self.view.lock();
        if v.mode == Mode::Off {
            return serde_json::json!({ "mode": "off" });
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        serde_json::json!({
            "mode": v.mode.as_str(),
            "instance_id": v.instance_id,
            "redis": v.redis,
            "members": v.members,
            "in_mode_ms": ms(now.saturating_duration_since(v.since)),
            "sync_age_ms": v.last_sync.map(|t| ms(now.saturating_duration_since(t))),
            "sync_latency_ms": v.last_latency.as_secs_f64() * 1000.0,
            "last_error": v.last_error,
        })
    }
}
