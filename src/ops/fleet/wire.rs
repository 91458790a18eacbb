//! What one exchange sends to `exchange.lua` and reads back: plain data, built from and
//! applied to the live state by `ops::fleet`, decoded without trusting Redis's reply.

use crate::governance::budget::BudgetReport;
use crate::routing::state::{FleetNews, FleetView};
use redis::Value;

/// Everything this instance tells the fleet at one exchange.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outgoing {
    /// Requests and retries over the retry budget's window, and how many of each were
    /// added since the last exchange.
    pub requests: u64,
    pub retries: u64,
    pub requests_unsynced: i64,
    pub retries_unsynced: i64,
    /// Per tenant with a limit: its name, limits and budget report.
    pub tenants: Vec<(String, u64, u64, BudgetReport)>,
    /// Per deployment: its name and news.
    pub deployments: Vec<(String, FleetNews)>,
}

/// The fleet's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incoming {
    pub members: u32,
    pub requests: u64,
    pub retries: u64,
    /// Per tenant, in the order sent: the token and request leases.
    pub leases: Vec<(f64, f64)>,
    /// Per tenant: what its token and request buckets hold beyond every lease.
    pub unleased: Vec<(f64, f64)>,
    /// Per deployment, in the order sent.
    pub views: Vec<FleetView>,
}

/// The script's ARGV.
pub fn args(
    prefix: &str,
    instance: &str,
    member_timeout_ms: u64,
    leaving: bool,
    out: &Outgoing,
) -> Vec<String> {
    let mut a = Vec::with_capacity(8 + out.tenants.len() * 8 + out.deployments.len() * 7);
    a.extend([
        prefix.to_string(),
        instance.to_string(),
        member_timeout_ms.to_string(),
        u8::from(leaving).to_string(),
        out.requests.to_string(),
        out.retries.to_string(),
        out.tenants.len().to_string(),
        out.deployments.len().to_string(),
    ]);
    for (name, tpm, rpm, r) in &out.tenants {
        a.extend([
            name.clone(),
            tpm.to_string(),
            r.tokens.give_back.round().to_string(),
            r.tokens.demand.round().to_string(),
            r.tokens.unit.round().max(1.0).to_string(),
            rpm.to_string(),
            r.requests.give_back.round().to_string(),
            r.requests.demand.round().to_string(),
        ]);
    }
    for (name, n) in &out.deployments {
        let (permille, age) = n.reading.map_or((-1, 0), |(p, a)| (i64::from(p), a));
        a.extend([
            name.clone(),
            n.admitted.to_string(),
            n.unsynced.max(0).to_string(),
            n.cooldown_ms.to_string(),
            n.ejection_ms.to_string(),
            permille.to_string(),
            age.to_string(),
        ]);
    }
    a
}

/// Reads the script's reply for `tenants` tenants and `deployments` deployments. Anything
/// else (a wrong length, a negative count, text where a number belongs) is an error: a
/// Redis that answers garbage must not steer the gateway.
pub fn decode(v: Value, tenants: usize, deployments: usize) -> Result<Incoming, &'static str> {
    let Value::Array(items) = v else {
        return Err("not an array");
    };
    if items.len() != 3 + tenants * 4 + deployments * 6 {
        return Err("wrong length");
    }
    let mut it = items.into_iter();
    let mut next = || number(it.next().ok_or("short")?);
    let members = next()?;
    let members = u32::try_from(members as i64)
        .ok()
        .filter(|&m| m >= 1)
        .ok_or("no members")?;
    let requests = count(next()?)?;
    let retries = count(next()?)?;
    let mut leases = Vec::with_capacity(tenants);
    let mut unleased = Vec::with_capacity(tenants);
    for _ in 0..tenants {
        leases.push((lease(next()?)?, lease(next()?)?));
        unleased.push((lease(next()?)?, lease(next()?)?));
    }
    let mut views = Vec::with_capacity(deployments);
    for _ in 0..deployments {
        let admitted = count(next()?)?;
        let recent = count(next()?)?;
        let cooldown_ms = count(next()?)?;
        let ejection_ms = count(next()?)?;
        let permille = next()?;
        let age = count(next()?)?;
        let reading = if permille < 0.0 {
            None
        } else {
            Some((
                u32::try_from(permille as u64).map_err(|_| "bad reading")?,
                age,
            ))
        };
        views.push(FleetView {
            members,
            admitted,
            recent,
            cooldown_ms,
            ejection_ms,
            reading,
        });
    }
    Ok(Incoming {
        members,
        requests,
        retries,
        leases,
        unleased,
        views,
    })
}

fn number(v: Value) -> Result<f64, &'static str> {
    let n = match v {
        Value::Int(i) => i as f64,
        Value::BulkString(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or("not a number")?,
        Value::SimpleString(s) => s.parse::<f64>().map_err(|_| "not a number")?,
        _ => return Err("not a number"),
    };
    if n.is_finite() {
        Ok(n)
    } else {
        Err("not a finite number")
    }
}

fn count(n: f64) -> Result<u64, &'static str> {
    if n < 0.0 {
        return Err("negative count");
    }
    Ok(n as u64)
}

fn lease(n: f64) -> Result<f64, &'static str> {
    if n < 0.0 {
        return Err("negative lease");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_a_reply_in_the_order_sent() {
        let v = Value::Array(vec![
            int(3),
            int(120),
            int(4),
            text("10000"),
            text("12"),
            text("5000"),
            text("0"),
            int(45_000),
            int(3_000),
            int(2_000),
            int(0),
            int(913),
            int(40),
        ]);
        let r = decode(v, 1, 1).unwrap();
        assert_eq!((r.members, r.requests, r.retries), (3, 120, 4));
        assert_eq!(r.leases, vec![(10_000.0, 12.0)]);
        assert_eq!(r.unleased, vec![(5_000.0, 0.0)]);
        assert_eq!(
            r.views[0],
            FleetView {
                members: 3,
                admitted: 45_000,
                recent: 3_000,
                cooldown_ms: 2_000,
                ejection_ms: 0,
                reading: Some((913, 40)),
            }
        );
    }

    #[test]
    fn refuses_garbage() {
        let ok = || {
            vec![
                int(1),
                int(0),
                int(0),
                int(5),
                int(0),
                int(0),
                int(0),
                int(-1),
                int(0),
            ]
        };
        assert!(decode(Value::Array(ok()), 0, 1).is_ok());
        let cases: Vec<(Value, &str)> = vec![
            (Value::Nil, "not an array"),
            (text("OK"), "not an array"),
            (Value::Array(ok()[..8].to_vec()), "wrong length"),
            (
                Value::Array({
                    let mut v = ok();
                    v[0] = int(0);
                    v
                }),
                "no members",
            ),
            (
                Value::Array({
                    let mut v = ok();
                    v[3] = int(-5);
                    v
                }),
                "negative count",
            ),
            (
                Value::Array({
                    let mut v = ok();
                    v[5] = text("soon");
                    v
                }),
                "not a number",
            ),
            (
                Value::Array({
                    let mut v = ok();
                    v[1] = text("inf");
                    v
                }),
                "not a finite number",
            ),
        ];
        for (v, why) in cases {
            assert_eq!(decode(v, 0, 1), Err(why));
        }
    }

    #[test]
    fn args_carry_every_field() {
        let out = Outgoing {
            requests: 7,
            retries: 1,
            tenants: vec![("team-a".into(), 30_000, 0, BudgetReport::default())],
            deployments: vec![(
                "eastus-ptu".into(),
                FleetNews {
                    admitted: 900,
                    reading: Some((875, 12)),
                    ..FleetNews::default()
                },
            )],
            ..Outgoing::default()
        };
        let a = args("spw", "pod-1", 500, false, &out);
        assert_eq!(a.len(), 8 + 8 + 7);
        assert_eq!(&a[..8], ["spw", "pod-1", "500", "0", "7", "1", "1", "1"]);
        assert_eq!(&a[8..10], ["team-a", "30000"]);
        assert_eq!(&a[16..], ["eastus-ptu", "900", "0", "0", "0", "875", "12"]);
    }
}
