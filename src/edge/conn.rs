//! A client connection under the edge limits: the whole request head within a deadline and a
//! size, an idle keep-alive bounded, and its slot in the connection cap given back on close.
//!
//! Why a stream wrapper: Pingora 0.9 reads the request head before any `ProxyHttp` hook runs,
//! with a timeout per read (a byte every few seconds keeps a connection forever) and a 1 MiB
//! head limit that is not configurable (`MAX_HEADER_SIZE`, `protocols/http/v1/common.rs`). The
//! wrapper sees every read, and the proxy tells it where a request begins and ends through
//! [`mark`], so it needs no HTTP parsing of its own. HTTP/2 connections are left to h2's own
//! limits and Pingora's `h2_idle_timeout`: there the wrapper only holds the connection's slot.

use super::accept::Slot;
use crate::config::ClientLimits;
use crate::telemetry::edge::Limit;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the connection is waiting for on its next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Between a head's first byte (or the connection's start) and its end.
    Head,
    /// The head has arrived: the proxy's own timeouts apply until the request ends.
    Request,
    /// Between requests, before the next head's first byte.
    Idle,
}

/// Finds the end of a request head (the empty line after at least one line) across reads.
/// HTTP/1 allows bare LF line ends and empty lines before the request line; a head that
/// began with empty lines must not count as ended, or a client could skip the deadline.
#[derive(Debug, Default)]
struct HeadEnd {
    /// Non-empty lines seen.
    lines: usize,
    /// Length of the current, unfinished line.
    line: usize,
    /// The current line so far is a lone CR.
    cr: bool,
}

impl HeadEnd {
    /// The index in `bytes` of the LF that ends the head, if it is in `bytes`.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', bytes) {
            let seg = &bytes[start..nl];
            let len = self.line + seg.len();
            let blank = len == 0
                || (len == 1
                    && if seg.is_empty() {
                        self.cr
                    } else {
                        seg[0] == b'\r'
                    });
            if blank {
                if self.lines > 0 {
                    return Some(nl);
                }
            } else {
                self.lines += 1;
            }
            self.line = 0;
            self.cr = false;
            start = nl + 1;
        }
        let tail = &bytes[start..];
        if !tail.is_empty() {
            self.cr = self.line == 0 && tail == b"\r";
            self.line += tail.len();
        }
        None
    }
}

/// A client stream with the edge limits applied to its reads.
pub struct Guarded {
    inner: Stream,
    /// Set by the proxy while it handles a request on this connection.
    in_request: AtomicBool,
    /// `None` for HTTP/2, whose reads the wrapper leaves alone.
    limits: Option<ClientLimits>,
    wait: Wait,
    head_bytes: usize,
    head_end: HeadEnd,
    timer: Pin<Box<Sleep>>,
    slot: Slot,
}

impl Guarded {
    pub fn new(inner: Stream, limits: ClientLimits, slot: Slot) -> Self {
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        // The first head is due `head_timeout` after the connection was accepted.
        let timer = Box::pin(tokio::time::sleep(limits.head_timeout));
        Guarded {
            inner,
            in_request: AtomicBool::new(false),
            limits: (!h2).then_some(limits),
            wait: Wait::Head,
            head_bytes: 0,
            head_end: HeadEnd::default(),
            timer,
            slot,
        }
    }

    fn arm(&mut self, wait: Wait, after: std::time::Duration) {
        self.wait = wait;
        self.timer.as_mut().reset(Instant::now() + after);
    }

    fn refuse(&self, limit: Limit, kind: io::ErrorKind) -> Poll<io::Result<()>> {
        self.slot.fired(limit);
        Poll::Ready(Err(io::Error::new(kind, limit.as_str())))
    }
}

/// Tells the connection under `session` that a request has begun (`true`, its head is parsed)
/// or ended (`false`, the next read waits for a new head). A no-op on HTTP/2.
pub fn mark(session: &Session, in_request: bool) {
    let guarded = session
        .as_downstream()
        .stream()
        .and_then(|s| (**s).as_any().downcast_ref::<Guarded>());
    if let Some(g) = guarded {
        g.in_request.store(in_request, Ordering::Relaxed);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(limits) = this.limits else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if this.in_request.load(Ordering::Relaxed) {
            this.wait = Wait::Request;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.wait == Wait::Request {
            // The previous request ended (or its head was read but the proxy never took it):
            // the connection idles until the next head. Only the proxy's mark lifts the limits.
            this.head_bytes = 0;
            this.head_end = HeadEnd::default();
            this.arm(Wait::Idle, limits.idle_timeout);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            return match this.wait {
                Wait::Idle => this.refuse(Limit::IdleTimeout, io::ErrorKind::TimedOut),
                _ => this.refuse(Limit::HeadTimeout, io::ErrorKind::TimedOut),
            };
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if new.is_empty() {
            return polled;
        }
        if this.wait == Wait::Idle {
            this.arm(Wait::Head, limits.head_timeout);
        }
        let head = match this.head_end.scan(new) {
            Some(end) => {
                this.wait = Wait::Request;
                this.head_bytes + end + 1
            }
            None => this.head_bytes + new.len(),
        };
        this.head_bytes = head;
        if head > limits.max_head_bytes {
            return this.refuse(Limit::HeadTooLarge, io::ErrorKind::InvalidData);
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::HeadEnd;

    fn end_of(chunks: &[&[u8]]) -> Option<usize> {
        let mut h = HeadEnd::default();
        let mut offset = 0;
        for c in chunks {
            if let Some(i) = h.scan(c) {
                return Some(offset + i);
            }
            offset += c.len();
        }
        None
    }

    #[test]
    fn finds_the_empty_line_in_one_read_or_split_anywhere() {
        let head = b"POST /x HTTP/1.1\r\nHost: a\r\n\r\nbody";
        let end = head.len() - 5;
        assert_eq!(end_of(&[head]), Some(end));
        for cut in 1..head.len() {
            assert_eq!(
                end_of(&[&head[..cut], &head[cut..]]),
                Some(end),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert_eq!(end_of(&bytes), Some(end));
    }

    #[test]
    fn bare_line_feeds_end_a_head_too() {
        assert_eq!(end_of(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Some(23));
        assert_eq!(end_of(&[b"GET / HTTP/1.1\nHost: a\r\n", b"\n"]), Some(24));
    }

    #[test]
    fn leading_empty_lines_do_not_end_a_head() {
        assert_eq!(end_of(&[b"\r\n\r\n\n"]), None);
        assert_eq!(end_of(&[b"\r\n", b"GET / HTTP/1.1\r\n", b"\r\n"]), Some(19));
    }

    #[test]
    fn an_unfinished_head_has_no_end() {
        assert_eq!(
            end_of(&[b"GET / HTTP/1.1\r\nX-Slow: a\r\n", b"X-Slow: b\r"]),
            None
        );
        // A lone CR inside a line is not a line end.
        assert_eq!(end_of(&[b"GET / HTTP/1.1\r\n\r", b"x\r\n"]), None);
    }
}
