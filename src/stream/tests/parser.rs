//! The parser: same events however the stream is chunked, and the SSE line rules.

use super::fixture::{azure_stream, cut, events, parse, random_cuts, render};
use crate::stream::SseParser;

fn expected(n: usize, usage: bool) -> Vec<Vec<u8>> {
    events(n, usage)
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

#[test]
fn whole_stream_yields_every_event_in_order() {
    let stream = azure_stream(20, true);
    let (seen, truncated) = parse(&[&stream]);
    assert_eq!(seen, expected(20, true));
    assert!(!truncated);
    assert_eq!(seen.last().map(Vec::as_slice), Some(&b"[DONE]"[..]));
}

#[test]
fn split_at_every_byte_position_yields_the_same_events() {
    let stream = azure_stream(5, true);
    let want = expected(5, true);
    for p in 0..=stream.len() {
        let (seen, truncated) = parse(&cut(&stream, &[p]));
        assert_eq!(seen, want, "split at {p}");
        assert!(!truncated, "split at {p}");
    }
}

#[test]
fn one_byte_at_a_time_yields_the_same_events() {
    for eol in ["\n", "\r\n", "\r"] {
        let stream = render(&events(8, true), eol);
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&chunks).0, expected(8, true), "eol {eol:?}");
    }
}

#[test]
fn random_splits_yield_the_same_events() {
    let mut rng = fastrand::Rng::with_seed(7);
    let stream = render(&events(30, true), "\r\n");
    let want = expected(30, true);
    for _ in 0..500 {
        let at = random_cuts(stream.len(), &mut rng);
        assert_eq!(parse(&cut(&stream, &at)).0, want, "cuts {at:?}");
    }
}

#[test]
fn crlf_and_lone_cr_line_endings() {
    let want = expected(3, false);
    for eol in ["\r\n", "\r"] {
        let stream = render(&events(3, false), eol);
        assert_eq!(parse(&[&stream]).0, want, "eol {eol:?}");
        // A `\r\n` cut between its two bytes is still one terminator, not a blank line.
        for p in 0..=stream.len() {
            assert_eq!(
                parse(&cut(&stream, &[p])).0,
                want,
                "eol {eol:?} split at {p}"
            );
        }
    }
}

#[test]
fn empty_chunk_between_cr_and_lf_is_harmless() {
    let (seen, _) = parse(&[b"data: a\r", b"", b"\ndata: b\r\n\r\n"]);
    assert_eq!(seen, vec![b"a\nb".to_vec()]);
}

#[test]
fn multi_line_data_is_joined_with_newlines() {
    let stream = b"data: {\"a\":\ndata:1}\ndata\ndata:  two spaces\n\n";
    let want = vec![b"{\"a\":\n1}\n\n two spaces".to_vec()];
    for p in 0..=stream.len() {
        assert_eq!(parse(&cut(stream, &[p])).0, want, "split at {p}");
    }
}

#[test]
fn comments_fields_and_stray_blank_lines_are_not_events() {
    let stream =
        b": keep-alive\n\n\nevent: message\nid: 42\nretry: 1000\n: note\ndata: x\n\n:done\n\n";
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    parser.feed(stream, |ev| seen.push(ev.data.to_vec()));
    assert_eq!(seen, vec![b"x".to_vec()]);
    let stats = parser.stats();
    assert_eq!(stats.events, 1);
    assert_eq!(stats.comments, 3);
    assert_eq!(stats.other_fields, 3);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn empty_data_line_dispatches_an_empty_event() {
    assert_eq!(parse(&[b"data:\n\n"]).0, vec![Vec::<u8>::new()]);
    assert_eq!(parse(&[b"data\n\n"]).0, vec![Vec::<u8>::new()]);
}

#[test]
fn done_is_recognised() {
    let mut parser = SseParser::new();
    let mut done = Vec::new();
    parser.feed(b"data: [DONE]\n\ndata:[DONE]\n\ndata: [DONE] \n\n", |ev| {
        done.push(ev.is_done())
    });
    assert_eq!(done, vec![true, true, false]);
}

#[test]
fn an_event_cut_off_by_the_end_of_stream_is_not_dispatched() {
    let (seen, truncated) = parse(&[b"data: a\n\ndata: b\n"]);
    assert_eq!(seen, vec![b"a".to_vec()]);
    assert!(truncated);
    let (_, truncated) = parse(&[b"data: a\n\ndata: partial li"]);
    assert!(truncated);
}

#[test]
fn oversized_lines_are_dropped_the_same_way_however_split() {
    let long = "y".repeat(100);
    let stream = format!("data: ok1\n\ndata: {long}\n\n: {long}\ndata: ok2\n\n");
    let bytes = stream.as_bytes();
    for p in 0..=bytes.len() {
        let mut parser = SseParser::with_max_line(64);
        let mut seen = Vec::new();
        for c in cut(bytes, &[p]) {
            parser.feed(c, |ev| seen.push(ev.data.to_vec()));
        }
        assert_eq!(seen, vec![b"ok1".to_vec(), b"ok2".to_vec()], "split at {p}");
        // The long data line and the long comment; the long line's event has no data left.
        assert_eq!(parser.stats().malformed, 2, "split at {p}");
    }
}

#[test]
fn an_endless_line_never_grows_the_buffer_past_the_cap() {
    let mut parser = SseParser::with_max_line(1024);
    let junk = [b'x'; 300];
    for _ in 0..100 {
        parser.feed(&junk, |_| panic!("no event expected"));
        let held = parser.buffered_capacity();
        assert!(held <= 2048, "buffers grew to {held}");
    }
    assert_eq!(parser.stats().malformed, 1);
    // The stream recovers at the next line.
    let mut seen = Vec::new();
    parser.feed(b"\ndata: back\n\n", |ev| seen.push(ev.data.to_vec()));
    assert_eq!(seen, vec![b"back".to_vec()]);
}

#[test]
fn event_data_past_the_cap_drops_the_event() {
    let mut parser = SseParser::with_max_line(16);
    let mut seen = Vec::new();
    let stream = b"data: 0123456789\ndata: 0123456789\n\ndata: ok\n\n";
    parser.feed(stream, |ev| seen.push(ev.data.to_vec()));
    assert_eq!(seen, vec![b"ok".to_vec()]);
    assert_eq!(parser.stats().malformed, 1);
}

#[test]
fn events_inside_one_chunk_borrow_the_chunk() {
    let stream = azure_stream(3, true);
    let range = stream.as_ptr_range();
    let mut parser = SseParser::new();
    let mut inside = 0;
    parser.feed(&stream, |ev| {
        if range.contains(&ev.data.as_ptr()) {
            inside += 1;
        }
    });
    assert_eq!(inside, events(3, true).len());
    assert_eq!(parser.buffered_capacity(), 0, "no copy was needed");
}
