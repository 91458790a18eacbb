//! One Entra ID access token's checks, as APIM's `validate-jwt` makes them: an RS256 signature by
//! a key of the issuer's JWKS, lifetime, issuer and audience.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::jwks::KeySet;

/// Entra's access tokens are 1-3 KB. A longer one is refused before any decoding, so a client
/// cannot make us decode and parse megabytes per request.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must say to be accepted. Empty `issuers` or `audiences` accept no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Accepted `iss` values, compared exactly: v1 tokens (what `azure_ad_token_provider`
    /// gets for Azure OpenAI) carry `https://sts.windows.net/{tid}/`, v2 tokens
    /// `https://login.microsoftonline.com/{tid}/v2.0`.
    pub issuers: Vec<String>,
    /// Accepted `aud` values, compared exactly (`https://cognitiveservices.azure.com`).
    pub audiences: Vec<String>,
    /// How far our clock may be from the issuer's, applied to `exp` and `nbf`.
    pub clock_skew: Duration,
}

/// What a valid token says about who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `appid` (v1 tokens) or `azp` (v2): the calling application.
    pub app_id: Option<String>,
    /// `oid`: the calling service principal or managed identity.
    pub object_id: Option<String>,
    /// `tid`: the caller's Entra tenant.
    pub tenant_id: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused; the caller answers 401 for each and counts them by [`Rejected::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a compact JWS with JSON object header and claims, or over 16 KiB.
    Malformed,
    /// `alg` is not RS256 (`none`, and HS256 signed with the public key, among others).
    Algorithm,
    /// No `kid`, or one the key set does not have: the issuer may have rotated, so the caller
    /// may refetch its JWKS once and retry.
    UnknownKey,
    Signature,
    /// Past `exp` plus skew, or no numeric `exp` at all.
    Expired,
    NotYetValid,
    Issuer,
    Audience,
}

impl Rejected {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::Algorithm => "algorithm",
            Rejected::UnknownKey => "unknown_key",
            Rejected::Signature => "signature",
            Rejected::Expired => "expired",
            Rejected::NotYetValid => "not_yet_valid",
            Rejected::Issuer => "issuer",
            Rejected::Audience => "audience",
        }
    }
}

/// Is `token` shaped like a JWT: three segments, the first starting with `eyJ` (`{"`)?
/// Tells a token from an opaque tenant key on every request, so it only counts dots (memchr):
/// checking each byte for base64url cost ~13k instructions per request for a ~900-byte token
/// (callgrind, bench/run --smoke), and `validate` decodes every segment strictly anyway.
/// Says nothing of validity.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && memchr::memchr_iter(b'.', token.as_bytes()).count() == 2
}

/// The header fields we read. Unknown fields are ignored; a duplicated one fails to parse, so no
/// two JSON parsers can disagree on which `alg` counts.
#[derive(Deserialize)]
struct Header {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
}

/// The claims we read, as loosely typed as JSON allows so a wrong type fails its own check.
#[derive(Deserialize)]
struct Payload {
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
    appid: Option<Value>,
    azp: Option<Value>,
    oid: Option<Value>,
    tid: Option<Value>,
}

/// Checks, in order: size and shape, `alg` RS256, a known `kid`, the signature, `exp`, `nbf`,
/// `iss`, `aud`. The claims are parsed only once the signature holds.
pub fn validate(
    token: &str,
    keys: &KeySet,
    rules: &Rules,
    now_unix: u64,
) -> Result<Claims, Rejected> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejected::Malformed);
    }
    let (signed, signature) = token.rsplit_once('.').ok_or(Rejected::Malformed)?;
    // A fourth segment stays in `payload`, where its dot is not base64url.
    let (header, payload) = signed.split_once('.').ok_or(Rejected::Malformed)?;
    let header: Header = json_object(&decode(header)?)?;
    let payload = decode(payload)?;
    let signature = decode(signature)?;
    // RFC 7515 §4.1.11: a header naming extensions it must be read with names ones we lack.
    if header.crit.is_some() {
        return Err(Rejected::Malformed);
    }
    if header.alg.as_ref().and_then(Value::as_str) != Some("RS256") {
        return Err(Rejected::Algorithm);
    }
    let kid = header.kid.as_ref().and_then(Value::as_str);
    let key = kid
        .and_then(|kid| keys.key(kid))
        .ok_or(Rejected::UnknownKey)?;
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(Rejected::Signature);
    }
    let claims: Payload = json_object(&payload)?;

    let skew = rules.clock_skew.as_secs();
    let expires_at = seconds(claims.exp.as_ref()).ok_or(Rejected::Expired)?;
    if now_unix >= expires_at.saturating_add(skew) {
        return Err(Rejected::Expired);
    }
    if let Some(nbf) = &claims.nbf {
        let nbf = seconds(Some(nbf)).ok_or(Rejected::NotYetValid)?;
        if now_unix.saturating_add(skew) < nbf {
            return Err(Rejected::NotYetValid);
        }
    }
    let iss = claims.iss.as_ref().and_then(Value::as_str);
    if !iss.is_some_and(|iss| rules.issuers.iter().any(|i| i == iss)) {
        return Err(Rejected::Issuer);
    }
    let accepted = |aud: &str| rules.audiences.iter().any(|a| a == aud);
    let audience_ok = match &claims.aud {
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
        _ => false,
    };
    if !audience_ok {
        return Err(Rejected::Audience);
    }
    let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
    Ok(Claims {
        app_id: text(&claims.appid).or_else(|| text(&claims.azp)),
        object_id: text(&claims.oid),
        tenant_id: text(&claims.tid),
        expires_at,
    })
}

/// Strict base64url: no padding and no stray trailing bits, so each token has one spelling and a
/// second string cannot carry the same signature.
fn decode(segment: &str) -> Result<Vec<u8>, Rejected> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Rejected::Malformed)
}

fn json_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Rejected> {
    // serde also fills a struct from a JSON array, by position; a JOSE header and a claims set
    // are objects (RFC 7519 §7.2).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Rejected::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| Rejected::Malformed)
}

/// A NumericDate as whole Unix seconds. RFC 7519 allows fractions; a negative one is long past.
fn seconds(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if let Some(s) = value.as_u64() {
        return Some(s);
    }
    // `as` saturates: a date beyond u64 reads as the end of time, not as a panic.
    value.as_f64().map(|s| s.max(0.0) as u64)
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
