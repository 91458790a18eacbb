//! Cost of the streaming side path per event, against forwarding the chunks untouched.
//! Run: `cargo bench --bench sse -- --warm-up-time 1 --measurement-time 2`
//!
//! A 500-event Azure stream (annotation, role, 495 tokens, finish, usage, `[DONE]`) is fed
//! (a) untouched, (b) through parser + meter, (c) through parser + meter + usage stripper,
//! as the gateway's body filter would, reading the clock once per chunk. Each group has the
//! three side by side, so (b)/(a) and (c)/(a) read off one run; throughput is per event.
//! Chunkings: one chunk per event (what Azure writes), 1460-byte segments (events cut
//! anywhere), and 1-byte chunks (the worst case).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spillway::stream::{SseParser, StreamMeter, UsageStripper};
use std::hint::black_box;
use std::time::Instant;

const EVENTS: usize = 500;

fn event(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// The events of a realistic stream, each rendered as Azure sends it.
fn azure_events() -> Vec<String> {
    const FILTERS: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;
    const TAIL: &str = r#""created":1730000000,"id":"chatcmpl-AXw1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65""#;
    let tokens = EVENTS - 5;
    let mut out = vec![
        event(&format!(
            r#"{{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{FILTERS}}}],"usage":null}}"#
        )),
        event(&format!(
            r#"{{"choices":[{{"content_filter_results":{{}},"delta":{{"content":"","refusal":null,"role":"assistant"}},"finish_reason":null,"index":0,"logprobs":null}}],{TAIL},"usage":null}}"#
        )),
    ];
    let words = [
        "The",
        " quick",
        " brown",
        " fox",
        "\\n",
        " caf\\u00e9",
        ",",
        " \\\"ok\\\"",
    ];
    for i in 0..tokens {
        let w = words[i % words.len()];
        out.push(event(&format!(
            r#"{{"choices":[{{"content_filter_results":{FILTERS},"delta":{{"content":"{w}"}},"finish_reason":null,"index":0,"logprobs":null}}],{TAIL},"usage":null}}"#
        )));
    }
    out.push(event(&format!(
        r#"{{"choices":[{{"content_filter_results":{{}},"delta":{{}},"finish_reason":"stop","index":0,"logprobs":null}}],{TAIL},"usage":null}}"#
    )));
    out.push(event(&format!(
        r#"{{"choices":[],{TAIL},"usage":{{"completion_tokens":{tokens},"prompt_tokens":20,"total_tokens":{}}}}}"#,
        tokens + 20
    )));
    out.push(event("[DONE]"));
    assert_eq!(out.len(), EVENTS);
    out
}

fn chunkings() -> Vec<(&'static str, Vec<Bytes>)> {
    let events = azure_events();
    let whole: Vec<u8> = events.concat().into_bytes();
    let per_event = events.into_iter().map(Bytes::from).collect();
    let segments = whole.chunks(1460).map(Bytes::copy_from_slice).collect();
    let bytes = whole.chunks(1).map(Bytes::copy_from_slice).collect();
    vec![
        ("per_event_chunks", per_event),
        ("1460_byte_chunks", segments),
        ("1_byte_chunks", bytes),
    ]
}

fn forward(chunks: &[Bytes]) {
    for c in chunks {
        black_box(c.clone());
    }
}

fn meter(chunks: &[Bytes]) -> StreamMeter {
    let mut parser = SseParser::new();
    let mut meter = StreamMeter::new();
    for c in chunks {
        let now = Instant::now();
        parser.feed(c, |ev| meter.on_event(ev.data, now));
        black_box(c.clone());
    }
    parser.finish();
    meter
}

fn meter_and_strip(chunks: &[Bytes]) -> StreamMeter {
    let mut parser = SseParser::new();
    let mut meter = StreamMeter::new();
    let mut stripper = UsageStripper::new();
    let last = chunks.len().saturating_sub(1);
    for (i, c) in chunks.iter().enumerate() {
        let now = Instant::now();
        parser.feed(c, |ev| meter.on_event(ev.data, now));
        black_box(stripper.filter(c.clone(), i == last));
    }
    parser.finish();
    meter
}

fn side_path(c: &mut Criterion) {
    for (name, chunks) in chunkings() {
        // Sanity: the measured path does the work it claims.
        let started = Instant::now();
        let summary = meter_and_strip(&chunks).summary(started);
        assert_eq!(summary.content_events, EVENTS as u64 - 5);
        assert!(summary.usage.is_some() && summary.done_seen);

        let mut group = c.benchmark_group(format!("sse_500_events/{name}"));
        group.throughput(Throughput::Elements(EVENTS as u64));
        group.bench_function(BenchmarkId::from_parameter("a_forward"), |b| {
            b.iter(|| forward(&chunks))
        });
        group.bench_function(BenchmarkId::from_parameter("b_parse_meter"), |b| {
            b.iter(|| black_box(meter(&chunks)))
        });
        group.bench_function(BenchmarkId::from_parameter("c_parse_meter_strip"), |b| {
            b.iter(|| black_box(meter_and_strip(&chunks)))
        });
        group.finish();
    }
}

criterion_group!(benches, side_path);
criterion_main!(benches);
