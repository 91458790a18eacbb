//! The managed identity token endpoints: Azure IMDS, and App Service / Container Apps.

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::config::AUDIENCE;
use super::endpoints::{aad_error, form, issue, oauth_error, param, Answer};
use super::issuer::{Issuer, TokenStats, TokenVersion};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Msi {
    /// Azure VMs and AKS nodes: `169.254.169.254`, header `Metadata: true`.
    Imds,
    /// App Service, Functions, Container Apps: `IDENTITY_ENDPOINT`, header `X-IDENTITY-HEADER`.
    AppService,
}

pub(super) fn token(
    issuer: &Issuer,
    kind: Msi,
    query: &str,
    headers: &HeaderMap,
) -> Result<Value, Answer> {
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
    let issued = issue(issuer, TokenVersion::V1)?;
    issuer.count(|s: &mut TokenStats| match kind {
        Msi::Imds => s.imds += 1,
        Msi::AppService => s.app_service += 1,
    });
    let expires_in = issued.expires_in().to_string();
    Ok(json!({
        "access_token": issued.token,
        "client_id": cfg.client_id,
        "expires_in": expires_in,
        "expires_on": issued.expires_on.to_string(),
        "ext_expires_in": expires_in,
        "not_before": issued.issued_at.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
}
