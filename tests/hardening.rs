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
