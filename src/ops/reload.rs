//! Hot reload: on SIGHUP or when the config file (or a certificate it names) changes, load and validate it, carry live
//! state over to deployments and tenants that remain, and swap it in atomically. Requests in
//! flight finish on the config they started with. A bad file changes nothing: the old config
//! keeps serving and every problem is logged and shown on /status.

use crate::config::tls::{stamp, FileStamp};
use crate::config::{self, Config};
use crate::shared::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How often the file's metadata is looked at.
const POLL: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub hash: String,
    /// Settings that changed in the file but only take effect after a graceful upgrade.
    pub needs_upgrade: Vec<&'static str>,
}

fn needs_upgrade(
    old: &Config,
    new: &Config,
    old_server: &str,
    new_server: &str,
) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.listen != new.listen {
        v.push("listen");
    }
    if old.client_limits.max_requests_per_connection
        != new.client_limits.max_requests_per_connection
    {
        v.push("clients.limits.max_requests_per_connection");
    }
    if old.admin_listen != new.admin_listen {
        v.push("admin_listen");
    }
    if old.access_log != new.access_log {
        v.push("access_log");
    }
    if old_server != new_server {
        v.push("server");
    }
    v
}

/// Reloads the config file now. On error the running config is untouched.
pub fn reload(shared: &Shared) -> Result<Reloaded, config::ConfigError> {
    let Some(path) = shared.config_path.as_deref() else {
        return Err(config::ConfigError::single(
            std::path::Path::new("(none)"),
            "(file)",
            "this gateway was not started from a file",
        ));
    };
    let current = shared.config();
    let result = config::load(path, Some(&current));
    let outcome = match result {
        Ok(loaded) => {
            let server = loaded.server.to_yaml();
            let needs = needs_upgrade(&current, &loaded.config, &shared.server_yaml, &server);
            let hash = loaded.config.hash.clone();
            if hash != current.hash {
                shared.swap_config(loaded.config);
            } else {
                // Same file, perhaps renewed certificates: serve them from the next handshake.
                shared.install_certs(&loaded.config);
            }
            Ok(Reloaded {
                hash,
                needs_upgrade: needs,
            })
        }
        Err(e) => Err(e),
    };
    let at = jiff::Timestamp::now().to_string();
    let status = match &outcome {
        Ok(r) => {
            shared
                .metrics
                .config_reloads
                .with_label_values(&["ok"])
                .inc();
            log::info!("config reloaded from {} (hash {})", path.display(), r.hash);
            if !r.needs_upgrade.is_empty() {
                log::warn!(
                    "config changes to {} take effect only after a graceful upgrade (-u)",
                    r.needs_upgrade.join(", ")
                );
            }
            json!({"at": at, "result": "ok", "hash": r.hash, "needs_upgrade": r.needs_upgrade})
        }
        Err(e) => {
            shared
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            log::error!("config reload rejected, the previous config keeps running: {e}");
            let problems: Vec<_> = e
                .problems
                .iter()
                .map(|p| json!({"field": p.field, "reason": p.reason}))
                .collect();
            json!({"at": at, "result": "error", "file": e.file, "problems": problems})
        }
    };
    *shared.last_reload.lock() = Some(status);
    outcome
}

/// Watches the file and SIGHUP for the whole life of the process.
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>) -> Self {
        Reloader { shared }
    }
}

/// What the watcher compares: the config file and every certificate and key it names.
type Stamps = Vec<Option<FileStamp>>;

/// The stamps on disk now; with `as_loaded`, the certificates' stamps from when the running
/// config read them instead, so a renewal between that load and the watcher's start counts.
fn stamps(path: &std::path::Path, shared: &Shared, as_loaded: bool) -> Stamps {
    let config = shared.config();
    let certs = config
        .listen
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| match as_loaded {
            true => t.loaded,
            false => [stamp(&t.cert_path), stamp(&t.key_path)],
        });
    std::iter::once(stamp(path)).chain(certs).collect()
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(path) = self.shared.config_path.clone() else {
            return;
        };
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("SIGHUP reload is unavailable: {e}");
                None
            }
        };
        let mut last = stamps(&path, &self.shared, true);
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup_recv => {
                    log::info!("SIGHUP: reloading {}", path.display());
                    let _ = reload(&self.shared);
                    last = stamps(&path, &self.shared, false);
                }
                _ = tokio::time::sleep(POLL) => {
                    let now = stamps(&path, &self.shared, false);
                    if now[0].is_some() && now != last {
                        // What was seen before the reload: a file that changes while it
                        // runs (a key renewed just after its certificate) is seen next time.
                        // If the reload named other certificates, their stamps differ next
                        // time too, which costs one reload that changes nothing.
                        last = now;
                        let _ = reload(&self.shared);
                    }
                }
            }
        }
    }
}
