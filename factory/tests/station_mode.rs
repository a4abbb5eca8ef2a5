//! `factory run` (station mode) against emulated chips arriving one after the
//! other on the same GDB port: the first is provisioned; the second, a blank
//! chip with the same hw_id as one the backend already has active (QEMU's
//! chips all share one DEVICEID), is refused with a clear reason; the summary
//! counts both.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::{backend, boot_keys, signed_app, DATA, ROOT, TOKEN};

/// A child killed when the test ends, however it ends (a leaked child would
/// hold the test's output open).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chip(port: u16) -> std::process::Child {
    Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
        .args(boot_keys())
        .args(["--gdb", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn station_mode_provisions_chips_as_they_attach() {
    let be = backend();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut station = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["run", "--count", "2", "--chip", "nrf51822", "--json"])
        .args(["--gdb", &format!("127.0.0.1:{port}")])
        .args(["--backend", &be.url])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--authority-key")
        .arg(format!("file:{DATA}records/authority.pem"))
        .arg("--firmware")
        .arg(signed_app())
        .arg("--release-key")
        .arg(format!("{DATA}images/dev-key.pub.pem"))
        .args(["--slot", "0x8000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(station.stdout.take().unwrap()).lines();
    let mut station = Killed(station);

    // The station waits; then the first chip attaches.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut first = Killed(chip(port));
    let report: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (report["outcome"].as_str(), report["serial"].as_u64()),
        (Some("provisioned"), Some(1)),
        "{report}"
    );
    assert!(
        first.0.wait().unwrap().success(),
        "the first chip boots its application"
    );

    // A real line swaps chips with different hw_ids; QEMU's all share one, so
    // the station must first see the stub go away (it polls every 200 ms).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _second = Killed(chip(port));
    let report: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(report["outcome"], "failed", "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("active in the backend"),
        "{report}"
    );

    let summary: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(summary["summary"]["done"], 1);
    assert_eq!(summary["summary"]["failed"], 1);
    assert!(
        !station.0.wait().unwrap().success(),
        "a failed chip makes the run fail"
    );
}
