//! Turns the file's serde structs into the runtime `Config`, collecting every problem.

use super::error::{ConfigError, Problems};
use super::file::{CapsFile, FileConfig, ModelFile, OnExceedFile, PoolKindFile};
use super::runtime::*;
use super::{env, Secret};
use crate::governance::adaptive::AdaptivePolicy;
use crate::governance::budget::{BudgetLimits, LocalBudget};
use crate::governance::caps::CapPolicy;
use crate::routing::state::DeploymentState;
use pingora::server::configuration::ServerConf;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A loaded file: the gateway's config and Pingora's own server settings.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub server: ServerConf,
}

/// Parses and validates `text` (read from `file`). `previous` lends live deployment state
/// (health, cool-downs, in-flight counts) to deployments that survive a reload.
pub fn from_yaml(
    text: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
) -> Result<Loaded, ConfigError> {
    let mut problems = Problems::default();
    let mut unknown = Vec::new();
    let de = serde_yaml::Deserializer::from_str(text);
    let parsed: Result<FileConfig, _> =
        serde_ignored::deserialize(de, |path| unknown.push(field_path(&path)));
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let field = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "(file)".into());
            // serde_yaml's message starts with the field path; secrets are never echoed
            // because it reports types and names, not string values.
            return Err(ConfigError::single(file, field, e.to_string()));
        }
    };
    for path in unknown {
        problems.push(path, "unknown field");
    }

    let server = build_server(raw.server, &mut problems);
    let listen = raw.listen.into_vec();
    if listen.is_empty() {
        problems.push("listen", "at least one address is required");
    }
    for (i, addr) in listen.iter().enumerate() {
        check_addr(&format!("listen[{i}]"), addr, &mut problems);
    }
    if let Some(addr) = &raw.admin_listen {
        check_addr("admin_listen", addr, &mut problems);
        if listen.contains(addr) {
            problems.push("admin_listen", "must differ from every `listen` address");
        }
    }

    let tenants = build_tenants(raw.tenants, lookup, previous, &mut problems);
    let sync_window = Duration::from_millis(raw.timeouts.sync_total_ms);
    let governance = build_governance(raw.governance, sync_window, &mut problems);
    let pools = build_pools(raw.pools, lookup, previous, &mut problems);
    let models = build_models(raw.models, &pools, &mut problems);
    let retry = Retry {
        on_status: raw.retry.on_status,
        max_attempts: raw.retry.max_attempts,
        budget_percent: raw.retry.budget_percent,
        budget_min_per_second: raw.retry.budget_min_per_second,
    };
    if !(0.0..=100.0).contains(&retry.budget_percent) {
        problems.push("retry.budget_percent", "must be between 0 and 100");
    }
    let r = &raw.routing;
    if !(0.0..100.0).contains(&r.hysteresis_percent) {
        problems.push("routing.hysteresis_percent", "must be between 0 and 100");
    }
    if r.eject_after_failures == 0 {
        problems.push("routing.eject_after_failures", "must be at least 1");
    }
    let routing = crate::routing::state::RoutingPolicy {
        max_cooldown: Duration::from_millis(r.max_cooldown_ms),
        utilization_ttl: Duration::from_millis(r.utilization_ttl_ms),
        hysteresis_percent: r.hysteresis_percent,
        eject_after_failures: r.eject_after_failures,
        eject_for: Duration::from_millis(r.eject_ms),
    };
    let h = &raw.health;
    if h.interval_ms > 0 && (h.timeout_ms == 0 || h.unhealthy_after == 0 || h.healthy_after == 0) {
        problems.push(
            "health",
            "timeout_ms, unhealthy_after and healthy_after must be at least 1",
        );
    }
    let health = HealthPolicy {
        interval: (h.interval_ms > 0).then(|| Duration::from_millis(h.interval_ms)),
        timeout: Duration::from_millis(h.timeout_ms),
        unhealthy_after: h.unhealthy_after,
        healthy_after: h.healthy_after,
    };
    for (i, s) in retry.on_status.iter().enumerate() {
        if !(400..=599).contains(s) {
            problems.push(
                format!("retry.on_status[{i}]"),
                format!("{s} is not a 4xx or 5xx status"),
            );
        }
    }
    if !(1..=10).contains(&retry.max_attempts) {
        problems.push("retry.max_attempts", "must be between 1 and 10");
    }
    let t = raw.timeouts;
    for (field, v) in [
        ("timeouts.connect_ms", t.connect_ms),
        ("timeouts.first_byte_ms", t.first_byte_ms),
        ("timeouts.sync_total_ms", t.sync_total_ms),
    ] {
        if v == 0 {
            problems.push(field, "must be greater than 0");
        }
    }

    let Some(server) = server else {
        return Err(problems.into_error(file));
    };
    if !problems.is_empty() {
        return Err(problems.into_error(file));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    Ok(Loaded {
        server,
        config: Config {
            listen,
            admin_listen: raw.admin_listen,
            access_log: raw.access_log.unwrap_or_else(|| "stdout".into()),
            drain_delay: Duration::from_millis(raw.drain_delay_ms.unwrap_or(5000)),
            meter_streams: raw.meter_streams.unwrap_or(true),
            tenants,
            governance,
            pools,
            models,
            retry,
            routing,
            health,
            timeouts: Timeouts {
                connect: Duration::from_millis(t.connect_ms),
                first_byte: Duration::from_millis(t.first_byte_ms),
                sync_total: Duration::from_millis(t.sync_total_ms),
            },
            hash: format!("{:016x}", hasher.finish()),
        },
    })
}

/// Formats serde_ignored's path the way operators read YAML: `pools[0].deployments[1].x`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

fn build_server(value: Option<serde_yaml::Value>, problems: &mut Problems) -> Option<ServerConf> {
    let conf: Result<ServerConf, String> = match value {
        None => Ok(ServerConf::default()),
        Some(v) => serde_yaml::from_value(v).map_err(|e| e.to_string()),
    };
    match conf.and_then(|c| c.validate().map_err(|e| e.to_string())) {
        Ok(c) => {
            if !c.upgrade_sock.starts_with('/') {
                problems.push("server.upgrade_sock", "must be an absolute path");
            }
            Some(c)
        }
        Err(e) => {
            problems.push("server", e);
            None
        }
    }
}

fn check_addr(field: &str, addr: &str, problems: &mut Problems) {
    if addr.parse::<SocketAddr>().is_err() {
        problems.push(
            field,
            format!("`{addr}` is not an IP:port address such as 0.0.0.0:8080"),
        );
    }
}

fn expand_secret(
    field: &str,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Secret> {
    match env::expand(value, lookup) {
        Ok(v) if v.is_empty() => {
            problems.push(field, "is empty");
            None
        }
        Ok(v) => Some(Secret::new(v)),
        Err(missing) => {
            problems.push(
                field,
                format!("environment variable {} is not set", missing.join(", ")),
            );
            None
        }
    }
}

fn on_exceed(v: OnExceedFile) -> OnExceed {
    match v {
        OnExceedFile::Clamp => OnExceed::Clamp,
        OnExceedFile::Reject => OnExceed::Reject,
    }
}

fn build_caps(at: &str, c: CapsFile, problems: &mut Problems) -> CapOverrides {
    for (field, v) in [
        ("sync_max_tokens", c.sync_max_tokens),
        ("stream_max_tokens", c.stream_max_tokens),
        ("default_max_tokens", c.default_max_tokens),
    ] {
        if v == Some(0) {
            problems.push(format!("{at}.caps.{field}"), "must be greater than 0");
        }
    }
    CapOverrides {
        sync_max_tokens: c.sync_max_tokens,
        stream_max_tokens: c.stream_max_tokens,
        default_max_tokens: c.default_max_tokens,
        on_exceed: c.on_exceed.map(on_exceed),
    }
}

fn build_tenants(
    raw: Vec<super::file::TenantFile>,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
    problems: &mut Problems,
) -> Tenants {
    if raw.is_empty() {
        problems.push("tenants", "at least one tenant is required");
    }
    let mut names = HashSet::new();
    let mut seen_keys: HashMap<Secret, String> = HashMap::new();
    let mut out = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        if t.name.is_empty() {
            problems.push(format!("tenants[{i}].name"), "is empty");
        } else if !names.insert(t.name.clone()) {
            problems.push(
                format!("tenants[{i}].name"),
                format!("duplicate tenant `{}`", t.name),
            );
        }
        if t.api_keys.is_empty() {
            problems.push(
                format!("tenants[{i}].api_keys"),
                "at least one key is required",
            );
        }
        let mut keys = Vec::new();
        for (k, key) in t.api_keys.iter().enumerate() {
            let field = format!("tenants[{i}].api_keys[{k}]");
            if let Some(secret) = expand_secret(&field, key, lookup, problems) {
                if let Some(owner) = seen_keys.get(&secret) {
                    problems.push(field, format!("the same key is already given to `{owner}`"));
                } else {
                    seen_keys.insert(secret.clone(), t.name.clone());
                    keys.push(secret);
                }
            }
        }
        for (field, v) in [
            ("tokens_per_minute", t.tokens_per_minute),
            ("requests_per_minute", t.requests_per_minute),
        ] {
            if v == Some(0) {
                problems.push(
                    format!("tenants[{i}].{field}"),
                    "must be greater than 0 (omit it for no limit)",
                );
            }
        }
        let caps = build_caps(&format!("tenants[{i}]"), t.caps, problems);
        // The budget's level carries over a reload, so a reload is no way to reset it.
        let budget = previous
            .and_then(|c| c.tenants.all().iter().find(|p| p.name == t.name))
            .map(|p| p.budget.clone())
            .unwrap_or_else(|| Arc::new(LocalBudget::default()));
        let tenant = Tenant {
            name: t.name,
            limits: BudgetLimits {
                tokens_per_minute: t.tokens_per_minute,
                requests_per_minute: t.requests_per_minute,
            },
            caps,
            budget,
        };
        out.push((Arc::new(tenant), keys));
    }
    Tenants::new(out)
}

fn build_governance(
    g: super::file::GovernanceFile,
    sync_window: Duration,
    problems: &mut Problems,
) -> Governance {
    for (field, v) in [
        ("governance.sync_max_tokens", g.sync_max_tokens),
        ("governance.stream_max_tokens", g.stream_max_tokens),
        ("governance.default_max_tokens", g.default_max_tokens),
    ] {
        if v == 0 {
            problems.push(field, "must be greater than 0");
        }
    }
    if !(1024..=64 * 1024 * 1024).contains(&g.max_body_bytes) {
        problems.push(
            "governance.max_body_bytes",
            "must be between 1024 and 67108864 (64 MiB)",
        );
    }
    if !(g.adaptive_safety > 0.0 && g.adaptive_safety <= 1.0) {
        problems.push(
            "governance.adaptive_safety",
            "must be above 0 and at most 1",
        );
    }
    Governance {
        caps: CapPolicy {
            sync_max_tokens: g.sync_max_tokens,
            stream_max_tokens: g.stream_max_tokens,
            default_max_tokens: g.default_max_tokens,
            on_exceed: on_exceed(g.on_exceed),
        },
        max_body_bytes: g.max_body_bytes,
        adaptive: AdaptivePolicy {
            window: sync_window,
            safety: g.adaptive_safety,
            floor: g.adaptive_min_tokens,
        },
    }
}

/// Names that go into URL paths and metric labels: keep them plain.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn build_pools(
    raw: Vec<super::file::PoolFile>,
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
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
            let key = expand_secret(&format!("{at}.api_key"), &d.api_key, lookup, problems);
            let weight = d.weight.unwrap_or(1);
            if weight == 0 {
                problems.push(format!("{at}.weight"), "must be at least 1");
            }
            let (Some(endpoint), Some(api_key)) = (endpoint, key) else {
                continue;
            };
            let state = old
                .get(&state_key(&d.name, &endpoint, &d.deployment))
                .map(|d| d.state.clone())
                .unwrap_or_else(|| Arc::new(DeploymentState::new()));
            deployments.push(Arc::new(Deployment {
                region: d.region.unwrap_or_else(|| "unknown".into()),
                name: d.name,
                endpoint,
                deployment: d.deployment,
                api_key,
                weight,
                max_inflight: d.max_inflight.or(p.max_inflight).filter(|n| *n > 0),
                capacity_tpm: d.capacity_tokens_per_minute.filter(|n| *n > 0),
                state,
            }));
        }
        pools.push(Pool {
            name: p.name,
            kind,
            spill_at_utilization: spill,
            deployments,
        });
    }
    pools
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

fn build_models(
    raw: std::collections::BTreeMap<String, ModelFile>,
    pools: &[Pool],
    problems: &mut Problems,
) -> HashMap<String, Model> {
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
        let (names, adaptive_sync_cap, caps) = match spec {
            ModelFile::Pools(p) => (p, false, CapOverrides::default()),
            ModelFile::Spec(s) => (
                s.pools,
                s.adaptive_sync_cap,
                build_caps(&at, s.caps, problems),
            ),
        };
        if !is_plain_name(&alias) {
            problems.push(&at, "alias must be letters, digits, - _ .");
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
            Model {
                name: alias,
                pools: pools_of_model,
                adaptive_sync_cap,
                caps,
            },
        );
    }
    out
}
