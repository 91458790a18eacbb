//! Where Spillway's upstream tokens come from: the four ways an Azure workload gets one.

use super::answer;
use super::http::{self, FetchError, Request};
use super::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::connectors::http::Connector;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Azure IMDS's token endpoint, the same on every VM.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Entra's public-cloud authority (sovereign clouds set `AZURE_AUTHORITY_HOST`).
pub const AUTHORITY: &str = "https://login.microsoftonline.com";

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A way to get tokens. `Debug` shows no secret: [`Secret`] hides itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Azure Instance Metadata Service (VMs, VMSS, AKS node identity): GET
    /// {endpoint}?api-version=2018-02-01&resource={resource}[&client_id={id}] with header
    /// `Metadata: true`. The usual endpoint is [`IMDS_ENDPOINT`].
    Imds {
        endpoint: String,
        client_id: Option<String>,
    },
    /// App Service / Container Apps / Functions: GET
    /// {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource={resource}[&client_id={id}] with
    /// header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`.
    AppService {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
    /// Service principal with a client secret: POST {authority}/{tenant}/oauth2/v2.0/token,
    /// form: grant_type=client_credentials, client_id, client_secret, scope.
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    /// AKS workload identity: the same endpoint, with the kubelet's projected service account
    /// token from `token_file` as a federated `client_assertion`.
    WorkloadIdentity {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
}

/// A token and how long it is valid from when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: Secret,
    pub lifetime: Duration,
}

/// Why no token was obtained. Messages carry the endpoint's host, its status and OAuth
/// `error` / `error_description`; never a secret, assertion, identity header or token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token endpoint: {0}")]
    Fetch(#[from] FetchError),
    #[error("token endpoint {host} answered {status}: {detail}")]
    Rejected {
        host: String,
        status: u16,
        detail: String,
    },
    #[error("token endpoint {host} answered without a usable token: {what}")]
    Malformed { host: String, what: &'static str },
    #[error("cannot read the federated token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
}

impl TokenSource {
    /// Gets a token for `scope` (`https://cognitiveservices.azure.com/.default`); the managed
    /// identity shapes ask for the scope's resource (`https://cognitiveservices.azure.com`).
    pub async fn fetch(
        &self,
        connector: &Connector,
        scope: &str,
        timeout: Duration,
    ) -> Result<Token, TokenError> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let form_type = ("Content-Type", "application/x-www-form-urlencoded");
        // What the answer's error text is scrubbed of, should an endpoint ever echo it.
        let (url, body, secret) = match self {
            TokenSource::Imds {
                endpoint,
                client_id,
            } => (
                managed_url(endpoint, "2018-02-01", resource, client_id.as_deref()),
                None,
                None,
            ),
            TokenSource::AppService {
                endpoint,
                client_id,
                header,
            } => (
                managed_url(endpoint, "2019-08-01", resource, client_id.as_deref()),
                None,
                Some(header.expose().to_string()),
            ),
            TokenSource::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                let form = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret.expose()),
                    ("scope", scope),
                ]);
                let secret = Some(secret.expose().to_string());
                (token_url(authority, tenant), Some(form), secret)
            }
            TokenSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = read_assertion(token_file).await?;
                let form = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", scope),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ]);
                (token_url(authority, tenant), Some(form), Some(assertion))
            }
        };
        let headers: &[(&str, &str)] = match self {
            TokenSource::Imds { .. } => &[("Metadata", "true")],
            TokenSource::AppService { header, .. } => &[("X-IDENTITY-HEADER", header.expose())],
            _ => &[form_type],
        };
        let req = Request {
            method: if body.is_some() { "POST" } else { "GET" },
            url: &url,
            headers,
            body: body.as_deref().map(str::as_bytes),
        };
        let resp = http::send(connector, req, timeout).await?;
        answer::token(&host_of(&url), &resp, secret.as_deref())
    }

    /// For metrics, logs and /status: which identity, never a secret.
    pub fn label(&self) -> String {
        let with_id = |kind: &str, id: &Option<String>| match id {
            Some(id) => format!("{kind}:{id}"),
            None => kind.to_string(),
        };
        match self {
            TokenSource::Imds { client_id, .. } => with_id("managed_identity", client_id),
            TokenSource::AppService { client_id, .. } => with_id("app_service_identity", client_id),
            TokenSource::ClientSecret {
                tenant, client_id, ..
            } => format!("client_secret:{tenant}/{client_id}"),
            TokenSource::WorkloadIdentity {
                tenant, client_id, ..
            } => format!("workload_identity:{tenant}/{client_id}"),
        }
    }

    /// What makes two sources the same credential: every field, a secret as its SHA-256.
    /// An unsalted digest of a guessable secret can be brute-forced, so this is a cache key
    /// to compare, not something to log (use [`TokenSource::label`]).
    pub fn identity(&self) -> String {
        let digest = |s: &Secret| URL_SAFE_NO_PAD.encode(Sha256::digest(s.expose().as_bytes()));
        // A JSON array, so no field's content can make two sources look alike.
        let fields = match self {
            TokenSource::Imds {
                endpoint,
                client_id,
            } => serde_json::json!(["imds", endpoint, client_id]),
            TokenSource::AppService {
                endpoint,
                header,
                client_id,
            } => serde_json::json!(["app_service", endpoint, digest(header), client_id]),
            TokenSource::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => serde_json::json!([
                "client_secret",
                authority.trim_end_matches('/'),
                tenant,
                client_id,
                digest(secret)
            ]),
            TokenSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => serde_json::json!([
                "workload_identity",
                authority.trim_end_matches('/'),
                tenant,
                client_id,
                token_file.to_string_lossy()
            ]),
        };
        fields.to_string()
    }
}

/// The managed identity query, appended to an endpoint that may already have one.
fn managed_url(endpoint: &str, version: &str, resource: &str, client_id: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("api-version", version);
    query.append_pair("resource", resource);
    if let Some(id) = client_id {
        query.append_pair("client_id", id);
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", query.finish())
}

/// `AZURE_AUTHORITY_HOST` ends with `/`, a hand-written authority often does not.
fn token_url(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim_end_matches('/'),
        tenant.trim_matches('/')
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// For error messages only; the whole URL could carry a query someone considers private.
fn host_of(url: &str) -> String {
    url.parse::<::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| "(invalid URL)".into())
}

/// Re-read on every exchange: the kubelet rotates the projected token (hourly by default)
/// and an old one is refused. Read off the runtime: the crate's tokio has no `fs` feature.
async fn read_assertion(path: &Path) -> Result<String, TokenError> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned)).await;
    let failed = |reason: String| TokenError::TokenFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = match read {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(e) => return Err(failed(format!("reader task failed: {e}"))),
    };
    let assertion = text.trim();
    if assertion.is_empty() {
        return Err(failed("the file is empty".into()));
    }
    Ok(assertion.to_string())
}

#[cfg(test)]
mod tests;
