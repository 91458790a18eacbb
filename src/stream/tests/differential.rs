//! Random SSE-like streams built from fragments that hit the tricky cases (split `\r\n`,
//! `data` without colon, usage look-alikes, comments inside events), checked for the same
//! invariants as the fuzz target: chunking changes nothing, and the stripper removes exactly
//! the usage events.

use super::fixture::{cut, meter, parse, random_cuts};
use crate::stream::{is_usage_chunk, UsageStripper};
use bytes::Bytes;
use std::time::Instant;

const FRAGMENTS: [&str; 24] = [
    "data: ",
    "data:",
    "data",
    "dat",
    ": ping",
    "id: 1",
    "event: x",
    "\n",
    "\n",
    "\r",
    "\r\n",
    " ",
    "{\"choices\":[]",
    "{\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]",
    ",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}",
    ",\"usage\":null",
    "{\"usage\":{\"total_tokens\":3},\"choices\":[]",
    "}",
    "[DONE]",
    "{\"choices\":",
    "[",
    "]",
    "{\"id\":\"c\",",
    "\"choices\":[ ]",
];

const PAYLOADS: [&str; 8] = [
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}",
    "{\"usage\":{\"total_tokens\":3},\"choices\":[]}",
    "{\"id\":\"c\",\n\"choices\":[ ],\n\"usage\":{}}",
    "{\"choices\":[],\"usage\":null}",
    "{\"choices\":[],\"prompt_filter_results\":[]}",
    "{\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}],\"usage\":null}",
    "[DONE]",
    "{\"choices\":[]",
];

const EOLS: [&str; 3] = ["\n", "\r\n", "\r"];

/// One event: maybe a comment or field first, then the payload as one or more `data`
/// lines (a `\n` in the payload starts a new line), then usually a blank line.
fn random_event(rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    let eol = EOLS[rng.usize(0..EOLS.len())];
    match rng.u8(0..6) {
        0 => out.extend_from_slice(format!(": ping{eol}").as_bytes()),
        1 => out.extend_from_slice(format!("id: 7{eol}").as_bytes()),
        _ => {}
    }
    let payload = PAYLOADS[rng.usize(0..PAYLOADS.len())];
    for line in payload.split('\n') {
        let field = ["data: ", "data:"][rng.usize(0..2)];
        out.extend_from_slice(format!("{field}{line}{eol}").as_bytes());
    }
    if rng.u8(0..10) > 0 {
        out.extend_from_slice(eol.as_bytes());
    }
}

/// Mostly well-formed events, with raw fragments mixed in to break the structure.
fn random_stream(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.usize(0..12) {
        if rng.bool() {
            random_event(rng, &mut out);
        } else {
            out.extend_from_slice(FRAGMENTS[rng.usize(0..FRAGMENTS.len())].as_bytes());
        }
    }
    out
}

fn strip(chunks: &[&[u8]]) -> (Vec<u8>, u64) {
    let mut s = UsageStripper::new();
    let mut out = Vec::new();
    // A removal may end with a `\r` whose `\n` opens the next chunk: that `\n` goes too.
    let mut two_calls_ago = 0; // removals before the previous non-empty chunk
    for c in chunks {
        let input = Bytes::copy_from_slice(c);
        let (held, before) = (s.held(), s.removed());
        let forwarded = s.filter(input.clone(), false);
        if held == 0 && s.held() == 0 && s.removed() == two_calls_ago && !input.is_empty() {
            // Nothing held on either side, nothing removed: the very same bytes, no copy.
            assert_eq!(forwarded.as_ptr(), input.as_ptr(), "zero copy");
            assert_eq!(forwarded.len(), input.len(), "zero copy");
        }
        if !input.is_empty() {
            two_calls_ago = before;
        }
        out.extend_from_slice(&forwarded);
    }
    out.extend_from_slice(&s.filter(Bytes::new(), true));
    (out, s.removed())
}

/// `small` is what is left of `big` after removing some bytes, in order.
fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut it = big.iter();
    small.iter().all(|b| it.any(|x| x == b))
}

/// Checks every invariant; returns how many usage events were removed.
pub fn check(input: &[u8], cuts: &[usize]) -> u64 {
    let t0 = Instant::now();
    let chunks = cut(input, cuts);
    let (events, truncated) = parse(&[input]);
    assert_eq!(parse(&chunks), (events.clone(), truncated), "parser");
    assert_eq!(meter(&chunks, t0), meter(&[input], t0), "meter");

    let (out, removed) = strip(&[input]);
    assert_eq!(strip(&chunks), (out.clone(), removed), "stripper");
    assert!(is_subsequence(&out, input), "stripper only removes");
    let kept: Vec<Vec<u8>> = events.into_iter().filter(|e| !is_usage_chunk(e)).collect();
    assert_eq!(parse(&[&out]).0, kept, "exactly the usage events go");
    removed
}

#[test]
fn random_fragment_streams_keep_every_invariant() {
    let mut rng = fastrand::Rng::with_seed(2024);
    let mut with_removal = 0;
    for round in 0..3000 {
        let input = random_stream(&mut rng);
        let cuts = random_cuts(input.len(), &mut rng);
        let text = String::from_utf8_lossy(&input);
        match std::panic::catch_unwind(|| check(&input, &cuts)) {
            Ok(removed) => with_removal += u32::from(removed > 0),
            Err(_) => panic!("round {round}: {text:?} cut at {cuts:?}"),
        }
    }
    // The fragments must actually produce usage events, or the test proves little.
    assert!(
        with_removal > 500,
        "only {with_removal} streams had a usage event"
    );
}
