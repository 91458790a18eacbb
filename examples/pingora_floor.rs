//! The floor under Spillway in `scripts/bench`: Pingora 0.9 as a bare reverse proxy, built the
//! way Spillway builds its proxy service (same crate features, the system allocator, one worker
//! thread, 16 KiB client read buffer) but with no hook besides `upstream_peer`: no body read,
//! governance, routing, metrics or access log. What it adds over a direct connection is the
//! framework's cost, which no `ProxyHttp` implementation can go below.
//!
//! cargo run --release --example pingora_floor -- LISTEN_ADDR UPSTREAM_ADDR

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};

struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pingora_floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Floor {
            upstream: upstream.clone(),
        },
    );
    let buffers = L4BufferSettings {
        read: Some(16 * 1024),
        write: None,
    };
    proxy.add_listener(ListenerConfig::tcp(listen).l4_buffer(buffers));
    server.add_service(proxy);
    server.run_forever();
}
