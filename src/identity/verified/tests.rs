//! The cache answers only for the exact token, key-set generation and lifetime it was given, and
//! stays within its capacity.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::*;
use crate::identity::jwt::validate;
use crate::identity::testing::{issuer, key_set, mint, now, rules, Signing, TokenVersion};

const SKEW: Duration = Duration::from_secs(300);
const NOW: u64 = 1_750_000_000;

#[test]
fn only_the_exact_token_gets_the_value() {
    let cache = Verified::new(8, SKEW);
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ0In0.c2ln";
    cache.insert(token, 1, NOW + 60, NOW, "team-a");
    assert_eq!(cache.get(token, 1, NOW), Some("team-a"));
    assert_eq!(cache.get(&token[..token.len() - 1], 1, NOW), None);
    assert_eq!(cache.get(&format!("{token}x"), 1, NOW), None);
    assert_eq!(cache.get(&token.replace("c2ln", "c2lo"), 1, NOW), None);
    assert_eq!(cache.get("", 1, NOW), None);
    // Inserting the same token again replaces, it does not add.
    cache.insert(token, 1, NOW + 60, NOW, "team-b");
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(token, 1, NOW), Some("team-b"));
    assert_eq!(format!("{cache:?}"), "Verified { len: 1, capacity: 8 }");
}

#[test]
fn generation_and_expiry_are_honoured() {
    let cache = Verified::new(8, SKEW);
    cache.insert("t", 2, NOW, NOW - 10, 7u32);
    assert_eq!(cache.get("t", 1, NOW), None);
    assert_eq!(cache.get("t", 3, NOW), None);
    assert_eq!(cache.get("t", 2, NOW), Some(7));
    // Within the skew past `exp`, as `validate` would still accept it; not after.
    assert_eq!(cache.get("t", 2, NOW + 299), Some(7));
    assert_eq!(cache.get("t", 2, NOW + 300), None);
    let exact = Verified::new(8, Duration::ZERO);
    exact.insert("t", 2, NOW, NOW - 10, 7u32);
    assert_eq!(exact.get("t", 2, NOW - 1), Some(7));
    assert_eq!(exact.get("t", 2, NOW), None);
    // The far future does not overflow.
    exact.insert("u", 2, u64::MAX, NOW, 8);
    assert_eq!(exact.get("u", 2, u64::MAX - 1), Some(8));
}

#[test]
fn stays_bounded_dropping_dead_entries_first() {
    let cache = Verified::new(4, Duration::ZERO);
    cache.insert("live-1", 1, NOW + 60, NOW, 1);
    cache.insert("live-2", 1, NOW + 60, NOW, 2);
    cache.insert("expired", 1, NOW - 1, NOW, 3);
    cache.insert("old-keys", 0, NOW + 60, NOW, 4);
    assert_eq!(cache.len(), 4);
    cache.insert("new", 1, NOW + 60, NOW, 5);
    assert_eq!(cache.len(), 3);
    for (token, value) in [("live-1", 1), ("live-2", 2), ("new", 5)] {
        assert_eq!(cache.get(token, 1, NOW), Some(value));
    }
    cache.insert("fourth", 1, NOW + 60, NOW, 6);
    // Full of live entries: all go, the newcomer stays.
    cache.insert("fifth", 1, NOW + 60, NOW, 7);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get("fifth", 1, NOW), Some(7));
    for i in 0..1000 {
        cache.insert(&format!("t{i}"), 1, NOW + 60, NOW, i);
        assert!(cache.len() <= 4);
    }
    let tiny = Verified::new(0, Duration::ZERO);
    tiny.insert("a", 1, NOW + 60, NOW, 1);
    tiny.insert("b", 1, NOW + 60, NOW, 2);
    assert_eq!((tiny.len(), tiny.get("b", 1, NOW)), (1, Some(2)));
}

#[test]
fn a_validated_token_is_served_from_the_cache() {
    let issuer = issuer();
    let token = mint(&issuer, &issuer.claims(TokenVersion::V1), Signing::Current);
    let (keys, rules, now) = (key_set(&issuer), rules(&issuer), now(&issuer));
    let cache = Verified::new(16, rules.clock_skew);
    assert_eq!(cache.get(&token, 1, now), None);
    let claims = validate(&token, &keys, &rules, now).unwrap();
    cache.insert(&token, 1, claims.expires_at, now, claims.app_id.clone());
    assert_eq!(cache.get(&token, 1, now), Some(claims.app_id));
    let expired_at = claims.expires_at + rules.clock_skew.as_secs();
    assert_eq!(cache.get(&token, 1, expired_at), None);
}

/// What the cache saves. Timings are printed, never asserted (this is a shared 2-core machine):
/// `cargo test --release --lib identity::verified::tests::cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn cost() {
    let issuer = issuer();
    let token = mint(&issuer, &issuer.claims(TokenVersion::V1), Signing::Current);
    let (keys, rules, now) = (key_set(&issuer), rules(&issuer), now(&issuer));
    let per = |n: u32, f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed() / n
    };
    let validate_each = per(2_000, &|| {
        black_box(validate(black_box(&token), &keys, &rules, now)).ok();
    });
    let cache = Verified::new(10_000, rules.clock_skew);
    for i in 0..5_000 {
        cache.insert(&format!("{token}{i}"), 1, now + 3600, now, i);
    }
    cache.insert(&token, 1, now + 3600, now, 42);
    let get_each = per(1_000_000, &|| {
        black_box(cache.get(black_box(&token), 1, now));
    });
    let miss_each = per(1_000_000, &|| {
        black_box(cache.get(black_box("eyJ.not.cached"), 1, now));
    });
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let key = keys.key("sim-key-1").unwrap();
    let rsa_each = per(2_000, &|| {
        black_box(key.verify(black_box(signed.as_bytes()), &signature));
    });
    // Both cores asking at once: what the one lock costs when it is contended.
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..1_000_000 {
                    black_box(cache.get(black_box(&token), 1, now));
                }
            });
        }
    });
    let contended_each = start.elapsed() / 1_000_000;
    println!(
        "token {} bytes: validate {validate_each:?} (RSA verify alone {rsa_each:?}), \
         Verified::get hit {get_each:?} (5001 entries), miss {miss_each:?}, \
         hit with 2 threads {contended_each:?} per pair",
        token.len()
    );
}
