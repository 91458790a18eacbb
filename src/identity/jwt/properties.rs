//! `validate` never panics, whatever a client sends or an issuer signs, and no edit of a valid
//! token validates.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::identity::testing::{issuer, key_set, mint, now, rules, Issuer, Signing, TokenVersion};

struct Fixture {
    issuer: Issuer,
    token: String,
    keys: KeySet,
    rules: Rules,
    now: u64,
}

/// One issuer and one valid token for every case: minting is an RSA signature.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let issuer = issuer();
    let token = mint(&issuer, &issuer.claims(TokenVersion::V1), Signing::Current);
    Fixture {
        keys: key_set(&issuer),
        rules: rules(&issuer),
        now: now(&issuer),
        issuer,
        token,
    }
});

fn run(token: &str) -> Result<Claims, Rejected> {
    let f = &*FIXTURE;
    validate(token, &f.keys, &f.rules, f.now)
}

/// One small edit, at a position taken modulo the token's length.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    Truncate(usize),
    Swap(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    let ch = prop_oneof![
        8 => prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars().collect::<Vec<_>>()
        ),
        1 => prop::sample::select(vec!['.', '=', '+', '/', ' ', '\0', '\u{e9}']),
    ];
    prop_oneof![
        4 => (at, ch.clone()).prop_map(|(i, c)| Edit::Replace(i, c)),
        2 => (at, ch).prop_map(|(i, c)| Edit::Insert(i, c)),
        2 => at.prop_map(Edit::Delete),
        1 => at.prop_map(Edit::Truncate),
        1 => (at, at).prop_map(|(i, j)| Edit::Swap(i, j)),
    ]
}

/// `token` is ASCII, so every byte index is a char boundary.
fn apply(token: &str, edit: &Edit) -> String {
    let mut t = token.to_string();
    let len = t.len();
    match *edit {
        Edit::Replace(i, c) => {
            t.replace_range(i % len..i % len + 1, c.encode_utf8(&mut [0; 4]));
        }
        Edit::Insert(i, c) => t.insert(i % (len + 1), c),
        Edit::Delete(i) => {
            t.remove(i % len);
        }
        Edit::Truncate(i) => t.truncate(i % len),
        Edit::Swap(i, j) => {
            let mut bytes = t.into_bytes();
            bytes.swap(i % len, j % len);
            t = String::from_utf8(bytes).unwrap_or_default();
        }
    }
    t
}

/// A claim value of every JSON type, right ones among them.
fn claim() -> impl Strategy<Value = Value> {
    let f = &*FIXTURE;
    let now = f.now as i64;
    let right = vec![
        json!(now + 600),
        json!(now - 600),
        json!(crate::identity::testing::AUDIENCE),
        json!(f.issuer.issuer_v1()),
        json!([crate::identity::testing::AUDIENCE, 1]),
    ];
    prop_oneof![
        3 => prop::sample::select(right),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_map(|n| json!(n)),
        1 => ".{0,20}".prop_map(|s| json!(s)),
        1 => Just(Value::Null),
        1 => Just(json!({"nested": [true]})),
    ]
}

proptest! {
    #[test]
    fn any_string_is_refused_without_panic(s in any::<String>()) {
        prop_assert!(run(&s).is_err());
    }

    #[test]
    fn any_jwt_shaped_string_is_refused_without_panic(
        s in "eyJ[A-Za-z0-9_-]{0,300}\\.[A-Za-z0-9_=-]{0,600}\\.[A-Za-z0-9_-]{0,400}"
    ) {
        prop_assert!(run(&s).is_err());
    }

    #[test]
    fn no_edit_of_a_valid_token_validates(edits in prop::collection::vec(edit(), 1..4)) {
        let token = &FIXTURE.token;
        let edited = edits.iter().fold(token.clone(), |t, e| apply(&t, e));
        prop_assume!(&edited != token);
        prop_assert!(run(&edited).is_err(), "{edited}");
    }

    #[test]
    fn any_header_over_a_valid_signature_is_refused(header in any::<Vec<u8>>()) {
        let token = &FIXTURE.token;
        let rest = &token[token.find('.').unwrap_or(0)..];
        let edited = format!("{}{rest}", URL_SAFE_NO_PAD.encode(&header));
        prop_assume!(&edited != token);
        prop_assert!(run(&edited).is_err());
    }
}

proptest! {
    // Each case is an RSA signature.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the issuer signs, a token that validates met every rule.
    #[test]
    fn signed_claims_of_any_type_never_panic(
        fields in prop::collection::vec(
            (prop::sample::select(vec!["exp", "nbf", "iss", "aud", "appid", "oid", "tid"]), claim()),
            0..8,
        )
    ) {
        let f = &*FIXTURE;
        let mut claims = f.issuer.claims(TokenVersion::V1);
        for (name, value) in &fields {
            claims[*name] = value.clone();
        }
        let token = mint(&f.issuer, &claims, Signing::Current);
        if let Ok(got) = run(&token) {
            prop_assert!(f.now < got.expires_at.saturating_add(300));
            prop_assert!(f.rules.issuers.iter().any(|i| claims["iss"] == json!(i)));
        }
    }
}
