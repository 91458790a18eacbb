//! Compact JWS (JWT) encoding and parsing, by hand so tests can also mint deliberately broken tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How [`super::Issuer::mint`] signs: correctly, or broken in one chosen way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// With the current key.
    Current,
    /// With a published key (an older one after a rotation); an unpublished kid is an error.
    Kid(String),
    /// Correctly, but naming a kid the JWKS does not have.
    UnknownKid,
    /// With the current kid, and a signature that does not verify.
    BadSignature,
    /// `alg: none` and an empty signature.
    AlgNone,
}

/// Why a token was not accepted. The deployment answers 401 for all of them; tests read the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not RS256")]
    Algorithm(String),
    #[error("kid {0:?} is not published")]
    UnknownKid(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("audience {0:?} is not https://cognitiveservices.azure.com")]
    Audience(String),
    #[error("issuer {0:?} is not this tenant's")]
    Issuer(String),
}

/// `header.claims` as base64url JSON, the part a signature covers.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub signed: &'a str,
    pub signature: Vec<u8>,
}

pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("no signature part"))?;
    let (header, claims) = signed
        .split_once('.')
        .ok_or(TokenError::Malformed("not three parts"))?;
    Ok(Parsed {
        header: json_part(header)?,
        claims: json_part(claims)?,
        signed,
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?,
    })
}

fn json_part(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed("part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed("part is not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_malformed() {
        let input = signing_input(&json!({"alg": "RS256"}), &json!({"aud": "x"}));
        let token = format!("{input}.{}", b64url(b"sig"));
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header["alg"], "RS256");
        assert_eq!(parsed.claims["aud"], "x");
        assert_eq!(parsed.signed, input);
        assert_eq!(parsed.signature, b"sig");
        assert!(matches!(parse("abc"), Err(TokenError::Malformed(_))));
        assert!(matches!(parse("a.b.c"), Err(TokenError::Malformed(_))));
    }
}
