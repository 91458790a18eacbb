//! Response headers that tell the client what the gateway did: who served the request, what
//! output limit was applied and why, and what is left of the tenant's budget.

use super::ctx::RequestCtx;
use pingora::http::ResponseHeader;
use pingora::Result;

pub fn annotate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some(a) = ctx.current() {
        resp.insert_header("x-ms-deployment-name", a.deployment.name.as_str())?;
        resp.insert_header("x-spillway-region", a.deployment.region.as_str())?;
        resp.insert_header("x-spillway-attempts", ctx.attempts.len().to_string())?;
        let first = ctx
            .route
            .as_ref()
            .and_then(|r| r.alias.as_deref())
            .and_then(|m| ctx.config.model(m))
            .and_then(|m| m.pools.first().copied());
        if let Some(first) = first.filter(|f| *f != a.pool) {
            let pools = &ctx.config.pools;
            resp.insert_header(
                "x-spillway-spillover",
                format!("{}->{}", pools[first].name, pools[a.pool].name),
            )?;
            resp.insert_header("x-ms-spillover-from-deployment", pools[first].name.as_str())?;
        }
    }
    if let Some(c) = &ctx.capped {
        resp.insert_header("x-spillway-max-tokens", c.applied.to_string())?;
        resp.insert_header(
            "x-spillway-requested-max-tokens",
            c.requested
                .map_or_else(|| "none".to_string(), |r| r.to_string()),
        )?;
        resp.insert_header("x-spillway-cap", c.reason.as_str())?;
    }
    // The tenant's own budget is what its client should pace itself by, not the shared
    // deployment quota the upstream reports.
    if let Some(t) = ctx.remaining.tokens {
        resp.insert_header("x-ratelimit-remaining-tokens", t.to_string())?;
    }
    if let Some(r) = ctx.remaining.requests {
        resp.insert_header("x-ratelimit-remaining-requests", r.to_string())?;
    }
    Ok(())
}
