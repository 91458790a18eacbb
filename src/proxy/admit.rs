//! `request_filter`'s work: identify the route, the tenant and the model, read and parse the
//! body, apply the caps and charge the tenant's budget. Anything wrong ends here with an
//! Azure-shaped answer, before any upstream work.

use super::ctx::{Admission, RequestBody, RequestCtx};
use super::read_body::{read_whole_body, ReadBodyError};
use super::reply::Reply;
use crate::api::{classify, presented_key, Presented, Shape};
use crate::config::{Config, Tenant};
use crate::governance::body::JsonBody;
use crate::governance::budget::{BudgetStore, OverBudget};
use crate::governance::{caps, prompt};
use crate::identity::jwt::looks_like_jwt;
use http::HeaderValue;
use pingora::proxy::Session;
use std::sync::Arc;
use tokio::time::Instant;

/// Longest client-supplied request id that is echoed back and logged.
const MAX_REQUEST_ID: usize = 128;

/// The client's `x-request-id` when it is a sensible one, else a new random id. Kept as a
/// header value: it is echoed to the client and sent upstream, each a reference-count clone.
pub fn request_id(session: &Session) -> HeaderValue {
    session
        .req_header()
        .headers
        .get("x-request-id")
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// 128 random bits as 32 lowercase hex digits.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for b in id.iter_mut().rev() {
        *b = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a header value")
}

/// The tenant a presented credential is: an Entra ID token when it looks like one and the
/// config takes them, else a key. `Err` carries why a token was refused, for the metrics.
async fn authenticate(
    config: &Config,
    presented: &str,
) -> Result<Arc<Tenant>, Option<&'static str>> {
    match &config.entra_id {
        Some(tokens) if looks_like_jwt(presented) => match tokens.authenticate(presented).await {
            Ok(i) => config.tenants.all().get(i).cloned().ok_or(None),
            Err(refused) => Err(Some(refused.as_str())),
        },
        _ => config.tenants.authenticate(presented).cloned().ok_or(None),
    }
}

/// JSON, or no content type at all (lenient towards hand-written clients).
fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(ct) = content_type else { return true };
    let mime = ct
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    mime.eq_ignore_ascii_case(b"application/json")
        || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// Admits a request or says why not. On `Ok` the context holds its `Admission`; on `Err`
/// it holds what was learnt before the refusal (the tenant, the caps), for the log.
pub async fn admit(session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Reply> {
    let req = session.req_header();
    let Some(mut route) = classify(&req.method, req.uri.path()) else {
        return Err(Reply::not_found());
    };
    let headers = &req.headers;
    let found = match presented_key(headers) {
        // The config is borrowed, not cloned: an `Arc` count up and down per request saved.
        Presented::Key(k) => authenticate(&ctx.config, k).await,
        Presented::Conflicting => return Err(Reply::conflicting_credentials()),
        Presented::Missing => Err(None),
    };
    let tenant = found.map_err(|refused| {
        ctx.token_refused = refused;
        Reply::unauthorized()
    })?;
    ctx.tenant = Some(tenant.clone());
    // The v1 shape names the model in the body, so its body is always parsed.
    let parse = route.operation.is_generation() || route.shape == Shape::V1;
    if parse
        && !is_json(
            headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        )
    {
        return Err(Reply::new(
            415,
            "UnsupportedMediaType",
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }

    let api_version = session.req_header().uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("api-version="))
            .map(str::to_string)
    });
    let limit = ctx.config.governance.max_body_bytes;
    let read_started = std::time::Instant::now();
    let raw = read_whole_body(session, limit, ctx.config.client_limits.body_timeout).await;
    ctx.body_read = read_started.elapsed();
    let raw = raw.map_err(|e| match e {
        ReadBodyError::TooLarge { .. } => Reply::new(413, "RequestEntityTooLarge", e.to_string()),
        ReadBodyError::LengthRequired => Reply::new(411, "LengthRequired", e.to_string()),
        ReadBodyError::Timeout(_) => Reply::new(408, "RequestTimeout", e.to_string()),
        ReadBodyError::Read(_) => Reply::bad_request(e.to_string()),
    })?;

    let body = if parse {
        let body = JsonBody::parse(raw).map_err(|e| Reply::bad_request(e.0))?;
        if route.shape == Shape::V1 {
            let (_, model) = body
                .model
                .as_ref()
                .ok_or_else(|| Reply::bad_request("`model` is required on /openai/v1 paths"))?;
            route.alias = Some(model.clone());
        }
        RequestBody::Parsed(body)
    } else {
        RequestBody::Raw((!raw.is_empty()).then_some(raw))
    };

    let config = ctx.config.clone();
    let alias = route.alias.as_deref().unwrap_or_default();
    let model = config
        .model(alias)
        .ok_or_else(|| Reply::unknown_model(alias))?
        .clone();
    if !model.operations.contains(route.operation) {
        return Err(Reply::operation_not_allowed(alias, route.operation));
    }

    let (mut estimate, mut prompt_tokens, mut policy) = (0, 0, None);
    if let RequestBody::Parsed(body) = &body {
        if route.operation.is_generation() {
            let p = config.governance.policy(&model, &tenant);
            let capped = caps::decide(body, &p, None).map_err(|e| Reply::bad_request(e.0))?;
            // The tokenizer is the costliest step of admission: run it only where its count
            // decides something (a token budget, or a capacity to predict utilization from).
            let exact = tenant.limits.tokens_per_minute.is_some() || config.predicts(&model);
            prompt_tokens = body.prompt_json().map_or(0, |p| {
                if exact {
                    u64::from(prompt::count_prompt(route.operation, p))
                } else {
                    prompt::estimate(p)
                }
            });
            estimate = prompt_tokens.saturating_add(capped.total_output);
            policy = Some(p);
            // Kept even if the budget refuses the request: the log shows what was asked.
            ctx.upstream.capped = Some(capped);
        }
    }
    let remaining = tenant
        .budget
        .admit(tenant.limits, estimate, Instant::now())
        .map_err(over_budget)?;
    ctx.admission = Some(Admission {
        route,
        model,
        api_version,
        body,
        policy,
        prompt_tokens,
        charged: Some(estimate),
        remaining,
    });
    Ok(())
}

/// Counts an admitted request towards the retry budget's base.
pub fn count_request(shared: &crate::shared::Shared) {
    shared.retry_budget.on_request(Instant::now());
}

fn over_budget(over: OverBudget) -> Reply {
    match over {
        OverBudget::RetryAfter { wait, remaining, what } => {
            let ms = wait.as_millis().max(1);
            let mut reply = Reply::new(
                429,
                "429",
                format!(
                    "This tenant's {what} per minute budget is used up. Please retry after {} seconds.",
                    ms.div_ceil(1000)
                ),
            )
            .with_header("retry-after-ms", ms.to_string())
            .with_header("retry-after", ms.div_ceil(1000).to_string());
            if let Some(t) = remaining.tokens {
                reply = reply.with_header("x-ratelimit-remaining-tokens", t.to_string());
            }
            if let Some(r) = remaining.requests {
                reply = reply.with_header("x-ratelimit-remaining-requests", r.to_string());
            }
            reply
        }
        OverBudget::TooLarge { estimate, tokens_per_minute } => Reply::bad_request(format!(
            "This request may use {estimate} tokens (prompt plus output limit), more than this tenant's whole budget of {tokens_per_minute} tokens per minute. Lower max_tokens or shorten the prompt."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(None));
        assert!(is_json(Some(b"application/json")));
        assert!(is_json(Some(b"Application/JSON; charset=utf-8")));
        assert!(is_json(Some(b"application/merge-patch+json")));
        assert!(!is_json(Some(b"application/x-www-form-urlencoded")));
        assert!(!is_json(Some(b"text/plain")));
        assert!(!is_json(Some(b"json")));
    }

    #[test]
    fn new_request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(a, b);
    }
}
