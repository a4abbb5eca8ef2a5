//! `factory`: the factory station's command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use factory::chips::ChipTable;
use factory::target::{read_hw_id, GdbTarget};

/// The factory station: identify, provision and lock nRF chips.
#[derive(Debug, Parser)]
#[command(name = "factory", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the chip's hardware ID (FICR DEVICEID, as the firmware reads it).
    ReadId {
        /// The chip (`factory chips` lists them).
        #[arg(long)]
        chip: String,
        /// A GDB remote stub, HOST:PORT (QEMU -gdb, OpenOCD, pyOCD, J-Link).
        #[arg(long, value_name = "HOST:PORT")]
        gdb: String,
        /// One JSON object instead of the bare ID.
        #[arg(long)]
        json: bool,
    },
    /// List the chips the station knows.
    Chips {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let table = ChipTable::builtin()?;
    match cli.command {
        Command::ReadId { chip, gdb, json } => {
            let chip = table.get(&chip)?;
            if !chip.verified {
                eprintln!(
                    "factory: warning: the {} entry of the chip table is not verified against the MDK or a chip",
                    chip.name
                );
            }
            let mut target = GdbTarget::connect(&gdb)
                .map_err(|e| anyhow::anyhow!("cannot reach the gdb stub at {gdb}: {e}"))?;
            let hw_id = read_hw_id(&mut target, chip)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"chip": chip.name, "hw_id": hw_id.to_string()})
                );
            } else {
                println!("{hw_id}");
            }
        }
        Command::Chips { json } => {
            for c in table.iter() {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "chip": c.name, "deviceid": format!("{:#010x}", c.deviceid),
                            "flash_size": c.flash_size, "page_size": c.page_size,
                            "partition": format!("{:#x}", c.partition), "verified": c.verified,
                        })
                    );
                } else {
                    println!(
                        "{:<12} DEVICEID {:#010x}  flash {:>5} KiB  page {:>4} B  partition {:#08x}{}",
                        c.name,
                        c.deviceid,
                        c.flash_size / 1024,
                        c.page_size,
                        c.partition,
                        if c.verified { "" } else { "  (unverified)" }
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("factory: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
