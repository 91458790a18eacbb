//! State shared by every service of one gateway process: the current config (swapped whole
//! on reload, read lock-free per request) and where it came from.

use crate::config::CertResolver;
use crate::config::Config;
use crate::governance::auth_failures::AuthFailures;
use crate::routing::retry_budget::RetryBudget;
use crate::telemetry::access::{AccessLog, Sink};
use crate::telemetry::edge::EdgeCounters;
use crate::telemetry::fleet::FleetTelemetry;
use crate::telemetry::metrics::Metrics;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// One per process; the proxy, the admin endpoints and background tasks hold an `Arc` of it.
pub struct Shared {
    config: ArcSwap<Config>,
    /// The file the config was read from; `None` for configs built in code (demo, tests).
    pub config_path: Option<PathBuf>,
    spin: AtomicU32,
    /// Process-wide, so that no reload resets it.
    pub retry_budget: RetryBudget,
    /// Failed authentications per client address; process-wide, so a reload is no reset.
    pub auth_failures: AuthFailures,
    pub metrics: Metrics,
    /// Open client connections and the edge limits that fired.
    pub edge: Arc<EdgeCounters>,
    /// The fleet view's status and metrics (see `ops::fleet`).
    pub fleet: FleetTelemetry,
    /// One certificate resolver per TLS listener (by `listen` index), updated on reload.
    pub certs: Vec<Option<Arc<CertResolver>>>,
    pub access_log: AccessLog,
    /// Set on SIGTERM or upgrade: /readyz and the client health path turn unready.
    pub draining: AtomicBool,
    /// Set once a client listener was seen accepting (see `not_ready_reason`).
    listening: AtomicBool,
    /// The outcome of the last reload, for /status.
    pub last_reload: Mutex<Option<serde_json::Value>>,
    /// Pingora's server settings as loaded at start, to tell which changes need an upgrade.
    pub server_yaml: String,
}

impl Shared {
    pub fn new(config: Config, config_path: Option<PathBuf>, server_yaml: String) -> Arc<Self> {
        let sink = Sink::parse(&config.access_log);
        let access_log = AccessLog::start(sink.clone()).unwrap_or_else(|e| {
            log::error!("cannot open the access log {sink:?}: {e}; access logging is off");
            AccessLog::off()
        });
        let metrics = Metrics::default();
        // A provisioned deployment's hours are paid from the moment a config prices it.
        metrics
            .cost
            .accrue_config(&config, tokio::time::Instant::now());
        let certs = config
            .listen
            .iter()
            .map(|l| {
                l.tls
                    .as_ref()
                    .map(|t| Arc::new(CertResolver::new(t.key.clone())))
            })
            .collect();
        Arc::new(Shared {
            edge: Arc::new(EdgeCounters::new(&metrics)),
            fleet: FleetTelemetry::new(&metrics),
            certs,
            metrics,
            access_log,
            draining: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            last_reload: Mutex::new(None),
            server_yaml,
            config: {
                config.install_capacities();
                ArcSwap::from_pointee(config)
            },
            config_path,
            spin: AtomicU32::new(0),
            retry_budget: RetryBudget::default(),
            auth_failures: AuthFailures::default(),
        })
    }

    /// The config a new request runs on until it ends.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Installs a new config for requests that start from now on, and its certificates for
    /// handshakes from now on (listeners themselves change only with an upgrade).
    pub fn swap_config(&self, config: Config) {
        self.install_certs(&config);
        config.install_capacities();
        // The hours up to now at the old prices, from now on at the new.
        self.metrics
            .cost
            .accrue_config(&config, tokio::time::Instant::now());
        self.config.store(Arc::new(config));
    }

    /// Serves `config`'s certificates from the next handshake on.
    pub fn install_certs(&self, config: &Config) {
        for (resolver, listener) in self.certs.iter().zip(&config.listen) {
            if let (Some(r), Some(tls)) = (resolver, &listener.tls) {
                r.set(tls.key.clone());
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A cheap rotating number that spreads ties between equal choices.
    pub fn spin(&self) -> u32 {
        self.spin.fetch_add(1, Ordering::Relaxed)
    }

    /// Why the instance is not ready, or `None` when it is: its config is loaded (it is,
    /// once the process serves) and it is not draining. One model without a healthy
    /// deployment does not make the instance unready: every other model still needs it, and
    /// every instance sees the same upstreams, so pulling pods out of the balancer would turn
    /// one model's outage into everyone's. Per-model health is [`Shared::model_health`].
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_draining() {
            return Some("draining".into());
        }
        // Pingora starts services without waiting for one another's listeners, so the admin
        // port can answer before the client port is bound: until it is seen listening (once
        // per process), the instance is not ready.
        if !self.listening.load(Ordering::Relaxed) {
            if !self.config().listen.iter().any(|l| accepts(&l.addr)) {
                return Some("the client port is not listening yet".into());
            }
            self.listening.store(true, Ordering::Relaxed);
        }
        // A fresh instance asks for its tokens and keys at once; until each has had its
        // answer (a failure counts: routing then passes its deployments over), traffic sent
        // here would only spill or be refused.
        let config = self.config();
        if let Some(c) = config.credentials.iter().find(|c| !c.attempted()) {
            return Some(format!(
                "waiting for the first token of credential {}",
                c.label()
            ));
        }
        if let Some(t) = config.entra_id.as_ref().filter(|t| !t.keys.attempted()) {
            return Some(format!(
                "waiting for the signing keys of {}",
                t.keys.source().url()
            ));
        }
        None
    }

    /// Each model, and whether at least one of its deployments is healthy.
    pub fn model_health(&self) -> Vec<(String, bool)> {
        let config = self.config();
        let mut models: Vec<_> = config
            .models
            .values()
            .map(|model| {
                let usable = model.pools.iter().any(|&p| {
                    config.pools[p]
                        .deployments
                        .iter()
                        .any(|d| d.state.is_healthy())
                });
                (model.name.clone(), usable)
            })
            .collect();
        models.sort();
        models
    }
}

/// Whether some socket listens on `addr`'s port, read from the kernel's socket tables
/// (`ss -ltn` does the same): a probe connection would be a client connection, counted and
/// capped like any other. Where there is no `/proc` the answer is yes, as before this check.
fn accepts(addr: &str) -> bool {
    let Ok(port) = addr.parse::<std::net::SocketAddr>().map(|a| a.port()) else {
        return false;
    };
    let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    tables.is_empty() || tables.iter().any(|t| listens_on(t, port))
}

/// Whether a `/proc/net/tcp` table has a socket in state LISTEN (`0A`) on `port`.
fn listens_on(table: &str, port: u16) -> bool {
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        state == "0A" && local.ends_with(&port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_ready_until_the_client_port_accepts() {
        // A port that nothing holds once the probe listener is dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let yaml = format!(
            "listen: 0.0.0.0:{port}\ntenants: [{{name: t, api_keys: [k]}}]\n\
             pools: [{{name: p, kind: standard, deployments: [{{name: d, endpoint: 'http://127.0.0.1:9', deployment: m, api_key: k}}]}}]\n\
             models: {{m: [p]}}\naccess_log: 'off'\n"
        );
        let loaded =
            crate::config::parse(&yaml, std::path::Path::new("t.yaml"), &|_| None, None).unwrap();
        let shared = Shared::new(loaded.config, None, String::new());
        let why = shared.not_ready_reason().expect("not listening yet");
        assert!(why.contains("not listening"), "{why}");
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        assert_eq!(shared.not_ready_reason(), None);
        // Once seen listening, no more probes.
        drop(listener);
        assert_eq!(shared.not_ready_reason(), None);
    }
}
