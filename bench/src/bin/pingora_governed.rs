//! The least a Pingora gateway must do to meet the benchmark's "parses, caps and rewrites every
//! body", for `bench/run`: `pingora_floor` plus reading the whole body, parsing it, deciding
//! and applying the output cap, and swapping the credential, with Spillway's own functions. No
//! routing, budget, metrics, access log or response headers. Between the floor and Spillway, it
//! shows how much of Spillway's cost the target's own requirement explains.
//!
//! cargo run --release -p spillway-bench --bin pingora_governed -- LISTEN_ADDR UPSTREAM_ADDR API_KEY

use spillway_bench::floor;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use spillway::api::Operation;
use spillway::governance::body::{Edits, JsonBody};
use spillway::governance::caps::OnExceed;
use spillway::governance::caps::{self, CapPolicy};
use spillway::proxy::read_body::read_whole_body;

/// The caps of the benchmark's Spillway config (`bench/spillway.yaml.template`).
const POLICY: CapPolicy = CapPolicy {
    sync_max_tokens: 2000,
    stream_max_tokens: 8000,
    default_max_tokens: 1000,
    on_exceed: OnExceed::Clamp,
};

struct Governed {
    upstream: String,
    api_key: String,
}

#[async_trait]
impl ProxyHttp for Governed {
    type CTX = Option<Bytes>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let status = match governed(session).await {
            Ok(body) => {
                *ctx = Some(body);
                return Ok(false);
            }
            Err(status) => status,
        };
        let mut h = ResponseHeader::build(status, Some(1))?;
        h.insert_header(http::header::CONTENT_LENGTH, 0)?;
        session.write_response_header(Box::new(h), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        floor::peer(&self.upstream)
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        req.insert_header("api-key", self.api_key.as_str())?;
        let len = ctx.as_ref().map_or(0, Bytes::len);
        req.insert_header(http::header::CONTENT_LENGTH, len)
    }

    async fn request_body_filter(
        &self,
        _: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // As in Spillway: Pingora replays the retry buffer's tail, replaced by the whole body.
        if end_of_stream {
            *body = ctx.clone();
        } else if body.is_some() {
            *body = Some(Bytes::new());
        }
        Ok(())
    }
}

/// Reads, parses and caps the body; the body to send upstream, or the status to refuse with.
async fn governed(session: &mut Session) -> std::result::Result<Bytes, u16> {
    let raw = read_whole_body(session, 4 << 20, std::time::Duration::from_secs(60))
        .await
        .map_err(|_| 413u16)?;
    if raw.is_empty() {
        return Ok(raw); // a GET, such as the script's readiness probe, passes through
    }
    let body = JsonBody::parse(raw).map_err(|_| 400u16)?;
    let capped = caps::decide(&body, &POLICY, None).map_err(|_| 400u16)?;
    let mut edits = Edits::default();
    caps::edits(&body, Operation::ChatCompletions, &capped, &mut edits);
    Ok(edits.apply(&body))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream), Some(api_key)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("usage: pingora_governed LISTEN_ADDR UPSTREAM_ADDR API_KEY");
        std::process::exit(2);
    };
    floor::serve(
        listen,
        Governed {
            upstream: upstream.clone(),
            api_key: api_key.clone(),
        },
    );
}
