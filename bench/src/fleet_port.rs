//! An in-memory port of the fleet's Redis script (`src/ops/fleet/exchange.lua`): the same
//! keys, the same arithmetic in the same order, the same reply, for the fleet model
//! (`src/bin/fleet_model.rs`). `tests/fleet_port.rs` runs it against the real script on a
//! real `redis-server` so that the two cannot drift apart.
//!
//! Redis keeps strings; the script writes numbers with `%.17g` (exact for a double) and reads
//! them back with `tonumber`, so the port keeps `f64`s. Only `HINCRBYFLOAT` (a dead member's
//! lease and weight taken back out of a budget) adds in `long double` in Redis, and may differ
//! from the port in the last bits. A command Redis would refuse fails the run at the same
//! point, keeping what was written before it, as Redis does (a script is not rolled back);
//! hashes keep their fields in insertion order, as Redis's small hashes do, so that such a
//! partial run writes the same fields. Each `redis.call` the script would make is counted, by
//! command, in [`Server::calls`].

use redis::Value;
use std::collections::{BTreeMap, HashMap};

/// The keys' lifetime the script sets (`ttl` in the script).
const TTL_MS: f64 = 600_000.0;

/// A Redis value the script uses: a hash of numbers, the members' sorted set, or a plain
/// string (a cool-down or ejection deadline, which only its TTL matters for).
#[derive(Debug, Clone)]
enum Entry {
    Hash(Hash),
    Zset(HashMap<String, f64>),
    Text,
}

/// A hash of numbers that remembers the order its fields were first set in.
#[derive(Debug, Clone, Default)]
pub struct Hash {
    fields: HashMap<String, (u64, f64)>,
    next: u64,
}

impl Hash {
    pub fn get(&self, field: &str) -> Option<f64> {
        self.fields.get(field).map(|&(_, v)| v)
    }

    fn set(&mut self, field: &str, v: f64) {
        if let Some(slot) = self.fields.get_mut(field) {
            slot.1 = v;
        } else {
            self.fields.insert(field.to_string(), (self.next, v));
            self.next += 1;
        }
    }

    fn add(&mut self, field: &str, v: f64) {
        let old = self.get(field).unwrap_or(0.0);
        self.set(field, old + v);
    }

    /// The fields in insertion order, as `HGETALL` lists a small hash.
    pub fn all(&self) -> Vec<(String, f64)> {
        let mut v: Vec<_> = self
            .fields
            .iter()
            .map(|(k, &(at, v))| (at, k.clone(), v))
            .collect();
        v.sort_by_key(|e| e.0);
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

/// Why Redis refused a command, as the script's error says.
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// The in-memory Redis the script runs against.
#[derive(Debug, Default)]
pub struct Server {
    keys: HashMap<String, Entry>,
    /// Absolute expiry, in the script's milliseconds, of keys that have one.
    expires: HashMap<String, f64>,
    /// Commands the script issued, by name as in `INFO commandstats`.
    pub calls: BTreeMap<&'static str, u64>,
}

/// One run of the script: its clock and who is calling.
struct Call {
    now: f64,
    prefix: String,
    ikey: String,
    members: f64,
    leaving: bool,
    /// What demand weights keep from the member's previous exchange.
    decay: f64,
}

impl Server {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the script with `argv` (as `spillway::ops::fleet::wire::args` builds it) at
    /// `now_ms`, the milliseconds the script would read from Redis's `TIME`. An error is the
    /// command Redis refuses; what the script wrote before it stays.
    pub fn eval(&mut self, argv: &[String], now_ms: u64) -> Result<Vec<Value>, &'static str> {
        self.count("time");
        let now = now_ms as f64;
        self.expire_all(now);
        let num = |i: usize| tonumber(&argv[i - 1]);
        let p = format!("{{{}}}:", argv[0]);
        let me = argv[1].as_str();
        let member_timeout = num(3);
        let leaving = argv[3] == "1";
        let members_key = format!("{p}members");
        let mut c = Call {
            now,
            ikey: format!("{p}i:{me}"),
            prefix: p,
            members: 0.0,
            leaving,
            decay: 0.0,
        };

        self.count("zscore");
        let prev = match self.keys.get(&members_key) {
            Some(Entry::Zset(z)) => z.get(me).copied(),
            _ => None,
        };
        if let Some(prev) = prev {
            c.decay = 0.5f64.powf(lua_max(0.0, now - prev) / 5000.0);
        }
        self.count("zadd");
        self.zset(&members_key).insert(me.to_string(), now);
        self.count("zrangebyscore");
        let mut dead: Vec<(f64, String)> = match self.keys.get(&members_key) {
            Some(Entry::Zset(z)) => z
                .iter()
                .filter(|(_, &s)| s <= now - member_timeout)
                .map(|(id, &s)| (s, id.clone()))
                .collect(),
            _ => Vec::new(),
        };
        dead.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, id) in dead {
            if id != me {
                self.forget(&c, &id)?;
            }
        }
        self.count("zcard");
        c.members = match self.keys.get(&members_key) {
            Some(Entry::Zset(z)) => z.len() as f64,
            _ => 0.0,
        };

        let mut reply = vec![
            int(c.members),
            int(self.publish(&c, "rq", num(5))?),
            int(self.publish(&c, "rt", num(6))?),
        ];
        let (tenants, deployments) = (num(7) as usize, num(8) as usize);
        let mut i = 9;
        for _ in 0..tenants {
            let name = &argv[i - 1];
            let (tpm, rpm) = (num(i + 1), num(i + 5));
            let (mut tl, mut rl, mut ta, mut ra) = (0.0, 0.0, 0.0, 0.0);
            if tpm > 0.0 {
                (tl, ta) = self.budget(&c, name, 't', tpm, num(i + 2), num(i + 3), num(i + 4));
            }
            if rpm > 0.0 {
                (rl, ra) = self.budget(&c, name, 'r', rpm, num(i + 6), num(i + 7), 1.0);
            }
            for x in [tl, rl, lua_max(ta, 0.0).floor(), lua_max(ra, 0.0).floor()] {
                reply.push(Value::BulkString(lua_tostring(x).into_bytes()));
            }
            i += 8;
        }

        for _ in 0..deployments {
            let name = &argv[i - 1];
            let admitted = self.publish(&c, &format!("d:{name}"), num(i + 1))?;
            let recent = self.publish(&c, &format!("r:{name}"), num(i + 2))?;
            let cool = self.deadline(&c, &format!("{}cd:{name}", c.prefix), num(i + 3));
            let eject = self.deadline(&c, &format!("{}ej:{name}", c.prefix), num(i + 4));
            let ukey = format!("{}u:{name}", c.prefix);
            let (permille, age) = (num(i + 5), num(i + 6));
            if permille >= 0.0 {
                let at = now - age;
                self.count("hget");
                let seen = self.hget(&ukey, "at").unwrap_or(-1.0);
                if at > seen {
                    self.count("hset");
                    let h = self.hash(&ukey);
                    h.set("at", at);
                    h.set("pm", permille);
                    self.pexpire(&ukey, TTL_MS, now);
                }
            }
            self.count("hmget");
            let (uat, upm) = (self.hget(&ukey, "at"), self.hget(&ukey, "pm"));
            reply.extend([int(admitted), int(recent), int(cool), int(eject)]);
            match (uat, upm) {
                (Some(uat), Some(upm)) => {
                    reply.extend([int(upm), int(lua_max(0.0, now - uat))]);
                }
                _ => reply.extend([int(-1.0), int(0.0)]),
            }
            i += 7;
        }

        if leaving {
            self.forget(&c, me)?;
        } else {
            for k in [members_key, format!("{}agg", c.prefix), c.ikey.clone()] {
                self.pexpire(&k, TTL_MS, now);
            }
        }
        Ok(reply)
    }

    /// The hash at `key` (full name, `{prefix}:...`), if it exists.
    pub fn hash_fields(&self, key: &str) -> Option<&Hash> {
        match self.keys.get(key) {
            Some(Entry::Hash(h)) => Some(h),
            _ => None,
        }
    }

    /// The members and their last exchange, as in the `{prefix}:members` sorted set.
    pub fn members(&self, prefix: &str) -> Vec<(String, f64)> {
        match self.keys.get(&format!("{{{prefix}}}:members")) {
            Some(Entry::Zset(z)) => {
                let mut v: Vec<_> = z.iter().map(|(k, &s)| (k.clone(), s)).collect();
                v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                v
            }
            _ => Vec::new(),
        }
    }

    /// Commands the script issued so far, all kinds together.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    fn count(&mut self, cmd: &'static str) {
        *self.calls.entry(cmd).or_default() += 1;
    }

    /// Redis expires a key once its time is past (`now > when`); the script's keys are
    /// all read through here after this, as Redis checks expiry on every access.
    fn expire_all(&mut self, now: f64) {
        let gone: Vec<String> = self
            .expires
            .iter()
            .filter(|(_, &when)| now > when)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.expires.remove(&k);
            self.keys.remove(&k);
        }
    }

    fn hash(&mut self, key: &str) -> &mut Hash {
        let e = self
            .keys
            .entry(key.to_string())
            .or_insert_with(|| Entry::Hash(Hash::default()));
        match e {
            Entry::Hash(h) => h,
            _ => panic!("{key} is not a hash"),
        }
    }

    fn zset(&mut self, key: &str) -> &mut HashMap<String, f64> {
        let e = self
            .keys
            .entry(key.to_string())
            .or_insert_with(|| Entry::Zset(HashMap::new()));
        match e {
            Entry::Zset(z) => z,
            _ => panic!("{key} is not a sorted set"),
        }
    }

    fn hget(&self, key: &str, field: &str) -> Option<f64> {
        self.hash_fields(key).and_then(|h| h.get(field))
    }

    fn pexpire(&mut self, key: &str, ms: f64, now: f64) {
        self.count("pexpire");
        if self.keys.contains_key(key) {
            self.expires.insert(key.to_string(), now + ms);
        }
    }

    /// `PTTL`: -2 for no key, -1 for a key without expiry, else what is left.
    fn pttl(&mut self, key: &str, now: f64) -> f64 {
        self.count("pttl");
        if !self.keys.contains_key(key) {
            return -2.0;
        }
        self.expires
            .get(key)
            .map_or(-1.0, |&when| (when - now).max(0.0))
    }

    /// `HINCRBY key field by`, `by` a Lua number.
    fn hincrby(&mut self, key: &str, field: &str, by: f64) -> Result<(), &'static str> {
        self.count("hincrby");
        let by = integer_arg(by)?;
        self.hash(key).add(field, by as f64);
        Ok(())
    }

    /// The script's `forget(id)`.
    fn forget(&mut self, c: &Call, id: &str) -> Result<(), &'static str> {
        let ikey = format!("{}i:{id}", c.prefix);
        self.count("hgetall");
        let mine = self.hash_fields(&ikey).map(Hash::all).unwrap_or_default();
        let vals: HashMap<String, f64> = mine.iter().cloned().collect();
        for (f, v) in mine {
            let Some((kind, rest)) = f.split_once(':') else {
                continue;
            };
            if !is_alpha(kind) {
                continue;
            }
            if kind == "c" {
                let n = v.floor();
                if n != 0.0 {
                    self.hincrby(&format!("{}agg", c.prefix), rest, -n)?;
                }
            } else if (kind == "l" || kind == "w") && v != 0.0 {
                let Some((dim, tenant)) = rest.split_once(':') else {
                    continue;
                };
                if dim.len() != 1 || !is_alpha(dim) {
                    continue;
                }
                let key = format!("{}b:{tenant}", c.prefix);
                self.count("hincrbyfloat");
                if kind == "w" {
                    self.hash(&key).add(&format!("{dim}w"), -v);
                } else {
                    self.hash(&key).add(&format!("{dim}o"), -v);
                    let back = lua_max(
                        0.0,
                        v - vals.get(&format!("w:{rest}")).copied().unwrap_or(0.0),
                    );
                    if back > 0.0 {
                        self.count("hexists");
                        if self.hget(&key, &format!("{dim}a")).is_some() {
                            self.count("hincrbyfloat");
                            self.hash(&key).add(&format!("{dim}a"), back);
                        }
                    }
                }
            }
        }
        self.count("del");
        self.keys.remove(&ikey);
        self.expires.remove(&ikey);
        self.count("zrem");
        let members_key = format!("{}members", c.prefix);
        let empty = match self.keys.get_mut(&members_key) {
            Some(Entry::Zset(z)) => {
                z.remove(id);
                z.is_empty()
            }
            _ => false,
        };
        if empty {
            self.keys.remove(&members_key);
            self.expires.remove(&members_key);
        }
        Ok(())
    }

    /// The script's `publish(field, value)`.
    fn publish(&mut self, c: &Call, field: &str, value: f64) -> Result<f64, &'static str> {
        let f = format!("c:{field}");
        self.count("hget");
        let old = self.hget(&c.ikey, &f).unwrap_or(0.0);
        let value = value.floor();
        let agg_key = format!("{}agg", c.prefix);
        if value != old {
            self.hincrby(&agg_key, field, value - old)?;
            self.count("hset");
            self.hash(&c.ikey).set(&f, value);
        }
        self.count("hget");
        Ok(self.hget(&agg_key, field).unwrap_or(value))
    }

    /// The script's `budget(tenant, dim, cap, give_back, demand, unit)`: the lease and what
    /// the bucket holds beyond the leases.
    #[allow(clippy::too_many_arguments)]
    fn budget(
        &mut self,
        c: &Call,
        tenant: &str,
        dim: char,
        cap: f64,
        give_back: f64,
        demand: f64,
        unit: f64,
    ) -> (f64, f64) {
        let now = c.now;
        let key = format!("{}b:{tenant}", c.prefix);
        let (lf, wf) = (format!("l:{dim}:{tenant}"), format!("w:{dim}:{tenant}"));
        let (fa, ft, fo, fw) = (
            format!("{dim}a"),
            format!("{dim}t"),
            format!("{dim}o"),
            format!("{dim}w"),
        );
        self.count("hmget");
        let v = [&fa, &ft, &fo, &fw].map(|f| self.hget(&key, f));
        let (mut out, mut wsum) = (v[2].unwrap_or(0.0), v[3].unwrap_or(0.0));
        let (mut avail, at) = match (v[0], v[1]) {
            (Some(a), Some(t)) => (a, t),
            _ => (cap - out, now),
        };
        if cap <= 0.0 {
            return (0.0, 0.0);
        }
        avail = lua_min(cap - out, avail + lua_max(0.0, now - at) * cap / 60000.0);
        self.count("hmget");
        let old_lease = self.hget(&c.ikey, &lf).unwrap_or(0.0);
        let old_w = self.hget(&c.ikey, &wf).unwrap_or(0.0);
        out -= old_lease;
        avail += lua_max(-cap, lua_min(cap, give_back));
        let w = old_w * c.decay + demand;
        wsum = lua_max(wsum - old_w, 0.0) + w;
        let mut lease = 0.0;
        if !c.leaving {
            let mut want = (avail + out) * (w + 0.001) / (wsum + c.members * 0.001);
            if w >= unit / 2.0 || avail + out >= c.members * unit {
                want = lua_max(want, unit);
            }
            lease = lua_min(want, avail).floor();
            if lease < unit {
                lease = 0.0;
            }
        }
        avail -= lease;
        out += lease;
        self.count("hset");
        let h = self.hash(&key);
        h.set(&fa, avail);
        h.set(&ft, now);
        h.set(&fo, out);
        h.set(&fw, wsum);
        self.pexpire(&key, TTL_MS, now);
        self.count("hset");
        let ikey = c.ikey.clone();
        let h = self.hash(&ikey);
        h.set(&lf, lease);
        h.set(&wf, w);
        (lease, avail)
    }

    /// The script's `deadline(key, ms)`.
    fn deadline(&mut self, c: &Call, key: &str, ms: f64) -> f64 {
        if ms > 0.0 && self.pttl(key, c.now) < ms {
            self.count("set");
            self.keys.insert(key.to_string(), Entry::Text);
            self.expires.insert(key.to_string(), c.now + ms);
        }
        let left = self.pttl(key, c.now);
        lua_max(0.0, left)
    }
}

/// A Lua number as an integer argument: Redis writes it with `%.17g` and `HINCRBY` takes
/// only a plain integer, so `-0` (what `-math.floor(0)` gives), a fraction or an exponent
/// is refused.
fn integer_arg(x: f64) -> Result<i64, &'static str> {
    if x.fract() != 0.0 || x.abs() >= 1e17 || (x == 0.0 && x.is_sign_negative()) {
        return Err(NOT_AN_INTEGER);
    }
    Ok(x as i64)
}

/// `%a+` in a Lua pattern: ASCII letters, at least one.
fn is_alpha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Lua's `tonumber` on an argument the gateway wrote (a decimal number).
fn tonumber(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

/// A Lua number in a reply table: Redis truncates it to an integer.
fn int(x: f64) -> Value {
    Value::Int(x as i64)
}

/// Lua 5.1's `math.min` of two: the first unless the second is smaller.
fn lua_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

/// Lua 5.1's `math.max` of two: the first unless the second is larger.
fn lua_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Lua 5.1's `tostring` of a number: C's `%.14g`.
pub fn lua_tostring(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.into();
    }
    const P: i32 = 14;
    let sci = format!("{:.*e}", (P - 1) as usize, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..P).contains(&exp) {
        trim(&format!("{:.*}", (P - 1 - exp) as usize, x))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_numbers_print_like_lua() {
        assert_eq!(lua_tostring(0.0), "0");
        assert_eq!(lua_tostring(30_000.0), "30000");
        assert_eq!(lua_tostring(-1.0), "-1");
        assert_eq!(lua_tostring(0.5), "0.5");
        assert_eq!(lua_tostring(1e15), "1e+15");
        assert_eq!(lua_tostring(123_456_789_012_345.0), "1.2345678901234e+14");
        assert_eq!(lua_tostring(99_999_999_999_999.0), "99999999999999");
        assert_eq!(lua_tostring(0.0001), "0.0001");
        assert_eq!(lua_tostring(0.00001), "1e-05");
        assert_eq!(lua_tostring(2.0 / 3.0), "0.66666666666667");
    }
}
