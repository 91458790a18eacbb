//! Tokens an `auth: entra` deployment has already verified, as Azure's front end caches them:
//! a benchmark's thousands of requests with one token cost one RSA check, so the simulator's
//! own CPU stays out of what a benchmark of the gateway measures.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Distinct tokens remembered; past it the memory starts afresh (a test has a handful).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct Accepted {
    /// Token to the key id that signed it and its `exp`.
    tokens: Mutex<HashMap<String, (String, i64)>>,
}

impl Accepted {
    /// Whether `token` was accepted before and is still good: unexpired at `now` and signed by
    /// a key that is still published (`published` says), so a retired key's tokens fail again.
    pub(crate) fn check(&self, token: &str, now: i64, published: impl Fn(&str) -> bool) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .is_some_and(|(kid, exp)| now < *exp && published(kid))
    }

    pub(crate) fn insert(&self, token: &str, kid: String, exp: i64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.to_string(), (kid, exp));
    }
}
