//! The harness's HTTP/1.1 client: each request on its own connection, so an open-loop
//! arrival never waits for a pooled connection to free up (a connect on loopback costs
//! about 0.1 ms, counted in the request's latency like any client's would be).

use std::error::Error;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type BoxError = Box<dyn Error + Send + Sync>;

/// Status, headers and the whole body of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `req` to `addr` (`IP:port`) on a fresh connection and reads the whole answer.
pub async fn send(addr: &str, req: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    // The connection task ends when the answer is read and the sender dropped.
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET http://addr/path`.
pub async fn get(addr: &str, path: &str) -> Result<Answer, BoxError> {
    let req = Request::get(path)
        .header(http::header::HOST, addr)
        .body(Full::new(Bytes::new()))?;
    send(addr, req).await
}
