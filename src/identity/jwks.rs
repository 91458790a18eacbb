//! An issuer's RSA signing keys, read from its JWKS document, and where its OpenID configuration says that document is.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde::Deserialize;
use serde_json::Value;

/// RFC 7518 writes `n` and `e` without padding, but some publishers pad them, and a key we
/// cannot read is every token it signed refused. Tokens themselves are decoded strictly
/// (`jwt.rs`).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The modulus sizes `RSA_PKCS1_2048_8192_SHA256` verifies with, in bytes. A key outside them
/// could never verify a signature, so it is skipped when read rather than failing every token.
const MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;

/// The RSA signing keys of an issuer, by `kid`.
pub struct KeySet {
    /// Entra publishes a handful of keys, so a scan beats hashing the kid.
    keys: Vec<RsaKey>,
}

/// One public key, held as the big-endian integers ring takes.
pub(super) struct RsaKey {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    /// Whether `signature` is this key's RS256 signature of `message`.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .is_ok()
    }
}

impl KeySet {
    /// From a JWKS document (`{"keys":[{"kty":"RSA","kid":..,"n":..,"e":..,"use":"sig"?}]}`).
    /// Keeps the RSA keys with a kid whose `use` is absent or `sig` and whose `alg`, if any, is
    /// RS256; skips other keys, so a document that also publishes EC or encryption keys still
    /// works. Fails if the document is not a JSON key set or has no usable key. `x5c`, the
    /// certificate Entra also publishes, is not read: it carries the same `n` and `e`.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let doc: Document =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys: Vec<RsaKey> = Vec::new();
        for key in doc.keys.iter().filter_map(rsa_key) {
            // A kid must name one key; a second key under the same kid is ignored.
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "the JWKS has no usable RSA signing key ({} keys, none RSA with a kid, \
                 use \"sig\", and a 2048-8192 bit modulus)",
                doc.keys.len()
            ));
        }
        Ok(KeySet { keys })
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a key set has at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn key(&self, kid: &str) -> Option<&RsaKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// Kids only: the keys are public, but a log line of moduli helps nobody.
impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeySet")
            .field(&self.kids().collect::<Vec<_>>())
            .finish()
    }
}

/// The key a JWK describes, or `None` when it is not a usable RSA signing key.
fn rsa_key(jwk: &Value) -> Option<RsaKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let absent_or = |name: &str, want: &str| jwk.get(name).is_none() || text(name) == Some(want);
    if text("kty") != Some("RSA") || !absent_or("use", "sig") || !absent_or("alg", "RS256") {
        return None;
    }
    let kid = text("kid").filter(|kid| !kid.is_empty())?;
    let n = integer(text("n")?)?;
    let e = integer(text("e")?)?;
    // ring refuses an even exponent, one below 3 and one over 33 bits at verification time.
    let usable_e = (1..=4).contains(&e.len()) && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
    (MODULUS_BYTES.contains(&n.len()) && usable_e).then(|| RsaKey {
        kid: kid.to_string(),
        n,
        e,
    })
}

/// A base64url big-endian integer without its leading zero bytes (some encoders add one to keep
/// the top bit from reading as a sign; ring counts it towards the modulus size).
fn integer(text: &str) -> Option<Vec<u8>> {
    let mut bytes = LENIENT.decode(text).ok()?;
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    Some(bytes)
}

/// What Spillway reads from an OpenID configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenIdConfig {
    /// Where the issuer publishes its signing keys.
    pub jwks_uri: String,
    /// The `iss` its tokens carry (v2 tokens; v1 tokens name `https://sts.windows.net/{tid}/`).
    pub issuer: Option<String>,
}

/// `jwks_uri` and `issuer` from an OpenID configuration document
/// (`/{tenant}/v2.0/.well-known/openid-configuration`).
pub fn openid_config(json: &[u8]) -> Result<OpenIdConfig, String> {
    let config: OpenIdConfig = serde_json::from_slice(json)
        .map_err(|e| format!("not an OpenID configuration document: {e}"))?;
    if config.jwks_uri.is_empty() {
        return Err("the OpenID configuration's jwks_uri is empty".into());
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
