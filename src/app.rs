//! Assembles a gateway process: Pingora server, proxy service, admin service. `main` and the
//! tests both start gateways through here.

use crate::admin::Admin;
use crate::config::Loaded;
use crate::edge::EdgeApp;
use crate::ops::fleet::FleetSync;
use crate::ops::health::HealthChecker;
use crate::ops::reload::Reloader;
use crate::ops::signals::DrainingSignals;
use crate::ops::tokens::TokenRefresher;
use crate::proxy::Gateway;
use crate::shared::Shared;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, TlsAccept};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::Arc;

/// Builds the server and its services from a validated config.
pub fn build(loaded: Loaded, opt: Opt, config_path: Option<PathBuf>) -> (Server, Arc<Shared>) {
    let Loaded { config, server, .. } = loaded;
    let listen = config.listen.clone();
    let admin_listen = config.admin_listen.clone();
    let read_buffer = config.client_read_buffer;
    let config_limits = config.client_limits;
    let shared = Shared::new(config, config_path, server.to_yaml());
    // Load the tokenizer now, not on the first request.
    crate::governance::tokens::warm_up();
    let mut srv = Server::new_with_opt_and_conf(opt, server);
    srv.bootstrap();

    let limits = config_limits;
    let mut proxy = HttpProxy::new(Gateway::new(shared.clone()), srv.configuration.clone());
    proxy.handle_init_modules();
    let mut options = HttpServerOptions::default();
    options.keepalive_request_limit = Some(limits.max_requests_per_connection);
    // HTTP/2 idles under the same limit; its heads are bounded by h2 itself.
    options.h2_idle_timeout = Some(limits.idle_timeout);
    proxy.server_options = Some(options);
    let mut proxy = Service::new(
        "spillway proxy".to_string(),
        EdgeApp::new(proxy, shared.clone()),
    );
    for (i, listener) in listen.iter().enumerate() {
        // Pingora reads each client connection through a 64 KiB buffer by default; a long
        // stream holds its connection for minutes, so a smaller one saves memory per stream.
        let buffers = L4BufferSettings {
            read: Some(read_buffer),
            write: None,
        };
        let mut endpoint = ListenerConfig::tcp(listener.addr.as_str()).l4_buffer(buffers);
        if let (Some(tls), Some(Some(resolver))) = (&listener.tls, shared.certs.get(i)) {
            let mut settings = TlsSettings::with_callbacks(Box::new(NoCallbacks))
                .expect("TLS settings from a resolver");
            settings.set_cert_resolver(resolver.clone());
            if tls.http2 {
                settings.enable_h2();
            }
            endpoint = endpoint.tls(settings);
        }
        proxy.add_listener(endpoint);
    }
    srv.add_service(proxy);
    srv.add_service(background_service(
        "spillway health checks",
        HealthChecker::new(shared.clone()),
    ));
    srv.add_service(background_service(
        "spillway fleet sync",
        FleetSync::new(shared.clone()),
    ));
    srv.add_service(background_service(
        "spillway entra tokens",
        TokenRefresher::new(shared.clone()),
    ));
    srv.add_service(background_service(
        "spillway config reload",
        Reloader::new(shared.clone()),
    ));

    if let Some(addr) = admin_listen {
        let mut admin = Service::new("spillway admin".to_string(), Admin::new(shared.clone()));
        admin.add_tcp(&addr);
        srv.add_service(admin);
    }
    (srv, shared)
}

/// The TLS listener needs no hook of its own: certificates come from the resolver.
struct NoCallbacks;

#[async_trait::async_trait]
impl TlsAccept for NoCallbacks {}

/// Runs a gateway until a signal stops it (SIGTERM drains first; see `ops::signals`).
pub fn run(server: Server, shared: Arc<Shared>) -> ! {
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignals { shared }),
    });
    std::process::exit(0)
}

/// A shutdown signal driven by a channel instead of Unix signals, for gateways embedded in
/// another process (tests, the demo).
pub struct ChannelSignal(pub tokio::sync::Mutex<tokio::sync::mpsc::Receiver<ShutdownSignal>>);

#[async_trait::async_trait]
impl ShutdownSignalWatch for ChannelSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}

/// A gateway running on its own thread inside this process.
pub struct Embedded {
    pub shared: Arc<Shared>,
    stop: tokio::sync::mpsc::Sender<ShutdownSignal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    /// Starts the gateway's services on a new thread and returns at once; the listeners are
    /// bound shortly after, so callers wait for readiness over HTTP. With `config_path`, the
    /// file is watched and reloaded like in a standalone gateway.
    pub fn start(loaded: Loaded, config_path: Option<PathBuf>) -> Self {
        let (server, shared) = build(loaded, Opt::default(), config_path);
        let (stop, rx) = tokio::sync::mpsc::channel(1);
        let thread = std::thread::Builder::new()
            .name("spillway-embedded".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(ChannelSignal(tokio::sync::Mutex::new(rx))),
                })
            })
            .ok();
        Embedded {
            shared,
            stop,
            thread,
        }
    }

    /// Stops the gateway and waits for its thread.
    pub fn stop(mut self) {
        let _ = self.stop.try_send(ShutdownSignal::FastShutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
