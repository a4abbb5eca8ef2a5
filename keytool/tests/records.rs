//! `keytool record sign|verify|dump` with file and HSM authorities, checked
//! by an independent verifier (Python `cryptography`).

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

const HW_ID: &str = "1234567800000003";

fn python_verifies(record: &std::path::Path, authority_pem: &std::path::Path) -> bool {
    let python = std::env::var("VENV_PYTHON").unwrap_or_else(|_| {
        panic!("VENV_PYTHON is not set: run the tests through scripts/test.sh")
    });
    let script = r#"
import sys, hashlib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
rec = open(sys.argv[1], "rb").read()
pub = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
assert len(rec) == 208 and rec[:4] == b"PROV"
spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
assert rec[112:144] == hashlib.sha256(spki).digest()
sig = encode_dss_signature(int.from_bytes(rec[144:176], "big"), int.from_bytes(rec[176:208], "big"))
pub.verify(sig, hashlib.sha256(rec[:144]).digest(), ec.ECDSA(Prehashed(ec.hashes.SHA256())))
"#;
    std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(record)
        .arg(authority_pem)
        .status()
        .unwrap()
        .success()
}

#[test]
fn records_signed_by_file_and_hsm_authorities_verify_everywhere() {
    let s = Scratch::new();
    let h = SoftHsm::new("factory");
    let hsm_key = "pkcs11:token=factory;object=authority-1";
    ok(h.keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k", hsm_key]));
    let hsm_pub = s.path("hsm-authority.pem");
    std::fs::write(
        &hsm_pub,
        ok(h.keytool()
            .args(["key", "getpub", "-e", "pem", "-k", hsm_key])),
    )
    .unwrap();
    let device = s.path("device.pem");
    ok(keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
        .arg(&device));

    for (authority, authority_pub) in [
        (s.key().display().to_string(), s.pubkey()),
        (hsm_key.to_owned(), hsm_pub.clone()),
    ] {
        let rec = s.path("rec.bin");
        ok(h.keytool()
            .args([
                "record",
                "sign",
                "-k",
                &authority,
                "--hw-id",
                HW_ID,
                "--serial",
                "17",
                "--product",
                "sensor-v2",
            ])
            .arg("--device-pubkey")
            .arg(&device)
            .arg("-o")
            .arg(&rec));
        assert!(
            python_verifies(&rec, &authority_pub),
            "independent verifier refused {authority}"
        );
        let v: serde_json::Value = serde_json::from_str(&ok(keytool()
            .args(["record", "verify", "--json", "--hw-id", HW_ID, "-a"])
            .arg(&authority_pub)
            .arg(&rec)))
        .unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["record"]["serial"], 17);
        assert_eq!(v["record"]["product"], "sensor-v2");

        let o = run(keytool()
            .args(["record", "verify", "--hw-id", "1234567800000004", "-a"])
            .arg(&authority_pub)
            .arg(&rec));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("wrong chip"), "{}", stderr(&o));
        let mut bytes = read(&rec);
        bytes[20] ^= 0x20;
        let bad = s.path("bad.bin");
        std::fs::write(&bad, &bytes).unwrap();
        let o = run(keytool()
            .args(["record", "verify", "-a"])
            .arg(&authority_pub)
            .arg(&bad));
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("bad signature"), "{}", stderr(&o));
    }
    // A record signed by one authority is refused by another.
    let rec = s.path("rec.bin");
    let o = run(keytool()
        .args(["record", "verify", "-a"])
        .arg(s.pubkey())
        .arg(&rec));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown authority"), "{}", stderr(&o));
}

#[test]
fn bad_record_input_is_one_line_and_writes_nothing() {
    let s = Scratch::new();
    let out = s.path("rec.bin");
    let attempt = |extra: &[&str]| {
        run(keytool()
            .args(["record", "sign", "-k"])
            .arg(s.key())
            .args(["--serial", "1", "-o"])
            .arg(&out)
            .args(extra))
    };
    let device = s.pubkey().display().to_string();
    for (extra, needle) in [
        (
            vec!["--hw-id", "12345678", "--device-pubkey", &device],
            "not a hardware ID",
        ),
        (
            vec!["--hw-id", HW_ID, "--device-pubkey", "missing.pem"],
            "missing.pem",
        ),
        (
            vec![
                "--hw-id",
                HW_ID,
                "--device-pubkey",
                &device,
                "--product",
                "much-too-long-product",
            ],
            "at most 16",
        ),
    ] {
        let o = attempt(&extra);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "expected {needle:?} in {}",
            stderr(&o)
        );
        assert!(!out.exists());
    }
    let junk = s.path("junk.bin");
    std::fs::write(&junk, [0u8; 100]).unwrap();
    let o = run(keytool().args(["record", "dump"]).arg(&junk));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}
