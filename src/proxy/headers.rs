//! Response headers that tell the client what the gateway did: who served the request, what
//! output limit was applied and why, and what is left of the tenant's budget.

use super::ctx::RequestCtx;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_MS_DEPLOYMENT_NAME: HeaderName = HeaderName::from_static("x-ms-deployment-name");
const X_SPILLWAY_REGION: HeaderName = HeaderName::from_static("x-spillway-region");
const X_SPILLWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-spillway-attempts");
const X_SPILLWAY_SPILLOVER: HeaderName = HeaderName::from_static("x-spillway-spillover");
const X_MS_SPILLOVER_FROM: HeaderName = HeaderName::from_static("x-ms-spillover-from-deployment");
const X_SPILLWAY_MAX_TOKENS: HeaderName = HeaderName::from_static("x-spillway-max-tokens");
const X_SPILLWAY_REQUESTED: HeaderName = HeaderName::from_static("x-spillway-requested-max-tokens");
const X_SPILLWAY_CAP: HeaderName = HeaderName::from_static("x-spillway-cap");
const X_SPILLWAY_HELD_MS: HeaderName = HeaderName::from_static("x-spillway-held-ms");
const X_SPILLWAY_SPILL_REASON: HeaderName = HeaderName::from_static("x-spillway-spill-reason");
const X_RATELIMIT_REMAINING_TOKENS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-tokens");
const X_RATELIMIT_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");

/// Most responses carry at most this many of the headers above.
const ANNOTATIONS: usize = 11;

/// Attempt counts as ready-made values (`retry.max_attempts` is small).
const DIGITS: [HeaderValue; 10] = [
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
    HeaderValue::from_static("7"),
    HeaderValue::from_static("8"),
    HeaderValue::from_static("9"),
];

/// Adds the gateway's headers to the upstream response on its way to the client.
pub fn annotate(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let hinted = matches!(resp.status.as_u16(), 429 | 503);
    edit_plain(resp, |headers| {
        add_annotations(headers, ctx);
        if hinted {
            clamp_retry_hints(headers, ctx.config.routing.max_cooldown);
        }
    })
}

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// An upstream's own `retry-after(-ms)` reaches the client as sent when it is a usable number
/// within `routing.max_cooldown_ms`; beyond it, it is lowered to that, and a number no client
/// can use (negative, NaN) is dropped. The gateway never promises a longer wait than it
/// would impose on itself. Anything else (an HTTP date) passes untouched.
fn clamp_retry_hints(h: &mut HeaderMap, max: std::time::Duration) {
    let max_ms = max.as_millis();
    for (name, cap) in [
        (http::header::RETRY_AFTER, max_ms.div_ceil(1000)),
        (RETRY_AFTER_MS, max_ms),
    ] {
        let Some(v) = h
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        if v.is_nan() || v < 0.0 {
            h.remove(&name);
        } else if v > cap as f64 {
            h.insert(
                name,
                HeaderValue::from(u64::try_from(cap).unwrap_or(u64::MAX)),
            );
        }
    }
}

fn add_annotations(h: &mut HeaderMap, ctx: &RequestCtx) {
    h.reserve(ANNOTATIONS);
    h.insert(X_REQUEST_ID, ctx.request_id.clone());
    if let Some(a) = ctx.current() {
        h.insert(X_MS_DEPLOYMENT_NAME, a.deployment.wire.name.clone());
        h.insert(X_SPILLWAY_REGION, a.deployment.wire.region.clone());
        let n = ctx.upstream.attempts.len();
        h.insert(
            X_SPILLWAY_ATTEMPTS,
            DIGITS.get(n).cloned().unwrap_or_else(|| n.into()),
        );
        if let Some(first) = ctx.first_pool().filter(|f| *f != a.pool) {
            let (from, to) = (
                &ctx.config.pools[first].name,
                &ctx.config.pools[a.pool].name,
            );
            // Pool names are plain names (config validation), so these always convert.
            if let Ok(v) = HeaderValue::try_from(format!("{from}->{to}")) {
                h.insert(X_SPILLWAY_SPILLOVER, v);
            }
            if let Ok(v) = HeaderValue::from_str(from) {
                h.insert(X_MS_SPILLOVER_FROM, v);
            }
        }
    }
    if let Some(held) = ctx.upstream.held {
        h.insert(
            X_SPILLWAY_HELD_MS,
            u64::try_from(held.as_millis()).unwrap_or(u64::MAX).into(),
        );
    }
    if let Some(reason) = ctx.upstream.spill_reason {
        h.insert(
            X_SPILLWAY_SPILL_REASON,
            HeaderValue::from_static(reason.as_str()),
        );
    }
    if let Some(c) = &ctx.upstream.capped {
        h.insert(X_SPILLWAY_MAX_TOKENS, c.applied.into());
        h.insert(
            X_SPILLWAY_REQUESTED,
            c.requested
                .map_or(HeaderValue::from_static("none"), HeaderValue::from),
        );
        h.insert(X_SPILLWAY_CAP, HeaderValue::from_static(c.reason.as_str()));
    }
    // The tenant's own budget is what its client should pace itself by, not the shared
    // deployment quota the upstream reports.
    let remaining = ctx.admission.as_ref().map(|a| a.remaining);
    if let Some(t) = remaining.and_then(|r| r.tokens) {
        h.insert(X_RATELIMIT_REMAINING_TOKENS, t.into());
    }
    if let Some(r) = remaining.and_then(|r| r.requests) {
        h.insert(X_RATELIMIT_REMAINING_REQUESTS, r.into());
    }
}

/// Runs `edit` on the response's header map after dropping Pingora's record of the
/// upstream's header-name case.
///
/// Why: every `insert_header` on a case-preserving header parses the name into a fresh
/// `HeaderName`, copies it into the case map, clones it for the value map and copies the
/// value, about 2,500 instructions and four allocations per header (callgrind, DHAT). On
/// the plain map a static name and a shared value cost one insertion. Header names are
/// case-insensitive (RFC 9110 §5.1) and Pingora writes a plain map's standard names in
/// their usual title case (`Content-Type`) and the others in lowercase, as an HTTP/2 hop
/// would send them.
pub fn edit_plain(resp: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap)) -> Result<()> {
    // Only a reason phrase that differs from the status's standard one is kept by Pingora.
    let custom_reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, placeholder));
    edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if custom_reason.is_some() {
        resp.set_reason_phrase(custom_reason.as_deref())?;
    }
    Ok(())
}

/// The request side of [`edit_plain`], for the upstream rewrite (URI and headers).
pub fn edit_plain_request(req: &mut RequestHeader, edit: impl FnOnce(&mut http::request::Parts)) {
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    edit(&mut parts);
    *req = RequestHeader::from(parts);
    if let Some(end) = end_stream {
        req.set_send_end_stream(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_response() -> ResponseHeader {
        let mut r = ResponseHeader::build(429, None).unwrap();
        r.insert_header("Content-Type", "application/json").unwrap();
        r.append_header("Set-Thing", "a").unwrap();
        r.append_header("Set-Thing", "b").unwrap();
        r.set_reason_phrase(Some("Too Many Requests, Really"))
            .unwrap();
        r
    }

    fn wire(r: &ResponseHeader) -> String {
        let mut buf = Vec::new();
        r.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn plain_edit_keeps_status_reason_values_and_order() {
        let mut r = upstream_response();
        r.set_version(http::Version::HTTP_10);
        edit_plain(&mut r, |h| {
            h.insert(X_SPILLWAY_CAP, HeaderValue::from_static("sync-cap"));
        })
        .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.version, http::Version::HTTP_10);
        assert_eq!(r.get_reason_phrase(), Some("Too Many Requests, Really"));
        assert_eq!(r.headers["content-type"], "application/json");
        let things: Vec<_> = r.headers.get_all("set-thing").iter().collect();
        assert_eq!(things, ["a", "b"]);
        assert_eq!(
            wire(&r),
            "Content-Type: application/json\r\nset-thing: a\r\nset-thing: b\r\n\
             x-spillway-cap: sync-cap\r\n"
        );
        // Pingora's own insertions still work on the plain header.
        r.insert_header("X-Later", "1").unwrap();
        assert_eq!(r.headers["x-later"], "1");
    }

    #[test]
    fn plain_request_edit_keeps_method_version_and_other_headers() {
        let mut r = RequestHeader::build("POST", b"/openai/deployments/alias/x?a=1", None).unwrap();
        r.set_version(http::Version::HTTP_10);
        r.insert_header("Authorization", "Bearer tenant").unwrap();
        r.insert_header("X-Custom", "kept").unwrap();
        edit_plain_request(&mut r, |p| {
            p.uri = http::Uri::from_static("/openai/deployments/real/x?a=1");
            p.headers.remove(http::header::AUTHORIZATION);
            p.headers
                .insert(X_REQUEST_ID, HeaderValue::from_static("id-1"));
        });
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.version, http::Version::HTTP_10);
        assert_eq!(r.raw_path(), b"/openai/deployments/real/x?a=1");
        assert!(r.headers.get("authorization").is_none());
        assert_eq!(r.headers["x-custom"], "kept");
        assert_eq!(r.headers["x-request-id"], "id-1");
    }

    #[test]
    fn plain_edit_leaves_a_standard_reason_to_the_status() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.set_reason_phrase(Some("OK")).unwrap();
        edit_plain(&mut r, |_| {}).unwrap();
        assert_eq!(r.get_reason_phrase(), Some("OK"));
    }

    #[test]
    fn retry_hints_pass_within_the_cap_and_are_lowered_or_dropped_beyond_it() {
        let max = std::time::Duration::from_millis(5_500);
        let hinted = |after: &str, after_ms: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::RETRY_AFTER, after.parse().unwrap());
            h.insert(RETRY_AFTER_MS, after_ms.parse().unwrap());
            clamp_retry_hints(&mut h, max);
            let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
            (get("retry-after"), get("retry-after-ms"))
        };
        let some = |a: &str, b: &str| (Some(a.to_string()), Some(b.to_string()));
        assert_eq!(hinted("3", "2500"), some("3", "2500"), "as sent");
        assert_eq!(hinted("1e300", "99999999999999999999"), some("6", "5500"));
        assert_eq!(hinted("inf", "1e18"), some("6", "5500"));
        assert_eq!(hinted("NaN", "-5"), (None, None));
        let date = "Wed, 21 Oct 2026 07:28:00 GMT";
        assert_eq!(hinted(date, "10").0.as_deref(), Some(date), "not a number");
    }
}
