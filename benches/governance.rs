//! The request-body path of governance, for a typical 2 KB and a long-context 200 KB chat
//! body: parse the top-level fields, cap, splice the rewrite, count prompt tokens. Baselines
//! in the same run: copying the body (the floor) and the naive way (parse into a
//! `serde_json::Value`, edit, re-serialise), so results read as ratios.
//!
//! cargo bench --bench governance

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spillway::api::Operation;
use spillway::governance::body::{Edits, JsonBody};
use spillway::governance::caps::OnExceed;
use spillway::governance::caps::{self, CapPolicy};
use spillway::governance::prompt::count_prompt;
use std::hint::black_box;

const POLICY: CapPolicy = CapPolicy {
    sync_max_tokens: 2000,
    stream_max_tokens: 8000,
    default_max_tokens: 1000,
    on_exceed: OnExceed::Clamp,
};

/// A chat body of about `size` bytes: a system prompt, alternating turns of prose with some
/// code and JSON, and an oversized `max_tokens` so the cap has work to do.
fn chat_body(size: usize) -> Bytes {
    let prose = "The model is not slow; the work is oversized. A synchronous request asking for eight thousand tokens cannot finish inside a sixty second window, so the gateway caps it and suggests streaming. ";
    let code = "fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x.iter().sum::<i32>()); } ";
    let json = "{\"region\": \"eastus\", \"utilization\": 89.3, \"retry_after_ms\": 1200} ";
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut total = 0;
    let mut turn = 0;
    while total < size {
        let text = format!(
            "{prose}{}{}",
            if turn % 3 == 0 { code } else { "" },
            if turn % 4 == 1 { json } else { "" }
        );
        total += text.len() + 40;
        messages.push(serde_json::json!({"role": if turn % 2 == 0 { "user" } else { "assistant" }, "content": text}));
        turn += 1;
    }
    let body = serde_json::json!({"messages": messages, "max_tokens": 8000, "temperature": 0.2});
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

/// What the gateway does to a governed body.
fn governed(raw: &Bytes) -> (Bytes, u32) {
    let body = JsonBody::parse(raw.clone()).unwrap();
    let capped = caps::decide(&body, &POLICY, None).unwrap();
    let mut edits = Edits::default();
    caps::edits(&body, Operation::ChatCompletions, &capped, &mut edits);
    let prompt = count_prompt(Operation::ChatCompletions, body.prompt_json().unwrap());
    (edits.apply(&body), prompt)
}

/// The same edit done the naive way.
fn naive(raw: &Bytes) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(raw).unwrap();
    v["max_tokens"] = 2000.into();
    serde_json::to_vec(&v).unwrap()
}

fn bench(c: &mut Criterion) {
    for (name, size) in [("2KB", 2 * 1024), ("200KB", 200 * 1024)] {
        let raw = chat_body(size);
        let mut g = c.benchmark_group(format!("body_path/{name}"));
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::new("baseline_copy", name), &raw, |b, raw| {
            b.iter(|| Bytes::copy_from_slice(black_box(raw)))
        });
        g.bench_with_input(
            BenchmarkId::new("naive_value_rewrite", name),
            &raw,
            |b, raw| b.iter(|| naive(black_box(raw))),
        );
        g.bench_with_input(
            BenchmarkId::new("parse_cap_splice", name),
            &raw,
            |b, raw| {
                b.iter(|| {
                    let body = JsonBody::parse(black_box(raw).clone()).unwrap();
                    let capped = caps::decide(&body, &POLICY, None).unwrap();
                    let mut e = Edits::default();
                    caps::edits(&body, Operation::ChatCompletions, &capped, &mut e);
                    e.apply(&body)
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("count_prompt_tokens", name),
            &raw,
            |b, raw| {
                let body = JsonBody::parse(raw.clone()).unwrap();
                b.iter(|| {
                    count_prompt(
                        Operation::ChatCompletions,
                        black_box(body.prompt_json().unwrap()),
                    )
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("full_governed_path", name),
            &raw,
            |b, raw| b.iter(|| governed(black_box(raw))),
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
