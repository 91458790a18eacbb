//! One upstream attempt as a value: the deployment it went to, how it ended, and its hold on
//! the deployment (in flight, admitted tokens), which it gives up exactly once. Each event of
//! an attempt's life is a method here, so the hooks only say which event happened.

use crate::config::{Config, Deployment};
use crate::routing::select::Choice;
use crate::routing::state::{Failure, Lease, RoutingPolicy, Skip};
use pingora::http::ResponseHeader;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How an attempt ended; its name is the `outcome` of the access log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// The upstream answered and its answer went (or is going) to the client.
    Response,
    /// The upstream answered with a status that was replayed on another deployment.
    Replayed,
    /// No connection could be made.
    Connect,
    /// The connection failed after it was made.
    Error,
    /// A pooled connection the upstream had already closed: says nothing of the deployment.
    StaleConnection,
    /// The client left before the upstream answered.
    ClientGone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Response => "response",
            Outcome::Replayed => "replayed",
            Outcome::Connect => "connect",
            Outcome::Error => "error",
            Outcome::StaleConnection => "stale-connection",
            Outcome::ClientGone => "client-gone",
        }
    }
}

/// What the gateway knows of the request an attempt carries, to blame its failures fairly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// The tenant's identity, stable across reloads.
    pub source: u64,
    /// Output tokens the request may generate.
    pub output: u64,
    /// A stream's first byte comes with its first token, however long it is.
    pub stream: bool,
}

/// Azure answers a synchronous request that runs past its own window with 408.
const AZURE_SYNC_WINDOW: Duration = Duration::from_secs(60);

/// The output rate assumed before a deployment has been measured: slower than any
/// GPT-4o-mini deployment (8-10 ms per token is 100-125 tokens/s), so that a request is
/// blamed for its own size rather than the deployment for being slow.
const ASSUMED_TOKENS_PER_SECOND: f64 = 50.0;

/// One upstream attempt, as the access log and `x-spillway-attempts` report it.
#[derive(Debug)]
pub struct Attempt {
    pub deployment: Arc<Deployment>,
    pub pool: usize,
    pub started: std::time::Instant,
    /// Why the model's first pool was passed over for this attempt, if it was.
    pub spilled: Option<Skip>,
    origin: Origin,
    status: u16,
    outcome: Outcome,
    /// Held from the start until the attempt is released or settled.
    lease: Option<Lease>,
}

impl Attempt {
    /// Starts an attempt on the chosen deployment with `tokens` (prompt plus output limit)
    /// admitted to its window.
    pub fn start(choice: Choice, tokens: u64, origin: Origin, now: Instant) -> Attempt {
        let lease = choice.deployment.state.lease(tokens, now);
        Attempt {
            deployment: choice.deployment,
            pool: choice.pool,
            started: std::time::Instant::now(),
            spilled: choice.spilled,
            origin,
            status: 0,
            outcome: Outcome::Pending,
            lease: Some(lease),
        }
    }

    /// The upstream status, or 0 when no response header arrived.
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// A stale pooled connection says nothing about the deployment: it may be tried again.
    pub fn counts_as_tried(&self) -> bool {
        self.outcome != Outcome::StaleConnection
    }

    /// The upstream answered: the deployment learns from the status and Azure's headers
    /// (utilization, 429 cool-down, passive health). Returns whether the status is one the
    /// config replays elsewhere.
    pub fn on_response(&mut self, resp: &ResponseHeader, config: &Config, now: Instant) -> bool {
        let status = resp.status.as_u16();
        self.status = status;
        self.outcome = Outcome::Response;
        let d = &self.deployment;
        let policy = &config.routing;
        if let Some(pct) = resp
            .headers
            .get("azure-openai-deployment-utilization")
            .and_then(|v| parse_percent(v.as_bytes()))
        {
            let spill_at = config.pools[self.pool].spill_at_utilization;
            d.state.on_utilization(pct, spill_at, policy, now);
        }
        match status {
            429 => d.state.on_throttled(retry_after(resp), policy, now),
            408 if self.explained_by_size(AZURE_SYNC_WINDOW, now) => {}
            408 | 500..=599 => {
                if d.state.on_failure(self.failure(), policy, now) {
                    log::warn!("deployment {} ejected after repeated {status}s", d.name);
                }
            }
            _ => d.state.on_success(),
        }
        config.retry.retries_status(status)
    }

    /// The answer's status is being replayed on another deployment.
    pub fn replayed(&mut self) {
        self.outcome = Outcome::Replayed;
        self.release();
    }

    /// No connection could be made: counts against the deployment's health.
    pub fn connect_failed(&mut self, policy: &RoutingPolicy, now: Instant) {
        self.outcome = Outcome::Connect;
        self.deployment
            .state
            .on_failure(Failure::Connect, policy, now);
        self.release();
    }

    /// The upstream connection failed. `stale`: a reused pooled connection that failed
    /// before any answer, which the upstream had closed while idle and which says nothing
    /// about its health. `timed_out`: it ran past the first-byte timeout. The hold stays
    /// until the caller replays (`release`) or the request ends (`settle`).
    pub fn transport_error(&mut self, stale: bool, timed_out: bool, config: &Config, now: Instant) {
        if self.outcome == Outcome::Pending {
            self.outcome = if stale {
                Outcome::StaleConnection
            } else {
                Outcome::Error
            };
        }
        let own_size = timed_out && self.explained_by_size(config.timeouts.first_byte, now);
        if !stale && !own_size && self.status == 0 {
            let state = &self.deployment.state;
            state.on_failure(self.failure(), &config.routing, now);
        }
    }

    fn failure(&self) -> Failure {
        Failure::Request {
            source: self.origin.source,
        }
    }

    /// Whether a synchronous request's own output limit, at the deployment's measured rate,
    /// would take more than half of `window`: then a timeout is the request's doing, not a
    /// sign that the deployment is failing.
    fn explained_by_size(&self, window: Duration, now: Instant) -> bool {
        if self.origin.stream {
            return false;
        }
        let rate = self.deployment.state.rate.rate(now);
        let seconds =
            self.origin.output as f64 / rate.unwrap_or(ASSUMED_TOKENS_PER_SECOND).max(1.0);
        seconds > window.as_secs_f64() / 2.0
    }

    /// The client went away. Before any answer the deployment's work is wasted and given
    /// back; mid-answer the attempt is settled when the request ends, from what was seen.
    pub fn client_gone(&mut self) {
        if self.outcome == Outcome::Pending {
            self.outcome = Outcome::ClientGone;
            self.release();
        }
    }

    /// Gives back the admitted tokens and the in-flight slot: nothing was generated.
    pub fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }

    /// The request ended: an answered attempt's estimate becomes the `actual` tokens used;
    /// any other keeps its estimate (the upstream may have done the work).
    pub fn settle(&mut self, actual: Option<u64>) {
        if let Some(lease) = self.lease.take() {
            lease.settle(actual.filter(|_| self.outcome == Outcome::Response));
        }
    }
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
/// Values too large for a `Duration` count as a day; the routing policy caps them anyway.
pub fn retry_after(resp: &ResponseHeader) -> Duration {
    let num = |name: &str| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let secs = num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))
        .unwrap_or(1.0);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use std::path::Path;

    const CONF: &str = r#"
listen: 127.0.0.1:1
tenants: [{name: t, api_keys: [k]}]
routing: {eject_after_failures: 1}
pools:
  - name: ptu
    kind: provisioned
    deployments:
      - {name: p1, endpoint: "http://127.0.0.1:2", deployment: m, api_key: k}
models:
  m: [ptu]
"#;

    fn conf() -> Config {
        config::parse(CONF, Path::new("t"), &|_| None, None)
            .unwrap()
            .config
    }

    fn start(c: &Config, tokens: u64) -> Attempt {
        let choice = Choice {
            pool: 0,
            deployment: c.pools[0].deployments[0].clone(),
            spilled: None,
            saturated: false,
        };
        Attempt::start(choice, tokens, Origin::default(), Instant::now())
    }

    fn held(c: &Config) -> (u32, u64) {
        let s = &c.pools[0].deployments[0].state;
        (s.inflight(), s.admitted_tokens(Instant::now()))
    }

    fn answer(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(*k, *v).unwrap();
        }
        r
    }

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
        r.insert_header("retry-after-ms", "1e300").unwrap();
        assert_eq!(retry_after(&r), Duration::from_secs(86_400), "no panic");
    }

    #[test]
    fn a_replayed_status_gives_its_hold_back() {
        let c = conf();
        let mut a = start(&c, 1_000);
        assert_eq!(held(&c), (1, 1_000));
        assert!(a.on_response(
            &answer(429, &[("retry-after-ms", "500")]),
            &c,
            Instant::now()
        ));
        let s = &a.deployment.state;
        assert!(s.cooldown_left(Instant::now()).is_some());
        a.replayed();
        assert_eq!((a.outcome(), a.status()), (Outcome::Replayed, 429));
        assert_eq!(held(&c), (0, 0));
        a.settle(Some(50));
        assert_eq!(held(&c), (0, 0), "released once, settled never");
    }

    #[test]
    fn a_client_gone_mid_stream_is_settled_once_from_what_was_seen() {
        let c = conf();
        let mut a = start(&c, 1_000);
        assert!(!a.on_response(&answer(200, &[]), &c, Instant::now()));
        a.client_gone();
        assert_eq!(a.outcome(), Outcome::Response);
        assert_eq!(held(&c), (1, 1_000), "nothing given back mid-answer");
        a.settle(Some(300));
        assert_eq!(held(&c), (0, 300));
        drop(a);
        assert_eq!(held(&c), (0, 300));
    }

    #[test]
    fn a_client_gone_before_the_answer_gives_everything_back() {
        let c = conf();
        let mut a = start(&c, 700);
        a.client_gone();
        assert_eq!(a.outcome(), Outcome::ClientGone);
        assert_eq!(held(&c), (0, 0));
    }

    #[test]
    fn failures_mark_health_but_a_stale_connection_does_not() {
        let c = conf();
        let p = &c.routing;
        let mut a = start(&c, 10);
        a.transport_error(true, false, &c, Instant::now());
        assert_eq!(a.outcome(), Outcome::StaleConnection);
        assert!(!a.counts_as_tried());
        let s = a.deployment.state.clone();
        assert_eq!(s.skip(None, 90.0, None, p, Instant::now()), None);
        a.release();
        let mut b = start(&c, 10);
        b.transport_error(false, false, &c, Instant::now());
        assert_eq!(b.outcome(), Outcome::Error);
        assert_eq!(
            s.skip(None, 90.0, None, p, Instant::now()),
            Some(Skip::Ejected)
        );
        b.settle(Some(99));
        assert_eq!(
            held(&c),
            (0, 10),
            "an unanswered attempt keeps its estimate"
        );
        let mut d = start(&c, 5);
        d.connect_failed(p, Instant::now());
        assert_eq!((d.outcome(), held(&c)), (Outcome::Connect, (0, 10)));
    }

    #[test]
    fn a_dropped_attempt_leaves_in_flight_and_keeps_its_estimate() {
        let c = conf();
        drop(start(&c, 40));
        assert_eq!(held(&c), (0, 40));
    }
}
