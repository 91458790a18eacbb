//! Compares the `o200k_base` tokenizer crates on the prompts the gateway counts, in one run:
//! `cargo bench --bench tokenizer -- --warm-up-time 1 --measurement-time 3`.
//!
//! Each input is a Criterion group with one benchmark per crate, so the ratios read straight off
//! the report (throughput is in bytes, for a per-KB figure). Before timing, every crate must
//! agree on every input's token count, and the first-use cost of each crate (loading its
//! vocabulary, and the resident memory that adds) is measured once, in a fresh process per crate
//! so the numbers do not share an allocator's leftovers. One timed call on 1 MB and 4 MiB inputs
//! then shows how each crate scales on the adversarial case.
//!
//! Criterion repeats the same input, which flatters `tiktoken`: it memoises pieces in a
//! per-thread cache, so its numbers here are warm-cache numbers. On text it has not seen (such as
//! the first pass over the random input) it is several times slower.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};

/// Set in the child processes that measure one crate's first use.
const FIRST_USE_ENV: &str = "SPILLWAY_TOKENIZER_FIRST_USE";

/// The crates compared. `bpe-openai` is the one `spillway::governance::tokens` uses.
const CRATES: [&str; 3] = ["bpe-openai", "tiktoken-rs", "tiktoken"];

fn count(krate: &str, text: &str) -> usize {
    match krate {
        "bpe-openai" => bpe_openai::o200k_base().count(text),
        // `count_ordinary` is `encode_ordinary(text).len()`: the crate has no cheaper path.
        "tiktoken-rs" => tiktoken_rs::o200k_base_singleton().count_ordinary(text),
        "tiktoken" => tiktoken_o200k().count(text),
        other => unreachable!("unknown crate {other}"),
    }
}

fn tiktoken_o200k() -> &'static tiktoken::CoreBpe {
    // The dev-dependency enables the `vocab-o200k_base` feature, so the encoding is compiled in.
    tiktoken::get_encoding("o200k_base").expect("o200k_base is compiled in")
}

/// A typical chat prompt of about 2 KB: instructions, a question, some code and some JSON.
const TYPICAL_PROMPT: &str = r#"You are a senior support engineer for an online retailer. Answer the customer's question using only the order data and the policy excerpt below. If the answer is not in the data, say so plainly and suggest the next step. Keep the reply under 150 words, friendly but precise, and do not invent tracking numbers.

Policy excerpt: Orders can be returned within 30 days of delivery. Items marked "final sale" cannot be returned. Refunds go back to the original payment method within 5-7 business days after the warehouse receives the parcel. Express shipping fees are refunded only if the delay was our fault.

Customer question: Hi! I ordered two pairs of running shoes last week, but one of them arrived in the wrong size (42 instead of 43). Can I swap it, and will I get the express shipping fee back? Also, my colleague says your API returned an error when she tried to check the status - is something broken?

Order data:
{"order_id": "A-20931-77", "placed_at": "2024-05-02T09:14:55Z", "status": "delivered",
 "items": [{"sku": "RUN-PRO-42", "name": "Trail Runner Pro", "size": 42, "qty": 1, "final_sale": false},
           {"sku": "RUN-PRO-43", "name": "Trail Runner Pro", "size": 43, "qty": 1, "final_sale": false}],
 "shipping": {"method": "express", "fee_eur": 12.90, "promised_by": "2024-05-04", "delivered_at": "2024-05-06"}}

The status check she ran:
```python
import requests

resp = requests.get(
    "https://api.example.test/v2/orders/A-20931-77",
    headers={"Authorization": f"Bearer {token}"},
    timeout=10,
)
resp.raise_for_status()  # raised: 429 Too Many Requests
print(resp.json()["status"])
```

Explain the 429 briefly (rate limit, retry after the Retry-After header) and answer both questions."#;

/// About 200 KB of varied text: prose, code and JSON records drawn from a seeded generator, so
/// that pieces repeat the way a long document's do, not like one paragraph pasted 100 times.
fn long_prompt(target_len: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "in",
        "a",
        "is",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "had",
        "they",
        "you",
        "were",
        "their",
        "one",
        "all",
        "we",
        "can",
        "her",
        "has",
        "there",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "no",
        "system",
        "gateway",
        "tenant",
        "budget",
        "latency",
        "throughput",
        "deployment",
        "region",
        "capacity",
        "request",
        "response",
        "token",
        "stream",
        "retry",
        "policy",
        "contract",
        "invoice",
        "customer",
        "shipment",
        "warehouse",
        "quarter",
        "revenue",
        "forecast",
        "analysis",
        "committee",
        "approval",
        "document",
        "section",
        "paragraph",
        "evidence",
        "hypothesis",
        "experiment",
        "measurement",
        "temperature",
        "pressure",
        "velocity",
        "population",
        "government",
        "economy",
        "history",
        "mountain",
        "river",
        "village",
        "morning",
        "evening",
        "quickly",
        "carefully",
        "although",
        "therefore",
        "however",
        "because",
        "between",
        "without",
        "against",
        "during",
        "before",
        "after",
        "around",
        "through",
        "Microsoft",
        "Azure",
        "OpenAI",
        "Pingora",
        "Kubernetes",
        "PostgreSQL",
        "Tuesday",
        "Amsterdam",
        "Dublin",
        "Sydney",
        "naïve",
        "café",
        "résumé",
        "Zürich",
        "São",
        "Paulo",
    ];
    let mut rng = fastrand::Rng::with_seed(0x2001_0ace);
    let mut out = String::with_capacity(target_len + 1024);
    while out.len() < target_len {
        match rng.u8(..10) {
            0 => {
                let name = format!("{}_{}", WORDS[rng.usize(..60)], rng.u16(..1000));
                out.push_str(&format!(
                    "\n```rust\nfn {name}(input: &[u8], limit: usize) -> Result<u32, Error> {{\n    \
                     let total = input.iter().take(limit).map(|b| *b as u32).sum::<u32>();\n    \
                     if total > {} {{ return Err(Error::TooLarge(total)); }}\n    Ok(total)\n}}\n```\n",
                    rng.u32(..100_000)
                ));
            }
            1 => out.push_str(&format!(
                "\n{{\"id\": \"{:08x}\", \"tenant\": \"{}\", \"tokens\": {}, \"latency_ms\": {:.2}, \
                 \"ok\": {}}}\n",
                rng.u32(..),
                WORDS[rng.usize(..WORDS.len())],
                rng.u32(..50_000),
                rng.f64() * 1000.0,
                rng.bool()
            )),
            _ => {
                for i in 0..rng.usize(8..30) {
                    let word = WORDS[rng.usize(..WORDS.len())];
                    if i == 0 {
                        let mut chars = word.chars();
                        if let Some(first) = chars.next() {
                            out.extend(first.to_uppercase());
                            out.push_str(chars.as_str());
                        }
                    } else {
                        out.push(' ');
                        out.push_str(word);
                    }
                    if rng.u8(..12) == 0 {
                        out.push_str(&format!(" {}", rng.u32(..10_000)));
                    }
                }
                out.push_str([". ", ", and ", "? ", "! ", ".\n\n"][rng.usize(..5)]);
            }
        }
    }
    out
}

/// Random bytes read as lossy UTF-8: invalid sequences become U+FFFD, the rest is arbitrary
/// characters with no pieces in the vocabulary, which defeats every cache and shortcut.
fn random_lossy(len: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(0x0bad_5eed);
    let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn inputs() -> Vec<(&'static str, String)> {
    vec![
        ("typical_2k", TYPICAL_PROMPT.to_owned()),
        ("long_200k", long_prompt(200_000)),
        // One 100 KB pre-token piece: where a naive BPE merge goes quadratic.
        ("adversarial_a_100k", "a".repeat(100_000)),
        // One whitespace run: stresses the look-ahead rule of the pre-tokenizer regex.
        ("adversarial_spaces_100k", " ".repeat(100_000)),
        ("adversarial_random_100k", random_lossy(100_000)),
    ]
}

/// Fails the run if the crates disagree on any input, before anything is timed.
fn check_agreement(inputs: &[(&'static str, String)]) {
    println!("\ntoken counts (o200k_base):");
    for (name, text) in inputs {
        let counts: Vec<usize> = CRATES.iter().map(|krate| count(krate, text)).collect();
        let ours = spillway::governance::tokens::count_text(text);
        println!(
            "  {name:<24} {:>7} bytes  {counts:?}  spillway {ours}",
            text.len()
        );
        assert!(
            counts.iter().all(|&c| c == ours),
            "crates disagree on {name}: {CRATES:?} = {counts:?}, spillway = {ours}"
        );
    }
}

/// Resident set size of this process in KiB, from `/proc/self/status` (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// In a child process: load one crate's tokenizer, print time and memory it took, and exit.
fn first_use_child(krate: &str) {
    let before = rss_kib();
    let start = Instant::now();
    black_box(count(krate, black_box("warm up")));
    let elapsed = start.elapsed();
    let added = before.zip(rss_kib()).map(|(b, a)| a.saturating_sub(b));
    let added = added.map_or("unknown".to_owned(), |kib| {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    });
    println!(
        "  {krate:<12} first use {:>7.1} ms, resident memory +{added}",
        elapsed.as_secs_f64() * 1e3
    );
}

fn report_first_use() {
    println!("\nfirst use (vocabulary load), one fresh process per crate:");
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for krate in CRATES {
        match Command::new(&exe).env(FIRST_USE_ENV, krate).output() {
            Ok(out) => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => println!("  {krate}: cannot re-run the benchmark binary: {e}"),
        }
    }
}

/// One call per crate on 1 MB and 4 MiB (the gateway's default `max_body_bytes`) of one character:
/// too slow for Criterion with two of the crates, and it shows how each one scales. A panic (the
/// backtracking regex of `tiktoken-rs` gives up on long whitespace runs) is reported, not fatal.
fn report_scaling() {
    println!("\none call on large adversarial inputs (linear scaling = 1 MB time x 4 at 4 MiB):");
    let quiet_panics = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, unit) in [("a", "a"), ("spaces", " ")] {
        for len in [1_000_000, 4 << 20] {
            let text = unit.repeat(len);
            let mut line = format!("  {name:<6} {:>5.2} MB", len as f64 / 1e6);
            for krate in CRATES {
                let start = Instant::now();
                let result = std::panic::catch_unwind(|| count(krate, black_box(&text)));
                let ms = start.elapsed().as_secs_f64() * 1e3;
                match result {
                    Ok(_) => line.push_str(&format!("  {krate} {ms:>7.1} ms")),
                    Err(_) => line.push_str(&format!("  {krate}  PANICKED")),
                }
            }
            println!("{line}");
        }
    }
    std::panic::set_hook(quiet_panics);
}

fn bench_crates(c: &mut Criterion, inputs: &[(&'static str, String)]) {
    for (name, text) in inputs {
        let mut group = c.benchmark_group(*name);
        group.throughput(Throughput::Bytes(text.len() as u64));
        if text.len() > 10_000 {
            // Large inputs take milliseconds per call with the slower crates; 20 samples keep the
            // whole run within a few minutes on two cores.
            group.sample_size(20);
        }
        for krate in CRATES {
            group.bench_with_input(BenchmarkId::from_parameter(krate), text, |b, text| {
                b.iter(|| count(krate, black_box(text)))
            });
        }
        group.finish();
    }
}

/// The gateway's own entry point on a 2 KB chat request, against counting the bare text: the
/// price of parsing the `messages` JSON.
fn bench_chat_api(c: &mut Criterion) {
    let messages = serde_json::json!([
        {"role": "system", "content": "You are a concise, careful assistant."},
        {"role": "user", "name": "customer", "content": TYPICAL_PROMPT},
    ])
    .to_string();
    let mut group = c.benchmark_group("chat_prompt_2k");
    group.throughput(Throughput::Bytes(messages.len() as u64));
    group.bench_function("count_text_unmemoized", |b| {
        b.iter(|| spillway::governance::tokens::count_text_unmemoized(black_box(TYPICAL_PROMPT)))
    });
    group.bench_function("count_text", |b| {
        b.iter(|| spillway::governance::tokens::count_text(black_box(TYPICAL_PROMPT)))
    });
    // The memo's worst case: 2 KB texts of made-up words, about 25,000 distinct pieces in all,
    // more than the memo holds, so nearly every piece misses and is inserted.
    let unrepeated = made_up_texts(64, TYPICAL_PROMPT.len());
    group.bench_function("count_text_unmemoized_unrepeated_words", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % unrepeated.len();
            spillway::governance::tokens::count_text_unmemoized(black_box(&unrepeated[i]))
        })
    });
    group.bench_function("count_text_unrepeated_words", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % unrepeated.len();
            spillway::governance::tokens::count_text(black_box(&unrepeated[i]))
        })
    });
    group.bench_function("count_chat_prompt", |b| {
        b.iter(|| spillway::governance::tokens::count_chat_prompt(black_box(messages.as_bytes())))
    });
    group.finish();
}

/// `n` texts of about `len` bytes each, of pseudo-random lowercase words.
fn made_up_texts(n: usize, len: usize) -> Vec<String> {
    let mut seed = 0x2545_f491_u32;
    (0..n)
        .map(|_| {
            let mut text = String::with_capacity(len + 16);
            while text.len() < len {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                text.push(' ');
                for k in 0..3 + (seed >> 29) {
                    text.push((b'a' + (seed.rotate_right(k * 5) % 26) as u8) as char);
                }
            }
            text
        })
        .collect()
}

fn main() {
    if let Ok(krate) = std::env::var(FIRST_USE_ENV) {
        first_use_child(&krate);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let inputs = inputs();
    // `--list` only enumerates the benchmarks; `--test` (from `cargo test --benches`) runs each
    // once, for which the agreement check is the useful part.
    if !args.iter().any(|a| a == "--list") {
        check_agreement(&inputs);
        if !args.iter().any(|a| a == "--test") {
            report_first_use();
            report_scaling();
        }
    }
    let mut c = Criterion::default().configure_from_args();
    bench_crates(&mut c, &inputs);
    bench_chat_api(&mut c);
    c.final_summary();
}
