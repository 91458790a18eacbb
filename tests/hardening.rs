//! Issue 13's hardening, end to end: what the upstream never receives, who may reach the
//! gateway (Front Door id, failed-authentication limit per client address) and who may read
//! the admin listener.

mod support;

use spillway_sim::SimMode;
use support::client::call;
use support::*;

/// A gateway with alias `mini` served by one simulator, and `conf`'s changes on top.
async fn gateway(change: impl FnOnce(Conf) -> Conf) -> (spillway_sim::SimHandle, Gateway) {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    let gw = Gateway::start(&change(conf)).await;
    (sim, gw)
}

// === Headers forwarded upstream ===

#[tokio::test]
async fn credentials_hop_by_hop_and_routing_headers_never_reach_the_upstream() {
    let (sim, gw) = gateway(|c| c).await;
    let denied = [
        ("authorization", format!("Bearer {TENANT_KEY}")),
        ("proxy-authorization", "Basic cHJveHk6cGFzcw==".into()),
        ("ocp-apim-subscription-key", "apim-key".into()),
        ("cookie", "session=abc".into()),
        ("connection", "keep-alive, x-hop-by-hop".into()),
        ("x-hop-by-hop", "1".into()),
        ("keep-alive", "timeout=5".into()),
        ("x-forwarded-host", "evil.example".into()),
        ("x-forwarded-for", "203.0.113.9".into()),
        ("forwarded", "for=203.0.113.9;host=evil.example".into()),
        (
            "x-azure-fdid",
            "00000000-0000-0000-0000-000000000000".into(),
        ),
        ("x-azure-clientip", "203.0.113.9".into()),
        ("x-fd-healthprobe", "1".into()),
        ("x-spillway-cap", "none".into()),
        ("x-spillway-max-tokens", "99999".into()),
    ];
    let mut headers: Vec<(&str, &str)> = denied.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("content-type", "application/json"));
    headers.push(("x-ms-client-request-id", "kept-1"));
    let a = call("POST", &gw.url(&chat_path("mini")), &headers, chat_body("")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let seen = &sim.requests()[0];
    for (name, _) in &denied {
        assert!(
            seen.header(name).is_none(),
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert!(!format!("{:?}", seen.headers).contains(TENANT_KEY));
    assert_eq!(seen.header("api-key"), Some("key-eastus-ptu"));
    assert_eq!(seen.header("x-ms-client-request-id"), Some("kept-1"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
}

// === Front Door id ===

const FDID: &str = "6f3e1d2c-0a4b-4c5d-9e8f-123456789abc";

#[tokio::test]
async fn without_the_front_door_id_a_request_gets_403_before_auth_and_body() {
    let (sim, gw) = gateway(|c| {
        c.set("clients.front_door_id", FDID)
            .set("governance.max_body_bytes", 1024)
    })
    .await;
    let url = gw.url(&chat_path("mini"));
    let json = ("content-type", "application/json");
    let key = ("api-key", TENANT_KEY);
    let big = "x".repeat(4096);
    let cases = [
        ("missing", vec![key, json], chat_body("")),
        (
            "wrong",
            vec![key, json, ("x-azure-fdid", "not-the-id")],
            chat_body(""),
        ),
        (
            "twice",
            vec![key, json, ("x-azure-fdid", FDID), ("x-azure-fdid", "x")],
            chat_body(""),
        ),
        // Before authentication: no key, still 403 rather than 401.
        ("no key", vec![json], chat_body("")),
        // Before the body is read: too large, still 403 rather than 413.
        ("large body", vec![key, json], big),
    ];
    for (what, headers, body) in cases {
        let a = call("POST", &url, &headers, body).await;
        assert_eq!(a.status, 403, "{what}: {}", a.text());
        assert_eq!(a.json()["error"]["code"], "403", "{what}");
    }
    assert!(
        sim.requests().is_empty(),
        "a refused request reached the upstream"
    );
    let a = call(
        "POST",
        &url,
        &[key, json, ("x-azure-fdid", FDID)],
        chat_body(""),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(sim.requests().len(), 1);
    assert!(sim.requests()[0].header("x-azure-fdid").is_none());
}

// === Failed authentications per client address ===

/// Three failures per address in a window far longer than any test run.
fn limited(c: Conf, trusted: &str) -> Conf {
    c.set("clients.auth_failures.limit", 3)
        .set("clients.auth_failures.window_ms", 600_000)
        .set("clients.trusted_proxies", vec![trusted])
}

async fn post_as(gw: &Gateway, key: &str, from: (&str, &str)) -> support::client::Answer {
    let headers = [("api-key", key), ("content-type", "application/json"), from];
    call("POST", &gw.url(&chat_path("mini")), &headers, chat_body("")).await
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    // The test client is on 127.0.0.1, here a trusted proxy naming its clients by header.
    let (sim, gw) = gateway(|c| limited(c, "127.0.0.1/32")).await;
    let attacker = ("x-forwarded-for", "192.0.2.1, 198.51.100.1");
    for _ in 0..3 {
        let a = post_as(&gw, "guess-0000000000", attacker).await;
        assert_eq!(a.status, 401, "{}", a.text());
    }
    for key in ["guess-0000000001", TENANT_KEY] {
        let a = post_as(&gw, key, attacker).await;
        assert_eq!(a.status, 429, "{}", a.text());
        assert_eq!(a.json()["error"]["code"], "429");
        let wait: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=600).contains(&wait), "retry-after {wait}");
    }
    // Someone else's failures block nobody else: another address, by either header.
    let a = post_as(&gw, TENANT_KEY, ("x-azure-clientip", "198.51.100.2")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post_as(
        &gw,
        TENANT_KEY,
        ("x-forwarded-for", "198.51.100.1, 198.51.100.3"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(sim.requests().len(), 2);
    let metrics = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("spillway_client_refusals_total{reason=\"auth_limited\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("spillway_client_refusals_total{reason=\"unauthorized\"} 3"));
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_the_limit_by_header() {
    // 127.0.0.1 is no trusted proxy here: its address headers count for nothing.
    let (sim, gw) = gateway(|c| limited(c, "10.0.0.0/8")).await;
    for i in 0..3 {
        let spoof = format!("198.51.100.{i}");
        let a = post_as(
            &gw,
            "guess-0000000000",
            ("x-azure-clientip", spoof.as_str()),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.text());
    }
    let a = post_as(&gw, TENANT_KEY, ("x-forwarded-for", "198.51.100.200")).await;
    assert_eq!(a.status, 429, "{}", a.text());
    assert!(sim.requests().is_empty());
}

// === Admin listener ===

#[tokio::test]
async fn with_an_admin_token_only_the_probes_are_open() {
    const TOKEN: &str = "admin-token-0123456789";
    let (_sim, gw) = gateway(|c| c.set("admin_token", TOKEN)).await;
    for open in ["/healthz", "/readyz"] {
        let a = call("GET", &gw.admin_url(open), &[], "").await;
        assert_eq!(a.status, 200, "{open}: {}", a.text());
    }
    let good = format!("Bearer {TOKEN}");
    for path in ["/metrics", "/status", "/", "/nowhere"] {
        for auth in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
            let headers: Vec<_> = auth.map(|a| ("authorization", a)).into_iter().collect();
            let a = call("GET", &gw.admin_url(path), &headers, "").await;
            assert_eq!(a.status, 401, "{path} with {auth:?}");
            assert_eq!(a.json()["error"]["code"], "401");
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }
        let a = call("GET", &gw.admin_url(path), &[("authorization", &good)], "").await;
        let expected = if path == "/nowhere" { 404 } else { 200 };
        assert_eq!(a.status, expected, "{path}: {}", a.text());
    }
}
