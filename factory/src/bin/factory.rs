//! `factory`: the factory station's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use factory::backend::Backend;
use factory::chips::{Chip, ChipTable};
use factory::image_check::{check_boot_stage, check_firmware, load_public_keys};
use factory::provision::{production_refusal, provision, Job};
use factory::target::{read_hw_id, GdbTarget, Target};
use firmware::record::KeyOrigin;

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
        #[command(flatten)]
        conn: Connection,
        /// One JSON object instead of the bare ID.
        #[arg(long)]
        json: bool,
    },
    /// Provision one chip: check the firmware, read the hardware ID, program
    /// the boot stage and the firmware, have the chip make its key and prove
    /// it (or inject one with --key-origin station), get the serial, write the
    /// signed record, verify, optionally lock, then activate.
    Provision(Box<ProvisionArgs>),
    /// Station mode: provision chip after chip as they attach to the stub,
    /// with a running summary (done, failed, rate).
    Run(Box<RunArgs>),
    /// Authenticate a device to the backend: prints `AUTHENTICATED serial=N`,
    /// or `REFUSED reason=CODE` with the backend's code. With --uart the chip
    /// answers the challenge itself, with its own key, over its UART (its
    /// debug port is not touched; `device relay` does the same in the field);
    /// with --chip and --probe/--gdb (an unlocked chip whose key the station
    /// made, end of line) the station answers with the device key read back
    /// from it, then lets the chip run.
    DeviceAuth(Box<DeviceAuthArgs>),
    /// Reset the chip and let it run its firmware, releasing the debug
    /// connection (after `provision --hold` and end-of-line checks).
    Reset {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print the device certificate the station wrote to the chip's
    /// provisioning partition (PEM), leaving the chip halted.
    ReadCert {
        #[command(flatten)]
        conn: Connection,
        /// Write it to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List the debug probes attached to this machine, with the selector
    /// that picks each one for --probe.
    Probes {
        /// JSON lines instead of a table.
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

/// Which chip, through which debug connection.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("link").required(true).args(["probe", "gdb"])))]
struct Connection {
    /// The chip (`factory chips` lists them).
    #[arg(long)]
    chip: String,
    /// A debug probe through probe-rs (J-Link, CMSIS-DAP, ST-Link): `auto`
    /// for the only one attached, or VID:PID[:SERIAL] (`factory probes`).
    #[arg(long, value_name = "SELECTOR", value_parser = parse_probe)]
    probe: Option<ProbeArg>,
    /// A GDB remote stub, HOST:PORT (QEMU -gdb, OpenOCD, pyOCD, J-Link).
    #[arg(long, value_name = "HOST:PORT")]
    gdb: Option<String>,
}

#[cfg(feature = "probe-rs")]
type ProbeArg = factory::probe::ProbeSelector;
#[cfg(not(feature = "probe-rs"))]
type ProbeArg = String;

fn parse_probe(s: &str) -> Result<ProbeArg, String> {
    #[cfg(feature = "probe-rs")]
    return s
        .parse()
        .map_err(|e: factory::probe::ProbeSelectorError| e.to_string());
    #[cfg(not(feature = "probe-rs"))]
    return Err(format!(
        "--probe {s}: this factory was built without the probe-rs feature; use --gdb"
    ));
}

impl Connection {
    /// What the station is connected through, for messages.
    fn describe(&self) -> String {
        match (&self.probe, &self.gdb) {
            (Some(p), _) => format!("probe {p}"),
            (None, Some(g)) => format!("gdb stub {g}"),
            (None, None) => "nothing".into(),
        }
    }

    fn connect(&self, chip: &Chip) -> anyhow::Result<Box<dyn Target>> {
        #[cfg(feature = "probe-rs")]
        if let Some(selector) = &self.probe {
            return Ok(Box::new(factory::probe::ProbeRsTarget::open(
                selector, chip,
            )?));
        }
        let _ = chip;
        let gdb = self.gdb.as_deref().unwrap_or_default();
        let target = GdbTarget::connect(gdb)
            .map_err(|e| anyhow::anyhow!("cannot reach the gdb stub at {gdb}: {e}"))?;
        Ok(Box::new(target))
    }
}

#[derive(Debug, clap::Args)]
struct DeviceAuthArgs {
    /// The chip's UART, HOST:PORT (a serial-to-TCP bridge; on QEMU
    /// `firmware/qemu/boot.sh --uart PORT`).
    #[arg(long, value_name = "HOST:PORT", requires = "serial", conflicts_with_all = ["chip", "probe", "gdb"])]
    uart: Option<String>,
    /// The device's serial (with --uart).
    #[arg(long, value_name = "N", requires = "uart")]
    serial: Option<u32>,
    /// The chip (`factory chips`), with --probe or --gdb.
    #[arg(long, required_unless_present = "uart")]
    chip: Option<String>,
    /// A debug probe through probe-rs (as for `provision`).
    #[arg(long, value_name = "SELECTOR", value_parser = parse_probe)]
    probe: Option<ProbeArg>,
    /// A GDB remote stub, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    gdb: Option<String>,
    #[command(flatten)]
    api: Api,
}

/// The backend and the station's credential.
#[derive(Debug, clap::Args)]
struct Api {
    /// The backend's base URL.
    #[arg(long, value_name = "URL")]
    backend: String,
    /// A file holding the station's API token (`provisiond token add`).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    #[command(flatten)]
    transport: factory::backend::Transport,
}

impl Api {
    fn client(&self) -> anyhow::Result<Backend> {
        Ok(Backend::connect(
            &self.backend,
            Some(read_token(&self.token_file)?),
            &self.transport,
        )?)
    }
}

#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    api: Api,
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
    /// The boot stage to program at the start of flash (a raw binary, e.g.
    /// from `firmware/qemu/boot.sh --build-only`), below the firmware's slot.
    #[arg(long, value_name = "BOOT.bin")]
    boot_stage: Option<PathBuf>,
    /// Product name, in the record and the registry (at most 16 ASCII characters).
    #[arg(long)]
    product: Option<String>,
    /// Lock debug access after provisioning, and confirm it (before the
    /// device is activated).
    #[arg(long)]
    lock: bool,
    /// Where the device key is made: `device` (the chip draws it from its RNG
    /// and proves possession; the station never sees it) or `station` (made
    /// here and written into the chip, for parts whose firmware cannot make
    /// keys).
    #[arg(long, value_name = "ORIGIN", default_value = "device", value_parser = parse_origin)]
    key_origin: KeyOrigin,
    /// How long the chip gets to make its key and answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = factory::provision::DEFAULT_KEY_TIMEOUT.as_secs())]
    key_timeout: u64,
    /// Production rules: requires --lock and --key-origin device, and refuses
    /// plain http:// to a backend that is not on this machine.
    #[arg(long)]
    production: bool,
    /// Program the firmware even if the chip is already provisioned.
    #[arg(long)]
    force: bool,
    /// Leave the chip halted under the debugger at the end (for
    /// `factory device-auth`), instead of letting it run.
    #[arg(long, conflicts_with = "lock")]
    hold: bool,
    /// Also issue each device's X.509 certificate with this device CA key
    /// and write it next to the record (docs/certificates.md).
    #[arg(long, value_name = "URI", requires = "device_ca_cert")]
    device_ca_key: Option<signer::KeyRef>,
    /// The device CA's certificate (PEM).
    #[arg(long, value_name = "CA.pem", requires = "device_ca_key")]
    device_ca_cert: Option<PathBuf>,
    /// Validity of device certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    cert_days: u32,
    /// One JSON line with the steps and their durations.
    #[arg(long)]
    json: bool,
}

fn parse_origin(s: &str) -> Result<KeyOrigin, String> {
    KeyOrigin::parse(s).ok_or_else(|| format!("{s:?}: device or station"))
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

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    station: ProvisionArgs,
    /// Stop after this many chips (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u32>,
}

/// Everything prepared before the first chip: checked firmware, opened keys.
struct Station {
    chip: factory::chips::Chip,
    firmware: factory::provision::Firmware,
    boot_stage: Option<factory::provision::Firmware>,
    backend: Backend,
    authority: Box<dyn signer::Signer>,
    device_ca: Option<factory::provision::DeviceCa>,
    args: ProvisionArgs,
}

impl Station {
    fn prepare(table: &ChipTable, args: ProvisionArgs) -> anyhow::Result<Self> {
        let chip = table.get(&args.conn.chip)?.clone();
        if args.production {
            if let Some(why) = production_refusal(args.lock, args.key_origin, &args.api.backend) {
                anyhow::bail!(why);
            }
        }
        if let Some(p) = &args.product {
            if p.is_empty() || p.len() > 16 || !p.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                anyhow::bail!("--product: 1 to 16 printable ASCII characters");
            }
        }
        // Everything that can be checked without a chip is checked first.
        let release_keys = load_public_keys(&args.release_keys)?;
        let firmware = check_firmware(&args.firmware, &release_keys, args.slot, &chip)?;
        let boot_stage = match &args.boot_stage {
            Some(path) => Some(check_boot_stage(path, &firmware)?),
            None => None,
        };
        let backend = args.api.client()?;
        let authority = signer::open_signer(&args.authority_key)?;
        let device_ca = match (&args.device_ca_key, &args.device_ca_cert) {
            (Some(key), Some(cert)) => {
                let key = signer::open_signer(key)?;
                let cert_pem = std::fs::read_to_string(cert)
                    .map_err(|e| anyhow::anyhow!("--device-ca-cert {}: {e}", cert.display()))?;
                signer::certs::check_issuer(&cert_pem, key.as_ref())
                    .map_err(|e| anyhow::anyhow!("--device-ca-cert {}: {e}", cert.display()))?;
                Some(factory::provision::DeviceCa {
                    key,
                    cert_pem,
                    days: args.cert_days,
                })
            }
            _ => None,
        };
        Ok(Self {
            chip,
            firmware,
            boot_stage,
            backend,
            authority,
            device_ca,
            args,
        })
    }

    fn provision(&self, target: &mut dyn Target) -> factory::provision::Report {
        let job = Job {
            chip: &self.chip,
            backend: &self.backend,
            authority: self.authority.as_ref(),
            product: self.args.product.clone(),
            boot_stage: self.boot_stage.as_ref(),
            firmware: Some(&self.firmware),
            lock: self.args.lock,
            force: self.args.force,
            run_after: !self.args.hold,
            device_ca: self.device_ca.as_ref(),
            key_origin: self.args.key_origin,
            key_timeout: Duration::from_secs(self.args.key_timeout),
            production: self.args.production,
        };
        provision(target, &job)
    }

    /// Print a report: a JSON line, or a line for people.
    fn show(&self, report: &factory::provision::Report) -> anyhow::Result<()> {
        if self.args.json {
            println!("{}", serde_json::to_string(report)?);
            return Ok(());
        }
        let total: f64 = report.steps.iter().map(|s| s.ms).sum();
        match (&report.error, report.serial) {
            (None, Some(serial)) => println!(
                "{} hw_id={} serial={serial} key_origin={} ({total:.0} ms)",
                report.outcome.to_uppercase(),
                report.hw_id.as_deref().unwrap_or("?"),
                report.key_origin.unwrap_or("?")
            ),
            _ => eprintln!(
                "factory: FAILED hw_id={}: {}",
                report.hw_id.as_deref().unwrap_or("?"),
                report.error.as_deref().unwrap_or("unknown")
            ),
        }
        Ok(())
    }
}

fn provision_one(table: &ChipTable, args: ProvisionArgs) -> anyhow::Result<bool> {
    let station = Station::prepare(table, args)?;
    let mut target = station.args.conn.connect(&station.chip)?;
    let report = station.provision(target.as_mut());
    station.show(&report)?;
    Ok(report.error.is_none())
}

/// Station mode. A chip counts as new when the connection comes back after
/// having gone away (a stub restarted, a probe or a chip re-plugged), or the
/// chip answers with another hw_id.
fn run_station(table: &ChipTable, args: RunArgs) -> anyhow::Result<bool> {
    let station = Station::prepare(table, args.station)?;
    let link = station.args.conn.describe();
    let started = Instant::now();
    let (mut done, mut failed) = (0u32, 0u32);
    let mut last: Option<String> = None;
    eprintln!("factory: station ready; waiting for chips on the {link}");
    while args.count.is_none_or(|n| done + failed < n) {
        let mut target = match station.args.conn.connect(&station.chip) {
            Ok(t) => t,
            Err(_) => {
                last = None; // detached
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        if let Some(prev) = &last {
            let same =
                read_hw_id(target.as_mut(), &station.chip).is_ok_and(|h| &h.to_string() == prev);
            if same {
                // Still the chip just done: let it run on.
                let _ = target.reset_and_run();
                drop(target);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        }
        let report = station.provision(target.as_mut());
        drop(target);
        if report.error.is_none() {
            done += 1;
        } else {
            failed += 1;
        }
        last = report.hw_id.clone();
        station.show(&report)?;
        // The chip resets into its firmware; give it and the operator a moment
        // before asking the stub again.
        std::thread::sleep(Duration::from_millis(500));
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        eprintln!(
            "factory: done {done}, failed {failed}, {:.1} chips/min",
            f64::from(done + failed) / minutes.max(1e-9)
        );
    }
    if station.args.json {
        println!(
            "{}",
            serde_json::json!({"summary": {"done": done, "failed": failed,
                "seconds": started.elapsed().as_secs_f64()}})
        );
    }
    Ok(failed == 0)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let table = ChipTable::builtin()?;
    match cli.command {
        Command::ReadId { conn, json } => {
            let chip = table.get(&conn.chip)?;
            if !chip.verified {
                eprintln!(
                    "factory: warning: the {} entry of the chip table is not verified against the MDK or a chip",
                    chip.name
                );
            }
            let mut target = conn.connect(chip)?;
            let hw_id = read_hw_id(target.as_mut(), chip)?;
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
        Command::DeviceAuth(args) => {
            let backend = args.api.client()?;
            let outcome = match (&args.uart, args.serial, &args.chip) {
                (Some(uart), Some(serial), _) => {
                    factory::device_auth::over_uart(uart, serial, &backend)
                }
                (_, _, Some(chip_name)) => {
                    let chip = table.get(chip_name)?;
                    let conn = Connection {
                        chip: chip_name.clone(),
                        probe: args.probe.clone(),
                        gdb: args.gdb.clone(),
                    };
                    let mut target = conn.connect(chip)?;
                    let serial =
                        factory::device_auth::authenticate(target.as_mut(), chip, &backend);
                    if serial.is_ok() {
                        target.reset_and_run()?;
                    }
                    serial
                }
                _ => anyhow::bail!("--uart HOST:PORT --serial N, or --chip with --probe or --gdb"),
            };
            factory::device_auth::report(outcome)?;
        }
        Command::Run(args) => {
            if !run_station(&table, *args)? {
                anyhow::bail!("some chips failed");
            }
        }
        Command::Reset { conn } => {
            let chip = table.get(&conn.chip)?;
            conn.connect(chip)?.reset_and_run()?;
        }
        Command::ReadCert { conn, output } => {
            let chip = table.get(&conn.chip)?;
            let mut target = conn.connect(chip)?;
            let mut part = vec![0u8; 0x1000];
            target.read_memory(chip.partition, &mut part)?;
            let der = factory::partition::certificate(&part).ok_or_else(|| {
                anyhow::anyhow!(
                    "no device certificate in the partition at {:#x} (provisioned without --device-ca-key?)",
                    chip.partition
                )
            })?;
            let pem = signer::certs::der_to_pem(der);
            match output {
                Some(path) => signer::atomic::write(&path, pem.as_bytes())?,
                None => print!("{pem}"),
            }
        }
        Command::Probes { json } => list_probes(json)?,
        Command::Chips { json } => {
            for c in table.iter() {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "chip": c.name, "deviceid": format!("{:#010x}", c.deviceid),
                            "flash_size": c.flash_size, "page_size": c.page_size,
                            "partition": format!("{:#x}", c.partition),
                            "key_mailbox": format!("{:#x}", c.key_mailbox), "verified": c.verified,
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

#[cfg(feature = "probe-rs")]
fn list_probes(json: bool) -> anyhow::Result<()> {
    let probes = factory::probe::list_probes();
    if probes.is_empty() && !json {
        eprintln!("factory: no debug probes attached");
    }
    for p in probes {
        if json {
            println!("{}", serde_json::to_string(&p)?);
        } else {
            println!("{:<28} --probe {}", p.name, p.selector);
        }
    }
    Ok(())
}

#[cfg(not(feature = "probe-rs"))]
fn list_probes(_json: bool) -> anyhow::Result<()> {
    anyhow::bail!("this factory was built without the probe-rs feature")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap echoes the value it refused: never a PIN.
            eprint!("{}", signer::key_ref::redact_pins(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("factory: error: {}", signer::key_ref::redact_pins(&text));
            ExitCode::FAILURE
        }
    }
}
