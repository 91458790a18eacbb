//! Prometheus metrics, one registry per gateway (so in-process gateways in tests do not
//! share counters), served on the admin listener's `/metrics`. Label values come from the
//! config (tenants, models, pools, deployments) or small fixed sets, never from requests.

use crate::routing::state::Skip;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

/// Every metric the gateway exports.
pub struct Metrics {
    pub registry: Registry,
    /// Client requests by outcome.
    pub requests: IntCounterVec,
    /// Upstream attempts by deployment and how they ended.
    pub attempts: IntCounterVec,
    /// Replays, by why the previous attempt did not serve.
    pub retries: IntCounterVec,
    /// Requests served by a pool other than the model's first, by why it was passed over.
    pub spillovers: IntCounterVec,
    /// 408 and 429 seen from upstreams (`side="upstream"`) and returned to clients
    /// (`side="client"`): the gap is what the gateway absorbed.
    pub throttles: IntCounterVec,
    pub prompt_tokens: IntCounterVec,
    pub completion_tokens: IntCounterVec,
    pub ttft: HistogramVec,
    pub tbt: HistogramVec,
    pub duration: HistogramVec,
    /// Time spent in Spillway itself before the upstream request (admission, governance,
    /// routing), excluding the client's upload.
    pub overhead: Histogram,
    pub streams_cut: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Open client connections (all listeners).
    pub client_connections: prometheus::IntGauge,
    /// Connections closed and requests refused by an edge limit, by limit.
    pub client_limits: IntCounterVec,
    pub access_log_dropped: IntCounterVec,
    /// Requests refused before admission: `unauthorized` (missing or unknown key),
    /// `auth_limited` (too many of those from the address), `front_door` (wrong or no
    /// `X-Azure-FDID`).
    pub client_refusals: IntCounterVec,
    /// Client addresses with recent failed authentications, set at every scrape.
    pub auth_failure_addresses: prometheus::IntGauge,
    /// Gauges refreshed from live state at every scrape.
    pub inflight: IntGaugeVec,
    pub utilization: prometheus::GaugeVec,
    pub healthy: IntGaugeVec,
    pub cooldown: prometheus::GaugeVec,
    pub admitted_tokens: IntGaugeVec,
    /// Utilization from the leaky-bucket model the held classes read.
    pub modelled_utilization: prometheus::GaugeVec,
    /// Requests waiting for a saturated deployment now.
    pub hold_queue: IntGaugeVec,
    /// Held requests by class and how the hold ended: `served` by the first pool,
    /// `spilled` when their time ran out, `gone` when the client left.
    pub held: IntCounterVec,
    pub hold_seconds: HistogramVec,
    /// Requests that went past their saturated first pool, by class and reason
    /// (`threshold`, `deadline`, `queue-full`, `class`).
    pub spill_decisions: IntCounterVec,
    /// What served requests cost, and the paid hours of provisioned deployments.
    pub cost: super::cost::CostMetrics,
    /// Entra ID: upstream credentials and refused tenant tokens.
    pub identity: super::identity::IdentityMetrics,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("unique metric name");
    h
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("unique metric name");
    g
}

fn fgauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let g =
        prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("unique metric name");
    g
}

// The metric definitions are constants: a failure to build or register them is a bug caught
// by the first test, hence `expect` in this constructor only.
impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new_custom(Some("spillway".into()), None).expect("valid prefix");
        let dep = &["pool", "deployment", "region"];
        let latency = exponential_buckets(0.005, 2.0, 16).expect("valid buckets");
        let tbt = exponential_buckets(0.001, 1.6, 16).expect("valid buckets");
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_overhead_seconds",
                "Time spent in Spillway before the upstream request, excluding the client's upload.",
            )
            .buckets(exponential_buckets(0.00001, 2.0, 16).expect("valid buckets")),
        )
        .expect("static metric definition");
        r.register(Box::new(overhead.clone()))
            .expect("unique metric name");
        let client_connections =
            prometheus::IntGauge::new("client_connections", "Open client connections.")
                .expect("static metric definition");
        r.register(Box::new(client_connections.clone()))
            .expect("unique metric name");
        Metrics {
            client_connections,
            client_limits: counter(
                &r,
                "client_limits_total",
                "Client connections closed, or requests refused, by an edge limit.",
                &["limit"],
            ),
            requests: counter(
                &r,
                "requests_total",
                "Client requests.",
                &[
                    "model",
                    "tenant",
                    "pool",
                    "deployment",
                    "region",
                    "status",
                    "stream",
                ],
            ),
            attempts: counter(
                &r,
                "upstream_attempts_total",
                "Upstream attempts.",
                &["pool", "deployment", "region", "status", "outcome"],
            ),
            retries: counter(
                &r,
                "retries_total",
                "Replays on another deployment, by the reason of the failed attempt.",
                &["reason"],
            ),
            spillovers: counter(
                &r,
                "spillovers_total",
                "Requests served by a later pool than the model's first.",
                &["model", "from_pool", "to_pool", "reason"],
            ),
            throttles: counter(
                &r,
                "throttles_total",
                "408 and 429 seen from upstreams and returned to clients.",
                &["side", "status"],
            ),
            prompt_tokens: counter(
                &r,
                "prompt_tokens_total",
                "Prompt tokens, from upstream usage.",
                &["model", "tenant", "pool", "deployment"],
            ),
            completion_tokens: counter(
                &r,
                "completion_tokens_total",
                "Completion tokens, from upstream usage (or counted deltas of cut streams).",
                &["model", "tenant", "pool", "deployment"],
            ),
            ttft: histogram(
                &r,
                "ttft_seconds",
                "Time to first content token of streams.",
                &["model", "pool"],
                latency.clone(),
            ),
            tbt: histogram(
                &r,
                "tbt_seconds",
                "Mean time between tokens of each stream.",
                &["model", "pool"],
                tbt,
            ),
            duration: histogram(
                &r,
                "request_duration_seconds",
                "End-to-end request duration.",
                &["model", "pool", "stream"],
                latency,
            ),
            overhead,
            streams_cut: counter(
                &r,
                "streams_cut_total",
                "Streams that ended without [DONE].",
                &["pool", "deployment"],
            ),
            config_reloads: counter(
                &r,
                "config_reload_total",
                "Config reloads by result.",
                &["result"],
            ),
            access_log_dropped: counter(
                &r,
                "access_log_dropped_total",
                "Access log lines dropped because the writer fell behind.",
                &["sink"],
            ),
            client_refusals: counter(
                &r,
                "client_refusals_total",
                "Requests refused before admission, by reason.",
                &["reason"],
            ),
            auth_failure_addresses: {
                let g = prometheus::IntGauge::new(
                    "auth_failure_addresses",
                    "Client addresses with failed authentications in their current window.",
                )
                .expect("static metric definition");
                r.register(Box::new(g.clone())).expect("unique metric name");
                g
            },
            inflight: gauge(
                &r,
                "inflight_requests",
                "Requests in flight per deployment.",
                dep,
            ),
            utilization: fgauge(
                &r,
                "deployment_utilization_percent",
                "Latest azure-openai-deployment-utilization (-1 when unknown or stale).",
                dep,
            ),
            healthy: gauge(
                &r,
                "deployment_healthy",
                "1 when a deployment is healthy and not ejected.",
                dep,
            ),
            cooldown: fgauge(
                &r,
                "deployment_cooldown_seconds",
                "Cool-down left after a 429.",
                dep,
            ),
            admitted_tokens: gauge(
                &r,
                "deployment_admitted_tokens",
                "Estimated tokens sent in the last minute.",
                dep,
            ),
            modelled_utilization: fgauge(
                &r,
                "deployment_modelled_utilization_percent",
                "Utilization from the leaky-bucket model of what was sent and reported.",
                dep,
            ),
            hold_queue: gauge(
                &r,
                "hold_queue_depth",
                "Requests held waiting for the deployment to have room.",
                dep,
            ),
            held: counter(
                &r,
                "held_total",
                "Requests held for their saturated first pool, by how the hold ended.",
                &["class", "outcome"],
            ),
            hold_seconds: histogram(
                &r,
                "hold_seconds",
                "How long requests were held.",
                &["class", "outcome"],
                vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0],
            ),
            spill_decisions: counter(
                &r,
                "spill_decisions_total",
                "Requests that went past their saturated first pool, by why.",
                &["class", "reason"],
            ),
            cost: super::cost::CostMetrics::new(&r),
            identity: super::identity::IdentityMetrics::new(&r),
            registry: r,
        }
    }
}

impl Metrics {
    /// Sets the per-deployment gauges from live state, just before a scrape.
    pub fn refresh(&self, config: &crate::config::Config) {
        let now = tokio::time::Instant::now();
        for g in [&self.inflight, &self.healthy, &self.admitted_tokens] {
            g.reset();
        }
        self.utilization.reset();
        self.cooldown.reset();
        self.modelled_utilization.reset();
        self.hold_queue.reset();
        for (pool, d) in config.deployments() {
            let l = [pool.name.as_str(), d.name.as_str(), d.region.as_str()];
            let s = &d.state;
            self.inflight
                .with_label_values(&l)
                .set(i64::from(s.inflight()));
            self.utilization
                .with_label_values(&l)
                .set(s.utilization(&config.routing, now).unwrap_or(-1.0));
            let down = matches!(
                s.skip(None, f64::INFINITY, None, &config.routing, now),
                Some(Skip::Unhealthy | Skip::Ejected)
            );
            self.healthy.with_label_values(&l).set(i64::from(!down));
            self.cooldown
                .with_label_values(&l)
                .set(s.cooldown_left(now).map_or(0.0, |d| d.as_secs_f64()));
            self.admitted_tokens
                .with_label_values(&l)
                .set(s.admitted_tokens(now) as i64);
            self.modelled_utilization
                .with_label_values(&l)
                .set(s.level_percent(now));
            self.hold_queue
                .with_label_values(&l)
                .set(i64::try_from(s.hold.len()).unwrap_or(i64::MAX));
        }
        self.cost.accrue_config(config, now);
        self.identity.refresh(config);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Result<(Vec<u8>, String), prometheus::Error> {
        use prometheus::Encoder;
        let encoder = prometheus::TextEncoder::new();
        let mut out = Vec::new();
        encoder.encode(&self.registry.gather(), &mut out)?;
        // Pingora's own metrics, if any, live in the default registry.
        encoder.encode(&prometheus::gather(), &mut out)?;
        Ok((out, encoder.format_type().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::default();
        m.requests
            .with_label_values(&["m", "t", "ptu", "d", "r", "200", "false"])
            .inc();
        m.overhead.observe(0.0001);
        let (text, ct) = m.render().unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(ct.starts_with("text/plain"));
        assert!(
            text.contains("spillway_requests_total{deployment=\"d\""),
            "{text}"
        );
        assert!(text.contains("spillway_gateway_overhead_seconds_bucket"));
        // Two gateways in one process keep separate registries.
        let _second = Metrics::default();
    }
}
