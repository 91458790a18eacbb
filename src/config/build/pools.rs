//! The parts of the file about where requests go: pools, deployments and their endpoints,
//! and the model aliases that name them.

use super::auth::{api_key, build_auth, Credentials};
use super::policy::build_caps;
use super::Problems;
use crate::api::{is_alias, Operation, Operations};
use crate::config::env;
use crate::config::file::{ModelFile, PoolKindFile};
use crate::config::runtime::*;
use crate::routing::state::DeploymentState;
use http::HeaderValue;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Held requests per deployment when the pool does not say: a burst of a few seconds at a
/// few hundred requests per second.
const DEFAULT_HOLD_QUEUE: usize = 256;
/// Each held request is a client connection and a task: more is a mistake, not a queue.
const MAX_HOLD_QUEUE: usize = 100_000;

/// Names that go into URL paths and metric labels: keep them plain.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn build_pools(
    raw: Vec<crate::config::file::PoolFile>,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
    credentials: &mut Credentials,
    problems: &mut Problems,
) -> Vec<Pool> {
    if raw.is_empty() {
        problems.push("pools", "at least one pool is required");
    }
    let old: HashMap<String, &Arc<Deployment>> = previous
        .map(|c| {
            c.deployments()
                .map(|(_, d)| (state_key(&d.name, &d.endpoint, &d.deployment), d))
                .collect()
        })
        .unwrap_or_default();
    let mut pool_names = HashSet::new();
    let mut dep_names = HashSet::new();
    let mut pools = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let at = format!("pools[{i}]");
        if !is_plain_name(&p.name) {
            problems.push(
                format!("{at}.name"),
                "must be non-empty letters, digits, - _ .",
            );
        } else if !pool_names.insert(p.name.clone()) {
            problems.push(format!("{at}.name"), format!("duplicate pool `{}`", p.name));
        }
        let kind = match p.kind {
            PoolKindFile::Provisioned => PoolKind::Provisioned,
            PoolKindFile::Standard => PoolKind::Standard,
        };
        let spill = p.spill_at_utilization.unwrap_or(match kind {
            PoolKind::Provisioned => 90.0,
            PoolKind::Standard => 100.0,
        });
        if !(spill > 0.0 && spill <= 100.0) {
            problems.push(
                format!("{at}.spill_at_utilization"),
                "must be a percentage above 0 and at most 100",
            );
        }
        if p.deployments.is_empty() {
            problems.push(format!("{at}.deployments"), "pool has no deployments");
        }
        let pool_auth_failed = p.auth.is_some();
        let pool_auth = p
            .auth
            .and_then(|a| build_auth(&format!("{at}.auth"), a, lookup, problems));
        let pool_auth_failed = pool_auth_failed && pool_auth.is_none();
        let mut deployments = Vec::new();
        for (j, d) in p.deployments.into_iter().enumerate() {
            let at = format!("{at}.deployments[{j}]");
            if !is_plain_name(&d.name) {
                problems.push(
                    format!("{at}.name"),
                    "must be non-empty letters, digits, - _ .",
                );
            } else if !dep_names.insert(d.name.clone()) {
                problems.push(
                    format!("{at}.name"),
                    format!("duplicate deployment `{}`", d.name),
                );
            }
            if !is_plain_name(&d.deployment) {
                problems.push(
                    format!("{at}.deployment"),
                    "must be non-empty letters, digits, - _ .",
                );
            }
            let endpoint = match env::expand(&d.endpoint, lookup) {
                Ok(url) => match parse_endpoint(&url) {
                    Ok(e) => Some(e),
                    Err(reason) => {
                        problems.push(format!("{at}.endpoint"), reason);
                        None
                    }
                },
                Err(missing) => {
                    problems.push(
                        format!("{at}.endpoint"),
                        format!("environment variable {} is not set", missing.join(", ")),
                    );
                    None
                }
            };
            let auth = match (d.api_key, d.auth) {
                (Some(_), Some(_)) => {
                    problems.push(format!("{at}.auth"), "give `api_key` or `auth`, not both");
                    None
                }
                (Some(key), None) => api_key(&format!("{at}.api_key"), &key, lookup, problems),
                (None, Some(auth)) => build_auth(&format!("{at}.auth"), auth, lookup, problems),
                (None, None) => {
                    if pool_auth.is_none() && !pool_auth_failed {
                        problems.push(
                            format!("{at}.api_key"),
                            "is required, unless the deployment or its pool has `auth`",
                        );
                    }
                    pool_auth.clone()
                }
            };
            let region = d.region.unwrap_or_else(|| "unknown".into());
            let region_value = header_value(&format!("{at}.region"), &region, problems);
            let weight = d.weight.unwrap_or(1);
            if weight == 0 {
                problems.push(format!("{at}.weight"), "must be at least 1");
            }
            let (Some(endpoint), Some(auth), Some(region_value)) = (endpoint, auth, region_value)
            else {
                continue;
            };
            // Plain names and a parsed authority are always valid header values.
            let (Ok(name_value), Ok(host_value)) = (
                HeaderValue::from_str(&d.name),
                HeaderValue::from_str(&endpoint.authority),
            ) else {
                continue;
            };
            let state = old
                .get(&state_key(&d.name, &endpoint, &d.deployment))
                .map(|d| d.state.clone())
                .unwrap_or_else(|| Arc::new(DeploymentState::new()));
            deployments.push(Arc::new(Deployment {
                region,
                name: d.name,
                endpoint,
                deployment: d.deployment,
                weight,
                max_inflight: d.max_inflight.or(p.max_inflight).filter(|n| *n > 0),
                capacity_tpm: d.capacity_tokens_per_minute.filter(|n| *n > 0),
                state,
                wire: WireValues {
                    host: host_value,
                    name: name_value,
                    region: region_value,
                },
                auth: credentials.resolve(auth),
            }));
        }
        let capacities_known =
            !deployments.is_empty() && deployments.iter().all(|d| d.capacity_tpm.is_some());
        let price = super::classes::build_price(&at, kind, p.price, capacities_known, problems);
        let hold_queue = p.hold_queue.unwrap_or(DEFAULT_HOLD_QUEUE);
        if hold_queue > MAX_HOLD_QUEUE {
            problems.push(
                format!("{at}.hold_queue"),
                format!("must be at most {MAX_HOLD_QUEUE}"),
            );
        }
        pools.push(Pool {
            name: p.name,
            kind,
            spill_at_utilization: spill,
            hold_queue,
            price,
            deployments,
        });
    }
    pools
}

/// `value` as a header value, or a problem at `field` that does not repeat the value (it
/// may be a key).
fn header_value(field: &str, value: &str, problems: &mut Problems) -> Option<HeaderValue> {
    let v = HeaderValue::from_str(value).ok();
    if v.is_none() {
        problems.push(
            field,
            "must be printable ASCII: it is sent as an HTTP header value",
        );
    }
    v
}

/// A deployment keeps its live state across reloads only if it is the same upstream.
fn state_key(name: &str, endpoint: &Endpoint, deployment: &str) -> String {
    format!("{name}|{}|{deployment}", endpoint.url())
}

fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let bad = || format!("`{url}` is not an http:// or https:// URL with a host");
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}` must be the resource's base URL, without a path (Spillway adds /openai/...)"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let authority = if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    Ok(Endpoint {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        authority,
    })
}

pub(super) fn build_models(
    raw: std::collections::BTreeMap<String, ModelFile>,
    pools: &[Pool],
    problems: &mut Problems,
) -> HashMap<String, Arc<Model>> {
    if raw.is_empty() {
        problems.push("models", "at least one model alias is required");
    }
    let index: HashMap<&str, usize> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut out = HashMap::new();
    for (alias, spec) in raw {
        let at = format!("models.{alias}");
        let (names, adaptive_sync_cap, caps, operations) = match spec {
            ModelFile::Pools(p) => (p, false, CapOverrides::default(), Operations::ALL),
            ModelFile::Spec(s) => (
                s.pools,
                s.adaptive_sync_cap,
                build_caps(&at, s.caps, problems),
                build_operations(&at, s.operations, problems),
            ),
        };
        if !is_alias(&alias) {
            problems.push(
                &at,
                "alias must be letters, digits, - _ . (not first), at most 64 characters",
            );
        }
        if names.is_empty() {
            problems.push(&at, "lists no pools");
        }
        let mut pools_of_model = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match index.get(name.as_str()) {
                Some(&p) if pools_of_model.contains(&p) => {
                    problems.push(format!("{at}[{i}]"), format!("pool `{name}` listed twice"))
                }
                Some(&p) => pools_of_model.push(p),
                None => problems.push(format!("{at}[{i}]"), format!("unknown pool `{name}`")),
            }
        }
        out.insert(
            alias.clone(),
            Arc::new(Model {
                name: alias,
                pools: pools_of_model,
                adaptive_sync_cap,
                caps,
                operations,
            }),
        );
    }
    out
}

/// A model's operation allowlist; `None` allows every operation Spillway knows.
fn build_operations(at: &str, names: Option<Vec<String>>, problems: &mut Problems) -> Operations {
    let Some(names) = names else {
        return Operations::ALL;
    };
    let mut set = Operations::NONE;
    for (i, name) in names.iter().enumerate() {
        match Operation::from_name(name) {
            Some(op) => set = set.with(op),
            None => {
                let known: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
                problems.push(
                    format!("{at}.operations[{i}]"),
                    format!("unknown operation `{name}` (known: {})", known.join(", ")),
                )
            }
        }
    }
    if names.is_empty() {
        problems.push(format!("{at}.operations"), "allows no operation");
    }
    set
}
