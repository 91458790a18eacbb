//! The per-request context: what the phases learn about a request and hand to the next, in
//! three parts written in order: the admission, the upstream attempts, what was served.

use super::attempt::Attempt;
use super::usage::{JsonUsage, Usage};
use crate::api::Route;
use crate::config::{Config, Deployment, Model, Tenant};
use crate::governance::body::JsonBody;
use crate::governance::budget::Remaining;
use crate::governance::caps::{CapPolicy, Capped};
use crate::routing::hold::SpillReason;
use crate::routing::select::Choice;
use crate::stream::{SseTap, StreamSummary};
use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// Everything one request carries between phases.
pub struct RequestCtx {
    pub started: Instant,
    /// Visible ASCII only (see `admit`), so it reads back as a `str`.
    pub request_id: HeaderValue,
    /// The config this request started on; a reload never changes it mid-request.
    pub config: Arc<Config>,
    /// A load balancer's health probe, not traffic: not logged or counted.
    pub probe: bool,
    /// The client's address as the gateway believes it (`api::client_addr`), once read.
    pub client: Option<std::net::IpAddr>,
    /// The caller, once its key is checked: logged even when admission then refuses it.
    pub tenant: Option<Arc<Tenant>>,
    /// Why an Entra ID token was refused, for the metrics (the client only learns 401).
    pub token_refused: Option<&'static str>,
    /// How long the client took to send its body (not the gateway's time).
    pub body_read: Duration,
    /// Time spent in the gateway before the first upstream attempt.
    pub overhead: Option<Duration>,
    /// What admission decided; `None` until the request is admitted, and then never changed
    /// except for the budget charge, which is taken when it is settled.
    pub admission: Option<Admission>,
    /// The attempts upstream and what the current one sends.
    pub upstream: Upstream,
    /// What the served response reported.
    pub served: Served,
}

/// An admitted request: what it asks for and what it may cost.
pub struct Admission {
    pub route: Route,
    /// The model the route names, resolved once.
    pub model: Arc<Model>,
    /// The `api-version` query value, when the client sent one.
    pub api_version: Option<String>,
    pub body: RequestBody,
    /// The caps for this request (global, model, tenant merged), for governed operations.
    pub policy: Option<CapPolicy>,
    /// Prompt tokens counted (or estimated) at admission.
    pub prompt_tokens: u64,
    /// Tokens charged to the tenant's budget, until the request settles them.
    pub charged: Option<u64>,
    /// The tenant's budget after admission, for `x-ratelimit-remaining-*`.
    pub remaining: Remaining,
}

/// The client's body as admission left it.
// Not boxed: the parsed body is the common case, and a box would be one more allocation
// per request for no saving.
#[allow(clippy::large_enum_variant)]
pub enum RequestBody {
    /// A governed operation's body, parsed once and edited per attempt.
    Parsed(JsonBody),
    /// Any other body, sent unchanged (`None` when empty).
    Raw(Option<Bytes>),
}

impl Admission {
    pub fn streaming(&self) -> bool {
        matches!(&self.body, RequestBody::Parsed(b) if b.stream)
    }
}

/// The upstream attempts of one request.
#[derive(Default)]
pub struct Upstream {
    /// Every attempt so far; the last one is current. Each owns its hold on its deployment
    /// (see `attempt.rs`).
    pub attempts: Vec<Attempt>,
    /// The deployment the replay decision found, for the next attempt.
    pub next: Option<Choice>,
    /// The body of the current attempt (may differ per deployment).
    pub body: Option<Bytes>,
    /// The output limit decided for the current attempt (at admission, before any attempt).
    pub capped: Option<Capped>,
    /// The gateway added `include_usage` to a stream whose client did not ask for it, so the
    /// usage chunk is removed before the client sees it.
    pub strip_usage: bool,
    /// How long the request was held for its saturated first pool.
    pub held: Option<Duration>,
    /// It was held, and then served by its first pool.
    pub hold_served: bool,
    /// It was held, and its client left.
    pub hold_gone: bool,
    /// Why it went past its saturated first pool.
    pub spill_reason: Option<SpillReason>,
}

/// What the served attempt's response reported.
#[derive(Default)]
pub struct Served {
    /// Side reader of the current response.
    pub tap: Tap,
    /// Usage the upstream reported (or, for a cut stream, what was counted).
    pub usage: Option<Usage>,
    /// What the served stream measured.
    pub stream: Option<StreamSummary>,
    /// When the response ended.
    pub finished: Option<Instant>,
}

/// How the current response is read on the side.
#[derive(Debug, Default)]
pub enum Tap {
    #[default]
    None,
    Json(JsonUsage),
    Sse(Box<SseTap>),
}

impl RequestCtx {
    pub fn new(config: Arc<Config>) -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            config,
            probe: false,
            client: None,
            tenant: None,
            token_refused: None,
            body_read: Duration::ZERO,
            overhead: None,
            admission: None,
            upstream: Upstream::default(),
            served: Served::default(),
        }
    }

    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// The admitted request's model.
    pub fn model(&self) -> Option<&Model> {
        self.admission.as_ref().map(|a| &*a.model)
    }

    /// The model's first (preferred) pool: an attempt elsewhere is a spillover.
    pub fn first_pool(&self) -> Option<usize> {
        self.model()?.pools.first().copied()
    }

    pub fn streaming(&self) -> bool {
        self.admission.as_ref().is_some_and(Admission::streaming)
    }

    pub fn current(&self) -> Option<&Attempt> {
        self.upstream.attempts.last()
    }

    /// Whether `d` already had its attempt in this request (no allocation: called per choice).
    pub fn tried(&self, d: &Arc<Deployment>) -> bool {
        self.upstream
            .attempts
            .iter()
            .any(|a| a.counts_as_tried() && Arc::ptr_eq(&a.deployment, d))
    }
}
