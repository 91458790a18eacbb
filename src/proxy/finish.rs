//! The end of a request: read usage off the response on the side, settle the tenant's
//! budget, feed the deployment's rate meter, and write the access log line.

use super::ctx::RequestCtx;
use super::usage::JsonUsage;
use crate::governance::budget::BudgetStore;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Error;
use std::time::Instant;

/// Decides, from the response header, how the body will be read on the side.
pub fn watch_response(resp: &ResponseHeader, ctx: &mut RequestCtx) {
    let json = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    ctx.json_usage = (resp.status.is_success() && json).then(JsonUsage::default);
}

/// Sees each response chunk as it is forwarded.
pub fn observe_body(chunk: Option<&Bytes>, end: bool, ctx: &mut RequestCtx) {
    if let (Some(u), Some(chunk)) = (ctx.json_usage.as_mut(), chunk) {
        u.feed(chunk);
    }
    if end {
        ctx.finished = Some(Instant::now());
        if let Some(mut u) = ctx.json_usage.take() {
            ctx.usage = u.finish();
        }
    }
}

/// Replaces the admission estimate by the real usage, and records the output rate.
pub fn settle(ctx: &mut RequestCtx) {
    let now = tokio::time::Instant::now();
    if let (Some(tenant), Some(charged)) = (&ctx.tenant, ctx.charged.take()) {
        // Without usage (an error, a cut stream) the estimate stands: it is an upper bound.
        if let Some(u) = ctx.usage {
            let actual = u.total_tokens.max(u.prompt_tokens + u.completion_tokens);
            tenant.budget.settle(tenant.limits, charged, actual, now);
        }
    }
    let streamed = ctx.body.as_ref().is_some_and(|b| b.stream);
    if let (Some(u), Some(a), Some(end), false) = (ctx.usage, ctx.current(), ctx.finished, streamed)
    {
        if a.status == 200 {
            a.deployment
                .state
                .rate
                .record(u.completion_tokens, end.duration_since(a.started), now);
        }
    }
}

/// One JSON line per request on the `access` log target.
pub fn access_log(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let attempts: Vec<serde_json::Value> = ctx
        .attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "deployment": a.deployment.name,
                "region": a.deployment.region,
                "status": a.status,
                "outcome": a.outcome,
                "ms": a.started.elapsed().as_secs_f64() * 1000.0,
            })
        })
        .collect();
    log::info!(target: "access", "{}", serde_json::json!({
        "request_id": ctx.request_id,
        "tenant": ctx.tenant.as_ref().map(|t| t.name.as_str()),
        "model": ctx.route.as_ref().and_then(|r| r.alias.as_deref()),
        "status": status,
        "max_tokens": ctx.capped.as_ref().map(|c| c.applied),
        "requested_max_tokens": ctx.capped.as_ref().and_then(|c| c.requested),
        "attempts": attempts,
        "prompt_tokens": ctx.usage.map(|u| u.prompt_tokens),
        "completion_tokens": ctx.usage.map(|u| u.completion_tokens),
        "error": e.map(|e| e.etype().as_str()),
        "duration_ms": ctx.started.elapsed().as_secs_f64() * 1000.0,
    }));
}
