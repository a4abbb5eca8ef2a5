//! `keytool`: the security officer's command-line tool.
//!
//! Binaries only parse arguments and wire things up; the work is in `signer`
//! and `firmware`. Exit codes follow imgtool: 0 success, 1 failure (e.g. an
//! image that does not verify), 2 usage error.

mod commands;
mod failure;

use std::process::ExitCode;

use clap::Parser;

use commands::Command;
use failure::Failure;

/// Sign and inspect MCUboot images and manage keys for nRF devices.
///
/// Keys are given as a path or `file:PATH` (PEM).
#[derive(Debug, Parser)]
#[command(name = "keytool", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
