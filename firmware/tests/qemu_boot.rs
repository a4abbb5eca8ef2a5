//! The boot stage on QEMU's nRF51 (`-M microbit`, FICR DEVICEID reads
//! 1234567800000003): a valid record boots as PROVISIONED with its serial; a
//! tampered record, a record for another chip, an unknown authority and an
//! erased partition each boot as NOT PROVISIONED with the reason.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn boot(authority: &str, record: Option<&std::path::Path>) -> (i32, String) {
    let mut cmd = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"));
    cmd.arg("--authority")
        .arg(format!("{ROOT}/tests/data/records/{authority}"));
    if let Some(r) = record {
        cmd.arg("--record").arg(r);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run boot.sh: {e}"));
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty() || out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), console)
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{ROOT}/tests/data/records/{name}"))
}

// One test, run in sequence: each case rebuilds the stage only when the
// compiled-in authority changes, and cargo builds one at a time anyway.
#[test]
fn boot_stage_on_emulated_nrf51() {
    let (rc, out) = boot("authority.pub.pem", Some(&data("qemu-microbit.bin")));
    assert_eq!(
        (rc, out.trim()),
        (
            0,
            "PROVISIONED serial=1 hw_id=1234567800000003 product=microbit-demo"
        )
    );

    let dir = std::env::temp_dir().join(format!("qemu-boot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(data("qemu-microbit.bin")).unwrap();
    bytes[16] ^= 0x01; // serial 1 -> 0: the signature no longer covers it
    let tampered = dir.join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let (rc, out) = boot("authority.pub.pem", Some(&tampered));
    assert_eq!(
        (rc, out.trim()),
        (
            1,
            "NOT PROVISIONED reason=bad-signature hw_id=1234567800000003"
        )
    );

    let (rc, out) = boot("authority.pub.pem", Some(&data("max-serial.bin")));
    assert_eq!(
        (rc, out.trim()),
        (
            1,
            "NOT PROVISIONED reason=wrong-chip hw_id=1234567800000003"
        )
    );

    let (rc, out) = boot("authority.pub.pem", None);
    assert_eq!(
        (rc, out.trim()),
        (1, "NOT PROVISIONED reason=erased hw_id=1234567800000003")
    );

    let (rc, out) = boot("device.pub.pem", Some(&data("qemu-microbit.bin")));
    assert_eq!(
        (rc, out.trim()),
        (
            1,
            "NOT PROVISIONED reason=unknown-authority hw_id=1234567800000003"
        )
    );
}

/// The verifiers as compiled for Cortex-M4 (thumbv7em, the nRF52 series),
/// run on QEMU's Cortex-M4 board: every Wycheproof P-256/SHA-256 vector (raw
/// and DER) and the record known answer through the public API.
#[test]
fn verifier_self_test_on_emulated_cortex_m4() {
    let out = Command::new(format!("{ROOT}/firmware/qemu/selftest.sh"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run selftest.sh: {e}"));
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{console}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = console
        .lines()
        .find(|l| l.starts_with("SELFTEST"))
        .unwrap_or_else(|| panic!("no SELFTEST line:\n{console}"));
    let vectors: u32 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vectors="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(vectors > 700, "{line}");
    assert!(line.ends_with("failed=0"), "{line}");
}
