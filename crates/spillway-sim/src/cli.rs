//! `spillway sim ...`: run a simulator from the command line until Ctrl-C.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use super::config::{SimAuth, SimConfig, SimMode};
use super::entra::EntraConfig;

/// Throttling mode on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliMode {
    Unlimited,
    Provisioned,
    Standard,
}

/// Credentials the deployment takes on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliAuth {
    /// `--api-key` (if given), as `api-key` or Bearer.
    Key,
    /// Only Bearer tokens from the simulator's own token service.
    Entra,
}

/// Flags of the simulator command.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Throttling mode; provisioned and standard need --tpm.
    #[arg(long, value_enum, default_value_t = CliMode::Unlimited)]
    pub mode: CliMode,
    /// Tokens per minute of the provisioned or standard deployment.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Deployment name served.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub deployment: String,
    /// Require this key (`api-key` or `Authorization: Bearer`).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Credentials the deployment takes; `entra` serves the token endpoints' tokens only.
    #[arg(long, value_enum, default_value_t = CliAuth::Key)]
    pub auth: CliAuth,
    /// Lifetime (`expires_in`) of the tokens the token service issues, in seconds.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// Region reported in `x-ms-region`.
    #[arg(long, default_value = "eastus")]
    pub region: String,
    /// Name reported in `x-sim-name`.
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub ttft_ms: u64,
    /// Time between tokens, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub tbt_ms: u64,
    /// How many tokens the model wants to answer (capped by the request's max tokens).
    #[arg(long, default_value_t = 200)]
    pub natural_tokens: u32,
    /// Answer 408 to non-streaming requests whose generation would take longer than this.
    #[arg(long)]
    pub sync_timeout_ms: Option<u64>,
    /// Keep the first N requests whole for `/_sim/requests`; later ones are only counted.
    #[arg(long, default_value_t = super::config::RECORD_LIMIT)]
    pub record_limit: usize,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn to_config(&self) -> Result<SimConfig, Box<dyn Error>> {
        let tpm = || {
            self.tpm
                .ok_or_else(|| format!("--mode {:?} needs --tpm", self.mode).to_lowercase())
        };
        let mode = match self.mode {
            CliMode::Unlimited => SimMode::Unlimited,
            CliMode::Provisioned => SimMode::Provisioned {
                tokens_per_minute: tpm()?,
            },
            CliMode::Standard => SimMode::Standard {
                tokens_per_minute: tpm()?,
            },
        };
        let cfg = SimConfig {
            name: self.name.clone(),
            region: self.region.clone(),
            deployment: self.deployment.clone(),
            api_key: self.api_key.clone(),
            auth: match self.auth {
                CliAuth::Key => SimAuth::Key,
                CliAuth::Entra => SimAuth::Entra,
            },
            entra: EntraConfig {
                token_lifetime: Duration::from_secs(self.token_lifetime_secs),
                ..EntraConfig::default()
            },
            issuer: None,
            mode,
            ttft: Duration::from_millis(self.ttft_ms),
            tbt: Duration::from_millis(self.tbt_ms),
            natural_tokens: self.natural_tokens,
            sync_timeout: self.sync_timeout_ms.map(Duration::from_millis),
            record_limit: self.record_limit,
        };
        Ok(cfg.validate()?)
    }
}

/// Builds a runtime, starts the simulator, prints where it listens, and runs until Ctrl-C.
pub fn run_cli(args: SimArgs) -> Result<(), Box<dyn Error>> {
    let cfg = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (name, mode) = (cfg.name.clone(), cfg.mode);
        let sim = super::spawn_on(cfg, args.listen).await?;
        println!("sim {name} listening on {} (mode {mode})", sim.endpoint());
        tokio::signal::ctrl_c().await?;
        sim.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_build_a_config() {
        let cli = Cli::try_parse_from([
            "sim",
            "--mode",
            "provisioned",
            "--tpm",
            "6000",
            "--tbt-ms",
            "3",
            "--sync-timeout-ms",
            "100",
            "--api-key",
            "k",
        ])
        .unwrap();
        let cfg = cli.sim.to_config().unwrap();
        assert_eq!(
            cfg.mode,
            SimMode::Provisioned {
                tokens_per_minute: 6000
            }
        );
        assert_eq!(cfg.tbt, Duration::from_millis(3));
        assert_eq!(cfg.sync_timeout, Some(Duration::from_millis(100)));
        assert_eq!(cfg.api_key.as_deref(), Some("k"));
        assert_eq!(cli.sim.listen.port(), 8001);
        assert_eq!(cfg.auth, SimAuth::Key);
    }

    #[test]
    fn entra_flags() {
        let cli =
            Cli::try_parse_from(["sim", "--auth", "entra", "--token-lifetime-secs", "5"]).unwrap();
        let cfg = cli.sim.to_config().unwrap();
        assert_eq!(cfg.auth, SimAuth::Entra);
        assert_eq!(cfg.entra.token_lifetime, Duration::from_secs(5));
    }

    #[test]
    fn throttled_modes_need_tpm() {
        let cli = Cli::try_parse_from(["sim", "--mode", "standard"]).unwrap();
        let err = cli.sim.to_config().unwrap_err().to_string();
        assert!(err.contains("--tpm"), "{err}");
        assert!(Cli::try_parse_from(["sim", "--mode", "bogus"]).is_err());
    }
}
