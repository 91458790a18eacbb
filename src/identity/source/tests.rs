//! Each source against the simulated Entra ID: tokens its issuer verifies, and errors that
//! name the AADSTS code but never the credential.

use super::*;
use spillway_sim::entra::SCOPE;
use spillway_sim::{spawn, EntraConfig, SimConfig, SimHandle, TokenOutage};

const PATIENCE: Duration = Duration::from_secs(5);

async fn sim() -> SimHandle {
    spawn(SimConfig::default()).await.expect("sim spawns")
}

fn imds(sim: &SimHandle, client_id: Option<String>) -> TokenSource {
    TokenSource::Imds {
        endpoint: format!("{}/metadata/identity/oauth2/token", sim.endpoint()),
        client_id,
    }
}

fn app_service(sim: &SimHandle, header: &str) -> TokenSource {
    TokenSource::AppService {
        endpoint: format!("{}/msi/token", sim.endpoint()),
        header: Secret::new(header),
        client_id: None,
    }
}

fn client_secret(sim: &SimHandle, secret: &str) -> TokenSource {
    let cfg = EntraConfig::default();
    TokenSource::ClientSecret {
        // With the trailing slash `AZURE_AUTHORITY_HOST` has.
        authority: format!("{}/", sim.endpoint()),
        tenant: cfg.tenant,
        client_id: cfg.client_id,
        secret: Secret::new(secret),
    }
}

/// A file no other test (or test run) uses; removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("spillway-{tag}-{}-{nanos}", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).expect("temp file is writable");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn fetch(source: &TokenSource) -> Result<Token, TokenError> {
    source.fetch(&Connector::new(None), SCOPE, PATIENCE).await
}

#[tokio::test]
async fn managed_identity_tokens_verify() {
    let sim = sim().await;
    let cfg = EntraConfig::default();
    for source in [
        imds(&sim, None),
        imds(&sim, Some(cfg.client_id.clone())),
        app_service(&sim, &cfg.identity_header),
    ] {
        let token = fetch(&source).await.unwrap();
        assert!(
            sim.issuer().verify(token.value.expose()).is_ok(),
            "{source:?}"
        );
        assert!(
            token.lifetime > Duration::from_secs(3500),
            "{:?}",
            token.lifetime
        );
    }
    let stats = sim.issuer().stats();
    assert_eq!((stats.imds, stats.app_service), (2, 1));
}

#[tokio::test]
async fn client_secret_and_workload_identity_tokens_verify() {
    let sim = sim().await;
    let cfg = EntraConfig::default();
    let token = fetch(&client_secret(&sim, &cfg.client_secret))
        .await
        .unwrap();
    assert!(sim.issuer().verify(token.value.expose()).is_ok());

    let file = TempFile::new("assertion");
    file.write(&format!("{}\n", cfg.federated_assertion));
    let workload = TokenSource::WorkloadIdentity {
        authority: sim.endpoint(),
        tenant: cfg.tenant.clone(),
        client_id: cfg.client_id.clone(),
        token_file: file.0.clone(),
    };
    let token = fetch(&workload).await.unwrap();
    assert!(sim.issuer().verify(token.value.expose()).is_ok());

    // The kubelet rotated the file: the next exchange sends what it holds now.
    file.write("a-stale-assertion");
    let err = fetch(&workload).await.unwrap_err().to_string();
    assert!(err.contains("invalid_client (AADSTS70021"), "{err}");
    assert!(!err.contains("a-stale-assertion"), "{err}");
    file.write(&cfg.federated_assertion);
    assert!(fetch(&workload).await.is_ok());
    let stats = sim.issuer().stats();
    assert_eq!((stats.client_secret, stats.client_assertion), (1, 2));

    drop(file);
    let err = fetch(&workload).await.unwrap_err();
    assert!(matches!(err, TokenError::TokenFile { .. }), "{err}");
}

#[tokio::test]
async fn a_wrong_credential_names_the_error_not_the_credential() {
    let sim = sim().await;
    let err = fetch(&client_secret(&sim, "not-the-secret"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("token endpoint 127.0.0.1 answered 401: invalid_client (AADSTS7000215: Invalid client secret provided."),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");

    let err = fetch(&app_service(&sim, "not-the-header"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("answered 401: unauthorized ("), "{text}");
    assert!(!text.contains("not-the-header"), "{text}");

    let err = fetch(&imds(&sim, Some("someone-else".into())))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("answered 400: invalid_request (Identity not found)"),
        "{err}"
    );
    assert_eq!(sim.issuer().stats().rejected, 3);
}

#[tokio::test]
async fn an_outage_is_an_error() {
    let sim = sim().await;
    let source = imds(&sim, None);
    sim.issuer().set_outage(TokenOutage::Status(503));
    let err = fetch(&source).await.unwrap_err().to_string();
    assert!(
        err.contains("answered 503: temporarily_unavailable"),
        "{err}"
    );
    sim.issuer().set_outage(TokenOutage::Drop);
    let err = fetch(&source).await.unwrap_err();
    assert!(matches!(err, TokenError::Fetch(_)), "{err}");
    sim.issuer().set_outage(TokenOutage::Up);
    assert!(fetch(&source).await.is_ok());
}

#[test]
fn urls_join_whatever_the_slashes() {
    let url = managed_url(
        "http://h/msi/token?x=1",
        "2019-08-01",
        "https://r",
        Some("c"),
    );
    assert_eq!(
        url,
        "http://h/msi/token?x=1&api-version=2019-08-01&resource=https%3A%2F%2Fr&client_id=c"
    );
    for authority in ["https://login.example", "https://login.example/"] {
        assert_eq!(
            token_url(authority, "t"),
            "https://login.example/t/oauth2/v2.0/token"
        );
    }
}

#[test]
fn labels_identities_and_debug_show_no_secret() {
    let secret = |s: &str| TokenSource::ClientSecret {
        authority: AUTHORITY.into(),
        tenant: "t".into(),
        client_id: "c".into(),
        secret: Secret::new(s),
    };
    let a = secret("hunter2-secret");
    assert_eq!(a.label(), "client_secret:t/c");
    assert_eq!(a.identity(), secret("hunter2-secret").identity());
    assert_ne!(a.identity(), secret("another-secret").identity());
    let slash = TokenSource::ClientSecret {
        authority: format!("{AUTHORITY}/"),
        tenant: "t".into(),
        client_id: "c".into(),
        secret: Secret::new("hunter2-secret"),
    };
    assert_eq!(a.identity(), slash.identity());
    let token = Token {
        value: Secret::new("eyJ-token-value"),
        lifetime: Duration::from_secs(1),
    };
    let shown = format!("{a:?} {} {token:?}", a.identity());
    assert!(
        !shown.contains("hunter2") && !shown.contains("eyJ-token"),
        "{shown}"
    );

    let managed = |id: Option<&str>| TokenSource::Imds {
        endpoint: IMDS_ENDPOINT.into(),
        client_id: id.map(str::to_string),
    };
    assert_eq!(managed(None).label(), "managed_identity");
    assert_eq!(managed(Some("c")).label(), "managed_identity:c");
    assert_ne!(managed(None).identity(), managed(Some("c")).identity());
    let app = TokenSource::AppService {
        endpoint: "http://localhost:42356/msi/token".into(),
        header: Secret::new("header-value"),
        client_id: Some("c".into()),
    };
    assert_eq!(app.label(), "app_service_identity:c");
    assert!(!format!("{app:?} {}", app.identity()).contains("header-value"));
    let workload = TokenSource::WorkloadIdentity {
        authority: AUTHORITY.into(),
        tenant: "t".into(),
        client_id: "c".into(),
        token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
    };
    assert_eq!(workload.label(), "workload_identity:t/c");
}
