//! What the simulator saw and did: every request it received, and counters for tests and load scripts.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde::Serialize;

/// One request as received, with the status the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path with query, e.g. `/openai/deployments/d/chat/completions?api-version=2024-10-21`.
    pub path: String,
    /// Names lower-cased, in arrival order; values that are not UTF-8 are replaced lossily.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The answered status; 0 while no answer was given (still running, or `Fault::Hang`).
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Counters since the simulator started. `/_sim/...` requests are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Every request received (also rejected ones).
    pub requests: u64,
    /// Answers with a 2xx status.
    pub ok: u64,
    pub throttled_429: u64,
    pub timeouts_408: u64,
    pub errors_5xx: u64,
    /// Tokens really generated; a cut or abandoned stream counts what was sent.
    pub completion_tokens: u64,
    /// Prompt tokens (estimated, see `request::estimate_prompt_tokens`) of generations that ran.
    pub prompt_tokens: u64,
    /// Requests being handled right now, streams until their last event.
    pub inflight: u64,
    pub max_inflight: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    stats: SimStats,
}

#[derive(Debug)]
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
    /// Requests kept whole; the rest are counted only.
    limit: usize,
}

/// What [`Recorder::begin`] returns for a request it counted but did not keep.
const NOT_KEPT: usize = usize::MAX;

impl Recorder {
    pub fn new(limit: usize) -> Self {
        Recorder {
            inner: Mutex::default(),
            limit,
        }
    }

    /// Records are appended whole and counters are plain numbers, so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an arriving request; returns its index for [`Recorder::answered`].
    pub fn begin(&self, parts: &http::request::Parts, body: Bytes) -> usize {
        {
            let mut inner = self.lock();
            if inner.requests.len() >= self.limit {
                inner.stats.requests += 1;
                return NOT_KEPT;
            }
        }
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), value)
            })
            .collect();
        let path = parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let mut inner = self.lock();
        inner.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path,
            headers,
            body,
            status: 0,
        });
        inner.stats.requests += 1;
        inner.requests.len() - 1
    }

    pub fn answered(&self, index: usize, status: u16) {
        let mut inner = self.lock();
        if let Some(r) = inner.requests.get_mut(index) {
            r.status = status;
        }
        let stats = &mut inner.stats;
        match status {
            200..=299 => stats.ok += 1,
            429 => stats.throttled_429 += 1,
            408 => stats.timeouts_408 += 1,
            500..=599 => stats.errors_5xx += 1,
            _ => {}
        }
    }

    pub fn usage(&self, prompt: u64, completion: u64) {
        let mut inner = self.lock();
        inner.stats.prompt_tokens += prompt;
        inner.stats.completion_tokens += completion;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }
}

/// Counts a request in flight for as long as it lives; streams move it into their generator task.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    recorder: Arc<Recorder>,
}

impl InflightGuard {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        {
            let mut inner = recorder.lock();
            inner.stats.inflight += 1;
            inner.stats.max_inflight = inner.stats.max_inflight.max(inner.stats.inflight);
        }
        Self { recorder }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut inner = self.recorder.lock();
        inner.stats.inflight = inner.stats.inflight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> http::request::Parts {
        let (parts, ()) = http::Request::post(uri)
            .header("API-Key", "k")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn records_and_counts() {
        let r = Arc::new(Recorder::new(10));
        let a = r.begin(&parts("/x?api-version=1"), Bytes::from_static(b"{\"a\":1}"));
        let b = r.begin(&parts("/y"), Bytes::from_static(b"nope"));
        {
            let _one = InflightGuard::new(r.clone());
            let _two = InflightGuard::new(r.clone());
            assert_eq!(r.stats().inflight, 2);
        }
        r.answered(a, 200);
        r.answered(b, 429);
        r.usage(3, 4);
        let s = r.stats();
        assert_eq!(
            (
                s.requests,
                s.ok,
                s.throttled_429,
                s.inflight,
                s.max_inflight
            ),
            (2, 1, 1, 0, 2)
        );
        assert_eq!((s.prompt_tokens, s.completion_tokens), (3, 4));
        let recs = r.requests();
        assert_eq!(recs[0].path, "/x?api-version=1");
        assert_eq!(recs[0].header("api-key"), Some("k"));
        assert_eq!(recs[0].json().unwrap()["a"], 1);
        assert_eq!((recs[1].status, recs[1].json()), (429, None));
    }

    #[test]
    fn beyond_the_limit_requests_are_counted_not_kept() {
        let r = Recorder::new(1);
        let a = r.begin(&parts("/a"), Bytes::from_static(b"{}"));
        let b = r.begin(&parts("/b"), Bytes::from_static(b"{}"));
        r.answered(a, 200);
        r.answered(b, 200);
        let recs = r.requests();
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].path.as_str(), recs[0].status), ("/a", 200));
        let s = r.stats();
        assert_eq!((s.requests, s.ok), (2, 2));
    }
}
