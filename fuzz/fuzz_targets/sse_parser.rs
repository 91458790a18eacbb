//! Fuzzes the SSE side path with arbitrary bytes, fed whole, in two pieces cut at a point
//! the fuzzer chooses, and in small pieces of a size it chooses. Invariants: nothing panics;
//! the parser and meter see the same thing however the bytes are cut; the stripper's output
//! is the same however they are cut, only ever removes bytes, and removes exactly the events
//! that are usage chunks.
//!
//! Input layout: 2 bytes of cut point (little endian, modulo the length), 1 byte of piece
//! size (1 to 16), then the stream.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spillway::stream::{is_usage_chunk, SseParser, StreamMeter, StreamSummary, UsageStripper};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((ctl, input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes([ctl[0], ctl[1]])) % (input.len() + 1);
    let step = usize::from(ctl[2] % 16) + 1;
    let whole: Vec<&[u8]> = vec![input];
    let halves: Vec<&[u8]> = vec![&input[..at], &input[at..]];
    let pieces: Vec<&[u8]> = input.chunks(step).collect();

    let (events, truncated) = parse(&whole);
    assert_eq!(parse(&halves), (events.clone(), truncated));
    assert_eq!(parse(&pieces), (events.clone(), truncated));

    let t0 = Instant::now();
    let summary = meter(&whole, t0);
    assert_eq!(meter(&halves, t0), summary);
    assert_eq!(meter(&pieces, t0), summary);

    let (out, removed) = strip(&whole);
    assert_eq!(strip(&halves), (out.clone(), removed));
    assert_eq!(strip(&pieces), (out.clone(), removed));
    assert!(
        is_subsequence(&out, input),
        "the stripper only removes bytes"
    );
    // Inputs past the stripper's hold limit may keep an oversized usage event on purpose.
    if input.len() <= spillway::stream::strip::MAX_HOLD {
        let kept: Vec<Vec<u8>> = events.into_iter().filter(|e| !is_usage_chunk(e)).collect();
        assert_eq!(
            parse(&[&out]).0,
            kept,
            "exactly the usage events are removed"
        );
    }
});

fn parse(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    for c in chunks {
        parser.feed(c, |ev| seen.push(ev.data.to_vec()));
    }
    let truncated = parser.finish();
    (seen, truncated)
}

/// The clock advances per event, not per chunk, so cutting cannot change the timings.
fn meter(chunks: &[&[u8]], t0: Instant) -> StreamSummary {
    let mut parser = SseParser::new();
    let mut meter = StreamMeter::new();
    let mut k = 0u64;
    for c in chunks {
        parser.feed(c, |ev| {
            k += 1;
            meter.on_event(ev.data, t0 + Duration::from_millis(k));
        });
    }
    meter.summary(t0)
}

fn strip(chunks: &[&[u8]]) -> (Vec<u8>, u64) {
    let mut stripper = UsageStripper::new();
    let mut out = Vec::new();
    // A removal may end with a `\r` whose `\n` opens the next chunk: that `\n` goes too.
    let mut two_calls_ago = 0; // removals before the previous non-empty chunk
    for c in chunks {
        let input = Bytes::copy_from_slice(c);
        let (held, before) = (stripper.held(), stripper.removed());
        let forwarded = stripper.filter(input.clone(), false);
        let untouched = held == 0 && stripper.held() == 0 && stripper.removed() == two_calls_ago;
        if untouched && !input.is_empty() {
            // Nothing held on either side, nothing removed: the very same bytes, no copy.
            assert_eq!(forwarded.as_ptr(), input.as_ptr());
            assert_eq!(forwarded.len(), input.len());
        }
        if !input.is_empty() {
            two_calls_ago = before;
        }
        out.extend_from_slice(&forwarded);
    }
    out.extend_from_slice(&stripper.filter(Bytes::new(), true));
    (out, stripper.removed())
}

fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut rest = big.iter();
    small.iter().all(|b| rest.any(|x| x == b))
}
