//! Live cost through the real gateway: what the metrics, the access log and /status say the
//! requests cost, against the simulators' own token counts times the configured prices.

mod support;

use futures::future::join_all;
use spillway_sim::{SimHandle, SimMode};
use std::time::Duration;
use support::client::{call, post_json};
use support::*;

/// A PTU of 3,000 tokens per minute at $6 an hour: a token costs $6 / 180,000.
const PTU_HOUR: f64 = 6.0;
const PTU_TPM: u64 = 3000;
const INPUT: f64 = 0.165;
const OUTPUT: f64 = 0.66;
const REQUESTS: usize = 24;

fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("spillway-cost-{}.log", free_port()))
}

/// The sum of every sample of `family` (exactly that name, any labels) in a scrape.
fn sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|r| r.starts_with('{')))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Every number in `v`, with its path.
fn numbers(v: &serde_json::Value, at: String, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => out.push((at, n.as_f64().unwrap())),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| numbers(x, format!("{at}[{i}]"), out)),
        serde_json::Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| numbers(x, format!("{at}.{k}"), out)),
        _ => {}
    }
}

async fn lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    wait_for(
        "every access log line",
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (lines.len() == n).then_some(lines)
        },
    )
    .await
}

async fn scrape(gw: &Gateway) -> String {
    call("GET", &gw.admin_url("/metrics"), &[], "").await.text()
}

async fn status_cost(gw: &Gateway) -> serde_json::Value {
    call("GET", &gw.admin_url("/status"), &[], "").await.json()["cost"].clone()
}

#[tokio::test]
async fn cost_is_the_simulators_tokens_at_the_configured_prices() {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let west = sim("westus-std", SimMode::Unlimited).await;
    let path = log_path();
    let conf = Conf::new()
        .set("access_log", path.display().to_string())
        .set("health.interval_ms", 0)
        .set("tenants.search.class", "batch")
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .set(
            "pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute",
            PTU_TPM,
        )
        .set("pools.ptu.price.per_hour", PTU_HOUR)
        .pool("standard", "standard", &[("westus-std", &west)])
        .set("pools.standard.price.input_per_million", INPUT)
        .set("pools.standard.price.output_per_million", OUTPUT)
        .model("gpt-4o-mini", &["ptu", "standard"]);
    let gw = Gateway::start(&conf).await;
    // Requests in flight together, each admitted at about 300 tokens: the PTU's predicted
    // utilization passes 90% of 3,000 after nine or so, and the rest spill.
    for s in [&ptu, &west] {
        s.set_ttft(Duration::from_millis(100));
    }
    let url = gw.url(&chat_path("gpt-4o-mini"));
    let answers = join_all((0..REQUESTS).map(|i| {
        let extra = if i % 3 == 0 {
            r#""max_tokens":290,"stream":true"#
        } else {
            r#""max_tokens":290"#
        };
        post_json(&url, TENANT_KEY, chat_body(extra))
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let (p, s) = (ptu.stats(), west.stats());
    assert!(p.ok > 0 && s.ok > 0, "both served: {p:?} {s:?}");
    let ptu_usd =
        (p.prompt_tokens + p.completion_tokens) as f64 * PTU_HOUR / (PTU_TPM as f64 * 60.0);
    let std_usd = (s.prompt_tokens as f64 * INPUT + s.completion_tokens as f64 * OUTPUT) / 1e6;
    let close = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 1e-10, "{what}: {got} vs {want}");
    };

    // Each line is written after its metrics, so once all are in, the counters are too.
    let log = lines(&path, REQUESTS).await;
    let logged: f64 = log.iter().map(|l| l["cost_usd"].as_f64().unwrap()).sum();
    close(logged, ptu_usd + std_usd, "access log cost_usd");
    let metrics = scrape(&gw).await;
    close(
        sum(&metrics, "spillway_cost_usd_total"),
        ptu_usd + std_usd,
        "spillway_cost_usd_total",
    );
    close(
        sum(&metrics, "spillway_spillover_cost_usd_total"),
        std_usd,
        "spillover part",
    );
    close(
        sum(&metrics, "spillway_ptu_served_usd_total"),
        ptu_usd,
        "PTU served",
    );
    assert!(metrics.contains(r#"class="batch""#), "{metrics}");
    let paid = sum(&metrics, "spillway_ptu_paid_usd_total");
    let unused = sum(&metrics, "spillway_ptu_unused_usd_total");
    assert!(
        paid > 0.0 && (0.0..=paid).contains(&unused),
        "{paid} {unused}"
    );

    let cost = status_cost(&gw).await;
    assert_eq!(cost["ptu_paid_per_hour_usd"], PTU_HOUR);
    let standard = cost["standard_per_hour_usd"].as_f64().unwrap();
    assert!(standard > 0.0, "{cost}");
    // Every Standard request here was a spillover.
    assert_eq!(
        cost["spillover_per_hour_usd"],
        cost["standard_per_hour_usd"]
    );
    assert!(cost["ptu_use_percent"].as_f64().unwrap() > 0.0, "{cost}");
    let mut all = Vec::new();
    numbers(&cost, "cost".into(), &mut all);
    assert!(
        all.iter().all(|(_, x)| x.is_finite() && *x >= 0.0),
        "{all:?}"
    );
    std::fs::remove_file(path).ok();
}

async fn unpriced() -> (SimHandle, Gateway) {
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let conf = Conf::new()
        .pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
        .model("gpt-4o-mini", &["ptu"]);
    (ptu, Gateway::start(&conf).await)
}

#[tokio::test]
async fn nothing_priced_shows_no_cost_and_no_nan() {
    let (_ptu, gw) = unpriced().await;
    let a = post_json(
        &gw.url(&chat_path("gpt-4o-mini")),
        TENANT_KEY,
        chat_body(""),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let metrics = scrape(&gw).await;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(!v.is_nan(), "{line}");
    }
    for line in metrics.lines().filter(|l| {
        [
            "spillway_cost_",
            "spillway_spillover_cost_",
            "spillway_ptu_",
        ]
        .iter()
        .any(|f| l.starts_with(f))
    }) {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{line}");
    }
    assert_eq!(sum(&metrics, "spillway_cost_usd_total"), 0.0);
    assert_eq!(sum(&metrics, "spillway_ptu_paid_usd_total"), 0.0);
    let cost = status_cost(&gw).await;
    assert_eq!(cost["per_hour_usd"], 0.0, "{cost}");
    assert!(cost["ptu_unused_percent"].is_null(), "{cost}");
    assert_eq!(cost["pools"][0]["price"], "unpriced");
    let mut all = Vec::new();
    numbers(&cost, "cost".into(), &mut all);
    assert!(
        all.iter().all(|(_, x)| x.is_finite() && *x >= 0.0),
        "{all:?}"
    );
}
