//! The meter: what counts as the first token, gaps, usage, finish reasons; and identical
//! results however the stream is chunked.

use super::fixture::{azure_stream, cut, meter, random_cuts, usage, ANNOTATION, FINISH, ROLE};
use crate::stream::{StreamMeter, Usage};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn results_do_not_depend_on_chunking() {
    let t0 = Instant::now();
    let stream = azure_stream(12, true);
    let whole = meter(&[&stream], t0);
    assert_eq!(whole.content_events, 12);
    assert_eq!(whole.usage.map(|u| u.completion_tokens), Some(12));
    // Events 1 and 2 are the annotation and role chunks; the first token is event 3.
    assert_eq!(whole.ttft, Some(ms(30)));
    assert_eq!(whole.tbt_mean, Some(ms(10)));
    assert_eq!(whole.tbt_p95, Some(ms(10)));
    assert!(whole.done_seen);

    for p in 0..=stream.len() {
        assert_eq!(meter(&cut(&stream, &[p]), t0), whole, "split at {p}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(meter(&bytes, t0), whole);
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..300 {
        let at = random_cuts(stream.len(), &mut rng);
        assert_eq!(meter(&cut(&stream, &at), t0), whole, "cuts {at:?}");
    }
}

#[test]
fn ttft_ignores_annotation_and_role_chunks() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    m.on_event(ANNOTATION.as_bytes(), t0 + ms(100));
    m.on_event(ROLE.as_bytes(), t0 + ms(150));
    assert_eq!(m.summary(t0).ttft, None);
    m.on_event(super::fixture::content(0).as_bytes(), t0 + ms(420));
    let s = m.summary(t0);
    assert_eq!(s.ttft, Some(ms(420)));
    assert_eq!(s.content_events, 1);
    assert_eq!(s.tbt_mean, None, "one token has no gap");
}

#[test]
fn tbt_mean_and_p95_from_explicit_instants() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    // Tokens at 100 ms, then gaps of 10, 20, ..., 200 ms (20 gaps).
    let mut t = t0 + ms(100);
    m.on_event(super::fixture::content(0).as_bytes(), t);
    for g in 1..=20 {
        t += ms(10 * g);
        m.on_event(super::fixture::content(g as usize).as_bytes(), t);
    }
    let s = m.summary(t0);
    assert_eq!(s.ttft, Some(ms(100)));
    assert_eq!(s.content_events, 21);
    assert_eq!(s.tbt_mean, Some(ms(105)));
    // Nearest rank: ceil(0.95 * 20) = 19th smallest gap.
    assert_eq!(s.tbt_p95, Some(ms(190)));
}

#[test]
fn missing_usage_falls_back_to_the_content_count() {
    let t0 = Instant::now();
    let stream = azure_stream(9, false);
    let s = meter(&[&stream], t0);
    assert_eq!(s.usage, None);
    assert!(s.usage_estimated);
    assert_eq!(s.content_deltas, 9);
    assert_eq!(s.completion_tokens(), 9);
    assert_eq!(s.finish_reason.as_deref(), Some("stop"));
    assert!(s.done_seen);
}

#[test]
fn usage_chunk_is_read() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    m.on_event(FINISH.as_bytes(), t0);
    m.on_event(usage(40).as_bytes(), t0);
    let s = m.summary(t0);
    assert_eq!(
        s.usage,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 40,
            total_tokens: 52,
            cached_tokens: 0,
        })
    );
    assert!(!s.usage_estimated);
    assert_eq!(s.completion_tokens(), 40);
    assert!(!s.done_seen, "no [DONE] yet: the stream may have broken");
}

/// Azure's usage chunk for a prompt that hit the prompt cache (shape as sent by Azure OpenAI
/// with `stream_options.include_usage`, api-version 2024-10-21).
#[test]
fn cached_prompt_tokens_are_read_from_the_usage_chunk() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    let chunk = usage(40).replace(
        r#""prompt_tokens":12,"prompt_tokens_details":{"cached_tokens":0}"#,
        r#""prompt_tokens":2006,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":1920}"#,
    );
    m.on_event(chunk.as_bytes(), t0);
    let u = m.summary(t0).usage.unwrap();
    assert_eq!((u.prompt_tokens, u.cached_tokens), (2006, 1920));
    for absent in [
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3,"prompt_tokens_details":null}}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3,"prompt_tokens_details":{}}}"#,
    ] {
        let mut m = StreamMeter::new();
        m.on_event(absent.as_bytes(), t0);
        let u = m.summary(t0).usage.unwrap();
        assert_eq!((u.prompt_tokens, u.cached_tokens), (3, 0), "{absent}");
    }
}

#[test]
fn tool_calls_and_refusals_are_output_empty_values_are_not() {
    let t0 = Instant::now();
    let cases: [(&str, bool); 9] = [
        (
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]}}]}"#,
            true,
        ),
        (r#"{"choices":[{"delta":{"refusal":"I can't"}}]}"#, true),
        (r#"{"choices":[{"delta":{"content":" "}}]}"#, true),
        (r#"{"choices":[{"delta":{"content":"\n"}}]}"#, true),
        (r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#, false),
        (
            r#"{"choices":[{"delta":{"content":null,"refusal":""}}]}"#,
            false,
        ),
        (r#"{"choices":[{"delta":{}}]}"#, false),
        (
            r#"{"choices":[{"content_filter_offsets":{"start_offset":0},"index":0}]}"#,
            false,
        ),
        (r#"{"choices":null,"usage":null}"#, false),
    ];
    for (data, output) in cases {
        let mut m = StreamMeter::new();
        m.on_event(data.as_bytes(), t0 + ms(5));
        let s = m.summary(t0);
        assert_eq!(s.content_events, u64::from(output), "{data}");
        assert_eq!(s.ttft.is_some(), output, "{data}");
        assert_eq!(s.malformed_events, 0, "{data}");
    }
}

#[test]
fn several_choices_count_each_delta_and_keep_the_unusual_finish() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    m.on_event(
        br#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
        t0,
    );
    m.on_event(
        br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        t0,
    );
    m.on_event(
        br#"{"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#,
        t0,
    );
    let s = m.summary(t0);
    assert_eq!(s.content_events, 1);
    assert_eq!(s.content_deltas, 2);
    assert_eq!(s.finish_reason.as_deref(), Some("length"));
}

#[test]
fn content_filter_finish_is_kept_and_garbage_is_counted() {
    let t0 = Instant::now();
    let mut m = StreamMeter::new();
    m.on_event(
        br#"{"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#,
        t0,
    );
    m.on_event(br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#, t0);
    m.on_event(b"not json", t0);
    m.on_event(br#"{"choices":"#, t0);
    m.on_event(b"[DONE]", t0);
    let s = m.summary(t0);
    assert_eq!(s.finish_reason.as_deref(), Some("content_filter"));
    assert_eq!(s.malformed_events, 2);
    assert!(s.done_seen);
}
