//! The station's debug connection against a real GDB stub: QEMU's emulated
//! nRF51 (`-M microbit`, whose FICR DEVICEID reads 1234567800000003). The
//! hardware ID is read over the stub, and a provisioning record written over
//! it into the halted chip's flash is what the boot stage then verifies.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use factory::chips::ChipTable;
use factory::target::{read_hw_id, GdbTarget, Target};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn wait_for(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what} exited before listening"
        );
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn read_id_over_qemus_gdb_stub() {
    let port = free_port();
    let mut qemu = Command::new("qemu-system-arm")
        .args([
            "-M",
            "microbit",
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-S",
        ])
        .args(["-gdb", &format!("tcp:127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("qemu-system-arm: {e} (scripts/setup.sh installs it)"));
    wait_for(port, &mut qemu, "qemu");
    let _qemu = Killed(qemu);
    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["read-id", "--chip", "nrf51822", "--json", "--gdb"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hw_id"], "1234567800000003");

    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["read-id", "--chip", "nrf9999", "--gdb"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown chip") && err.contains("nrf52840"),
        "{err}"
    );

    // Exactly one of --probe and --gdb.
    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["read-id", "--chip", "nrf51822"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--probe") && err.contains("--gdb"), "{err}");
}

fn qemu_halted(port: u16) -> Killed {
    let mut qemu = Command::new("qemu-system-arm")
        .args(["-M", "microbit", "-nographic", "-monitor", "none"])
        .args(["-serial", "none", "-S"])
        .args(["-gdb", &format!("tcp:127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(port, &mut qemu, "qemu");
    Killed(qemu)
}

/// The lock sequence (NVMC write enable, the UICR word, READY, write
/// disable) goes over the stub as plain memory writes, as a real probe's
/// stub needs it. QEMU drops debugger writes to its MMIO (NVMC, UICR), so
/// here the confirmation must see the chip still open and say so: the station
/// never reports a lock it cannot see.
#[test]
fn a_lock_the_stub_cannot_apply_is_reported_not_assumed() {
    let port = free_port();
    let _qemu = qemu_halted(port);
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let mut target = GdbTarget::connect(&format!("127.0.0.1:{port}")).unwrap();
    let mut before = [0u8; 4];
    target.read_memory(chip.approtect, &mut before).unwrap();
    assert_eq!(before, [0xff; 4], "a fresh chip is unlocked");
    target.lock(chip).unwrap();
    let mut config = [0u8; 4];
    target.read_memory(chip.nvm_config, &mut config).unwrap();
    assert_eq!(config, [0; 4], "writes are left disabled");
    let e = target.confirm_lock(chip).unwrap_err().to_string();
    assert!(
        e.contains("still open after locking")
            && e.contains("0x10001004")
            && e.contains("ffffffff"),
        "{e}"
    );
}

/// A blank chip written over the stub: the boot stage, the signed sample
/// application and the record; restarted, it boots them.
#[test]
fn a_blank_chip_written_over_gdb_boots_its_application_as_provisioned() {
    let port = free_port();
    let mut boot = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
        .args(["--blank", "--gdb", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(port, &mut boot, "boot.sh");
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let mut target = GdbTarget::connect(&format!("127.0.0.1:{port}")).unwrap();
    assert_eq!(
        read_hw_id(&mut target, chip).unwrap().to_string(),
        "1234567800000003"
    );
    let record = std::fs::read(format!("{ROOT}/tests/data/records/qemu-microbit.bin")).unwrap();
    let mut stage = std::fs::read(common::boot_stage()).unwrap();
    stage.resize(stage.len().next_multiple_of(4), 0xff);
    let app = std::fs::read(common::signed_app()).unwrap();
    for (addr, bytes) in [(0, &stage), (0x8000, &app), (chip.partition, &record)] {
        target.program_flash(chip, addr, bytes).unwrap();
        let mut back = vec![0u8; bytes.len()];
        target.read_memory(addr, &mut back).unwrap();
        assert_eq!(&back, bytes, "read back what was written at {addr:#x}");
    }
    target.reset_and_run().unwrap();

    let mut console = String::new();
    boot.stdout
        .take()
        .unwrap()
        .read_to_string(&mut console)
        .unwrap();
    let status = boot.wait().unwrap();
    assert!(status.success(), "{console}");
    assert_eq!(
        console.lines().collect::<Vec<_>>(),
        [
            "PROVISIONED serial=1 hw_id=1234567800000003 product=microbit-demo key_origin=station",
            "BOOT ok version=1.0.0+0 counter=1",
            "APP version=1.0.0+0 serial=1 hw_id=1234567800000003",
        ]
    );
}
