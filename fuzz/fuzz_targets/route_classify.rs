//! Fuzzes route classification with arbitrary methods and paths. Invariants: nothing panics,
//! and whatever `classify` accepts is a POST whose path is exactly the canonical spelling of
//! the route it returns (so no dot or empty segment, encoding, backslash, `;` parameter or
//! case variant gets through).
//!
//! Input layout: 1 byte choosing the method (POST for even values, else a method made of the
//! next byte), then the path as UTF-8.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway::api::{classify, is_alias, Shape};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let (method, path) = if m % 2 == 0 {
        (http::Method::POST, rest)
    } else {
        let Some((&b, path)) = rest.split_first() else {
            return;
        };
        match http::Method::from_bytes(&[b.max(b'A')]) {
            Ok(method) => (method, path),
            Err(_) => return,
        }
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Some(route) = classify(&method, path) else {
        return;
    };
    assert_eq!(method, http::Method::POST);
    let canonical = match route.shape {
        Shape::Dated => {
            let alias = route
                .alias
                .as_deref()
                .expect("a dated route names its alias");
            assert!(is_alias(alias));
            format!("/openai/deployments/{alias}/{}", route.operation.path())
        }
        Shape::V1 => format!("/openai/v1/{}", route.operation.path()),
    };
    assert_eq!(canonical, path);
});
