//! The station's own cost per device, and the whole emulated story.
//!
//! 1. The provisioning flow on fake chips (memory-backed) against the real
//!    backend (the `lambda` router on SQLite, over HTTP on 127.0.0.1): time
//!    per device of every step except programming, writing and reading back
//!    flash (what a probe's speed decides) and waiting for the chip to make
//!    its key (the chip's time), with the authority key in a file. Peer,
//!    in the same run: the two backend round trips alone (provision and
//!    activate with a pre-signed record), as a bare HTTP client makes them.
//! 2. End to end on QEMU's nRF51: `boot.sh --blank --gdb` (a blank chip,
//!    halted), `factory provision` with the boot stage and the signed sample
//!    application (SoftHSM2 not needed here: file key), the chip booting its
//!    application; wall time per device.
//!
//! `cargo bench -p factory --bench provision_flow`
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{backend, boot_stage, signed_app, DATA, TOKEN};
use factory::backend::Backend;
use factory::chips::ChipTable;
use factory::provision::{provision, Job};
use factory::target::FakeTarget;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn flow_on_fake_chips(devices: u32) {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    let authority = signer::open_signer(&key).unwrap();
    let client =
        Backend::connect(&be.url, Some(TOKEN.to_owned().into()), &Default::default()).unwrap();
    let job = Job {
        chip,
        backend: &client,
        authority: authority.as_ref(),
        product: Some("bench".into()),
        boot_stage: None,
        firmware: None,
        lock: true,
        force: false,
        run_after: true,
        device_ca: None,
        key_origin: firmware::record::KeyOrigin::Device,
        key_timeout: Duration::from_secs(2),
        production: false,
    };
    let mut own = Vec::new();
    let mut total = Vec::new();
    for i in 0..devices {
        let mut t = FakeTarget::making_keys(chip, 0x10_0000 + i, 0x7777_0000);
        let r = provision(&mut t, &job);
        assert_eq!(r.outcome, "provisioned", "{r:?}");
        let flash: f64 = r
            .steps
            .iter()
            .filter(|s| {
                s.step.starts_with("program_")
                    || s.step.starts_with("verify_")
                    || s.step.starts_with("write_")
                    // The chip making its key and answering: the chip's time.
                    || s.step == "device_key"
            })
            .map(|s| s.ms)
            .sum();
        let all: f64 = r.steps.iter().map(|s| s.ms).sum();
        own.push(all - flash);
        total.push(all);
    }
    own.sort_by(f64::total_cmp);

    // Peer: the backend round trips alone, for fresh chips, record pre-signed.
    let record = std::fs::read(format!("{DATA}records/qemu-microbit.bin")).unwrap();
    let peer_be = backend();
    let peer = Backend::connect(
        &peer_be.url,
        Some(TOKEN.to_owned().into()),
        &Default::default(),
    )
    .unwrap();
    let mut bare = Vec::new();
    let hw = firmware::record::HwId::parse_hex("1234567800000003").unwrap();
    for i in 0..devices {
        let t = Instant::now();
        let chip_id = if i == 0 {
            hw
        } else {
            firmware::record::HwId::from_deviceid(0x20_0000 + i, 0x7777_0000)
        };
        let p = peer.provision(chip_id, Some("bench")).unwrap();
        if i == 0 {
            peer.activate(p.serial, &record).unwrap();
        } else {
            // Same request size and verification work; refused as another
            // serial's record after the signature check.
            let _ = peer.activate(p.serial, &record);
        }
        bare.push(t.elapsed().as_secs_f64() * 1e3);
    }
    bare.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "flow on fake chips, {devices} devices: own steps (no flash) mean {:.2} ms  p50 {:.2}  p99 {:.2}  (goal < 100 ms); with fake flash {:.2} ms",
        mean(&own),
        percentile(&own, 0.5),
        percentile(&own, 0.99),
        mean(&total)
    );
    println!(
        "peer: the two backend round trips alone mean {:.2} ms; flow / peer = {:.2}x",
        mean(&bare),
        mean(&own) / mean(&bare)
    );
}

fn emulated_end_to_end(runs: u32) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    // Built once, before the clock runs.
    let (app, stage) = (signed_app(), boot_stage());
    let mut times = Vec::new();
    for _ in 0..runs {
        // QEMU's chip always has the same hw_id: a fresh registry per run.
        let be = backend();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Instant::now();
        let mut chip = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .args(["--blank", "--gdb", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["provision", "--chip", "nrf51822", "--json"])
            .args(["--gdb", &format!("127.0.0.1:{port}")])
            .args(["--backend", &be.url])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--authority-key")
            .arg(format!("file:{DATA}records/authority.pem"))
            .arg("--firmware")
            .arg(&app)
            .arg("--boot-stage")
            .arg(&stage)
            .arg("--release-key")
            .arg(format!("{DATA}images/dev-key.pub.pem"))
            .args(["--slot", "0x8000"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut console = String::new();
        chip.stdout
            .take()
            .unwrap()
            .read_to_string(&mut console)
            .unwrap();
        assert!(chip.wait().unwrap().success() && console.contains("APP version="));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "emulated end to end per device (QEMU start, factory provision over gdb, boot to the application), {runs} runs: median {:.0} ms  min {:.0} ms",
        percentile(&times, 0.5),
        times[0]
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    flow_on_fake_chips(200);
    emulated_end_to_end(10);
}
