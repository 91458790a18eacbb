//! Entra ID in the file: upstream `auth` with each source and its environment defaults,
//! credentials shared by identity and kept across reloads, and tenants' token settings.

use super::*;
use crate::identity::source::TokenSource;
use std::sync::Arc;

/// GOOD with the PTU deployment's `api_key` line replaced by `auth`.
fn with_auth(auth: &str) -> String {
    GOOD.replace(
        "        api_key: \"${EASTUS_KEY}\"\n",
        &format!("        auth: {auth}\n"),
    )
}

fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .or_else(|| env(name))
    }
}

fn source(c: &Config) -> &TokenSource {
    match &c.pools[0].deployments[0].auth {
        UpstreamAuth::Entra(c) => c.source(),
        UpstreamAuth::ApiKey(_) => panic!("an Entra ID deployment"),
    }
}

#[test]
fn managed_identity_is_imds_unless_app_service_says_otherwise() {
    let text = with_auth("{type: managed_identity}");
    let c = parse_str(&text).unwrap().config;
    assert!(
        matches!(source(&c), TokenSource::Imds { endpoint, client_id: None }
        if endpoint == "http://169.254.169.254/metadata/identity/oauth2/token")
    );
    assert_eq!(c.credentials.len(), 1);

    let app = env_with(&[
        ("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"),
        ("IDENTITY_HEADER", "hdr-secret"),
    ]);
    let c = parse(&text, Path::new("t.yaml"), &app, None)
        .unwrap()
        .config;
    assert!(
        matches!(source(&c), TokenSource::AppService { endpoint, .. }
        if endpoint == "http://localhost:42356/msi/token")
    );
    assert!(!format!("{c:?}").contains("hdr-secret"));

    let half = env_with(&[("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token")]);
    let e = parse(&text, Path::new("t.yaml"), &half, None).unwrap_err();
    assert!(e.to_string().contains("IDENTITY_HEADER is not"), "{e}");
}

#[test]
fn workload_identity_reads_the_webhook_environment() {
    let text = with_auth("{type: workload_identity}");
    let errs = problems(&text);
    for field in ["tenant_id", "client_id", "token_file"] {
        assert!(
            errs.iter()
                .any(|(f, r)| f.ends_with(&format!("auth.{field}")) && r.contains("AZURE_")),
            "{field}: {errs:?}"
        );
    }
    let aks = env_with(&[
        ("AZURE_TENANT_ID", "5e100000-0000-4000-8000-00000000e1d0"),
        ("AZURE_CLIENT_ID", "c1e47000-0000-4000-8000-000000000001"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ]);
    let loaded = parse(&text, Path::new("t.yaml"), &aks, None).unwrap();
    assert!(
        matches!(source(&loaded.config), TokenSource::WorkloadIdentity { tenant, .. }
        if tenant == "5e100000-0000-4000-8000-00000000e1d0")
    );
    // The projected file is not there on this machine: a warning, not an error.
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.field.ends_with("token_file")));
}

#[test]
fn a_pool_auth_is_every_deployments_default_and_one_identity_is_one_credential() {
    let text = GOOD
        .replace("        api_key: k2\n", "")
        .replace(
            "  - name: standard\n    kind: standard\n",
            "  - name: standard\n    kind: standard\n    auth: {type: client_secret, tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: \"${EASTUS_KEY}\"}\n",
        )
        .replace(
            "        api_key: \"${EASTUS_KEY}\"\n",
            "        auth: {type: client_secret, tenant_id: contoso.onmicrosoft.com, client_id: app, client_secret: \"${EASTUS_KEY}\"}\n",
        );
    let c = parse_str(&text).unwrap().config;
    assert_eq!(c.credentials.len(), 1, "same identity, one token");
    let d = &c.pools[1].deployments[0];
    assert!(matches!(&d.auth, UpstreamAuth::Entra(x) if Arc::ptr_eq(x, &c.credentials[0])));
    assert!(!format!("{c:?}").contains("eastus-secret"));
    // A reload keeps the credential (its token and schedule) when the identity is the same.
    let again = parse(&text, Path::new("t.yaml"), &env, Some(&c))
        .unwrap()
        .config;
    assert!(Arc::ptr_eq(&again.credentials[0], &c.credentials[0]));
}

#[test]
fn bad_auth_is_rejected_with_the_field_and_no_secret() {
    let cases = [
        (with_auth("{type: client_secret, tenant_id: 'a/b', client_id: x, client_secret: s3cr3t-value}"), "auth.tenant_id"),
        (with_auth("{type: client_secret, tenant_id: t, client_id: x, client_secret: s3cr3t-value, authority_host: 'ftp://x'}"), "auth.authority_host"),
        (with_auth("{type: managed_identity, endpoint: 'not a url'}"), "auth.endpoint"),
        (with_auth("{type: managed_identity, scope: cognitiveservices}"), "auth.scope"),
        (with_auth("{type: kerberos}"), "line"),
        (with_auth("{type: managed_identity, client_secret: s3cr3t-value}"), "line"),
        (GOOD.replace("        api_key: k2\n", ""), "deployments[0].api_key"),
        (GOOD.replace("        api_key: k2\n", "        api_key: k2\n        auth: {type: managed_identity}\n"), "deployments[0].auth"),
    ];
    for (text, field) in cases {
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
        assert!(!e.contains("s3cr3t-value"), "{e}");
    }
}

const TOKENS: &str = "entra_id:\n  openid_config: https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration\n  issuers: [\"https://sts.windows.net/t/\"]\n";

#[test]
fn tenants_may_sign_in_with_tokens() {
    let text = GOOD.replace(
        "tenants:\n",
        "tenants:\n  - name: agents\n    entra: {object_ids: [\"0B1EC700-0000-4000-8000-000000000002\"], app_ids: [app-1]}\n",
    ) + TOKENS;
    let c = parse_str(&text).unwrap().config;
    let t = c.entra_id.as_ref().expect("token settings");
    assert_eq!(
        t.rules.audiences,
        [
            "https://cognitiveservices.azure.com",
            "https://cognitiveservices.azure.com/"
        ]
    );
    assert_eq!(t.rules.clock_skew, std::time::Duration::from_secs(60));
    // A reload keeps the keys fetched for the same issuer.
    let again = parse(&text, Path::new("t.yaml"), &env, Some(&c))
        .unwrap()
        .config;
    assert!(Arc::ptr_eq(&again.entra_id.unwrap().keys, &t.keys));
}

#[test]
fn bad_token_settings_are_rejected() {
    let agent = "tenants:\n  - name: agents\n    entra: {object_ids: [o-1]}\n";
    let cases = [
        (GOOD.replace("tenants:\n", agent), "tenants[0].entra"),
        (
            GOOD.replace("tenants:\n", "tenants:\n  - name: agents\n    entra: {}\n") + TOKENS,
            "tenants[0].entra",
        ),
        (
            GOOD.replace(
                "tenants:\n",
                &format!("{agent}  - name: other\n    entra: {{object_ids: [O-1]}}\n"),
            ) + TOKENS,
            "tenants[1].entra.object_ids[0]",
        ),
        (
            GOOD.replace("tenants:\n", agent) + "entra_id: {issuers: [x]}\n",
            "entra_id",
        ),
        (
            GOOD.replace("tenants:\n", agent)
                + &TOKENS.replace(
                    "  issuers: [\"https://sts.windows.net/t/\"]\n",
                    "  issuers: []\n",
                ),
            "entra_id.issuers",
        ),
        (
            GOOD.replace("tenants:\n", agent) + TOKENS + "  clock_skew_seconds: 3600\n",
            "entra_id.clock_skew_seconds",
        ),
    ];
    for (text, field) in cases {
        let errs = problems(&text);
        assert!(errs.iter().any(|(f, _)| f == field), "{field}: {errs:?}");
    }
}
