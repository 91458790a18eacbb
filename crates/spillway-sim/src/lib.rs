//! An Azure OpenAI simulator: the independent referee of the gateway's tests and benchmarks.
//!
//! It serves one deployment on the dated (`/openai/deployments/{d}/...?api-version=`) and v1
//! (`/openai/v1/...`) paths, generates completions and SSE streams on a real-time clock
//! (`ttft`, then one token every `tbt`), throttles like a Provisioned (PTU leaky bucket) or
//! Standard (TPM/RPM windows) deployment, injects faults on demand, and records the requests it gets (the first
//! `SimConfig::record_limit` whole, all of them in its counters).
//! It shares no code with the gateway on purpose, so each can check the other.
//!
//! It also plays Microsoft Entra ID ([`entra`]): on the same listener, the IMDS
//! (`/metadata/identity/oauth2/token`, `Metadata: true`), App Service / Container Apps
//! (`/msi/token`, `X-IDENTITY-HEADER`) and v2 (`/{tenant}/oauth2/v2.0/token`, client secret or
//! federated assertion) token endpoints, the v2 OpenID configuration and JWKS. With
//! `auth: SimAuth::Entra` (`spillway sim --auth entra`) the deployment takes only
//! `Authorization: Bearer` tokens from that issuer (401 otherwise, 403
//! `AuthenticationTypeDisabled` for an `api-key`). [`SimHandle::issuer`] counts tokens per
//! shape, takes the token service down ([`TokenOutage`]), rotates keys, moves the issuer's clock
//! and mints tokens with arbitrary claims, broken on purpose if asked ([`Signing`]); over HTTP,
//! `GET /_sim/entra/stats`, `POST /_sim/entra/rotate` and `POST /_sim/entra/retire`. Tokens are
//! signed with committed test keys (`keys/`), never to be used outside tests.
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
//!
//! // A deployment behind Entra ID, and a token for it as a test would mint one.
//! use spillway_sim::{SimAuth, Signing, TokenVersion};
//! let sim = spawn(SimConfig { auth: SimAuth::Entra, ..SimConfig::default() }).await?;
//! let issuer = sim.issuer();
//! let token = issuer.mint(&issuer.claims(TokenVersion::V1), Signing::Current)?;
//! println!("Authorization: Bearer {token}");
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
