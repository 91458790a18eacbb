//! The gateway configuration of a comparison run: the common base, and each policy as a
//! list of changes to it (the one place to tune what a policy means), written out as YAML.

use serde_json::{json, Map, Value};

/// Prices of the Standard pool, dollars per million tokens (GPT-4o-mini, global Standard).
pub const STANDARD_INPUT_PER_MILLION: f64 = 0.165;
pub const STANDARD_CACHED_INPUT_PER_MILLION: f64 = 0.083;
pub const STANDARD_OUTPUT_PER_MILLION: f64 = 0.66;

/// Names the gateway sees; the PTU's also tells the harness which answers the PTU served.
pub const PTU_NAME: &str = "eastus-ptu";
pub const STANDARD_NAMES: [&str; 2] = ["westus-std", "swedencentral-std"];

/// One policy: a name and the changes it makes to the base config. A path walks objects by
/// key and arrays by their element's `name` (`pools.ptu.hold_queue`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: &'static str,
    pub about: &'static str,
    pub changes: Vec<(&'static str, Value)>,
}

/// Every policy, in report order.
pub fn policies() -> Vec<Policy> {
    vec![
        Policy {
            name: "today",
            about: "spill to Standard as soon as the PTU reaches its pool's threshold (90%)",
            changes: vec![],
        },
        Policy {
            name: "hold",
            about: "one class (standard) that may hold a request for the PTU up to 20 s \
                    (each request's own x-spillway-max-wait-ms bounds it)",
            changes: vec![
                ("classes", json!({"standard": {"max_hold_ms": 20000}})),
                ("pools.ptu.hold_queue", json!(256)),
                ("tenants.interactive.class", json!("standard")),
                ("tenants.batch.class", json!("standard")),
            ],
        },
        Policy {
            name: "classes",
            about: "interactive spills at 95% and holds 0.4 s (a hold adds to the answer's \
                    latency one for one, so an interactive class holds less than the 10% of a 5 s \
                    answer the goal allows); batch spills at 85%, holds 20 s, is shed at 100%",
            changes: vec![
                (
                    "classes",
                    json!({
                        "interactive": {"spill_at_utilization": 95, "max_hold_ms": 400},
                        "batch": {
                            "spill_at_utilization": 85,
                            "max_hold_ms": 20000,
                            "shed_at_utilization": 100
                        }
                    }),
                ),
                ("pools.ptu.hold_queue", json!(256)),
                ("tenants.interactive.class", json!("interactive")),
                ("tenants.batch.class", json!("batch")),
            ],
        },
    ]
}

/// The price blocks every policy gets, unless `--no-prices` (for a gateway that does not know
/// the `price` key yet and rejects unknown fields).
pub fn price_changes(ptu_per_hour: f64) -> Vec<(&'static str, Value)> {
    vec![
        ("pools.ptu.price", json!({"per_hour": ptu_per_hour})),
        (
            "pools.standard.price",
            json!({
                "input_per_million": STANDARD_INPUT_PER_MILLION,
                "cached_input_per_million": STANDARD_CACHED_INPUT_PER_MILLION,
                "output_per_million": STANDARD_OUTPUT_PER_MILLION
            }),
        ),
    ]
}

/// Where the gateway listens and what it proxies to.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub listen: String,
    pub admin_listen: String,
    pub access_log: String,
    pub ptu_endpoint: String,
    pub standard_endpoints: [String; 2],
    pub ptu_tpm: u64,
}

/// Key every simulator requires, so a request that reached one surely came through the gateway.
pub const SIM_KEY: &str = "sim-key";

/// The configuration all policies share.
pub fn base(w: &Wiring) -> Value {
    let standard: Vec<Value> = STANDARD_NAMES
        .iter()
        .zip(&w.standard_endpoints)
        .zip(["westus", "swedencentral"])
        .map(|((name, endpoint), region)| {
            json!({
                "name": name, "region": region, "endpoint": endpoint,
                "deployment": "gpt-4o-mini", "api_key": SIM_KEY
            })
        })
        .collect();
    json!({
        "server": {"threads": 2, "grace_period_seconds": 1, "graceful_shutdown_timeout_seconds": 1},
        "listen": w.listen,
        "admin_listen": w.admin_listen,
        "access_log": w.access_log,
        "tenants": [
            {"name": "interactive", "api_keys": ["ikey"]},
            {"name": "batch", "api_keys": ["bkey"]}
        ],
        "governance": {
            "sync_max_tokens": 2000,
            "stream_max_tokens": 8000,
            "default_max_tokens": 1000,
            "on_exceed": "clamp"
        },
        "pools": [
            {
                "name": "ptu",
                "kind": "provisioned",
                "spill_at_utilization": 90,
                "deployments": [{
                    "name": PTU_NAME, "region": "eastus", "endpoint": w.ptu_endpoint,
                    "deployment": "gpt-4o-mini", "api_key": SIM_KEY,
                    "capacity_tokens_per_minute": w.ptu_tpm
                }]
            },
            {"name": "standard", "kind": "standard", "deployments": standard}
        ],
        "models": {"gpt-4o-mini": {"pools": ["ptu", "standard"]}},
        "retry": {"on_status": [408, 429, 500, 502, 503, 504], "max_attempts": 3},
        "timeouts": {"connect_ms": 1000, "first_byte_ms": 30000, "sync_total_ms": 60000}
    })
}

/// Sets `value` at `path`, creating missing objects on the way.
pub fn apply(config: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = config;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        node = match node {
            Value::Array(items) => items
                .iter_mut()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(part))
                .ok_or_else(|| format!("{path}: no element named {part:?}"))?,
            Value::Object(map) if last => {
                map.insert(part.to_string(), value);
                return Ok(());
            }
            Value::Object(map) => map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new())),
            _ => {
                return Err(format!(
                    "{path}: {part:?} is not inside an object or a list"
                ))
            }
        };
    }
    Err(format!("{path}: ends at a list element, not a field"))
}

/// Block-style YAML of a JSON value. Strings are written JSON-quoted, which YAML reads as the
/// same string, so no escaping rules of our own are needed.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    write_block(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.iter().all(|i| scalar(i).is_some() && !i.is_array()) => Some(format!(
            "[{}]",
            a.iter().filter_map(scalar).collect::<Vec<_>>().join(", ")
        )),
        Value::Object(_) | Value::Array(_) => None,
        Value::String(s) => Some(Value::String(s.clone()).to_string()),
        other => Some(other.to_string()),
    }
}

fn write_block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        write_block(item, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line goes after the dash, the rest under it.
                        let mut inner = String::new();
                        write_block(item, indent + 2, &mut inner);
                        let inner = inner
                            .strip_prefix(&" ".repeat(indent + 2))
                            .unwrap_or(&inner);
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring() -> Wiring {
        Wiring {
            listen: "127.0.0.1:1".into(),
            admin_listen: "127.0.0.1:2".into(),
            access_log: "/tmp/a.log".into(),
            ptu_endpoint: "http://127.0.0.1:3".into(),
            standard_endpoints: ["http://127.0.0.1:4".into(), "http://127.0.0.1:5".into()],
            ptu_tpm: 600_000,
        }
    }

    #[test]
    fn every_policy_change_lands() {
        for policy in policies() {
            let mut c = base(&wiring());
            for (path, v) in policy.changes.iter().cloned().chain(price_changes(16.0)) {
                apply(&mut c, path, v).unwrap();
            }
            if policy.name == "classes" {
                assert_eq!(c["pools"][0]["hold_queue"], 256);
                assert_eq!(c["tenants"][1]["class"], "batch");
                assert_eq!(c["classes"]["batch"]["spill_at_utilization"], 85);
            }
            assert_eq!(c["pools"][1]["price"]["output_per_million"], 0.66);
        }
        let mut c = base(&wiring());
        assert!(apply(&mut c, "pools.nope.x", json!(1)).is_err());
    }

    #[test]
    fn yaml_shape() {
        let v = json!({"a": {"b": [1, 2], "c": "x:y"}, "l": [{"name": "p", "d": [{"k": 1}]}]});
        assert_eq!(
            to_yaml(&v),
            // serde_json's map keeps keys sorted.
            "a:\n  b: [1, 2]\n  c: \"x:y\"\nl:\n  - d:\n      - k: 1\n    name: \"p\"\n"
        );
    }
}
