//! The command line: run a gateway from a file, validate a file, run the demo or the simulator.

use clap::{Parser, Subcommand};
use spillway::config;
use std::path::PathBuf;
use std::process::ExitCode;

/// Spillway: an edge gateway for Azure OpenAI (token governance, PTU→Standard spillover, replay).
#[derive(Parser, Debug)]
#[command(
    name = "spillway",
    version,
    after_help = "Examples:\n  spillway demo                      simulated PTU and Standard regions behind a gateway\n  spillway -c conf/example.yaml      run a gateway\n  spillway -t -c conf/example.yaml   validate a config and exit\n  spillway -u -c FILE                take over the listeners of a running gateway (graceful upgrade)"
)]
pub struct Cli {
    /// Config file (YAML).
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Validate the config, print every problem, and exit (non-zero when invalid).
    #[arg(short = 't', long)]
    pub test: bool,
    /// Take over the listening sockets of the running gateway (Pingora graceful upgrade).
    #[arg(short = 'u', long)]
    pub upgrade: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start simulated PTU and Standard regions and a gateway in front of them.
    Demo(crate::demo::DemoArgs),
    /// Run the Azure OpenAI simulator.
    Sim(spillway_sim::SimArgs),
}

/// Runs the gateway (or validates its config) as the flags say.
pub fn run_gateway(cli: Cli) -> ExitCode {
    let Some(path) = cli.conf else {
        eprintln!("spillway: no config given. Pass -c FILE, or try `spillway demo`.");
        return ExitCode::from(2);
    };
    let loaded = match config::load(&path, None) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    // Printed by `-t` and at start alike; a warning names the field, never its value.
    for w in &loaded.warnings {
        eprintln!("{}: warning: {}: {}", path.display(), w.field, w.reason);
    }
    if cli.test {
        println!(
            "{}: ok (config hash {})",
            path.display(),
            loaded.config.hash
        );
        return ExitCode::SUCCESS;
    }
    let opt = pingora::server::configuration::Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        ..Default::default()
    };
    let (server, shared) = spillway::app::build(loaded, opt, Some(path));
    spillway::app::run(server, shared)
}
