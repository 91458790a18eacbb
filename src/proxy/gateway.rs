//! The `ProxyHttp` implementation: each hook hands its work to plain functions in the sibling
//! modules, so that what it does can be tested without a Pingora session.

use super::admit::admit;
use super::ctx::RequestCtx;
use super::replay;
use super::reply::Reply;
use super::upstream::{next_peer, rewrite_request, ClientLeft};
use crate::routing::hold::Shed;
use crate::routing::select::NoChoice;
use crate::shared::Shared;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;

/// The client-port health path, for load balancers (Azure Front Door) that probe the same
/// port as the traffic. No key needed; it says only ready or not.
pub const HEALTH_PATH: &str = "/spillway/health";

/// The gateway proxy: one per process, shared by all requests.
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Gateway { shared }
    }
}

/// The status and code the client gets when Pingora reports a failure after `attempts`
/// upstream attempts.
fn failure_reply(e: &Error, attempts: usize) -> Reply {
    let tried = if attempts > 1 {
        format!(" ({attempts} attempts)")
    } else {
        String::new()
    };
    match e.etype() {
        ErrorType::HTTPStatus(503) => Reply::new(
            503,
            "ServiceUnavailable",
            e.context
                .as_ref()
                .map_or_else(|| "no deployment is available".into(), |c| c.to_string()),
        ),
        ErrorType::HTTPStatus(code) => Reply::new(*code, "UpstreamError", "the request failed"),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Reply::new(
                504,
                "GatewayTimeout",
                format!("the upstream deployment did not answer in time{tried}"),
            )
        }
        _ if e.esource() == &ErrorSource::Upstream => Reply::new(
            502,
            "BadGateway",
            format!("the upstream deployment could not be reached or failed{tried}"),
        ),
        _ => Reply::new(
            500,
            "InternalServerError",
            "the gateway failed to handle the request",
        ),
    }
}

/// An answer that says when to come back, in both of Azure's headers and in its words.
fn retry_later(status: u16, code: &'static str, what: &str, wait: std::time::Duration) -> Reply {
    let ms = wait.as_millis().max(1);
    let secs = ms.div_ceil(1000);
    Reply::new(
        status,
        code,
        format!("{what}. Please retry after {secs} seconds."),
    )
    .with_header("retry-after-ms", ms.to_string())
    .with_header("retry-after", secs.to_string())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.shared.config())
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // Pingora's default adds a response-compression module, disabled, that still runs on
        // every request. The gateway passes Azure's answers through as they are (SSE must not
        // be compressed and re-chunked), so it has no downstream modules.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        crate::edge::mark(session, true);
        session.set_write_timeout(Some(ctx.config.client_limits.send_timeout));
        if session.req_header().uri.path() == HEALTH_PATH {
            ctx.probe = true;
            super::reply::health(session, self.shared.not_ready_reason().is_none()).await?;
            return Ok(true);
        }
        ctx.request_id = super::admit::request_id(session);
        if let Err(reply) = super::gate::check(&self.shared, session, ctx) {
            // The body is left unread: draining it for a refused client is work for nothing.
            session.set_keepalive(None);
            reply.send(session, ctx.request_id()).await?;
            return Ok(true);
        }
        match admit(session, ctx).await {
            Ok(()) => {
                super::admit::count_request(&self.shared);
                Ok(false)
            }
            Err(reply) => {
                super::gate::refused(&self.shared, ctx, &reply);
                if matches!(reply.status, 408 | 411 | 413) {
                    // The unread rest of the body makes the connection unusable.
                    session.set_keepalive(None);
                }
                if reply.status == 408 {
                    self.shared
                        .edge
                        .fired(crate::telemetry::edge::Limit::BodyTimeout);
                }
                reply.send(session, ctx.request_id()).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        next_peer(&self.shared, ctx, session).await
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        rewrite_request(req, ctx)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The body was read in request_filter; Pingora hands us only the retry buffer's tail
        // (see read_body.rs), which is replaced by the whole body for this attempt.
        if end_of_stream {
            if let Some(full) = &ctx.upstream.body {
                *body = Some(full.clone());
            }
        } else if body.is_some() {
            *body = Some(Bytes::new());
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        replay::on_response(&self.shared, ctx, resp)?;
        super::finish::watch_response(resp, ctx);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        super::finish::observe_body(body, end_of_stream, ctx);
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        super::headers::annotate(resp, ctx)
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        error: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        // A replayed upstream status is routine and recorded per attempt in the access log
        // and metrics; transport failures still get Pingora's warning.
        matches!(error.etype(), ErrorType::HTTPStatus(_))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        e.set_retry(replay::after_connect_failure(&self.shared, ctx));
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let answered = session.response_written().is_some();
        e.set_retry(replay::after_error(
            &self.shared,
            ctx,
            &e,
            client_reused,
            answered,
        ));
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let cause = e.root_cause();
        if cause.is::<ClientLeft>() {
            // Nobody to answer: the status is for the log.
            return FailToProxy {
                error_code: 499,
                can_reuse_downstream: false,
            };
        }
        let reply = if let Some(Shed(wait)) = cause.downcast_ref::<Shed>() {
            retry_later(
                429,
                "429",
                "Every deployment of this model is saturated, and this tenant's class is shed first",
                *wait,
            )
        } else {
            match cause.downcast_ref::<NoChoice>() {
                Some(NoChoice::AllThrottled(wait)) => retry_later(
                    429,
                    "429",
                    "Every deployment of this model is throttled",
                    *wait,
                ),
                // Clients (and the SDKs' own retries) are told when to come back instead of
                // hammering a model whose every deployment is out.
                Some(NoChoice::NoneUsable(wait)) => retry_later(
                    503,
                    "ServiceUnavailable",
                    "No deployment of this model is available",
                    *wait,
                ),
                _ => failure_reply(e, ctx.upstream.attempts.len()),
            }
        };
        let code = if session.response_written().is_some() {
            // Mid-response: the client connection is all that can be closed.
            0
        } else {
            if let Err(write) = reply.send(session, ctx.request_id()).await {
                log::debug!("could not send the error answer: {write}");
            }
            reply.status
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // The connection's next read waits for a new request head (under the edge limits).
        crate::edge::mark(session, false);
        if ctx.probe {
            // Balancer probes arrive every few seconds from every edge: not traffic.
            return;
        }
        super::finish::settle(ctx);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let downstream = session.as_ref();
        super::record::request_done(
            &self.shared,
            ctx,
            status,
            e.map(|e| e.etype().as_str()),
            downstream.body_bytes_read(),
            downstream.body_bytes_sent(),
        );
    }
}
