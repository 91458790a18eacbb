//! One cached upstream token per credential: read lock-free by the request path, replaced by
//! a background refresher long before it expires.

use super::source::TokenSource;
use arc_swap::ArcSwapOption;
use http::HeaderValue;
use parking_lot::Mutex;
use pingora::connectors::http::Connector;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Stop using a token this long before it expires (at most; a tenth of its lifetime if that is
/// shorter), so that one sent at the last moment is not refused in flight or for clock skew.
const MARGIN: Duration = Duration::from_secs(30);

/// Retries after a failure start here and double up to [`MAX_BACKOFF`]: a failed endpoint is
/// asked again within a second, a down one about twice a minute.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When to refresh a token obtained at `obtained`, and when it stops being usable. Refreshing
/// at half-life leaves the other half for an endpoint outage to pass before requests fail.
pub fn schedule(obtained: Instant, lifetime: Duration) -> (Instant, Instant) {
    // Issuers count the lifetime in whole seconds from an `iat` rounded down: up to a second
    // of it may be gone when the answer arrives (seen with the simulator's 3 s tokens).
    let left = lifetime.saturating_sub(ROUNDING);
    let margin = MARGIN.min(left / 10);
    (obtained + left / 2, obtained + (left - margin))
}

/// How much of a token's stated lifetime may already be gone when it arrives.
const ROUNDING: Duration = Duration::from_secs(1);

/// The wait before the next attempt after `failures` failures in a row (at least one).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// The token in use, with its `Authorization` value built once.
struct Current {
    authorization: HeaderValue,
    unusable_at: Instant,
    expires_at: Instant,
}

/// What only the refresher writes (and `/status` reads); never touched by the request path.
struct State {
    due: Instant,
    failures_in_row: u32,
    refreshes: u64,
    failures: u64,
    last_error: Option<String>,
    /// What the last [`Refreshed`] said; `None` before the first attempt.
    reported_usable: Option<bool>,
}

/// How an attempt changed the credential's readiness: one log line per change (the reason is
/// in [`Credential::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    Unchanged,
    BecameUsable,
    /// Also the answer to a first attempt that failed.
    BecameUnusable,
}

/// For `/status` and metrics. No token, no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialStatus {
    pub label: String,
    pub usable: bool,
    /// Why not usable: the last error, or "no token yet" / "token expired".
    pub reason: Option<String>,
    /// The last attempt's error, also while the cached token still serves: the warning
    /// before an outage reaches requests. `None` after a success.
    pub last_error: Option<String>,
    /// Seconds until the current token expires (0 once it has), `None` without one.
    pub expires_in_seconds: Option<u64>,
    /// Tokens obtained.
    pub refreshes: u64,
    /// Attempts that failed.
    pub failures: u64,
}

/// A token source for one scope and its cached token.
pub struct Credential {
    source: TokenSource,
    scope: String,
    label: String,
    identity: String,
    current: ArcSwapOption<Current>,
    state: Mutex<State>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("label", &self.label)
            .field("scope", &self.scope)
            .field("has_token", &self.current.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(source: TokenSource, scope: String) -> Self {
        let identity = Self::identity_of(&source, &scope);
        Credential {
            label: source.label(),
            identity,
            source,
            scope,
            current: ArcSwapOption::empty(),
            state: Mutex::new(State {
                due: Instant::now(),
                failures_in_row: 0,
                refreshes: 0,
                failures: 0,
                last_error: None,
                reported_usable: None,
            }),
        }
    }

    /// Where its tokens come from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// For logs, metrics and `/status`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What [`Credential::identity`] would be for `source` and `scope`, without building one.
    /// The scope is part of it: the same identity gets other tokens for another scope.
    pub fn identity_of(source: &TokenSource, scope: &str) -> String {
        serde_json::json!([source.identity(), scope]).to_string()
    }

    /// Equal for credentials that can share one cache: the source's identity and the scope.
    /// Holds digests of secrets: compare it, do not log it.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The request path's only call: `Bearer <token>` (marked sensitive, so HPACK never
    /// indexes it), or `None` when no token is usable at `now`: the deployment cannot serve.
    pub fn authorization(&self, now: Instant) -> Option<HeaderValue> {
        let current = self.current.load();
        let current = current.as_ref()?;
        (now < current.unusable_at).then(|| current.authorization.clone())
    }

    /// Whether a token is usable at `now`: what routing asks of every candidate, without the
    /// header value's reference count going up and down.
    pub fn usable(&self, now: Instant) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|c| now < c.unusable_at)
    }

    /// When the refresher should next call [`Credential::refresh`]: at once for a new
    /// credential, at half-life after a token was obtained, after [`backoff`] following a
    /// failure (never later than the current token stops being usable).
    pub fn due(&self) -> Instant {
        self.state.lock().due
    }

    /// Whether an attempt has been made, successful or not (for readiness: a gateway waits
    /// for the first attempt of each credential before it says it is ready).
    pub fn attempted(&self) -> bool {
        self.state.lock().reported_usable.is_some()
    }

    /// Fetches a new token and installs it. Only the background refresher calls this, one
    /// credential at a time, so there is never a second fetch in flight for a credential: no
    /// lock is held across the fetch. The token counts from `now`, taken before the request
    /// was sent, so its expiry is estimated early rather than late.
    pub async fn refresh(
        &self,
        connector: &Connector,
        timeout: Duration,
        now: Instant,
    ) -> Refreshed {
        let fetched = self.source.fetch(connector, &self.scope, timeout).await;
        let installed = fetched.map_err(|e| e.to_string()).and_then(|token| {
            let mut authorization =
                HeaderValue::try_from(format!("Bearer {}", token.value.expose()))
                    .map_err(|_| "the token is not a valid header value".to_string())?;
            authorization.set_sensitive(true);
            let (refresh_at, unusable_at) = schedule(now, token.lifetime);
            self.current.store(Some(Arc::new(Current {
                authorization,
                unusable_at,
                expires_at: now + token.lifetime,
            })));
            Ok(refresh_at)
        });
        let mut state = self.state.lock();
        match installed {
            Ok(refresh_at) => {
                state.due = refresh_at;
                state.failures_in_row = 0;
                state.refreshes += 1;
                state.last_error = None;
            }
            Err(error) => {
                state.failures_in_row = state.failures_in_row.saturating_add(1);
                state.failures += 1;
                let retry = now + backoff(state.failures_in_row);
                state.due = match self.unusable_at() {
                    Some(unusable_at) if unusable_at > now => retry.min(unusable_at),
                    _ => retry,
                };
                state.last_error = Some(error);
            }
        }
        let usable = self.authorization(now).is_some();
        match state.reported_usable.replace(usable) {
            Some(was) if was == usable => Refreshed::Unchanged,
            _ if usable => Refreshed::BecameUsable,
            _ => Refreshed::BecameUnusable,
        }
    }

    pub fn status(&self, now: Instant) -> CredentialStatus {
        let state = self.state.lock();
        let usable = self.authorization(now).is_some();
        let expires_at = self.current.load().as_ref().map(|c| c.expires_at);
        CredentialStatus {
            label: self.label.clone(),
            usable,
            reason: (!usable).then(|| self.reason(&state)),
            last_error: state.last_error.clone(),
            expires_in_seconds: expires_at.map(|at| at.saturating_duration_since(now).as_secs()),
            refreshes: state.refreshes,
            failures: state.failures,
        }
    }

    fn unusable_at(&self) -> Option<Instant> {
        self.current.load().as_ref().map(|c| c.unusable_at)
    }

    fn reason(&self, state: &State) -> String {
        match (&state.last_error, self.current.load().is_some()) {
            (Some(error), _) => error.clone(),
            (None, false) => "no token yet".into(),
            (None, true) => "token expired".into(),
        }
    }
}

#[cfg(test)]
mod tests;
