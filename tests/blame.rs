//! Failures are blamed where they belong: one tenant's failing requests cannot eject a
//! deployment for everyone, a 408 that the request's own size explains ejects nothing, a
//! model with every deployment out answers 503 with `retry-after`, and one model's outage
//! neither makes the instance unready nor shows on the public health path.

mod support;

use spillway_sim::{Fault, SimHandle, SimMode};
use std::time::Duration;
use support::client::{call, post_json};
use support::*;

const OTHER_KEY: &str = "other-tenant-key";
const HANG: Duration = Duration::from_secs(10);

struct Two {
    ptu: SimHandle,
    _std: SimHandle,
    gw: Gateway,
}

/// A PTU then a Standard deployment, two tenants, ejection after two failures, no active
/// checks, and a retry budget that never runs out in a test.
async fn two_tenants() -> Two {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let std = sim("westus-std", SimMode::Unlimited).await;
    let conf = Conf::new()
        .tenant("other", &[OTHER_KEY])
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .pool("standard", "standard", &[("westus-std", &std)])
        .model("mini", &["ptu", "standard"])
        .set("health.interval_ms", 0)
        .set("routing.eject_after_failures", 2)
        .set("routing.eject_ms", 60_000)
        .set("retry.budget_min_per_second", 1000);
    let gw = Gateway::start(&conf).await;
    Two { ptu, _std: std, gw }
}

async fn ejected_ms(gw: &Gateway, name: &str) -> u64 {
    gw.deployment_status(name).await["ejected_ms"]
        .as_u64()
        .unwrap()
}

async fn ask(gw: &Gateway, key: &str, extra: &str) -> support::client::Answer {
    post_json(&gw.url(&chat_path("mini")), key, chat_body(extra)).await
}

#[tokio::test]
async fn one_tenants_failures_cannot_eject_a_deployment_for_everyone() {
    let t = two_tenants().await;
    t.ptu.set_fault(Fault::Status {
        status: 500,
        remaining: None,
        retry_after_ms: None,
    });
    for _ in 0..5 {
        let a = ask(&t.gw, TENANT_KEY, "").await;
        assert_eq!(a.status, 200, "replayed on Standard: {}", a.text());
    }
    assert_eq!(t.ptu.requests().len(), 5, "the PTU was never ejected");
    assert_eq!(ejected_ms(&t.gw, "eastus-ptu").await, 0);
    // A second tenant failing there too is evidence about the deployment.
    assert_eq!(ask(&t.gw, OTHER_KEY, "").await.status, 200);
    assert!(ejected_ms(&t.gw, "eastus-ptu").await > 0);
    assert_eq!(ask(&t.gw, TENANT_KEY, "").await.status, 200);
    assert_eq!(t.ptu.requests().len(), 6, "ejected: not tried again");
}

#[tokio::test]
async fn a_408_the_requests_size_explains_ejects_nothing_but_small_ones_do() {
    let t = two_tenants().await;
    t.ptu.set_fault(Fault::Status {
        status: 408,
        remaining: None,
        retry_after_ms: None,
    });
    // 2,000 output tokens take longer than half of Azure's 60 s window at the assumed rate.
    for key in [TENANT_KEY, OTHER_KEY, TENANT_KEY, OTHER_KEY] {
        assert_eq!(ask(&t.gw, key, r#""max_tokens":2000"#).await.status, 200);
    }
    assert_eq!(ejected_ms(&t.gw, "eastus-ptu").await, 0);
    assert_eq!(t.ptu.requests().len(), 4);
    for key in [TENANT_KEY, OTHER_KEY] {
        assert_eq!(ask(&t.gw, key, r#""max_tokens":50"#).await.status, 200);
    }
    assert!(
        ejected_ms(&t.gw, "eastus-ptu").await > 0,
        "small requests timing out say the deployment is failing"
    );
}

#[tokio::test]
async fn every_deployment_out_is_a_503_that_says_when_to_retry() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .model("mini", &["ptu"])
        .set("health.interval_ms", 0)
        .set("routing.eject_after_failures", 1)
        .set("routing.eject_ms", 5_000);
    let gw = Gateway::start(&conf).await;
    ptu.set_fault(Fault::Refuse);
    let first = ask(&gw, TENANT_KEY, "").await;
    assert!(first.status >= 500, "{}", first.text());
    let a = ask(&gw, TENANT_KEY, "").await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "ServiceUnavailable");
    let secs: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&secs), "retry-after {secs}");
    let ms: u64 = a.header("retry-after-ms").unwrap().parse().unwrap();
    assert!((1..=5_000).contains(&ms), "retry-after-ms {ms}");
}

#[tokio::test]
async fn one_models_outage_leaves_the_instance_ready_and_unnamed_in_public() {
    let ok = sim("westus-std", SimMode::Unlimited).await;
    let down = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("good", "standard", &[("westus-std", &ok)])
        .pool("bad", "provisioned", &[("eastus-ptu", &down)])
        .model("mini", &["good"])
        .model("secret-model-name", &["bad"])
        .set("health.interval_ms", 50)
        .set("health.timeout_ms", 50)
        .set("health.unhealthy_after", 1);
    let gw = Gateway::start(&conf).await;
    down.set_fault(Fault::Refuse);
    let models = wait_for("the model to be reported down", HANG, async || {
        let a = call("GET", &gw.admin_url("/health/models"), &[], "").await;
        (a.status == 503).then(|| a.json())
    })
    .await;
    assert_eq!(
        models["models"]["secret-model-name"],
        "no healthy deployment"
    );
    assert_eq!(models["models"]["mini"], "ok");
    assert_eq!(
        call("GET", &gw.admin_url("/readyz"), &[], "").await.status,
        200
    );
    let public = call("GET", &gw.url("/spillway/health"), &[], "").await;
    assert_eq!(public.status, 200);
    assert_eq!(public.text(), r#"{"status":"ready"}"#);
    assert_eq!(ask(&gw, TENANT_KEY, "").await.status, 200);
}
