//! Body governance: no body panics the parser, and every body that goes upstream carries
//! output limits within the cap, whatever limit, choice count or stream flag it asked for.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;
use spillway::api::Operation;
use spillway::governance::body::{Edits, JsonBody};
use spillway::governance::caps::{decide, edits, CapPolicy, Capped, OnExceed};

const LIMITS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// A JSON value as a client might put it in a numeric field: mostly plausible, so that
/// many bodies get through to the cap, and every kind of wrong one.
fn number_ish(plausible: std::ops::Range<u64>) -> impl Strategy<Value = String> {
    let wrong = prop::sample::select(
        &[
            "0",
            "null",
            "18446744073709551615",
            "99999999999999999999",
            "1e300",
            "-1",
            "2.5",
            "\"100\"",
            "true",
            "[1]",
        ][..],
    );
    prop_oneof![
        6 => plausible.prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        2 => wrong.prop_map(String::from),
    ]
}

/// An object with any of the governed fields (sometimes twice), a prompt and noise, in any
/// order, as raw text so duplicates and odd spacing survive.
fn json_body() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        3 => (prop::sample::select(&LIMITS[..]), number_ish(1..40_000))
            .prop_map(|(k, v)| format!("\"{k}\":{v}")),
        1 => number_ish(1..9).prop_map(|v| format!("\"n\":{v}")),
        1 => number_ish(1..9).prop_map(|v| format!("\"best_of\":{v}")),
        1 => prop::sample::select(&["true", "false", "null", "1", "\"yes\""][..])
            .prop_map(|v| format!("\"stream\":{v}")),
        1 => Just(r#""messages":[{"role":"user","content":"hi"}]"#.to_string()),
        1 => Just(r#""model":"gpt-4o-mini""#.to_string()),
        1 => "[a-z_]{1,12}".prop_map(|k| format!("\"{k}\":{{\"max_tokens\":99999}}")),
    ];
    (prop::collection::vec(field, 0..6), " {0,2}").prop_map(|(fields, pad)| {
        format!(
            "{pad}{{{pad}{}{pad}}}{pad}",
            fields.join(&format!(",{pad}"))
        )
    })
}

fn policy() -> impl Strategy<Value = (CapPolicy, Option<u32>)> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(sync, stream, default, reject, adaptive)| {
            let on_exceed = if reject {
                OnExceed::Reject
            } else {
                OnExceed::Clamp
            };
            let p = CapPolicy {
                sync_max_tokens: sync % 20_000,
                stream_max_tokens: stream % 40_000,
                // At least 1, as the config requires: a default of 0 would be sent as is.
                default_max_tokens: default % 40_000 + 1,
                on_exceed,
            };
            (p, adaptive.map(|a| a % 20_000))
        })
}

/// The cap the request is governed by, decided here independently of `caps::decide`.
fn cap_of(body: &JsonBody, p: &CapPolicy, adaptive: Option<u32>) -> u64 {
    if body.stream {
        u64::from(p.stream_max_tokens)
    } else {
        u64::from(adaptive.map_or(p.sync_max_tokens, |a| a.min(p.sync_max_tokens)))
    }
}

/// Governs `raw` as an operation would; the body sent upstream and what was decided.
fn govern(
    raw: &[u8],
    op: Operation,
    p: &CapPolicy,
    adaptive: Option<u32>,
) -> Option<(JsonBody, Capped, Bytes)> {
    let body = JsonBody::parse(Bytes::copy_from_slice(raw)).ok()?;
    let capped = decide(&body, p, adaptive).ok()?;
    let mut e = Edits::default();
    edits(&body, op, &capped, &mut e);
    let out = e.apply(&body);
    Some((body, capped, out))
}

fn generation_op() -> impl Strategy<Value = Operation> {
    prop::sample::select(&Operation::ALL[..3])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn no_bytes_panic_governance(
        raw in prop_oneof![prop::collection::vec(any::<u8>(), 0..200), json_body().prop_map(String::into_bytes)],
        op in generation_op(),
        (p, adaptive) in policy(),
    ) {
        let _ = govern(&raw, op, &p, adaptive);
    }

    #[test]
    fn every_governed_body_asks_for_at_most_the_cap(
        text in json_body(),
        op in generation_op(),
        (p, adaptive) in policy(),
    ) {
        let Some((body, capped, out)) = govern(text.as_bytes(), op, &p, adaptive) else {
            return Ok(());
        };
        let cap = cap_of(&body, &p, adaptive);
        let choices = body.n.max(body.best_of);
        prop_assert!(capped.applied >= 1);
        prop_assert!(u64::from(capped.applied) * choices <= cap);
        prop_assert_eq!(capped.total_output, u64::from(capped.applied) * choices);
        let sent: Value = serde_json::from_slice(&out).expect("the governed body is JSON");
        let limits: Vec<&Value> = LIMITS.iter().filter_map(|k| sent.get(k)).collect();
        prop_assert!(!limits.is_empty(), "a limit is always sent: {}", String::from_utf8_lossy(&out));
        for v in limits {
            prop_assert_eq!(v.as_u64(), Some(u64::from(capped.applied)));
        }
        // Governing what was sent changes nothing: no field was left for a second pass.
        let (_, again, _) = govern(&out, op, &p, adaptive).expect("the governed body is admitted");
        prop_assert_eq!(again.applied, capped.applied);
    }
}
