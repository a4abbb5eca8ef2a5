//! The verifiers on an emulated Cortex-M4. The boot stage itself, with signed
//! images, records and upgrades on QEMU's nRF51, is tested with the real
//! signing tools in `keytool/tests/secure_boot_qemu.rs` and
//! `factory/tests/upgrade_power_cut_qemu.rs`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

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
