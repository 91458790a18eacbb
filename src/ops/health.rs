//! Active health checks: one long-lived background task that, every interval, connects to
//! each deployment of the *current* config (TCP, or TCP+TLS with the endpoint's SNI, through
//! pingora-load-balancing's `TcpHealthCheck`) and flips its health after streaks of results.
//! One task over the live config, because Pingora cannot add services after start and pools
//! change on reload.

use crate::config::Deployment;
use crate::routing::resolve;
use crate::shared::Shared;
use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// The background service.
pub struct HealthChecker {
    shared: Arc<Shared>,
}

impl HealthChecker {
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthChecker { shared }
    }
}

/// Checks one deployment once: can we open a connection (and a TLS session) to it?
pub async fn check_once(d: &Deployment, timeout: Duration) -> bool {
    let Ok(addr) = resolve::address(&d.endpoint, &d.state, 0).await else {
        return false;
    };
    let mut check = if d.endpoint.tls {
        TcpHealthCheck::new_tls(&d.endpoint.host)
    } else {
        TcpHealthCheck::new()
    };
    check.peer_template.options.connection_timeout = Some(timeout);
    check.peer_template.options.total_connection_timeout = Some(timeout);
    let Ok(backend) = Backend::new(&addr.to_string()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, check.check(&backend)).await,
        Ok(Ok(()))
    )
}

/// Runs one round over every deployment of the current config, concurrently.
pub async fn check_all(shared: &Shared) {
    let config = shared.config();
    let policy = config.health;
    let rounds = config.deployments().map(|(_, d)| {
        let d = d.clone();
        async move {
            let ok = check_once(&d, policy.timeout).await;
            if let Some(now_healthy) =
                d.state
                    .record_check(ok, policy.unhealthy_after, policy.healthy_after)
            {
                if now_healthy {
                    log::info!("deployment {} is healthy again", d.name);
                } else {
                    log::warn!(
                        "deployment {} ({}) failed its health checks",
                        d.name,
                        d.region
                    );
                }
            }
        }
    });
    futures::future::join_all(rounds).await;
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            // Read every round: a reload may change the interval or turn checks off.
            let interval = self.shared.config().health.interval;
            let wait = interval.unwrap_or(Duration::from_secs(1));
            if interval.is_some() {
                check_all(&self.shared).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
