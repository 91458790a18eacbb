//! The fleet model's engine: N gateways, each with the gateway's own budget and load code
//! (`LocalBudget`, `DeploymentState` and its `FleetCount`), exchanging through the gateway's
//! own wire format with an in-memory port of the Redis script (`fleet_port`), on a clock the
//! caller drives (tokio's paused clock: see `src/bin/fleet_model.rs`). No network, no
//! threads, no randomness here: the same setup gives the same outcome.

use crate::fleet_port::Server;
use spillway::governance::budget::{BudgetLimits, BudgetStore, Grant, LocalBudget, OverBudget};
use spillway::ops::fleet::wire::{self, Incoming, Outgoing};
use spillway::routing::state::{DeploymentState, FleetNews, RoutingPolicy};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Redis's clock when the model starts (milliseconds since the epoch, as `TIME` gives).
const REDIS_EPOCH_MS: u64 = 1_700_000_000_000;
const PREFIX: &str = "spw";
const TENANT: &str = "tenant";
const PTU: &str = "ptu";

/// A PTU deployment: its capacity and its pool's spill threshold.
#[derive(Debug, Clone, Copy)]
pub struct Ptu {
    pub capacity_tpm: u64,
    pub spill_at: f64,
}

/// One request: when, at which instance, its estimated tokens.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: Duration,
    pub instance: usize,
    pub tokens: u64,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Setup {
    pub members: usize,
    /// `None`: no fleet section, each instance alone with the whole limit (the single
    /// gateway of reference when `members` is 1).
    pub interval: Option<Duration>,
    /// From sending an exchange to applying its answer; the script runs half-way.
    pub rtt: Duration,
    /// The one tenant's tokens per minute, if it has a budget.
    pub tenant_tpm: Option<u64>,
    pub ptu: Option<Ptu>,
    /// Sorted by time.
    pub arrivals: Vec<Arrival>,
    pub duration: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests the tenant's budget admitted: when and how many tokens.
    pub admitted: Vec<(Duration, u64)>,
    pub refused: u64,
    /// The waits (`Retry-After`) the refused requests were told, summed.
    pub refused_wait: Duration,
    /// Requests sent to the PTU (when and tokens), and those spilled past it.
    pub ptu_admitted: Vec<(Duration, u64)>,
    pub ptu_spilled: u64,
    /// The largest fleet total any instance predicted for the PTU when it admitted a request.
    pub ptu_seen_max: u64,
    pub exchanges: u64,
    /// Exchanges the script failed (each instance then falls back, as `ops::fleet` does).
    pub failed: u64,
    /// Commands the script issued over the run.
    pub calls: BTreeMap<&'static str, u64>,
}

/// The script's answer, decoded, or the error Redis gave.
type Answer = Result<Incoming, &'static str>;

/// One gateway.
struct Instance {
    id: String,
    budget: LocalBudget,
    ptu: Arc<DeploymentState>,
    /// The exchange on its way: what was sent, the ARGV, and once the script ran, the answer.
    pending: Option<(Outgoing, Vec<String>, Option<Answer>)>,
    /// The fleet size at the last exchange, for a fall-back.
    members: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Send,
    Run,
    Land,
}

/// Runs `setup`, calling `advance` to move the clock from one event to the next.
pub async fn run<F, Fut>(setup: &Setup, mut advance: F) -> Outcome
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let n = setup.members.max(1);
    let limits = BudgetLimits {
        tokens_per_minute: setup.tenant_tpm,
        requests_per_minute: None,
    };
    let policy = RoutingPolicy::default();
    let mut instances: Vec<Instance> = (0..n)
        .map(|i| {
            let inst = Instance {
                id: format!("gw-{i:02}"),
                budget: LocalBudget::default(),
                ptu: Arc::new(DeploymentState::new()),
                pending: None,
                members: n as u32,
            };
            if setup.interval.is_some() {
                // Joining: each holds its share of the expected fleet (ops::fleet, `Joining`).
                inst.budget.fall_back(n as u32, start);
                inst.ptu.fleet.fall_back(n as u32);
            }
            inst
        })
        .collect();
    let mut server = Server::new();
    let mut out = Outcome::default();
    // Exchanges: (time, step, instance), the earliest first.
    let mut queue: BinaryHeap<Reverse<(Duration, Step, usize)>> = BinaryHeap::new();
    if let Some(interval) = setup.interval {
        assert!(setup.rtt < interval, "one exchange at a time per instance");
        for i in 0..n {
            // Phases spread evenly over the interval, none at its start, where the
            // scenarios' bursts fall.
            let phase = interval * (2 * i as u32 + 1) / (2 * n as u32);
            queue.push(Reverse((phase, Step::Send, i)));
        }
    }
    let member_timeout = setup.interval.map(|i| i * 5).unwrap_or_default();
    let timeout = setup
        .interval
        .map(|i| i.clamp(Duration::from_millis(50), Duration::from_secs(1)))
        .unwrap_or_default();
    let mut clock = Duration::ZERO;
    let mut arrivals = setup.arrivals.iter().peekable();
    loop {
        let next_arrival = arrivals.peek().map(|a| a.at);
        let next_exchange = queue.peek().map(|Reverse((t, _, _))| *t);
        // Requests first when both fall on the same instant.
        let at = match (next_arrival, next_exchange) {
            (Some(a), Some(e)) => a.min(e),
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (None, None) => break,
        };
        if at >= setup.duration {
            break;
        }
        if at > clock {
            advance(at - clock).await;
            clock = at;
        }
        let now = Instant::now();
        debug_assert_eq!(now - start, clock, "the clock is the caller's, and paused");
        if next_arrival == Some(at) {
            let a = *arrivals.next().expect("peeked");
            let inst = &instances[a.instance];
            if limits.tokens_per_minute.is_some() {
                if let Err(e) = inst.budget.admit(limits, a.tokens, now) {
                    out.refused += 1;
                    if let OverBudget::RetryAfter { wait, .. } = e {
                        out.refused_wait += wait;
                    }
                    continue;
                }
                out.admitted.push((at, a.tokens));
            }
            if let Some(p) = setup.ptu {
                let seen = inst.ptu.fleet_admitted_tokens(now);
                if inst
                    .ptu
                    .skip(None, p.spill_at, Some(p.capacity_tpm), &policy, now)
                    .is_some()
                {
                    out.ptu_spilled += 1;
                } else {
                    out.ptu_seen_max = out.ptu_seen_max.max(seen);
                    // Dropped at once: the estimate stands in the window (no usage report).
                    drop(inst.ptu.lease(a.tokens, now));
                    out.ptu_admitted.push((at, a.tokens));
                }
            }
            continue;
        }
        let Reverse((_, step, i)) = queue.pop().expect("peeked");
        let interval = setup.interval.expect("exchanges only in a fleet");
        let inst = &mut instances[i];
        match step {
            Step::Send => {
                // As `ops::fleet::collect`.
                let o = Outgoing {
                    tenants: setup
                        .tenant_tpm
                        .map(|tpm| (TENANT.to_string(), tpm, 0, inst.budget.report()))
                        .into_iter()
                        .collect(),
                    deployments: setup
                        .ptu
                        .map(|_| (PTU.to_string(), inst.ptu.fleet_news(now)))
                        .into_iter()
                        .collect(),
                    ..Outgoing::default()
                };
                let timeout_ms = member_timeout.as_millis() as u64;
                let args = wire::args(PREFIX, &inst.id, timeout_ms, false, &o);
                inst.pending = Some((o, args, None));
                queue.push(Reverse((at + setup.rtt / 2, Step::Run, i)));
                queue.push(Reverse((at + interval, Step::Send, i)));
            }
            Step::Run => {
                let (o, args, answer) = inst.pending.as_mut().expect("sent");
                let redis_now = REDIS_EPOCH_MS + clock.as_millis() as u64;
                let decoded = server.eval(args, redis_now).map(|reply| {
                    wire::decode(
                        redis::Value::Array(reply),
                        o.tenants.len(),
                        o.deployments.len(),
                    )
                    .expect("the port answers what the gateway reads")
                });
                *answer = Some(decoded);
                out.exchanges += 1;
                queue.push(Reverse((at + setup.rtt - setup.rtt / 2, Step::Land, i)));
            }
            Step::Land => {
                let (o, _, answer) = inst.pending.take().expect("sent");
                let Ok(incoming) = answer.expect("ran") else {
                    // As `ops::fleet::restore` and the fall-back after a failed exchange
                    // (without the back-off: the next exchange keeps its phase).
                    out.failed += 1;
                    for (_, _, _, report) in &o.tenants {
                        inst.budget.restore(report);
                    }
                    for (_, news) in &o.deployments {
                        inst.ptu.restore_news(news, now);
                    }
                    inst.budget.fall_back(inst.members, now);
                    inst.ptu.fleet.fall_back(inst.members);
                    continue;
                };
                inst.members = incoming.members;
                // As `ops::fleet::apply`.
                let until = now + interval * 2 + timeout;
                if let (Some(&lease), Some(&unleased)) =
                    (incoming.leases.first(), incoming.unleased.first())
                {
                    inst.budget.grant(Grant {
                        lease,
                        unleased,
                        members: incoming.members,
                        next_exchange: interval,
                        until,
                        now,
                    });
                }
                if let (Some(p), Some((_, news)), Some(view)) =
                    (setup.ptu, o.deployments.first(), incoming.views.first())
                {
                    let news: &FleetNews = news;
                    inst.ptu.adopt(news, view, p.spill_at, &policy, now);
                }
            }
        }
    }
    out.calls = server.calls.clone();
    out
}
