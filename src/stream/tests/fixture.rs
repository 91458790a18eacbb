//! A realistic Azure OpenAI chat-completions stream and helpers to chunk and replay it.

use crate::stream::{SseParser, StreamMeter, StreamSummary};
use std::time::{Duration, Instant};

/// The prompt-annotation chunk Azure sends first: `"choices":[]`, no usage.
pub const ANNOTATION: &str = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}],"usage":null}"#;

/// The role-only chunk: `"content":""`, not a token.
pub const ROLE: &str = r#"{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1730000000,"id":"chatcmpl-AXw1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65","usage":null}"#;

/// Token texts, JSON-escaped, including a newline, quotes, a non-ASCII escape and a space.
const TOKENS: [&str; 7] = [
    "Hello",
    ",",
    " world",
    "\\n",
    "\\\"quoted\\\"",
    "caf\\u00e9",
    " ",
];

pub fn content(i: usize) -> String {
    let token = TOKENS[i % TOKENS.len()];
    format!(
        r#"{{"choices":[{{"content_filter_results":{{"hate":{{"filtered":false,"severity":"safe"}},"self_harm":{{"filtered":false,"severity":"safe"}},"sexual":{{"filtered":false,"severity":"safe"}},"violence":{{"filtered":false,"severity":"safe"}}}},"delta":{{"content":"{token}"}},"finish_reason":null,"index":0,"logprobs":null}}],"created":1730000000,"id":"chatcmpl-AXw1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65","usage":null}}"#
    )
}

pub const FINISH: &str = r#"{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1730000000,"id":"chatcmpl-AXw1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65","usage":null}"#;

pub fn usage(completion: u64) -> String {
    format!(
        r#"{{"choices":[],"created":1730000000,"id":"chatcmpl-AXw1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65","usage":{{"completion_tokens":{completion},"completion_tokens_details":{{"reasoning_tokens":0}},"prompt_tokens":12,"prompt_tokens_details":{{"cached_tokens":0}},"total_tokens":{}}}}}"#,
        12 + completion
    )
}

/// The event data of a stream with `n` content chunks, in order, `[DONE]` last.
pub fn events(n: usize, with_usage: bool) -> Vec<String> {
    let mut out = vec![ANNOTATION.to_string(), ROLE.to_string()];
    out.extend((0..n).map(content));
    out.push(FINISH.to_string());
    if with_usage {
        out.push(usage(n as u64));
    }
    out.push("[DONE]".to_string());
    out
}

/// Renders events as Azure does (`data: ...` + blank line) with the given line ending.
pub fn render(events: &[String], eol: &str) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| format!("data: {e}{eol}{eol}").into_bytes())
        .collect()
}

pub fn azure_stream(n: usize, with_usage: bool) -> Vec<u8> {
    render(&events(n, with_usage), "\n")
}

/// Chunks cut at the given ascending positions.
pub fn cut<'a>(bytes: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &p in at {
        out.push(&bytes[from..p]);
        from = p;
    }
    out.push(&bytes[from..]);
    out
}

/// Random ascending cut points from a fixed-seed generator.
pub fn random_cuts(len: usize, rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut at: Vec<usize> = (0..rng.usize(1..40)).map(|_| rng.usize(0..=len)).collect();
    at.sort_unstable();
    at
}

/// Every event dispatched for the chunks, with the parser's end-of-stream verdict.
pub fn parse(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut parser = SseParser::new();
    let mut seen = Vec::new();
    for c in chunks {
        parser.feed(c, |ev| seen.push(ev.data.to_vec()));
    }
    let truncated = parser.finish();
    (seen, truncated)
}

/// Meters the chunks with a clock that advances 10 ms per event, so results depend only
/// on the events, not on the chunking.
pub fn meter(chunks: &[&[u8]], t0: Instant) -> StreamSummary {
    let mut parser = SseParser::new();
    let mut meter = StreamMeter::new();
    let mut k = 0u64;
    for c in chunks {
        parser.feed(c, |ev| {
            k += 1;
            meter.on_event(ev.data, t0 + Duration::from_millis(10 * k));
        });
    }
    meter.summary(t0)
}
