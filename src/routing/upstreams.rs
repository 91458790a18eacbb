//! The upstreams routing chooses among: pools of interchangeable deployments, each with
//! its endpoint, its precomputed header values and its live state. Config builds them;
//! routing and the proxy read them.

use super::price::Price;
use super::state::{DeploymentState, Gauge, RoutingPolicy, Skip};
use crate::identity::credential::Credential;
use http::HeaderValue;
use std::sync::Arc;

/// Billing model of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Provisioned,
    Standard,
}

impl PoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolKind::Provisioned => "provisioned",
            PoolKind::Standard => "standard",
        }
    }
}

/// A group of interchangeable deployments.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub kind: PoolKind,
    /// Percent of reported utilization at which the pool's deployments are avoided.
    pub spill_at_utilization: f64,
    /// Requests each deployment may hold waiting for room (see `routing::hold`).
    pub hold_queue: usize,
    pub price: Price,
    pub deployments: Vec<Arc<Deployment>>,
}

/// One upstream deployment with its live state.
#[derive(Debug)]
pub struct Deployment {
    pub name: String,
    pub region: String,
    pub endpoint: Endpoint,
    /// The upstream deployment name that replaces the client's alias.
    pub deployment: String,
    pub weight: u32,
    pub max_inflight: Option<u32>,
    /// Known capacity in tokens per minute, for predicted utilization.
    pub capacity_tpm: Option<u64>,
    /// Shared with the previous config when the same deployment survives a reload.
    pub state: Arc<DeploymentState>,
    pub wire: WireValues,
    pub auth: UpstreamAuth,
}

/// How the gateway proves itself to a deployment.
#[derive(Debug)]
pub enum UpstreamAuth {
    /// `api-key`, the deployment's secret, marked sensitive so that no debug print shows it.
    ApiKey(HeaderValue),
    /// `Authorization: Bearer`, the current token of a credential that every deployment using
    /// the same identity shares (refreshed in the background, see `ops::tokens`).
    Entra(Arc<Credential>),
}

impl UpstreamAuth {
    /// The credential behind this auth, when it is an Entra ID one.
    pub fn credential(&self) -> Option<&Arc<Credential>> {
        match self {
            UpstreamAuth::Entra(c) => Some(c),
            UpstreamAuth::ApiKey(_) => None,
        }
    }
}

/// A deployment's header values, validated and built once per load: the request path
/// clones them (a reference count) instead of copying and re-validating strings.
#[derive(Debug)]
pub struct WireValues {
    /// `Host`: the endpoint's authority.
    pub host: HeaderValue,
    /// `x-ms-deployment-name`: the deployment's name in this config.
    pub name: HeaderValue,
    /// `x-spillway-region`.
    pub region: HeaderValue,
}

/// Where a deployment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The `Host` header value: the host, with the port when it is not the scheme's default.
    pub authority: String,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

impl Deployment {
    /// Why this deployment of `pool` should not take a request now, for a request that reads
    /// saturation through `gauge`; `None` when it has room.
    pub fn skip_in(
        &self,
        pool: &Pool,
        gauge: Gauge,
        policy: &RoutingPolicy,
        now: tokio::time::Instant,
    ) -> Option<Skip> {
        if let UpstreamAuth::Entra(c) = &self.auth {
            if !c.usable(now) {
                return Some(Skip::NoCredential);
            }
        }
        self.state.skip_for(
            self.max_inflight,
            pool.spill_at_utilization,
            self.capacity_tpm,
            gauge,
            policy,
            now,
        )
    }
}

#[cfg(test)]
impl Deployment {
    /// A deployment at a loopback address nothing listens on, with fresh state.
    pub fn for_test(name: &str, weight: u32, max_inflight: Option<u32>) -> Self {
        Deployment {
            name: name.into(),
            region: "test".into(),
            endpoint: Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9,
                authority: "127.0.0.1:9".into(),
            },
            deployment: "m".into(),
            weight,
            max_inflight,
            capacity_tpm: None,
            state: Arc::new(DeploymentState::new()),
            wire: WireValues {
                host: HeaderValue::from_static("127.0.0.1:9"),
                name: HeaderValue::from_str(name).unwrap(),
                region: HeaderValue::from_static("test"),
            },
            auth: UpstreamAuth::ApiKey(HeaderValue::from_static("k")),
        }
    }
}
