//! Opens many concurrent SSE chat streams and measures them where a client sees them: per stream
//! the time from sending the request to the first content event (TTFT) and the gaps between
//! content events as they arrive. Optionally samples the resident memory of other processes
//! (a gateway) while every stream is open. Prints one JSON object on stdout.
//!
//! Run (a simulator on :8001 with `--tbt-ms 10`, or a gateway in front of it):
//! `cargo run --release -p spillway-bench --bin stream_load -- --url 'http://127.0.0.1:8001/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21' --key SIMKEY --streams 200`
//!
//! Used by `bench/run`. Each stream has its own HTTP/1.1 connection, opened before its
//! clock starts, so TTFT is the request's time, not the connect's. Stream starts are spread
//! evenly over `--ramp-ms` so the load is not one synchronized burst. Events are recognised by
//! bytes, not parsed as JSON: the client must stay cheap next to what it measures.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Flags.
#[derive(Debug, Parser)]
#[command(about = "Concurrent SSE streams: TTFT and inter-event gaps at the client")]
struct Args {
    /// Full `http://` URL of the chat/completions endpoint.
    #[arg(long)]
    url: String,
    /// Sent as `api-key`.
    #[arg(long)]
    key: String,
    /// Concurrent streams.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Stream starts are spread evenly over this window.
    #[arg(long, default_value_t = 500)]
    ramp_ms: u64,
    /// Size of the user message, in bytes.
    #[arg(long, default_value_t = 1000)]
    prompt_bytes: usize,
    /// `max_tokens` of each request.
    #[arg(long, default_value_t = 1000)]
    max_tokens: u32,
    /// Give up on streams still running after this long.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Worker threads of the client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `NAME=PID` of a process whose VmRSS is sampled before the first stream and while the
    /// most streams are open (repeatable).
    #[arg(long = "rss")]
    rss: Vec<String>,
}

type BoxError = Box<dyn Error + Send + Sync>;

/// What one stream saw.
#[derive(Debug, Default)]
struct StreamResult {
    ttft: Option<Duration>,
    /// Between consecutive content events, in microseconds.
    gaps_us: Vec<u32>,
    content_events: usize,
    done: bool,
}

/// Where a stream goes.
#[derive(Debug, Clone)]
struct Target {
    addr: String,
    host: String,
    path: String,
    key: String,
    body: Bytes,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    println!("{report}");
    Ok(())
}

fn target(args: &Args) -> Result<Target, BoxError> {
    let uri: http::Uri = args.url.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".into());
    }
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let prompt = "lorem ipsum ".repeat(args.prompt_bytes / 12 + 1);
    let body = json!({
        "messages": [
            {"role": "system", "content": "You are a load test."},
            {"role": "user", "content": &prompt[..args.prompt_bytes]},
        ],
        "max_tokens": args.max_tokens,
        "stream": true,
    });
    Ok(Target {
        addr: format!("{}:{port}", authority.host()),
        host: authority.to_string(),
        path,
        key: args.key.clone(),
        body: Bytes::from(body.to_string()),
    })
}

async fn run(args: Args) -> Result<Value, BoxError> {
    let target = Arc::new(target(&args)?);
    let watched = parse_rss_args(&args.rss)?;
    let idle: Vec<Option<u64>> = watched.iter().map(|(_, pid)| vm_rss_kb(*pid)).collect();

    let open = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_at_peak(
        watched.iter().map(|(_, pid)| *pid).collect(),
        open.clone(),
        stopped,
    ));

    let start = Instant::now();
    let deadline =
        start + Duration::from_millis(args.ramp_ms) + Duration::from_secs(args.timeout_s);
    let mut tasks = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let at =
            start + Duration::from_millis(args.ramp_ms) * i as u32 / args.streams.max(1) as u32;
        let (target, open) = (target.clone(), open.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            tokio::time::timeout_at(deadline, one_stream(&target, &open))
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        }));
    }

    let mut ttfts_us = Vec::with_capacity(args.streams);
    let mut gaps_us = Vec::new();
    let (mut ok, mut incomplete, mut content_events) = (0usize, 0usize, 0usize);
    let mut errors: Vec<String> = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(r)) => {
                content_events += r.content_events;
                if let Some(t) = r.ttft {
                    ttfts_us.push(u32::try_from(t.as_micros()).unwrap_or(u32::MAX));
                }
                gaps_us.extend_from_slice(&r.gaps_us);
                if r.done && r.ttft.is_some() {
                    ok += 1;
                } else {
                    incomplete += 1;
                }
            }
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let elapsed = start.elapsed();
    let _ = stop.send(true);
    let peak = sampler.await.unwrap_or_default();

    let error_count = errors.len();
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    let mut rss = serde_json::Map::new();
    for (i, (name, pid)) in watched.iter().enumerate() {
        rss.insert(
            name.clone(),
            json!({
                "pid": pid,
                "idle_kb": idle[i],
                "open_kb": peak.rss_kb.get(i).copied().flatten(),
            }),
        );
    }
    Ok(json!({
        "streams": args.streams,
        "ok": ok,
        "incomplete": incomplete,
        "errors": error_count,
        "error_samples": errors,
        "content_events": content_events,
        "elapsed_s": elapsed.as_secs_f64(),
        "ttft_ms": summary(&mut ttfts_us),
        "gap_ms": summary(&mut gaps_us),
        "max_open": peak.open,
        "rss": rss,
    }))
}

/// One stream on its own connection.
async fn one_stream(t: &Target, open: &AtomicUsize) -> Result<StreamResult, BoxError> {
    let tcp = TcpStream::connect(&t.addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::post(t.path.as_str())
        .header(http::header::HOST, t.host.as_str())
        .header("api-key", t.key.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(t.body.clone()))?;
    let sent = Instant::now();
    let resp = sender.send_request(req).await?;
    if resp.status() != http::StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("status {status}: {head}").into());
    }
    open.fetch_add(1, Ordering::Relaxed);
    let result = read_events(resp.into_body(), sent).await;
    open.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn read_events(
    mut body: hyper::body::Incoming,
    sent: Instant,
) -> Result<StreamResult, BoxError> {
    let mut r = StreamResult::default();
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let mut last: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        pending.extend_from_slice(&data);
        while let Some((end, sep)) = event_end(&pending) {
            let event = &pending[..end];
            if is_content(event) {
                r.content_events += 1;
                match last {
                    None => r.ttft = Some(now - sent),
                    Some(prev) => r
                        .gaps_us
                        .push(u32::try_from((now - prev).as_micros()).unwrap_or(u32::MAX)),
                }
                last = Some(now);
            } else if find(event, b"[DONE]").is_some() {
                r.done = true;
            }
            pending.drain(..end + sep);
        }
    }
    Ok(r)
}

/// End of the first complete event in `buf` and the length of its separator.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A chunk whose delta carries non-empty text (the role chunk's `"content":""` does not count).
fn is_content(event: &[u8]) -> bool {
    let key = b"\"content\":";
    let mut rest = event;
    while let Some(i) = find(rest, key) {
        let after = &rest[i + key.len()..];
        let value = after.strip_prefix(b" ").unwrap_or(after);
        if value.len() >= 2 && value[0] == b'"' && value[1] != b'"' {
            return true;
        }
        rest = after;
    }
    false
}

/// p50/p90/p99/p99.9/max in milliseconds.
fn summary(us: &mut [u32]) -> Value {
    if us.is_empty() {
        return json!({"n": 0});
    }
    us.sort_unstable();
    let at = |q: f64| {
        let i = ((us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(us[i]) / 1000.0
    };
    json!({
        "n": us.len(),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": at(1.0),
    })
}

fn parse_rss_args(specs: &[String]) -> Result<Vec<(String, u32)>, BoxError> {
    specs
        .iter()
        .map(|s| {
            let (name, pid) = s.split_once('=').ok_or("--rss takes NAME=PID")?;
            Ok((name.to_string(), pid.parse()?))
        })
        .collect()
}

/// VmRSS of `pid` in KiB, from /proc (Linux).
fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Memory of the watched processes at the moment the most streams were open.
#[derive(Debug, Default)]
struct Peak {
    open: usize,
    rss_kb: Vec<Option<u64>>,
}

/// Samples every 20 ms until stopped; keeps the reading taken with the most streams open
/// (the later one on a tie, so that buffers have filled).
async fn sample_at_peak(
    pids: Vec<u32>,
    open: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Peak {
    let mut peak = Peak::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return peak,
        }
        let now_open = open.load(Ordering::Relaxed);
        if now_open > 0 && now_open >= peak.open {
            peak = Peak {
                open: now_open,
                rss_kb: pids.iter().map(|p| vm_rss_kb(*p)).collect(),
            };
        }
    }
}
