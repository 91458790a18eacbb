//! Streaming pass-through and measurement through the real gateway: events are not held back,
//! the usage chunk the gateway asked for is invisible to clients that did not, and metrics
//! and the access log report what the simulator really generated.

mod support;

use spillway_sim::{Fault, SimHandle, SimMode};
use std::time::{Duration, Instant};
use support::client::{call, frames, post_json, send, sse_data};
use support::*;

async fn setup(access_log: &std::path::Path) -> (SimHandle, Gateway) {
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .set("access_log", access_log.display().to_string())
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    (sim, Gateway::start(&conf).await)
}

fn log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("spillway-{name}-{}.log", free_port()))
}

/// Waits for the access log line of `request_id` (written by the log's own thread).
async fn log_line(path: &std::path::Path, request_id: &str) -> serde_json::Value {
    wait_for(
        &format!("the access log line of {request_id}"),
        Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = text.lines().find(|l| l.contains(request_id))?;
            Some(serde_json::from_str(line).expect("a JSON line"))
        },
    )
    .await
}

fn stream_request(rid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("api-key", TENANT_KEY.to_string()),
        ("content-type", "application/json".to_string()),
        ("x-request-id", rid.to_string()),
    ]
}

async fn stream(gw: &Gateway, rid: &str, extra: &str) -> http::Response<hyper::body::Incoming> {
    let headers = stream_request(rid);
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send("POST", &gw.url(&chat_path("mini")), &h, chat_body(extra)).await
}

#[tokio::test]
async fn events_reach_the_client_as_they_are_generated() {
    let path = log_path("spacing");
    let (sim, gw) = setup(&path).await;
    sim.set_ttft(Duration::from_millis(20));
    sim.set_tbt(Duration::from_millis(40));
    sim.set_natural_tokens(10);
    let resp = stream(&gw, "spacing-1", r#""stream":true"#).await;
    let got = frames(resp).await.unwrap();
    let content: Vec<Instant> = got
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("\"content\":\"tok"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        content.len() >= 5,
        "events were merged into {} frames",
        content.len()
    );
    // The simulator spreads 10 tokens over 9 × 40 ms. Buffering would deliver them together;
    // pass-through keeps at least half that spread, however slow the machine.
    let spread = *content.last().unwrap() - content[0];
    assert!(
        spread >= Duration::from_millis(180),
        "events bunched: spread {spread:?}"
    );
}

#[tokio::test]
async fn the_usage_chunk_is_added_for_accounting_and_hidden_unless_asked_for() {
    let path = log_path("usage");
    let (sim, gw) = setup(&path).await;
    let a = post_json(
        &gw.url(&chat_path("mini")),
        TENANT_KEY,
        chat_body(r#""stream":true"#),
    )
    .await;
    assert_eq!(
        sim.requests()[0].json().unwrap()["stream_options"]["include_usage"],
        true
    );
    let events = sse_data(&a.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        !a.text().contains("\"total_tokens\""),
        "usage chunk leaked: {}",
        a.text()
    );
    assert!(events.iter().any(|e| e.contains("finish_reason\":\"stop")));

    let a = post_json(
        &gw.url(&chat_path("mini")),
        TENANT_KEY,
        chat_body(r#""stream":true,"stream_options":{"include_usage":true}"#),
    )
    .await;
    let events = sse_data(&a.body);
    let usage: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 20);
}

#[tokio::test]
async fn old_api_versions_are_not_sent_stream_options() {
    let path = log_path("oldapi");
    let (sim, gw) = setup(&path).await;
    let a = post_json(
        &gw.url("/openai/deployments/mini/chat/completions?api-version=2024-06-01"),
        TENANT_KEY,
        chat_body(r#""stream":true"#),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(sim.requests()[0]
        .json()
        .unwrap()
        .get("stream_options")
        .is_none());
}

#[tokio::test]
async fn access_log_and_metrics_report_tokens_and_timing() {
    let path = log_path("report");
    let (sim, gw) = setup(&path).await;
    sim.set_ttft(Duration::from_millis(60));
    sim.set_tbt(Duration::from_millis(15));
    sim.set_natural_tokens(12);
    let resp = stream(&gw, "report-1", r#""stream":true"#).await;
    assert_eq!(resp.status(), 200);
    frames(resp).await.unwrap();
    let line = log_line(&path, "report-1").await;
    assert_eq!(line["completion_tokens"], 12, "{line}");
    assert_eq!(line["usage_estimated"], false);
    assert_eq!(line["stream_complete"], true);
    assert_eq!(line["tenant"], "search");
    assert_eq!(line["deployment"], "eastus-ptu");
    assert_eq!(line["max_tokens"], 1000);
    assert_eq!(line["cap_reason"], "default");
    let ttft = line["ttft_ms"].as_f64().unwrap();
    let tbt = line["tbt_mean_ms"].as_f64().unwrap();
    assert!((60.0..2000.0).contains(&ttft), "ttft {ttft}");
    assert!((10.0..200.0).contains(&tbt), "tbt {tbt}");
    assert!(line["tbt_p95_ms"].as_f64().unwrap() >= tbt * 0.5);
    assert!(
        line["overhead_ms"].as_f64().is_some_and(|o| o >= 0.0),
        "{line}"
    );
    assert!(line["bytes_out"].as_u64().unwrap() > 0);

    let a = call(
        "POST",
        &gw.url(&chat_path("mini")),
        &[("api-key", TENANT_KEY), ("x-request-id", "report-2")],
        chat_body(""),
    )
    .await;
    assert_eq!(a.status, 200);
    let line = log_line(&path, "report-2").await;
    assert_eq!(line["completion_tokens"], 12);
    assert!(line["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{line}");
    assert_eq!(line["stream"], false);

    let metrics = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    let completion: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("spillway_completion_tokens_total{")
                && l.contains("deployment=\"eastus-ptu\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no completion tokens metric in\n{metrics}"));
    assert_eq!(completion, 24.0);
    assert!(
        metrics.contains("spillway_ttft_seconds_count{model=\"mini\",pool=\"ptu\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("spillway_requests_total{"));
    assert!(metrics.contains("spillway_deployment_healthy{deployment=\"eastus-ptu\""));
    assert!(!metrics.contains(TENANT_KEY) && !metrics.contains("key-eastus-ptu"));
}

#[tokio::test]
async fn a_cut_stream_is_logged_as_such_with_estimated_tokens() {
    let path = log_path("cut");
    let (sim, gw) = setup(&path).await;
    sim.set_fault(Fault::CutStreamAfter(4));
    let resp = stream(&gw, "cut-1", r#""stream":true"#).await;
    let _ = frames(resp).await;
    let line = log_line(&path, "cut-1").await;
    assert_eq!(line["stream_complete"], false, "{line}");
    assert_eq!(line["usage_estimated"], true);
    assert_eq!(line["completion_tokens"], 4);
    let metrics = call("GET", &gw.admin_url("/metrics"), &[], "").await.text();
    assert!(
        metrics.contains("spillway_streams_cut_total{deployment=\"eastus-ptu\",pool=\"ptu\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metering_can_be_turned_off() {
    let path = log_path("nometer");
    let sim = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .set("access_log", path.display().to_string())
        .set("meter_streams", false)
        .pool("ptu", "provisioned", &[("eastus-ptu", &sim)])
        .model("mini", &["ptu"]);
    let gw = Gateway::start(&conf).await;
    let resp = stream(&gw, "nometer-1", r#""stream":true"#).await;
    frames(resp).await.unwrap();
    assert!(sim.requests()[0]
        .json()
        .unwrap()
        .get("stream_options")
        .is_none());
    let line = log_line(&path, "nometer-1").await;
    assert!(
        line["ttft_ms"].is_null() && line["completion_tokens"].is_null(),
        "{line}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_settled_once() {
    // The deployment's admitted-token window ends up holding what the stream really used:
    // released once (not also given back when the client left, which used to empty it).
    let path = log_path("gone");
    let (sim, gw) = setup(&path).await;
    sim.set_tbt(Duration::from_millis(20));
    sim.set_natural_tokens(500);
    let resp = stream(&gw, "gone-1", r#""stream":true"#).await;
    let mut body = resp.into_body();
    let mut seen = 0;
    while seen < 5 {
        let frame = http_body_util::BodyExt::frame(&mut body).await;
        let data = frame.expect("the stream goes on").expect("a frame");
        if data
            .data_ref()
            .is_some_and(|d| d.windows(3).any(|w| w == b"tok"))
        {
            seen += 1;
        }
    }
    drop(body);
    let line = log_line(&path, "gone-1").await;
    assert_eq!(line["stream_complete"], false, "{line}");
    assert_eq!(line["usage_estimated"], true, "{line}");
    let used = line["total_tokens"].as_u64().expect("tokens counted");
    assert!(used > 0);
    let status = call("GET", &gw.admin_url("/status"), &[], "").await.json();
    let d = &status["pools"][0]["deployments"][0];
    assert_eq!(d["inflight"], 0, "{d}");
    assert_eq!(d["admitted_tokens_last_minute"], used, "{d}");
}
