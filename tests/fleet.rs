//! A fleet of three real gateways sharing a real `redis-server`: tenant budgets, PTU
//! saturation, cool-downs, Redis dying and coming back, and a member that disappears.
//! Each test starts its own Redis on a free port.

mod support;

use futures::future::join_all;
use spillway_sim::{Fault, SimHandle, SimMode};
use std::time::{Duration, Instant};
use support::client::{call, post_json};
use support::redis::{Redis, Relay};
use support::*;

const TPM: u64 = 30_000;
/// Each request: a ~10-token prompt and exactly `MAX_TOKENS` generated (see `standard`).
const MAX_TOKENS: u64 = 1_000;

/// A Standard simulator that always generates the full `max_tokens`, so that each admitted
/// request costs a known number of tokens.
async fn standard(name: &str) -> SimHandle {
    let s = sim(name, SimMode::Unlimited).await;
    s.set_natural_tokens(1_000_000);
    s
}

/// The config every member shares; `change` adds what the test needs.
fn fleet_conf(redis_url: &str, change: impl Fn(Conf) -> Conf) -> impl Fn(&str) -> Conf {
    let url = redis_url.to_string();
    move |id: &str| {
        change(
            Conf::new()
                .set("health.interval_ms", 0)
                .set("fleet.redis_url", url.as_str())
                .set("fleet.instance_id", id)
                .set("fleet.sync_interval_ms", 100)
                .set("fleet.expected_members", 3),
        )
    }
}

async fn start_three(conf: impl Fn(&str) -> Conf) -> Vec<Gateway> {
    let mut gws = Vec::new();
    for id in ["gw-a", "gw-b", "gw-c"] {
        gws.push(Gateway::start(&conf(id)).await);
    }
    for gw in &gws {
        wait_mode(gw, "fleet", 3).await;
    }
    gws
}

/// Each member's chat completions URL.
fn chat_urls(gws: &[Gateway]) -> Vec<String> {
    gws.iter()
        .map(|g| g.url(&chat_path("gpt-4o-mini")))
        .collect()
}

async fn fleet_status(gw: &Gateway) -> serde_json::Value {
    call("GET", &gw.admin_url("/status"), &[], "").await.json()["fleet"].clone()
}

/// Waits until `gw` reports `mode` with `members` members.
async fn wait_mode(gw: &Gateway, mode: &str, members: u64) {
    wait_until(
        &format!("{} in mode {mode} with {members} members", gw.addr),
        Duration::from_secs(20),
        async || {
            let f = fleet_status(gw).await;
            f["mode"] == mode && f["members"] == members
        },
    )
    .await;
}

fn body() -> String {
    chat_body(&format!(r#""max_tokens":{MAX_TOKENS}"#))
}

/// Tokens a 200 answer used, from its `usage`.
fn used(a: &support::client::Answer) -> u64 {
    a.json()["usage"]["total_tokens"].as_u64().expect("usage")
}

/// What a token bucket of `TPM` that starts full can admit over `elapsed`.
fn bound(elapsed: Duration) -> f64 {
    TPM as f64 + TPM as f64 * elapsed.as_secs_f64() / 60.0
}

#[derive(Default, Debug)]
struct Tally {
    tokens: u64,
    ok: u64,
    refused: u64,
}

impl Tally {
    fn count(&mut self, a: &support::client::Answer) {
        match a.status {
            200 => {
                self.ok += 1;
                self.tokens += used(a);
            }
            429 => {
                assert!(a.header("retry-after").is_some(), "{}", a.text());
                self.refused += 1;
            }
            s => panic!("a request failed with {s}: {}", a.text()),
        }
    }
}

fn assert_within(what: &str, admitted: u64, elapsed: Duration) {
    let b = bound(elapsed);
    let slack = 0.05 * b + (MAX_TOKENS + 20) as f64;
    eprintln!(
        "{what}: admitted {admitted} tokens in {:.1} s; a single bucket allows {b:.0} ({:+.2}%)",
        elapsed.as_secs_f64(),
        (admitted as f64 - b) * 100.0 / b
    );
    assert!(
        (admitted as f64 - b).abs() <= slack,
        "{what}: admitted {admitted}, the budget allows {b:.0} ± {slack:.0}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_budget_holds_across_the_fleet_for_a_spread_load_and_a_burst() {
    let redis = Redis::start();
    let std = standard("westus-std").await;
    let conf = fleet_conf(&redis.url(), |c| {
        c.tenant("burst", &["burst-key"])
            .set("tenants.search.tokens_per_minute", TPM)
            .set("tenants.burst.tokens_per_minute", TPM)
            .pool("standard", "standard", &[("westus-std", &std)])
            .model("gpt-4o-mini", &["standard"])
    });
    let gws = start_three(conf).await;
    let urls = chat_urls(&gws);
    let minute = Duration::from_secs(60);
    let start = Instant::now();

    // Spread: each member gets a request every 200 ms, round the clock, ~30x the budget.
    let spread = async {
        let mut tally = Tally::default();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while start.elapsed() < minute {
            tick.tick().await;
            for a in join_all(urls.iter().map(|u| post_json(u, TENANT_KEY, body()))).await {
                tally.count(&a);
            }
        }
        (tally, start.elapsed())
    };
    // Burst: every 3 s, 10 requests at once on each member.
    let burst = async {
        let mut tally = Tally::default();
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        while start.elapsed() < minute {
            tick.tick().await;
            let wave = urls
                .iter()
                .flat_map(|u| (0..10).map(move |_| post_json(u, "burst-key", body())));
            for a in join_all(wave).await {
                tally.count(&a);
            }
        }
        (tally, start.elapsed())
    };
    let ((spread, spread_t), (burst, burst_t)) = tokio::join!(spread, burst);
    eprintln!("spread {spread:?}, burst {burst:?}");
    assert_within("spread load", spread.tokens, spread_t);
    assert_within("simultaneous bursts", burst.tokens, burst_t);
    // Alone, each member would have admitted a full budget: three times as much.
    assert!(spread.refused > 0 && burst.refused > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_three_members_fills_the_ptu_without_a_429() {
    let redis = Redis::start();
    // 60,000 tokens/min PTU, spilling at 90% (54,000); 90 requests of ~1,000 tokens.
    let ptu = sim(
        "eastus-ptu",
        SimMode::Provisioned {
            tokens_per_minute: 60_000,
        },
    )
    .await;
    let std = standard("westus-std").await;
    for s in [&ptu, &std] {
        s.set_natural_tokens(1_000_000);
        s.set_ttft(Duration::from_millis(100));
    }
    let conf = fleet_conf(&redis.url(), |c| {
        c.pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
            .set("pools.ptu.spill_at_utilization", 90)
            .set(
                "pools.ptu.deployments.eastus-ptu.capacity_tokens_per_minute",
                60_000,
            )
            .pool("standard", "standard", &[("westus-std", &std)])
            .model("gpt-4o-mini", &["ptu", "standard"])
    });
    let gws = start_three(conf).await;
    let burst = (0..90).map(|i| {
        let url = gws[i % 3].url(&chat_path("gpt-4o-mini"));
        async move {
            // Spread over 0.2 s, round-robin, as Front Door would.
            tokio::time::sleep(Duration::from_micros(i as u64 * 2_200)).await;
            post_json(&url, TENANT_KEY, chat_body(r#""max_tokens":990"#)).await
        }
    });
    let answers = join_all(burst).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let stats = ptu.stats();
    let ptu_tokens = stats.prompt_tokens + stats.completion_tokens;
    eprintln!(
        "PTU: {} requests, {} tokens ({:.0}% of the spill threshold), {} 429s; Standard: {} requests",
        stats.requests,
        ptu_tokens,
        ptu_tokens as f64 * 100.0 / 54_000.0,
        stats.throttled_429,
        std.stats().requests
    );
    assert_eq!(stats.throttled_429, 0, "the fleet predicted saturation");
    assert!(
        ptu_tokens as f64 >= 0.8 * 54_000.0,
        "the PTU took only {ptu_tokens} tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_seen_by_one_member_keeps_the_others_off_the_deployment() {
    let redis = Redis::start();
    let ptu = sim("eastus-ptu", SimMode::Unlimited).await;
    let std = standard("westus-std").await;
    let conf = fleet_conf(&redis.url(), |c| {
        c.pool("ptu", "provisioned", &[("eastus-ptu", &ptu)])
            .pool("standard", "standard", &[("westus-std", &std)])
            .model("gpt-4o-mini", &["ptu", "standard"])
    });
    let gws = start_three(conf).await;
    ptu.set_fault(Fault::ThrottleWith {
        retry_after: None,
        retry_after_ms: Some("8000".into()),
        remaining: Some(1),
    });
    let a = post_json(&gws[0].url(&chat_path("gpt-4o-mini")), TENANT_KEY, body()).await;
    assert_eq!(a.status, 200, "replayed on Standard: {}", a.text());
    assert_eq!(ptu.stats().throttled_429, 1);
    for gw in &gws[1..] {
        wait_until(
            "the cool-down to reach the other members",
            Duration::from_secs(5),
            async || gw.deployment_status("eastus-ptu").await["cooldown_ms"].as_u64() > Some(0),
        )
        .await;
    }
    let before = ptu.stats().requests;
    for gw in &gws[1..] {
        for _ in 0..5 {
            let a = post_json(&gw.url(&chat_path("gpt-4o-mini")), TENANT_KEY, body()).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.header("x-spillway-spillover"), Some("ptu->standard"));
        }
    }
    assert_eq!(ptu.stats().requests, before, "no member tried the PTU");
    let left = gws[2].deployment_status("eastus-ptu").await["cooldown_ms"]
        .as_u64()
        .unwrap();
    assert!(
        left > 5_000 && left <= 8_000,
        "the 429's retry-after-ms: {left}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_costs_no_request_and_its_return_rebuilds_the_fleet() {
    let mut redis = Redis::start();
    let std = standard("westus-std").await;
    let conf = fleet_conf(&redis.url(), |c| {
        c.set("tenants.search.tokens_per_minute", TPM)
            .pool("standard", "standard", &[("westus-std", &std)])
            .model("gpt-4o-mini", &["standard"])
    });
    let gws = start_three(conf).await;
    let urls = chat_urls(&gws);
    let load = async |tallies: &mut [Tally], rounds: usize| {
        for _ in 0..rounds {
            let answers = join_all(urls.iter().map(|u| post_json(u, TENANT_KEY, body()))).await;
            for (t, a) in tallies.iter_mut().zip(&answers) {
                t.count(a);
            }
        }
    };
    let mut before = [Tally::default(), Tally::default(), Tally::default()];
    load(&mut before, 5).await;

    redis.kill();
    for gw in &gws {
        wait_mode(gw, "local fallback", 3).await;
    }
    // Each member now admits from its own third of the budget, refilled at a third of the
    // rate: over this load, at most what it held when Redis died plus its share.
    let started = Instant::now();
    let mut during = [Tally::default(), Tally::default(), Tally::default()];
    load(&mut during, 40).await;
    let elapsed = started.elapsed();
    let total: u64 = during.iter().map(|t| t.tokens).sum();
    eprintln!("in fallback: {during:?} over {elapsed:?}");
    for (gw, t) in gws.iter().zip(&during) {
        let share = bound(elapsed) / 3.0;
        assert!(
            (t.tokens as f64) <= share + (MAX_TOKENS as f64 + 20.0) * 2.0,
            "{} admitted {} tokens, its share is {share:.0}",
            gw.addr,
            t.tokens
        );
    }
    assert!(total as f64 <= bound(elapsed) + 6.0 * (MAX_TOKENS + 20) as f64);
    let metrics = call("GET", &gws[0].admin_url("/metrics"), &[], "")
        .await
        .text();
    assert!(metrics.contains("spillway_fleet_fallback 1"), "{metrics}");

    redis.restart();
    for gw in &gws {
        wait_mode(gw, "fleet", 3).await;
    }
    // Fleet-wide again: one member alone may now use more than its third. In fallback it
    // could not (the test above), so this only passes with the fleet's view rebuilt.
    let one = &urls[0];
    let mut alone = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alone.tokens as f64 <= TPM as f64 / 3.0 + 3_000.0 {
        assert!(
            Instant::now() < deadline,
            "one member stayed at a third: {alone:?}"
        );
        let a = post_json(one, TENANT_KEY, body()).await;
        alone.count(&a);
        if a.status == 429 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_vanishes_leaves_and_its_share_returns() {
    let redis = Redis::start();
    let std = standard("westus-std").await;
    let relay = Relay::start(redis.port).await;
    let tenant = |c: Conf| {
        c.set("tenants.search.requests_per_minute", 60)
            .pool("standard", "standard", &[("westus-std", &std)])
            .model("gpt-4o-mini", &["standard"])
    };
    let direct = fleet_conf(&redis.url(), tenant);
    let through_relay = fleet_conf(&relay.url(), tenant);
    let a = Gateway::start(&direct("gw-a")).await;
    let b = Gateway::start(&direct("gw-b")).await;
    let c = Gateway::start(&through_relay("gw-c")).await;
    for gw in [&a, &b, &c] {
        wait_mode(gw, "fleet", 3).await;
    }
    // At rest the three share the bucket evenly: gw-c holds a third of the 60 requests.
    redis.wait_for_lease("gw-c", 'r', "search", 20).await;
    // gw-c stops being heard, as a partitioned pod does (its connection hangs, nothing closes).
    relay.cut();
    let cut = Instant::now();
    for gw in [&a, &b] {
        wait_mode(gw, "fleet", 2).await;
    }
    eprintln!("members 3 -> 2 after {:?}", cut.elapsed());
    assert_eq!(
        redis.command(&["ZCARD", "{spillway}:members"]).as_deref(),
        Some(":2")
    );
    wait_mode(&c, "local fallback", 3).await;
    // Its share returned: a and b between them now hold all of the 60 requests a minute.
    let mut ok = 0;
    for i in 0..60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = post_json(&gw.url(&chat_path("gpt-4o-mini")), TENANT_KEY, body()).await;
        if r.status == 200 {
            ok += 1;
        }
    }
    eprintln!("a and b admitted {ok} of 60 requests");
    assert!(
        ok > 45,
        "a and b admitted only {ok}: gw-c's third did not come back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_shows_and_a_wrong_one_is_local_fallback() {
    const PASSWORD: &str = "fleet-pw-0123456789";
    let redis = Redis::start_with_password(PASSWORD);
    let std = standard("westus-std").await;
    let conf = |url: &str, id: &str| {
        fleet_conf(url, |c| {
            c.set("tenants.search.tokens_per_minute", TPM)
                .pool("standard", "standard", &[("westus-std", &std)])
                .model("gpt-4o-mini", &["standard"])
        })(id)
    };
    let good = Gateway::start(&conf(&redis.url(), "gw-a")).await;
    wait_mode(&good, "fleet", 1).await;
    let wrong_url = redis.url().replace(PASSWORD, "wrong-pw-0123456789");
    let wrong = Gateway::start(&conf(&wrong_url, "gw-b")).await;
    wait_mode(&wrong, "local fallback", 3).await;
    let a = post_json(&wrong.url(&chat_path("gpt-4o-mini")), TENANT_KEY, body()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    for gw in [&good, &wrong] {
        for path in ["/status", "/metrics", "/"] {
            let text = call("GET", &gw.admin_url(path), &[], "").await.text();
            assert!(
                !text.contains("fleet-pw") && !text.contains("wrong-pw"),
                "{path}: {text}"
            );
        }
        let f = fleet_status(gw).await;
        assert_eq!(f["redis"], format!("redis://127.0.0.1:{}", redis.port));
    }
    assert_eq!(fleet_status(&wrong).await["last_error"], "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_the_fleet() {
    let redis = Redis::start();
    let std = standard("westus-std").await;
    let dir = std::env::temp_dir().join(format!("spillway-fleet-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spillway.yaml");
    let single = Conf::new()
        .set("health.interval_ms", 0)
        .set("tenants.search.tokens_per_minute", TPM)
        .pool("standard", "standard", &[("westus-std", &std)])
        .model("gpt-4o-mini", &["standard"]);
    let gw = Gateway::start_from_file(&single, &path).await;
    assert_eq!(fleet_status(&gw).await["mode"], "off");
    gw.rewrite(
        &path,
        &single
            .clone()
            .set("fleet.redis_url", redis.url())
            .set("fleet.instance_id", "gw-a"),
    );
    wait_mode(&gw, "fleet", 1).await;
    assert_eq!(
        redis.command(&["ZCARD", "{spillway}:members"]).as_deref(),
        Some(":1")
    );
    gw.rewrite(&path, &single);
    wait_until("the fleet to be off", Duration::from_secs(10), async || {
        fleet_status(&gw).await["mode"] == "off"
    })
    .await;
    let a = post_json(&gw.url(&chat_path("gpt-4o-mini")), TENANT_KEY, body()).await;
    assert_eq!(a.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A member whose published counts went back to 0 (an idle minute) must still be able to
/// leave, and to be dropped by the others: removing it once failed on HINCRBY "-0" and
/// stopped every member's exchange. Drives the script directly, so it takes milliseconds.
#[test]
fn a_member_whose_counts_went_back_to_zero_can_leave_and_be_dropped() {
    let redis = Redis::start();
    let script = include_str!("../src/ops/fleet/exchange.lua");
    // prefix, instance, member_timeout_ms, leaving, own_requests, own_retries, no tenant,
    // one deployment: name, admitted, recent, cooldown_ms, ejection_ms, reading (none), its
    // age.
    let exchange = |id: &str, timeout_ms: &str, leaving: &str, count: &str| {
        redis.command(&[
            "EVAL", script, "0", "spillway", id, timeout_ms, leaving, count, "0", "0", "1", "ptu",
            count, count, "0", "0", "-1", "0",
        ])
    };
    for (id, leaving_later) in [("gw-a", true), ("gw-b", false)] {
        // Counts published, then back to 0, as after a quiet minute.
        assert_eq!(exchange(id, "60000", "0", "5").as_deref(), Some("*9"));
        assert_eq!(exchange(id, "60000", "0", "0").as_deref(), Some("*9"));
        if leaving_later {
            assert_eq!(exchange(id, "60000", "1", "0").as_deref(), Some("*9"));
            assert_eq!(
                redis.command(&["ZCARD", "{spillway}:members"]).as_deref(),
                Some(":0"),
                "{id} left"
            );
        }
    }
    // gw-b is silent from now on; gw-c's first exchange, with a timeout of 0, drops it.
    assert_eq!(exchange("gw-c", "0", "0", "0").as_deref(), Some("*9"));
    assert_eq!(
        redis.command(&["ZCARD", "{spillway}:members"]).as_deref(),
        Some(":1")
    );
}
