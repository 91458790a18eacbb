//! Turns the file's serde structs into the runtime `Config`, collecting every problem.

mod auth;
mod classes;
mod clients;
mod edge;
mod entra_id;
mod fleet;
mod policy;
mod pools;

use super::error::{redact_values, ConfigError, Problems};
use super::file::{FileConfig, PortOrAddr};
use super::runtime::*;
use super::{env, KeyDigest, Secret};
use clients::build_clients;
use pingora::server::configuration::ServerConf;
use policy::{build_governance, build_tenants};
use pools::{build_models, build_pools};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A loaded file: the gateway's config and Pingora's own server settings.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub server: ServerConf,
    /// What works but should not (short keys, ...): `spillway -t` prints them.
    pub warnings: Vec<super::Problem>,
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
            // serde_yaml's message starts with the field path, and quotes the value it could
            // not use: a key given the wrong type would be printed, so values are cut out.
            return Err(ConfigError::single(
                file,
                field,
                redact_values(&e.to_string()),
            ));
        }
    };
    for path in unknown {
        problems.push(path, "unknown field");
    }

    let server = build_server(raw.server, &mut problems);
    let listen = edge::build_listeners(raw.listen.into_vec(), file, &mut problems);
    let client_limits = edge::build_client_limits(&raw.clients.limits, &mut problems);
    let admin_listen = raw.admin_listen.map(admin_addr);
    if let Some(addr) = &admin_listen {
        check_addr("admin_listen", addr, &mut problems);
        if listen.iter().any(|l| &l.addr == addr) {
            problems.push("admin_listen", "must differ from every `listen` address");
        }
    }
    let admin_token = raw.admin_token.and_then(|t| {
        let token = expand_secret("admin_token", &t, lookup, &mut problems)?;
        if token.expose().chars().count() < policy::MIN_KEY_CHARS {
            problems.warn(
                "admin_token",
                format!("shorter than {} characters", policy::MIN_KEY_CHARS),
            );
        }
        Some(KeyDigest::of(token.expose()))
    });
    let public_admin = admin_listen
        .as_deref()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .is_some_and(|a| !a.ip().is_loopback());
    if public_admin && admin_token.is_none() {
        problems.warn(
            "admin_listen",
            "listens beyond this host without admin_token: /metrics and /status are open to whoever reaches it",
        );
    }

    let tenant_count = raw.tenants.len() as u32;
    let fleet = fleet::build_fleet(raw.fleet, lookup, &mut problems);
    // A tenant new to this process holds 1/expected_members of its budget until the fleet
    // says more; a fleet that is running says so within one exchange.
    let initial_share = fleet.as_ref().map_or(1, |f| f.expected_members);
    let token_tenants =
        entra_id::build_entra_id(raw.entra_id, &raw.tenants, lookup, previous, &mut problems);
    let tenants = build_tenants(raw.tenants, lookup, previous, initial_share, &mut problems);
    let sync_window = Duration::from_millis(raw.timeouts.sync_total_ms);
    let governance = build_governance(raw.governance, sync_window, &mut problems);
    let mut credentials = auth::Credentials::new(previous);
    let pools = build_pools(raw.pools, lookup, previous, &mut credentials, &mut problems);
    let classes = classes::build_classes(raw.classes, &mut problems);
    let models = build_models(raw.models, &pools, &mut problems);
    let clients = build_clients(raw.clients, lookup, &mut problems);
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
        // With fewer tenants than that, the failures of all of them are enough.
        eject_min_sources: r.eject_min_sources.min(tenant_count).max(1),
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
    if raw
        .client_read_buffer_bytes
        .is_some_and(|n| !(1024..=1024 * 1024).contains(&n))
    {
        problems.push(
            "client_read_buffer_bytes",
            "must be between 1024 and 1048576",
        );
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
        warnings: problems.into_warnings(),
        config: Config {
            listen,
            client_limits,
            admin_listen,
            admin_token,
            access_log: raw.access_log.unwrap_or_else(|| "stdout".into()),
            drain_delay: Duration::from_millis(raw.drain_delay_ms.unwrap_or(5000)),
            meter_streams: raw.meter_streams.unwrap_or(true),
            client_read_buffer: raw.client_read_buffer_bytes.unwrap_or(16 * 1024),
            tenants,
            entra_id: token_tenants,
            governance,
            pools,
            credentials: credentials.into_vec(),
            classes,
            models,
            retry,
            routing,
            health,
            clients,
            fleet,
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
        Some(v) => serde_yaml::from_value(v).map_err(|e| redact_values(&e.to_string())),
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

/// The admin listener's address: a port alone (`9090`, `"9090"`, `":9090"`) is on loopback,
/// so that leaving out the host never opens the admin endpoints to the network.
fn admin_addr(raw: PortOrAddr) -> String {
    let text = match raw {
        PortOrAddr::Port(port) => return format!("127.0.0.1:{port}"),
        PortOrAddr::Text(text) => text,
    };
    let port = text.strip_prefix(':').unwrap_or(&text);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{port}")
    } else {
        text
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

/// `value` with every `${VAR}` read through `lookup`; a missing variable is a problem at
/// `field` that names it (never a value).
pub(super) fn expand_value(
    field: &str,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<String> {
    env::expand(value, lookup)
        .map_err(|missing| {
            problems.push(
                field,
                format!("environment variable {} is not set", missing.join(", ")),
            )
        })
        .ok()
}

pub(super) fn expand_secret(
    field: &str,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Secret> {
    let v = expand_value(field, value, lookup, problems)?;
    if v.is_empty() {
        problems.push(field, "is empty");
        return None;
    }
    Some(Secret::new(v))
}
