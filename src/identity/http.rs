//! A small outbound HTTP/1.1 client on Pingora's own connector, for the token endpoints.
//!
//! hyper is only a dev-dependency here and reqwest is not in the tree; Pingora's connector
//! already brings TCP, rustls with certificate verification, and HTTP/1 framing.

use bytes::{Bytes, BytesMut};
use http::Uri;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A token answer is a few KiB; anything near this is not one, and must not grow our memory.
pub const MAX_BODY: usize = 1 << 20;

/// One request. `url` is `http://` or `https://`, with optional port, path and query.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
}

/// Header values and the body hold credentials (`X-IDENTITY-HEADER`, a client secret): only
/// names and sizes are shown.
impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_len", &self.body.map(<[u8]>::len))
            .finish()
    }
}

/// The status and the whole body (at most [`MAX_BODY`]).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// Why no response was read. Messages name the host and the step; never a header value or a
/// body, which may hold a credential.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL itself is not echoed: a query could carry something secret.
    #[error("invalid URL: {0}")]
    Url(&'static str),
    #[error("invalid request to {host}: {reason}")]
    Request { host: String, reason: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("sending the request to {host} failed: {reason}")]
    Send { host: String, reason: String },
    #[error("reading the response from {host} failed: {reason}")]
    Receive { host: String, reason: String },
    #[error("the response from {host} is larger than {MAX_BODY} bytes")]
    TooLarge { host: String },
    #[error("no response from {host} within {after:?}")]
    Timeout { host: String, after: Duration },
}

/// Where a URL points.
#[derive(Debug)]
struct Target {
    tls: bool,
    /// Without IPv6 brackets: what DNS, the SNI and error messages want.
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority as written.
    authority: String,
    path_and_query: String,
}

fn target(url: &str) -> Result<Target, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::Url("not a URI"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url("the scheme is not http or https")),
    };
    let authority = uri.authority().ok_or(FetchError::Url("no host"))?;
    if authority.as_str().contains('@') {
        return Err(FetchError::Url("user information is not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(FetchError::Url("no host"));
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        authority: authority.as_str().to_string(),
        path_and_query: uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
    })
}

/// Sends `req` on a new connection and reads the whole response, all within `timeout`.
pub async fn send(
    connector: &Connector,
    req: Request<'_>,
    timeout: Duration,
) -> Result<Response, FetchError> {
    let target = target(req.url)?;
    match tokio::time::timeout(timeout, exchange(connector, &target, &req)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            host: target.host,
            after: timeout,
        }),
    }
}

async fn exchange(
    connector: &Connector,
    target: &Target,
    req: &Request<'_>,
) -> Result<Response, FetchError> {
    let host = || target.host.clone();
    let header = request_header(target, req).map_err(|reason| FetchError::Request {
        host: host(),
        reason,
    })?;
    let mut session = connect(connector, target).await?;
    let sent = async {
        session.write_request_header(Box::new(header)).await?;
        if let Some(body) = req.body {
            session
                .write_request_body(Bytes::copy_from_slice(body), true)
                .await?;
        }
        session.finish_request_body().await
    };
    sent.await.map_err(|e| FetchError::Send {
        host: host(),
        reason: e.to_string(),
    })?;
    let received = read_response(&mut session, target).await;
    // Not returned to Connector's pool: a credential calls its endpoint every ~30 minutes,
    // long after Entra and IMDS have closed an idle connection, so a pooled one would only be
    // found dead. Dropping the session closes it.
    drop(session);
    received
}

/// Connects to each resolved address in turn: a name can resolve to an address family the
/// host has no route for.
async fn connect(connector: &Connector, target: &Target) -> Result<HttpSession, FetchError> {
    let addrs = resolve(target).await?;
    let mut last = String::from("no addresses");
    for addr in addrs {
        // A real SNI for https: with rustls an empty one turns certificate verification off.
        let sni = if target.tls {
            target.host.clone()
        } else {
            String::new()
        };
        let peer = HttpPeer::new(addr, target.tls, sni);
        match connector.get_http_session(&peer).await {
            Ok((session, _reused)) => return Ok(session),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(FetchError::Connect {
        host: target.host.clone(),
        reason: last,
    })
}

/// Never `HttpPeer::new` on a name: that is a blocking `getaddrinfo` on the runtime.
async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, FetchError> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| FetchError::Resolve {
            host: target.host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Resolve {
            host: target.host.clone(),
            reason: "no addresses".into(),
        });
    }
    Ok(addrs)
}

/// Errors name the header, never its value.
fn request_header(target: &Target, req: &Request<'_>) -> Result<RequestHeader, String> {
    let mut header = RequestHeader::build(req.method, target.path_and_query.as_bytes(), None)
        .map_err(|_| format!("invalid method {:?} or path", req.method))?;
    let invalid = |name: &str| format!("invalid header {name}");
    header
        .insert_header("Host", target.authority.as_str())
        .map_err(|_| invalid("Host"))?;
    for (name, value) in req.headers {
        header
            .append_header(name.to_string(), *value)
            .map_err(|_| invalid(name))?;
    }
    if let Some(body) = req.body {
        header
            .insert_header("Content-Length", body.len())
            .map_err(|_| invalid("Content-Length"))?;
    }
    // The connection is not reused (see `exchange`), so the server need not keep it open.
    header
        .insert_header("Connection", "close")
        .map_err(|_| invalid("Connection"))?;
    Ok(header)
}

async fn read_response(session: &mut HttpSession, target: &Target) -> Result<Response, FetchError> {
    let receive = |e: Box<pingora::Error>| FetchError::Receive {
        host: target.host.clone(),
        reason: e.to_string(),
    };
    let too_large = || FetchError::TooLarge {
        host: target.host.clone(),
    };
    // A 1xx is followed by the real answer on the same connection.
    let (status, declared) = loop {
        session.read_response_header().await.map_err(receive)?;
        let Some(head) = session.response_header() else {
            return Err(FetchError::Receive {
                host: target.host.clone(),
                reason: "no response header".into(),
            });
        };
        if !head.status.is_informational() {
            let declared = head
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            break (head.status.as_u16(), declared);
        }
    };
    if declared.is_some_and(|len| len > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await.map_err(receive)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body: body.freeze(),
    })
}

#[cfg(test)]
mod tests;
