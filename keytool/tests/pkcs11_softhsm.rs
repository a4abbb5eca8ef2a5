//! Keys in a real PKCS#11 token (SoftHSM2), checked with an independent
//! client (OpenSC's pkcs11-tool) and the imgtool oracle.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use firmware::P256PublicKey;

const KEY: &str = "pkcs11:token=release;object=fw-2026";

fn generate(h: &SoftHsm, uri: &str) -> serde_json::Value {
    generate_key(h.keytool(), uri)
}

#[test]
fn generated_keys_are_sensitive_never_extractable_and_sign_only() {
    let h = SoftHsm::new("release");
    let made = generate(&h, KEY);
    let objects = ok(h.pkcs11_tool().args([
        "--login",
        "--pin",
        USER_PIN,
        "--list-objects",
        "--type",
        "privkey",
    ]));
    assert!(objects.contains("label:      fw-2026"), "{objects}");
    let access = objects
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))
        .unwrap();
    for needed in [
        "sensitive",
        "always sensitive",
        "never extractable",
        "local",
    ] {
        assert!(access.contains(needed), "{access}");
    }
    let usage = objects
        .lines()
        .find(|l| l.trim_start().starts_with("Usage:"))
        .unwrap();
    assert_eq!(usage.split(':').nth(1).unwrap().trim(), "sign", "{usage}");

    // list shows it with the same key id that getpubhash computes.
    let listed: serde_json::Value = serde_json::from_str(&ok(h.keytool().args([
        "key",
        "list",
        "--json",
        "-k",
        "pkcs11:token=release",
    ])))
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["key_id"], made["key_id"]);
    assert_eq!(listed[0]["label"], "fw-2026");
    let hash = h
        .keytool()
        .args(["key", "getpubhash", "-e", "raw", "-k", KEY])
        .output()
        .unwrap();
    assert_eq!(hex::encode(hash.stdout), made["key_id"].as_str().unwrap());

    // The same label again is refused, and the key is still the same.
    let again = run(h
        .keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k", KEY]));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn images_signed_in_the_hsm_pass_imgtool() {
    let h = SoftHsm::new("release");
    generate(&h, KEY);
    let s = Scratch::new();
    let pem = ok(h.keytool().args(["key", "getpub", "-e", "pem", "-k", KEY]));
    let pub_pem = s.path("hsm.pub.pem");
    std::fs::write(&pub_pem, pem).unwrap();
    let fw = s.firmware("fw.bin", 20_000, 0);
    for (name, uri) in [
        ("env-pin.bin", KEY.to_owned()),
        (
            "uri-pin.hex",
            format!("{KEY}?module-path={}&pin-source=env:HSM_PIN", h.module),
        ),
    ] {
        let out = s.path(name);
        ok(h.keytool()
            .env_remove("PKCS11_MODULE")
            .env("PKCS11_MODULE", &h.module)
            .env("HSM_PIN", USER_PIN)
            .args([
                "image",
                "sign",
                "-k",
                &uri,
                "-v",
                "3.1.4",
                "-H",
                "0x200",
                "--pad-header",
                "-S",
                "0x10000",
                "-s",
                "auto",
                "-x",
                "0",
            ])
            .arg(&fw)
            .arg(&out));
        let v = ok(imgtool().arg("verify").arg("-k").arg(&pub_pem).arg(&out));
        assert!(v.contains("Image was correctly validated"), "{v}");
        ok(keytool()
            .args(["image", "verify", "-k"])
            .arg(&pub_pem)
            .arg(&out));
    }
}

#[test]
fn pkcs11_tool_signatures_verify_with_our_verifier() {
    let h = SoftHsm::new("release");
    generate(&h, KEY);
    let s = Scratch::new();
    let digest = [0x42u8; 32];
    let input = s.path("digest.bin");
    std::fs::write(&input, digest).unwrap();
    let sig = s.path("sig.bin");
    ok(h.pkcs11_tool()
        .args([
            "--login",
            "--pin",
            USER_PIN,
            "--sign",
            "--mechanism",
            "ECDSA",
            "--label",
            "fw-2026",
            "--input-file",
        ])
        .arg(&input)
        .arg("--output-file")
        .arg(&sig));
    let raw: [u8; 64] = read(&sig).try_into().unwrap();
    let der = ok(h.keytool().args(["key", "getpub", "-e", "pem", "-k", KEY]));
    let spki = pem_body(&der);
    let pk = P256PublicKey::from_spki_der(&spki).unwrap();
    pk.verify_digest_raw(&digest, &raw).unwrap();
    let mut bad = raw;
    bad[10] ^= 1;
    assert!(pk.verify_digest_raw(&digest, &bad).is_err());
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn hsm_failures_are_one_line_and_write_nothing() {
    let h = SoftHsm::new("release");
    generate(&h, KEY);
    ok(h.pkcs11_tool().args([
        "--login",
        "--pin",
        USER_PIN,
        "--keypairgen",
        "--key-type",
        "EC:secp521r1",
        "--label",
        "p521",
        "--id",
        "0521",
    ]));
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 1000, 0);
    let out = s.path("out.bin");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case<'_>; 6] = [
        (KEY, vec![("PKCS11_PIN", "0000")], "login failed"),
        (
            KEY,
            vec![("PKCS11_MODULE", "/nonexistent/libpkcs11.so")],
            "does not exist",
        ),
        (
            "pkcs11:token=nosuch;object=fw-2026",
            vec![],
            "no such token (tokens present: release)",
        ),
        (
            "pkcs11:token=release;object=nosuch",
            vec![],
            "no such private key",
        ),
        (
            "pkcs11:token=release;object=p521",
            vec![],
            "EC key on another curve",
        ),
        (
            "pkcs11:token=release;colour=red",
            vec![],
            "colour: unknown PKCS#11 URI attribute",
        ),
    ];
    for (uri, env, needle) in cases {
        let mut cmd = h.keytool();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = run(cmd
            .args(["image", "sign", "-k", uri])
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out));
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{uri}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(needle),
            "{uri}: expected {needle:?} in {err:?}"
        );
        assert!(
            !err.contains(USER_PIN) && !err.contains("0000"),
            "no PIN in errors: {err}"
        );
        assert!(!out.exists(), "{uri}: no output on failure");
    }
    // No PIN anywhere and no terminal: refused, not hung.
    let o = run(h.keytool().env_remove("PKCS11_PIN").args([
        "key",
        "list",
        "-k",
        "pkcs11:token=release",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no PIN"), "{}", stderr(&o));
}

/// Every key type generated inside SoftHSM2 (`CKM_RSA_PKCS_KEY_PAIR_GEN`,
/// `CKM_EC_KEY_PAIR_GEN` on P-256 and P-384, `CKM_EC_EDWARDS_KEY_PAIR_GEN`)
/// signs images imgtool verifies (through `image sign` and the drop-in
/// `imgtool sign`), with `--sha 512` and `--pure` for Ed25519, and is listed
/// with its type.
#[test]
fn every_key_type_signs_from_the_token() {
    let h = SoftHsm::new("types");
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 3000, 0);
    for (kind, extra) in [
        ("rsa-2048", &[][..]),
        ("rsa-3072", &[][..]),
        ("ecdsa-p256", &[][..]),
        ("ecdsa-p384", &[][..]),
        ("ed25519", &[][..]),
        ("ed25519", &["--sha", "512"][..]),
        ("ed25519", &["--pure"][..]),
    ] {
        let what = format!("{kind} {extra:?}");
        let uri = format!("pkcs11:token=types;object={kind}");
        let pem = s.path(&format!("{kind}.pub.pem"));
        if !pem.exists() {
            let made: serde_json::Value = serde_json::from_str(&ok(h
                .keytool()
                .args(["key", "generate", "--json", "-t", kind, "-k", &uri])))
            .unwrap();
            assert_eq!(made["key_type"], kind);
            std::fs::write(
                &pem,
                ok(h.keytool().args(["key", "getpub", "-e", "pem", "-k", &uri])),
            )
            .unwrap();
        }
        let out = s.path("hsm-signed.bin");
        ok(h.keytool()
            .args(["image", "sign", "-k", &uri])
            .args(SMALL_IMAGE)
            .args(extra)
            .arg(&fw)
            .arg(&out));
        let said = ok(imgtool().args(["verify", "-k"]).arg(&pem).arg(&out));
        assert!(said.contains("correctly validated"), "{what}: {said}");
        // And through the drop-in personality, as a build system calls it.
        let dropin = s.path("bin/imgtool");
        if !dropin.exists() {
            std::fs::create_dir_all(s.path("bin")).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keytool"), &dropin).unwrap();
        }
        let out2 = s.path("hsm-dropin.bin");
        ok(h.cmd(&dropin)
            .args(["sign", "-k", &uri])
            .args(SMALL_IMAGE)
            .args(extra)
            .arg(&fw)
            .arg(&out2));
        let said = ok(imgtool().args(["verify", "-k"]).arg(&pem).arg(&out2));
        assert!(
            said.contains("correctly validated"),
            "{what} (imgtool personality): {said}"
        );
    }
    let listed = ok(h
        .keytool()
        .args(["key", "list", "-k", "pkcs11:token=types"]));
    for kind in [
        "rsa-2048",
        "rsa-3072",
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
    ] {
        assert!(listed.contains(&format!("{kind} ")), "{kind} in {listed}");
    }
}

/// The station's image encryption key in the token (docs/encryption.md): a
/// P-256 key-agreement key (`CKA_DERIVE`, cannot sign). An image encrypted
/// for it is re-wrapped for a device with ECDH inside the token; the AES
/// key never sits in a file.
#[test]
fn the_station_encryption_key_lives_in_the_token() {
    let h = SoftHsm::new("enc");
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 3000, 0);
    let station = "pkcs11:token=enc;object=station-enc";
    let made: serde_json::Value = serde_json::from_str(&ok(h.keytool().args([
        "key",
        "generate",
        "--json",
        "-t",
        "ecdh-p256",
        "-k",
        station,
    ])))
    .unwrap();
    assert_eq!(made["key_type"], "ecdh-p256");
    let release = s.path("release.pem");
    ok(h.keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
        .arg(&release));
    let signed = s.path("signed.enc.bin");
    ok(h.keytool()
        .args(["image", "sign", "-k"])
        .arg(&release)
        .args(["-E", station])
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(&signed));
    // The token decrypts it (ECDH in the token) for verification.
    let v = ok(h
        .keytool()
        .args(["image", "verify", "-k"])
        .arg(&release)
        .args(["--enc-key", station])
        .arg(&signed));
    assert!(v.contains("correctly validated"), "{v}");
    // A device's copy: the device decrypts it with its own key.
    let device = s.path("device.pem");
    ok(h.keytool()
        .args(["key", "generate", "-t", "ecdh-p256", "-k"])
        .arg(&device));
    let copy = s.path("device.bin");
    ok(h.keytool()
        .args(["image", "wrap", "--image"])
        .arg(&signed)
        .args(["--enc-key", station, "--device-key"])
        .arg(&device)
        .arg("-o")
        .arg(&copy));
    let v = ok(h
        .keytool()
        .args(["image", "verify", "-k"])
        .arg(&release)
        .arg("--enc-key")
        .arg(&device)
        .arg(&copy));
    assert!(v.contains("correctly validated"), "{v}");
    // The key-agreement key cannot sign.
    let refused = run(h
        .keytool()
        .args(["image", "sign", "-k", station])
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(s.path("x.bin")));
    assert_ne!(refused.status.code(), Some(0));
    assert!(!s.path("x.bin").exists());
}
