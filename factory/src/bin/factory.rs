//! `factory`: the factory station's command line.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use factory::backend::Backend;
use factory::chips::ChipTable;
use factory::image_check::{check_firmware, load_public_keys};
use factory::provision::{provision, Job};
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
    /// Provision one chip: check the firmware, read the hardware ID, get the
    /// serial, inject a new device key and the signed record, program the
    /// firmware, verify, activate, optionally lock.
    Provision(Box<ProvisionArgs>),
    /// List the chips the station knows.
    Chips {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    /// The chip (`factory chips` lists them).
    #[arg(long)]
    chip: String,
    /// A GDB remote stub, HOST:PORT (QEMU -gdb, OpenOCD, pyOCD, J-Link).
    #[arg(long, value_name = "HOST:PORT")]
    gdb: String,
    /// The backend's base URL.
    #[arg(long, value_name = "URL")]
    backend: String,
    /// A file holding the station's API token (`provisiond token add`).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// The provisioning authority's key: file:, pkcs11: or awskms: URI.
    #[arg(long, value_name = "URI")]
    authority_key: signer::KeyRef,
    /// The signed MCUboot image to program (.bin or .hex).
    #[arg(long, value_name = "APP.signed.(hex|bin)")]
    firmware: PathBuf,
    /// A release public key (PEM) the firmware must be signed with. Repeatable.
    #[arg(long = "release-key", value_name = "PEM", required = true)]
    release_keys: Vec<PathBuf>,
    /// Where a .bin image goes (a .hex image carries its address).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    slot: Option<u32>,
    /// Product name, in the record and the registry (at most 16 ASCII characters).
    #[arg(long)]
    product: Option<String>,
    /// Lock debug access after provisioning, and confirm it.
    #[arg(long)]
    lock: bool,
    /// Program the firmware even if the chip is already provisioned.
    #[arg(long)]
    force: bool,
    /// One JSON line with the steps and their durations.
    #[arg(long)]
    json: bool,
}

fn parse_addr(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not an address (decimal or 0x…)"))
}

fn read_token(path: &PathBuf) -> anyhow::Result<secrecy::SecretString> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("--token-file {}: empty", path.display());
    }
    Ok(token.to_owned().into())
}

fn provision_one(table: &ChipTable, a: ProvisionArgs) -> anyhow::Result<bool> {
    let chip = table.get(&a.chip)?;
    if let Some(p) = &a.product {
        if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            anyhow::bail!("--product: 1 to 16 printable ASCII characters");
        }
    }
    // Everything that can be checked without the chip is checked first.
    let release_keys = load_public_keys(&a.release_keys)?;
    let firmware = check_firmware(&a.firmware, &release_keys, a.slot, chip)?;
    let token = read_token(&a.token_file)?;
    let authority = signer::open_signer(&a.authority_key)?;
    let backend = Backend::new(&a.backend, token);
    let mut target = GdbTarget::connect(&a.gdb)
        .map_err(|e| anyhow::anyhow!("cannot reach the gdb stub at {}: {e}", a.gdb))?;
    let job = Job {
        chip,
        backend: &backend,
        authority: authority.as_ref(),
        product: a.product,
        firmware: Some(&firmware),
        lock: a.lock,
        force: a.force,
    };
    let report = provision(&mut target, &job);
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let total: f64 = report.steps.iter().map(|s| s.ms).sum();
        match (&report.error, report.serial) {
            (None, Some(serial)) => println!(
                "{} hw_id={} serial={serial} ({total:.0} ms)",
                report.outcome.to_uppercase(),
                report.hw_id.as_deref().unwrap_or("?")
            ),
            _ => eprintln!(
                "factory: FAILED hw_id={}: {}",
                report.hw_id.as_deref().unwrap_or("?"),
                report.error.as_deref().unwrap_or("unknown")
            ),
        }
    }
    Ok(report.error.is_none())
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
        Command::Provision(args) => {
            if !provision_one(&table, *args)? {
                anyhow::bail!("provisioning failed");
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
