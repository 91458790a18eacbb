//! Response headers that tell the client what the gateway did: who served the request, what
//! output limit was applied and why, and what is left of the tenant's budget.

use super::ctx::RequestCtx;
use pingora::http::ResponseHeader;
use pingora::Result;

// Static `&str` names rather than `HeaderName`s: Pingora's `insert_header` turns a custom
// `HeaderName` into its case-preserving name by copying it, while a static str is borrowed.
// (Pingora then parses the name into a `HeaderName` either way.)
pub const X_REQUEST_ID: &str = "x-request-id";
const X_MS_DEPLOYMENT_NAME: &str = "x-ms-deployment-name";
const X_SPILLWAY_REGION: &str = "x-spillway-region";
const X_SPILLWAY_ATTEMPTS: &str = "x-spillway-attempts";
const X_SPILLWAY_SPILLOVER: &str = "x-spillway-spillover";
const X_MS_SPILLOVER_FROM: &str = "x-ms-spillover-from-deployment";
const X_SPILLWAY_MAX_TOKENS: &str = "x-spillway-max-tokens";
const X_SPILLWAY_REQUESTED: &str = "x-spillway-requested-max-tokens";
const X_SPILLWAY_CAP: &str = "x-spillway-cap";
const X_RATELIMIT_REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
const X_RATELIMIT_REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";

pub fn annotate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    resp.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;
    if let Some(a) = ctx.current() {
        resp.insert_header(X_MS_DEPLOYMENT_NAME, a.deployment.name.as_str())?;
        resp.insert_header(X_SPILLWAY_REGION, a.deployment.region.as_str())?;
        resp.insert_header(X_SPILLWAY_ATTEMPTS, ctx.attempts.len())?;
        let first = ctx
            .route
            .as_ref()
            .and_then(|r| r.alias.as_deref())
            .and_then(|m| ctx.config.model(m))
            .and_then(|m| m.pools.first().copied());
        if let Some(first) = first.filter(|f| *f != a.pool) {
            let pools = &ctx.config.pools;
            resp.insert_header(
                X_SPILLWAY_SPILLOVER,
                format!("{}->{}", pools[first].name, pools[a.pool].name),
            )?;
            resp.insert_header(X_MS_SPILLOVER_FROM, pools[first].name.as_str())?;
        }
    }
    if let Some(c) = &ctx.capped {
        resp.insert_header(X_SPILLWAY_MAX_TOKENS, c.applied)?;
        match c.requested {
            Some(r) => resp.insert_header(X_SPILLWAY_REQUESTED, r)?,
            None => resp.insert_header(X_SPILLWAY_REQUESTED, "none")?,
        }
        resp.insert_header(X_SPILLWAY_CAP, c.reason.as_str())?;
    }
    // The tenant's own budget is what its client should pace itself by, not the shared
    // deployment quota the upstream reports.
    if let Some(t) = ctx.remaining.tokens {
        resp.insert_header(X_RATELIMIT_REMAINING_TOKENS, t)?;
    }
    if let Some(r) = ctx.remaining.requests {
        resp.insert_header(X_RATELIMIT_REMAINING_REQUESTS, r)?;
    }
    Ok(())
}
