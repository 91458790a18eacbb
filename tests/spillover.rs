//! Spillover routing and replay through the real gateway, with a small simulated PTU region
//! and two Standard regions. Each test asserts what the client and every simulator saw.

mod support;

use futures::future::join_all;
use spillway_sim::{Fault, SimHandle, SimMode};
use std::time::Duration;
use support::client::{post_json, send, sse_data};
use support::*;

struct Regions {
    ptu: SimHandle,
    west: SimHandle,
    sweden: SimHandle,
    gw: Gateway,
}

impl Regions {
    fn standard_requests(&self) -> usize {
        self.west.requests().len() + self.sweden.requests().len()
    }

    /// The deployment's entry in /status.
    async fn deployment_status(&self, name: &str) -> serde_json::Value {
        self.gw.deployment_status(name).await
    }
}

/// PTU `eastus-ptu` first, then Standard `westus-std` and `swedencentral-std`; `change` adds
/// what the test needs.
async fn regions(ptu_mode: SimMode, change: impl FnOnce(Conf) -> Conf) -> Regions {
    let ptu = sim("eastus-ptu", ptu_mode).await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let sweden = sim("swedencentral-std", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .set("pools.ptu.spill_at_utilization", 90)
        .pool(
            "standard",
            "standard",
            &[("westus-std", &west), ("swedencentral-std", &sweden)],
        )
        .model("gpt-4o-mini", &["ptu", "standard"]);
    let gw = Gateway::start(&change(conf)).await;
    Regions {
        ptu,
        west,
        sweden,
        gw,
    }
}

/// Health checks off, so only requests move a deployment's state.
fn no_active_checks(c: Conf) -> Conf {
    c.set("health.interval_ms", 0)
}

async fn ask(r: &Regions, body: String) -> support::client::Answer {
    post_json(&r.gw.url(&chat_path("gpt-4o-mini")), TENANT_KEY, body).await
}

#[tokio::test]
async fn burst_spills_to_standard_before_the_ptu_throttles() {
    // 6000 tokens/min PTU; each request is charged ~300 (prompt + max_tokens 290).
    let r = regions(
        SimMode::Provisioned {
            tokens_per_minute: 6000,
        },
        |c| {
            no_active_checks(c).set(
                "pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute",
                6000,
            )
        },
    )
    .await;
    for s in [&r.ptu, &r.west, &r.sweden] {
        s.set_ttft(Duration::from_millis(100));
    }
    let answers = join_all((0..40).map(|_| ask(&r, chat_body(r#""max_tokens":290"#)))).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let ptu = r.ptu.stats();
    assert_eq!(ptu.throttled_429, 0, "the gateway predicted saturation");
    assert!(
        ptu.requests >= 10 && ptu.requests <= 20,
        "PTU took {}",
        ptu.requests
    );
    assert_eq!(ptu.requests as usize + r.standard_requests(), 40);
    let spilled = answers
        .iter()
        .filter(|a| a.header("x-spillway-spillover") == Some("ptu->standard"))
        .count();
    assert_eq!(spilled, r.standard_requests());
}

#[tokio::test]
async fn burst_without_a_known_capacity_costs_at_most_one_429_per_cooldown() {
    // No capacity configured: the gateway learns only from the upstream. Requests go one at a
    // time, so every 429 the PTU sends is the first of a cool-down.
    let r = regions(
        SimMode::Provisioned {
            tokens_per_minute: 3000,
        },
        no_active_checks,
    )
    .await;
    // Answers as long as their limit, so the real usage keeps the bucket filling.
    r.ptu.set_natural_tokens(290);
    for i in 0..30 {
        let a = ask(&r, chat_body(r#""max_tokens":290"#)).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.text());
    }
    let ptu = r.ptu.stats();
    assert!(ptu.throttled_429 <= 1, "{} 429s", ptu.throttled_429);
    assert!(r.standard_requests() >= 15, "{}", r.standard_requests());
}

#[tokio::test]
async fn a_429_is_replayed_with_the_identical_body_and_the_ptu_returns_after_cooldown() {
    let r = regions(SimMode::Unlimited, no_active_checks).await;
    // One small and one over Pingora's 64 KiB retry buffer.
    for size in [100, 200 * 1024] {
        r.ptu.set_fault(Fault::Status {
            status: 429,
            remaining: Some(1),
            retry_after_ms: Some(400),
        });
        let content = "y".repeat(size);
        let body =
            format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}],"max_tokens":100}}"#);
        let before_std = r.standard_requests();
        let a = ask(&r, body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("x-spillway-spillover"), Some("ptu->standard"));
        assert_eq!(a.header("x-spillway-attempts"), Some("2"));
        let ptu_seen = r.ptu.requests().last().unwrap().clone();
        assert_eq!(ptu_seen.status, 429);
        let std_seen = [&r.west, &r.sweden]
            .iter()
            .flat_map(|s| s.requests())
            .max_by_key(|q| q.body.len() == ptu_seen.body.len())
            .unwrap();
        assert_eq!(r.standard_requests(), before_std + 1);
        assert_eq!(
            std_seen.body, ptu_seen.body,
            "replayed byte for byte ({size} B prompt)"
        );
        assert!(std_seen.body.len() > size);
        // During the cool-down the PTU is skipped without being asked.
        let n = r.ptu.requests().len();
        assert_eq!(
            ask(&r, chat_body(""))
                .await
                .header("x-ms-deployment-name")
                .map(|s| s.ends_with("-std")),
            Some(true)
        );
        assert_eq!(r.ptu.requests().len(), n);
        // After it, the PTU is preferred again.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            ask(&r, chat_body("")).await.header("x-ms-deployment-name"),
            Some("eastus-ptu")
        );
    }
}

#[tokio::test]
async fn a_refusing_region_is_skipped_marked_unhealthy_and_comes_back() {
    let r = regions(SimMode::Unlimited, |c| {
        c.set("routing.eject_after_failures", 1)
            .set("routing.eject_ms", 60000)
            .set("health.interval_ms", 50)
            .set("health.timeout_ms", 500)
            .set("health.unhealthy_after", 1)
            .set("health.healthy_after", 1)
    })
    .await;
    r.ptu.set_fault(Fault::Refuse);
    for _ in 0..5 {
        let a = ask(&r, chat_body("")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.header("x-ms-deployment-name").unwrap().ends_with("-std"));
    }
    let st = r.deployment_status("eastus-ptu").await;
    assert!(
        st["healthy"] == false || st["ejected_ms"].as_u64().unwrap() > 0,
        "{st}"
    );
    assert!(r.ptu.requests().is_empty());
    // Heal: the active check sees it (even though the passive ejection would last a minute).
    r.ptu.set_fault(Fault::None);
    wait_until(
        "the PTU healthy again",
        Duration::from_secs(5),
        async || {
            let st = r.deployment_status("eastus-ptu").await;
            st["healthy"] == true && st["ejected_ms"] == 0
        },
    )
    .await;
    assert_eq!(
        ask(&r, chat_body("")).await.header("x-ms-deployment-name"),
        Some("eastus-ptu")
    );
}

#[tokio::test]
async fn regions_answering_503_or_408_are_ejected_and_recover() {
    for status in [503u16, 408] {
        let r = regions(SimMode::Unlimited, |c| {
            no_active_checks(c)
                .set("routing.eject_after_failures", 2)
                // Long enough that six requests on a loaded machine fit inside it.
                .set("routing.eject_ms", 1000)
        })
        .await;
        r.ptu.set_fault(Fault::Status {
            status,
            remaining: None,
            retry_after_ms: None,
        });
        for _ in 0..6 {
            let a = ask(&r, chat_body("")).await;
            assert_eq!(a.status, 200, "{status}: {}", a.text());
        }
        assert_eq!(
            r.ptu.requests().len(),
            2,
            "{status}: ejected after two failures"
        );
        let st = r.deployment_status("eastus-ptu").await;
        assert!(st["ejected_ms"].as_u64().unwrap() > 0, "{st}");
        r.ptu.set_fault(Fault::None);
        wait_until(
            "the ejection to expire",
            Duration::from_secs(10),
            async || r.deployment_status("eastus-ptu").await["ejected_ms"] == 0,
        )
        .await;
        assert_eq!(
            ask(&r, chat_body("")).await.header("x-ms-deployment-name"),
            Some("eastus-ptu")
        );
    }
}

#[tokio::test]
async fn when_everything_fails_the_client_gets_the_last_real_answer_within_max_attempts() {
    let r = regions(SimMode::Unlimited, no_active_checks).await;
    for s in [&r.ptu, &r.west, &r.sweden] {
        s.set_fault(Fault::Status {
            status: 500,
            remaining: None,
            retry_after_ms: None,
        });
    }
    r.sweden.set_fault(Fault::Status {
        status: 503,
        remaining: None,
        retry_after_ms: None,
    });
    let a = ask(&r, chat_body("")).await;
    let total = r.ptu.requests().len() + r.standard_requests();
    assert_eq!(total, 3, "max_attempts is 3");
    assert!(a.status == 500 || a.status == 503);
    let last = [&r.ptu, &r.west, &r.sweden]
        .iter()
        .filter_map(|s| s.requests().last().cloned())
        .count();
    assert_eq!(last, 3);
    // The upstream's own Azure-shaped body and status, not a gateway page.
    assert_eq!(a.header("x-spillway-attempts"), Some("3"));
    let last = a.header("x-ms-deployment-name").unwrap();
    assert_eq!(
        a.status,
        if last == "swedencentral-std" {
            503
        } else {
            500
        }
    );
    let v = a.json();
    assert!(
        v["error"]["message"].is_string() && v["error"]["code"].is_string(),
        "{v}"
    );
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    let r = regions(SimMode::Unlimited, |c| {
        no_active_checks(c)
            .set("retry.max_attempts", 3)
            .set("retry.budget_percent", 10)
            .set("retry.budget_min_per_second", 0)
            .set("routing.eject_after_failures", 1000)
    })
    .await;
    for s in [&r.ptu, &r.west, &r.sweden] {
        s.set_fault(Fault::Status {
            status: 503,
            remaining: None,
            retry_after_ms: None,
        });
    }
    for _ in 0..50 {
        assert_eq!(ask(&r, chat_body("")).await.status, 503);
    }
    let upstream = r.ptu.requests().len() + r.standard_requests();
    // 50 first attempts; retries are at most 10% of the requests seen.
    assert!(
        (50..=55).contains(&upstream),
        "{upstream} upstream attempts"
    );
}

#[tokio::test]
async fn a_stream_throttled_before_its_first_byte_is_replayed() {
    let r = regions(SimMode::Unlimited, no_active_checks).await;
    r.ptu.set_fault(Fault::Status {
        status: 429,
        remaining: Some(1),
        retry_after_ms: Some(1000),
    });
    let a = ask(&r, chat_body(r#""stream":true"#)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-spillway-spillover"), Some("ptu->standard"));
    let events = sse_data(&a.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_is_not_replayed() {
    let r = regions(SimMode::Unlimited, no_active_checks).await;
    r.ptu.set_fault(Fault::CutStreamAfter(3));
    let resp = send(
        "POST",
        &r.gw.url(&chat_path("gpt-4o-mini")),
        &[
            ("api-key", TENANT_KEY),
            ("content-type", "application/json"),
        ],
        chat_body(r#""stream":true"#),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = support::client::frames(resp).await;
    let body: Vec<u8> = match &got {
        Ok(frames) => frames.iter().flat_map(|(_, b)| b.to_vec()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(
        got.is_err() || !String::from_utf8_lossy(&body).contains("[DONE]"),
        "the client sees the cut"
    );
    assert_eq!(
        r.standard_requests(),
        0,
        "no replay after bytes reached the client"
    );
    assert_eq!(r.ptu.requests().len(), 1);
}

#[tokio::test]
async fn clients_hanging_up_neither_eject_a_deployment_nor_cause_replays() {
    use tokio::io::AsyncWriteExt;
    let r = regions(SimMode::Unlimited, |c| {
        no_active_checks(c)
            .set("routing.eject_after_failures", 2)
            .set("routing.eject_ms", 60000)
    })
    .await;
    r.ptu.set_ttft(Duration::from_millis(200));
    let body = chat_body("");
    for _ in 0..4 {
        let mut conn = tokio::net::TcpStream::connect(r.gw.addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\napi-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            chat_path("gpt-4o-mini"),
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        // Hang up once the request is with the PTU.
        let n = r.ptu.requests().len();
        wait_until(
            "the request to reach the PTU",
            Duration::from_secs(5),
            async || r.ptu.requests().len() > n,
        )
        .await;
        drop(conn);
    }
    r.ptu.set_ttft(Duration::from_millis(1));
    let a = ask(&r, chat_body("")).await;
    assert_eq!(
        a.header("x-ms-deployment-name"),
        Some("eastus-ptu"),
        "{}",
        a.text()
    );
    assert_eq!(r.standard_requests(), 0, "nothing was replayed elsewhere");
    let st = r.deployment_status("eastus-ptu").await;
    assert_eq!(st["ejected_ms"], 0, "{st}");
}
