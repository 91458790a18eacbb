//! Absurd numbers from an upstream, end to end: retry hints no clock can hold and usage
//! counts near u64::MAX. The gateway keeps serving, cools a deployment down no longer than
//! `routing.max_cooldown_ms`, and never locks a tenant out over a count it could not have
//! admitted.

mod support;

use spillway_sim::{Fault, SimHandle, SimMode};
use std::time::Duration;
use support::client::{call, post_json};
use support::*;

const MAX_COOLDOWN_MS: u64 = 5_000;

/// A metric's sum over the series that carry `label`.
async fn metric(gw: &Gateway, name: &str, label: &str) -> f64 {
    let text = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn ptu_then_standard() -> (SimHandle, SimHandle, Gateway) {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .pool("standard", "standard", &[("westus-std", &west)])
        .model("gpt-4o-mini", &["ptu", "standard"])
        .model("ptu-only", &["ptu"])
        .set("health.interval_ms", 0)
        .set("routing.max_cooldown_ms", MAX_COOLDOWN_MS);
    let gw = Gateway::start(&conf).await;
    (ptu, west, gw)
}

#[tokio::test]
async fn absurd_retry_hints_are_replayed_and_cool_down_at_most_the_cap() {
    let hints = [
        (Some("1e300"), Some("99999999999999999999")),
        (Some("99999999999999999999"), Some("NaN")),
        (Some("1e300"), None),
        (Some("inf"), Some("-5")),
        (None, Some("18446744073709551615")),
    ];
    for (after, after_ms) in hints {
        let case = format!("retry-after {after:?}, retry-after-ms {after_ms:?}");
        let (ptu, _west, gw) = ptu_then_standard().await;
        ptu.set_fault(Fault::ThrottleWith {
            retry_after: after.map(String::from),
            retry_after_ms: after_ms.map(String::from),
            remaining: Some(1),
        });
        let a = post_json(
            &gw.url(&chat_path("gpt-4o-mini")),
            TENANT_KEY,
            chat_body(""),
        )
        .await;
        assert_eq!(a.status, 200, "{case}: {}", a.text());
        assert_eq!(
            a.header("x-ms-deployment-name"),
            Some("westus-std"),
            "{case}"
        );
        assert_eq!(a.header("x-spillway-attempts"), Some("2"), "{case}");
        assert_eq!(ptu.requests().last().map(|r| r.status), Some(429), "{case}");
        let st = gw.deployment_status("eastus-ptu").await;
        let cooldown = st["cooldown_ms"].as_u64().unwrap();
        assert!(cooldown > 0 && cooldown <= MAX_COOLDOWN_MS, "{case}: {st}");
        // With nowhere else to go, the tenant is told to come back within the cap.
        let a = post_json(&gw.url(&chat_path("ptu-only")), TENANT_KEY, chat_body("")).await;
        assert_eq!(a.status, 429, "{case}: {}", a.text());
        let ms: u64 = a.header("retry-after-ms").unwrap().parse().unwrap();
        assert!(ms <= MAX_COOLDOWN_MS, "{case}: retry-after-ms {ms}");
        assert_eq!(ptu.requests().len(), 1, "{case}: the PTU is cooling down");
    }
}

#[tokio::test]
async fn an_absurd_retry_hint_passed_through_is_lowered_to_the_cap() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    // One attempt only: Azure's own 429 is the answer, as the client's SDK gets it.
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .model("ptu-only", &["ptu"])
        .set("health.interval_ms", 0)
        .set("retry.max_attempts", 1)
        .set("routing.max_cooldown_ms", MAX_COOLDOWN_MS);
    let gw = Gateway::start(&conf).await;
    ptu.set_fault(Fault::ThrottleWith {
        retry_after: Some("1e300".into()),
        retry_after_ms: Some("99999999999999999999".into()),
        remaining: None,
    });
    let a = post_json(&gw.url(&chat_path("ptu-only")), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(ptu.requests().len(), 1, "Azure's answer, passed through");
    assert_eq!(a.header("retry-after-ms"), Some("5000"));
    assert_eq!(a.header("retry-after"), Some("5"));
}

#[tokio::test]
async fn an_absurd_usage_leaves_the_tenant_a_bounded_wait() {
    let west = sim("westus-std", SimMode::Unlimited).await;
    west.set_fault(Fault::ReportUsage {
        prompt_tokens: u64::MAX,
        completion_tokens: u64::MAX,
        total_tokens: u64::MAX - 1,
    });
    let conf = Conf::new()
        .tenant("streams", &["streams-key"])
        .set("tenants.search.tokens_per_minute", 6000)
        .set("tenants.streams.tokens_per_minute", 6000)
        .pool("standard", "standard", &[("westus-std", &west)])
        .model("gpt-4o-mini", &["standard"])
        .set("health.interval_ms", 0);
    let gw = Gateway::start(&conf).await;
    let url = gw.url(&chat_path("gpt-4o-mini"));
    for (tenant, key, extra) in [
        ("search", TENANT_KEY, r#""max_tokens":100"#),
        (
            "streams",
            "streams-key",
            r#""max_tokens":100,"stream":true"#,
        ),
    ] {
        let a = post_json(&url, key, chat_body(extra)).await;
        assert_eq!(a.status, 200, "{tenant}: {}", a.text());
        // Settled after the answer: the counts it was settled with are the believable ones.
        let label = format!("tenant=\"{tenant}\"");
        let completion = wait_for(
            "the usage to be settled",
            Duration::from_secs(10),
            async || {
                let n = metric(&gw, "spillway_completion_tokens_total", &label).await;
                (n > 0.0).then_some(n)
            },
        )
        .await;
        assert_eq!(completion, 100.0, "{tenant}: at most what was admitted");
        let prompt = metric(&gw, "spillway_prompt_tokens_total", &label).await;
        assert!(prompt < 1e7, "{tenant}: {prompt} prompt tokens believed");
        // The tenant is in debt, but by a minute's budget at most: its wait is that minute
        // plus this request's share, under the two-minute ceiling every wait is clamped to
        // (a debt of 4M tokens would also be told 120 s, again and again for 11 hours).
        let a = post_json(&url, key, chat_body(extra)).await;
        match a.status {
            200 => {}
            429 => {
                let ms: u64 = a.header("retry-after-ms").unwrap().parse().unwrap();
                assert!(ms < 120_000, "{tenant}: told to wait {ms} ms");
            }
            s => panic!("{tenant}: {s} {}", a.text()),
        }
    }
    let st = gw.deployment_status("westus-std").await;
    let admitted = st["admitted_tokens_last_minute"].as_u64().unwrap();
    assert!(admitted < 10_000_000, "{st}");
}

/// An upstream that answers the first request on each connection, keeps it open, and closes
/// it without a word when the next request arrives: what a pooled connection the upstream
/// dropped while it idled looks like. Returns its address and how many connections it took.
async fn closes_reused_connections() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                // Reads one request (head and a Content-Length body), answers it.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + length {
                        break;
                    }
                }
                let body = r#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                // The next request on this connection finds it closed.
                let _ = conn.read(&mut chunk).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replayed_without_spending_the_retry_budget() {
    let (addr, connections) = closes_reused_connections().await;
    let conf = Conf::new()
        .set(
            "pools",
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "[{{name: std, kind: standard, deployments: [{{name: only, endpoint: 'http://{addr}', deployment: gpt-4o-mini, api_key: k}}]}}]"
            ))
            .unwrap(),
        )
        .model("gpt-4o-mini", &["std"])
        .set("health.interval_ms", 0)
        // No retry budget at all: a stale connection must not need one.
        .set("retry.budget_percent", 0.0)
        .set("retry.budget_min_per_second", 0);
    let gw = Gateway::start(&conf).await;
    for i in 0..4 {
        let a = post_json(
            &gw.url(&chat_path("gpt-4o-mini")),
            TENANT_KEY,
            chat_body(""),
        )
        .await;
        assert_eq!(a.status, 200, "request {i}: {}", a.text());
    }
    assert!(
        connections.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "each request after the first met a closed pooled connection and went again"
    );
    // Each request is counted once its log phase has run, which may follow its answer.
    wait_until(
        "three stale replays counted",
        Duration::from_secs(10),
        async || metric(&gw, "spillway_retries_total", "stale-connection").await >= 3.0,
    )
    .await;
    let text = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    let others: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("spillway_retries_total{") && !l.contains("stale-connection"))
        .collect();
    assert!(
        others.is_empty(),
        "only stale connections were replayed: {others:?}"
    );
}
