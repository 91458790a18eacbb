//! Reports one finished request: the access log line and the metrics, from the same facts.
//! It lives with the proxy because it reads the request context; `telemetry` below it only
//! provides the metric families and the log writer.
//!
//! Access log fields (stable; documented in the README): `ts`, `request_id`, `tenant`,
//! `model`, `operation`, `stream`, `status`, `requested_max_tokens`, `max_tokens`,
//! `cap_reason`, `deployment`, `region`, `pool`, `spillover`, `spill_reason`, `held_ms`,
//! `attempts[]` (`deployment`, `region`, `pool`, `status`, `outcome`, `ms`), `prompt_tokens`,
//! `completion_tokens`, `total_tokens`, `cached_tokens`, `usage_estimated`, `cost_usd`,
//! `ttft_ms`, `tbt_mean_ms`, `tbt_p95_ms`, `finish_reason`, `stream_complete`, `duration_ms`,
//! `overhead_ms`, `bytes_in`, `bytes_out`, `error`.

use super::ctx::RequestCtx;
use crate::routing::price::{Price, Tokens};
use crate::shared::Shared;
use serde::ser::{Serialize, SerializeSeq, Serializer};

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What the served attempt cost: its pool's price for the usage it reported. Nothing served,
/// or no usage (an error answer), costs 0. A stream cut before its usage chunk is priced on
/// the estimate it is counted with (the admission's prompt count and the deltas streamed;
/// its line says `usage_estimated`), since Azure bills what it generated, not what arrived.
fn cost_usd(ctx: &RequestCtx) -> f64 {
    let (Some(a), Some(u)) = (ctx.current(), ctx.served.usage) else {
        return 0.0;
    };
    let tokens = Tokens {
        prompt: u.prompt_tokens,
        cached: u.cached_tokens,
        completion: u.completion_tokens,
    };
    ctx.config.pools[a.pool]
        .price
        .cost(tokens, a.deployment.capacity_tpm)
}

/// Records the request in metrics and writes its access log line.
pub fn request_done(
    shared: &Shared,
    ctx: &RequestCtx,
    status: u16,
    error: Option<&str>,
    bytes_in: usize,
    bytes_out: usize,
) {
    let m = &shared.metrics;
    let cfg = &ctx.config;
    let model = ctx.model().map_or("-", |m| m.name.as_str());
    let tenant = ctx.tenant.as_ref().map_or("-", |t| t.name.as_str());
    let served = ctx.current();
    let (pool, deployment, region) = served.map_or(("-", "-", "-"), |a| {
        (
            cfg.pools[a.pool].name.as_str(),
            a.deployment.name.as_str(),
            a.deployment.region.as_str(),
        )
    });
    let stream = ctx.streaming();
    let duration = ctx.started.elapsed();
    let status_s = status.to_string();
    m.requests
        .with_label_values(&[
            model,
            tenant,
            pool,
            deployment,
            region,
            &status_s,
            if stream { "true" } else { "false" },
        ])
        .inc();
    m.duration
        .with_label_values(&[model, pool, if stream { "true" } else { "false" }])
        .observe(duration.as_secs_f64());
    if let Some(o) = ctx.overhead {
        m.overhead.observe(o.as_secs_f64());
    }
    if matches!(status, 408 | 429) {
        m.throttles.with_label_values(&["client", &status_s]).inc();
    }
    for (i, a) in ctx.upstream.attempts.iter().enumerate() {
        let s = a.status().to_string();
        let p = cfg.pools[a.pool].name.as_str();
        m.attempts
            .with_label_values(&[
                p,
                &a.deployment.name,
                &a.deployment.region,
                &s,
                a.outcome().as_str(),
            ])
            .inc();
        if matches!(a.status(), 408 | 429) {
            m.throttles.with_label_values(&["upstream", &s]).inc();
        }
        if i + 1 < ctx.upstream.attempts.len() {
            let reason = if a.status() != 0 {
                s.as_str()
            } else {
                a.outcome().as_str()
            };
            m.retries.with_label_values(&[reason]).inc();
        }
    }
    let spillover = match (served, ctx.first_pool()) {
        (Some(a), Some(first)) if a.pool != first => {
            let reason = a.spilled.map_or("replay", |s| s.as_str());
            m.spillovers
                .with_label_values(&[model, &cfg.pools[first].name, pool, reason])
                .inc();
            Some(format!("{}->{}", cfg.pools[first].name, pool))
        }
        _ => None,
    };
    record_hold(m, ctx);
    let cost = cost_usd(ctx);
    if let (Some(a), true) = (served, cost > 0.0) {
        let class = ctx.tenant.as_ref().map_or("-", |t| t.class.as_str());
        let ptu =
            matches!(cfg.pools[a.pool].price, Price::PerHour(_)).then_some([pool, deployment]);
        m.cost.served(
            &[tenant, model, pool, class],
            cost,
            spillover.is_some(),
            ptu,
        );
        a.deployment
            .state
            .cost
            .add(cost, spillover.is_some(), tokio::time::Instant::now());
    }
    if let (Some(u), Some(_)) = (ctx.served.usage, served) {
        let l = [model, tenant, pool, deployment];
        m.prompt_tokens
            .with_label_values(&l)
            .inc_by(u.prompt_tokens);
        m.completion_tokens
            .with_label_values(&l)
            .inc_by(u.completion_tokens);
    }
    if let Some(st) = &ctx.served.stream {
        if let Some(t) = st.ttft {
            m.ttft
                .with_label_values(&[model, pool])
                .observe(t.as_secs_f64());
        }
        if let Some(t) = st.tbt_mean {
            m.tbt
                .with_label_values(&[model, pool])
                .observe(t.as_secs_f64());
        }
        if !st.done_seen {
            m.streams_cut.with_label_values(&[pool, deployment]).inc();
        }
    }

    if *shared.access_log.sink() == crate::telemetry::access::Sink::Off {
        return;
    }
    let st = ctx.served.stream.as_ref();
    let route = ctx.admission.as_ref().map(|a| &a.route);
    let line = AccessLine {
        ts: jiff::Timestamp::now(),
        request_id: ctx.request_id(),
        tenant: ctx.tenant.as_ref().map(|t| t.name.as_str()),
        model: route.and_then(|r| r.alias.as_deref()),
        operation: route.map(|r| r.operation.as_str()),
        stream,
        status,
        requested_max_tokens: ctx.upstream.capped.as_ref().and_then(|c| c.requested),
        max_tokens: ctx.upstream.capped.as_ref().map(|c| c.applied),
        cap_reason: ctx.upstream.capped.as_ref().map(|c| c.reason.as_str()),
        deployment: served.map(|a| a.deployment.name.as_str()),
        region: served.map(|a| a.deployment.region.as_str()),
        pool: served.map(|a| cfg.pools[a.pool].name.as_str()),
        spillover: spillover.as_deref(),
        spill_reason: ctx.upstream.spill_reason.map(|r| r.as_str()),
        held_ms: ctx.upstream.held.map(ms),
        attempts: Attempts(ctx),
        prompt_tokens: ctx.served.usage.map(|u| u.prompt_tokens),
        completion_tokens: ctx.served.usage.map(|u| u.completion_tokens),
        total_tokens: ctx.served.usage.map(|u| u.total_tokens),
        cached_tokens: ctx.served.usage.map(|u| u.cached_tokens),
        usage_estimated: st.map(|s| s.usage_estimated),
        // To the pico-dollar: six significant digits or more for any request of a few tokens.
        cost_usd: (cost * 1e12).round() / 1e12,
        ttft_ms: st.and_then(|s| s.ttft).map(ms),
        tbt_mean_ms: st.and_then(|s| s.tbt_mean).map(ms),
        tbt_p95_ms: st.and_then(|s| s.tbt_p95).map(ms),
        finish_reason: st.and_then(|s| s.finish_reason.as_deref()),
        stream_complete: st.map(|s| s.done_seen),
        duration_ms: ms(duration),
        overhead_ms: ctx.overhead.map(ms),
        bytes_in,
        bytes_out,
        error,
    };
    // Serialised straight from borrowed fields: no intermediate JSON tree per request.
    let mut out = Vec::with_capacity(768);
    if serde_json::to_writer(&mut out, &line).is_err() {
        return;
    }
    let line = String::from_utf8(out).unwrap_or_default();
    if !shared.access_log.write(line) {
        m.access_log_dropped
            .with_label_values(&[shared.access_log.sink().label()])
            .inc();
    }
}

/// What holding decided for the request: a spill's reason, a hold's end and length.
fn record_hold(m: &crate::telemetry::metrics::Metrics, ctx: &RequestCtx) {
    let up = &ctx.upstream;
    if up.spill_reason.is_none() && up.held.is_none() {
        return;
    }
    let class = ctx
        .tenant
        .as_ref()
        .map_or(crate::routing::class::Class::default(), |t| t.class)
        .as_str();
    if let Some(reason) = up.spill_reason {
        m.spill_decisions
            .with_label_values(&[class, reason.as_str()])
            .inc();
    }
    if let Some(held) = up.held {
        let outcome = if up.hold_served {
            "served"
        } else if up.hold_gone {
            "gone"
        } else {
            "spilled"
        };
        m.held.with_label_values(&[class, outcome]).inc();
        m.hold_seconds
            .with_label_values(&[class, outcome])
            .observe(held.as_secs_f64());
    }
}

/// One access log line; field order is the documented order.
#[derive(serde::Serialize)]
struct AccessLine<'a> {
    #[serde(serialize_with = "rfc3339")]
    ts: jiff::Timestamp,
    request_id: &'a str,
    tenant: Option<&'a str>,
    model: Option<&'a str>,
    operation: Option<&'a str>,
    stream: bool,
    status: u16,
    requested_max_tokens: Option<u64>,
    max_tokens: Option<u32>,
    cap_reason: Option<&'a str>,
    deployment: Option<&'a str>,
    region: Option<&'a str>,
    pool: Option<&'a str>,
    spillover: Option<&'a str>,
    spill_reason: Option<&'static str>,
    held_ms: Option<f64>,
    attempts: Attempts<'a>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    usage_estimated: Option<bool>,
    cost_usd: f64,
    ttft_ms: Option<f64>,
    tbt_mean_ms: Option<f64>,
    tbt_p95_ms: Option<f64>,
    finish_reason: Option<&'a str>,
    stream_complete: Option<bool>,
    duration_ms: f64,
    overhead_ms: Option<f64>,
    bytes_in: usize,
    bytes_out: usize,
    error: Option<&'a str>,
}

fn rfc3339<S: Serializer>(ts: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(ts)
}

/// The attempts of a request, serialised from the context without collecting them first.
struct Attempts<'a>(&'a RequestCtx);

#[derive(serde::Serialize)]
struct AttemptLine<'a> {
    deployment: &'a str,
    region: &'a str,
    pool: &'a str,
    status: u16,
    outcome: &'a str,
    ms: f64,
}

impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ctx = self.0;
        let mut seq = s.serialize_seq(Some(ctx.upstream.attempts.len()))?;
        for a in &ctx.upstream.attempts {
            seq.serialize_element(&AttemptLine {
                deployment: &a.deployment.name,
                region: &a.deployment.region,
                pool: &ctx.config.pools[a.pool].name,
                status: a.status(),
                outcome: a.outcome().as_str(),
                ms: ms(a.started.elapsed()),
            })?;
        }
        seq.end()
    }
}
