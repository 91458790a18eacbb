//! An Azure OpenAI simulator: the independent referee of the gateway's tests and benchmarks.
//!
//! It serves one deployment on the dated (`/openai/deployments/{d}/...?api-version=`) and v1
//! (`/openai/v1/...`) paths, generates completions and SSE streams on a real-time clock
//! (`ttft`, then one token every `tbt`), throttles like a Provisioned (PTU leaky bucket) or
//! Standard (TPM/RPM windows) deployment, injects faults on demand, and records the requests it gets (the first
//! `SimConfig::record_limit` whole, all of them in its counters).
//! It shares no code with the gateway on purpose, so each can check the other.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use spillway_sim::{spawn, SimConfig, SimMode};
//! let sim = spawn(SimConfig {
//!     mode: SimMode::Provisioned { tokens_per_minute: 60_000 },
//!     ..SimConfig::default()
//! })
//! .await?;
//! println!("upstream at {}", sim.endpoint());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cli;
mod config;
pub mod entra;
mod faults;
mod generate;
mod handle;
mod handler;
mod limits;
mod record;
mod reject;
mod request;
mod server;
mod state;
mod stream;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

pub use cli::{run_cli, CliAuth, CliMode, SimArgs};
pub use config::{SimAuth, SimConfig, SimMode};
pub use entra::{EntraConfig, Issuer, Signing, TokenOutage, TokenStats, TokenVersion};
pub use faults::Fault;
pub use handle::SimHandle;
pub use handler::OUTPUT_TOKENS_HEADER;
pub use record::{RecordedRequest, SimStats};

/// Starts a simulator on `127.0.0.1` with an ephemeral port (see [`SimHandle::addr`]).
pub async fn spawn(cfg: SimConfig) -> io::Result<SimHandle> {
    spawn_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
}

/// Starts a simulator on `addr`. Must be called within a tokio runtime, which then runs it.
pub async fn spawn_on(cfg: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
    let cfg = cfg.validate()?;
    let issuer = match &cfg.issuer {
        Some(shared) => shared.clone(),
        None => entra::Issuer::new(cfg.entra.clone())?,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(state::Shared::new(cfg, issuer, shutdown_rx));
    let (server, accept_task, drained) = server::Server::start(shared, shutdown_tx, addr)?;
    Ok(SimHandle::new(server, accept_task, drained))
}
