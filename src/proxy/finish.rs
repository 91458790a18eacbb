//! The end of a request: read usage and timing off the response on the side, settle the
//! tenant's budget and the deployment's admitted tokens, feed its rate meter, and report.

use super::attempt::Outcome;
use super::ctx::{RequestCtx, Tap};
use super::usage::JsonUsage;
use crate::governance::budget::BudgetStore;
use crate::stream::{SseTap, Usage};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use std::time::Instant;

/// Decides, from the response header, how the body will be read on the side.
pub fn watch_response(resp: &ResponseHeader, ctx: &mut RequestCtx) {
    let ct = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    ctx.served.tap = if ct.starts_with(b"text/event-stream") && ctx.config.meter_streams {
        Tap::Sse(Box::new(SseTap::new(ctx.upstream.strip_usage)))
    } else if resp.status.is_success() && ct.starts_with(b"application/json") {
        Tap::Json(JsonUsage::default())
    } else {
        Tap::None
    };
}

/// Sees each response chunk as it is forwarded; a stream's usage chunk may be removed here.
pub fn observe_body(body: &mut Option<Bytes>, end: bool, ctx: &mut RequestCtx) {
    let now = Instant::now();
    match &mut ctx.served.tap {
        Tap::None => {}
        Tap::Json(u) => {
            if let Some(chunk) = body.as_ref() {
                u.feed(chunk);
            }
        }
        Tap::Sse(tap) => tap.on_body(body, end, now),
    }
    if end {
        finish_response(ctx, now);
    }
}

/// Collects what the response reported once it ended (or was cut).
pub fn finish_response(ctx: &mut RequestCtx, now: Instant) {
    let served = &mut ctx.served;
    if served.finished.is_some() {
        return;
    }
    served.finished = Some(now);
    let usage = match std::mem::take(&mut served.tap) {
        Tap::None => None,
        Tap::Json(mut u) => u.finish(),
        Tap::Sse(tap) => {
            let summary = tap.summary(ctx.started);
            let prompt = ctx.admission.as_ref().map_or(0, |a| a.prompt_tokens);
            let usage = summary.usage.unwrap_or(Usage {
                // A cut stream: count what was streamed, marked as estimated in the log.
                prompt_tokens: prompt,
                completion_tokens: summary.content_deltas,
                total_tokens: prompt.saturating_add(summary.content_deltas),
                cached_tokens: 0,
            });
            served.stream = Some(summary);
            Some(usage)
        }
    };
    let admitted_output = ctx.upstream.capped.as_ref().map(|c| c.total_output);
    served.usage = usage.map(|u| believable(u, admitted_output));
}

/// No model's context window holds more prompt tokens than this; a larger figure comes from a
/// broken or hostile upstream, not from work done.
const MAX_PROMPT_TOKENS: u64 = 4_000_000;

/// Usage as far as it can be true, so that no upstream number can wrap a sum, make a tenant
/// wait for ages or inflate a metric: completion tokens are at most the output the request
/// was admitted with (the limit sent upstream times its choices), prompt tokens at most
/// [`MAX_PROMPT_TOKENS`], and the total is their sum; cached tokens are a part of the prompt.
fn believable(u: Usage, admitted_output: Option<u64>) -> Usage {
    let prompt_tokens = u.prompt_tokens.min(MAX_PROMPT_TOKENS);
    let completion_tokens = u
        .completion_tokens
        .min(admitted_output.unwrap_or(MAX_PROMPT_TOKENS));
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
        cached_tokens: u.cached_tokens.min(prompt_tokens),
    }
}

/// Replaces the admission estimates by the real usage (the tenant's charge and the served
/// attempt's hold, each exactly once), and records the output rate.
pub fn settle(ctx: &mut RequestCtx) {
    if ctx.served.finished.is_none() && !matches!(ctx.served.tap, Tap::None) {
        // The client or upstream went away mid-body: take what was seen.
        finish_response(ctx, Instant::now());
    }
    let now = tokio::time::Instant::now();
    let served = &ctx.served;
    let actual = served.usage.map(|u| u.total_tokens);
    let charged = ctx.admission.as_mut().and_then(|a| a.charged.take());
    if let (Some(tenant), Some(charged)) = (&ctx.tenant, charged) {
        // Without usage (an error before any output) the estimate stands: an upper bound.
        if let Some(actual) = actual {
            tenant.budget.settle(tenant.limits, charged, actual, now);
        }
    }
    let (usage, finished, complete) = (
        served.usage,
        served.finished,
        served.stream.as_ref().is_none_or(|st| st.done_seen),
    );
    let Some(a) = ctx.upstream.attempts.last_mut() else {
        return;
    };
    a.settle(actual);
    if a.outcome() != Outcome::Response {
        return;
    }
    if let (Some(u), Some(end), 200, true) = (usage, finished, a.status(), complete) {
        a.deployment
            .state
            .rate
            .record(u.completion_tokens, end.duration_since(a.started), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64, t: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: t,
            cached_tokens: 0,
        }
    }

    #[test]
    fn usage_is_believed_only_within_what_was_admitted() {
        assert_eq!(believable(usage(5, 7, 12), Some(100)), usage(5, 7, 12));
        assert_eq!(
            believable(usage(5, u64::MAX, u64::MAX), Some(100)),
            usage(5, 100, 105)
        );
        assert_eq!(
            believable(usage(u64::MAX, u64::MAX, 3), None),
            usage(MAX_PROMPT_TOKENS, MAX_PROMPT_TOKENS, 2 * MAX_PROMPT_TOKENS)
        );
        // A total that disagrees with its parts is recomputed.
        assert_eq!(believable(usage(5, 7, 0), Some(100)), usage(5, 7, 12));
        let cached = |n| Usage {
            cached_tokens: n,
            ..usage(5, 7, 12)
        };
        assert_eq!(believable(cached(3), Some(100)), cached(3));
        assert_eq!(believable(cached(u64::MAX), Some(100)), cached(5));
    }

    proptest::proptest! {
        /// Whatever the upstream reports, including u64::MAX everywhere.
        #[test]
        fn no_usage_is_believed_beyond_what_was_admitted(
            p: u64,
            c: u64,
            t: u64,
            admitted: Option<u64>,
        ) {
            let u = believable(usage(p, c, t), admitted);
            proptest::prop_assert!(u.prompt_tokens <= p.min(MAX_PROMPT_TOKENS));
            proptest::prop_assert!(u.cached_tokens <= u.prompt_tokens);
            proptest::prop_assert!(u.completion_tokens <= c);
            proptest::prop_assert!(u.completion_tokens <= admitted.unwrap_or(MAX_PROMPT_TOKENS));
            proptest::prop_assert!(u.total_tokens >= u.prompt_tokens.max(u.completion_tokens));
            proptest::prop_assert_eq!(
                u.total_tokens,
                u.prompt_tokens.saturating_add(u.completion_tokens)
            );
        }
    }
}
