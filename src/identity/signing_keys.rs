//! An issuer's signing keys as the gateway holds them: fetched from its OpenID configuration
//! (or JWKS) in the background, read lock-free per request, and fetched once more, at most
//! every few minutes, when a token names a key not seen yet.

use super::http::{self, Request};
use super::jwks::{openid_config, KeySet};
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use pingora::connectors::http::Connector;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One fetch of the keys may take this long (the discovery document and the JWKS each).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed fetch, the next is tried this soon (doubling up to `refresh_every`).
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// Where the keys are published.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeysSource {
    /// An OpenID configuration document, whose `jwks_uri` is read at every fetch (Entra ID
    /// could move it).
    OpenIdConfig(String),
    Jwks(String),
}

impl KeysSource {
    pub fn url(&self) -> &str {
        match self {
            KeysSource::OpenIdConfig(u) | KeysSource::Jwks(u) => u,
        }
    }
}

/// A key set with the number of the fetch that changed it: a token validated against one
/// generation is validated again once the keys change (a retired key stops working).
pub struct Keys {
    pub set: KeySet,
    pub generation: u64,
}

/// The live keys of one issuer, shared by every config that names the same source.
pub struct SigningKeys {
    source: KeysSource,
    current: ArcSwapOption<Keys>,
    generation: AtomicU64,
    /// Single flight: the background refresh and a request's refetch never fetch together,
    /// and a request that waited finds the keys another one fetched.
    fetching: tokio::sync::Mutex<()>,
    state: Mutex<FetchState>,
    connector: Connector,
    /// When the first fetch was due: at once.
    created: Instant,
}

#[derive(Default)]
struct FetchState {
    /// When the last fetch was attempted, successful or not.
    attempted: Option<Instant>,
    fetched: Option<Instant>,
    last_error: Option<String>,
    failures: u32,
    fetches: u64,
}

/// What `/status` shows of a key source.
#[derive(Debug, Serialize)]
pub struct KeysStatus {
    pub source: String,
    pub usable: bool,
    pub key_ids: Vec<String>,
    pub fetched_seconds_ago: Option<u64>,
    pub last_error: Option<String>,
    pub fetches: u64,
    pub failures: u32,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    pub fn new(source: KeysSource) -> Self {
        SigningKeys {
            source,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            state: Mutex::new(FetchState::default()),
            connector: Connector::new(None),
            created: Instant::now(),
        }
    }

    pub fn source(&self) -> &KeysSource {
        &self.source
    }

    /// The keys as last fetched; `None` before the first successful fetch.
    pub fn current(&self) -> Option<Arc<Keys>> {
        self.current.load_full()
    }

    /// Whether a fetch was attempted (readiness waits for one).
    pub fn attempted(&self) -> bool {
        self.state.lock().attempted.is_some()
    }

    /// When the background task should fetch next: at once at first, every `every` after a
    /// success, sooner (backing off) after failures.
    pub fn due(&self, every: Duration) -> Instant {
        let s = self.state.lock();
        match (s.attempted, s.failures) {
            (None, _) => self.created,
            (Some(at), 0) => at + every,
            (Some(at), n) => at + (RETRY_FIRST * 2u32.saturating_pow(n - 1)).min(every),
        }
    }

    /// Fetches the keys now (the background task's call); logs a change of key ids or of
    /// health once.
    pub async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        self.fetch_locked().await;
    }

    /// For a token whose key id is not in the keys of generation `seen`: fetches again,
    /// unless a fetch was attempted within `min_interval` (a stream of tokens with made-up
    /// key ids must not become a stream of fetches). Returns the keys to try again with.
    pub async fn refetch(&self, seen: u64, min_interval: Duration) -> Option<Arc<Keys>> {
        let _one = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return self.current();
        }
        let recent = self
            .state
            .lock()
            .attempted
            .is_some_and(|at| at.elapsed() < min_interval);
        if recent {
            return None;
        }
        self.fetch_locked().await;
        self.current().filter(|k| k.generation != seen)
    }

    async fn fetch_locked(&self) {
        let now = Instant::now();
        let result = self.fetch_set().await;
        let mut s = self.state.lock();
        s.attempted = Some(now);
        s.fetches += 1;
        match result {
            Ok(set) => {
                let old = self.current();
                let same = old.as_ref().is_some_and(|o| same_keys(&o.set, &set));
                if s.failures > 0 || old.is_none() || !same {
                    log::info!(
                        "signing keys from {}: {} key(s): {}",
                        self.source.url(),
                        set.len(),
                        set.kids().collect::<Vec<_>>().join(", ")
                    );
                }
                s.fetched = Some(now);
                s.failures = 0;
                s.last_error = None;
                if !same {
                    let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    self.current.store(Some(Arc::new(Keys { set, generation })));
                }
            }
            Err(e) => {
                if s.failures == 0 {
                    log::warn!(
                        "cannot fetch signing keys from {}: {e}; the keys fetched before stay in use",
                        self.source.url()
                    );
                }
                s.failures = s.failures.saturating_add(1);
                s.last_error = Some(e);
            }
        }
    }

    async fn fetch_set(&self) -> Result<KeySet, String> {
        let jwks_uri = match &self.source {
            KeysSource::Jwks(u) => u.clone(),
            KeysSource::OpenIdConfig(u) => {
                let body = self.get(u).await?;
                openid_config(&body)
                    .map_err(|e| format!("OpenID configuration {u}: {e}"))?
                    .jwks_uri
            }
        };
        let body = self.get(&jwks_uri).await?;
        KeySet::from_jwks(&body).map_err(|e| format!("JWKS {jwks_uri}: {e}"))
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, String> {
        let req = Request {
            method: "GET",
            url,
            headers: &[("accept", "application/json")],
            body: None,
        };
        let resp = http::send(&self.connector, req, FETCH_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status != 200 {
            return Err(format!("{url} answered {}", resp.status));
        }
        Ok(resp.body)
    }

    pub fn status(&self) -> KeysStatus {
        let s = self.state.lock();
        let current = self.current();
        KeysStatus {
            source: self.source.url().to_string(),
            usable: current.is_some(),
            key_ids: current
                .map(|k| k.set.kids().map(str::to_string).collect())
                .unwrap_or_default(),
            fetched_seconds_ago: s.fetched.map(|at| at.elapsed().as_secs()),
            last_error: s.last_error.clone(),
            fetches: s.fetches,
            failures: s.failures,
        }
    }
}

fn same_keys(a: &KeySet, b: &KeySet) -> bool {
    let mut x: Vec<_> = a.kids().collect();
    let mut y: Vec<_> = b.kids().collect();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}
