//! The `flk` binary: parses the command line and hands over to [`gateway::cli`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = gateway::cli::Cli::parse();
    match gateway::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("flk: error: {error:#}");
            ExitCode::from(1)
        }
    }
}
