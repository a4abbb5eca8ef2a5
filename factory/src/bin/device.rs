//! `device`: talk to a provisioned device in the field, over its UART only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use factory::backend::Backend;

/// Field tools for provisioned devices: nothing here touches a debug port.
#[derive(Debug, Parser)]
#[command(name = "device", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay a device authentication: ask the backend for a challenge for
    /// the device, pass it to the chip on its UART, post the chip's answer.
    /// Prints `AUTHENTICATED serial=N`, or `REFUSED reason=CODE` with the
    /// backend's code (exit 1). No credential is needed: the chip's own
    /// signature is what the backend checks (docs/device-auth.md).
    Relay {
        /// The chip's UART, HOST:PORT (a serial-to-TCP bridge; on QEMU
        /// `firmware/qemu/boot.sh --uart PORT`).
        #[arg(long, value_name = "HOST:PORT")]
        uart: String,
        /// The backend's base URL.
        #[arg(long, value_name = "URL")]
        backend: String,
        /// The device's serial.
        #[arg(long, value_name = "N")]
        serial: u32,
        #[command(flatten)]
        transport: factory::backend::Transport,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Relay {
            uart,
            backend,
            serial,
            transport,
        } => {
            let backend = Backend::connect(&backend, None, &transport)?;
            factory::device_auth::report(factory::device_auth::over_uart(&uart, serial, &backend))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
