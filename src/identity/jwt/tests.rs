//! Good v1 and v2 tokens from the simulator's issuer, and each defect refused for its own reason.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

use super::*;
use crate::identity::testing::{issuer, key_set, mint, now, rules, Issuer, Signing, TokenVersion};

/// `claims` minted as `signing` and validated against the issuer's keys now.
fn check(issuer: &Issuer, claims: &Value, signing: Signing) -> Result<Claims, Rejected> {
    let token = mint(issuer, claims, signing);
    validate(&token, &key_set(issuer), &rules(issuer), now(issuer))
}

fn spoiled(issuer: &Issuer, field: &str, value: Value) -> Result<Claims, Rejected> {
    let mut claims = issuer.claims(TokenVersion::V1);
    claims[field] = value;
    check(issuer, &claims, Signing::Current)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn good_v1_and_v2_tokens_say_who_sent_them() {
    let issuer = issuer();
    let cfg = issuer.config().clone();
    for version in [TokenVersion::V1, TokenVersion::V2] {
        let claims = issuer.claims(version);
        let token = mint(&issuer, &claims, Signing::Current);
        assert!(looks_like_jwt(&token));
        let got = validate(&token, &key_set(&issuer), &rules(&issuer), now(&issuer));
        assert_eq!(
            got,
            Ok(Claims {
                app_id: Some(cfg.client_id.clone()),
                object_id: Some(cfg.object_id.clone()),
                tenant_id: Some(cfg.tenant.clone()),
                expires_at: claims["exp"].as_u64().unwrap(),
            }),
            "{version:?}"
        );
    }
}

#[test]
fn lifetime_with_skew() {
    let issuer = issuer();
    let t = issuer.now();
    // The rules allow 300 s of skew.
    assert_eq!(
        spoiled(&issuer, "exp", json!(t - 301)),
        Err(Rejected::Expired)
    );
    assert!(spoiled(&issuer, "exp", json!(t - 200)).is_ok());
    assert_eq!(
        spoiled(&issuer, "nbf", json!(t + 400)),
        Err(Rejected::NotYetValid)
    );
    assert!(spoiled(&issuer, "nbf", json!(t + 200)).is_ok());
    assert_eq!(
        spoiled(&issuer, "exp", json!("soon")),
        Err(Rejected::Expired)
    );
    assert_eq!(spoiled(&issuer, "exp", json!(-5)), Err(Rejected::Expired));
    assert_eq!(
        spoiled(&issuer, "nbf", json!("now")),
        Err(Rejected::NotYetValid)
    );
    assert!(spoiled(&issuer, "exp", json!(t as f64 + 60.5)).is_ok());
    assert!(spoiled(&issuer, "exp", json!(1e300)).is_ok());
    let mut claims = issuer.claims(TokenVersion::V2);
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&issuer, &claims, Signing::Current),
        Err(Rejected::Expired)
    );
    claims = issuer.claims(TokenVersion::V2);
    claims.as_object_mut().unwrap().remove("nbf");
    assert!(check(&issuer, &claims, Signing::Current).is_ok());
}

#[test]
fn issuer_and_audience_are_exact() {
    let issuer = issuer();
    let aud = crate::identity::testing::AUDIENCE;
    let refused = |field, value| spoiled(&issuer, field, value).unwrap_err();
    assert_eq!(
        refused("iss", json!("https://sts.windows.net/other/")),
        Rejected::Issuer
    );
    let v1 = issuer.issuer_v1();
    assert_eq!(
        refused("iss", json!(v1.trim_end_matches('/'))),
        Rejected::Issuer
    );
    assert_eq!(refused("iss", json!([v1])), Rejected::Issuer);
    assert_eq!(refused("iss", Value::Null), Rejected::Issuer);
    assert_eq!(
        refused("aud", json!("https://management.azure.com")),
        Rejected::Audience
    );
    assert_eq!(refused("aud", json!(format!("{aud}/"))), Rejected::Audience);
    assert_eq!(refused("aud", json!(["a", "b"])), Rejected::Audience);
    assert_eq!(refused("aud", json!([])), Rejected::Audience);
    assert_eq!(refused("aud", json!({"aud": aud})), Rejected::Audience);
    assert!(spoiled(&issuer, "aud", json!(["https://other", aud])).is_ok());
    assert!(spoiled(&issuer, "aud", json!([7, aud])).is_ok());
    let mut nobody = rules(&issuer);
    nobody.issuers.clear();
    let token = mint(&issuer, &issuer.claims(TokenVersion::V1), Signing::Current);
    let got = validate(&token, &key_set(&issuer), &nobody, now(&issuer));
    assert_eq!(got, Err(Rejected::Issuer));
}

#[test]
fn signature_key_and_algorithm() {
    let issuer = issuer();
    let claims = issuer.claims(TokenVersion::V1);
    let refused = |signing| check(&issuer, &claims, signing).unwrap_err();
    assert_eq!(refused(Signing::BadSignature), Rejected::Signature);
    assert_eq!(refused(Signing::UnknownKid), Rejected::UnknownKey);
    assert_eq!(refused(Signing::AlgNone), Rejected::Algorithm);

    // A valid token's signature under another header: each of these headers is refused before
    // the signature is looked at.
    let good = mint(&issuer, &claims, Signing::Current);
    let (_, rest) = good.split_once('.').unwrap();
    let with_header = |header: Value| format!("{}.{rest}", b64(header.to_string().as_bytes()));
    let keys = key_set(&issuer);
    let run = |token: &str| validate(token, &keys, &rules(&issuer), now(&issuer));
    for alg in [
        json!("none"),
        json!("rs256"),
        json!("RS384"),
        json!("PS256"),
        json!(null),
    ] {
        let header = json!({"typ": "JWT", "alg": alg, "kid": "sim-key-1"});
        assert_eq!(run(&with_header(header)), Err(Rejected::Algorithm));
    }
    assert_eq!(
        run(&with_header(json!({"alg": "RS256"}))),
        Err(Rejected::UnknownKey)
    );
    assert_eq!(
        run(&with_header(json!({"alg": "RS256", "kid": 1}))),
        Err(Rejected::UnknownKey)
    );
    let crit = json!({"alg": "RS256", "kid": "sim-key-1", "crit": ["b64"], "b64": false});
    assert_eq!(run(&with_header(crit)), Err(Rejected::Malformed));
    // The same header with its fields reordered (json! would sort them back) is different
    // signed bytes.
    let reordered = r#"{"typ":"JWT","kid":"sim-key-1","alg":"RS256"}"#;
    let token = format!("{}.{rest}", b64(reordered.as_bytes()));
    assert_eq!(run(&token), Err(Rejected::Signature));
    let twice = r#"{"alg":"none","alg":"RS256","kid":"sim-key-1"}"#;
    assert_eq!(
        run(&format!("{}.{rest}", b64(twice.as_bytes()))),
        Err(Rejected::Malformed)
    );
}

/// The key-confusion attack: HS256 with the RSA public key as the HMAC secret. A verifier that
/// took `alg` from the token would check it with the key it has, and accept.
#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let issuer = issuer();
    let jwk = issuer.jwks()["keys"][0].clone();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let claims = issuer.claims(TokenVersion::V1);
    let header = json!({"typ": "JWT", "alg": "HS256", "kid": jwk["kid"]});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    for secret in [n.as_slice(), jwk.to_string().as_bytes()] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        let token = format!("{input}.{}", b64(tag.as_ref()));
        assert!(looks_like_jwt(&token));
        let got = validate(&token, &key_set(&issuer), &rules(&issuer), now(&issuer));
        assert_eq!(got, Err(Rejected::Algorithm));
    }
}

#[test]
fn broken_shapes_are_malformed() {
    let issuer = issuer();
    let good = mint(&issuer, &issuer.claims(TokenVersion::V1), Signing::Current);
    let keys = key_set(&issuer);
    let run = |token: &str| validate(token, &keys, &rules(&issuer), now(&issuer));
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let not_json = b64(b"{\"alg\": RS256");
    let array = b64(br#"["RS256", "sim-key-1", null]"#);
    let huge = format!("{header}.{}.{signature}", "A".repeat(16 * 1024));
    for token in [
        "",
        ".",
        "..",
        "garbage",
        "a.b",
        "a.b.c",
        &good[..good.len() / 2],
        &good[..header.len()],
        &good[..header.len() + 1],
        &format!("{good}."),
        &format!("{good}.{signature}"),
        &format!("{header}.{payload}.{signature}="),
        &format!("{header}=.{payload}.{signature}"),
        &format!("{header}.{payload}+.{signature}"),
        &format!("{not_json}.{payload}.{signature}"),
        &format!("{array}.{payload}.{signature}"),
        &format!(".{payload}.{signature}"),
        &format!("{}.{payload}.{signature}", &header[..header.len() - 1]),
        &huge,
        &format!("{header}.{payload}.{signature}\u{e9}"),
    ] {
        assert_eq!(run(token), Err(Rejected::Malformed), "{token:.80}");
    }
    // Claims are read only under a good signature, so a garbage payload is a bad signature.
    let empty = format!("{header}..{signature}");
    assert_eq!(run(&empty), Err(Rejected::Signature));
    let garbage = format!("{header}.{}.{signature}", b64(b"\xff not json"));
    assert_eq!(run(&garbage), Err(Rejected::Signature));
    // Signed, but the claims are not an object: only the issuer could do this.
    for claims in [json!("a string"), json!([1, 2]), json!(null)] {
        let token = mint(&issuer, &claims, Signing::Current);
        assert_eq!(run(&token), Err(Rejected::Malformed), "{claims}");
    }
}

#[test]
fn a_rotated_key_is_unknown_until_the_jwks_is_read_again() {
    let issuer = issuer();
    let before = key_set(&issuer);
    let kid = issuer.rotate_key().unwrap();
    let token = mint(&issuer, &issuer.claims(TokenVersion::V2), Signing::Current);
    let old = mint(
        &issuer,
        &issuer.claims(TokenVersion::V2),
        Signing::Kid("sim-key-1".into()),
    );
    let rules = rules(&issuer);
    let now = now(&issuer);
    assert_eq!(
        validate(&token, &before, &rules, now),
        Err(Rejected::UnknownKey)
    );
    assert!(validate(&old, &before, &rules, now).is_ok());
    let after = key_set(&issuer);
    assert!(after.kids().any(|k| k == kid));
    assert!(validate(&token, &after, &rules, now).is_ok());
    issuer.retire_old_keys();
    let retired = key_set(&issuer);
    assert_eq!(
        validate(&old, &retired, &rules, now),
        Err(Rejected::UnknownKey)
    );
}

#[test]
fn looks_like_jwt_tells_tokens_from_keys() {
    assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJ9."));
    for not in [
        "",
        "sk-tenant-key",
        "eyJ",
        "eyJ.a",
        "eyJ.a.b.c",
        "abc.def.ghi",
    ] {
        assert!(!looks_like_jwt(not), "{not}");
    }
    // The shape only: what is in the segments is `validate`'s to refuse.
    assert!(looks_like_jwt("eyJ.a+b.c"));
    let iss = issuer();
    assert_eq!(
        validate("eyJ.a+b.c", &key_set(&iss), &rules(&iss), now(&iss)).unwrap_err(),
        Rejected::Malformed
    );
}

#[test]
fn every_reason_has_its_own_label() {
    let all = [
        Rejected::Malformed,
        Rejected::Algorithm,
        Rejected::UnknownKey,
        Rejected::Signature,
        Rejected::Expired,
        Rejected::NotYetValid,
        Rejected::Issuer,
        Rejected::Audience,
    ];
    let mut labels: Vec<_> = all.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), all.len());
    assert_eq!(Rejected::UnknownKey.as_str(), "unknown_key");
}
