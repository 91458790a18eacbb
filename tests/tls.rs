//! TLS on the client listener with certificates made at test time: HTTP/1.1 and HTTP/2 (by
//! ALPN) are served, a renewed certificate is served without a restart, and a bad
//! certificate is a config error that names the field and never prints the key.

mod support;

use spillway_sim::SimMode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const HANG: Duration = Duration::from_secs(20);

/// A fresh self-signed certificate for `localhost`, written as PEM files in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Written beside and renamed over, as a certificate manager does, so the watcher never
    // reads half a file.
    std::fs::write(dir.join("cert.tmp"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.tmp"), made.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.tmp"), &key).unwrap();
    std::fs::rename(dir.join("cert.tmp"), &cert).unwrap();
    (cert, key, made.cert.der().clone())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spillway-tls-{name}-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn connector(trusted: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add((*c).clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn handshake(
    gw: &Gateway,
    tls: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gw.addr).await?;
    tls.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A gateway serving TLS from fresh files in its own directory, in front of one simulator.
struct TlsGateway {
    dir: PathBuf,
    cert: CertificateDer<'static>,
    gw: Gateway,
    _sim: spillway_sim::SimHandle,
}

async fn tls_gateway(name: &str) -> TlsGateway {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let dir = scratch(name);
    let (cert, key, der) = certificate(&dir);
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    let file = dir.join("spillway.yaml");
    let gw = Gateway::start_tls(&conf, &file, &cert, &key).await;
    TlsGateway {
        dir,
        cert: der,
        gw,
        _sim: sim,
    }
}

#[tokio::test]
async fn http1_over_tls_is_served() {
    let TlsGateway {
        cert: der,
        gw,
        _sim,
        ..
    } = tls_gateway("h1").await;
    let mut conn = handshake(&gw, &connector(&[&der], &[b"http/1.1"]))
        .await
        .unwrap();
    let body = chat_body("");
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\napi-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        chat_path("mini"),
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG, conn.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("chat.completion"), "{answer}");
}

#[tokio::test]
async fn http2_is_offered_by_alpn_and_served() {
    let TlsGateway {
        cert: der,
        gw,
        _sim,
        ..
    } = tls_gateway("h2").await;
    let conn = handshake(&gw, &connector(&[&der], &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, driver) = h2::client::handshake(conn).await.unwrap();
    tokio::spawn(driver);
    let req = http::Request::post(format!("https://localhost{}", chat_path("mini")))
        .header("api-key", TENANT_KEY)
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(chat_body("").into(), true).unwrap();
    let resp = tokio::time::timeout(HANG, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&got).contains("chat.completion"));
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let TlsGateway {
        dir,
        cert: old,
        gw,
        _sim,
    } = tls_gateway("renew").await;
    let presented = async |trusted: &[&CertificateDer<'static>]| {
        let conn = handshake(&gw, &connector(trusted, &[b"http/1.1"]))
            .await
            .ok()?;
        conn.get_ref().1.peer_certificates()?.first().cloned()
    };
    assert_eq!(presented(&[&old]).await.as_ref(), Some(&old));
    // The renewal rewrites both files in place; the config file itself does not change.
    let (_, _, new) = certificate(&dir);
    let served = wait_for("the renewed certificate is served", HANG, async || {
        presented(&[&old, &new]).await.filter(|c| *c == new)
    })
    .await;
    assert_eq!(served, new);
    assert!(
        handshake(&gw, &connector(&[&old], &[b"http/1.1"]))
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
}

#[test]
fn a_bad_certificate_is_a_config_error_that_names_the_field() {
    let dir = scratch("bad");
    let (cert, _key, _) = certificate(&dir);
    let other = scratch("bad-other");
    let (_, other_key, _) = certificate(&other);
    let secret_line = std::fs::read_to_string(&other_key).unwrap();
    let secret_line = secret_line.lines().nth(1).unwrap().to_string();
    let cases = [
        (
            cert.clone(),
            dir.join("missing.pem"),
            "cannot read the private key",
        ),
        (cert.clone(), cert.clone(), "holds no PEM private key"),
        (
            cert.clone(),
            other_key.clone(),
            "do not make a usable certificate",
        ),
        (other_key.clone(), other_key.clone(), "holds no certificate"),
    ];
    for (c, k, why) in cases {
        let yaml = format!(
            "listen: [{{addr: 127.0.0.1:1, tls: {{cert: {}, key: {}}}}}]\n",
            c.display(),
            k.display()
        );
        let err = spillway::config::parse(&yaml, Path::new("t.yaml"), &|_| None, None)
            .expect_err(why)
            .to_string();
        assert!(err.contains("listen[0].tls") && err.contains(why), "{err}");
        assert!(!err.contains(&secret_line), "no key material in: {err}");
    }
    let plain_h2 = "listen: [{addr: 127.0.0.1:1, http2: true}]\n";
    let err = spillway::config::parse(plain_h2, Path::new("t.yaml"), &|_| None, None)
        .expect_err("h2 needs TLS")
        .to_string();
    assert!(err.contains("listen[0].http2"), "{err}");
}
