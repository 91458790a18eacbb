//! Replay decisions: whether a request goes to another deployment before the client sees
//! anything. Bounded by `retry.max_attempts`, by a process-wide retry budget, and by there
//! being somewhere else to go. What each outcome teaches the deployment is the attempt's
//! business (`attempt.rs`); this module only decides what happens next.

use super::ctx::RequestCtx;
use crate::shared::Shared;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorSource, ErrorType};
use tokio::time::Instant;

/// The cause carried by the error that turns a replayable upstream status into a retry, so
/// that `error_while_proxy` recognises its own decision.
#[derive(Debug)]
pub struct Replay;

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("replaying on another deployment")
    }
}

impl std::error::Error for Replay {}

/// Whether another attempt should follow: attempts left, another deployment to try, and
/// room in the retry budget (checked last, so a refusal for other reasons costs nothing).
/// The deployment found is kept for the next `upstream_peer`.
pub fn may_replay(shared: &Shared, ctx: &mut RequestCtx, now: Instant) -> bool {
    let config = ctx.config.clone();
    // A stale pooled connection is no attempt at the deployment (see `replay_stale`).
    let attempts = ctx.upstream.attempts.iter().filter(|a| a.counts_as_tried());
    if attempts.count() as u32 >= config.retry.max_attempts {
        return false;
    }
    let Some(model) = ctx.model() else {
        return false;
    };
    let Ok(choice) = super::upstream::choose_next(ctx, model, shared.spin(), now) else {
        return false;
    };
    let budget = &config.retry;
    if !shared
        .retry_budget
        .try_retry(budget.budget_percent, budget.budget_min_per_second, now)
    {
        return false;
    }
    ctx.upstream.next = Some(choice);
    true
}

/// Stale pooled connections one request may meet before it gives up on replaying them: the
/// pool can hold several connections the upstream closed while they idled.
const MAX_STALE_REPLAYS: usize = 2;

/// After a pooled connection broke before any answer (the upstream had closed it while
/// idle): the request never reached the deployment, so it goes again, to the same deployment
/// or another, as Pingora itself retries such errors (`RetryType::ReusedOnly`). Neither the
/// retry budget nor `retry.max_attempts` pays for it: nothing was retried.
fn replay_stale(ctx: &mut RequestCtx, spin: u32, now: Instant) -> bool {
    let stale = ctx
        .upstream
        .attempts
        .iter()
        .filter(|a| !a.counts_as_tried());
    if stale.count() > MAX_STALE_REPLAYS {
        return false;
    }
    let Some(model) = ctx.model() else {
        return false;
    };
    let Ok(choice) = super::upstream::choose_next(ctx, model, spin, now) else {
        return false;
    };
    ctx.upstream.next = Some(choice);
    true
}

/// Learns from an upstream response header, and turns a replayable status into a retryable
/// error while nothing has reached the client.
pub fn on_response(
    shared: &Shared,
    ctx: &mut RequestCtx,
    resp: &ResponseHeader,
) -> pingora::Result<()> {
    let now = Instant::now();
    let config = ctx.config.clone();
    let Some(attempt) = ctx.upstream.attempts.last_mut() else {
        return Ok(());
    };
    if !attempt.on_response(resp, &config, now) || !may_replay(shared, ctx, now) {
        return Ok(());
    }
    if let Some(a) = ctx.upstream.attempts.last_mut() {
        a.replayed();
    }
    let status = resp.status.as_u16();
    let mut e = Error::because(
        ErrorType::HTTPStatus(status),
        "replaying on another deployment",
        Replay,
    );
    e.set_retry(true);
    Err(e)
}

/// A connection to the upstream could not be made: whether to try elsewhere.
pub fn after_connect_failure(shared: &Shared, ctx: &mut RequestCtx) -> bool {
    let now = Instant::now();
    let policy = ctx.config.routing;
    if let Some(a) = ctx.upstream.attempts.last_mut() {
        a.connect_failed(&policy, now);
    }
    // Nothing reached the upstream: another deployment may take it.
    may_replay(shared, ctx, now)
}

/// The proxy failed after connecting: classify the failure for the attempt and say whether
/// to replay. `client_reused`: the upstream connection came from the pool; `answered`: part
/// of a response already reached the client, which makes a replay unsafe.
pub fn after_error(
    shared: &Shared,
    ctx: &mut RequestCtx,
    e: &Error,
    client_reused: bool,
    answered: bool,
) -> bool {
    if e.root_cause().is::<Replay>() {
        // upstream_response_filter already decided.
        return true;
    }
    let now = Instant::now();
    let config = ctx.config.clone();
    let Some(a) = ctx.upstream.attempts.last_mut() else {
        return false;
    };
    if e.esource() == &ErrorSource::Downstream {
        // The client went away (or sent garbage): nothing to say about the deployment,
        // and nobody left to answer, so no replay either.
        a.client_gone();
        return false;
    }
    // A write can meet the upstream's close first ("Broken pipe while writing body"): as
    // stale as a read that finds it.
    let stale = client_reused
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        )
        && a.status() == 0;
    let timed_out = matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    );
    a.transport_error(stale, timed_out, &config, now);
    // The body is fully buffered, so a POST is as replayable as a GET; only a response
    // that already reached the client makes a retry unsafe.
    let retry = !answered
        && if stale {
            replay_stale(ctx, shared.spin(), now)
        } else {
            may_replay(shared, ctx, now)
        };
    if retry {
        if let Some(a) = ctx.upstream.attempts.last_mut() {
            a.release();
        }
    }
    retry
}
