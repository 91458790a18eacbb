//! Hold or spill for a request whose first pool is saturated: it waits on its own task (an
//! await, so no worker thread is held) for the deployment `routing::hold::plan` picked, until
//! it is the head of that deployment's queue and there is room, or its allowance runs out,
//! or the client leaves.

use super::ctx::RequestCtx;
use crate::config::Model;
use crate::routing::class::{Class, ClassPolicy};
use crate::routing::hold::{plan, Plan, SpillReason, Ticket};
use crate::routing::select::{gauge, Choice};
use crate::routing::state::Skip;
use http::HeaderMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The client's own allowance: it may only lower its class's.
pub const MAX_WAIT_HEADER: &str = "x-spillway-max-wait-ms";

/// How often a head with no time to wait for looks again (it is woken sooner when a
/// request on the deployment ends).
const RECHECK: Duration = Duration::from_millis(50);

/// How the hold ended.
#[derive(Debug)]
pub enum Held {
    /// The first pool has room: the ticket is kept until the attempt has taken its lease,
    /// so the next in line does not see the same room.
    Room(Choice, Ticket, Duration),
    /// It spilled, after waiting this long if it was queued.
    Spill(SpillReason, Option<Duration>),
    /// The client left while held.
    Gone(Duration),
}

/// How long this request may wait: its class's `max_hold`, lowered by the client's header.
pub fn allowance(class: &ClassPolicy, headers: &HeaderMap) -> Duration {
    let asked = headers
        .get(MAX_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    asked.map_or(class.max_hold, |a| a.min(class.max_hold))
}

/// Whether `choice` spilled past a first pool that was saturated (not unhealthy, not
/// ejected: those have nothing to wait for and are not this decision's).
pub fn spilled_for_saturation(choice: &Choice) -> bool {
    matches!(
        choice.spilled,
        Some(Skip::Utilization | Skip::Predicted | Skip::Cooldown | Skip::Inflight)
    )
}

/// Decides, for the first attempt of a request whose `choice` spilled for saturation,
/// whether it waits for its first pool; waits if so. `tokens` is the request's estimate
/// (prompt plus output limit); `gone` resolves when the client leaves.
pub async fn hold_or_spill(
    ctx: &RequestCtx,
    model: &Model,
    class: Class,
    allowance: Duration,
    tokens: u64,
    gone: impl Future<Output = ()>,
) -> Held {
    let config = &ctx.config;
    let policy = config.classes.get(class);
    let Some(&first) = model.pools.first() else {
        return Held::Spill(SpillReason::Threshold, None);
    };
    let pool = &config.pools[first];
    let now = Instant::now();
    let g = gauge(pool, policy);
    if allowance.is_zero() {
        // A class that may not wait leaves at once: for its own lower threshold, or the pool's.
        let reason = if leaves_for_class(ctx, first, policy, now) {
            SpillReason::Class
        } else {
            SpillReason::Threshold
        };
        return Held::Spill(reason, None);
    }
    let d = match plan(pool, class, g, allowance, &config.routing, now) {
        Plan::Spill(reason) => return Held::Spill(reason, None),
        Plan::Hold { deployment, .. } => deployment,
    };
    let Some(ticket) = d.state.hold.join(class, tokens, pool.hold_queue) else {
        return Held::Spill(SpillReason::QueueFull, None);
    };
    let joined = now;
    let deadline = now + allowance;
    let spill_at = g.spill_at.unwrap_or(pool.spill_at_utilization);
    tokio::pin!(gone);
    loop {
        let now = Instant::now();
        let head = ticket.is_head();
        let room = |now| d.skip_in(pool, g, &config.routing, now).is_none();
        if head && room(now) {
            let choice = Choice {
                pool: first,
                deployment: d.clone(),
                spilled: None,
                saturated: false,
            };
            return Held::Room(choice, ticket, now - joined);
        }
        // The head sleeps until the model says there is room (a cool-down's end, the bucket's
        // drain; an in-flight slot wakes it when it frees); the others until they are head.
        let wake = if head {
            let drain = d.state.level_time_to(spill_at, 0, now);
            let wait = d.state.cooldown_left(now).unwrap_or_default().max(drain);
            if now + wait > deadline {
                return Held::Spill(SpillReason::Deadline, Some(now - joined));
            }
            // Nothing to wait out but an in-flight slot, whose end wakes the head: look again
            // now and then all the same, so a model that rounds down cannot spin.
            now + if wait.is_zero() { RECHECK } else { wait }
        } else {
            deadline
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = ticket.notified() => {}
            _ = &mut gone => return Held::Gone(joined.elapsed()),
        }
        let now = Instant::now();
        if now >= deadline && !(ticket.is_head() && room(now)) {
            return Held::Spill(SpillReason::Deadline, Some(now - joined));
        }
    }
}

/// Whether the first pool is passed over only because this class leaves it earlier than
/// the pool's own threshold: it would have room at the pool's.
fn leaves_for_class(ctx: &RequestCtx, first: usize, class: &ClassPolicy, now: Instant) -> bool {
    let pool = &ctx.config.pools[first];
    let Some(own) = gauge(pool, class).spill_at else {
        return false;
    };
    if own >= pool.spill_at_utilization {
        return false;
    }
    let at_pool = crate::routing::state::Gauge {
        spill_at: None,
        ..gauge(pool, class)
    };
    pool.deployments
        .iter()
        .any(|d| !ctx.tried(d) && d.skip_in(pool, at_pool, &ctx.config.routing, now).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_may_lower_its_allowance_never_raise_it() {
        let class = ClassPolicy {
            max_hold: Duration::from_secs(2),
            ..ClassPolicy::default()
        };
        let mut h = HeaderMap::new();
        assert_eq!(allowance(&class, &h), Duration::from_secs(2));
        h.insert(MAX_WAIT_HEADER, "500".parse().unwrap());
        assert_eq!(allowance(&class, &h), Duration::from_millis(500));
        h.insert(MAX_WAIT_HEADER, "60000".parse().unwrap());
        assert_eq!(allowance(&class, &h), Duration::from_secs(2));
        h.insert(MAX_WAIT_HEADER, "soon".parse().unwrap());
        assert_eq!(allowance(&class, &h), Duration::from_secs(2), "ignored");
        assert_eq!(
            allowance(&ClassPolicy::default(), &h),
            Duration::ZERO,
            "a class that is never held"
        );
    }
}
