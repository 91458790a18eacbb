//! The real binary under signals: a graceful upgrade (new process with `-u`, SIGQUIT to the
//! old one) and a SIGTERM drain, each under a bounded loop of short requests and streams on
//! loopback, counting failed requests.

#[path = "../../../tests/support/mod.rs"]
mod support;

use spillway_sim::SimMode;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

struct Files {
    dir: PathBuf,
    conf: PathBuf,
    sock: PathBuf,
    addr: String,
    admin: String,
}

fn files(name: &str, sim: &spillway_sim::SimHandle) -> Files {
    let dir = std::env::temp_dir().join(format!("spillway-{name}-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let sock = dir.join("upgrade.sock");
    let conf = dir.join("spillway.yaml");
    let yaml = Conf::new()
        .set("server.threads", 2)
        .set(
            "server.pid_file",
            dir.join("spillway.pid").display().to_string(),
        )
        .set("server.upgrade_sock", sock.display().to_string())
        .set("server.grace_period_seconds", 3)
        .set("server.graceful_shutdown_timeout_seconds", 2)
        .set("listen", addr.as_str())
        .set("admin_listen", admin.as_str())
        .set("drain_delay_ms", 700)
        .set("health.interval_ms", 0)
        .pool("ptu", "provisioned", &[("eastus-ptu", sim)])
        .model("mini", &["ptu"])
        .yaml();
    std::fs::write(&conf, yaml).unwrap();
    Files {
        dir,
        conf,
        sock,
        addr,
        admin,
    }
}

fn spawn(f: &Files, upgrade: bool, log: &str) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spillway"));
    if upgrade {
        cmd.arg("-u");
    }
    let out = std::fs::File::create(f.dir.join(log)).unwrap();
    cmd.arg("-c")
        .arg(&f.conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn get_status(url: &str) -> Option<u16> {
    let c = no_pool_client();
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    c.request(req).await.ok().map(|r| r.status().as_u16())
}

/// A client that opens a connection per request, as many independent callers would.
fn no_pool_client() -> support::client::HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    streams: AtomicU64,
    stop: AtomicBool,
    /// Cleared by the "load balancer" when /readyz says not ready.
    routable: AtomicBool,
}

/// One request: a short completion, or a stream of about half a second, read to its end.
async fn one(url: &str, stream: bool) -> Result<(), String> {
    use http_body_util::BodyExt;
    let body = if stream {
        chat_body(r#""stream":true"#)
    } else {
        chat_body("")
    };
    let req = http::Request::post(url)
        .header("api-key", TENANT_KEY)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = no_pool_client()
        .request(req)
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if stream && !String::from_utf8_lossy(&body).contains("[DONE]") {
        return Err("stream cut".into());
    }
    Ok(())
}

/// Four workers send requests until told to stop, skipping while not routable.
fn run_load(load: Arc<Load>, url: String) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|w| {
            let (load, url) = (load.clone(), url.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !load.stop.load(Relaxed) {
                    if !load.routable.load(Relaxed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    let stream = (i + w).is_multiple_of(3);
                    match one(&url, stream).await {
                        Ok(()) => {
                            load.ok.fetch_add(1, Relaxed);
                            if stream {
                                load.streams.fetch_add(1, Relaxed);
                            }
                        }
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            load.failed.fetch_add(1, Relaxed);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// Stops the load, waits for the workers, checks that no request failed; returns the count.
async fn stop_without_failures(
    load: &Load,
    workers: Vec<tokio::task::JoinHandle<()>>,
    f: &Files,
) -> u64 {
    load.stop.store(true, Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (load.ok.load(Relaxed), load.failed.load(Relaxed));
    eprintln!(
        "{ok} requests ({} streams) succeeded, {failed} failed",
        load.streams.load(Relaxed)
    );
    assert_eq!(
        failed,
        0,
        "{failed} failed of {}; logs in {}",
        ok + failed,
        f.dir.display()
    );
    ok
}

fn exited_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

async fn sim_for_load() -> spillway_sim::SimHandle {
    let s = sim("eastus-ptu", SimMode::Unlimited).await;
    s.set_ttft(Duration::from_millis(20));
    s.set_tbt(Duration::from_millis(10));
    s.set_natural_tokens(50);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_drops_no_request() {
    let sim = sim_for_load().await;
    let f = files("upgrade", &sim);
    let mut old = spawn(&f, false, "old.log");
    let ready = format!("http://{}/readyz", f.admin);
    wait_until("the old process", Duration::from_secs(20), async || {
        get_status(&ready).await == Some(200)
    })
    .await;

    let load = Arc::new(Load::default());
    load.routable.store(true, Relaxed);
    let url = format!("http://{}{}", f.addr, chat_path("mini"));
    let workers = run_load(load.clone(), url);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut new = spawn(&f, true, "new.log");
    // The new process waits for the sockets on the upgrade socket.
    let sock = f.sock.clone();
    wait_until("the upgrade socket", Duration::from_secs(20), async || {
        sock.exists()
    })
    .await;
    signal(&old, "QUIT");
    let old_gone =
        tokio::task::spawn_blocking(move || exited_within(&mut old, Duration::from_secs(30)));
    assert!(old_gone.await.unwrap(), "the old process did not exit");
    // Keep the load on the new process for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = stop_without_failures(&load, workers, &f).await;
    assert_eq!(
        get_status(&ready).await,
        Some(200),
        "the new process serves"
    );
    signal(&new, "INT");
    let _ = new.wait();
    assert!(
        ok >= 40 && load.streams.load(Relaxed) >= 10,
        "too little load: {ok}"
    );
    std::fs::remove_dir_all(&f.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_then_drains_without_failures() {
    let sim = sim_for_load().await;
    let f = files("drain", &sim);
    let mut gw = spawn(&f, false, "gw.log");
    let ready = format!("http://{}/readyz", f.admin);
    let probe = format!("http://{}/spillway/health", f.addr);
    wait_until("the gateway", Duration::from_secs(20), async || {
        get_status(&ready).await == Some(200)
    })
    .await;
    assert_eq!(get_status(&probe).await, Some(200));

    let load = Arc::new(Load::default());
    load.routable.store(true, Relaxed);
    let workers = run_load(
        load.clone(),
        format!("http://{}{}", f.addr, chat_path("mini")),
    );
    // The "load balancer": stops routing new requests once the probe says not ready.
    let lb = {
        let (load, probe) = (load.clone(), probe.clone());
        tokio::spawn(async move {
            let mut saw_unready = false;
            while !load.stop.load(Relaxed) {
                if get_status(&probe).await != Some(200) {
                    load.routable.store(false, Relaxed);
                    saw_unready = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            saw_unready
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = load.ok.load(Relaxed);
    signal(&gw, "TERM");
    let gone = tokio::task::spawn_blocking(move || exited_within(&mut gw, Duration::from_secs(20)));
    assert!(gone.await.unwrap(), "the gateway did not exit");
    let ok = stop_without_failures(&load, workers, &f).await;
    assert!(lb.await.unwrap(), "the probe never reported not ready");
    assert!(ok > before, "requests kept succeeding during the drain");
    std::fs::remove_dir_all(&f.dir).ok();
}
