//! The client against real loopback servers: a scripted one written here, and the simulator.

use super::*;
use spillway_sim::{spawn, EntraConfig, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(5);

/// Reads one request head and its Content-Length body.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return seen;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return seen;
            }
        }
    }
}

/// Answers one connection with `reply` (or never, when `None`); yields what it was sent.
async fn server(reply: Option<Vec<u8>>) -> (String, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let request = read_request(&mut stream).await;
        match reply {
            Some(reply) => {
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            }
            None => std::future::pending::<()>().await,
        }
        request
    });
    (url, task)
}

fn get(url: &str) -> Request<'_> {
    Request {
        method: "GET",
        url,
        headers: &[],
        body: None,
    }
}

#[tokio::test]
async fn sends_host_headers_and_body_and_reads_the_answer() {
    let reply = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let (base, seen) = server(Some(reply)).await;
    let url = format!("{base}/a/b?x=1&y=%2F");
    let req = Request {
        method: "POST",
        url: &url,
        headers: &[("X-Test", "yes"), ("Content-Type", "text/plain")],
        body: Some(b"ping!"),
    };
    let connector = Connector::new(None);
    let resp = send(&connector, req, PATIENCE).await.unwrap();
    assert_eq!((resp.status, &resp.body[..]), (201, &b"hello"[..]));
    let seen = String::from_utf8(seen.await.unwrap()).unwrap();
    assert!(
        seen.starts_with("POST /a/b?x=1&y=%2F HTTP/1.1\r\n"),
        "{seen}"
    );
    let host = base.trim_start_matches("http://");
    let lower = seen.to_ascii_lowercase();
    assert!(lower.contains(&format!("host: {host}\r\n")), "{seen}");
    assert!(lower.contains("x-test: yes\r\n"), "{seen}");
    assert!(lower.contains("content-length: 5\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\nping!"), "{seen}");
}

#[tokio::test]
async fn reads_chunked_and_close_delimited_bodies() {
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let (url, _seen) = server(Some(chunked.to_vec())).await;
    let resp = send(&Connector::new(None), get(&url), PATIENCE)
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"abcde");
    let close = b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\nuntil the end";
    let (url, _seen) = server(Some(close.to_vec())).await;
    let resp = send(&Connector::new(None), get(&url), PATIENCE)
        .await
        .unwrap();
    assert_eq!((resp.status, &resp.body[..]), (500, &b"until the end"[..]));
}

#[tokio::test]
async fn a_body_over_the_cap_is_an_error() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    let (url, _seen) = server(Some(head.into_bytes())).await;
    let err = send(&Connector::new(None), get(&url), PATIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");

    // Undeclared length: counted while reading.
    let mut reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    reply.resize(reply.len() + MAX_BODY + 1, b'x');
    let (url, _seen) = server(Some(reply)).await;
    let err = send(&Connector::new(None), get(&url), PATIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (url, _seen) = server(None).await;
    let after = Duration::from_millis(200);
    let err = send(&Connector::new(None), get(&url), after)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("no response from 127.0.0.1 within"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_urls_unknown_hosts_and_closed_ports_are_errors() {
    let connector = Connector::new(None);
    for url in [
        "ftp://example.com/",
        "/just/a/path",
        "http://user:pw@example.com/",
        "not a url",
    ] {
        let err = send(&connector, get(url), PATIENCE).await.unwrap_err();
        assert!(matches!(err, FetchError::Url(_)), "{url}: {err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
    let err = send(&connector, get("https://no-such-host.invalid/x"), PATIENCE).await;
    assert!(matches!(err, Err(FetchError::Resolve { .. })), "{err:?}");
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let err = send(&connector, get(&url), PATIENCE).await;
    assert!(matches!(err, Err(FetchError::Connect { .. })), "{err:?}");
}

#[tokio::test]
async fn an_invalid_header_value_is_named_not_shown() {
    let (url, _seen) = server(None).await;
    let req = Request {
        method: "GET",
        url: &url,
        headers: &[("X-IDENTITY-HEADER", "secret\r\nInjected: yes")],
        body: None,
    };
    assert!(!format!("{req:?}").contains("secret"), "{req:?}");
    let err = send(&Connector::new(None), req, PATIENCE)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Request { .. }), "{text}");
    assert!(
        text.contains("X-IDENTITY-HEADER") && !text.contains("secret"),
        "{text}"
    );
}

#[tokio::test]
async fn gets_a_token_from_the_simulated_imds() {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://cognitiveservices.azure.com&client_id={}",
        sim.endpoint(),
        EntraConfig::default().client_id
    );
    let req = Request {
        method: "GET",
        url: &url,
        headers: &[("Metadata", "true")],
        body: None,
    };
    let resp = send(&Connector::new(None), req, PATIENCE).await.unwrap();
    assert_eq!(resp.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert!(sim.issuer().verify(token).is_ok());
}

/// https sends the host as SNI and verifies the certificate: with rustls an empty SNI would
/// turn verification off, and this self-signed certificate would be accepted.
#[tokio::test]
async fn https_sends_sni_and_refuses_an_untrusted_certificate() {
    use std::sync::Arc;
    use tokio_rustls::rustls::crypto::ring::default_provider;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::LazyConfigAcceptor;

    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = LazyConfigAcceptor::new(Default::default(), tcp);
        let start = acceptor.await.unwrap();
        let sni = start.client_hello().server_name().map(str::to_string);
        // The client gives up on the certificate; how the handshake ends does not matter.
        let _ = start.into_stream(Arc::new(config)).await;
        sni
    });
    let url = format!("https://localhost:{port}/token");
    let err = send(&Connector::new(None), get(&url), PATIENCE)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err}");
    assert!(
        err.to_string().starts_with("cannot connect to localhost: "),
        "{err}"
    );
    assert_eq!(server.await.unwrap().as_deref(), Some("localhost"));
}
