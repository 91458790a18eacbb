//! The fleet model: 3 to 50 gateways with the gateway's own budget and load code, syncing
//! through an in-memory port of the Redis script on tokio's paused clock, no network. It
//! measures the budget error and the PTU overshoot as functions of the sync interval and the
//! shape of the load, counts the Redis commands a fleet costs, and writes the tables to
//! `bench/results/fleet-model.md` (and stdout). Deterministic: fixed seeds, no wall clock.
//!
//! Run: `cargo run --release -p spillway-bench --bin fleet-model` (seconds, once built).

use spillway::governance::budget::BudgetReport;
use spillway::ops::fleet::wire::{self, Outgoing};
use spillway::routing::state::FleetNews;
use spillway_bench::fleet_model::{run, Arrival, Outcome, Ptu, Setup};
use spillway_bench::fleet_port::Server;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

const SIZES: [usize; 5] = [3, 5, 10, 20, 50];
const INTERVALS_MS: [u64; 4] = [50, 100, 250, 500];
/// The tenant's budget, tokens per minute.
const TPM: u64 = 30_000;
/// A typical request's tokens; each one is drawn from 80% to 120% of it.
const REQUEST: u64 = 1_000;
const RTT: Duration = Duration::from_millis(2);
const MINUTE: Duration = Duration::from_secs(60);
const SEED: u64 = 20_240_601;
/// The PTU: capacity and spill threshold (percent).
const PTU: Ptu = Ptu {
    capacity_tpm: 60_000,
    spill_at: 90.0,
};
/// When the PTU burst starts: the fleet has long joined. Each cell runs it from this many
/// starts spread over the next second, since where it falls between exchanges matters.
const PTU_BURST_AT: Duration = Duration::from_secs(10);
const PTU_STARTS: u64 = 8;

/// What the tables say; written for these scenarios' numbers, which do not change from run
/// to run (change the scenarios, read this again).
const READING: &str = include_str!("../fleet_model_reading.md");

fn size(rng: &mut fastrand::Rng) -> u64 {
    rng.u64(REQUEST * 8 / 10..=REQUEST * 12 / 10)
}

/// Poisson arrivals at ten times the budget's rate; `pick` chooses the instance.
fn poisson(n: usize, pick: impl Fn(&mut fastrand::Rng, usize) -> usize) -> Vec<Arrival> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let per_sec = 10.0 * TPM as f64 / REQUEST as f64 / 60.0;
    let mut t = 0.0;
    let mut v = Vec::new();
    loop {
        t += -(1.0 - rng.f64()).ln() / per_sec;
        if t >= MINUTE.as_secs_f64() {
            return v;
        }
        let instance = pick(&mut rng, n);
        v.push(Arrival {
            // Whole microseconds: the paused clock moves in steps the model chooses.
            at: Duration::from_micros((t * 1e6) as u64),
            instance,
            tokens: size(&mut rng),
        });
    }
}

fn spread(n: usize) -> Vec<Arrival> {
    poisson(n, |rng, n| rng.usize(..n))
}

/// 80% of the requests to the first instance, the rest spread over the others.
fn skewed(n: usize) -> Vec<Arrival> {
    poisson(n, |rng, n| {
        if n == 1 || rng.f64() < 0.8 {
            0
        } else {
            rng.usize(1..n)
        }
    })
}

/// Requests per instance per burst: each burst alone is about two minutes' budget.
fn burst_k(n: usize) -> usize {
    ((2 * TPM) as f64 / (n as f64 * REQUEST as f64))
        .round()
        .max(1.0) as usize
}

/// Every 3 s, every instance receives `burst_k` requests at the same instant.
fn bursts(n: usize) -> Vec<Arrival> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut v = Vec::new();
    for b in 0..20 {
        let at = Duration::from_secs(3 * b);
        for instance in 0..n {
            for _ in 0..burst_k(n) {
                v.push(Arrival {
                    at,
                    instance,
                    tokens: size(&mut rng),
                });
            }
        }
    }
    v
}

/// 150% of the PTU's capacity in requests of exactly `REQUEST` tokens, evenly over `over`
/// from `start`, round-robin over the instances.
fn ptu_burst(n: usize, start: Duration, over: Duration) -> Vec<Arrival> {
    let count = (PTU.capacity_tpm * 3 / 2 / REQUEST) as u32;
    (0..count)
        .map(|j| Arrival {
            at: start + over * j / count,
            instance: j as usize % n,
            tokens: REQUEST,
        })
        .collect()
}

async fn simulate(
    members: usize,
    interval: Option<u64>,
    tenant: bool,
    ptu: bool,
    arrivals: Vec<Arrival>,
    duration: Duration,
) -> Outcome {
    let setup = Setup {
        members,
        interval: interval.map(Duration::from_millis),
        rtt: RTT,
        tenant_tpm: tenant.then_some(TPM),
        ptu: ptu.then_some(PTU),
        arrivals,
        duration,
    };
    run(&setup, tokio::time::advance).await
}

/// The budget's figures from one run.
struct BudgetFigures {
    /// Admitted tokens against what one bucket could admit over the run, in percent.
    error: f64,
    /// The largest excess over the bucket's envelope, in percent of the budget.
    excess: f64,
    refused: f64,
    /// The mean `Retry-After` of the refusals, in seconds.
    wait: f64,
}

fn budget_figures(o: &Outcome, arrivals: usize, duration: Duration) -> BudgetFigures {
    let cap = TPM as f64;
    let bound = cap + cap * duration.as_secs_f64() / 60.0;
    let admitted: u64 = o.admitted.iter().map(|&(_, t)| t).sum();
    // A single bucket of `cap` refilled at `cap` a minute admits at most
    // cap + cap * W / 60 s over any window of length W: the largest excess over that.
    let mut excess = 0.0f64;
    for i in 0..o.admitted.len() {
        let mut sum = 0.0;
        for j in i..o.admitted.len() {
            sum += o.admitted[j].1 as f64;
            let w = (o.admitted[j].0 - o.admitted[i].0).as_secs_f64();
            excess = excess.max(sum - cap - cap * w / 60.0);
        }
    }
    BudgetFigures {
        error: (admitted as f64 - bound) * 100.0 / bound,
        excess: excess * 100.0 / cap,
        refused: o.refused as f64 * 100.0 / arrivals.max(1) as f64,
        wait: o.refused_wait.as_secs_f64() / o.refused.max(1) as f64,
    }
}

/// A table: rows by fleet size, columns by sync interval.
fn table(doc: &mut String, cells: &BTreeMap<(usize, u64), String>) {
    let _ = write!(doc, "| instances |");
    for ms in INTERVALS_MS {
        let _ = write!(doc, " {ms} ms |");
    }
    let _ = write!(doc, "\n|---:|");
    for _ in INTERVALS_MS {
        let _ = write!(doc, "---:|");
    }
    doc.push('\n');
    for n in SIZES {
        let _ = write!(doc, "| {n} |");
        for ms in INTERVALS_MS {
            let _ = write!(doc, " {} |", cells[&(n, ms)]);
        }
        doc.push('\n');
    }
    doc.push('\n');
}

fn pct(x: f64) -> String {
    let x = if x.abs() < 0.05 { 0.0 } else { x };
    format!("{x:+.1}%")
}

/// One budget scenario: both tables and the single gateway's figures for reference.
async fn budget_scenario(
    doc: &mut String,
    title: &str,
    about: &str,
    arrivals: fn(usize) -> Vec<Arrival>,
) {
    let _ = writeln!(doc, "### {title}\n\n{about}\n");
    let (mut error, mut excess, mut refused) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for n in SIZES {
        for ms in INTERVALS_MS {
            let a = arrivals(n);
            let count = a.len();
            let o = simulate(n, Some(ms), true, false, a, MINUTE).await;
            let f = budget_figures(&o, count, MINUTE);
            error.insert((n, ms), pct(f.error));
            excess.insert((n, ms), pct(f.excess));
            refused.insert((n, ms), format!("{:.0}% ({:.0} s)", f.refused, f.wait));
        }
    }
    let a = arrivals(1);
    let count = a.len();
    let alone = budget_figures(
        &simulate(1, None, true, false, a, MINUTE).await,
        count,
        MINUTE,
    );
    let _ = writeln!(
        doc,
        "Admitted tokens against the single-bucket bound (a single gateway: {}):\n",
        pct(alone.error)
    );
    table(doc, &error);
    let _ = writeln!(
        doc,
        "Worst excess over the single bucket's envelope, in % of the minute's budget (a single gateway: {}):\n",
        pct(alone.excess)
    );
    table(doc, &excess);
    let _ = writeln!(
        doc,
        "Requests refused, and in brackets the mean `Retry-After` they were given (a single gateway: {:.0}% ({:.0} s)):\n",
        alone.refused, alone.wait
    );
    table(doc, &refused);
}

async fn ptu_scenario(doc: &mut String, over: Duration) {
    let _ = writeln!(
        doc,
        "### PTU burst over {} s\n\n90 requests of 1,000 tokens (150% of the PTU's minute) reach the fleet round-robin, evenly over {} s, starting 10 s after the fleet did, at 8 starts spread over a second (7 ms, 132 ms, 257 ms ... past the 10 s). Each cell: tokens the fleet sent to the PTU (all within one minute: the fleet's load in the window), in % of the spill threshold (54,000), mean over the 8 starts and (worst); **bold** where that is over the capacity (over 111.1% of the threshold: Azure answers 429). Under 100% is PTU left unused while requests spilled.\n",
        over.as_secs_f64(),
        over.as_secs_f64()
    );
    let threshold = PTU.capacity_tpm as f64 * PTU.spill_at / 100.0;
    let mut cells = BTreeMap::new();
    for n in SIZES {
        for ms in INTERVALS_MS {
            let (mut sum, mut max) = (0u64, 0u64);
            for k in 0..PTU_STARTS {
                let start = PTU_BURST_AT + Duration::from_millis(k * 1_000 / PTU_STARTS + 7);
                let duration = start + Duration::from_secs(5);
                let arrivals = ptu_burst(n, start, over);
                let o = simulate(n, Some(ms), false, true, arrivals, duration).await;
                let sent: u64 = o.ptu_admitted.iter().map(|&(_, t)| t).sum();
                sum += sent;
                max = max.max(sent);
            }
            let mean = sum as f64 / PTU_STARTS as f64;
            let bold = |x: f64| {
                let s = format!("{:.0}%", x * 100.0 / threshold);
                if x > PTU.capacity_tpm as f64 {
                    format!("**{s}**")
                } else {
                    s
                }
            };
            cells.insert((n, ms), format!("{} ({})", bold(mean), bold(max as f64)));
        }
    }
    let duration = PTU_BURST_AT + Duration::from_secs(5);
    let alone = simulate(
        1,
        None,
        false,
        true,
        ptu_burst(1, PTU_BURST_AT, over),
        duration,
    )
    .await;
    let sent: u64 = alone.ptu_admitted.iter().map(|&(_, t)| t).sum();
    let _ = writeln!(
        doc,
        "A single gateway sends {:.0}% of the threshold.\n",
        sent as f64 * 100.0 / threshold
    );
    table(doc, &cells);
}

/// Commands one script call issues, in steady state, for `tenants` tenants with a token
/// budget and `deployments` deployments; `busy`: every count changed since the last call and
/// every deployment brings a fresh utilization reading.
fn commands_per_call(members: usize, tenants: usize, deployments: usize, busy: bool) -> f64 {
    let mut server = Server::new();
    let rounds = 20u64;
    let mut counted = 0;
    for r in 0..rounds {
        if r == rounds / 2 {
            counted = server.total_calls();
        }
        for m in 0..members {
            let bump = if busy { r } else { 0 };
            let o = Outgoing {
                requests: bump * 10,
                retries: bump,
                tenants: (0..tenants)
                    .map(|t| (format!("t{t}"), TPM, 0, BudgetReport::default()))
                    .collect(),
                deployments: (0..deployments)
                    .map(|d| {
                        (
                            format!("d{d}"),
                            FleetNews {
                                admitted: bump * 1_000,
                                reading: busy.then_some((500, 0)),
                                ..FleetNews::default()
                            },
                        )
                    })
                    .collect(),
                ..Outgoing::default()
            };
            let args = wire::args("spw", &format!("gw-{m}"), 500, false, &o);
            server
                .eval(&args, 1_700_000_000_000 + r * 100 + m as u64)
                .expect("no member leaves");
        }
    }
    (server.total_calls() - counted) as f64 / (rounds / 2 * members as u64) as f64
}

fn redis_section(doc: &mut String) {
    let _ = writeln!(
        doc,
        "## Redis operations\n\nEach instance calls the script once per sync interval (one `EVALSHA`). Inside, the script issues `TIME`, `ZSCORE`, `ZADD`, `ZRANGEBYSCORE`, `ZCARD`, two counts published (`HGET`, and `HINCRBY` + `HSET` when the count changed, `HGET`) and three `PEXPIRE`: 12 to 16 commands; per tenant and limited dimension `HMGET` x2, `HSET` x2, `PEXPIRE`: 5; per deployment two published counts (2 to 4 each: its window and what it added since its last exchange), two deadlines (`PTTL`, or `PTTL`, `SET`, `PTTL` when this instance imposes one), a utilization reading (`HGET`, and `HSET` + `PEXPIRE` when it is newer) and `HMGET`: 7 without news, up to 16 with. A member that timed out costs one `HGETALL`, an `HINCRBY`/`HINCRBYFLOAT` per non-zero field (and `HEXISTS` + `HINCRBYFLOAT` to return a lease), `DEL` and `ZREM`, once. Counted by running the port (and checked against the real script's `INFO commandstats` by `bench/tests/fleet_port.rs`):\n"
    );
    let _ = writeln!(
        doc,
        "| tenants | deployments | commands per call, quiet | commands per call, busy | 50 instances at 100 ms: calls/s | inner commands/s, quiet | inner commands/s, busy |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (t, d) in [(1, 1), (20, 10), (100, 20)] {
        let quiet = commands_per_call(50, t, d, false);
        let busy = commands_per_call(50, t, d, true);
        let calls = 50.0 * 1000.0 / 100.0;
        let _ = writeln!(
            doc,
            "| {t} | {d} | {quiet:.0} | {busy:.0} | {calls:.0} | {:.0} | {:.0} |",
            quiet * calls,
            busy * calls
        );
    }
    doc.push('\n');
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "# Fleet model\n\nGenerated by `cargo run --release -p spillway-bench --bin fleet-model` (bench/src/bin/fleet_model.rs); the same numbers on every run.\n\n\
Each instance runs the gateway's own code: `LocalBudget` for the tenant's budget, `DeploymentState` (with its `FleetCount`) for the PTU's predicted load, the exchange's `wire::args`/`wire::decode`, and the same steps as `ops::fleet` (join at 1/N of the limits, report, grant, adopt; a lease good for two intervals plus the Redis timeout). Redis is an in-memory port of `exchange.lua` (bench/src/fleet_port.rs), which `bench/tests/fleet_port.rs` checks against the real script on a real `redis-server`. Time is tokio's paused clock, advanced from one event to the next. Instances exchange at phases spread evenly over the interval; the script runs {} ms after an exchange is sent and its answer applies {} ms after. Requests are ~1,000 tokens (uniform 800 to 1,200, seeded) unless said; estimates are exact (no usage correction), no instance fails, and Redis never does.\n",
        RTT.as_millis() / 2,
        RTT.as_millis()
    );
    let _ = writeln!(
        doc,
        "## Tenant budget\n\nOne tenant, {TPM} tokens/minute, 60 s. **Error**: tokens admitted by the whole fleet against the most one token bucket could admit, cap + cap x 60 s / 60 s = {}: negative is budget left unused, positive is overshoot. **Excess**: over every window of the run, the most the fleet admitted beyond cap + cap x window / 60 s, which one bucket never exceeds; in % of the minute's budget. **Refused**: requests refused, of all asked: the load asks for ten minutes' budget in one, of which a single bucket admits two (its full start and the minute's refill), so about 80% is right; in brackets the mean wait they were told.\n",
        2 * TPM
    );
    budget_scenario(
        &mut doc,
        "Spread load",
        "Poisson arrivals at 10x the budget's rate (5 requests/s), each to an instance drawn uniformly.",
        spread,
    )
    .await;
    budget_scenario(
        &mut doc,
        "Simultaneous bursts",
        "Every 3 s, every instance receives k requests at the same instant, k = round(60 / N) (at least 1): each burst alone is about twice the minute's budget.",
        bursts,
    )
    .await;
    budget_scenario(
        &mut doc,
        "Skewed load",
        "The spread load's arrivals, 80% of them to one instance, the rest spread over the others.",
        skewed,
    )
    .await;
    let _ = writeln!(
        doc,
        "## PTU saturation\n\nA PTU of {} tokens/minute, spill at {}%: an instance passes it over (`Predicted`) once its view of the fleet's tokens in the last minute reaches the threshold. No utilization headers (the burst is over before Azure would report it) and no 429s are modelled.\n",
        PTU.capacity_tpm, PTU.spill_at
    );
    ptu_scenario(&mut doc, Duration::from_millis(200)).await;
    ptu_scenario(&mut doc, Duration::from_secs(1)).await;
    redis_section(&mut doc);
    doc.push_str(READING);
    print!("{doc}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/results/fleet-model.md");
    std::fs::write(path, &doc).expect("write bench/results/fleet-model.md");
    eprintln!("written to {path}");
}
