//! The parts of the file about tenants who sign in with Entra ID tokens: the issuer's keys,
//! the rules a token must meet, and which identities are which tenant.

use super::{expand_value, Problems};
use crate::config::file::{EntraIdFile, TenantFile};
use crate::config::runtime::Config;
use crate::identity::downstream::TokenTenants;
use crate::identity::jwt::Rules;
use crate::identity::signing_keys::{KeysSource, SigningKeys};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The audience of the tokens Azure OpenAI clients already get (`azure_ad_token_provider`).
const COGNITIVE_SERVICES: &str = "https://cognitiveservices.azure.com";

pub(super) fn build_entra_id(
    raw: Option<EntraIdFile>,
    tenants: &[TenantFile],
    lookup: &dyn Fn(&str) -> Option<String>,
    previous: Option<&Config>,
    problems: &mut Problems,
) -> Option<TokenTenants> {
    let mut by_object = HashMap::new();
    let mut by_app = HashMap::new();
    for (i, t) in tenants.iter().enumerate() {
        let Some(e) = &t.entra else { continue };
        let at = format!("tenants[{i}].entra");
        if raw.is_none() {
            problems.push(
                &at,
                "needs the top-level `entra_id` section, which says how tokens are validated",
            );
        }
        if e.app_ids.is_empty() && e.object_ids.is_empty() {
            problems.push(&at, "lists no `app_ids` and no `object_ids`");
        }
        for (field, ids, map) in [
            ("object_ids", &e.object_ids, &mut by_object),
            ("app_ids", &e.app_ids, &mut by_app),
        ] {
            for (k, id) in ids.iter().enumerate() {
                let id = id.trim();
                if id.is_empty() {
                    problems.push(format!("{at}.{field}[{k}]"), "is empty");
                } else if let Some(other) = map.insert(id.to_ascii_lowercase(), i) {
                    if other != i {
                        problems.push(
                            format!("{at}.{field}[{k}]"),
                            format!("`{id}` already belongs to `{}`", tenants[other].name),
                        );
                    }
                }
            }
        }
    }
    let mut raw = raw?;
    // The tenant id is often the one in the environment (AZURE_TENANT_ID).
    let mut expand =
        |field: &str, v: String| expand_value(field, &v, lookup, problems).unwrap_or(v);
    raw.openid_config = raw
        .openid_config
        .map(|v| expand("entra_id.openid_config", v));
    raw.jwks_uri = raw.jwks_uri.map(|v| expand("entra_id.jwks_uri", v));
    raw.issuers = std::mem::take(&mut raw.issuers)
        .into_iter()
        .enumerate()
        .map(|(i, v)| expand(&format!("entra_id.issuers[{i}]"), v))
        .collect();
    let source = match (raw.openid_config, raw.jwks_uri) {
        (Some(u), None) => KeysSource::OpenIdConfig(u),
        (None, Some(u)) => KeysSource::Jwks(u),
        _ => {
            problems.push(
                "entra_id",
                "give exactly one of `openid_config` and `jwks_uri`",
            );
            return None;
        }
    };
    let is_url = |u: &str| {
        u.parse::<http::Uri>()
            .ok()
            .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
    };
    if !is_url(source.url()) {
        let field = match source {
            KeysSource::OpenIdConfig(_) => "entra_id.openid_config",
            KeysSource::Jwks(_) => "entra_id.jwks_uri",
        };
        problems.push(field, "must be an http:// or https:// URL");
    } else if source.url().starts_with("http://") {
        problems.warn(
            "entra_id",
            "signing keys fetched over plain http:// can be replaced in transit",
        );
    }
    if raw.issuers.is_empty() || raw.issuers.iter().any(|i| i.trim().is_empty()) {
        problems.push(
            "entra_id.issuers",
            "list the accepted `iss` values, e.g. https://sts.windows.net/<tenant id>/",
        );
    }
    let audiences = if raw.audiences.is_empty() {
        // A token asked for with the resource's trailing slash (IMDS's usual spelling)
        // carries it in `aud`.
        vec![
            COGNITIVE_SERVICES.to_string(),
            format!("{COGNITIVE_SERVICES}/"),
        ]
    } else {
        raw.audiences
    };
    let skew = raw.clock_skew_seconds.unwrap_or(60);
    if skew > 600 {
        problems.push("entra_id.clock_skew_seconds", "must be at most 600");
    }
    let refresh = raw.refresh_minutes.unwrap_or(60);
    if !(1..=24 * 60).contains(&refresh) {
        problems.push("entra_id.refresh_minutes", "must be between 1 and 1440");
    }
    if !tenants.iter().any(|t| t.entra.is_some()) {
        problems.warn(
            "entra_id",
            "no tenant has an `entra` identity: every token is refused",
        );
    }
    // The keys outlive a reload that keeps their source: no refetch, no window without keys.
    let keys = previous
        .and_then(|c| c.entra_id.as_ref())
        .map(|t| t.keys.clone())
        .filter(|k| k.source() == &source)
        .unwrap_or_else(|| Arc::new(SigningKeys::new(source)));
    Some(TokenTenants::new(
        Rules {
            issuers: raw.issuers,
            audiences,
            clock_skew: Duration::from_secs(skew),
        },
        keys,
        Duration::from_secs(refresh * 60),
        Duration::from_secs(raw.min_refetch_seconds.unwrap_or(300)),
        by_object,
        by_app,
    ))
}
