//! The `flk` binary: parses the command line and hands over to [`flk`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = flk::Cli::parse();
    match flk::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("flk: error: {error:#}");
            ExitCode::from(1)
        }
    }
}
