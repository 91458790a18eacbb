//! The floor under Spillway in `bench/run`: Pingora 0.9 as a bare reverse proxy, built the
//! way Spillway builds its proxy service (same crate features, the system allocator, one worker
//! thread, 16 KiB client read buffer) but with no hook besides `upstream_peer`: no body read,
//! governance, routing, metrics or access log. What it adds over a direct connection is the
//! framework's cost, which no `ProxyHttp` implementation can go below.
//!
//! cargo run --release -p spillway-bench --bin pingora_floor -- LISTEN_ADDR UPSTREAM_ADDR

use spillway_bench::floor;

use async_trait::async_trait;
use pingora::prelude::*;

struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        floor::peer(&self.upstream)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: pingora_floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    floor::serve(
        listen,
        Floor {
            upstream: upstream.clone(),
        },
    );
}
