//! Fuzzes body governance (parse, cap, splice) with arbitrary bodies and policies.
//! Invariants: nothing panics, and every body that would go upstream carries its applied
//! limit in every limit field, at least one of them, with `applied × choices` within the cap;
//! governing it a second time changes nothing.
//!
//! Input layout: 2 bytes each (little endian) of sync cap, stream cap, default and adaptive
//! cap (0: none), 1 byte of flags (bit 0: reject instead of clamp; bits 1-2: operation),
//! then the body.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use spillway::api::Operation;
use spillway::governance::body::{Edits, JsonBody};
use spillway::governance::caps::{decide, edits, CapPolicy, Capped, OnExceed};
use std::collections::BTreeMap;

const LIMITS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

fuzz_target!(|data: &[u8]| {
    let Some((ctl, raw)) = data.split_first_chunk::<9>() else {
        return;
    };
    let n = |i: usize| u32::from(u16::from_le_bytes([ctl[i], ctl[i + 1]]));
    let policy = CapPolicy {
        sync_max_tokens: n(0),
        stream_max_tokens: n(2),
        // At least 1, as the config requires: a default of 0 would be sent as is.
        default_max_tokens: n(4).max(1),
        on_exceed: if ctl[8] & 1 == 1 {
            OnExceed::Reject
        } else {
            OnExceed::Clamp
        },
    };
    let adaptive = Some(n(6)).filter(|a| *a > 0);
    let op = Operation::ALL[usize::from(ctl[8] >> 1) % 3];
    let Some((body, capped, out)) = govern(raw, op, &policy, adaptive) else {
        return;
    };
    let cap = if body.stream {
        policy.stream_max_tokens
    } else {
        adaptive.map_or(policy.sync_max_tokens, |a| a.min(policy.sync_max_tokens))
    };
    let choices = body.n.max(body.best_of);
    assert!(capped.applied >= 1);
    assert!(u64::from(capped.applied) * choices <= u64::from(cap));
    // Other fields pass on untouched, as sent: numbers no f64 holds (`1e99999`), which a
    // `Value` would refuse, and strings that are not UTF-8, which a `str` cannot hold; raw
    // members of the lossy text keep the structure and the limits as they are.
    let text = String::from_utf8_lossy(&out);
    let sent: BTreeMap<String, &RawValue> =
        serde_json::from_str(&text).expect("the governed body is a JSON object");
    let limits: Vec<_> = LIMITS.iter().filter_map(|k| sent.get(*k)).collect();
    assert!(!limits.is_empty(), "a limit is always sent");
    for v in limits {
        assert_eq!(v.get(), capped.applied.to_string());
    }
    let (_, again, _) = govern(&out, op, &policy, adaptive).expect("the governed body is admitted");
    assert_eq!(again.applied, capped.applied);
});

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
