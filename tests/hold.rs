//! Hold or spill through the real gateway: a small simulated PTU kept busy by one long
//! request, Standard regions behind it, and requests that wait for the PTU, spill at once,
//! leave while held, find the queue full, or are shed by class.

mod support;

use spillway_sim::{SimHandle, SimMode};
use std::time::Duration;
use support::client::{call, post_json, Answer};
use support::*;

/// 6,000 tokens a minute: the PTU drains 100 tokens a second, 1% in 0.6 s.
const PTU_TPM: u64 = 6_000;
const BATCH_KEY: &str = "batch-tenant-key";

struct Regions {
    ptu: SimHandle,
    west: SimHandle,
    gw: Gateway,
}

async fn regions(change: impl FnOnce(Conf) -> Conf) -> Regions {
    let ptu = sim(
        "eastus-ptu",
        SimMode::Provisioned {
            tokens_per_minute: PTU_TPM,
        },
    )
    .await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let conf = Conf::new()
        .tenant("batchy", &[BATCH_KEY])
        .set("health.interval_ms", 0)
        // The long request's output limit is the PTU's load here: no cap may lower it.
        .set("governance.sync_max_tokens", 16_000)
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .set("pools.ptu.spill_at_utilization", 90)
        .set(
            "pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute",
            PTU_TPM,
        )
        .pool("standard", "standard", &[("westus-std", &west)])
        .model("gpt-4o-mini", &["ptu", "standard"])
        .model("ptu-only", &["ptu"]);
    let gw = Gateway::start(&change(conf)).await;
    Regions { ptu, west, gw }
}

impl Regions {
    /// Sends a request that sits on the PTU (the simulator answers it after `for_`) with
    /// `max_tokens` charged to the PTU's bucket, and waits until it is in flight there.
    async fn occupy(&self, max_tokens: u32, for_: Duration) -> tokio::task::JoinHandle<Answer> {
        self.ptu.set_ttft(for_);
        let url = self.gw.url(&chat_path("gpt-4o-mini"));
        let body = chat_body(&format!(r#""max_tokens":{max_tokens}"#));
        let task = tokio::spawn(async move { post_json(&url, TENANT_KEY, body).await });
        wait_until(
            "the long request on the PTU",
            Duration::from_secs(10),
            async || self.gw.deployment_status("eastus-ptu").await["inflight"] == 1,
        )
        .await;
        self.ptu.set_ttft(Duration::from_millis(1));
        task
    }

    async fn ask(&self, alias: &str, key: &str, headers: &[(&str, &str)]) -> Answer {
        let mut h = vec![("api-key", key), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        call(
            "POST",
            &self.gw.url(&chat_path(alias)),
            &h,
            chat_body(r#""max_tokens":50"#),
        )
        .await
    }

    async fn metric(&self, line: &str) -> Option<f64> {
        let text = call("GET", &self.gw.admin_url("/metrics"), &[], "")
            .await
            .text();
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
    }
}

fn served_by(a: &Answer) -> &str {
    a.header("x-ms-deployment-name").unwrap_or("none")
}

/// Every request of the default tenant may be held for 10 s.
fn holding(c: Conf) -> Conf {
    c.set("classes.standard.max_hold_ms", 10_000)
}

#[tokio::test]
async fn a_held_request_is_served_by_the_ptu_when_room_comes() {
    let r = regions(holding).await;
    // ~93% of the PTU for 2 s: the next request waits rather than spill.
    let long = r.occupy(5_580, Duration::from_secs(2)).await;
    let a = r.ask("gpt-4o-mini", TENANT_KEY, &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "eastus-ptu");
    let held: u64 = a
        .header("x-spillway-held-ms")
        .expect("held")
        .parse()
        .unwrap();
    assert!(held > 0);
    assert_eq!(a.header("x-spillway-spill-reason"), None);
    assert_eq!(r.west.requests().len(), 0, "nothing spilled");
    assert_eq!(long.await.unwrap().status, 200);
    assert_eq!(
        r.metric("spillway_held_total{class=\"standard\",outcome=\"served\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_request_whose_allowance_is_too_short_spills_at_once() {
    let r = regions(holding).await;
    let _long = r.occupy(5_580, Duration::from_secs(30)).await;
    // The PTU needs about 2 s to drain below 90%; this client gives 100 ms.
    let a = r
        .ask(
            "gpt-4o-mini",
            TENANT_KEY,
            &[("x-spillway-max-wait-ms", "100")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "westus-std");
    assert_eq!(a.header("x-spillway-spill-reason"), Some("deadline"));
    assert_eq!(a.header("x-spillway-held-ms"), None, "never queued");
    // Without classes that hold, the same load spills at the threshold.
    let r = regions(|c| c).await;
    let _long = r.occupy(5_580, Duration::from_secs(30)).await;
    let a = r.ask("gpt-4o-mini", TENANT_KEY, &[]).await;
    assert_eq!(served_by(&a), "westus-std");
    assert_eq!(a.header("x-spillway-spill-reason"), Some("threshold"));
}

#[tokio::test]
async fn a_client_that_leaves_while_held_leaves_no_trace() {
    let r = regions(holding).await;
    // ~98%: about 5 s to drain, within the 10 s allowance.
    let _long = r.occupy(5_880, Duration::from_secs(60)).await;
    let url = r.gw.url(&chat_path("gpt-4o-mini"));
    let leaver =
        tokio::spawn(
            async move { post_json(&url, TENANT_KEY, chat_body(r#""max_tokens":50"#)).await },
        );
    wait_until("the request held", Duration::from_secs(10), async || {
        r.gw.deployment_status("eastus-ptu").await["held"] == 1
    })
    .await;
    leaver.abort();
    wait_until(
        "the queue empty again",
        Duration::from_secs(10),
        async || r.gw.deployment_status("eastus-ptu").await["held"] == 0,
    )
    .await;
    let s = r.gw.deployment_status("eastus-ptu").await;
    assert_eq!(s["inflight"], 1, "only the long request: {s}");
    wait_until(
        "the hold counted as gone",
        Duration::from_secs(10),
        async || {
            r.metric("spillway_held_total{class=\"standard\",outcome=\"gone\"}")
                .await
                == Some(1.0)
        },
    )
    .await;
    assert_eq!(r.ptu.requests().len(), 1, "the PTU never saw it");
    assert_eq!(r.west.requests().len(), 0, "nor did Standard");
}

#[tokio::test]
async fn a_full_queue_spills() {
    // The gateway models a PTU of 4,000 TPM (the simulator takes 6,000), so the long request
    // is 147% of it and the bucket needs ~34 s to drain to 90%: well within the 120 s
    // allowance, so the first request is surely held, and far longer than a slow machine
    // takes to look. With 98% it drained in 4.8 s, which a loaded CI machine once missed.
    let r = regions(|c| {
        holding(c)
            .set("pools.ptu.hold_queue", 1)
            .set("classes.standard.max_hold_ms", 120_000)
            .set(
                "pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute",
                4_000,
            )
    })
    .await;
    let _long = r.occupy(5_880, Duration::from_secs(60)).await;
    let url = r.gw.url(&chat_path("gpt-4o-mini"));
    let first =
        tokio::spawn(
            async move { post_json(&url, TENANT_KEY, chat_body(r#""max_tokens":50"#)).await },
        );
    wait_until("one request held", Duration::from_secs(10), async || {
        r.gw.deployment_status("eastus-ptu").await["held"] == 1
    })
    .await;
    let a = r.ask("gpt-4o-mini", TENANT_KEY, &[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(served_by(&a), "westus-std");
    assert_eq!(a.header("x-spillway-spill-reason"), Some("queue-full"));
    assert_eq!(r.gw.deployment_status("eastus-ptu").await["held"], 1);
    first.abort();
}

#[tokio::test]
async fn batch_spills_before_interactive_and_is_shed_before_it() {
    let r = regions(|c| {
        c.set("tenants.search.class", "interactive")
            .set("tenants.batchy.class", "batch")
            .set("classes.interactive.spill_at_utilization", 95)
            .set("classes.batch.spill_at_utilization", 80)
            .set("classes.batch.shed_at_utilization", 85)
    })
    .await;
    // ~88% of the PTU: under the pool's 90%, over batch's 80%.
    let _long = r.occupy(5_260, Duration::from_secs(30)).await;
    let batch = r.ask("gpt-4o-mini", BATCH_KEY, &[]).await;
    assert_eq!(served_by(&batch), "westus-std");
    assert_eq!(batch.header("x-spillway-spill-reason"), Some("class"));
    let interactive = r.ask("gpt-4o-mini", TENANT_KEY, &[]).await;
    assert_eq!(served_by(&interactive), "eastus-ptu");
    // With nowhere else to go, batch is refused and interactive still served.
    let shed = r.ask("ptu-only", BATCH_KEY, &[]).await;
    assert_eq!(shed.status, 429, "{}", shed.text());
    assert!(shed.header("retry-after").is_some());
    assert!(shed.text().contains("shed"), "{}", shed.text());
    let kept = r.ask("ptu-only", TENANT_KEY, &[]).await;
    assert_eq!(kept.status, 200, "{}", kept.text());
    assert_eq!(served_by(&kept), "eastus-ptu");
}
