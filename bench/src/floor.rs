//! The server under both floor binaries: Pingora 0.9 set up as Spillway sets up its proxy
//! service (one worker thread, the system allocator, a 16 KiB client read buffer).

use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

/// Runs `app` as the only service, listening on `listen`, until the process is signalled.
pub fn serve<P>(listen: &str, app: P)
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, app);
    let buffers = L4BufferSettings {
        read: Some(16 * 1024),
        write: None,
    };
    proxy.add_listener(ListenerConfig::tcp(listen).l4_buffer(buffers));
    server.add_service(proxy);
    server.run_forever();
}

/// The one upstream, over plain HTTP; Pingora's pool keeps its connections alive.
pub fn peer(upstream: &str) -> Result<Box<HttpPeer>> {
    Ok(Box::new(HttpPeer::new(upstream, false, String::new())))
}
