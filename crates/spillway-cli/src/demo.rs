//! `spillway demo`: simulated PTU and Standard regions and a gateway in front of them, in one
//! process on fixed local ports (conf/demo.yaml), so a newcomer sees the whole path at once.

use spillway::config;
use spillway_sim::{self as sim, SimConfig, SimMode};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The demo's config, the same file CI validates.
pub const DEMO_YAML: &str = include_str!("../../../conf/demo.yaml");

/// Flags of `spillway demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Tokens per minute of the simulated PTU deployment (small, so a burst spills over).
    #[arg(long, default_value_t = 30_000)]
    pub ptu_tpm: u64,
    /// Tokens per minute of each simulated Standard deployment.
    #[arg(long, default_value_t = 300_000)]
    pub standard_tpm: u64,
}

/// The simulated regions: (name, region, port, key, mode).
fn regions(args: &DemoArgs) -> [(&'static str, &'static str, u16, &'static str, SimMode); 3] {
    [
        (
            "eastus-ptu",
            "eastus",
            8001,
            "sim-eastus-key",
            SimMode::Provisioned {
                tokens_per_minute: args.ptu_tpm,
            },
        ),
        (
            "westus-std",
            "westus",
            8002,
            "sim-westus-key",
            SimMode::Standard {
                tokens_per_minute: args.standard_tpm,
            },
        ),
        (
            "swedencentral-std",
            "swedencentral",
            8003,
            "sim-sweden-key",
            SimMode::Standard {
                tokens_per_minute: args.standard_tpm,
            },
        ),
    ]
}

/// Starts the simulators on their own runtime thread; returns once they listen.
fn start_sims(args: &DemoArgs) -> Result<(), String> {
    let regions = regions(args);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-sims".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let mut handles = Vec::new();
                for (name, region, port, key, mode) in regions {
                    let cfg = SimConfig {
                        name: name.into(),
                        region: region.into(),
                        deployment: "gpt-4o-mini".into(),
                        api_key: Some(key.into()),
                        mode,
                        ttft: Duration::from_millis(150),
                        tbt: Duration::from_millis(10),
                        natural_tokens: 120,
                        ..SimConfig::default()
                    };
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    match sim::spawn_on(cfg, addr).await {
                        Ok(h) => handles.push(h),
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("simulator {name} on {addr}: {e}")));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                std::future::pending::<()>().await;
                drop(handles);
            });
        })
        .map_err(|e| e.to_string())?;
    ready_rx.recv().map_err(|e| e.to_string())?
}

/// Runs the demo until interrupted.
pub fn run(args: DemoArgs) -> ExitCode {
    let loaded = match config::parse(DEMO_YAML, Path::new("conf/demo.yaml"), &|_| None, None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = start_sims(&args) {
        eprintln!("spillway demo: {e} (is another demo already running?)");
        return ExitCode::FAILURE;
    }
    let listen = loaded.config.listen[0].addr.clone();
    let admin = loaded.config.admin_listen.clone().unwrap_or_default();
    println!(
        "\nSpillway demo\n\
         \n  simulated regions: eastus-ptu (PTU, {} TPM) on 127.0.0.1:8001,\n\
         \x20                    westus-std and swedencentral-std (Standard, {} TPM) on 127.0.0.1:8002 and :8003\n\
         \x20 gateway:           http://{listen}   (tenant key: demo-key, model alias: gpt-4o-mini)\n\
         \x20 admin:             http://{admin}/status  /metrics  /healthz  /readyz\n\
         \nTry:\n\
         \x20 curl -s http://{listen}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21 \\\n\
         \x20   -H 'api-key: demo-key' -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}],\"max_tokens\":8000}}' -i\n\
         \nStream it with \"stream\":true and curl -N. Watch a burst spill from the PTU to Standard:\n\
         \x20 for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'api-key: demo-key' -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"messages\":[{{\"role\":\"user\",\"content\":\"Hi\"}}],\"max_tokens\":1500}}' \\\n\
         \x20   'http://{listen}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21' & done; wait\n\
         \x20 curl -s http://{admin}/metrics | grep spillway_spillovers_total   (or open http://{admin}/)\n\
         \nCtrl-C stops everything.\n",
        args.ptu_tpm, args.standard_tpm
    );
    let opt = pingora::server::configuration::Opt::default();
    let (server, shared) = spillway::app::build(loaded, opt, None);
    spillway::app::run(server, shared)
}
