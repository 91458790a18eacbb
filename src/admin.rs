//! The admin listener: liveness, readiness, Prometheus metrics and a JSON status of every
//! pool and deployment. Keep it on a private address; with `admin_token`, all but the probes
//! need the token.

use crate::config::{KeyDigest, UpstreamAuth};
use crate::shared::Shared;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// A live view of /status: plain HTML and a few lines of script, no build step, no assets.
const STATUS_PAGE: &str = include_str!("admin/status.html");

/// Serves /healthz, /readyz, /health/models, /metrics, /status and the status page at /.
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    pub fn new(shared: Arc<Shared>) -> Self {
        Admin { shared }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

/// The status document: what runs and how each deployment is doing. No keys.
pub fn status_json(shared: &Shared) -> serde_json::Value {
    let config = shared.config();
    let now = tokio::time::Instant::now();
    let pools: Vec<_> = config
        .pools
        .iter()
        .map(|p| {
            let deployments: Vec<_> = p
                .deployments
                .iter()
                .map(|d| {
                    let mut v = d.state.status(&config.routing, now);
                    v["name"] = d.name.clone().into();
                    v["region"] = d.region.clone().into();
                    v["endpoint"] = d.endpoint.url().into();
                    v["deployment"] = d.deployment.clone().into();
                    v["max_inflight"] = d.max_inflight.into();
                    v["capacity_tokens_per_minute"] = d.capacity_tpm.into();
                    v["auth"] = match &d.auth {
                        UpstreamAuth::ApiKey(_) => "api_key".into(),
                        UpstreamAuth::Entra(c) => serde_json::json!({
                            "credential": c.label(),
                            "usable": c.usable(now),
                        }),
                    };
                    v
                })
                .collect();
            serde_json::json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "spill_at_utilization": p.spill_at_utilization,
                "deployments": deployments,
            })
        })
        .collect();
    serde_json::json!({
        "config_hash": config.hash,
        "config_path": shared.config_path,
        "ready": shared.not_ready_reason().is_none(),
        "draining": shared.is_draining(),
        "client_connections": shared.edge.open(),
        "fleet": shared.fleet.status(now),
        "models": shared.model_health().into_iter().map(|(name, ok)| (name, ok.into())).collect::<serde_json::Map<_, _>>(),
        "last_reload": *shared.last_reload.lock(),
        "pools": pools,
        "cost": crate::telemetry::spend::status(&config.pools, now),
        "credentials": config.credentials.iter().map(|c| c.status(now)).collect::<Vec<_>>(),
        "signing_keys": config.entra_id.as_ref().map(|t| t.keys.status()),
    })
}

/// Whether `headers` carry exactly one `Authorization: Bearer <token>` whose token has the
/// digest `expected` (compared in constant time, see `KeyDigest`).
fn bearer_matches(headers: &http::HeaderMap, expected: &KeyDigest) -> bool {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            KeyDigest::of(token.trim()).matches(expected)
        }
        _ => false,
    }
}

fn unauthorized() -> Response<Vec<u8>> {
    let body = serde_json::json!({"error": {
        "code": "401",
        "message": "The admin endpoints need Authorization: Bearer <admin_token>.",
    }});
    let mut r = respond(401, "application/json", body.to_string().into_bytes());
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        // Probes (kubelet, load balancers) carry no token and learn only up or ready.
        let open = matches!(path.as_str(), "/healthz" | "/readyz");
        if let Some(token) = &self.shared.config().admin_token {
            if !open && !bearer_matches(&session.req_header().headers, token) {
                return unauthorized();
            }
        }
        match path.as_str() {
            "/" => respond(
                200,
                "text/html; charset=utf-8",
                STATUS_PAGE.as_bytes().to_vec(),
            ),
            "/healthz" => respond(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.shared.not_ready_reason() {
                None => respond(200, "text/plain", b"ready\n".to_vec()),
                Some(why) => respond(
                    503,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            "/health/models" => {
                // For monitoring, not for balancers: 503 when any model has no healthy
                // deployment, with every model's state.
                let models = self.shared.model_health();
                let all = models.iter().all(|(_, ok)| *ok);
                let body: serde_json::Map<_, _> = models
                    .into_iter()
                    .map(|(name, ok)| {
                        (
                            name,
                            (if ok { "ok" } else { "no healthy deployment" }).into(),
                        )
                    })
                    .collect();
                respond(
                    if all { 200 } else { 503 },
                    "application/json",
                    serde_json::json!({ "models": body })
                        .to_string()
                        .into_bytes(),
                )
            }
            "/metrics" => {
                self.shared.metrics.refresh(&self.shared.config());
                self.shared
                    .metrics
                    .auth_failure_addresses
                    .set(self.shared.auth_failures.tracked() as i64);
                match self.shared.metrics.render() {
                    Ok((out, content_type)) => respond(200, &content_type, out),
                    Err(e) => respond(500, "text/plain", e.to_string().into_bytes()),
                }
            }
            "/status" => respond(
                200,
                "application/json",
                status_json(&self.shared).to_string().into_bytes(),
            ),
            _ => respond(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
