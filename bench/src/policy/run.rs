//! One policy's run: fresh simulators and a fresh gateway, the schedule sent open loop,
//! the PTU's bucket sampled, every answer recorded, and everything torn down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use spillway_sim::{SimConfig, SimHandle, SimMode, SimStats, OUTPUT_TOKENS_HEADER};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client;
use super::config::{self, Policy, Wiring, PTU_NAME};
use super::gateway::{self, free_port};
use super::load::{self, Arrival, Class};

/// What the run needs besides the policy.
#[derive(Debug, Clone)]
pub struct Setup {
    pub spillway: PathBuf,
    pub ptu_tpm: u64,
    pub prices: Option<f64>,
    pub request_timeout: Duration,
    pub work_root: PathBuf,
}

/// What one request saw at the client.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub class: Class,
    /// From its scheduled send time, so a late dispatch counts against the latency.
    pub latency: Duration,
    /// `None`: no answer (connection error or the harness's timeout); see `error`.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub held: bool,
    pub spillover: bool,
    pub deployment: Option<String>,
}

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct Measured {
    pub outcomes: Vec<Outcome>,
    pub ptu: SimStats,
    pub standard: Vec<SimStats>,
    /// The PTU bucket's level, every 100 ms over the schedule.
    pub utilization_samples: Vec<f64>,
    pub metrics: String,
    pub config_yaml: String,
    pub work_dir: PathBuf,
    pub wall: Duration,
}

/// Standard sims never throttle this load: their per-10-s windows hold far more than a burst.
const STANDARD_TPM: u64 = 1_000_000_000;

async fn sim(name: &str, region: &str, mode: SimMode) -> Result<SimHandle, String> {
    spillway_sim::spawn(SimConfig {
        name: name.into(),
        region: region.into(),
        deployment: "gpt-4o-mini".into(),
        api_key: Some(config::SIM_KEY.into()),
        mode,
        ttft: Duration::from_millis(50),
        tbt: Duration::from_millis(10),
        // Only the first requests are kept whole; the counters see all of them.
        record_limit: 100,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("starting sim {name}: {e}"))
}

/// Runs `policy` once against `arrivals`.
pub async fn run(policy: &Policy, setup: &Setup, arrivals: &[Arrival]) -> Result<Measured, String> {
    let dir = setup.work_root.join(policy.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ptu = sim(
        PTU_NAME,
        "eastus",
        SimMode::Provisioned {
            tokens_per_minute: setup.ptu_tpm,
        },
    )
    .await?;
    let standard_mode = SimMode::Standard {
        tokens_per_minute: STANDARD_TPM,
    };
    let west = sim(config::STANDARD_NAMES[0], "westus", standard_mode).await?;
    let sweden = sim(config::STANDARD_NAMES[1], "swedencentral", standard_mode).await?;
    let port = |what: &str| free_port().map_err(|e| format!("a free port for {what}: {e}"));
    let wiring = Wiring {
        listen: format!("127.0.0.1:{}", port("the gateway")?),
        admin_listen: format!("127.0.0.1:{}", port("the admin listener")?),
        access_log: dir.join("access.log").display().to_string(),
        ptu_endpoint: ptu.endpoint(),
        standard_endpoints: [west.endpoint(), sweden.endpoint()],
        ptu_tpm: setup.ptu_tpm,
    };
    let mut cfg = config::base(&wiring);
    let prices = setup.prices.map(config::price_changes).unwrap_or_default();
    for (path, value) in policy.changes.iter().cloned().chain(prices) {
        config::apply(&mut cfg, path, value)?;
    }
    let yaml = config::to_yaml(&cfg);
    let file = gateway::check(&setup.spillway, &dir, &yaml)?;
    let gw = gateway::start(
        &setup.spillway,
        &file,
        wiring.listen.clone(),
        wiring.admin_listen.clone(),
    )
    .await?;

    let started = Instant::now();
    let schedule_end = started + arrivals.last().map_or(Duration::ZERO, |a| a.at);
    let sampler = tokio::spawn(sample(ptu.clone(), schedule_end));
    let outcomes = send_all(&gw.addr, arrivals, setup.request_timeout, started).await;
    let wall = started.elapsed();
    let utilization_samples = sampler.await.unwrap_or_default();
    let metrics = gw.metrics().await;
    let work_dir = gw.dir.clone();
    drop(gw);
    let measured = Measured {
        outcomes,
        ptu: ptu.stats(),
        standard: vec![west.stats(), sweden.stats()],
        utilization_samples,
        metrics,
        config_yaml: yaml,
        work_dir,
        wall,
    };
    for s in [ptu, west, sweden] {
        s.shutdown().await;
    }
    Ok(measured)
}

/// The PTU's bucket level every 100 ms until `end`.
async fn sample(ptu: SimHandle, end: Instant) -> Vec<f64> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        out.push(ptu.utilization_percent());
    }
    out
}

/// Open loop: each arrival is sent at its time by its own task, whatever the others are doing.
async fn send_all(
    addr: &str,
    arrivals: &[Arrival],
    timeout: Duration,
    started: Instant,
) -> Vec<Outcome> {
    let addr: Arc<str> = addr.into();
    let mut tasks = JoinSet::new();
    for a in arrivals {
        let due = started + a.at;
        tokio::time::sleep_until(due).await;
        let body = Bytes::from(load::body(a));
        let class = a.class;
        let addr = addr.clone();
        tasks.spawn(async move {
            let answer = tokio::time::timeout(timeout, one(&addr, class, body)).await;
            let latency = due.elapsed();
            let mut o = Outcome {
                class,
                latency,
                status: None,
                error: None,
                held: false,
                spillover: false,
                deployment: None,
            };
            match answer {
                Err(_) => o.error = Some(format!("no answer within {} s", timeout.as_secs())),
                Ok(Err(e)) => o.error = Some(e.to_string()),
                Ok(Ok(a)) => {
                    let header = |name: &str| {
                        a.headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    o.status = Some(a.status.as_u16());
                    o.held = a.headers.contains_key("x-spillway-held-ms");
                    o.spillover = a.headers.contains_key("x-spillway-spillover");
                    o.deployment = header("x-ms-deployment-name");
                }
            }
            o
        });
    }
    let mut out = Vec::with_capacity(arrivals.len());
    while let Some(done) = tasks.join_next().await {
        // A panicked task is a harness bug; it would show up as a missing request.
        if let Ok(o) = done {
            out.push(o);
        }
    }
    out
}

async fn one(addr: &str, class: Class, body: Bytes) -> Result<client::Answer, client::BoxError> {
    let req =
        Request::post("/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21")
            .header(http::header::HOST, addr)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("api-key", class.key())
            .header(OUTPUT_TOKENS_HEADER, class.output_tokens().to_string())
            .header("x-spillway-max-wait-ms", class.max_wait_ms().to_string())
            .body(Full::new(body))?;
    client::send(addr, req).await
}

/// The temp directory a comparison writes its gateways' configs and logs under.
pub fn work_root() -> PathBuf {
    std::env::temp_dir().join(format!("spillway-policy-{}", std::process::id()))
}

/// `path` as given, or the default binary relative to the workspace root.
pub fn default_spillway() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/spillway")
}
