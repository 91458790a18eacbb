//! The fleet: one background task per instance that, every `sync_interval_ms`, exchanges
//! this instance's news for the fleet's view in a single Redis round trip (`exchange.lua`).
//! Requests never wait on Redis: they read and write local state only (tenant budgets in
//! `governance::budget`, loads in `routing::fleet`, deployment state in `routing::state`),
//! which this task updates. When Redis cannot be reached every budget and load falls back
//! to this instance's share of the last known fleet, and the task rejoins with backoff.

pub mod wire;

use crate::config::{Config, Fleet};
use crate::governance::budget::Grant;
use crate::shared::Shared;
use crate::telemetry::fleet::Mode;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wire::{Incoming, Outgoing};

/// The longest wait between two attempts to reach Redis after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a gateway without a `fleet:` section looks again (a reload may add one).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The background service.
pub struct FleetSync {
    shared: Arc<Shared>,
}

impl FleetSync {
    pub fn new(shared: Arc<Shared>) -> Self {
        FleetSync { shared }
    }
}

/// Why an exchange failed, as a fixed label (metrics, `/status`, the log): Redis's own
/// messages are not passed on, so nothing from a URL or a reply can leak through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Timeout,
    Refused,
    Reply(&'static str),
}

impl Failure {
    fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Refused => "refused",
            Failure::Reply(_) => "reply",
        }
    }
}

/// The task's own state between rounds.
struct Link {
    /// The URL the connection was made for, to reconnect when a reload changes it.
    url: String,
    conn: MultiplexedConnection,
}

#[async_trait]
impl BackgroundService for FleetSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let script = Script::new(include_str!("fleet/exchange.lua"));
        let mut link: Option<Link> = None;
        let mut failures = 0u32;
        let mut next = Instant::now();
        loop {
            let config = self.shared.config();
            let Some(fleet) = config.fleet.clone() else {
                if self.shared.fleet.mode() != Mode::Off {
                    log::info!(
                        "fleet: the section is gone from the config; this instance is on its own"
                    );
                    self.shared.fleet.set_mode(Mode::Off, Instant::now());
                    fall_back(&config, 1, Instant::now());
                    link = None;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(IDLE_POLL) => continue,
                }
            };
            let now = Instant::now();
            let telemetry = &self.shared.fleet;
            telemetry.set_identity(
                &fleet.instance_id,
                &fleet.redis_display(),
                fleet.expected_members,
            );
            if telemetry.mode() == Mode::Off {
                telemetry.set_mode(Mode::Joining, now);
                fall_back(&config, fleet.expected_members, now);
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if let Some(l) = link.as_mut() {
                        // Leave at once, giving back what this instance holds.
                        let _ = exchange(&self.shared, &config, &fleet, &script, &mut l.conn, true).await;
                    }
                    return;
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            let outcome = round(&self.shared, &config, &fleet, &script, &mut link).await;
            let now = Instant::now();
            match outcome {
                Ok(members) => {
                    failures = 0;
                    telemetry.synced(members, now - started, now);
                    match telemetry.set_mode(Mode::Fleet, now) {
                        Mode::Fleet => {}
                        Mode::Local => log::warn!(
                            "fleet: Redis answers again; the fleet view is rebuilt ({members} members)"
                        ),
                        _ => log::info!(
                            "fleet: joined as {} ({members} members, Redis at {})",
                            fleet.instance_id,
                            fleet.redis_display()
                        ),
                    }
                    next = started + fleet.sync_interval;
                }
                Err(failure) => {
                    failures = failures.saturating_add(1);
                    telemetry.failed(failure.kind());
                    if matches!(failure, Failure::Connect | Failure::Timeout) {
                        link = None;
                    }
                    let members = telemetry.members();
                    fall_back(&config, members, now);
                    if telemetry.set_mode(Mode::Local, now) != Mode::Local {
                        log::warn!(
                            "fleet: cannot exchange with Redis at {} ({}); each budget falls back to 1/{members} on this instance until it answers",
                            fleet.redis_display(),
                            match failure {
                                Failure::Reply(why) => why,
                                f => f.kind(),
                            }
                        );
                    }
                    let wait = backoff(fleet.sync_interval, failures);
                    telemetry.in_fallback_for(wait);
                    next = now + wait;
                }
            }
        }
    }
}

/// Exponential from the sync interval up to [`MAX_BACKOFF`], with jitter so that a fleet
/// that lost Redis together does not come back in step.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = interval
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// Connects if needed, then runs one exchange. Returns the fleet size.
async fn round(
    shared: &Shared,
    config: &Config,
    fleet: &Fleet,
    script: &Script,
    link: &mut Option<Link>,
) -> Result<u32, Failure> {
    let url = fleet.redis_url.expose();
    if link.as_ref().is_none_or(|l| l.url != url) {
        *link = None;
        let client = redis::Client::open(url).map_err(|_| Failure::Connect)?;
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(fleet.timeout))
            .set_response_timeout(Some(fleet.timeout));
        let conn = tokio::time::timeout(
            fleet.timeout,
            client.get_multiplexed_async_connection_with_config(&settings),
        )
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|_| Failure::Connect)?;
        *link = Some(Link {
            url: url.to_string(),
            conn,
        });
    }
    let l = link.as_mut().ok_or(Failure::Connect)?;
    exchange(shared, config, fleet, script, &mut l.conn, false).await
}

/// Sends this instance's news, applies the fleet's answer; on any failure, puts the news
/// back for the next exchange.
async fn exchange(
    shared: &Shared,
    config: &Config,
    fleet: &Fleet,
    script: &Script,
    conn: &mut MultiplexedConnection,
    leaving: bool,
) -> Result<u32, Failure> {
    let now = Instant::now();
    let out = collect(shared, config, now);
    let args = wire::args(
        &fleet.key_prefix,
        &fleet.instance_id,
        u64::try_from(fleet.member_timeout.as_millis()).unwrap_or(u64::MAX),
        leaving,
        &out,
    );
    let mut call = script.prepare_invoke();
    for a in &args {
        call.arg(a);
    }
    let reply =
        match tokio::time::timeout(fleet.timeout, call.invoke_async::<redis::Value>(conn)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(Failure::Timeout),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => Err(Failure::Connect),
            Ok(Err(_)) => Err(Failure::Refused),
            Ok(Ok(v)) => {
                wire::decode(v, out.tenants.len(), out.deployments.len()).map_err(Failure::Reply)
            }
        };
    match reply {
        Ok(incoming) => {
            apply(shared, config, fleet, &out, &incoming, Instant::now());
            Ok(incoming.members)
        }
        Err(f) => {
            restore(config, &out, Instant::now());
            Err(f)
        }
    }
}

/// Deployments of the config, each once (a deployment may sit in several pools), with its
/// pool's spill threshold.
fn deployments(config: &Config) -> impl Iterator<Item = (&crate::config::Deployment, f64)> {
    let mut seen = HashSet::new();
    config
        .deployments()
        .filter(move |(_, d)| seen.insert(d.name.as_str()))
        .map(|(p, d)| (d.as_ref(), p.spill_at_utilization))
}

/// Tenants with a budget, in config order: the ones an exchange carries, in this order.
fn limited(config: &Config) -> impl Iterator<Item = &crate::config::Tenant> {
    config
        .tenants
        .all()
        .iter()
        .map(|t| t.as_ref())
        .filter(|t| t.limits.tokens_per_minute.is_some() || t.limits.requests_per_minute.is_some())
}

fn collect(shared: &Shared, config: &Config, now: Instant) -> Outgoing {
    let (requests, retries) = shared.retry_budget.own(now);
    Outgoing {
        requests,
        retries,
        requests_unsynced: shared.retry_budget.fleet_requests.unsynced(),
        retries_unsynced: shared.retry_budget.fleet_retries.unsynced(),
        tenants: limited(config)
            .map(|t| {
                (
                    t.name.clone(),
                    t.limits.tokens_per_minute.unwrap_or(0),
                    t.limits.requests_per_minute.unwrap_or(0),
                    t.budget.report(),
                )
            })
            .collect(),
        deployments: deployments(config)
            .map(|(d, _)| (d.name.clone(), d.state.fleet_news(now)))
            .collect(),
    }
}

fn apply(
    shared: &Shared,
    config: &Config,
    fleet: &Fleet,
    out: &Outgoing,
    incoming: &Incoming,
    now: Instant,
) {
    let members = incoming.members;
    let rb = &shared.retry_budget;
    rb.fleet_requests.apply(
        incoming.requests.saturating_sub(out.requests),
        0,
        members,
        out.requests_unsynced,
    );
    rb.fleet_retries.apply(
        incoming.retries.saturating_sub(out.retries),
        0,
        members,
        out.retries_unsynced,
    );
    // A lease is good until a little after the next exchange should have come back; a task
    // that stalls past that leaves the budget to fall back on its own.
    let until = now + fleet.sync_interval * 2 + fleet.timeout;
    for (t, (&lease, &unleased)) in
        limited(config).zip(incoming.leases.iter().zip(&incoming.unleased))
    {
        t.budget.grant(Grant {
            lease,
            unleased,
            members,
            next_exchange: fleet.sync_interval,
            until,
            now,
        });
    }
    for (((d, spill_at), (_, news)), view) in deployments(config)
        .zip(&out.deployments)
        .zip(&incoming.views)
    {
        d.state.adopt(news, view, spill_at, &config.routing, now);
    }
}

fn restore(config: &Config, out: &Outgoing, now: Instant) {
    for ((_, _, _, report), t) in out.tenants.iter().zip(limited(config)) {
        t.budget.restore(report);
    }
    for ((d, _), (_, news)) in deployments(config).zip(&out.deployments) {
        d.state.restore_news(news, now);
    }
}

/// Every budget and load of `config` stands for `members` instances from now on.
fn fall_back(config: &Config, members: u32, now: Instant) {
    for t in config.tenants.all() {
        t.budget.fall_back(members, now);
    }
    for (d, _) in deployments(config) {
        d.state.fleet.fall_back(members);
    }
}
