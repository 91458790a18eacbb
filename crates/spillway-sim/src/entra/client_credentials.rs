//! The Entra v2 token endpoint's client credentials grant: by secret, or by federated assertion.

use http::StatusCode;
use serde_json::{json, Value};

use super::config::{EntraConfig, SCOPE};
use super::endpoints::{aad_error, form, issue, Answer};
use super::issuer::{Issuer, TokenVersion};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    Secret,
    /// What AKS workload identity sends: its projected service account token.
    FederatedAssertion,
}

pub(super) fn token(issuer: &Issuer, body: &[u8]) -> Result<Value, Answer> {
    let cfg = issuer.config();
    let fields = form(body);
    let field = |name: &str| super::endpoints::param(&fields, name);
    let bad = StatusCode::BAD_REQUEST;
    if field("grant_type") != Some("client_credentials") {
        return Err(aad_error(
            bad,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type (only client_credentials is simulated).",
        ));
    }
    let client_id = field("client_id").unwrap_or_default();
    if client_id != cfg.client_id {
        let message = format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'.",
            cfg.tenant
        );
        return Err(aad_error(bad, "unauthorized_client", 700016, &message));
    }
    check_scope(field("scope").unwrap_or_default())?;
    let credential = credential(
        cfg,
        field("client_assertion_type"),
        field("client_assertion"),
        field("client_secret"),
    )?;
    let issued = issue(issuer, TokenVersion::V2)?;
    issuer.count(|s| match credential {
        Credential::Secret => s.client_secret += 1,
        Credential::FederatedAssertion => s.client_assertion += 1,
    });
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": issued.expires_in(),
        "ext_expires_in": issued.expires_in(),
        "access_token": issued.token,
    }))
}

fn check_scope(scope: &str) -> Result<(), Answer> {
    if scope == SCOPE {
        return Ok(());
    }
    let bad = StatusCode::BAD_REQUEST;
    Err(match scope.strip_suffix("/.default") {
        Some(resource) => {
            let message =
                format!("The resource principal named {resource} was not found in the tenant.");
            aad_error(bad, "invalid_resource", 500011, &message)
        }
        None => {
            let message = format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier."
            );
            aad_error(bad, "invalid_scope", 1002012, &message)
        }
    })
}

/// An assertion wins over a secret when both are sent, as only one may be.
fn credential(
    cfg: &EntraConfig,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
    secret: Option<&str>,
) -> Result<Credential, Answer> {
    let unauthorized = StatusCode::UNAUTHORIZED;
    match (assertion_type, assertion, secret) {
        (Some(kind), Some(_), _) if kind != JWT_BEARER => Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
        )),
        (Some(_), Some(assertion), _) if assertion != cfg.federated_assertion => Err(aad_error(
            unauthorized,
            "invalid_client",
            70021,
            "No matching federated identity record found for presented assertion.",
        )),
        (Some(_), Some(_), _) => Ok(Credential::FederatedAssertion),
        (_, _, Some(secret)) if secret != cfg.client_secret => {
            let message = format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{}'.",
                cfg.client_id
            );
            Err(aad_error(unauthorized, "invalid_client", 7000215, &message))
        }
        (_, _, Some(_)) => Ok(Credential::Secret),
        _ => Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        )),
    }
}
