//! The `spillway` binary: parse the command line and hand over to the library.

use clap::Parser;
use spillway::cli::{run_gateway, Cli, Command};
use std::process::ExitCode;

// Every request allocates (headers, body buffers, futures) and frees on the same worker thread:
// mimalloc's thread-local free lists make that cheaper than glibc's arenas. Measured with
// scripts/bench, see the commit that added it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Demo(args)) => spillway::demo::run(args),
        Some(Command::Sim(args)) => match spillway::sim::run_cli(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway sim: {e}");
                ExitCode::FAILURE
            }
        },
        None => run_gateway(cli),
    }
}
