//! Tenants who sign in with Entra ID tokens: which tenant a presented token is, validated
//! once per token (the RSA check) and then looked up per request.

use super::jwt::{validate, Claims, Rejected, Rules};
use super::signing_keys::{Keys, SigningKeys};
use super::verified::Verified;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Distinct tokens remembered as validated. Each is a client's token for up to an hour, so
/// this is the number of distinct callers an hour, with room to spare.
const VERIFIED_CAPACITY: usize = 16_384;

/// Why a token is not a tenant's: a defect of the token, or a valid token of no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Token(Rejected),
    /// Valid, but neither its object id nor its application id belongs to a tenant.
    NoTenant,
    /// No signing keys could be fetched yet.
    NoKeys,
}

impl Refused {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Token(r) => r.as_str(),
            Refused::NoTenant => "no_tenant",
            Refused::NoKeys => "no_keys",
        }
    }
}

/// The `entra_id` section of one config: the rules, the live keys, and which identities are
/// which tenant (by index into the config's tenants).
pub struct TokenTenants {
    pub rules: Rules,
    pub keys: Arc<SigningKeys>,
    pub refresh_every: Duration,
    pub min_refetch: Duration,
    by_object: HashMap<String, usize>,
    by_app: HashMap<String, usize>,
    /// Belongs to this config: a reload that moves an identity to another tenant starts
    /// afresh.
    verified: Verified<usize>,
}

impl std::fmt::Debug for TokenTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTenants")
            .field("keys", &self.keys)
            .field("identities", &(self.by_object.len() + self.by_app.len()))
            .finish_non_exhaustive()
    }
}

impl TokenTenants {
    pub fn new(
        rules: Rules,
        keys: Arc<SigningKeys>,
        refresh_every: Duration,
        min_refetch: Duration,
        by_object: HashMap<String, usize>,
        by_app: HashMap<String, usize>,
    ) -> Self {
        TokenTenants {
            verified: Verified::new(VERIFIED_CAPACITY, rules.clock_skew),
            rules,
            keys,
            refresh_every,
            min_refetch,
            by_object,
            by_app,
        }
    }

    /// The tenant (index) `token` belongs to. A token seen before costs a hash and a lookup;
    /// a new one an RSA verification; one signed by a key not yet known, one more fetch of
    /// the keys at most every `min_refetch`.
    pub async fn authenticate(&self, token: &str) -> Result<usize, Refused> {
        let now = unix_now();
        let keys = self.keys.current().ok_or(Refused::NoKeys)?;
        if let Some(tenant) = self.verified.get(token, keys.generation, now) {
            return Ok(tenant);
        }
        match self.check(token, &keys, now) {
            Err(Refused::Token(Rejected::UnknownKey)) => {
                // Boxed: a fetch's future (Pingora's connector inside) is kilobytes, and as
                // part of admission's future it was copied into every request's boxed
                // request_filter future: ~11k instructions per request, keys or tokens
                // (callgrind, bench/run --smoke, lean config: 171.8k against 160.1k).
                let fresh = Box::pin(self.keys.refetch(keys.generation, self.min_refetch))
                    .await
                    .ok_or(Refused::Token(Rejected::UnknownKey))?;
                self.check(token, &fresh, now)
            }
            other => other,
        }
    }

    fn check(&self, token: &str, keys: &Keys, now: u64) -> Result<usize, Refused> {
        let claims = validate(token, &keys.set, &self.rules, now).map_err(Refused::Token)?;
        let tenant = self.tenant_of(&claims).ok_or(Refused::NoTenant)?;
        self.verified
            .insert(token, keys.generation, claims.expires_at, now, tenant);
        Ok(tenant)
    }

    /// The object id names one identity; the application id every identity of an app.
    fn tenant_of(&self, claims: &Claims) -> Option<usize> {
        // The config holds ids lower-cased (GUIDs compare without case); Entra writes them
        // lower-case, so this allocates only on a cache miss for an odd token.
        let find = |map: &HashMap<String, usize>, id: &Option<String>| {
            let id = id.as_deref()?;
            map.get(id)
                .or_else(|| map.get(&id.to_ascii_lowercase()))
                .copied()
        };
        let by_object = find(&self.by_object, &claims.object_id);
        let by_app = || find(&self.by_app, &claims.app_id);
        by_object.or_else(by_app)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
