//! The per-request context: what the phases learn about a request and hand to the next.

use super::attempt::Attempt;
use super::usage::{JsonUsage, Usage};
use crate::api::Route;
use crate::config::{Config, Deployment, Model, Tenant};
use crate::governance::body::JsonBody;
use crate::governance::budget::Remaining;
use crate::governance::caps::{CapPolicy, Capped};
use crate::routing::select::Choice;
use crate::stream::{SseTap, StreamSummary};
use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// How the current response is read on the side.
#[derive(Debug, Default)]
pub enum Tap {
    #[default]
    None,
    Json(JsonUsage),
    Sse(Box<SseTap>),
}

/// Everything one request carries between phases.
pub struct RequestCtx {
    pub started: Instant,
    /// Visible ASCII only (see `admit`), so it reads back as a `str`.
    pub request_id: HeaderValue,
    /// The config this request started on; a reload never changes it mid-request.
    pub config: Arc<Config>,
    pub tenant: Option<Arc<Tenant>>,
    pub route: Option<Route>,
    /// The model the route names, resolved once at admission.
    pub model: Option<Arc<Model>>,
    /// The `api-version` query value, when the client sent one.
    pub api_version: Option<String>,
    /// The parsed body of governed operations.
    pub body: Option<JsonBody>,
    /// The body to send when it is the same for every deployment (set by `request_filter`).
    pub body_out: Option<Bytes>,
    /// The body of the current attempt (may differ per deployment for the v1 shape).
    pub attempt_body: Option<Bytes>,
    /// Every upstream attempt so far; the last one is current. Each owns its hold on its
    /// deployment (see `attempt.rs`).
    pub attempts: Vec<Attempt>,
    /// The deployment the replay decision found, for the next attempt.
    pub next: Option<Choice>,
    /// The caps for this request (global, model, tenant merged).
    pub policy: Option<CapPolicy>,
    /// The limit decided for the current attempt.
    pub capped: Option<Capped>,
    /// Prompt tokens counted at admission.
    pub prompt_tokens: u64,
    /// Tokens charged to the tenant's budget at admission, settled when the request ends.
    pub charged: Option<u64>,
    /// The tenant's budget after admission, for `x-ratelimit-remaining-*`.
    pub remaining: Remaining,
    /// Side reader of the current response.
    pub tap: Tap,
    /// The gateway added `include_usage` to a stream whose client did not ask for it, so the
    /// usage chunk is removed before the client sees it.
    pub strip_usage: bool,
    /// What the served stream measured.
    pub stream: Option<StreamSummary>,
    /// How long the client took to send its body (not the gateway's time).
    pub body_read: Duration,
    /// Time spent in the gateway before the first upstream attempt.
    pub overhead: Option<Duration>,
    /// Usage the upstream reported for the served attempt.
    pub usage: Option<Usage>,
    /// When the served attempt's response ended.
    pub finished: Option<Instant>,
    /// A load balancer's health probe, not traffic: not logged or counted.
    pub probe: bool,
}

impl RequestCtx {
    pub fn new(config: Arc<Config>) -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            config,
            tenant: None,
            route: None,
            model: None,
            api_version: None,
            body: None,
            body_out: None,
            attempt_body: None,
            attempts: Vec::new(),
            next: None,
            policy: None,
            capped: None,
            prompt_tokens: 0,
            charged: None,
            remaining: Remaining::default(),
            tap: Tap::None,
            strip_usage: false,
            stream: None,
            body_read: Duration::ZERO,
            overhead: None,
            usage: None,
            finished: None,
            probe: false,
        }
    }

    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// The model's first (preferred) pool: an attempt elsewhere is a spillover.
    pub fn first_pool(&self) -> Option<usize> {
        self.model.as_ref()?.pools.first().copied()
    }

    /// The admitted request's model.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_deref()
    }

    pub fn current(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Whether `d` already had its attempt in this request (no allocation: called per choice).
    pub fn tried(&self, d: &Arc<Deployment>) -> bool {
        self.attempts
            .iter()
            .any(|a| a.counts_as_tried() && Arc::ptr_eq(&a.deployment, d))
    }
}
