//! The upstream side of an attempt: the peer to connect to, the body to send and the request
//! header rewrite (path, host, key).

use super::attempt::{Attempt, Origin};
use super::ctx::{RequestBody, RequestCtx};
use super::hold;
use crate::api::Shape;
use crate::config::{Deployment, Model, UpstreamAuth};
use crate::governance::body::Edits;
use crate::governance::{caps, stream_options};
use crate::routing::class::Class;
use crate::routing::hold::{Shed, Ticket};
use crate::routing::resolve;
use crate::routing::select::{choose, Choice, NoChoice};
use crate::shared::Shared;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::time::Duration;

/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Picks the deployment for the next attempt (the one the replay decision found, if any;
/// for a first attempt whose first pool is saturated, perhaps after holding it for that
/// pool), starts the attempt, and builds its peer.
pub async fn next_peer(
    shared: &Shared,
    ctx: &mut RequestCtx,
    session: &mut Session,
) -> Result<Box<HttpPeer>> {
    let config = ctx.config.clone();
    let mut now = tokio::time::Instant::now();
    let Some(model) = ctx.admission.as_ref().map(|a| a.model.clone()) else {
        return Error::e_explain(ErrorType::InternalError, "request not admitted");
    };
    let spin = shared.spin();
    let mut ticket = None;
    let choice = match ctx.upstream.next.take() {
        Some(choice) => choice,
        None => {
            let choice = choose_next(ctx, &model, spin, now).map_err(no_choice)?;
            if ctx.upstream.attempts.is_empty() && hold::spilled_for_saturation(&choice) {
                let (choice, held) = hold_or_spill(ctx, &model, choice, session, spin).await?;
                ticket = held;
                now = tokio::time::Instant::now();
                choice
            } else {
                choice
            }
        }
    };
    if choice.saturated {
        shed(ctx, &choice, now)?;
    }
    let deployment = choice.deployment.clone();
    let prompt_tokens = prepare_body(ctx, model.adaptive_sync_cap, &deployment);
    let output = ctx.upstream.capped.as_ref().map_or(0, |c| c.total_output);
    let origin = Origin {
        source: ctx.tenant.as_ref().map_or(0, |t| t.id),
        output,
        stream: ctx.admission.as_ref().is_some_and(|a| a.streaming()),
    };
    ctx.upstream
        .attempts
        .push(Attempt::start(choice, prompt_tokens + output, origin, now));
    // The lease is taken: the next held request may look at what room is left.
    drop(ticket);
    let addr = resolve::address(&deployment.endpoint, &deployment.state, spin)
        .await
        .map_err(|e| Error::explain(ErrorType::ConnectNoRoute, e.to_string()))?;
    if ctx.overhead.is_none() {
        ctx.overhead = Some(ctx.started.elapsed().saturating_sub(ctx.body_read));
    }
    let mut peer = HttpPeer::new(
        addr,
        deployment.endpoint.tls,
        deployment.endpoint.host.clone(),
    );
    let t = &config.timeouts;
    let streaming = ctx.streaming();
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect * 2);
    // A synchronous completion sends nothing until it is done, so its read timeout is the
    // whole synchronous window; a stream must show its first bytes sooner.
    peer.options.read_timeout = Some(if streaming {
        t.first_byte
    } else {
        t.first_byte.max(t.sync_total)
    });
    peer.options.write_timeout = Some(t.first_byte);
    peer.options.idle_timeout = Some(POOL_IDLE);
    Ok(Box::new(peer))
}

fn no_choice(why: NoChoice) -> Box<Error> {
    let status = if matches!(why, NoChoice::AllThrottled(_)) {
        429
    } else {
        503
    };
    Error::because(
        ErrorType::HTTPStatus(status),
        "no deployment can take the request",
        why,
    )
}

/// The request's class (a request without a tenant is `standard`).
fn class_of(ctx: &RequestCtx) -> Class {
    ctx.tenant.as_ref().map_or(Class::default(), |t| t.class)
}

/// Holds a first attempt whose first pool is saturated, if its class and allowance let it
/// and the wait fits; records how long and why it spilled. Returns the choice to attempt
/// and, when held until room came, the place in the queue to give up once leased.
async fn hold_or_spill(
    ctx: &mut RequestCtx,
    model: &Model,
    choice: Choice,
    session: &mut Session,
    spin: u32,
) -> Result<(Choice, Option<Ticket>)> {
    let class = class_of(ctx);
    let allowance = hold::allowance(ctx.config.classes.get(class), &session.req_header().headers);
    let tokens = ctx.admission.as_ref().map_or(0, |a| {
        let output = match (&a.body, &a.policy) {
            (RequestBody::Parsed(body), Some(policy)) => {
                caps::decide(body, policy, None).map_or(0, |c| c.total_output)
            }
            _ => 0,
        };
        a.prompt_tokens + output
    });
    let gone = async {
        // The body was read at admission: the next read sees only the client closing.
        if session
            .downstream_session
            .read_body_or_idle(true)
            .await
            .is_err()
        {
            return;
        }
        std::future::pending::<()>().await
    };
    match hold::hold_or_spill(ctx, model, class, allowance, tokens, gone).await {
        hold::Held::Room(choice, ticket, waited) => {
            let up = &mut ctx.upstream;
            up.held = Some(waited);
            up.hold_served = true;
            Ok((choice, Some(ticket)))
        }
        hold::Held::Spill(reason, waited) => {
            let up = &mut ctx.upstream;
            up.spill_reason = Some(reason);
            up.held = waited;
            if waited.is_none() {
                return Ok((choice, None));
            }
            // Things moved while it waited: choose again.
            let now = tokio::time::Instant::now();
            let again = choose_next(ctx, model, spin, now).map_err(no_choice)?;
            Ok((again, None))
        }
        hold::Held::Gone(waited) => {
            let up = &mut ctx.upstream;
            up.held = Some(waited);
            up.hold_gone = true;
            Err(Error::because(
                ErrorType::ConnectionClosed,
                "the client left while held",
                ClientLeft,
            ))
        }
    }
}

/// Refuses a request of a class shed at the level the least loaded saturated deployment
/// is at, when every deployment is saturated.
fn shed(ctx: &RequestCtx, choice: &Choice, now: tokio::time::Instant) -> Result<()> {
    let Some(shed_at) = ctx.config.classes.get(class_of(ctx)).shed_at else {
        return Ok(());
    };
    let d = &choice.deployment;
    let load = crate::routing::hold::load_percent(d, &ctx.config.routing, now);
    if load < shed_at {
        return Ok(());
    }
    let back = d
        .state
        .level_time_to(shed_at, 0, now)
        .max(d.state.cooldown_left(now).unwrap_or_default())
        .max(Duration::from_secs(1));
    Err(Error::because(
        ErrorType::HTTPStatus(429),
        "every deployment is saturated",
        Shed(back),
    ))
}

/// The cause of an error that ends a request whose client left while it was held.
#[derive(Debug)]
pub struct ClientLeft;

impl std::fmt::Display for ClientLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client left while the request was held")
    }
}

impl std::error::Error for ClientLeft {}

/// Chooses the deployment for the request's next attempt among those it has not tried.
pub fn choose_next(
    ctx: &RequestCtx,
    model: &Model,
    spin: u32,
    now: tokio::time::Instant,
) -> Result<Choice, NoChoice> {
    let config = &ctx.config;
    choose(
        &config.pools,
        &model.pools,
        |d| ctx.tried(d),
        spin,
        config.classes.get(class_of(ctx)),
        &config.routing,
        now,
    )
}

/// Sets the body for an attempt on `deployment`: the client's body with the caps applied
/// (the adaptive cap depends on the deployment's measured rate) and, for the v1 shape,
/// `model` set to the upstream deployment name. Bodies that are not parsed go out
/// unchanged. Returns the admitted prompt tokens.
fn prepare_body(ctx: &mut RequestCtx, adaptive: bool, deployment: &Deployment) -> u64 {
    let Some(admission) = &ctx.admission else {
        return 0;
    };
    let up = &mut ctx.upstream;
    up.body = match &admission.body {
        RequestBody::Raw(raw) => raw.clone(),
        RequestBody::Parsed(body) => {
            let mut edits = Edits::default();
            if let Some(policy) = &admission.policy {
                let adaptive_cap = (adaptive && !body.stream)
                    .then(|| {
                        ctx.config
                            .governance
                            .adaptive
                            .cap_for(&deployment.state.rate, tokio::time::Instant::now())
                    })
                    .flatten();
                // Admission already checked the static caps; an adaptive cap only lowers
                // the limit.
                if let Ok(capped) = caps::decide(body, policy, adaptive_cap) {
                    caps::edits(body, admission.route.operation, &capped, &mut edits);
                    up.capped = Some(capped);
                }
            }
            if body.stream
                && ctx.config.meter_streams
                && wants_usage_option(&admission.route, admission.api_version.as_deref())
            {
                up.strip_usage = stream_options::ask_for_usage(body, &mut edits);
            }
            if admission.route.shape == Shape::V1 {
                if let Some((span, current)) = &body.model {
                    if *current != deployment.deployment {
                        // A JSON string of a config value: serialising it cannot fail.
                        let name =
                            serde_json::to_string(&deployment.deployment).unwrap_or_default();
                        edits.replace(span.clone(), name);
                    }
                }
            }
            Some(edits.apply(body))
        }
    };
    admission.prompt_tokens
}

/// Whether the gateway may add `stream_options.include_usage` to this request: chat and
/// text completions on the v1 path, or on a dated path whose api-version has the field
/// (2024-09-01-preview and later; older versions may reject it).
fn wants_usage_option(route: &crate::api::Route, api_version: Option<&str>) -> bool {
    use crate::api::Operation::{ChatCompletions, Completions};
    matches!(route.operation, ChatCompletions | Completions)
        && match route.shape {
            Shape::V1 => true,
            Shape::Dated => {
                api_version.is_some_and(|v| v.get(..10).is_some_and(|d| d >= "2024-09-01"))
            }
        }
}

/// `api-key`, Azure's key header.
const API_KEY: http::HeaderName = http::HeaderName::from_static("api-key");

/// Rewrites the request header for the chosen deployment: path, host, credentials, framing.
///
/// It works on the plain `http` parts (see `headers::edit_plain` for why).
pub fn rewrite_request(req: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let (Some(attempt), Some(admission)) = (ctx.current(), ctx.admission.as_ref()) else {
        return Error::e_explain(ErrorType::InternalError, "no attempt in progress");
    };
    let d = &attempt.deployment;
    let uri = http::Uri::try_from(
        admission
            .route
            .upstream_path(&d.deployment, req.uri.query()),
    )
    .or_else(|_| Error::e_explain(ErrorType::InternalError, "bad upstream path"))?;
    super::headers::edit_plain_request(req, |parts| {
        parts.uri = uri;
        set_upstream_headers(&mut parts.headers, d, ctx);
    });
    Ok(())
}

fn set_upstream_headers(h: &mut http::HeaderMap, d: &Deployment, ctx: &RequestCtx) {
    // The tenant's credential never leaves the gateway (nor any other, see `denylist`); the
    // deployment's replaces it.
    super::denylist::strip(h);
    match &d.auth {
        UpstreamAuth::ApiKey(key) => {
            h.insert(API_KEY, key.clone());
        }
        // Routing chose `d` because its token was usable (`Deployment::skip_in`); one that
        // expired in the microseconds since goes without, and Azure's 401 says why.
        UpstreamAuth::Entra(credential) => {
            if let Some(token) = credential.authorization(tokio::time::Instant::now()) {
                h.insert(http::header::AUTHORIZATION, token);
            }
        }
    }
    h.insert(http::header::HOST, d.wire.host.clone());
    match &ctx.upstream.body {
        Some(body) => {
            h.insert(http::header::CONTENT_LENGTH, body.len().into());
        }
        None => {
            h.remove(http::header::CONTENT_LENGTH);
        }
    }
    h.insert(super::headers::X_REQUEST_ID, ctx.request_id.clone());
}
