//! The token service over HTTP: IMDS, App Service and v2 token endpoints, OpenID configuration, JWKS.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::config::{TokenOutage, AUDIENCE, SCOPE};
use super::issuer::{Issuer, TokenStats, TokenVersion};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

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
            managed(i, Msi::Imds, query, &parts.headers)
        }));
    }
    if get && path == "/msi/token" {
        return Some(token(issuer, |i| {
            managed(i, Msi::AppService, query, &parts.headers)
        }));
    }
    let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
    let known_tenant = tenant == issuer.config().tenant;
    let answer = match (&parts.method, rest) {
        (&Method::POST, "oauth2/v2.0/token") if known_tenant => {
            token(issuer, |i| client_credentials(i, body))
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

fn ok(body: Value) -> Answer {
    Answer::Json(StatusCode::OK, body)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Answer {
    Answer::Json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// Entra's error body: the AADSTS code leads the description and is repeated in `error_codes`.
fn aad_error(status: StatusCode, error: &str, code: u32, message: &str) -> Answer {
    Answer::Json(
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message}"),
            "error_codes": [code],
        }),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msi {
    /// Azure VMs and AKS nodes: `169.254.169.254`, header `Metadata: true`.
    Imds,
    /// App Service, Functions, Container Apps: `IDENTITY_ENDPOINT`, header `X-IDENTITY-HEADER`.
    AppService,
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn managed(issuer: &Issuer, kind: Msi, query: &str, headers: &HeaderMap) -> Result<Value, Answer> {
    let cfg = issuer.config();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bad =
        |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    match kind {
        Msi::Imds if header("metadata") != Some("true") => {
            return Err(bad("Required metadata header not specified"))
        }
        Msi::AppService if header("x-identity-header") != Some(cfg.identity_header.as_str()) => {
            return Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER",
            ))
        }
        _ => {}
    }
    let q = form(query.as_bytes());
    if param(&q, "api-version").is_none_or(|v| v.is_empty()) {
        return Err(bad("Required query variable 'api-version' is missing"));
    }
    let Some(resource) = param(&q, "resource") else {
        return Err(bad("Required query variable 'resource' is missing"));
    };
    if resource.trim_end_matches('/') != AUDIENCE {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant."),
        ));
    }
    let other_identity = |name: &str, ours: &str| param(&q, name).is_some_and(|v| v != ours);
    if other_identity("client_id", &cfg.client_id) || other_identity("object_id", &cfg.object_id) {
        return Err(bad("Identity not found"));
    }
    let (token, expires_on) = issued(issuer, TokenVersion::V1)?;
    issuer.count(|s: &mut TokenStats| match kind {
        Msi::Imds => s.imds += 1,
        Msi::AppService => s.app_service += 1,
    });
    let expires_in = (expires_on - issuer.now()).to_string();
    Ok(json!({
        "access_token": token,
        "client_id": cfg.client_id,
        "expires_in": expires_in,
        "expires_on": expires_on.to_string(),
        "ext_expires_in": expires_in,
        "not_before": issuer.now().to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
}

fn issued(issuer: &Issuer, version: TokenVersion) -> Result<(String, i64), Answer> {
    issuer.issue(version).map_err(|e| {
        log::warn!("sim token service: cannot sign: {e}");
        oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        )
    })
}

fn client_credentials(issuer: &Issuer, body: &[u8]) -> Result<Value, Answer> {
    let cfg = issuer.config();
    let f = form(body);
    let field = |name: &str| param(&f, name);
    let bad = StatusCode::BAD_REQUEST;
    let unauthorized = StatusCode::UNAUTHORIZED;
    if field("grant_type").as_deref() != Some("client_credentials") {
        return Err(aad_error(
            bad,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type (only client_credentials is simulated).",
        ));
    }
    let client_id = field("client_id").unwrap_or_default();
    if client_id != cfg.client_id {
        return Err(aad_error(
            bad,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                cfg.tenant
            ),
        ));
    }
    let scope = field("scope").unwrap_or_default();
    if scope != SCOPE {
        return Err(match scope.strip_suffix("/.default") {
            Some(resource) => aad_error(
                bad,
                "invalid_resource",
                500011,
                &format!("The resource principal named {resource} was not found in the tenant."),
            ),
            None => aad_error(
                bad,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows \
                 must have a scope value with /.default suffixed to the resource identifier."
                ),
            ),
        });
    }
    let federated = match (field("client_assertion_type"), field("client_assertion"), field("client_secret")) {
        (Some(kind), Some(assertion), _) => {
            if kind != JWT_BEARER {
                return Err(aad_error(bad, "invalid_request", 50027,
                    "client_assertion_type is not urn:ietf:params:oauth:client-assertion-type:jwt-bearer."));
            }
            if assertion != cfg.federated_assertion {
                return Err(aad_error(unauthorized, "invalid_client", 70021,
                    "No matching federated identity record found for presented assertion."));
            }
            true
        }
        (_, _, Some(secret)) => {
            if secret != cfg.client_secret {
                return Err(aad_error(unauthorized, "invalid_client", 7000215, &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request \
                     is the client secret value, not the client secret ID, for a secret added to \
                     app '{}'.", cfg.client_id
                )));
            }
            false
        }
        _ => return Err(aad_error(bad, "invalid_client", 7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")),
    };
    let (token, expires_on) = issued(issuer, TokenVersion::V2)?;
    issuer.count(|s| {
        if federated {
            s.client_assertion += 1;
        } else {
            s.client_secret += 1;
        }
    });
    let expires_in = expires_on - issuer.now();
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
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
