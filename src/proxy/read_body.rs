//! Reads the whole request body before an upstream is chosen, so that governance can inspect
//! it and routing can weigh it, and arranges for Pingora to replay it on every attempt.
//!
//! Why the tail matters: Pingora 0.9 forwards a body on an attempt only from its 64 KiB retry
//! buffer (`get_retry_buffer`, which passes through `request_body_filter`) or from downstream
//! reads. Once we have read the body ourselves there are no downstream reads left, so we keep
//! the *last* bytes in the retry buffer: with a known `Content-Length` we switch buffering on
//! only when at most 64 KiB remain. Every attempt then calls `request_body_filter` with that
//! tail and end-of-stream, where the gateway substitutes its full (rewritten) body. This makes
//! bodies of any allowed size replayable through Pingora's own retry loop.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use std::time::Duration;

/// Pingora's retry buffer size (`BODY_BUF_LIMIT` in pingora-core 0.9).
pub const RETRY_BUFFER: usize = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadBodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("a request body over 64 KiB must declare its Content-Length")]
    LengthRequired,
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the request body could not be read: {0}")]
    Read(String),
}

fn declared_length(session: &Session) -> Option<usize> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the body (at most `limit` bytes, all of it within `deadline`: a timeout per read
/// would let a client trickle a byte at a time for ever). On success the retry buffer holds
/// the body's tail, or the body is empty.
pub async fn read_whole_body(
    session: &mut Session,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ReadBodyError> {
    let declared = declared_length(session);
    if declared.is_some_and(|n| n > limit) {
        return Err(ReadBodyError::TooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|e| ReadBodyError::Read(e.to_string()))?;
    }
    session.set_read_timeout(Some(deadline));
    let until = tokio::time::Instant::now() + deadline;
    let mut body = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(limit));
    let mut armed = false;
    loop {
        // Unknown length: buffer from the start (fine up to 64 KiB, refused beyond).
        let remaining = declared.map_or(0, |n| n.saturating_sub(body.len()));
        if !armed && remaining <= RETRY_BUFFER {
            session.as_mut().enable_retry_buffering();
            armed = true;
        }
        let read = tokio::time::timeout_at(until, session.read_request_body()).await;
        match read.map_err(|_| ReadBodyError::Timeout(deadline))? {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ReadBodyError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(ReadBodyError::Read(e.to_string())),
        }
    }
    if !body.is_empty() && session.as_ref().get_retry_buffer().is_none() {
        // Chunked upload over 64 KiB: Pingora would have nothing to send on any attempt.
        return Err(ReadBodyError::LengthRequired);
    }
    Ok(body.freeze())
}
