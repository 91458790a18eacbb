//! Metrics of Entra ID: the upstream credentials' tokens and the tenants' tokens refused.
//! Labels are credential labels (no secrets) and fixed reasons, never token contents.

use crate::config::Config;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct IdentityMetrics {
    /// 1 while a credential has a token its deployments can use.
    pub credential_usable: IntGaugeVec,
    /// Seconds until the credential's token expires (0 without one).
    pub credential_expires: GaugeVec,
    /// Token requests by credential and outcome (`ok`, `error`).
    pub credential_refreshes: IntCounterVec,
    /// Tenant tokens refused, by reason (`expired`, `audience`, `signature`, ...).
    pub token_refusals: IntCounterVec,
    /// 1 while the issuer's signing keys are known.
    pub signing_keys_usable: IntGaugeVec,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("unique metric name");
    c
}

impl IdentityMetrics {
    // Constant definitions: a failure is a bug the first test catches, hence `expect`.
    pub fn new(r: &Registry) -> Self {
        let opts = Opts::new;
        IdentityMetrics {
            credential_usable: reg(
                r,
                IntGaugeVec::new(
                    opts(
                        "upstream_credential_usable",
                        "1 while the Entra ID credential has a usable token.",
                    ),
                    &["credential"],
                )
                .expect("static metric"),
            ),
            credential_expires: reg(
                r,
                GaugeVec::new(
                    opts(
                        "upstream_token_expires_seconds",
                        "Seconds until the credential's token expires.",
                    ),
                    &["credential"],
                )
                .expect("static metric"),
            ),
            credential_refreshes: reg(
                r,
                IntCounterVec::new(
                    opts(
                        "upstream_token_requests_total",
                        "Token requests to Entra ID by credential and outcome.",
                    ),
                    &["credential", "outcome"],
                )
                .expect("static metric"),
            ),
            token_refusals: reg(
                r,
                IntCounterVec::new(
                    opts(
                        "tenant_token_refusals_total",
                        "Tenant Entra ID tokens refused, by reason.",
                    ),
                    &["reason"],
                )
                .expect("static metric"),
            ),
            signing_keys_usable: reg(
                r,
                IntGaugeVec::new(
                    opts(
                        "signing_keys_usable",
                        "1 while the token issuer's signing keys are known.",
                    ),
                    &["source"],
                )
                .expect("static metric"),
            ),
        }
    }

    /// Sets the gauges from live state, just before a scrape.
    pub fn refresh(&self, config: &Config) {
        let now = tokio::time::Instant::now();
        self.credential_usable.reset();
        self.credential_expires.reset();
        for c in &config.credentials {
            let s = c.status(now);
            self.credential_usable
                .with_label_values(&[c.label()])
                .set(i64::from(s.usable));
            self.credential_expires
                .with_label_values(&[c.label()])
                .set(s.expires_in_seconds.unwrap_or(0) as f64);
        }
        self.signing_keys_usable.reset();
        if let Some(t) = &config.entra_id {
            self.signing_keys_usable
                .with_label_values(&[t.keys.source().url()])
                .set(i64::from(t.keys.current().is_some()));
        }
    }
}
