//! The `spillway` binary: parse the command line and hand over to the library.

mod cli;
mod demo;

use clap::Parser;
use cli::{run_gateway, Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Sim(args)) => match spillway_sim::run_cli(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway sim: {e}");
                ExitCode::FAILURE
            }
        },
        None => run_gateway(cli),
    }
}
