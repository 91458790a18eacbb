//! The token service over HTTP: IMDS, App Service and v2 token endpoints, OpenID configuration, JWKS.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::client_credentials;
use super::config::TokenOutage;
use super::issuer::{Issued, Issuer, TokenVersion};
use super::managed::{self, Msi};

/// What the handler sends back for an identity path.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    Json(StatusCode, Value),
    /// Close the connection unanswered (`TokenOutage::Drop`).
    Drop,
}

/// A request to the token service, or `None` when the path is not one of its paths (then it is
/// an Azure OpenAI request).
pub(crate) fn serve(issuer: &Issuer, parts: &http::request::Parts, body: &[u8]) -> Option<Answer> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let get = parts.method == Method::GET;
    if get && path == "/metadata/identity/oauth2/token" {
        return Some(token(issuer, |i| {
            managed::token(i, Msi::Imds, query, &parts.headers)
        }));
    }
    if get && path == "/msi/token" {
        return Some(token(issuer, |i| {
            managed::token(i, Msi::AppService, query, &parts.headers)
        }));
    }
    let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
    let known_tenant = tenant == issuer.config().tenant;
    let answer = match (&parts.method, rest) {
        (&Method::POST, "oauth2/v2.0/token") if known_tenant => {
            token(issuer, |i| client_credentials::token(i, body))
        }
        (&Method::GET, "v2.0/.well-known/openid-configuration") if known_tenant => {
            issuer.count(|s| s.openid_fetches += 1);
            ok(openid_configuration(issuer, &parts.headers))
        }
        (&Method::GET, "discovery/v2.0/keys") if known_tenant => {
            issuer.count(|s| s.jwks_fetches += 1);
            ok(issuer.jwks())
        }
        (
            &Method::POST | &Method::GET,
            "oauth2/v2.0/token" | "v2.0/.well-known/openid-configuration" | "discovery/v2.0/keys",
        ) => aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        ),
        _ => return None,
    };
    Some(answer)
}

/// The outage switch and the counters, around one token endpoint.
fn token(issuer: &Issuer, issue: impl FnOnce(&Issuer) -> Result<Value, Answer>) -> Answer {
    match issuer.outage() {
        TokenOutage::Up => {}
        TokenOutage::Drop => {
            issuer.count(|s| s.unavailable += 1);
            return Answer::Drop;
        }
        TokenOutage::Status(code) => {
            issuer.count(|s| s.unavailable += 1);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return oauth_error(
                status,
                "temporarily_unavailable",
                "The token service is unavailable (simulated outage).",
            );
        }
    }
    match issue(issuer) {
        Ok(body) => ok(body),
        Err(answer) => {
            issuer.count(|s| s.rejected += 1);
            answer
        }
    }
}

pub(super) fn ok(body: Value) -> Answer {
    Answer::Json(StatusCode::OK, body)
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Answer {
    Answer::Json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// Entra's error body: the AADSTS code leads the description and is repeated in `error_codes`.
pub(super) fn aad_error(status: StatusCode, error: &str, code: u32, message: &str) -> Answer {
    Answer::Json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message}"),
            "error_codes": [code],
        }),
    )
}

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

pub(super) fn issue(issuer: &Issuer, version: TokenVersion) -> Result<Issued, Answer> {
    issuer.issue(version).map_err(|e| {
        log::warn!("sim token service: cannot sign: {e}");
        oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        )
    })
}

/// Addresses are built from the request's `Host`, so they point back at this simulator.
fn openid_configuration(issuer: &Issuer, headers: &HeaderMap) -> Value {
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}/{}", issuer.config().tenant);
    json!({
        "issuer": issuer.issuer_v2(),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "NA",
    })
}

/// `/_sim/entra/...`: the issuer's control API over HTTP, for the CLI simulator.
pub(crate) fn control(issuer: &Issuer, method: &Method, path: &str) -> Option<Answer> {
    let answer = match (method, path) {
        (&Method::GET, "/_sim/entra/stats") => ok(json!(issuer.stats())),
        (&Method::POST, "/_sim/entra/rotate") => match issuer.rotate_key() {
            Ok(kid) => ok(json!({"kid": kid, "published": issuer.published_kids()})),
            Err(e) => oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &e.to_string(),
            ),
        },
        (&Method::POST, "/_sim/entra/retire") => {
            issuer.retire_old_keys();
            ok(json!({"kid": issuer.current_kid(), "published": issuer.published_kids()}))
        }
        _ => return None,
    };
    Some(answer)
}
