//! Reading JWKS and OpenID configuration documents, from Entra's shape to garbage.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::identity::testing::issuer;

fn read(doc: &Value) -> Result<KeySet, String> {
    KeySet::from_jwks(doc.to_string().as_bytes())
}

/// The simulator's first key as a JWK, to spoil field by field.
fn sim_jwk() -> Value {
    issuer().jwks()["keys"][0].clone()
}

#[test]
fn reads_the_simulators_jwks_and_lists_kids_only() {
    let issuer = issuer();
    issuer.rotate_key().unwrap();
    let keys = read(&issuer.jwks()).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(!keys.is_empty());
    assert_eq!(keys.kids().collect::<Vec<_>>(), ["sim-key-1", "sim-key-2"]);
    assert_eq!(format!("{keys:?}"), r#"KeySet(["sim-key-1", "sim-key-2"])"#);
}

#[test]
fn skips_keys_it_cannot_use_and_keeps_the_rest() {
    let good = sim_jwk();
    let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AAAA", "y": "AAAA"});
    let mut enc = good.clone();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let mut ps = good.clone();
    ps["kid"] = json!("ps");
    ps["alg"] = json!("PS256");
    let mut no_kid = good.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut small = good.clone();
    small["kid"] = json!("small");
    small["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
    let mut even_e = good.clone();
    even_e["kid"] = json!("even");
    even_e["e"] = json!("AQAA");
    let mut bad_n = good.clone();
    bad_n["kid"] = json!("bad-n");
    bad_n["n"] = json!("not base64!");
    let mut twin = good.clone();
    twin["n"] = small["n"].clone();
    let doc = json!({"keys": [ec, enc, ps, no_kid, small, even_e, bad_n, 17, good, twin]});
    let keys = read(&doc).unwrap();
    assert_eq!(keys.kids().collect::<Vec<_>>(), ["sim-key-1"]);
    // The first key under a kid is the one kept.
    assert_eq!(keys.key("sim-key-1").unwrap().n.len(), 256);
}

#[test]
fn padding_and_leading_zeros_are_tolerated() {
    let mut jwk = sim_jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let mut padded = vec![0u8];
    padded.extend_from_slice(&n);
    let mut text = URL_SAFE_NO_PAD.encode(&padded);
    assert_ne!(
        text.len() % 4,
        0,
        "the test wants a modulus that needs padding"
    );
    while text.len() % 4 != 0 {
        text.push('=');
    }
    jwk["n"] = json!(text);
    jwk.as_object_mut().unwrap().remove("use");
    let keys = read(&json!({"keys": [jwk]})).unwrap();
    assert_eq!(keys.key("sim-key-1").unwrap().n, n);
}

#[test]
fn fails_on_garbage_and_on_no_usable_key() {
    for doc in [
        &b""[..],
        b"not json",
        b"[]",
        b"{}",
        b"{\"keys\": {}}",
        b"{\"keys\": []}",
        b"{\"keys\": [{\"kty\": \"EC\", \"kid\": \"a\"}]}",
        b"\xff\xfe",
    ] {
        let text = String::from_utf8_lossy(doc);
        assert!(KeySet::from_jwks(doc).is_err(), "{text}");
    }
}

#[test]
fn openid_configuration() {
    let doc = json!({
        "issuer": "https://login.microsoftonline.com/t/v2.0",
        "jwks_uri": "https://login.microsoftonline.com/t/discovery/v2.0/keys",
        "token_endpoint": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
    });
    let config = openid_config(doc.to_string().as_bytes()).unwrap();
    assert_eq!(
        config,
        OpenIdConfig {
            jwks_uri: "https://login.microsoftonline.com/t/discovery/v2.0/keys".into(),
            issuer: Some("https://login.microsoftonline.com/t/v2.0".into()),
        }
    );
    let bare = openid_config(br#"{"jwks_uri": "https://x/keys"}"#).unwrap();
    assert_eq!(bare.issuer, None);
    for bad in [
        &br#"{"issuer": "i"}"#[..],
        br#"{"jwks_uri": ""}"#,
        br#"{"jwks_uri": 7}"#,
        b"<html>",
    ] {
        assert!(openid_config(bad).is_err());
    }
}
