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

/// clap's message folded onto one line: what is wrong, without the usage block.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    parts.join(" ")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(failure::USAGE);
        }
    };
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
