//! The validated configuration the gateway runs on. No serde here: it is built once per
//! load by `build.rs`, shared behind an `Arc`, and swapped whole on reload.

pub use super::tls::{CertResolver, TlsListener};
use crate::api::Operations;
use crate::config::KeyDigest;
use crate::config::Secret;
use crate::governance::adaptive::AdaptivePolicy;
use crate::governance::auth_failures::AuthFailurePolicy;
use crate::governance::budget::{BudgetLimits, LocalBudget};
use crate::governance::caps::{CapPolicy, OnExceed};
pub use crate::routing::class::{Class, ClassPolicy, Classes};
pub use crate::routing::price::Price;
use crate::routing::state::RoutingPolicy;
pub use crate::routing::upstreams::{
    Deployment, Endpoint, Pool, PoolKind, UpstreamAuth, WireValues,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs, immutable for the request's whole life.
#[derive(Debug)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub client_limits: ClientLimits,
    pub admin_listen: Option<String>,
    /// The digest of the admin token, when admin paths require one.
    pub admin_token: Option<KeyDigest>,
    pub access_log: String,
    pub drain_delay: Duration,
    pub meter_streams: bool,
    pub client_read_buffer: usize,
    pub tenants: Tenants,
    /// How tenants' Entra ID tokens are validated and whose they are; `None`: keys only.
    pub entra_id: Option<crate::identity::downstream::TokenTenants>,
    pub governance: Governance,
    pub pools: Vec<Pool>,
    /// The Entra ID credentials the deployments use, one per identity (see `ops::tokens`).
    pub credentials: Vec<Arc<crate::identity::credential::Credential>>,
    pub classes: Classes,
    pub models: HashMap<String, Arc<Model>>,
    pub retry: Retry,
    pub timeouts: Timeouts,
    pub routing: RoutingPolicy,
    pub health: HealthPolicy,
    pub clients: Clients,
    /// `None`: a single instance.
    pub fleet: Option<Fleet>,
    /// Hash of the file's text, shown on /status so operators can tell which file runs.
    pub hash: String,
}

impl Config {
    pub fn model(&self, alias: &str) -> Option<&Arc<Model>> {
        self.models.get(alias)
    }

    /// Tells each deployment's live state the capacity this config gives it, once the config
    /// is the one that runs (a rejected reload must not change the running one's state).
    pub fn install_capacities(&self) {
        for (_, d) in self.deployments() {
            d.state.set_capacity(d.capacity_tpm);
        }
    }

    /// Whether any deployment `model` may use has a known capacity, so that routing predicts
    /// its utilization from the tokens sent (and needs exact prompt counts).
    pub fn predicts(&self, model: &Model) -> bool {
        model.pools.iter().any(|&p| {
            self.pools[p]
                .deployments
                .iter()
                .any(|d| d.capacity_tpm.is_some())
        })
    }

    /// Every deployment of every pool, in pool order.
    pub fn deployments(&self) -> impl Iterator<Item = (&Pool, &Arc<Deployment>)> {
        self.pools
            .iter()
            .flat_map(|p| p.deployments.iter().map(move |d| (p, d)))
    }
}

/// Per-connection limits, copied into each connection when it is accepted (a reload applies
/// to connections accepted after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_head_bytes: usize,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    /// Read once at start (Pingora takes it from the service's options).
    pub max_requests_per_connection: u32,
}

/// A client listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub addr: String,
    pub tls: Option<TlsListener>,
}

/// Tenants indexed by the digests of their keys: no key is kept in plaintext.
#[derive(Default)]
pub struct Tenants {
    /// By the first 8 bytes of a key's digest. Two keys sharing them is a 1 in 2^64 chance,
    /// still handled: each entry holds every key with that prefix.
    by_prefix: HashMap<u64, Vec<(KeyDigest, Arc<Tenant>)>>,
    all: Vec<Arc<Tenant>>,
}

impl Tenants {
    pub(crate) fn new(all: Vec<(Arc<Tenant>, Vec<KeyDigest>)>) -> Self {
        let mut by_prefix: HashMap<u64, Vec<_>> = HashMap::new();
        let mut tenants = Vec::with_capacity(all.len());
        for (tenant, keys) in all {
            for key in keys {
                by_prefix
                    .entry(key.prefix())
                    .or_default()
                    .push((key, tenant.clone()));
            }
            tenants.push(tenant);
        }
        Tenants {
            by_prefix,
            all: tenants,
        }
    }

    /// The tenant whose key is `key`: one SHA-256 of the presented key (see
    /// `KeyDigest::of` for its cost), one map lookup, one constant-time comparison.
    pub fn authenticate(&self, key: &str) -> Option<&Arc<Tenant>> {
        let digest = KeyDigest::of(key);
        self.by_prefix
            .get(&digest.prefix())?
            .iter()
            .find(|(k, _)| k.matches(&digest))
            .map(|(_, t)| t)
    }

    pub fn all(&self) -> &[Arc<Tenant>] {
        &self.all
    }
}

/// Lists tenant names only: the keys are secrets.
impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.all.iter().map(|t| &t.name))
            .finish()
    }
}

/// A calling team.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    pub class: Class,
    pub limits: BudgetLimits,
    pub caps: CapOverrides,
    /// Live budget; shared with the previous config when the tenant survives a reload.
    pub budget: Arc<LocalBudget>,
    /// A number unique to this tenant in this process, kept across reloads: the source of
    /// the failures it meets, for blaming deployments (see `routing::state::Failure`).
    pub id: u64,
}

/// Cap settings that override the global ones for a model or a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapOverrides {
    pub sync_max_tokens: Option<u32>,
    pub stream_max_tokens: Option<u32>,
    pub default_max_tokens: Option<u32>,
    pub on_exceed: Option<OnExceed>,
}

impl CapOverrides {
    /// `base` with these overrides applied.
    pub fn over(&self, base: CapPolicy) -> CapPolicy {
        CapPolicy {
            sync_max_tokens: self.sync_max_tokens.unwrap_or(base.sync_max_tokens),
            stream_max_tokens: self.stream_max_tokens.unwrap_or(base.stream_max_tokens),
            default_max_tokens: self.default_max_tokens.unwrap_or(base.default_max_tokens),
            on_exceed: self.on_exceed.unwrap_or(base.on_exceed),
        }
    }
}

/// Output-token governance.
#[derive(Debug, Clone)]
pub struct Governance {
    /// The global caps.
    pub caps: CapPolicy,
    pub max_body_bytes: usize,
    /// How a measured rate becomes a synchronous cap, for models that ask for it.
    pub adaptive: AdaptivePolicy,
}

impl Governance {
    /// The caps for a request: global, then the model's overrides, then the tenant's.
    pub fn policy(&self, model: &Model, tenant: &Tenant) -> CapPolicy {
        tenant.caps.over(model.caps.over(self.caps))
    }
}

/// A model alias and the pools it may use, as indices into `Config::pools`, in order.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub pools: Vec<usize>,
    pub adaptive_sync_cap: bool,
    pub caps: CapOverrides,
    /// The operations clients may call on this alias.
    pub operations: Operations,
}

/// Replay policy.
#[derive(Debug, Clone)]
pub struct Retry {
    pub on_status: Vec<u16>,
    pub max_attempts: u32,
    pub budget_percent: f64,
    pub budget_min_per_second: u32,
}

/// Active health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// `None`: no active checks.
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

impl Retry {
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }
}

/// Who may reach the client port and how a client's address is read.
#[derive(Debug, Clone)]
pub struct Clients {
    /// The Front Door id every request must carry in `X-Azure-FDID`, when set.
    pub front_door_id: Option<Secret>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub auth_failures: AuthFailurePolicy,
}

/// The fleet's Redis and timing (see `ops::fleet`).
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Holds the password, if the URL has one.
    pub redis_url: Secret,
    pub key_prefix: String,
    pub instance_id: String,
    pub sync_interval: Duration,
    pub member_timeout: Duration,
    pub timeout: Duration,
    pub expected_members: u32,
}

impl Fleet {
    /// The URL as shown to operators: scheme, host and port, never the credentials.
    pub fn redis_display(&self) -> String {
        redact_url(self.redis_url.expose())
    }
}

/// `scheme://host:port/db` without user or password.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// Upstream timeouts.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub sync_total: Duration,
}
