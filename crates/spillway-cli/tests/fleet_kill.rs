//! A fleet member killed with SIGKILL (the real binary, no goodbye): the other two see the
//! membership shrink within a few sync intervals and take back its share of the budget.

#[path = "../../../tests/support/mod.rs"]
mod support;

use spillway_sim::SimMode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::client::{call, post_json};
use support::redis::Redis;
use support::*;

fn conf(redis: &Redis, sim: &spillway_sim::SimHandle, id: &str) -> Conf {
    Conf::new()
        .set("health.interval_ms", 0)
        .set("tenants.search.requests_per_minute", 60)
        .set("fleet.redis_url", redis.url())
        .set("fleet.instance_id", id)
        .set("fleet.sync_interval_ms", 100)
        .set("fleet.expected_members", 3)
        .pool("standard", "standard", &[("westus-std", sim)])
        .model("gpt-4o-mini", &["standard"])
}

async fn members(admin_url: &str) -> Option<u64> {
    let r = call("GET", admin_url, &[], "").await;
    (r.status == 200).then(|| r.json()["fleet"]["members"].as_u64())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_leaves_and_its_share_returns() {
    let redis = Redis::start();
    let sim = sim("westus-std", SimMode::Unlimited).await;
    let a = Gateway::start(&conf(&redis, &sim, "gw-a")).await;
    let b = Gateway::start(&conf(&redis, &sim, "gw-b")).await;

    let dir = std::env::temp_dir().join(format!("spillway-fleet-kill-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let path = dir.join("spillway.yaml");
    let yaml = conf(&redis, &sim, "gw-c")
        .set("server.threads", 1)
        .set("listen", format!("127.0.0.1:{}", free_port()))
        .set("admin_listen", admin.as_str())
        .yaml();
    std::fs::write(&path, yaml).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("c.log")).unwrap())
        .spawn()
        .unwrap();
    let c_status = format!("http://{admin}/status");
    for url in [a.admin_url("/status"), b.admin_url("/status"), c_status] {
        wait_until("three members", Duration::from_secs(20), async || {
            members(&url).await == Some(3)
        })
        .await;
    }

    // At rest the three share the bucket evenly: gw-c holds a third of the 60 requests.
    redis.wait_for_lease("gw-c", 'r', "search", 20).await;
    c.kill().unwrap();
    c.wait().unwrap();
    let killed = Instant::now();
    for gw in [&a, &b] {
        wait_until(
            "the killed member to leave",
            Duration::from_secs(10),
            async || members(&gw.admin_url("/status")).await == Some(2),
        )
        .await;
    }
    let after = killed.elapsed();
    eprintln!("members 3 -> 2 {after:?} after SIGKILL (member timeout 500 ms)");
    assert!(after < Duration::from_secs(3), "took {after:?}");

    // Its third of the 60 requests a minute is back with a and b.
    let mut ok = 0;
    for i in 0..60 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = post_json(
            &gw.url(&chat_path("gpt-4o-mini")),
            TENANT_KEY,
            chat_body(""),
        )
        .await;
        match r.status {
            200 => ok += 1,
            429 => {}
            s => panic!("{s}: {}", r.text()),
        }
    }
    eprintln!("a and b admitted {ok} of 60");
    assert!(
        ok > 45,
        "only {ok}: the killed member's share did not come back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
