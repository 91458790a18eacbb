//! The simulator's Entra ID issuer, set up the way the identity tests need it.

use std::time::Duration;

use serde_json::Value;
pub(crate) use spillway_sim::{EntraConfig, Issuer, Signing, TokenVersion};

use super::jwks::KeySet;
use super::jwt::Rules;

pub(crate) const AUDIENCE: &str = "https://cognitiveservices.azure.com";

pub(crate) fn issuer() -> Issuer {
    Issuer::new(EntraConfig::default()).expect("the simulator's key fixtures load")
}

pub(crate) fn key_set(issuer: &Issuer) -> KeySet {
    KeySet::from_jwks(issuer.jwks().to_string().as_bytes()).expect("the simulator's JWKS reads")
}

/// Both of the tenant's issuers and Azure OpenAI's audience, with APIM's default skew.
pub(crate) fn rules(issuer: &Issuer) -> Rules {
    Rules {
        issuers: vec![issuer.issuer_v1(), issuer.issuer_v2()],
        audiences: vec![AUDIENCE.into()],
        clock_skew: Duration::from_secs(300),
    }
}

pub(crate) fn now(issuer: &Issuer) -> u64 {
    u64::try_from(issuer.now()).expect("after 1970")
}

pub(crate) fn mint(issuer: &Issuer, claims: &Value, signing: Signing) -> String {
    issuer.mint(claims, signing).expect("the simulator mints")
}
