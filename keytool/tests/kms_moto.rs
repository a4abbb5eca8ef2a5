//! Keys in AWS KMS, against moto_server started by the test itself through
//! the project's launcher (scripts/moto_server.py), on 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn digest_signatures_from_the_launcher_verify_with_getpublickey() {
    let moto = Moto::start();
    let key = moto.key("release");
    let made = generate_key(moto.keytool(), &key);
    let s = Scratch::new();
    let pem = s.path("kms.pub.pem");
    std::fs::write(
        &pem,
        ok(moto
            .keytool()
            .args(["key", "getpub", "-e", "pem", "-k", &key])),
    )
    .unwrap();

    // An image is far above KMS's 4 KiB RAW limit: this only works with DIGEST.
    let fw = s.firmware("fw.bin", 64 * 1024, 0);
    let out = s.path("signed.bin");
    ok(moto
        .keytool()
        .args([
            "image",
            "sign",
            "-k",
            &key,
            "-v",
            "2.0.0",
            "-H",
            "0x200",
            "--pad-header",
            "-S",
            "0x20000",
        ])
        .arg(&fw)
        .arg(&out));
    // The signature KMS made over the digest verifies with GetPublicKey's key:
    // what AWS documents, and what plain moto 5.2 gets wrong.
    ok(imgtool().arg("verify").arg("-k").arg(&pem).arg(&out));
    let listed: serde_json::Value = serde_json::from_str(&ok(moto
        .keytool()
        .args(["key", "list", "--json", "-k", &key])))
    .unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key_id"] == made["key_id"]));

    let again = run(moto
        .keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k", &key]));
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
}

#[test]
fn kms_failures_name_the_key_and_the_cause() {
    let moto = Moto::start();
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 1000, 0);
    let out = s.path("out.bin");
    let sign = |key: &str| {
        let _ = std::fs::remove_file(&out);
        run(moto
            .keytool()
            .args(["image", "sign", "-k", key])
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out))
    };
    let unknown = moto.key("nosuch");
    let o = sign(&unknown);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("alias/nosuch") && stderr(&o).contains("NotFoundException"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    let down = "awskms:///alias/x?region=eu-north-1&endpoint=http://127.0.0.1:9";
    let o = sign(down);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("alias/x") && stderr(&o).contains("GetPublicKey"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
