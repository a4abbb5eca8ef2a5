//! `keytool`: the security officer's command-line tool.
//!
//! Binaries only parse arguments and wire things up; the work is in `signer`
//! and `firmware`. Exit codes follow imgtool: 0 success, 1 failure (e.g. an
//! image that does not verify), 2 usage error.

mod commands;
mod failure;
mod imgtool;
mod imgtool_dumpinfo;
mod station;
mod tui;

use std::process::ExitCode;

use clap::Parser;

use commands::Command;
use failure::Failure;

/// The security officer's station for nRF devices: sign and inspect MCUboot
/// images, release them under a policy with M-of-N approval, manage keys, sign
/// provisioning records, issue X.509 device certificates, read the audit log,
/// or do all of it in a terminal UI (`keytool tui`).
///
/// Every KEY is one of: pkcs11:token=…;object=…[?module-path=…&pin-source=…]
/// (an HSM), awskms:///alias/NAME[?region=…&endpoint=…] (AWS KMS), or a PEM
/// file as PATH or file:PATH (development only). See docs/key-references.md.
///
/// Invoked through a link named `imgtool`, keytool takes imgtool's command
/// lines instead.
#[derive(Debug, Parser)]
#[command(name = "keytool", version, max_term_width = 100)]
struct Cli {
    /// The release policy (docs/policy.md). With one, every signature goes
    /// through it and the audit log: images only by `release sign` with
    /// approvals, records only with authority keys.
    #[arg(long, global = true, value_name = "FILE", env = "KEYTOOL_POLICY")]
    policy: Option<std::path::PathBuf>,
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

/// Parse the command line as `P`, or exit as clap would, with one line.
fn parse<P: Parser>() -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap echoes the value it refused: never a PIN.
            eprintln!("{}", signer::key_ref::redact_pins(&one_line(&e)));
            Err(ExitCode::from(failure::USAGE))
        }
    }
}

/// Whether we were invoked as `imgtool` (through a link of that name).
fn invoked_as_imgtool() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|name| name == "imgtool")
}

fn main() -> ExitCode {
    let result = if invoked_as_imgtool() {
        match parse::<imgtool::Cli>() {
            Ok(cli) => cli.run(&station::session::Context {
                policy: std::env::var_os("KEYTOOL_POLICY").map(Into::into),
            }),
            Err(code) => return code,
        }
    } else {
        match parse::<Cli>() {
            Ok(cli) => cli
                .command
                .run(&station::session::Context { policy: cli.policy }),
            Err(code) => return code,
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!(
                "error: {}",
                signer::key_ref::redact_pins(&format!("{error:#}"))
            );
            ExitCode::from(code)
        }
    }
}
