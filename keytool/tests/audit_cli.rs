//! `keytool audit show` and `keytool audit verify` on a real log: intact,
//! then edited (exit 1, the first bad line named, in text and JSON).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::keytool;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

#[test]
fn show_and_verify_an_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    let station = signer::open_signer(&key).unwrap();
    let mut audit = policies::audit::AuditLog::open(&log, None).unwrap();
    for i in 0..3 {
        audit
            .append(
                "officer-a",
                "image.sign",
                vec![format!("sha256:{i:064x}")],
                "ok",
            )
            .unwrap();
    }
    audit.checkpoint("station", station.as_ref()).unwrap();

    let pubkey = format!("{DATA}records/authority.pub.pem");
    let out = keytool()
        .args(["audit", "verify", "-k", &pubkey, "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 4 entries, 1 checkpoints"));

    let out = keytool()
        .args(["audit", "show", "--json", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    let out = keytool()
        .args(["audit", "show", "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("image.sign"));

    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("officer-a", "officer-b", 1);
    std::fs::write(&log, text).unwrap();
    let out = keytool()
        .args(["audit", "verify", "-k", &pubkey, "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    let out = keytool()
        .args(["audit", "verify", "--json", "-k", &pubkey, "--log"])
        .arg(&log)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["first_bad_line"].as_u64()),
        (Some(false), Some(2))
    );
}
