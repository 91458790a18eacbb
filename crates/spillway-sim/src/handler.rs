//! One request, start to finish: faults, routing, auth, admission, then a JSON or streamed answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::SimAuth;
use super::entra::endpoints::{self, Answer};
use super::entra::guard;
use super::faults::Action;
use super::generate::{completion_id, embeddings_body, request_id, unix_now, Reply};
use super::limits::Ticket;
use super::record::InflightGuard;
use super::reject::Reject;
use super::request::{GenRequest, Kind, Route};
use super::state::Shared;
use super::stream::{produce, SimBody, Timing, CHANNEL_CAPACITY};

/// Header tests use to choose the output length of one request, overriding `natural_tokens`.
pub const OUTPUT_TOKENS_HEADER: &str = "x-sim-output-tokens";

/// Reasons to drop a connection instead of answering.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abort {
    #[error("refusing connections (Fault::Refuse)")]
    Refused,
    #[error("hung request released by shutdown (Fault::Hang)")]
    Hung,
    #[error("token service dropping connections (TokenOutage::Drop)")]
    TokenOutage,
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> Result<Response<SimBody>, Abort> {
    // Checked here too, not only by closing connections: a keep-alive request racing the fault
    // must not be answered.
    if shared.faults.is_refusing() {
        return Err(Abort::Refused);
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    if parts.uri.path().starts_with("/_sim/") {
        return Ok(control(&shared, &parts));
    }
    // The token service has its own outage switch; deployment faults and records are not its.
    match endpoints::serve(&shared.issuer, &parts, &body) {
        None => {}
        Some(Answer::Json(status, v)) => return Ok(plain_json(status, &v)),
        Some(Answer::Drop) => return Err(Abort::TokenOutage),
    }
    let action = shared.faults.next_action();
    if action == Action::Refuse {
        return Err(Abort::Refused);
    }
    let index = shared.recorder.begin(&parts, body.clone());
    let inflight = InflightGuard::new(shared.recorder.clone());
    let result = match action {
        Action::Refuse => return Err(Abort::Refused),
        Action::Hang => {
            let mut shutdown = shared.shutdown.clone();
            // An error only means the simulator is gone, which also ends the hang.
            let _ = shutdown.wait_for(|down| *down).await;
            return Err(Abort::Hung);
        }
        Action::Status {
            status,
            retry_after_ms,
        } => {
            let kind = Kind::guess_from_path(parts.uri.path());
            Err(Reject::injected(status, kind.operation(), retry_after_ms))
        }
        Action::RawThrottle {
            retry_after,
            retry_after_ms,
        } => {
            let kind = Kind::guess_from_path(parts.uri.path());
            let mut reject =
                Reject::injected(StatusCode::TOO_MANY_REQUESTS, kind.operation(), None);
            reject.retry_after = None;
            let mut response = json_response(&shared, reject.status, reject.body());
            let headers = response.headers_mut();
            for (name, value) in [
                ("retry-after", retry_after),
                ("retry-after-ms", retry_after_ms),
            ] {
                if let Some(value) = value {
                    insert(headers, name, &value);
                }
            }
            Ok(response)
        }
        Action::Serve { cut_after, usage } => {
            let fate = Fate { cut_after, usage };
            serve(&shared, &parts, &body, fate, inflight).await
        }
    };
    let response = match result {
        Ok(ok) => ok,
        Err(reject) => {
            let mut response = json_response(&shared, reject.status, reject.body());
            let headers = response.headers_mut();
            for (name, value) in reject.retry_headers() {
                insert(headers, name, &value);
            }
            response
        }
    };
    shared.recorder.answered(index, response.status().as_u16());
    Ok(response)
}

/// What a fault changes in a served answer.
struct Fate {
    cut_after: Option<u32>,
    usage: Option<[u64; 3]>,
}

async fn serve(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: &Bytes,
    fate: Fate,
    inflight: InflightGuard,
) -> Result<Response<SimBody>, Reject> {
    let cfg = &shared.cfg;
    let route = Route::parse(&parts.method, parts.uri.path(), parts.uri.query())?;
    match cfg.auth {
        SimAuth::Key => authorize(cfg.api_key.as_deref(), &parts.headers)?,
        SimAuth::Entra => guard::authorize(&shared.issuer, &parts.headers)?,
    }
    if route
        .deployment
        .as_ref()
        .is_some_and(|d| *d != cfg.deployment)
    {
        return Err(Reject::deployment_not_found());
    }
    let gen = GenRequest::parse(&route, body)?;
    if route.deployment.is_none() {
        match &gen.model {
            None => return Err(Reject::bad_request("'model' is a required property.")),
            Some(m) if *m != cfg.deployment => return Err(Reject::deployment_not_found()),
            Some(_) => {}
        }
    }
    let natural = match parts.headers.get(OUTPUT_TOKENS_HEADER) {
        None => shared.natural_tokens(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Reject::bad_request(format!("{OUTPUT_TOKENS_HEADER} must be a u32")))?,
    };
    let ticket = shared
        .limiter
        .admit(gen.estimate(), Instant::now())
        .map_err(|t| Reject::throttled(route.kind.operation(), route.version_label(), t))?;
    let timing = Timing {
        ttft: shared.ttft(),
        tbt: shared.tbt(),
    };
    let prompt = gen.prompt_tokens;
    if gen.kind == Kind::Embeddings {
        pause(timing.ttft).await;
        finish(shared, ticket, prompt, 0);
        let body = embeddings_body(&cfg.deployment, gen.inputs, prompt);
        return Ok(json_response(shared, StatusCode::OK, body));
    }
    let (tokens, finish_reason) = gen.output(natural);
    let reply = Reply {
        kind: gen.kind,
        id: completion_id(gen.kind),
        created: unix_now(),
        model: cfg.deployment.clone(),
        n: gen.n,
        tokens,
        finish_reason,
        prompt_tokens: prompt,
        include_usage: gen.include_usage,
        reported_usage: fate.usage,
    };
    if gen.stream {
        return Ok(stream_response(
            shared,
            reply,
            timing,
            fate.cut_after,
            ticket,
            inflight,
        ));
    }
    let takes = timing
        .tbt
        .checked_mul(tokens)
        .and_then(|d| d.checked_add(timing.ttft))
        .unwrap_or(Duration::MAX);
    if let Some(limit) = cfg.sync_timeout.filter(|limit| takes > *limit) {
        pause(limit).await;
        // The generation was abandoned; charge the prompt only.
        finish(shared, ticket, prompt, 0);
        return Err(Reject::timeout());
    }
    pause(takes).await;
    finish(shared, ticket, prompt, reply.completion_tokens());
    Ok(json_response(
        shared,
        StatusCode::OK,
        reply.completion_body(),
    ))
}

/// Settles the admission charge with the real usage and counts the tokens.
fn finish(shared: &Shared, ticket: Ticket, prompt: u64, completion: u64) {
    shared
        .limiter
        .settle(ticket, prompt + completion, Instant::now());
    shared.recorder.usage(prompt, completion);
}

fn stream_response(
    shared: &Arc<Shared>,
    reply: Reply,
    timing: Timing,
    cut_after: Option<u32>,
    ticket: Ticket,
    inflight: InflightGuard,
) -> Response<SimBody> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let _inflight = inflight;
        let completion = produce(&reply, timing, cut_after, &tx).await;
        finish(&task_shared, ticket, reply.prompt_tokens, completion);
    });
    let mut response = Response::new(SimBody::Channel { rx, cutting: false });
    let headers = response.headers_mut();
    insert(headers, "content-type", "text/event-stream; charset=utf-8");
    insert(headers, "cache-control", "no-cache");
    add_common_headers(shared, headers);
    response
}

fn authorize(key: Option<&str>, headers: &HeaderMap) -> Result<(), Reject> {
    let Some(key) = key else {
        return Ok(());
    };
    let by_key = headers
        .get("api-key")
        .is_some_and(|v| v.as_bytes() == key.as_bytes());
    let by_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == key);
    if by_key || by_bearer {
        Ok(())
    } else {
        Err(Reject::unauthorized())
    }
}

fn json_response(shared: &Shared, status: StatusCode, body: Bytes) -> Response<SimBody> {
    let mut response = Response::new(SimBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    insert(headers, "content-type", "application/json");
    add_common_headers(shared, headers);
    response
}

/// A token service answer: none of the deployment's headers, which Entra would not send.
fn plain_json(status: StatusCode, body: &serde_json::Value) -> Response<SimBody> {
    let mut response = Response::new(SimBody::full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    insert(
        response.headers_mut(),
        "content-type",
        "application/json; charset=utf-8",
    );
    response
}

/// What Azure puts on every answer, plus `x-sim-name` so tests can tell simulators apart.
fn add_common_headers(shared: &Shared, headers: &mut HeaderMap) {
    let id = request_id();
    insert(headers, "x-ms-region", &shared.cfg.region);
    insert(headers, "x-sim-name", &shared.cfg.name);
    insert(headers, "apim-request-id", &id);
    insert(headers, "x-request-id", &id);
    for (name, value) in shared.limiter.headers(Instant::now()) {
        insert(headers, name, &value);
    }
}

/// Values come from configuration and numbers; one that is not a valid header value is skipped
/// (and logged) rather than failing the answer.
fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match http::HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => log::warn!("sim: header {name} value {value:?} is not a valid header value"),
    }
}

/// `GET /_sim/stats`: counters and utilization, for demo and load scripts; `/_sim/entra/...`: the
/// token service's (see `entra::endpoints::control`). Not recorded or counted.
fn control(shared: &Shared, parts: &http::request::Parts) -> Response<SimBody> {
    let entra = endpoints::control(&shared.issuer, &parts.method, parts.uri.path());
    if let Some(Answer::Json(status, v)) = entra {
        return plain_json(status, &v);
    }
    if parts.method != http::Method::GET || parts.uri.path() != "/_sim/stats" {
        return json_response(shared, StatusCode::NOT_FOUND, Reject::not_found().body());
    }
    // Flat, so scripts can read `.throttled_429` directly.
    let mut body = serde_json::to_value(shared.recorder.stats()).unwrap_or_else(|_| json!({}));
    body["name"] = json!(shared.cfg.name);
    body["mode"] = json!(shared.cfg.mode.to_string());
    body["utilization_percent"] = json!(shared.limiter.utilization(Instant::now()));
    json_response(shared, StatusCode::OK, Bytes::from(body.to_string()))
}

/// Waits `d`, or not at all when it is zero: tokio's timer has millisecond granularity, so
/// even a zero sleep would add about a millisecond to every zero-delay answer.
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_by_key_or_bearer() {
        let mut h = HeaderMap::new();
        assert!(authorize(None, &h).is_ok());
        assert!(authorize(Some("k"), &h).is_err());
        h.insert("api-key", "k".parse().unwrap());
        assert!(authorize(Some("k"), &h).is_ok());
        assert!(authorize(Some("other"), &h).is_err());
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer k".parse().unwrap());
        assert!(authorize(Some("k"), &h).is_ok());
        h.insert("authorization", "Basic k".parse().unwrap());
        assert_eq!(authorize(Some("k"), &h), Err(Reject::unauthorized()));
    }
}
