//! Hot reload through the real gateway: a changed file takes effect without a restart while a
//! stream started before it completes; a broken file changes nothing; live state survives.

mod support;

use spillway_sim::{Fault, SimHandle, SimMode};
use std::path::PathBuf;
use std::time::Duration;
use support::client::{call, frames, post_json, send};
use support::*;

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("spillway-{name}-{}.yaml", free_port()))
}

/// PTU `eastus-ptu` (then Standard `west`, if given) behind alias `mini`, with this sync cap
/// and tenant key, and no active health checks.
fn conf(sync_cap: u32, key: &str, west: Option<&SimHandle>, ptu: &SimHandle) -> Conf {
    let conf = Conf::new()
        .set("health.interval_ms", 0)
        .set("tenants.search.api_keys", vec![key])
        .set("governance.sync_max_tokens", sync_cap)
        .pool("ptu", "provisioned", &[("eastus-ptu", ptu)]);
    match west {
        Some(west) => conf
            .pool("standard", "standard", &[("westus-std", west)])
            .model("mini", &["ptu", "standard"]),
        None => conf.model("mini", &["ptu"]),
    }
}

async fn status(gw: &Gateway) -> serde_json::Value {
    call("GET", &gw.admin_url("/status"), &[], "").await.json()
}

/// Waits until the gateway reports a reload whose result is `result`, or a new config hash.
async fn wait_reload(gw: &Gateway, result: &str, old_hash: &str) -> serde_json::Value {
    wait_for(
        &format!("a reload with result {result}"),
        Duration::from_secs(10),
        async || {
            let s = status(gw).await;
            let done = s["last_reload"]["result"] == result
                && (result != "ok" || s["config_hash"].as_str() != Some(old_hash));
            done.then_some(s)
        },
    )
    .await
}

#[tokio::test]
async fn a_change_applies_live_while_an_older_stream_finishes() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let path = temp_file("live");
    let gw = Gateway::start_from_file(&conf(2000, TENANT_KEY, Some(&west), &ptu), &path).await;
    let hash = status(&gw).await["config_hash"]
        .as_str()
        .unwrap()
        .to_string();

    // A stream of about 1.5 s, started on the old config.
    ptu.set_tbt(Duration::from_millis(15));
    ptu.set_natural_tokens(100);
    let long = send(
        "POST",
        &gw.url(&chat_path("mini")),
        &[
            ("api-key", TENANT_KEY),
            ("content-type", "application/json"),
        ],
        chat_body(r#""stream":true"#),
    )
    .await;
    ptu.set_tbt(Duration::ZERO);
    ptu.set_natural_tokens(5);

    // New cap, a new key for the tenant, and the standard pool removed.
    gw.rewrite(&path, &conf(300, "tenant-key-2", None, &ptu));
    let s = wait_reload(&gw, "ok", &hash).await;
    assert_eq!(s["pools"].as_array().unwrap().len(), 1);

    let a = post_json(
        &gw.url(&chat_path("mini")),
        "tenant-key-2",
        chat_body(r#""max_tokens":8000"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        ptu.requests().last().unwrap().json().unwrap()["max_tokens"],
        300
    );
    let old_key = post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body("")).await;
    assert_eq!(old_key.status, 401);

    let got = frames(long).await.expect("the old stream completes");
    let text: String = got
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(text.matches("\"content\":\"tok").count(), 100);
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn a_broken_file_is_rejected_and_the_old_config_keeps_serving() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let path = temp_file("broken");
    let gw = Gateway::start_from_file(&conf(2000, TENANT_KEY, None, &ptu), &path).await;
    let hash = status(&gw).await["config_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let broken = conf(2000, TENANT_KEY, None, &ptu)
        .set("pools.ptu.kind", "spot")
        .set("bogus_field", 1);
    gw.rewrite(&path, &broken);
    let s = wait_reload(&gw, "error", &hash).await;
    assert_eq!(s["config_hash"], hash.as_str(), "the old config still runs");
    let problems = s["last_reload"]["problems"].to_string();
    assert!(problems.contains("spot"), "{problems}");
    assert_eq!(
        post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body(""))
            .await
            .status,
        200
    );
    let metrics = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("spillway_config_reload_total{result=\"error\"} 1"),
        "{metrics}"
    );
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn live_state_of_unchanged_deployments_survives_a_reload() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let path = temp_file("state");
    let gw = Gateway::start_from_file(&conf(2000, TENANT_KEY, Some(&west), &ptu), &path).await;
    let hash = status(&gw).await["config_hash"]
        .as_str()
        .unwrap()
        .to_string();
    ptu.set_fault(Fault::Status {
        status: 429,
        remaining: Some(1),
        retry_after_ms: Some(30_000),
    });
    assert_eq!(
        post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body(""))
            .await
            .status,
        200
    );
    gw.rewrite(&path, &conf(1500, TENANT_KEY, Some(&west), &ptu));
    let s = wait_reload(&gw, "ok", &hash).await;
    let ptu_status = &s["pools"][0]["deployments"][0];
    assert!(
        ptu_status["cooldown_ms"].as_u64().unwrap() > 20_000,
        "{ptu_status}"
    );
    assert_eq!(ptu_status["throttled_total"], 1);
    // And routing still honours it: the next request goes to Standard without asking the PTU.
    let n = ptu.requests().len();
    let a = post_json(&gw.url(&chat_path("mini")), TENANT_KEY, chat_body("")).await;
    assert_eq!(a.header("x-ms-deployment-name"), Some("westus-std"));
    assert_eq!(ptu.requests().len(), n);
    std::fs::remove_file(path).ok();
}
