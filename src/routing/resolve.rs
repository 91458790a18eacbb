//! Resolves a deployment's host to socket addresses without blocking the runtime, cached
//! per deployment with a TTL and refreshed in the background while the old answer serves.

use super::state::{DeploymentState, Resolved};
use super::upstreams::Endpoint;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a resolved address is used before a refresh is started.
pub const DNS_TTL: Duration = Duration::from_secs(30);

/// Why a host could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub struct ResolveError {
    pub host: String,
    pub reason: String,
}

async fn lookup(endpoint: &Endpoint) -> Result<Resolved, ResolveError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| ResolveError {
            host: endpoint.host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ResolveError {
            host: endpoint.host.clone(),
            reason: "no addresses".into(),
        });
    }
    Ok(Resolved {
        addrs,
        expires: Instant::now() + DNS_TTL,
    })
}

/// The address to connect to for `endpoint`. IP literals need no lookup; a hostname is looked
/// up once, then served from cache, with at most one background refresh at a time.
pub async fn address(
    endpoint: &Endpoint,
    state: &Arc<DeploymentState>,
    spin: u32,
) -> Result<SocketAddr, ResolveError> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, endpoint.port));
    }
    let pick = |r: &Resolved| r.addrs[spin as usize % r.addrs.len()];
    if let Some(cached) = state.resolved.load_full() {
        if cached.expires <= Instant::now() && !state.resolving.swap(true, Ordering::AcqRel) {
            let (endpoint, state) = (endpoint.clone(), state.clone());
            tokio::spawn(async move {
                match lookup(&endpoint).await {
                    Ok(r) => state.resolved.store(Some(Arc::new(r))),
                    // Keep serving the stale answer: a DNS blip must not take a region down.
                    Err(e) => log::warn!("{e}; keeping the previous addresses"),
                }
                state.resolving.store(false, Ordering::Release);
            });
        }
        return Ok(pick(&cached));
    }
    let fresh = Arc::new(lookup(endpoint).await?);
    state.resolved.store(Some(fresh.clone()));
    Ok(pick(&fresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str) -> Endpoint {
        Endpoint {
            tls: false,
            host: host.into(),
            port: 8080,
            authority: format!("{host}:8080"),
        }
    }

    #[tokio::test]
    async fn literals_skip_dns_and_hostnames_are_cached() {
        let state = Arc::new(DeploymentState::new());
        let a = address(&ep("127.0.0.1"), &state, 0).await.unwrap();
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        assert!(state.resolved.load().is_none());
        let a = address(&ep("localhost"), &state, 0).await.unwrap();
        assert!(a.ip().is_loopback());
        assert!(state.resolved.load().is_some());
    }

    #[tokio::test]
    async fn unknown_host_is_an_error_not_a_panic() {
        let state = Arc::new(DeploymentState::new());
        assert!(address(&ep("no-such-host.invalid"), &state, 0)
            .await
            .is_err());
    }
}
