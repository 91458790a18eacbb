//! The usage stripper: output is the input minus exactly the usage event, for every
//! chunking; zero-copy when nothing is removed; at most one event held.

use super::fixture::{azure_stream, cut, events, random_cuts, render, usage};
use crate::stream::is_usage_chunk;
use crate::stream::strip::{UsageStripper, MAX_HOLD};
use bytes::Bytes;

/// Feeds the chunks (the last with `end_of_stream`), returns (input, output) per chunk.
fn run(stripper: &mut UsageStripper, chunks: &[&[u8]]) -> Vec<(Bytes, Bytes)> {
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let input = Bytes::copy_from_slice(c);
            let out = stripper.filter(input.clone(), i == last);
            (input, out)
        })
        .collect()
}

fn joined(pairs: &[(Bytes, Bytes)]) -> Vec<u8> {
    pairs.iter().flat_map(|(_, out)| out.to_vec()).collect()
}

fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

#[test]
fn removes_exactly_the_usage_event_at_every_split_position() {
    for eol in ["\n", "\r\n"] {
        let input = render(&events(4, true), eol);
        let want = render(&events(4, false), eol);
        assert_eq!(
            input.len() - want.len(),
            format!("data: {}{eol}{eol}", usage(4)).len()
        );
        for p in 0..=input.len() {
            let mut s = UsageStripper::new();
            let out = joined(&run(&mut s, &cut(&input, &[p])));
            assert!(out == want, "eol {eol:?}, split at {p}");
            assert_eq!(s.removed(), 1, "eol {eol:?}, split at {p}");
        }
    }
}

#[test]
fn removes_exactly_the_usage_event_byte_by_byte_and_at_random() {
    for eol in ["\n", "\r\n", "\r"] {
        let input = render(&events(6, true), eol);
        let want = render(&events(6, false), eol);
        let mut s = UsageStripper::new();
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert!(joined(&run(&mut s, &bytes)) == want, "eol {eol:?}");

        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..300 {
            let at = random_cuts(input.len(), &mut rng);
            let mut s = UsageStripper::new();
            assert!(
                joined(&run(&mut s, &cut(&input, &at))) == want,
                "cuts {at:?}"
            );
        }
    }
}

#[test]
fn holds_at_most_one_candidate_event_and_only_a_prefix_of_others() {
    let events = events(5, true);
    let input = render(&events, "\n");
    // The annotation and usage chunks are the only ones held to their end.
    let longest_candidate = events
        .iter()
        .filter(|e| e.starts_with(r#"{"choices":[]"#))
        .map(|e| e.len() + "data: \n".len())
        .max()
        .unwrap_or(0);
    let mut s = UsageStripper::new();
    let mut at = 0;
    for e in &events {
        let event = format!("data: {e}\n\n");
        let mut max_held = 0;
        for b in event.as_bytes() {
            s.filter(Bytes::copy_from_slice(&[*b]), false);
            max_held = max_held.max(s.held());
        }
        at += event.len();
        assert_eq!(s.held(), 0, "nothing held between events (at {at})");
        if e.starts_with(r#"{"choices":[{"#) || e == "[DONE]" {
            // Held only until `data: {"choices":[{` is read.
            assert!(max_held <= 20, "held {max_held} bytes of {e}");
        } else {
            assert!(max_held <= longest_candidate, "held {max_held} bytes");
        }
    }
    assert_eq!(at, input.len());
}

#[test]
fn without_usage_chunks_come_back_as_the_same_bytes() {
    let input = azure_stream(6, false);
    let whole = Bytes::from(input.clone());
    let mut s = UsageStripper::new();
    let out = s.filter(whole.clone(), true);
    assert!(same(&out, &whole), "whole stream is returned as is");

    // One chunk per event, as Azure usually writes them.
    let chunks: Vec<Vec<u8>> = events(6, false)
        .iter()
        .map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut s = UsageStripper::new();
    for (i, o) in run(&mut s, &refs) {
        assert!(same(&i, &o), "event-aligned chunk is returned as is");
    }

    // Cut anywhere: the bytes always match; the chunks are the same `Bytes` unless the cut
    // falls where the stripper must hold: the first bytes of an event, or inside the
    // annotation chunk (it has `"choices":[]`, so only its end tells it from usage).
    let mut starts = Vec::new();
    let mut pos = 0;
    for e in events(6, false) {
        starts.push(pos);
        pos += format!("data: {e}\n\n").len();
    }
    let annotation_end = starts[1];
    let mut zero_copy = 0;
    for p in 0..=input.len() {
        let mut s = UsageStripper::new();
        let pairs = run(&mut s, &cut(&input, &[p]));
        assert!(joined(&pairs) == input, "split at {p}");
        let near_start = starts.iter().any(|&st| p > st && p < st + 20);
        if !near_start && p >= annotation_end {
            for (i, o) in &pairs {
                assert!(same(i, o), "split at {p} copied");
            }
            zero_copy += 1;
        }
    }
    assert!(
        zero_copy > input.len() * 3 / 4,
        "zero-copy for most cuts ({zero_copy})"
    );
}

#[test]
fn usage_null_and_annotation_chunks_pass_other_key_orders_are_removed() {
    let cases: [(&str, bool); 8] = [
        (r#"{"choices":[],"usage":null}"#, false),
        (r#"{"choices":[],"prompt_filter_results":[]}"#, false),
        (
            r#"{"choices":[{"index":0}],"usage":{"total_tokens":3}}"#,
            false,
        ),
        (r#"{"usage":{"total_tokens":3},"choices":[]}"#, true),
        (
            r#"{"id":"chatcmpl-1","choices":[ ],"usage":{"total_tokens":3}}"#,
            true,
        ),
        (r#" { "choices" : [ ] , "usage" : { } }"#, true),
        (r#"[[],{"total_tokens":3}]"#, false),
        (r#"{"choices":[],"usage":{"total_tokens":3}"#, false),
    ];
    for (data, removed) in cases {
        assert_eq!(is_usage_chunk(data.as_bytes()), removed, "{data}");
        let input = format!(": hi\n\ndata: {data}\n\ndata: [DONE]\n\n");
        let want = if removed {
            ": hi\n\ndata: [DONE]\n\n".to_string()
        } else {
            input.clone()
        };
        for p in 0..=input.len() {
            let mut s = UsageStripper::new();
            let out = joined(&run(&mut s, &cut(input.as_bytes(), &[p])));
            assert_eq!(String::from_utf8_lossy(&out), want, "{data} split at {p}");
        }
    }
}

#[test]
fn multi_line_usage_event_and_surrounding_lines() {
    let input = "data: {\"x\":1,\"choices\":[{}]}\n\nid: 7\ndata: {\"choices\":[],\ndata: \"usage\":{\"total_tokens\":1}}\n\n: ping\n\ndata: [DONE]\n\n";
    // Lines before the event's first `data` line stay; the event goes.
    let want = "data: {\"x\":1,\"choices\":[{}]}\n\nid: 7\n: ping\n\ndata: [DONE]\n\n";
    for p in 0..=input.len() {
        let mut s = UsageStripper::new();
        let out = joined(&run(&mut s, &cut(input.as_bytes(), &[p])));
        assert_eq!(String::from_utf8_lossy(&out), want, "split at {p}");
    }
}

#[test]
fn a_usage_chunk_cut_short_by_the_end_of_the_stream_is_removed() {
    let input = format!("data: [DONE]\n\ndata: {}\n", usage(1));
    let mut s = UsageStripper::new();
    let out = joined(&run(&mut s, &[input.as_bytes()]));
    assert_eq!(out, b"data: [DONE]\n\n");
    // ...but a truncated one that no longer parses is forwarded as it was.
    let input = format!("data: {}", &usage(1)[..40]);
    let mut s = UsageStripper::new();
    assert_eq!(joined(&run(&mut s, &[input.as_bytes()])), input.as_bytes());
}

#[test]
fn an_oversized_candidate_is_released_never_buffered() {
    let pad = "p".repeat(MAX_HOLD);
    let data = format!(r#"{{"choices":[],"pad":"{pad}","usage":{{"total_tokens":1}}}}"#);
    let input = format!("data: {data}\n\ndata: [DONE]\n\n");
    assert!(is_usage_chunk(data.as_bytes()));
    let mut s = UsageStripper::new();
    let mut out = Vec::new();
    for c in input.as_bytes().chunks(4096) {
        out.extend_from_slice(&s.filter(Bytes::copy_from_slice(c), false));
        assert!(s.held() <= MAX_HOLD, "held {}", s.held());
    }
    out.extend_from_slice(&s.filter(Bytes::new(), true));
    assert_eq!(out, input.as_bytes());
    assert_eq!(s.removed(), 0);
}

#[test]
fn pingora_body_filter_shape() {
    let mut s = UsageStripper::new();
    let mut body = Some(Bytes::from(format!("data: {}\n\n", usage(2))));
    s.filter_body(&mut body, false);
    assert_eq!(body, None, "a removed chunk leaves nothing to send");
    let mut body = Some(Bytes::from_static(b"data: [DONE]\n\n"));
    s.filter_body(&mut body, false);
    assert_eq!(body.as_deref(), Some(&b"data: [DONE]\n\n"[..]));
    let mut body = None;
    s.filter_body(&mut body, true);
    assert_eq!(body, None);
    assert_eq!(s.removed(), 1);
}

#[test]
fn tap_meters_the_upstream_and_forwards_without_usage() {
    use crate::stream::SseTap;
    use std::time::{Duration, Instant};
    let input = azure_stream(7, true);
    let want = azure_stream(7, false);
    let t0 = Instant::now();
    let mut tap = SseTap::new(true);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = input.chunks(97).collect();
    for (i, c) in chunks.iter().enumerate() {
        let mut body = Some(Bytes::copy_from_slice(c));
        let now = t0 + Duration::from_millis(i as u64);
        tap.on_body(&mut body, i + 1 == chunks.len(), now);
        out.extend_from_slice(body.as_deref().unwrap_or_default());
    }
    assert!(out == want);
    let sum = tap.summary(t0);
    assert_eq!(sum.usage.map(|u| u.completion_tokens), Some(7));
    assert!(sum.done_seen);
    assert_eq!(tap.usage_chunks_removed(), 1);

    let mut keep = SseTap::new(false);
    let mut body = Some(Bytes::from(input.clone()));
    keep.on_body(&mut body, true, t0);
    assert_eq!(body.as_deref(), Some(&input[..]));
}
