//! Live, lock-free state of one deployment: what the request path reads to decide where to
//! send a request (health, cool-down, utilization, recent load), updated from every response.
//! It outlives config reloads.

use super::cost::CostMeter;
use super::fleet::FleetCount;
use super::hold::HoldQueue;
use super::level::Level;
use super::window::TokenWindow;
use crate::governance::adaptive::RateMeter;
use arc_swap::ArcSwapOption;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Addresses a deployment's host resolved to, and when they go stale.
#[derive(Debug)]
pub struct Resolved {
    pub addrs: Vec<SocketAddr>,
    pub expires: std::time::Instant,
}

/// How routing reads and updates deployment state (from the `routing:` config section).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingPolicy {
    /// Longest cool-down a 429 may impose (Azure has sent `retry-after: 86400`).
    pub max_cooldown: Duration,
    /// A utilization reading is trusted this long.
    pub utilization_ttl: Duration,
    /// Once saturated, a deployment stays avoided until its utilization falls this many
    /// points below the spill threshold, so traffic does not flap at the threshold.
    pub hysteresis_percent: f64,
    /// Consecutive failures (connect errors, 5xx, timeouts) that eject a deployment.
    pub eject_after_failures: u32,
    /// Distinct request sources (tenants) among those failures before 5xx and timeouts
    /// eject, so that no single tenant's requests can take a deployment out for everyone.
    /// Connect failures need no source: no request causes them.
    pub eject_min_sources: u32,
    /// First ejection's length; each further ejection in a row doubles it, up to 8x.
    pub eject_for: Duration,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            max_cooldown: Duration::from_secs(60),
            utilization_ttl: Duration::from_secs(10),
            hysteresis_percent: 10.0,
            eject_after_failures: 3,
            eject_min_sources: 2,
            eject_for: Duration::from_secs(10),
        }
    }
}

/// Why a deployment is passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Failed its active health checks.
    Unhealthy,
    /// Ejected after consecutive failures.
    Ejected,
    /// Cooling down after a 429.
    Cooldown,
    /// At its in-flight limit.
    Inflight,
    /// Reported utilization at or above the spill threshold.
    Utilization,
    /// Recently sent tokens predict saturation.
    Predicted,
    /// Its Entra ID credential has no usable token (see `identity::credential`).
    NoCredential,
}

/// How a request's class reads saturation (see `routing::class`): today's latch and window
/// at the pool's threshold, unless its class says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gauge {
    /// The class's own threshold on this deployment, replacing the pool's.
    pub spill_at: Option<f64>,
    /// Read utilization from the leaky-bucket model (`level`), which drains between
    /// readings, instead of the reading's latch and the minute's window, which only say that
    /// the deployment was busy. Classes that may be held read it: their wait is its drain.
    pub bucket: bool,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Unhealthy => "unhealthy",
            Skip::Ejected => "ejected",
            Skip::Cooldown => "cooldown",
            Skip::Inflight => "inflight",
            Skip::Utilization => "utilization",
            Skip::Predicted => "predicted",
            Skip::NoCredential => "no_credential",
        }
    }

    /// Hard reasons make a request fail or wait there; soft ones only make it worse off.
    pub fn is_hard(self) -> bool {
        !matches!(self, Skip::Utilization | Skip::Predicted)
    }
}

const NONE: u64 = u64::MAX;

/// A failure of an attempt, by what may have caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made: nothing the request did.
    Connect,
    /// A 5xx, or a timeout the request's own size does not explain, while serving a request
    /// from `source` (a tenant's identity).
    Request { source: u64 },
}

/// Counters and flags of one deployment, shared by all requests.
#[derive(Debug)]
pub struct DeploymentState {
    epoch: Instant,
    /// Requests currently sent to this deployment and not finished (see [`Lease`]).
    inflight: AtomicU32,
    /// DNS cache for hostname endpoints (IP literals never use it).
    pub(super) resolved: ArcSwapOption<Resolved>,
    /// Set while one task refreshes `resolved`, so only one lookup runs at a time.
    pub(super) resolving: AtomicBool,
    /// Measured output rate, for the adaptive synchronous cap.
    pub rate: RateMeter,
    /// What the requests it served cost over the last minute, for /status.
    pub cost: CostMeter,
    /// Estimated tokens sent per second over the last minute, corrected by real usage
    /// (see [`Lease`]).
    admitted: TokenWindow,
    /// The rest of the fleet's admitted tokens (see `routing::fleet`).
    pub fleet: FleetCount,
    /// Utilization as a leaky bucket of the tokens sent and the readings received.
    level: Level,
    /// The configured capacity in tokens per minute (0: unknown), set by each config load.
    capacity_tpm: AtomicU64,
    /// Requests waiting for this deployment to have room.
    pub hold: HoldQueue,
    /// News for the fleet not yet sent: the end of a cool-down or an ejection this instance
    /// imposed (in this state's milliseconds; 0: none), a fresh utilization reading.
    fleet_cooldown_ms: AtomicU64,
    fleet_ejection_ms: AtomicU64,
    fleet_reading: AtomicBool,
    /// The end of the last ejection taken from the fleet, so that one this instance's own
    /// checks ended is not taken again.
    fleet_ejection_seen_ms: AtomicU64,
    /// 429s received, for status and metrics.
    throttled: AtomicU64,
    cooldown_until_ms: AtomicU64,
    utilization_permille: AtomicU32,
    utilization_at_ms: AtomicU64,
    saturated: AtomicBool,
    active_healthy: AtomicBool,
    /// Consecutive active-check results of the same kind (positive: passes, negative: fails).
    check_streak: std::sync::atomic::AtomicI32,
    failures: AtomicU32,
    /// The request sources among the current run of failures, one bit per hashed source.
    failure_sources: AtomicU64,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// The current ejection came from connection failures, which a passing active check
    /// disproves; one from 5xx or timeouts runs its course.
    ejected_by_connect: AtomicBool,
}

impl Default for DeploymentState {
    fn default() -> Self {
        Self::new()
    }
}

impl DeploymentState {
    pub fn new() -> Self {
        DeploymentState {
            epoch: Instant::now(),
            inflight: AtomicU32::new(0),
            resolved: ArcSwapOption::empty(),
            resolving: AtomicBool::new(false),
            rate: RateMeter::default(),
            cost: CostMeter::default(),
            admitted: TokenWindow::default(),
            fleet: FleetCount::default(),
            level: Level::default(),
            capacity_tpm: AtomicU64::new(0),
            hold: HoldQueue::default(),
            fleet_cooldown_ms: AtomicU64::new(0),
            fleet_ejection_ms: AtomicU64::new(0),
            fleet_reading: AtomicBool::new(false),
            fleet_ejection_seen_ms: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            cooldown_until_ms: AtomicU64::new(0),
            utilization_permille: AtomicU32::new(0),
            utilization_at_ms: AtomicU64::new(NONE),
            saturated: AtomicBool::new(false),
            active_healthy: AtomicBool::new(true),
            check_streak: std::sync::atomic::AtomicI32::new(0),
            failures: AtomicU32::new(0),
            failure_sources: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejected_by_connect: AtomicBool::new(false),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }

    fn us(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The capacity the current config gives this deployment, if any.
    pub fn set_capacity(&self, capacity_tpm: Option<u64>) {
        self.capacity_tpm.store(capacity_tpm.unwrap_or(0), Relaxed);
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.capacity_tpm.load(Relaxed)).filter(|c| *c > 0)
    }

    /// Utilization from the leaky-bucket model, in percent.
    pub fn level_percent(&self, now: Instant) -> f64 {
        self.level.percent(self.us(now))
    }

    /// How long until the leaky-bucket model falls below `percent` once `ahead` more
    /// tokens went in.
    pub fn level_time_to(&self, percent: f64, ahead: u64, now: Instant) -> Duration {
        self.level
            .time_to(self.us(now), percent, ahead, self.capacity())
    }

    /// The second number used by the admitted-tokens window.
    fn second(&self, now: Instant) -> u64 {
        self.ms(now) / 1000
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Relaxed);
        InflightGuard(self.clone())
    }

    /// Takes a request onto this deployment: in flight, with `tokens` (its prompt plus
    /// output limit) added to the admitted window until the lease says what really happened.
    pub fn lease(self: &Arc<Self>, tokens: u64, now: Instant) -> Lease {
        let sec = self.second(now);
        self.admitted.add(sec, clamp_i64(tokens));
        self.fleet.add(clamp_i64(tokens));
        self.level.add(
            self.us(now),
            clamp_i64(tokens),
            self.capacity_tpm.load(Relaxed),
        );
        Lease {
            inflight: self.enter(),
            sec,
            tokens,
        }
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Relaxed)
    }

    /// Tokens admitted over the last minute.
    pub fn admitted_tokens(&self, now: Instant) -> u64 {
        self.admitted.sum(self.second(now))
    }

    /// 429s received since start.
    pub fn throttled_total(&self) -> u64 {
        self.throttled.load(Relaxed)
    }

    /// A 429 told us to wait `retry_after` (capped by the policy). The wait comes from the
    /// upstream, so every step saturates: no header value can wrap the deadline into the past.
    pub fn on_throttled(&self, retry_after: Duration, policy: &RoutingPolicy, now: Instant) {
        let wait = millis(retry_after.min(policy.max_cooldown));
        let until = self.ms(now).saturating_add(wait);
        self.cooldown_until_ms.fetch_max(until, Relaxed);
        self.fleet_cooldown_ms.fetch_max(until, Relaxed);
        self.throttled.fetch_add(1, Relaxed);
    }

    /// When an ejected or cooling-down deployment takes requests again, if it is either.
    pub fn back_in(&self, now: Instant) -> Option<Duration> {
        let ejected = self
            .ejected_until_ms
            .load(Relaxed)
            .saturating_sub(self.ms(now));
        let left = self.cooldown_left(now).map_or(0, |d| d.as_millis() as u64);
        let wait = ejected.max(left);
        (wait > 0).then(|| Duration::from_millis(wait))
    }

    /// Time left in the current cool-down.
    pub fn cooldown_left(&self, now: Instant) -> Option<Duration> {
        let until = self.cooldown_until_ms.load(Relaxed);
        let at = self.ms(now);
        (until > at).then(|| Duration::from_millis(until - at))
    }

    /// Records `azure-openai-deployment-utilization` and moves the saturation latch.
    pub fn on_utilization(
        &self,
        percent: f64,
        spill_at: f64,
        policy: &RoutingPolicy,
        now: Instant,
    ) {
        self.record_utilization(percent, self.ms(now), spill_at, policy);
        self.level.set(self.us(now), percent);
        self.fleet_reading.store(true, Relaxed);
        self.hold.wake();
    }

    fn record_utilization(&self, percent: f64, at_ms: u64, spill_at: f64, policy: &RoutingPolicy) {
        let permille = (percent.clamp(0.0, 1000.0) * 10.0).round() as u32;
        self.utilization_permille.store(permille, Relaxed);
        self.utilization_at_ms.store(at_ms, Relaxed);
        if percent >= spill_at {
            self.saturated.store(true, Relaxed);
        } else if percent < spill_at - policy.hysteresis_percent {
            self.saturated.store(false, Relaxed);
        }
    }

    /// The latest utilization reading, if still fresh.
    pub fn utilization(&self, policy: &RoutingPolicy, now: Instant) -> Option<f64> {
        let at = self.utilization_at_ms.load(Relaxed);
        if at == NONE || self.ms(now).saturating_sub(at) > millis(policy.utilization_ttl) {
            return None;
        }
        Some(f64::from(self.utilization_permille.load(Relaxed)) / 10.0)
    }

    /// Utilization predicted from the tokens sent in the last minute, for a deployment with
    /// a known capacity.
    pub fn predicted_utilization(&self, capacity_tpm: u64, now: Instant) -> f64 {
        self.fleet_admitted_tokens(now) as f64 * 100.0 / capacity_tpm.max(1) as f64
    }

    /// Tokens the whole fleet admitted over the last minute, as far as this instance knows
    /// (its own for a single gateway).
    pub fn fleet_admitted_tokens(&self, now: Instant) -> u64 {
        self.fleet.total(self.admitted_tokens(now))
    }

    /// What the fleet should learn from this instance, taken for one exchange.
    pub fn fleet_news(&self, now: Instant) -> FleetNews {
        let at = self.ms(now);
        let left = |until: u64| until.saturating_sub(at);
        let reading = self.fleet_reading.swap(false, Relaxed);
        let reading_at = self.utilization_at_ms.load(Relaxed);
        FleetNews {
            admitted: self.admitted_tokens(now),
            unsynced: self.fleet.unsynced(),
            cooldown_ms: left(self.fleet_cooldown_ms.swap(0, Relaxed)),
            ejection_ms: left(self.fleet_ejection_ms.swap(0, Relaxed)),
            reading: (reading && reading_at != NONE).then(|| {
                (
                    self.utilization_permille.load(Relaxed),
                    at.saturating_sub(reading_at),
                )
            }),
        }
    }

    /// The exchange carrying `news` failed: keep it for the next one.
    pub fn restore_news(&self, news: &FleetNews, now: Instant) {
        let at = self.ms(now);
        if news.cooldown_ms > 0 {
            self.fleet_cooldown_ms
                .fetch_max(at.saturating_add(news.cooldown_ms), Relaxed);
        }
        if news.ejection_ms > 0 {
            self.fleet_ejection_ms
                .fetch_max(at.saturating_add(news.ejection_ms), Relaxed);
        }
        if news.reading.is_some() {
            self.fleet_reading.store(true, Relaxed);
        }
    }

    /// Takes in the fleet's view of this deployment after an exchange that carried `news`.
    pub fn adopt(
        &self,
        news: &FleetNews,
        view: &FleetView,
        spill_at: f64,
        policy: &RoutingPolicy,
        now: Instant,
    ) {
        let at = self.ms(now);
        // What the others sent since the last exchange fills the bucket as it fills Azure's.
        let others = view
            .recent
            .saturating_sub(u64::try_from(news.unsynced).unwrap_or(0));
        self.level.add(
            self.us(now),
            clamp_i64(others),
            self.capacity_tpm.load(Relaxed),
        );
        self.fleet.apply(
            view.admitted.saturating_sub(news.admitted),
            view.recent
                .saturating_sub(u64::try_from(news.unsynced).unwrap_or(0)),
            view.members,
            news.unsynced,
        );
        if view.cooldown_ms > 0 {
            let until = at.saturating_add(view.cooldown_ms.min(millis(policy.max_cooldown)));
            self.cooldown_until_ms.fetch_max(until, Relaxed);
        }
        if view.ejection_ms > 0 {
            let until = at.saturating_add(view.ejection_ms);
            // The same ejection comes back on every exchange until it ends, a little later
            // each time by the round trip: take it once, and a later one when there is one.
            let seen = self.fleet_ejection_seen_ms.load(Relaxed);
            if until > seen.saturating_add(1_000) || seen == 0 {
                self.fleet_ejection_seen_ms.store(until, Relaxed);
                if until > self.ejected_until_ms.load(Relaxed) {
                    self.ejected_until_ms.store(until, Relaxed);
                    self.ejected_by_connect.store(false, Relaxed);
                }
            }
        }
        if let Some((permille, age)) = view.reading {
            let reading_at = at.saturating_sub(age);
            let mine = self.utilization_at_ms.load(Relaxed);
            if mine == NONE || reading_at > mine {
                let percent = f64::from(permille) / 10.0;
                self.record_utilization(percent, reading_at, spill_at, policy);
                self.level.set(
                    self.us(now).saturating_sub(age.saturating_mul(1000)),
                    percent,
                );
            }
        }
    }

    /// A successful response: passive health recovers.
    pub fn on_success(&self) {
        self.failures.store(0, Relaxed);
        self.failure_sources.store(0, Relaxed);
        self.ejections.store(0, Relaxed);
    }

    /// A connect error, 5xx or timeout. Returns true when this failure ejected the
    /// deployment: after `eject_after_failures` in a row, and (unless one was a connect
    /// failure) from at least `eject_min_sources` sources.
    pub fn on_failure(&self, failure: Failure, policy: &RoutingPolicy, now: Instant) -> bool {
        let connect = failure == Failure::Connect;
        let sources = match failure {
            Failure::Connect => u32::MAX,
            Failure::Request { source } => {
                // Sources are addresses: mix them so that their aligned low bits do not
                // all land on the same bit.
                let bit = 1u64 << (source.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
                (self.failure_sources.fetch_or(bit, Relaxed) | bit).count_ones()
            }
        };
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n < policy.eject_after_failures.max(1) || sources < policy.eject_min_sources {
            return false;
        }
        let k = self.ejections.fetch_add(1, Relaxed).min(3);
        // `eject_ms` is the operator's, unbounded: doubling it must not overflow a Duration.
        let length = policy.eject_for.saturating_mul(1u32 << k);
        let until = self.ms(now).saturating_add(millis(length));
        self.ejected_until_ms.store(until, Relaxed);
        self.fleet_ejection_ms.fetch_max(until, Relaxed);
        self.fleet_ejection_seen_ms.fetch_max(until, Relaxed);
        self.ejected_by_connect.store(connect, Relaxed);
        // Half-open when the ejection ends: the next failure ejects again, for longer.
        self.failures
            .store(policy.eject_after_failures.max(1) - 1, Relaxed);
        true
    }

    /// Forces the active health flag (tests, and the checker below).
    pub fn set_active_health(&self, healthy: bool) {
        self.active_healthy.store(healthy, Relaxed);
    }

    /// Counts one active check; the flag flips after `unhealthy_after` fails in a row or
    /// `healthy_after` passes in a row. Returns the new flag when it changed.
    pub fn record_check(&self, ok: bool, unhealthy_after: u32, healthy_after: u32) -> Option<bool> {
        let prev = self.check_streak.load(Relaxed);
        let streak = match (ok, prev > 0) {
            (true, true) => prev.saturating_add(1),
            (true, false) => 1,
            (false, false) => prev.saturating_sub(1),
            (false, true) => -1,
        };
        self.check_streak.store(streak, Relaxed);
        if ok && self.ejected_by_connect.swap(false, Relaxed) {
            self.ejected_until_ms.store(0, Relaxed);
        }
        let healthy = self.is_healthy();
        if !healthy && ok && streak >= healthy_after as i32 {
            // Reachable again: a passive ejection from the same outage ends with it.
            self.set_active_health(true);
            self.on_success();
            self.ejected_until_ms.store(0, Relaxed);
            return Some(true);
        }
        if healthy && !ok && -streak >= unhealthy_after as i32 {
            self.set_active_health(false);
            return Some(false);
        }
        None
    }

    pub fn is_healthy(&self) -> bool {
        self.active_healthy.load(Relaxed)
    }

    /// Why this deployment should not take a request now, if it should not. `spill_at` is
    /// its pool's threshold and `capacity_tpm` its configured capacity, if any.
    pub fn skip(
        &self,
        max_inflight: Option<u32>,
        spill_at: f64,
        capacity_tpm: Option<u64>,
        policy: &RoutingPolicy,
        now: Instant,
    ) -> Option<Skip> {
        self.skip_for(
            max_inflight,
            spill_at,
            capacity_tpm,
            Gauge::default(),
            policy,
            now,
        )
    }

    /// [`skip`](Self::skip) as a request of a class that reads saturation through `gauge`.
    pub fn skip_for(
        &self,
        max_inflight: Option<u32>,
        spill_at: f64,
        capacity_tpm: Option<u64>,
        gauge: Gauge,
        policy: &RoutingPolicy,
        now: Instant,
    ) -> Option<Skip> {
        if !self.is_healthy() {
            return Some(Skip::Unhealthy);
        }
        if self.ejected_until_ms.load(Relaxed) > self.ms(now) {
            return Some(Skip::Ejected);
        }
        if self.cooldown_left(now).is_some() {
            return Some(Skip::Cooldown);
        }
        if max_inflight.is_some_and(|max| self.inflight.load(Relaxed) >= max) {
            return Some(Skip::Inflight);
        }
        let spill_at = gauge.spill_at.unwrap_or(spill_at);
        if gauge.bucket {
            return (self.level_percent(now) >= spill_at).then_some(Skip::Predicted);
        }
        match self.utilization(policy, now) {
            Some(u) if gauge.spill_at.is_some() && u >= spill_at => return Some(Skip::Utilization),
            Some(_) if gauge.spill_at.is_none() && self.saturated.load(Relaxed) => {
                return Some(Skip::Utilization)
            }
            // A stale reading proves nothing; the latch waits for the next one.
            _ => {}
        }
        if let Some(cap) = capacity_tpm {
            if self.predicted_utilization(cap, now) >= spill_at {
                return Some(Skip::Predicted);
            }
        }
        None
    }

    /// Status fields for /status.
    pub fn status(&self, policy: &RoutingPolicy, now: Instant) -> serde_json::Value {
        let ejected_ms = self
            .ejected_until_ms
            .load(Relaxed)
            .saturating_sub(self.ms(now));
        serde_json::json!({
            "healthy": self.is_healthy(),
            "ejected_ms": ejected_ms,
            "cooldown_ms": self.cooldown_left(now).map_or(0, millis),
            "utilization_percent": self.utilization(policy, now),
            "saturated": self.saturated.load(Relaxed),
            "modelled_utilization_percent": self.level_percent(now),
            "held": self.hold.len(),
            "inflight": self.inflight.load(Relaxed),
            "admitted_tokens_last_minute": self.admitted_tokens(now),
            "fleet_admitted_tokens_last_minute": self.fleet_admitted_tokens(now),
            "throttled_total": self.throttled.load(Relaxed),
            "consecutive_failures": self.failures.load(Relaxed),
            "output_tokens_per_second": self.rate.rate(now),
        })
    }
}

impl DeploymentState {
    /// Corrects the admitted window, and what the fleet is told was added.
    fn amend(&self, sec: u64, delta: i64) {
        if self.admitted.amend(sec, delta) {
            self.fleet.add(delta);
        }
        self.level.add(
            self.us(Instant::now()),
            delta,
            self.capacity_tpm.load(Relaxed),
        );
    }
}

/// What one instance tells the fleet about a deployment at one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetNews {
    /// Its own admitted tokens over the last minute.
    pub admitted: u64,
    /// Added since the previous exchange (see `FleetCount`).
    pub unsynced: i64,
    /// What is left of a cool-down or an ejection it imposed since the last exchange.
    pub cooldown_ms: u64,
    pub ejection_ms: u64,
    /// A utilization reading it got since the last exchange, in permille, and its age.
    pub reading: Option<(u32, u64)>,
}

/// The fleet's view of a deployment after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetView {
    pub members: u32,
    /// Every member's admitted tokens over the last minute, this one's included.
    pub admitted: u64,
    /// What every member admitted between its last two exchanges, this one's included.
    pub recent: u64,
    /// The longest cool-down and ejection any member imposed, still to run.
    pub cooldown_ms: u64,
    pub ejection_ms: u64,
    /// The newest utilization reading any member got, in permille, and its age.
    pub reading: Option<(u32, u64)>,
}

/// Decrements the in-flight count when the attempt ends, however it ends.
#[derive(Debug)]
pub struct InflightGuard(Arc<DeploymentState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
        // A request waiting for an in-flight slot may take this one.
        self.0.hold.wake();
    }
}

/// Whole milliseconds, saturating where `as u64` would silently truncate a `u128`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn clamp_i64(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

/// One request's hold on a deployment: counted in flight, and its estimated tokens in the
/// admitted window. It ends exactly once, because each way to end it consumes it: `release`
/// takes the tokens back (the deployment generated nothing), `settle` replaces the estimate
/// by the real count, and a lease dropped without either keeps its estimate, an upper bound.
/// Every way leaves the in-flight count.
#[derive(Debug)]
pub struct Lease {
    inflight: InflightGuard,
    /// The second the tokens went into, where their corrections go too.
    sec: u64,
    tokens: u64,
}

impl Lease {
    /// Nothing was generated (connect failure, a status replayed elsewhere, a client that
    /// left before the answer): the tokens come back out of the window.
    pub fn release(self) {
        self.inflight.0.amend(self.sec, -clamp_i64(self.tokens));
    }

    /// The request ended having used `actual` tokens, when the upstream said (or the stream
    /// showed) how many; without a count the estimate stands.
    pub fn settle(self, actual: Option<u64>) {
        if let Some(actual) = actual {
            let delta = clamp_i64(actual).saturating_sub(clamp_i64(self.tokens));
            self.inflight.0.amend(self.sec, delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures while serving two different tenants.
    const A: Failure = Failure::Request { source: 1 };
    const B: Failure = Failure::Request { source: 2 };

    const P: RoutingPolicy = RoutingPolicy {
        max_cooldown: Duration::from_secs(60),
        utilization_ttl: Duration::from_secs(10),
        hysteresis_percent: 10.0,
        eject_after_failures: 3,
        eject_min_sources: 2,
        eject_for: Duration::from_secs(10),
    };

    fn skip(s: &DeploymentState) -> Option<Skip> {
        s.skip(None, 90.0, None, &P, Instant::now())
    }

    #[test]
    fn guard_counts_in_flight() {
        let s = Arc::new(DeploymentState::new());
        let a = s.enter();
        let b = s.enter();
        assert_eq!(s.inflight(), 2);
        assert_eq!(
            s.skip(Some(2), 90.0, None, &P, Instant::now()),
            Some(Skip::Inflight)
        );
        drop(a);
        drop(b);
        assert_eq!(s.inflight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_is_capped_and_expires() {
        let s = DeploymentState::new();
        s.on_throttled(Duration::from_secs(86_400), &P, Instant::now());
        assert_eq!(
            s.cooldown_left(Instant::now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(skip(&s), Some(Skip::Cooldown));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(skip(&s), None);
    }

    #[tokio::test(start_paused = true)]
    async fn utilization_latch_has_hysteresis_and_goes_stale() {
        let s = DeploymentState::new();
        let now = Instant::now;
        s.on_utilization(89.9, 90.0, &P, now());
        assert_eq!(skip(&s), None);
        s.on_utilization(90.0, 90.0, &P, now());
        assert_eq!(skip(&s), Some(Skip::Utilization));
        s.on_utilization(85.0, 90.0, &P, now());
        assert_eq!(
            skip(&s),
            Some(Skip::Utilization),
            "inside the hysteresis band"
        );
        s.on_utilization(79.9, 90.0, &P, now());
        assert_eq!(skip(&s), None);
        s.on_utilization(95.0, 90.0, &P, now());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(skip(&s), None, "a stale reading does not block");
        assert_eq!(s.utilization(&P, now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_ends_once_whichever_way() {
        let s = Arc::new(DeploymentState::new());
        let now = Instant::now();
        let (a, b, c) = (s.lease(1_000, now), s.lease(500, now), s.lease(300, now));
        assert_eq!((s.inflight(), s.admitted_tokens(now)), (3, 1_800));
        a.release();
        assert_eq!((s.inflight(), s.admitted_tokens(now)), (2, 800));
        tokio::time::advance(Duration::from_secs(5)).await;
        let later = Instant::now();
        b.settle(Some(120));
        assert_eq!((s.inflight(), s.admitted_tokens(later)), (1, 420));
        drop(c);
        assert_eq!(
            (s.inflight(), s.admitted_tokens(later)),
            (0, 420),
            "dropped: the estimate stands"
        );
        let d = s.lease(u64::MAX, later);
        d.settle(Some(10));
        assert_eq!(
            s.admitted_tokens(later),
            430,
            "no overflow from a wild count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn prediction_from_recent_tokens() {
        let s = Arc::new(DeploymentState::new());
        let now = Instant::now();
        let _lease = s.lease(9_000, now);
        assert_eq!(
            s.skip(None, 90.0, Some(10_000), &P, now),
            Some(Skip::Predicted)
        );
        assert_eq!(s.skip(None, 90.0, Some(20_000), &P, now), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.skip(None, 90.0, Some(10_000), &P, Instant::now()), None);
    }

    #[test]
    fn a_passing_check_ends_a_connect_ejection_only() {
        let p = RoutingPolicy {
            eject_after_failures: 1,
            eject_min_sources: 1,
            ..P
        };
        let s = DeploymentState::new();
        assert!(s.on_failure(Failure::Connect, &p, Instant::now()));
        assert_eq!(s.record_check(true, 2, 2), None);
        assert_eq!(skip(&s), None, "reachable again");
        assert!(s.on_failure(A, &p, Instant::now()));
        s.record_check(true, 2, 2);
        assert_eq!(
            skip(&s),
            Some(Skip::Ejected),
            "a 503 is not disproved by a TCP connect"
        );
    }

    #[test]
    fn active_checks_flip_after_streaks() {
        let s = DeploymentState::new();
        assert_eq!(s.record_check(false, 2, 2), None);
        assert_eq!(s.record_check(false, 2, 2), Some(false));
        assert_eq!(s.record_check(false, 2, 2), None);
        assert_eq!(s.record_check(true, 2, 2), None);
        assert_eq!(
            s.record_check(false, 2, 2),
            None,
            "a pass then a fail starts over"
        );
        assert_eq!(s.record_check(true, 2, 2), None);
        assert_eq!(s.record_check(true, 2, 2), Some(true));
        assert!(s.is_healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_backs_off_and_heals() {
        let s = DeploymentState::new();
        assert!(!s.on_failure(A, &P, Instant::now()));
        assert!(!s.on_failure(B, &P, Instant::now()));
        assert!(s.on_failure(A, &P, Instant::now()));
        assert_eq!(skip(&s), Some(Skip::Ejected));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(skip(&s), None, "half-open after the ejection");
        assert!(
            s.on_failure(A, &P, Instant::now()),
            "one more failure ejects again"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            skip(&s),
            Some(Skip::Ejected),
            "the second ejection lasts twice as long"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        s.on_success();
        assert_eq!(skip(&s), None);
        assert!(
            !s.on_failure(A, &P, Instant::now()),
            "a success resets the count"
        );
    }

    #[test]
    fn one_source_alone_cannot_eject_but_a_connect_failure_needs_none() {
        let s = DeploymentState::new();
        for _ in 0..10 {
            assert!(!s.on_failure(A, &P, Instant::now()), "one tenant's 500s");
        }
        assert!(
            s.on_failure(B, &P, Instant::now()),
            "a second tenant's failure"
        );
        let s = DeploymentState::new();
        assert!(!s.on_failure(A, &P, Instant::now()));
        assert!(!s.on_failure(A, &P, Instant::now()));
        assert!(s.on_failure(Failure::Connect, &P, Instant::now()));
        let single_tenant = RoutingPolicy {
            eject_min_sources: 1,
            ..P
        };
        let s = DeploymentState::new();
        assert!(!s.on_failure(A, &single_tenant, Instant::now()));
        assert!(!s.on_failure(A, &single_tenant, Instant::now()));
        assert!(s.on_failure(A, &single_tenant, Instant::now()));
    }

    #[test]
    fn back_in_is_the_later_of_ejection_and_cool_down() {
        let s = DeploymentState::new();
        let now = Instant::now();
        assert_eq!(s.back_in(now), None);
        s.on_throttled(Duration::from_secs(3), &P, now);
        assert_eq!(s.back_in(now), Some(Duration::from_secs(3)));
        for _ in 0..3 {
            s.on_failure(Failure::Connect, &P, now);
        }
        assert_eq!(s.back_in(now), Some(P.eject_for));
    }

    /// One member's lessons reach another through the news and views the sync task carries.
    #[tokio::test(start_paused = true)]
    async fn news_from_one_member_becomes_another_members_state() {
        let (a, b) = (Arc::new(DeploymentState::new()), DeploymentState::new());
        let now = Instant::now();
        a.on_throttled(Duration::from_secs(5), &P, now);
        a.on_utilization(95.0, 90.0, &P, now);
        let _lease = a.lease(4_000, now);
        let news = a.fleet_news(now);
        assert_eq!(news.cooldown_ms, 5_000);
        assert_eq!(news.reading, Some((950, 0)));
        assert_eq!((news.admitted, news.unsynced), (4_000, 4_000));
        assert_eq!(a.fleet_news(now).cooldown_ms, 0, "news is sent once");
        // What the fleet answers b (which admitted nothing) after a's exchange.
        let view = FleetView {
            members: 2,
            admitted: 4_000,
            recent: 4_000,
            cooldown_ms: 4_990,
            ejection_ms: 0,
            reading: Some((950, 10)),
        };
        b.adopt(&b.fleet_news(now), &view, 90.0, &P, now);
        assert_eq!(b.cooldown_left(now), Some(Duration::from_millis(4_990)));
        assert_eq!(skip(&b), Some(Skip::Cooldown));
        assert_eq!(b.utilization(&P, now), Some(95.0));
        // a's 4,000, and as much again: a added all of it since its previous exchange, so
        // until b hears otherwise, a is assumed to keep adding at that pace.
        assert_eq!(b.fleet_admitted_tokens(now), 8_000);
        assert_eq!(
            b.fleet_news(now).reading,
            None,
            "an adopted reading is not sent back"
        );
        // An exchange that failed keeps a's news for the next one.
        a.on_throttled(Duration::from_secs(2), &P, now);
        let news = a.fleet_news(now);
        a.restore_news(&news, now);
        assert_eq!(a.fleet_news(now).cooldown_ms, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_ejection_is_taken_once() {
        let s = DeploymentState::new();
        let now = Instant::now();
        let view = FleetView {
            members: 3,
            ejection_ms: 8_000,
            ..FleetView::default()
        };
        s.adopt(&FleetNews::default(), &view, 90.0, &P, now);
        assert_eq!(s.back_in(now), Some(Duration::from_secs(8)));
        // A passing check ends it here (say it was a connect ejection this member disproved
        // by other means): the same ejection coming back on the next exchanges is not retaken.
        s.ejected_until_ms.store(0, Relaxed);
        tokio::time::advance(Duration::from_millis(100)).await;
        let later = FleetView {
            ejection_ms: 7_900,
            ..view
        };
        s.adopt(&FleetNews::default(), &later, 90.0, &P, Instant::now());
        assert_eq!(s.back_in(Instant::now()), None);
        // A new, later ejection is.
        let new = FleetView {
            ejection_ms: 20_000,
            ..view
        };
        s.adopt(&FleetNews::default(), &new, 90.0, &P, Instant::now());
        assert_eq!(s.back_in(Instant::now()), Some(Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_model_takes_tokens_readings_and_the_fleets_share() {
        let s = Arc::new(DeploymentState::new());
        s.set_capacity(Some(60_000));
        let now = Instant::now();
        // 6,000 tokens of a 60,000 TPM deployment: 10%, drained in 6 s.
        let lease = s.lease(6_000, now);
        assert!((s.level_percent(now) - 10.0).abs() < 1e-6);
        let held = Gauge {
            spill_at: Some(5.0),
            bucket: true,
        };
        assert_eq!(
            s.skip_for(None, 90.0, Some(60_000), held, &P, now),
            Some(Skip::Predicted)
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!((s.level_percent(Instant::now()) - 5.0).abs() < 1e-6);
        // The usage says 600 tokens: the other 5,400 come back out.
        lease.settle(Some(600));
        assert_eq!(
            s.skip_for(None, 90.0, Some(60_000), held, &P, Instant::now()),
            None
        );
        // A reading is the truth; the others' tokens of the last exchange go in too.
        s.on_utilization(40.0, 90.0, &P, Instant::now());
        assert!((s.level_percent(Instant::now()) - 40.0).abs() < 1e-6);
        let view = FleetView {
            members: 2,
            recent: 12_000,
            ..FleetView::default()
        };
        s.adopt(&FleetNews::default(), &view, 90.0, &P, Instant::now());
        assert!((s.level_percent(Instant::now()) - 60.0).abs() < 1e-6);
    }
}
