//! Keys born on the chip, end to end on QEMU's nRF51 with the real backend
//! (`lambda` router on SQLite over HTTP on 127.0.0.1): a blank chip is
//! provisioned by the station's flow over the GDB stub with device-made keys
//! (the station's every debug access recorded: the key region is never
//! read, and only the record is written into the partition); the chip then
//! authenticates over its UART through `device relay`. A clone of its whole
//! flash on a second emulated chip (another FICR, `boot.sh --hw-id`) is not
//! provisioned there and cannot answer for it; that second chip, provisioned
//! in its own right, gets its own key and serial, and its answers do not pass
//! as the first's; a revoked device is refused.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ask, backend, boot_stage, free_port, signed_app, wait_for, Chip, DATA, ROOT, TOKEN};
use factory::backend::{Backend, BackendError};
use factory::chips::{Chip as ChipKind, ChipTable};
use factory::provision::{provision, Firmware, Job};
use factory::target::{GdbTarget, Target, TargetError};
use firmware::auth::line::Answer;
use firmware::partition::{IMAGE_LEN, KEY_BLOCK_OFFSET};
use firmware::record::{KeyOrigin, RECORD_LEN};

fn start(args: &[&str]) -> Chip {
    Chip(
        Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// A debug connection that records every range it reads and writes.
struct Recording<T> {
    inner: T,
    reads: Vec<Range<u32>>,
    writes: Vec<Range<u32>>,
}

impl<T: Target> Target for Recording<T> {
    fn read_memory(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), TargetError> {
        self.reads.push(addr..addr + buf.len() as u32);
        self.inner.read_memory(addr, buf)
    }
    fn write_memory(&mut self, addr: u32, data: &[u8]) -> Result<(), TargetError> {
        self.writes.push(addr..addr + data.len() as u32);
        self.inner.write_memory(addr, data)
    }
    fn program_flash(
        &mut self,
        chip: &ChipKind,
        addr: u32,
        data: &[u8],
    ) -> Result<(), TargetError> {
        self.writes.push(addr..addr + data.len() as u32);
        self.inner.program_flash(chip, addr, data)
    }
    fn reset_and_run(&mut self) -> Result<(), TargetError> {
        self.inner.reset_and_run()
    }
    fn release(&mut self) -> Result<(), TargetError> {
        self.inner.release()
    }
    fn confirm_lock(&mut self, chip: &ChipKind) -> Result<(), TargetError> {
        self.inner.confirm_lock(chip)
    }
}

/// `device relay` to the chip on `uart` for `serial`.
fn relay(uart: u16, serial: u32, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_device"))
        .args(["relay", "--uart", &format!("127.0.0.1:{uart}")])
        .args(["--backend", url, "--serial", &serial.to_string()])
        .output()
        .unwrap()
}

/// End a chip's run with `BYE` on its UART; its console.
fn finish(mut chip: Chip, uart: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", uart)).unwrap();
    writeln!(&stream, "BYE").unwrap();
    let status = chip.0.wait().unwrap();
    let mut console = String::new();
    std::io::Read::read_to_string(&mut chip.0.stdout.take().unwrap(), &mut console).unwrap();
    assert!(status.success(), "{console}");
    console
}

fn refusal(e: BackendError) -> String {
    match e {
        BackendError::Refused { code, .. } => code,
        other => panic!("{other}"),
    }
}

/// Provision the blank chip on `gdb` with device-made keys through a
/// recording connection; returns what the station read and wrote.
fn provision_chip(
    gdb: u16,
    nrf51: &ChipKind,
    backend: &Backend,
    authority: &dyn signer::Signer,
) -> (factory::provision::Report, Recording<GdbTarget>) {
    let stage = Firmware {
        addr: 0,
        bytes: std::fs::read(boot_stage()).unwrap(),
    };
    let app = Firmware {
        addr: 0x8000,
        bytes: std::fs::read(signed_app()).unwrap(),
    };
    let job = Job {
        chip: nrf51,
        backend,
        authority,
        product: Some("keys-demo".into()),
        boot_stage: Some(&stage),
        firmware: Some(&app),
        lock: false,
        force: false,
        run_after: true,
        device_ca: None,
        key_origin: KeyOrigin::Device,
        key_timeout: Duration::from_secs(60),
        production: false,
    };
    let mut target = Recording {
        inner: GdbTarget::connect(&format!("127.0.0.1:{gdb}")).unwrap(),
        reads: Vec::new(),
        writes: Vec::new(),
    };
    let report = provision(&mut target, &job);
    (report, target)
}

#[test]
fn a_chip_that_makes_its_own_key_is_provisioned_and_authenticates_itself() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let nrf51 = table.get("nrf51822").unwrap();
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    let authority = signer::open_signer(&key).unwrap();
    let backend =
        Backend::connect(&be.url, Some(TOKEN.to_owned().into()), &Default::default()).unwrap();

    // Chip A: blank, provisioned with device-made keys.
    let (gdb_a, uart_a) = (free_port(), free_port());
    let mut chip_a = start(&[
        "--blank",
        "--gdb",
        &gdb_a.to_string(),
        "--uart",
        &uart_a.to_string(),
    ]);
    wait_for(gdb_a, &mut chip_a);
    let (report, station) = provision_chip(gdb_a, nrf51, &backend, authority.as_ref());
    assert_eq!(report.outcome, "provisioned", "{report:?}");
    assert_eq!(
        (report.serial, report.key_origin),
        (Some(1), Some("device"))
    );
    let steps: Vec<_> = report.steps.iter().map(|s| s.step).collect();
    assert!(
        steps.contains(&"device_key") && !steps.contains(&"write_key_block"),
        "{steps:?}"
    );
    let key_region = nrf51.partition + KEY_BLOCK_OFFSET as u32..nrf51.partition + IMAGE_LEN as u32;
    let overlaps = |r: &Range<u32>| r.start < key_region.end && key_region.start < r.end;
    assert!(
        !station.reads.iter().any(overlaps),
        "the station read the key region: {:?}",
        station.reads
    );
    let partition = nrf51.partition..nrf51.partition + 0x1000;
    for w in station
        .writes
        .iter()
        .filter(|w| partition.contains(&w.start))
    {
        assert!(
            w.end <= nrf51.partition + RECORD_LEN as u32,
            "the station wrote {w:?} into the partition, beyond the record"
        );
    }
    let device = be.store.device_by_serial(1).wait().unwrap().unwrap();
    assert_eq!(device.status.as_str(), "active");
    assert_eq!(device.key_origin, Some(KeyOrigin::Device));
    drop(station); // the chip runs its application

    // From here on, only the UART: the chip answers with its own key.
    let out = relay(uart_a, 1, &be.url);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "AUTHENTICATED serial=1"
    );

    // An attacker copies chip A's whole flash (its debug port was left open
    // here) onto chip B, a chip with another FICR.
    let mut attacker = GdbTarget::connect(&format!("127.0.0.1:{gdb_a}")).unwrap();
    let mut flash = vec![0u8; 0x40000];
    attacker.read_memory(0, &mut flash).unwrap();
    attacker.release().unwrap();
    drop(attacker);
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("clone.bin");
    std::fs::write(&clone, &flash).unwrap();
    let uart_b = free_port();
    let chip_b = start(&[
        "--flash",
        clone.to_str().unwrap(),
        "--hw-id",
        "1234567800000004",
        "--uart",
        &uart_b.to_string(),
    ]);
    let mut chip_b = chip_b;
    wait_for(uart_b, &mut chip_b);
    // Its boot stage finds the record is for another chip; it does not
    // answer as device 1.
    let out = relay(uart_b, 1, &be.url);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unprovisioned"),
        "{out:?}"
    );
    let console_b = finish(chip_b, uart_b);
    // (QEMU's UART log, with no client on the socket yet, sometimes repeats
    // the very first byte of the run: "NOOT PROVISIONED …".)
    assert!(
        console_b.contains("PROVISIONED reason=wrong-chip hw_id=1234567800000004"),
        "{console_b}"
    );

    // Chip C, another FICR, blank: provisioned in its own right, it makes
    // its own key and gets its own serial.
    let (gdb_c, uart_c) = (free_port(), free_port());
    let mut chip_c = start(&[
        "--blank",
        "--hw-id",
        "1234567800000005",
        "--gdb",
        &gdb_c.to_string(),
        "--uart",
        &uart_c.to_string(),
    ]);
    wait_for(gdb_c, &mut chip_c);
    let (report, station) = provision_chip(gdb_c, nrf51, &backend, authority.as_ref());
    drop(station);
    assert_eq!(
        (report.outcome, report.serial, report.hw_id.as_deref()),
        ("provisioned", Some(2), Some("1234567800000005")),
        "{report:?}"
    );
    let device_c = be.store.device_by_serial(2).wait().unwrap().unwrap();
    assert_ne!(device_c.device_pubkey, device.device_pubkey, "its own key");
    let out = relay(uart_c, 2, &be.url);
    assert!(out.status.success(), "{out:?}");
    // Its answer to device 1's challenge does not pass as device 1's,
    // neither under its own hw_id nor under chip A's.
    let client = Backend::connect(&be.url, None, &Default::default()).unwrap();
    for claimed in ["1234567800000005", "1234567800000003"] {
        let challenge = client.challenge(1).unwrap();
        let nonce: [u8; 32] = hex::decode(&challenge.nonce).unwrap().try_into().unwrap();
        let Answer::Signed { serial, sig, .. } = ask(uart_c, &nonce) else {
            panic!("chip C refused to sign");
        };
        assert_eq!(serial, 2);
        let hw = firmware::record::HwId::parse_hex(claimed).unwrap();
        let e = client
            .verify(&challenge.challenge_id, 1, hw, &sig)
            .unwrap_err();
        let code = refusal(e);
        assert!(
            code == "hw_id_mismatch" || code == "bad_signature",
            "{claimed}: {code}"
        );
    }

    // Revoked: no challenge any more; the backend answers as for a serial
    // it never issued (it does not tell revoked from unknown).
    be.store.revoke(1, "test", "admin:test").wait().unwrap();
    let out = relay(uart_a, 1, &be.url);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "REFUSED reason=unknown_device",
        "{out:?}"
    );

    let console_a = finish(chip_a, uart_a);
    assert!(
        console_a.contains(
            "PROVISIONED serial=1 hw_id=1234567800000003 product=keys-demo key_origin=device"
        ) && console_a.contains("APP version=1.0.0+0 serial=1"),
        "{console_a}"
    );
    let console_c = finish(chip_c, uart_c);
    assert!(
        console_c.contains("PROVISIONED serial=2 hw_id=1234567800000005"),
        "{console_c}"
    );
}
