//! Route classification: a path is accepted only in one of its canonical spellings.

use proptest::prelude::*;
use spillway::api::{classify, is_alias, Operation, Route, Shape};

/// The path a route is spelt as, rendered from the route alone.
fn canonical(route: &Route) -> String {
    match route.shape {
        Shape::Dated => format!(
            "/openai/deployments/{}/{}",
            route.alias.as_deref().unwrap_or_default(),
            route.operation.path()
        ),
        Shape::V1 => format!("/openai/v1/{}", route.operation.path()),
    }
}

/// Pieces of real and almost-real paths: glued together they reach the near misses (dot and
/// empty segments, encodings, parameters, other cases) that random text almost never does.
const PIECES: &[&str] = &[
    "/",
    "/openai",
    "/OpenAI",
    "/deployments",
    "/v1",
    "/V1",
    "openai",
    "deployments",
    "v1",
    "chat",
    "/chat",
    "completions",
    "/completions",
    "chat/completions",
    "embeddings",
    "responses",
    "/responses",
    "Embeddings",
    "mini",
    "gpt-4o-mini",
    "m.1",
    ".",
    "..",
    "/.",
    "/..",
    "./",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "%2e",
    "%2E%2E",
    "%6E",
    "\\",
    ";",
    ";x",
    "?",
    "#",
    " ",
    "\t",
    "\0",
    "é",
    "",
    "//",
    "-",
    "_",
];

fn glued() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..12).prop_map(|p| p.concat())
}

/// A canonical path with one character inserted or replaced.
fn near_canonical() -> impl Strategy<Value = String> {
    let base = (
        prop::sample::select(&Operation::ALL[..]),
        any::<bool>(),
        "[a-z0-9._-]{1,8}",
    )
        .prop_map(|(op, dated, alias)| {
            if dated {
                format!("/openai/deployments/{alias}/{}", op.path())
            } else {
                format!("/openai/v1/{}", op.path())
            }
        });
    let hostile = prop::sample::select(&['/', '.', '%', '\\', ';', 'A', 'C', ' ', '\0', 'é'][..]);
    (base, any::<prop::sample::Index>(), hostile, any::<bool>()).prop_map(
        |(path, at, c, replace)| {
            let chars: Vec<char> = path.chars().collect();
            let i = at.index(chars.len());
            let mut out: String = chars[..i].iter().collect();
            out.push(c);
            let rest = if replace { i + 1 } else { i };
            out.extend(chars[rest.min(chars.len())..].iter());
            out
        },
    )
}

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::POST),
        Just(http::Method::GET),
        "[A-Za-z]{1,8}".prop_map(|m| http::Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn what_classify_accepts_is_exactly_its_canonical_spelling(
        method in method(),
        path in prop_oneof![any::<String>(), glued(), near_canonical()],
    ) {
        if let Some(route) = classify(&method, &path) {
            prop_assert_eq!(&method, &http::Method::POST);
            prop_assert_eq!(canonical(&route), path.as_str());
            if let Some(alias) = &route.alias {
                prop_assert!(is_alias(alias));
            }
            for segment in path.split('/').skip(1) {
                prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
            }
            prop_assert!(!path.contains(['%', '\\', ';']) && path.is_ascii());
        }
    }
}
