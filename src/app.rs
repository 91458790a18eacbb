//! Assembles a gateway process: Pingora server, proxy service, admin service. `main` and the
//! tests both start gateways through here.

use crate::admin::Admin;
use crate::config::Loaded;
use crate::ops::health::HealthChecker;
use crate::ops::reload::Reloader;
use crate::ops::signals::DrainingSignals;
use crate::proxy::Gateway;
use crate::shared::Shared;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
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
    let shared = Shared::new(config, config_path, server.to_yaml());
    // Load the tokenizer now, not on the first request.
    crate::governance::tokens::warm_up();
    let mut srv = Server::new_with_opt_and_conf(opt, server);
    srv.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &srv.configuration,
        Gateway::new(shared.clone()),
        "spillway proxy",
    );
    for addr in &listen {
        // Pingora reads each client connection through a 64 KiB buffer by default; a long
        // stream holds its connection for minutes, so a smaller one saves memory per stream.
        let buffers = L4BufferSettings {
            read: Some(read_buffer),
            write: None,
        };
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(buffers));
    }
    srv.add_service(proxy);
    srv.add_service(background_service(
        "spillway health checks",
        HealthChecker::new(shared.clone()),
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
