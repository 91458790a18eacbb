//! The token service's RSA signing keys: committed test fixtures, rotated on demand, published as JWKS.

use std::fmt;
use std::io;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

use super::jwt::b64url;

/// `keys/README.md` says why these are committed rather than generated.
const FIXTURES: [&str; 4] = [
    include_str!("../../keys/sim-test-key-1.pem"),
    include_str!("../../keys/sim-test-key-2.pem"),
    include_str!("../../keys/sim-test-key-3.pem"),
    include_str!("../../keys/sim-test-key-4.pem"),
];

/// One signing key. Rotation cycles through the fixtures, so `kid` (not the key material) is what
/// tells generations apart: after four rotations a retired key's material comes back under a new kid.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pub kid: String,
    pair: Arc<RsaKeyPair>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// The key of rotation `generation` (1 for the key the issuer starts with).
    pub fn fixture(generation: usize) -> io::Result<Self> {
        let pem = FIXTURES[generation.saturating_sub(1) % FIXTURES.len()];
        let der = pem_body(pem)?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sim key: {e}")))?;
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        Ok(Self {
            kid: format!("sim-key-{generation}"),
            pair: Arc::new(pair),
            n: public.n,
            e: public.e,
        })
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over `message`.
    pub fn sign(&self, rng: &SystemRandom, message: &[u8]) -> io::Result<Vec<u8>> {
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, rng, message, &mut sig)
            .map_err(|_| io::Error::other("sim key: RSA signing failed"))?;
        Ok(sig)
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .is_ok()
    }

    /// The JWKS entry. Entra also publishes `x5t`/`x5c` (a certificate); a verifier needs only `n`/`e`.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(&self.n),
            "e": b64url(&self.e),
        })
    }
}

fn pem_body(pem: &str) -> io::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD
        .decode(body.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("sim key PEM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_signs_and_verifies() {
        let rng = SystemRandom::new();
        for generation in 1..=FIXTURES.len() {
            let key = SigningKey::fixture(generation).unwrap();
            let sig = key.sign(&rng, b"hello").unwrap();
            assert!(key.verify(b"hello", &sig));
            assert!(!key.verify(b"hellO", &sig));
            assert_eq!(key.jwk()["e"], "AQAB");
        }
        let fifth = SigningKey::fixture(5).unwrap();
        assert_eq!(fifth.kid, "sim-key-5");
        assert_eq!(fifth.n, SigningKey::fixture(1).unwrap().n);
    }
}
