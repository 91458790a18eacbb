//! The background task that keeps Entra ID material fresh: each upstream credential's token
//! (long before it expires) and the tenants' token issuer's signing keys. The request path
//! only reads what this task stored; no request ever waits for a token.

use crate::config::Config;
use crate::identity::credential::{Credential, Refreshed};
use crate::shared::Shared;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One token request may take this long (Azure's own SDKs allow about as much).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the task sleeps, so that a reload's new credentials get their first token
/// within this (a reload does not wake the task).
const MAX_SLEEP: Duration = Duration::from_millis(500);

pub struct TokenRefresher {
    shared: Arc<Shared>,
    connector: Connector,
}

impl TokenRefresher {
    pub fn new(shared: Arc<Shared>) -> Self {
        TokenRefresher {
            shared,
            connector: Connector::new(None),
        }
    }

    /// Refreshes every credential and key set that is due, concurrently; returns when the
    /// next one is due.
    async fn round(&self, config: &Config) -> Instant {
        let now = Instant::now();
        let due: Vec<_> = config
            .credentials
            .iter()
            .filter(|c| c.due() <= now)
            .map(|c| self.refresh(config, c))
            .collect();
        let keys = config
            .entra_id
            .as_ref()
            .filter(|t| t.keys.due(t.refresh_every) <= now);
        let keys = async {
            if let Some(t) = keys {
                t.keys.refresh().await;
            }
        };
        futures::future::join(futures::future::join_all(due), keys).await;
        let next_credential = config.credentials.iter().map(|c| c.due()).min();
        let next_keys = config
            .entra_id
            .as_ref()
            .map(|t| t.keys.due(t.refresh_every));
        [next_credential, next_keys]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + MAX_SLEEP)
            .min(Instant::now() + MAX_SLEEP)
    }

    async fn refresh(&self, config: &Config, c: &Credential) {
        let outcome = c
            .refresh(&self.connector, TOKEN_TIMEOUT, Instant::now())
            .await;
        let metrics = &self.shared.metrics.identity;
        let ok = c.status(Instant::now()).last_error.is_none();
        metrics
            .credential_refreshes
            .with_label_values(&[c.label(), if ok { "ok" } else { "error" }])
            .inc();
        // One line per change of usability, naming what moves: the deployments.
        let users = || {
            config
                .deployments()
                .filter(|(_, d)| d.auth.credential().is_some_and(|x| std::ptr::eq(&**x, c)))
                .map(|(_, d)| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match outcome {
            Refreshed::BecameUsable => {
                log::info!(
                    "credential {}: has a token; deployments {} can serve",
                    c.label(),
                    users()
                )
            }
            Refreshed::BecameUnusable => {
                let s = c.status(Instant::now());
                log::warn!(
                    "credential {}: no usable token ({}); deployments {} are passed over",
                    c.label(),
                    s.reason.as_deref().unwrap_or("unknown"),
                    users()
                )
            }
            Refreshed::Unchanged => {}
        }
    }
}

#[async_trait]
impl BackgroundService for TokenRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let config = self.shared.config();
            let next = self.round(&config).await;
            drop(config);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
