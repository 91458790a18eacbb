//! Test harness: real simulators and a real gateway on ephemeral loopback ports, and a small
//! HTTP client to talk to them.
#![allow(dead_code)]

pub mod client;
mod conf;
pub mod redis;

pub use conf::Conf;

use spillway::app::Embedded;
use spillway::config;
use spillway_sim::{self as sim, SimConfig, SimHandle, SimMode};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tenant key every test config accepts.
pub const TENANT_KEY: &str = "tenant-key";

/// A loopback port that nothing listens on, for a gateway that binds it itself.
///
/// Pingora binds its own listeners, so a test has to name the port before anything holds it,
/// and a port the kernel handed out for `bind(:0)` can be handed out again before the gateway
/// binds it (CI once gave one test the same port for `listen` and `admin_listen`). So ports
/// come from below the kernel's ephemeral range, where no `bind(:0)` (the simulators', the
/// clients' local ends) can take one between this check and the gateway's bind, and a
/// process-wide set keeps parallel tests from being handed the same port twice.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_start);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    if hi <= lo + 1_000 {
        // No room below the ephemeral range: fall back to the kernel's pick, still never twice.
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("an ephemeral port");
            if given.insert(port) {
                return port;
            }
        }
    }
    // Start where another test process (a parallel runner) is unlikely to be.
    let span = u32::from(hi - lo);
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    let port = (0..span)
        .map(|i| lo + ((start + i) % span) as u16)
        .find(|&port| !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port below the ephemeral range");
    given.insert(port);
    port
}

/// A simulator with test-friendly timing (no waiting unless a test asks for it).
pub async fn sim(name: &str, mode: SimMode) -> SimHandle {
    sim::spawn(SimConfig {
        name: name.into(),
        region: name.split('-').next().unwrap_or(name).into(),
        deployment: "gpt-4o-mini".into(),
        api_key: Some(format!("key-{name}")),
        mode,
        ttft: Duration::from_millis(1),
        tbt: Duration::from_millis(0),
        natural_tokens: 20,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A gateway running in this process.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub embedded: Option<Embedded>,
    /// The client listener's `tls` section, when it serves TLS.
    tls: Option<serde_yaml::Value>,
}

impl Gateway {
    /// Starts a gateway from `conf` on two fresh loopback ports and waits until both
    /// listeners answer.
    pub async fn start(conf: &Conf) -> Gateway {
        Self::start_inner(conf, None, None).await
    }

    /// Like `start`, but from a file at `path` that the gateway watches and reloads; change
    /// it with [`Gateway::rewrite`].
    pub async fn start_from_file(conf: &Conf, path: &Path) -> Gateway {
        Self::start_inner(conf, Some(path), None).await
    }

    /// Like `start_from_file`, with TLS on the client listener from these PEM files.
    pub async fn start_tls(conf: &Conf, path: &Path, cert: &Path, key: &Path) -> Gateway {
        let mut tls = serde_yaml::Mapping::new();
        tls.insert("cert".into(), cert.display().to_string().into());
        tls.insert("key".into(), key.display().to_string().into());
        Self::start_inner(conf, Some(path), Some(tls.into())).await
    }

    async fn start_inner(
        conf: &Conf,
        file: Option<&Path>,
        tls: Option<serde_yaml::Value>,
    ) -> Gateway {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut gw = Gateway {
            addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            admin: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            embedded: None,
            tls,
        };
        let yaml = gw.full(conf).yaml();
        let loaded = match file {
            Some(path) => {
                std::fs::write(path, &yaml).unwrap();
                config::load(path, None)
            }
            None => config::parse(&yaml, Path::new("test.yaml"), &|_| None, None),
        }
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{yaml}"));
        gw.embedded = Some(Embedded::start(loaded, file.map(Path::to_path_buf)));
        gw.wait_ready().await;
        gw
    }

    /// Writes `conf` (on this gateway's listeners) to `path`, for the watcher to reload.
    pub fn rewrite(&self, path: &Path, conf: &Conf) {
        std::fs::write(path, self.full(conf).yaml()).unwrap();
    }

    /// `conf` with this gateway's server settings and listeners.
    fn full(&self, conf: &Conf) -> Conf {
        let listen: serde_yaml::Value = match &self.tls {
            None => self.addr.to_string().into(),
            Some(tls) => {
                let mut l = serde_yaml::Mapping::new();
                l.insert("addr".into(), self.addr.to_string().into());
                l.insert("tls".into(), tls.clone());
                serde_yaml::Value::Sequence(vec![l.into()])
            }
        };
        conf.clone()
            .set("server.threads", 1)
            .set("server.grace_period_seconds", 0)
            .set("server.graceful_shutdown_timeout_seconds", 1)
            .set("listen", listen)
            .set("admin_listen", self.admin.to_string())
    }

    /// Waits for the listeners to be bound.
    async fn wait_ready(&self) {
        for target in [self.admin, self.addr] {
            wait_until(
                &format!("the gateway listening on {target}"),
                Duration::from_secs(10),
                async || tokio::net::TcpStream::connect(target).await.is_ok(),
            )
            .await;
        }
    }

    /// Waits until `/readyz` says ready (a gateway with Entra ID credentials is ready once
    /// each has had its first answer).
    pub async fn wait_readyz(&self) {
        let url = self.admin_url("/readyz");
        wait_until(
            "/readyz to say ready",
            Duration::from_secs(10),
            async || client::call("GET", &url, &[], "").await.status == 200,
        )
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A deployment's entry in the admin `/status`.
    pub async fn deployment_status(&self, name: &str) -> serde_json::Value {
        let status = client::call("GET", &self.admin_url("/status"), &[], "")
            .await
            .json();
        status["pools"]
            .as_array()
            .expect("pools in /status")
            .iter()
            .flat_map(|p| p["deployments"].as_array().cloned().unwrap_or_default())
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in /status: {status}"))
    }

    pub fn shared(&self) -> &std::sync::Arc<spillway::shared::Shared> {
        &self.embedded.as_ref().expect("running").shared
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(e) = self.embedded.take() {
            e.stop();
        }
    }
}

/// Waits until `probe` answers, polling it, and returns the answer: the one way a test
/// waits for something that happens in another task, thread or process. `limit` only bounds
/// a test that would otherwise hang; no test relies on its length.
pub async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(answer) = probe().await {
            return answer;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_for`] a condition.
pub async fn wait_until(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    wait_for(what, limit, async || ok().await.then_some(())).await
}

/// The dated chat completions path for `alias`.
pub fn chat_path(alias: &str) -> String {
    format!("/openai/deployments/{alias}/chat/completions?api-version=2024-10-21")
}

/// A minimal chat body with extra top-level members appended (`""` for none).
pub fn chat_body(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"messages":[{{"role":"user","content":"Say hello"}}]{sep}{extra}}}"#)
}
