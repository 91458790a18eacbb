//! A small builder for the configs tests start gateways from, so each test states only what it
//! changes and never glues YAML text together.

use super::TENANT_KEY;
use serde_yaml::{Mapping, Value};
use spillway_sim::SimHandle;

/// A gateway config without `server`, `listen` and `admin_listen` (the harness adds those).
#[derive(Clone, Debug)]
pub struct Conf {
    root: Mapping,
}

impl Default for Conf {
    fn default() -> Self {
        Self::new()
    }
}

impl Conf {
    /// Tenant `search` with [`TENANT_KEY`], no access log, no pools or models yet.
    pub fn new() -> Conf {
        Conf {
            root: Mapping::new(),
        }
        .set("access_log", "off")
        .tenant("search", &[TENANT_KEY])
    }

    /// Sets the value at `path`: keys joined by dots, where a key under a list picks the item
    /// with that `name` (`"pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute"`).
    /// Maps along the way are created; list items must exist.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Conf {
        let mut node = &mut self.root;
        let mut keys = path.split('.').peekable();
        while let Some(key) = keys.next() {
            if keys.peek().is_none() {
                node.insert(key.into(), value.into());
                break;
            }
            let child = node
                .entry(key.into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            node = match child {
                Value::Mapping(m) => m,
                Value::Sequence(items) => {
                    let name = keys.next().expect("a list is followed by an item's name");
                    let item = items
                        .iter_mut()
                        .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
                        .unwrap_or_else(|| panic!("{path}: no item named {name}"));
                    if keys.peek().is_none() {
                        panic!("{path}: set a field of {name}, not the item itself");
                    }
                    item.as_mapping_mut().expect("list items are maps")
                }
                _ => panic!("{path}: {key} is not a map or a list"),
            };
        }
        self
    }

    /// Adds a tenant with these keys.
    pub fn tenant(self, name: &str, keys: &[&str]) -> Conf {
        self.push("tenants", entry(name, [("api_keys", strings(keys))]))
    }

    /// Adds a tenant whose callers sign in with Entra ID tokens of these object ids.
    pub fn token_tenant(self, name: &str, object_ids: &[&str]) -> Conf {
        let mut entra = Mapping::new();
        entra.insert("object_ids".into(), strings(object_ids));
        self.push("tenants", entry(name, [("entra", Value::Mapping(entra))]))
    }

    /// Adds a pool of `kind` (`provisioned` or `standard`) whose deployments are the simulators
    /// `sims`, each named as its simulator and keyed `key-<name>` (what [`super::sim`] expects).
    pub fn pool(self, name: &str, kind: &str, sims: &[(&str, &SimHandle)]) -> Conf {
        let deployments = sims
            .iter()
            .map(|(name, sim)| {
                entry(
                    name,
                    [
                        ("region", name.split('-').next().unwrap_or(name).into()),
                        ("endpoint", sim.endpoint().into()),
                        ("deployment", "gpt-4o-mini".into()),
                        ("api_key", format!("key-{name}").into()),
                    ],
                )
            })
            .collect();
        self.push(
            "pools",
            entry(
                name,
                [
                    ("kind", kind.into()),
                    ("deployments", Value::Sequence(deployments)),
                ],
            ),
        )
    }

    /// Routes `alias` to `pools`, in order.
    pub fn model(self, alias: &str, pools: &[&str]) -> Conf {
        self.set(&format!("models.{alias}.pools"), strings(pools))
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.root).expect("a YAML map serialises")
    }

    fn push(mut self, list: &str, item: Value) -> Conf {
        let items = self
            .root
            .entry(list.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        items.as_sequence_mut().expect("a list").push(item);
        self
    }
}

fn entry<const N: usize>(name: &str, fields: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    for (k, v) in fields {
        m.insert(k.into(), v);
    }
    Value::Mapping(m)
}

fn strings(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|&s| s.into()).collect())
}
