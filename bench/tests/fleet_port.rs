//! The fleet model's port of `exchange.lua` against the real script on a real `redis-server`:
//! the same exchanges (several instances and tenants, give-backs, demands, cool-downs,
//! readings, a member that times out, one that leaves, one that joins late) must give the
//! same replies (or the same error), leave the same state and issue the same commands. The
//! script reads Redis's clock; the port is handed the very millisecond the script saw (read
//! back from what it stamped), so real time passing changes nothing but the refill both
//! compute.
//! A machine without `redis-server` fails this test: a skipped check would prove nothing.

use redis::Value;
use spillway::governance::budget::{BudgetReport, DimReport};
use spillway::ops::fleet::wire::{self, Outgoing};
use spillway::routing::state::FleetNews;
use spillway_bench::fleet_port::Server;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = include_str!("../../src/ops/fleet/exchange.lua");
const MEMBER_TIMEOUT_MS: u64 = 300;
/// Tenants: name, tokens and requests per minute (0: no limit).
const TENANTS: [(&str, u64, u64); 3] = [
    ("alpha", 30_000, 0),
    ("beta", 6_000, 60),
    ("gamma", 500, 10),
];
const DEPLOYMENTS: [&str; 2] = ["ptu-1", "std-1"];

/// A `redis-server` on a free loopback port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server): the port is checked against the real script");
        RedisServer { child, port }
    }

    fn connect(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match client.get_connection() {
                Ok(c) => return c,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("redis-server did not answer on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One instance's side: the leases it holds, to give back part of them.
#[derive(Default)]
struct Member {
    leases: Vec<(f64, f64)>,
}

/// What one exchange sends, drawn from `rng` like a gateway's traffic would make it. Its
/// counts are never 0 (see `a_member_whose_count_fell_to_zero`).
fn outgoing(rng: &mut fastrand::Rng, me: &Member, round: u64) -> Outgoing {
    let dim = |rng: &mut fastrand::Rng, lease: f64, unit: f64| {
        let spent = if lease > 0.0 {
            rng.f64() * lease * 1.2
        } else {
            rng.f64() * unit * 2.0
        };
        DimReport {
            // Now and then a give-back out of any range, which the script clamps.
            give_back: if rng.u8(..20) == 0 {
                -1e9
            } else {
                lease - spent
            },
            demand: if rng.bool() { spent } else { 0.0 },
            unit,
        }
    };
    Outgoing {
        requests: round * 7 + rng.u64(1..5),
        retries: rng.u64(1..3),
        tenants: TENANTS
            .iter()
            .enumerate()
            .map(|(i, &(name, tpm, rpm))| {
                let (tl, rl) = me.leases.get(i).copied().unwrap_or_default();
                let unit = 500.0 + rng.f64() * 1_000.0;
                let report = BudgetReport {
                    tokens: dim(rng, tl, unit),
                    requests: dim(rng, rl, 1.0),
                };
                (name.to_string(), tpm, rpm, report)
            })
            .collect(),
        deployments: DEPLOYMENTS
            .iter()
            .map(|name| {
                let news = FleetNews {
                    admitted: rng.u64(1..50_000),
                    unsynced: 0,
                    // Far apart, so that the millisecond by which Redis's key clock and the
                    // script's TIME may differ never decides whether a deadline is extended
                    // (and offset per member in `exchange_with`).
                    cooldown_ms: [0, 0, 0, 700, 3_000][rng.usize(..5)],
                    ejection_ms: [0, 0, 0, 0, 900, 4_000][rng.usize(..6)],
                    reading: rng.bool().then(|| (rng.u32(..1_000), rng.u64(..200))),
                };
                (name.to_string(), news)
            })
            .collect(),
        ..Outgoing::default()
    }
}

/// `INFO commandstats` as command -> calls.
fn commandstats(con: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').next()?.strip_prefix("calls=")?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

/// A hash's fields in Redis's order, with their values as numbers.
fn hgetall(con: &mut redis::Connection, key: &str) -> Vec<(String, f64)> {
    let h: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query(con).unwrap();
    h.into_iter()
        .map(|(k, v)| {
            let n = v.parse().unwrap_or_else(|_| panic!("{key} {k} = {v}"));
            (k, n)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    // Exact but for HINCRBYFLOAT, which Redis adds in long double.
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Runs one exchange on both sides and compares everything. Returns the leases, or the
/// error both gave.
fn exchange(
    con: &mut redis::Connection,
    port: &mut Server,
    prefix: &str,
    me: &str,
    leaving: bool,
    out: &Outgoing,
    seen: &mut Vec<String>,
) -> Result<Vec<(f64, f64)>, String> {
    let args = wire::args(prefix, me, MEMBER_TIMEOUT_MS, leaving, out);
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
    let real: redis::RedisResult<Value> =
        redis::cmd("EVAL").arg(SCRIPT).arg(0).arg(&args).query(con);
    let real_stats = commandstats(con);
    // The millisecond the script read from TIME: this member's score in the members set,
    // or, once it left, the stamp on the budgets it touched.
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{{{prefix}}}:members"))
        .arg(me)
        .query(con)
        .unwrap();
    let now = score.unwrap_or_else(|| {
        redis::cmd("HGET")
            .arg(format!("{{{prefix}}}:b:alpha"))
            .arg("tt")
            .query::<String>(con)
            .unwrap()
            .parse()
            .unwrap()
    });
    let before = port.calls.clone();
    let ported = port.eval(&args, now as u64);
    let what = format!("{prefix}/{me} at {now} (leaving: {leaving})");
    if !seen.iter().any(|s| s == me) {
        seen.push(me.to_string());
    }

    let outcome = match (real, ported) {
        (Ok(real), Ok(ported)) => {
            compare_replies(&what, &real, &ported);
            let decoded = wire::decode(real, out.tenants.len(), out.deployments.len()).unwrap();
            Ok(decoded.leases)
        }
        (Err(real), Err(ported)) => {
            let text = real.to_string();
            assert!(
                text.contains(ported.trim_start_matches("ERR ")),
                "{what}: redis failed with {text}, the port with {ported}"
            );
            Err(ported.to_string())
        }
        (real, ported) => panic!("{what}: redis answered {real:?}, the port {ported:?}"),
    };
    compare_commands(&what, &real_stats, &before, port);
    compare_state(&what, con, port, prefix, seen);
    outcome
}

/// The reply, field by field; deadlines within the millisecond or two that Redis's key clock
/// may be ahead of the script's TIME.
fn compare_replies(what: &str, real: &Value, ported: &[Value]) {
    let Value::Array(real_items) = real.clone() else {
        panic!("{what}: the script answered {real:?}");
    };
    assert_eq!(real_items.len(), ported.len(), "{what}: reply length");
    let deadline_at = |i: usize| {
        let d = 3 + TENANTS.len() * 4;
        i >= d && matches!((i - d) % 6, 2 | 3)
    };
    for (i, (r, p)) in real_items.iter().zip(ported).enumerate() {
        if deadline_at(i) {
            let (Value::Int(r), Value::Int(p)) = (r, p) else {
                panic!("{what}: item {i}: {r:?} vs {p:?}");
            };
            assert!((r - p).abs() <= 3, "{what}: deadline {i}: {r} vs {p}");
        } else {
            assert_eq!(r, p, "{what}: reply item {i}");
        }
    }
}

/// The commands the script issued.
fn compare_commands(
    what: &str,
    real_stats: &BTreeMap<String, u64>,
    before: &BTreeMap<&'static str, u64>,
    port: &Server,
) {
    let script_cmds = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.iter()
            // The test's own: EVAL, CONFIG|RESETSTAT, INFO.
            .filter(|(k, _)| !["eval", "config", "info"].iter().any(|c| k.starts_with(c)))
            .map(|(k, &v)| (k.clone(), v))
            .collect()
    };
    let ported_stats: BTreeMap<String, u64> = port
        .calls
        .iter()
        .map(|(&k, &v)| (k.to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|&(_, v)| v > 0)
        .collect();
    assert_eq!(
        script_cmds(real_stats),
        ported_stats,
        "{what}: commands issued"
    );
}

/// The state left behind: members, counts, budgets, each instance's own hash (fields in the
/// same order), readings.
fn compare_state(
    what: &str,
    con: &mut redis::Connection,
    port: &Server,
    prefix: &str,
    seen: &[String],
) {
    let zset: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("{{{prefix}}}:members"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(con)
        .unwrap();
    let mut zset_sorted = zset.clone();
    zset_sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(zset_sorted, port.members(prefix), "{what}: members");
    let mut keys = vec!["agg".to_string()];
    keys.extend(TENANTS.iter().map(|(t, _, _)| format!("b:{t}")));
    keys.extend(DEPLOYMENTS.iter().map(|d| format!("u:{d}")));
    keys.extend(seen.iter().map(|s| format!("i:{s}")));
    for k in keys {
        let key = format!("{{{prefix}}}:{k}");
        let real = hgetall(con, &key);
        let ported = port.hash_fields(&key).map(|h| h.all()).unwrap_or_default();
        let names = |v: &[(String, f64)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&real), names(&ported), "{what}: {key}'s fields");
        for ((f, r), (_, p)) in real.iter().zip(&ported) {
            assert!(close(*r, *p), "{what}: {key} {f}: redis {r}, port {p}");
        }
    }
}

/// One fleet on one Redis and its port, exchanging as a test says.
struct Fleet {
    con: redis::Connection,
    port: Server,
    prefix: &'static str,
    rng: fastrand::Rng,
    members: BTreeMap<&'static str, Member>,
    seen: Vec<String>,
    granted: f64,
}

impl Fleet {
    fn new(redis: &RedisServer, prefix: &'static str) -> Fleet {
        Fleet {
            con: redis.connect(),
            port: Server::new(),
            prefix,
            rng: fastrand::Rng::with_seed(7),
            members: BTreeMap::new(),
            seen: Vec::new(),
            granted: 0.0,
        }
    }

    /// `id` exchanges what `change` makes of a drawn report.
    fn exchange_with(
        &mut self,
        id: &'static str,
        leaving: bool,
        round: u64,
        change: impl FnOnce(&mut Outgoing),
    ) -> Result<(), String> {
        let me = self.members.entry(id).or_default();
        let mut out = outgoing(&mut self.rng, me, round);
        // Each member's deadlines are its own, 50 ms from any other's: two members asking for
        // the same one within the millisecond by which Redis's key clock and the script's
        // TIME may differ made whether it was extended a coin toss (CI once saw the port
        // issue a SET the script did not).
        let apart = 50 * u64::from(id.as_bytes().last().map_or(0, |b| b.saturating_sub(b'a')));
        for (_, news) in &mut out.deployments {
            for ms in [&mut news.cooldown_ms, &mut news.ejection_ms] {
                if *ms > 0 {
                    *ms += apart;
                }
            }
        }
        change(&mut out);
        let leases = exchange(
            &mut self.con,
            &mut self.port,
            self.prefix,
            id,
            leaving,
            &out,
            &mut self.seen,
        )?;
        self.granted += leases.iter().map(|l| l.0 + l.1).sum::<f64>();
        me.leases = leases;
        if leaving {
            self.members.remove(id);
        }
        Ok(())
    }

    fn exchange(&mut self, id: &'static str, leaving: bool, round: u64) {
        let what = format!("{id} in round {round}");
        self.exchange_with(id, leaving, round, |_| {})
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    fn is_member(&self, id: &str) -> bool {
        self.port.members(self.prefix).iter().any(|(m, _)| m == id)
    }
}

#[test]
fn the_port_matches_the_script_on_a_real_redis() {
    let redis = RedisServer::start();
    let mut f = Fleet::new(&redis, "dt");
    // Three members join and exchange for a few rounds, a little real time apart.
    for round in 0..6 {
        for id in ["gw-a", "gw-b", "gw-c"] {
            f.exchange(id, false, round);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    // gw-c goes silent: once its timeout has passed, the next exchange forgets it.
    for round in 6..9 {
        for id in ["gw-a", "gw-b"] {
            f.exchange(id, false, round);
        }
        std::thread::sleep(Duration::from_millis(MEMBER_TIMEOUT_MS / 2));
    }
    assert!(!f.is_member("gw-c"), "gw-c timed out");
    // gw-b leaves, giving its leases back; gw-d joins late.
    f.exchange("gw-b", true, 9);
    assert!(!f.is_member("gw-b"), "gw-b left");
    for round in 10..14 {
        for id in ["gw-a", "gw-d"] {
            f.exchange(id, false, round);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(f.granted > 0.0, "the sequence granted leases at all");
}

/// A member whose published count went back to 0 (no retries over the window, no tokens
/// on a deployment over the last minute) leaves, then times out. Whatever the script does
/// then, the port must do too. (At this commit the script fails: `forget` passes
/// `-math.floor(0)`, which Redis receives as "-0", to HINCRBY, which refuses it; every
/// exchange after that fails the same way while the member stays in the set.)
#[test]
fn a_member_whose_count_fell_to_zero_leaves_the_same_way_on_both() {
    let redis = RedisServer::start();
    let mut f = Fleet::new(&redis, "dz");
    for round in 0..3 {
        f.exchange("gw-a", false, round);
        f.exchange("gw-b", false, round);
    }
    let quiet = |o: &mut Outgoing| o.retries = 0;
    let mut outcomes = vec![
        f.exchange_with("gw-b", false, 3, quiet),
        f.exchange_with("gw-b", true, 4, quiet),
    ];
    std::thread::sleep(Duration::from_millis(MEMBER_TIMEOUT_MS * 3 / 2));
    for round in 5..8 {
        outcomes.push(f.exchange_with("gw-a", false, round, |_| {}));
    }
    eprintln!("outcomes (the same on both): {outcomes:?}");
}
