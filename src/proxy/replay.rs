//! Replay decisions: what each upstream outcome teaches the deployment's state (utilization,
//! cool-down, health), and whether the request goes to another deployment before the client
//! sees anything. Bounded by `retry.max_attempts`, by a process-wide retry budget, and by
//! there being somewhere else to go.

use super::ctx::RequestCtx;
use crate::routing::select::choose;
use crate::shared::Shared;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType};
use std::time::Duration;
use tokio::time::Instant;

/// Whether another attempt should follow: attempts left, another deployment to try, and
/// room in the retry budget (checked last, so a refusal for other reasons costs nothing).
pub fn may_replay(shared: &Shared, ctx: &RequestCtx, now: Instant) -> bool {
    let config = &ctx.config;
    if ctx.attempts.len() as u32 >= config.retry.max_attempts {
        return false;
    }
    let Some(model) = ctx
        .route
        .as_ref()
        .and_then(|r| r.alias.as_deref())
        .and_then(|a| config.model(a))
    else {
        return false;
    };
    choose(config, model, |d| ctx.tried(d), 0, &config.routing, now).is_ok()
        && shared.retry_budget.try_retry(
            config.retry.budget_percent,
            config.retry.budget_min_per_second,
            now,
        )
}

/// `"89.3%"` → 89.3.
fn parse_percent(v: &[u8]) -> Option<f64> {
    std::str::from_utf8(v)
        .ok()?
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .ok()
}

/// How long a 429 asks us to wait: `retry-after-ms`, else `retry-after` in seconds, else 1 s.
pub fn retry_after(resp: &ResponseHeader) -> Duration {
    let num = |name: &str| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    num("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| num("retry-after").map(Duration::from_secs_f64))
        .unwrap_or(Duration::from_secs(1))
}

/// Takes back the tokens an attempt added to its deployment's window: it generated nothing.
pub fn unadmit(ctx: &RequestCtx, now: Instant) {
    if let Some(a) = ctx.current() {
        let s = &a.deployment.state;
        s.admitted.add(s.second(now), -(a.admitted as i64));
    }
}

/// Learns from an upstream response header, and turns a replayable status into a retryable
/// error while nothing has reached the client.
pub fn on_response(
    shared: &Shared,
    ctx: &mut RequestCtx,
    resp: &ResponseHeader,
) -> pingora::Result<()> {
    let now = Instant::now();
    let status = resp.status.as_u16();
    let config = ctx.config.clone();
    let Some(attempt) = ctx.attempts.last_mut() else {
        return Ok(());
    };
    attempt.status = status;
    attempt.outcome = "response";
    let d = attempt.deployment.clone();
    let spill_at = config.pools[attempt.pool].spill_at_utilization;
    if let Some(pct) = resp
        .headers
        .get("azure-openai-deployment-utilization")
        .and_then(|v| parse_percent(v.as_bytes()))
    {
        d.state.on_utilization(pct, spill_at, &config.routing, now);
    }
    match status {
        429 => d
            .state
            .on_throttled(retry_after(resp), &config.routing, now),
        408 | 500..=599 => {
            if d.state.on_failure(false, &config.routing, now) {
                log::warn!("deployment {} ejected after repeated {status}s", d.name);
            }
        }
        _ => d.state.on_success(),
    }
    if !config.retry.retries_status(status) || !may_replay(shared, ctx, now) {
        return Ok(());
    }
    unadmit(ctx, now);
    if let Some(a) = ctx.attempts.last_mut() {
        a.outcome = "replayed";
    }
    ctx.inflight = None;
    ctx.replaying = true;
    let mut e = Error::explain(
        ErrorType::HTTPStatus(status),
        "replaying on another deployment",
    );
    e.set_retry(true);
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_azure_headers() {
        assert_eq!(parse_percent(b"89.3%"), Some(89.3));
        assert_eq!(parse_percent(b" 100 % "), Some(100.0));
        assert_eq!(parse_percent(b"high"), None);
        let mut r = ResponseHeader::build(429, None).unwrap();
        assert_eq!(retry_after(&r), Duration::from_secs(1));
        r.insert_header("retry-after", "86400").unwrap();
        assert_eq!(retry_after(&r), Duration::from_secs(86400));
        r.insert_header("retry-after-ms", "250").unwrap();
        assert_eq!(retry_after(&r), Duration::from_millis(250));
    }
}
