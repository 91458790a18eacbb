//! The parts of the file about credentials: how Spillway authenticates to each deployment
//! (a key, or an Entra ID identity whose token all deployments using it share).

use super::{expand_secret, expand_value, Problems};
use crate::config::file::AuthFile;
use crate::config::runtime::*;
use crate::identity::credential::Credential;
use crate::identity::source::{TokenSource, AUTHORITY as PUBLIC_CLOUD, IMDS_ENDPOINT};
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::Arc;

/// What Azure OpenAI's tokens are for; the default of every Entra ID source.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// A deployment's auth as validated, before credentials are shared.
#[derive(Debug, Clone)]
pub(super) enum AuthSpec {
    ApiKey(HeaderValue),
    Entra(TokenSource, String),
}

/// Validates one `auth` block (or a deployment's `api_key`, as `ApiKey`) at `at`.
pub(super) fn build_auth(
    at: &str,
    raw: AuthFile,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<AuthSpec> {
    let field = |name: &str| format!("{at}.{name}");
    // A field, else an environment variable's value, else a default; `${VAR}` expanded.
    let value = |name: &str,
                 given: Option<String>,
                 var: Option<&str>,
                 default: Option<&str>,
                 problems: &mut Problems|
     -> Option<String> {
        let raw = given
            .or_else(|| var.and_then(lookup))
            .or_else(|| default.map(str::to_string));
        let Some(raw) = raw else {
            let why = match var {
                Some(v) => format!("is required (or the environment variable {v})"),
                None => "is required".to_string(),
            };
            problems.push(field(name), why);
            return None;
        };
        let v = expand_value(&field(name), &raw, lookup, problems)?;
        if v.trim().is_empty() {
            problems.push(field(name), "is empty");
            return None;
        }
        Some(v.trim().to_string())
    };
    match raw {
        AuthFile::ApiKey { key } => api_key(&field("key"), &key, lookup, problems),
        AuthFile::ManagedIdentity {
            client_id,
            endpoint,
            identity_header,
            scope,
        } => {
            let scope = scope_of(&field("scope"), scope, problems)?;
            let client_id =
                client_id.and_then(|c| value("client_id", Some(c), None, None, problems));
            // App Service and Container Apps say where their endpoint is, and its secret.
            let from_env = endpoint.is_none() && lookup("IDENTITY_ENDPOINT").is_some();
            let header =
                identity_header.or_else(|| from_env.then(|| lookup("IDENTITY_HEADER")).flatten());
            let endpoint = value(
                "endpoint",
                endpoint,
                Some("IDENTITY_ENDPOINT"),
                Some(IMDS_ENDPOINT),
                problems,
            )?;
            check_url(&field("endpoint"), &endpoint, problems)?;
            let source = match header {
                Some(h) => {
                    let header = expand_secret(&field("identity_header"), &h, lookup, problems)?;
                    TokenSource::AppService {
                        endpoint,
                        header,
                        client_id,
                    }
                }
                None if from_env => {
                    problems.push(
                        field("identity_header"),
                        "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not",
                    );
                    return None;
                }
                None => TokenSource::Imds {
                    endpoint,
                    client_id,
                },
            };
            Some(AuthSpec::Entra(source, scope))
        }
        AuthFile::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
            authority_host,
            scope,
        } => {
            let scope = scope_of(&field("scope"), scope, problems);
            let tenant = value(
                "tenant_id",
                tenant_id,
                Some("AZURE_TENANT_ID"),
                None,
                problems,
            );
            let client = value(
                "client_id",
                client_id,
                Some("AZURE_CLIENT_ID"),
                None,
                problems,
            );
            let file = value(
                "token_file",
                token_file,
                Some("AZURE_FEDERATED_TOKEN_FILE"),
                None,
                problems,
            );
            let authority = value(
                "authority_host",
                authority_host,
                Some("AZURE_AUTHORITY_HOST"),
                Some(PUBLIC_CLOUD),
                problems,
            );
            let (scope, tenant, client_id, file, authority) =
                (scope?, tenant?, client?, file?, authority?);
            check_tenant(&field("tenant_id"), &tenant, problems)?;
            check_url(&field("authority_host"), &authority, problems)?;
            if !std::path::Path::new(&file).is_file() {
                // Not an error: the kubelet may project it after a reload is read, and it is
                // read again for every exchange; the credential says so if it stays absent.
                problems.warn(field("token_file"), format!("`{file}` does not exist yet"));
            }
            Some(AuthSpec::Entra(
                TokenSource::WorkloadIdentity {
                    authority,
                    tenant,
                    client_id,
                    token_file: file.into(),
                },
                scope,
            ))
        }
        AuthFile::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
            authority_host,
            scope,
        } => {
            let scope = scope_of(&field("scope"), scope, problems);
            let tenant = value("tenant_id", Some(tenant_id), None, None, problems);
            let client = value("client_id", Some(client_id), None, None, problems);
            let secret = expand_secret(&field("client_secret"), &client_secret, lookup, problems);
            let authority = value(
                "authority_host",
                authority_host,
                None,
                Some(PUBLIC_CLOUD),
                problems,
            );
            let (scope, tenant, client_id, secret, authority) =
                (scope?, tenant?, client?, secret?, authority?);
            check_tenant(&field("tenant_id"), &tenant, problems)?;
            check_url(&field("authority_host"), &authority, problems)?;
            Some(AuthSpec::Entra(
                TokenSource::ClientSecret {
                    authority,
                    tenant,
                    client_id,
                    secret,
                },
                scope,
            ))
        }
    }
}

/// A deployment's `api_key` (or `auth: {type: api_key}`), as the header value it is sent as.
pub(super) fn api_key(
    field: &str,
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<AuthSpec> {
    let key = expand_secret(field, raw, lookup, problems)?;
    match HeaderValue::from_str(key.expose()) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some(AuthSpec::ApiKey(v))
        }
        Err(_) => {
            problems.push(
                field,
                "must be printable ASCII: it is sent as an HTTP header value",
            );
            None
        }
    }
}

fn scope_of(field: &str, scope: Option<String>, problems: &mut Problems) -> Option<String> {
    let scope = scope.unwrap_or_else(|| COGNITIVE_SERVICES_SCOPE.to_string());
    if !scope.starts_with("https://") && !scope.starts_with("api://") {
        problems.push(
            field,
            "must be a resource URI such as https://cognitiveservices.azure.com/.default",
        );
        return None;
    }
    Some(scope)
}

/// A tenant id goes into the token endpoint's path: a GUID or a domain name, nothing else.
fn check_tenant(field: &str, tenant: &str, problems: &mut Problems) -> Option<()> {
    let plain = tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if !plain {
        problems.push(field, "must be a tenant id (a GUID) or a domain name");
        return None;
    }
    Some(())
}

fn check_url(field: &str, url: &str, problems: &mut Problems) -> Option<()> {
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !ok {
        problems.push(field, "must be an http:// or https:// URL");
        return None;
    }
    Some(())
}

/// The credentials of one config: one per distinct identity, the previous config's when it
/// had the same, so that a reload keeps the cached token and its refresh schedule.
pub(super) struct Credentials {
    old: HashMap<String, Arc<Credential>>,
    new: HashMap<String, Arc<Credential>>,
    order: Vec<Arc<Credential>>,
}

impl Credentials {
    pub(super) fn new(previous: Option<&Config>) -> Self {
        let old = previous
            .map(|c| {
                c.credentials
                    .iter()
                    .map(|c| (c.identity().to_string(), c.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Credentials {
            old,
            new: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// The runtime auth for `spec`, sharing a credential with every deployment of the same
    /// identity.
    pub(super) fn resolve(&mut self, spec: AuthSpec) -> UpstreamAuth {
        let (source, scope) = match spec {
            AuthSpec::ApiKey(v) => return UpstreamAuth::ApiKey(v),
            AuthSpec::Entra(source, scope) => (source, scope),
        };
        let identity = Credential::identity_of(&source, &scope);
        if let Some(c) = self.new.get(&identity) {
            return UpstreamAuth::Entra(c.clone());
        }
        let c = self
            .old
            .remove(&identity)
            .unwrap_or_else(|| Arc::new(Credential::new(source, scope)));
        self.new.insert(identity, c.clone());
        self.order.push(c.clone());
        UpstreamAuth::Entra(c)
    }

    pub(super) fn into_vec(self) -> Vec<Arc<Credential>> {
        self.order
    }
}
