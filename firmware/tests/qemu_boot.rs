//! The verifiers on an emulated Cortex-M4. The boot stage itself, with signed
//! images, records and upgrades on QEMU's nRF51, is tested with the real
//! signing tools in `keytool/tests/secure_boot_qemu.rs` and
//! `factory/tests/upgrade_power_cut_qemu.rs`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The verifiers as compiled for Cortex-M4 (thumbv7em, the nRF52 series),
/// run on QEMU's Cortex-M4 board: every Wycheproof P-256/SHA-256 vector (raw
/// and DER), Ed25519 vector (RFC 8032's among them) and P-384/SHA-384 vector,
/// and the record known answer through the public API.
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
    assert!(vectors > 1300, "{line}");
    assert!(line.ends_with("failed=0"), "{line}");
    for (kind, at_least) in [("ED25519", 150), ("P384", 500)] {
        let line = console
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} line:\n{console}"));
        let n: u32 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("vectors="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(n >= at_least && line.ends_with("failed=0"), "{line}");
    }

    // The device signer's answer, made on the Cortex-M4, verifies with OpenSSL
    // and is the host's (RFC 6979 is deterministic).
    let sig_hex = console
        .lines()
        .find_map(|l| l.strip_prefix("AUTHSIG "))
        .unwrap_or_else(|| panic!("no AUTHSIG line:\n{console}"));
    let sig: [u8; 64] = hex::decode(sig_hex).unwrap().try_into().unwrap();
    let hw_id = firmware::record::HwId::from_deviceid(3, 0x1234_5678);
    let host = firmware::auth::sign_auth(&[0x11; 32], &[0x22; 32], hw_id, 7).unwrap();
    assert_eq!(sig, host);
    openssl_verifies(&[0x11; 32], &[0x22; 32], hw_id, 7, &sig);
}

/// `openssl dgst -sha256 -verify` on the device-authentication message.
fn openssl_verifies(
    scalar: &[u8; 32],
    nonce: &[u8; 32],
    hw_id: firmware::record::HwId,
    serial: u32,
    sig: &[u8; 64],
) {
    use p256::pkcs8::EncodePublicKey;
    let dir = std::env::temp_dir().join(format!("authsig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let public = p256::SecretKey::from_slice(scalar).unwrap().public_key();
    let pem = public
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    std::fs::write(dir.join("device.pub.pem"), pem).unwrap();
    let mut msg = firmware::auth::AUTH_CONTEXT.to_vec();
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(&hw_id.0);
    msg.extend_from_slice(&serial.to_le_bytes());
    std::fs::write(dir.join("msg.bin"), &msg).unwrap();
    let der = p256::ecdsa::Signature::from_slice(sig).unwrap().to_der();
    std::fs::write(dir.join("sig.der"), der.as_bytes()).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(dir.join("device.pub.pem"))
        .arg("-signature")
        .arg(dir.join("sig.der"))
        .arg(dir.join("msg.bin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    std::fs::remove_dir_all(&dir).unwrap();
}
