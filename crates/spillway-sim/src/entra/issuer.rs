//! `Issuer`: the simulated tenant's keys, clock, counters and outage switch; mints and verifies tokens.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use serde::Serialize;
use serde_json::{json, Value};

use super::accepted::Accepted;
use super::config::{EntraConfig, TokenOutage, AUDIENCE};
use super::jwt::{b64url, parse, signing_input, Signing, TokenError};
use super::keys::SigningKey;

/// Which token format, as Entra issues them: v1 from managed identity endpoints, v2 from
/// `/{tenant}/oauth2/v2.0/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    /// `iss: https://sts.windows.net/{tenant}/`, `appid`, `ver: 1.0`.
    V1,
    /// `iss: https://login.microsoftonline.com/{tenant}/v2.0`, `azp`, `ver: 2.0`.
    V2,
}

/// A token the endpoints hand out.
#[derive(Debug)]
pub(crate) struct Issued {
    pub token: String,
    pub issued_at: i64,
    pub expires_on: i64,
}

impl Issued {
    pub fn expires_in(&self) -> i64 {
        self.expires_on - self.issued_at
    }
}

/// Token service counters since the issuer was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenStats {
    /// Tokens issued by `GET /metadata/identity/oauth2/token`.
    pub imds: u64,
    /// Tokens issued by `GET /msi/token`.
    pub app_service: u64,
    /// Tokens issued by the v2 endpoint for a `client_secret`.
    pub client_secret: u64,
    /// Tokens issued by the v2 endpoint for a federated `client_assertion`.
    pub client_assertion: u64,
    /// Token requests answered with an error (bad header, credential, scope, ...).
    pub rejected: u64,
    /// Token requests met by a [`TokenOutage`].
    pub unavailable: u64,
    pub jwks_fetches: u64,
    pub openid_fetches: u64,
}

/// A simulated Entra ID tenant. Cheap to clone; clones share everything, so one issuer can stand
/// behind several simulated deployments (give it to each in `SimConfig::issuer`).
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: EntraConfig,
    rng: SystemRandom,
    keys: Mutex<Keys>,
    /// Added to the system clock for every `iat`/`exp` and expiry check, so a test can expire
    /// tokens without waiting (the gateway under test keeps the real clock).
    clock_offset_s: AtomicI64,
    lifetime_s: AtomicU64,
    outage: Mutex<TokenOutage>,
    stats: Mutex<TokenStats>,
    accepted: Accepted,
}

#[derive(Debug)]
struct Keys {
    /// Every key the JWKS publishes and the deployments accept; the last one signs.
    published: Vec<SigningKey>,
    generation: usize,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("tenant", &self.inner.cfg.tenant)
            .field("current_kid", &self.current_kid())
            .finish()
    }
}

/// Identity, not contents: two issuers with equal configs still sign with different keys.
impl PartialEq for Issuer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The state behind each lock is replaced or bumped whole, so a poisoned lock is still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Issuer {
    /// Loads the first test key. Fails only if a committed key fixture is corrupt.
    pub fn new(cfg: EntraConfig) -> io::Result<Self> {
        let first = SigningKey::fixture(1)?;
        Ok(Self {
            inner: Arc::new(Inner {
                lifetime_s: AtomicU64::new(cfg.token_lifetime.as_secs()),
                cfg,
                rng: SystemRandom::new(),
                keys: Mutex::new(Keys {
                    published: vec![first],
                    generation: 1,
                }),
                clock_offset_s: AtomicI64::new(0),
                outage: Mutex::default(),
                stats: Mutex::default(),
                accepted: Accepted::default(),
            }),
        })
    }

    pub fn config(&self) -> &EntraConfig {
        &self.inner.cfg
    }

    /// `iss` of v1 tokens.
    pub fn issuer_v1(&self) -> String {
        format!("https://sts.windows.net/{}/", self.inner.cfg.tenant)
    }

    /// `iss` of v2 tokens, and the `issuer` of the OpenID configuration.
    pub fn issuer_v2(&self) -> String {
        format!(
            "https://login.microsoftonline.com/{}/v2.0",
            self.inner.cfg.tenant
        )
    }

    /// The issuer's clock, in Unix seconds.
    pub fn now(&self) -> i64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        system.saturating_add(self.inner.clock_offset_s.load(Ordering::Relaxed))
    }

    /// Moves the issuer's clock forward (for issuing and for the deployments' expiry checks).
    pub fn advance_clock(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.inner.clock_offset_s.fetch_add(secs, Ordering::Relaxed);
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner
            .lifetime_s
            .store(lifetime.as_secs(), Ordering::Relaxed);
    }

    pub fn token_lifetime(&self) -> Duration {
        Duration::from_secs(self.inner.lifetime_s.load(Ordering::Relaxed))
    }

    pub fn set_outage(&self, outage: TokenOutage) {
        *lock(&self.inner.outage) = outage;
    }

    pub fn outage(&self) -> TokenOutage {
        *lock(&self.inner.outage)
    }

    pub fn stats(&self) -> TokenStats {
        lock(&self.inner.stats).clone()
    }

    pub(crate) fn count(&self, bump: impl FnOnce(&mut TokenStats)) {
        bump(&mut lock(&self.inner.stats));
    }

    /// Adds the next key, makes it the signing key and returns its kid. Older keys stay published
    /// (tokens they signed stay valid) until [`Issuer::retire_old_keys`].
    pub fn rotate_key(&self) -> io::Result<String> {
        let mut keys = lock(&self.inner.keys);
        let key = SigningKey::fixture(keys.generation + 1)?;
        keys.generation += 1;
        let kid = key.kid.clone();
        keys.published.push(key);
        Ok(kid)
    }

    /// Unpublishes every key but the current one: tokens they signed stop verifying.
    pub fn retire_old_keys(&self) {
        let mut keys = lock(&self.inner.keys);
        let keep = keys.published.len().saturating_sub(1);
        keys.published.drain(..keep);
    }

    pub fn current_kid(&self) -> String {
        lock(&self.inner.keys)
            .published
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    pub fn published_kids(&self) -> Vec<String> {
        let keys = lock(&self.inner.keys);
        keys.published.iter().map(|k| k.kid.clone()).collect()
    }

    /// The JWKS document (`{"keys": [...]}`).
    pub fn jwks(&self) -> Value {
        let keys = lock(&self.inner.keys);
        json!({"keys": keys.published.iter().map(SigningKey::jwk).collect::<Vec<_>>()})
    }

    fn key(&self, kid: Option<&str>) -> Option<SigningKey> {
        let keys = lock(&self.inner.keys);
        match kid {
            None => keys.published.last().cloned(),
            Some(kid) => keys.published.iter().find(|k| k.kid == kid).cloned(),
        }
    }

    /// The claims of a valid token issued now, for tests to spoil before [`Issuer::mint`].
    pub fn claims(&self, version: TokenVersion) -> Value {
        let cfg = &self.inner.cfg;
        let now = self.now();
        let lifetime = i64::try_from(self.token_lifetime().as_secs()).unwrap_or(i64::MAX);
        let mut claims = json!({
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(lifetime),
            "oid": cfg.object_id,
            "sub": cfg.object_id,
            "tid": cfg.tenant,
        });
        let extra = match version {
            TokenVersion::V1 => json!({
                "iss": self.issuer_v1(), "appid": cfg.client_id, "appidacr": "2", "ver": "1.0",
            }),
            TokenVersion::V2 => json!({
                "iss": self.issuer_v2(), "azp": cfg.client_id, "azpacr": "1", "ver": "2.0",
            }),
        };
        if let (Some(c), Value::Object(e)) = (claims.as_object_mut(), extra) {
            c.extend(e);
        }
        claims
    }

    /// Signs `claims` (any JSON) the way `signing` says. Fails for `Signing::Kid` of an
    /// unpublished key.
    pub fn mint(&self, claims: &Value, signing: Signing) -> io::Result<String> {
        let current = self.current_kid();
        let (kid, key) = match &signing {
            Signing::AlgNone => {
                let header = json!({"typ": "JWT", "alg": "none"});
                return Ok(format!("{}.", signing_input(&header, claims)));
            }
            Signing::Current | Signing::BadSignature => (current, self.key(None)),
            Signing::UnknownKid => ("sim-key-unknown".into(), self.key(None)),
            Signing::Kid(kid) => (kid.clone(), self.key(Some(kid))),
        };
        let key = key.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no published key {kid:?}"))
        })?;
        let input = signing_input(&json!({"typ": "JWT", "alg": "RS256", "kid": kid}), claims);
        let mut sig = key.sign(&self.inner.rng, input.as_bytes())?;
        if signing == Signing::BadSignature {
            sig[0] ^= 0x01;
        }
        Ok(format!("{input}.{}", b64url(&sig)))
    }

    /// A valid token, with its `iat` and `exp` (Unix seconds) read from the claims, so the
    /// answer's `expires_in` cannot disagree with the token across a second boundary.
    pub(crate) fn issue(&self, version: TokenVersion) -> io::Result<Issued> {
        let claims = self.claims(version);
        let time = |name: &str| claims[name].as_i64().unwrap_or_default();
        Ok(Issued {
            issued_at: time("iat"),
            expires_on: time("exp"),
            token: self.mint(&claims, Signing::Current)?,
        })
    }

    /// [`Issuer::verify`] as a deployment runs it: a token verified before is taken again
    /// without its signature check while it is unexpired and its key is still published.
    pub fn accepts(&self, token: &str) -> Result<(), TokenError> {
        let now = self.now();
        let published = |kid: &str| {
            lock(&self.inner.keys)
                .published
                .iter()
                .any(|k| k.kid == kid)
        };
        if self.inner.accepted.check(token, now, published) {
            return Ok(());
        }
        let claims = self.verify(token)?;
        let kid = parse(token)?
            .header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        self.inner.accepted.insert(token, kid, exp);
        Ok(())
    }

    /// What a simulated deployment checks: RS256 by a published key, this tenant's issuer (v1 or
    /// v2), the cognitiveservices audience, and `nbf <= now < exp` on the issuer's clock.
    pub fn verify(&self, token: &str) -> Result<Value, TokenError> {
        let parsed = parse(token)?;
        let alg = parsed.header.get("alg").and_then(Value::as_str);
        if alg != Some("RS256") {
            return Err(TokenError::Algorithm(alg.unwrap_or("").to_string()));
        }
        let kid = parsed
            .header
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = self
            .key(Some(kid))
            .ok_or_else(|| TokenError::UnknownKid(kid.to_string()))?;
        if !key.verify(parsed.signed.as_bytes(), &parsed.signature) {
            return Err(TokenError::BadSignature);
        }
        let claims = parsed.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        let aud = text("aud");
        if aud.trim_end_matches('/') != AUDIENCE {
            return Err(TokenError::Audience(aud.to_string()));
        }
        let iss = text("iss");
        if iss != self.issuer_v1() && iss != self.issuer_v2() {
            return Err(TokenError::Issuer(iss.to_string()));
        }
        let now = self.now();
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        if time("exp").is_none_or(|exp| now >= exp) {
            return Err(TokenError::Expired);
        }
        if time("nbf").is_some_and(|nbf| now < nbf) {
            return Err(TokenError::NotYetValid);
        }
        Ok(Value::Object(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        Issuer::new(EntraConfig::default()).unwrap()
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let issuer = issuer();
        issuer.set_token_lifetime(Duration::from_secs(60));
        let issued = issuer.issue(TokenVersion::V1).unwrap();
        assert_eq!(issued.expires_in(), 60);
        let token = issued.token;
        let claims = issuer.verify(&token).unwrap();
        assert_eq!(claims["exp"], issued.expires_on);
        assert_eq!(claims["appid"], issuer.config().client_id);
        // 58 and 2, not 59 and 1: the system clock may tick a second meanwhile.
        issuer.advance_clock(Duration::from_secs(58));
        assert!(issuer.verify(&token).is_ok());
        issuer.advance_clock(Duration::from_secs(2));
        assert_eq!(issuer.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn broken_tokens_are_told_apart() {
        let issuer = issuer();
        let good = issuer.claims(TokenVersion::V2);
        let mint = |claims: &Value, s| issuer.mint(claims, s).unwrap();
        let verify = |t: String| issuer.verify(&t).unwrap_err();
        assert_eq!(
            verify(mint(&good, Signing::BadSignature)),
            TokenError::BadSignature
        );
        assert_eq!(
            verify(mint(&good, Signing::UnknownKid)),
            TokenError::UnknownKid("sim-key-unknown".into())
        );
        assert_eq!(
            verify(mint(&good, Signing::AlgNone)),
            TokenError::Algorithm("none".into())
        );
        let mut bad = good.clone();
        bad["aud"] = json!("https://management.azure.com");
        assert!(matches!(
            verify(mint(&bad, Signing::Current)),
            TokenError::Audience(_)
        ));
        let mut bad = good.clone();
        bad["iss"] = json!("https://sts.windows.net/other/");
        assert!(matches!(
            verify(mint(&bad, Signing::Current)),
            TokenError::Issuer(_)
        ));
        let mut bad = good;
        bad["nbf"] = json!(issuer.now() + 600);
        assert_eq!(
            verify(mint(&bad, Signing::Current)),
            TokenError::NotYetValid
        );
    }

    #[test]
    fn rotation_keeps_old_keys_until_retired() {
        let issuer = issuer();
        let old = issuer
            .mint(&issuer.claims(TokenVersion::V1), Signing::Current)
            .unwrap();
        let kid = issuer.rotate_key().unwrap();
        assert_eq!(kid, "sim-key-2");
        assert_eq!(issuer.published_kids(), ["sim-key-1", "sim-key-2"]);
        assert!(issuer.verify(&old).is_ok());
        let by_old = issuer.mint(
            &issuer.claims(TokenVersion::V1),
            Signing::Kid("sim-key-1".into()),
        );
        assert!(issuer.verify(&by_old.unwrap()).is_ok());
        issuer.retire_old_keys();
        assert_eq!(issuer.published_kids(), ["sim-key-2"]);
        assert_eq!(
            issuer.verify(&old),
            Err(TokenError::UnknownKid("sim-key-1".into()))
        );
        assert!(issuer
            .mint(&json!({}), Signing::Kid("sim-key-1".into()))
            .is_err());
    }
}
