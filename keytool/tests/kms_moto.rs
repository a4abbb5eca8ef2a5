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

/// A production policy checks a KMS key's origin on use: key material
/// imported into KMS (`Origin=EXTERNAL`) may exist elsewhere, and is refused;
/// a key KMS generated signs.
#[test]
fn imported_kms_key_material_is_refused_for_a_production_role() {
    let moto = Moto::start();
    let own = moto.key("authority");
    generate_key(moto.keytool(), &own);
    // An EXTERNAL-origin key, made the way an operator would (boto3, in the
    // project's venv next to moto).
    let python = std::env::var("VENV_PYTHON").expect("VENV_PYTHON: run through scripts/test.sh");
    let endpoint = own.split("endpoint=").nth(1).unwrap().to_owned();
    let made = std::process::Command::new(python)
        .envs(signer::testing::MotoServer::env())
        .args(["-c", &format!(
            "import boto3\n\
             kms = boto3.client('kms', endpoint_url='{endpoint}', region_name='eu-north-1')\n\
             k = kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY', Origin='EXTERNAL')\n\
             kms.create_alias(AliasName='alias/imported', TargetKeyId=k['KeyMetadata']['KeyId'])\n"
        )])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let imported = moto.key("imported");

    let s = Scratch::new();
    let fp = |key: &str| {
        let raw = run(moto
            .keytool()
            .args(["key", "getpub", "-e", "raw", "-k", key]));
        assert!(raw.status.success(), "{}", stderr(&raw));
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw.stdout)))
    };
    std::fs::write(s.path("alice.pub.pem"), std::fs::read(s.pubkey()).unwrap()).unwrap();
    ok(keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
        .arg(s.path("bob.pem")));
    let bob = ok(keytool()
        .args(["key", "getpub", "-e", "pem", "-k"])
        .arg(s.path("bob.pem")));
    std::fs::write(s.path("bob.pub.pem"), bob).unwrap();
    let policy = format!(
        "name = \"kms\"\nproduction = true\nstation_key = \"{own}\"\n\
         station_key_fingerprint = \"{}\"\n\n\
         [keys.own]\nuri = \"{own}\"\nrole = \"authority\"\nfingerprint = \"{}\"\n\n\
         [keys.imported]\nuri = \"{imported}\"\nrole = \"release\"\nfingerprint = \"{}\"\n\n\
         [officers]\nalice = {{ public_key = \"alice.pub.pem\" }}\n\
         bob = {{ public_key = \"bob.pub.pem\" }}\n\n\
         [products.sensor]\nslot_size = 0x10000\nrelease_keys = [\"imported\"]\n\
         officers = [\"alice\", \"bob\"]\nquorum = 1\nrollback_quorum = 2\n",
        fp(&own),
        fp(&own),
        fp(&imported)
    );
    let policy_path = s.path("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    ok(moto
        .keytool()
        .env("KEYTOOL_POLICY", &policy_path)
        .args(["audit", "init"]));
    let sign = |key: &str| {
        run(moto
            .keytool()
            .env("KEYTOOL_POLICY", &policy_path)
            .args(["record", "sign", "-k", key, "--hw-id", "1234567800000003"])
            .args(["--serial", "1", "--device-pubkey"])
            .arg(s.pubkey())
            .arg("-o")
            .arg(s.path("rec.bin")))
    };
    let o = sign(&own);
    assert!(o.status.success(), "{}", stderr(&o));
    // The imported key is a release key here; as an authority it is refused
    // for its role and for where its material came from.
    let o = sign(&imported);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Origin=EXTERNAL"), "{}", stderr(&o));
}

/// Every key type KMS has (RSA_2048, RSA_3072, ECC_NIST_P256, ECC_NIST_P384,
/// ECC_NIST_EDWARDS25519) generates, signs an image imgtool verifies, and
/// is listed with its type. Ed25519 signs the image's SHA-256 or SHA-512 as
/// a raw message; `--pure` over an image above KMS's 4 KiB raw limit is
/// refused with that reason, and a pure image below it is signed.
#[test]
fn every_key_type_signs_from_kms() {
    let moto = Moto::start();
    let s = Scratch::new();
    let big = s.firmware("big.bin", 32 * 1024, 0);
    let small = s.firmware("small.bin", 1024, 0);
    for (kind, extra) in [
        ("rsa-2048", &[][..]),
        ("rsa-3072", &[][..]),
        ("ecdsa-p384", &[][..]),
        ("ed25519", &[][..]),
        ("ed25519", &["--sha", "512"][..]),
    ] {
        let what = format!("{kind} {extra:?}");
        let key = moto.key(&format!("types-{kind}"));
        let pem = s.path(&format!("{kind}.pub.pem"));
        if !pem.exists() {
            let made: serde_json::Value = serde_json::from_str(&ok(moto
                .keytool()
                .args(["key", "generate", "--json", "-t", kind, "-k", &key])))
            .unwrap();
            assert_eq!(made["key_type"], kind);
            std::fs::write(
                &pem,
                ok(moto
                    .keytool()
                    .args(["key", "getpub", "-e", "pem", "-k", &key])),
            )
            .unwrap();
        }
        let out = s.path("kms-signed.bin");
        ok(moto
            .keytool()
            .args(["image", "sign", "-k", &key])
            .args(SMALL_IMAGE)
            .args(extra)
            .arg(&big)
            .arg(&out));
        let said = ok(imgtool().args(["verify", "-k"]).arg(&pem).arg(&out));
        assert!(said.contains("correctly validated"), "{what}: {said}");
    }
    let ed = moto.key("types-ed25519");
    let out = s.path("pure.bin");
    let refused = run(moto
        .keytool()
        .args(["image", "sign", "--pure", "-k", &ed])
        .args(SMALL_IMAGE)
        .arg(&big)
        .arg(&out));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("KMS signs at most 4096 bytes of raw message"),
        "{}",
        stderr(&refused)
    );
    assert!(!out.exists());
    ok(moto
        .keytool()
        .args(["image", "sign", "--pure", "-k", &ed])
        .args(SMALL_IMAGE)
        .arg(&small)
        .arg(&out));
    let said = ok(imgtool()
        .args(["verify", "-k"])
        .arg(s.path("ed25519.pub.pem"))
        .arg(&out));
    assert!(said.contains("correctly validated"), "pure: {said}");
    let listed = ok(moto.keytool().args(["key", "list", "-k", &ed]));
    for kind in ["rsa-2048", "rsa-3072", "ecdsa-p384", "ed25519"] {
        assert!(listed.contains(kind), "{kind} in {listed}");
    }
}

/// The station's encryption key in KMS: a P-256 `KEY_AGREEMENT` key. An
/// image is encrypted for it (`-E awskms:…`), `image wrap` rewraps the AES key
/// for a device through `DeriveSharedSecret`, and the device alone decrypts
/// the copy. The key cannot sign; a signing key is refused as an encryption
/// key, with the reason.
#[test]
fn a_kms_key_agreement_key_wraps_copies_for_devices() {
    let moto = Moto::start();
    let s = Scratch::new();
    let station = moto.key("station-enc");
    let made: serde_json::Value = serde_json::from_str(&ok(moto.keytool().args([
        "key",
        "generate",
        "--json",
        "-t",
        "ecdh-p256",
        "-k",
        &station,
    ])))
    .unwrap();
    assert_eq!(made["key_type"], "ecdh-p256");
    let fw = s.firmware("fw.bin", 8 * 1024, 0);
    let enc = s.path("fw.enc.bin");
    ok(moto
        .keytool()
        .args(["image", "sign", "-k"])
        .arg(s.key())
        .args(SMALL_IMAGE)
        .args(["-E", &station])
        .arg(&fw)
        .arg(&enc));
    // The station's key opens the image it was made for, through KMS.
    ok(moto
        .keytool()
        .args(["image", "verify", "-k"])
        .arg(s.pubkey())
        .args(["--enc-key", &station])
        .arg(&enc));
    let device = s.path("device.pem");
    ok(keytool()
        .args(["key", "generate", "-t", "ecdh-p256", "-k"])
        .arg(&device));
    let copy = s.path("copy.bin");
    ok(moto
        .keytool()
        .args(["image", "wrap", "--image"])
        .arg(&enc)
        .args(["--enc-key", &station, "--device-key"])
        .arg(&device)
        .arg("-o")
        .arg(&copy));
    let said = ok(keytool()
        .args(["image", "verify", "--json", "-k"])
        .arg(s.pubkey())
        .arg("--enc-key")
        .arg(&device)
        .arg(&copy));
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(said["encryption"]["scheme"], "ecies-p256", "{said}");
    // The copy is the device's: the station's key no longer opens it.
    let refused = run(moto
        .keytool()
        .args(["image", "verify", "-k"])
        .arg(s.pubkey())
        .args(["--enc-key", &station])
        .arg(&copy));
    assert!(!refused.status.success());
    // A key-agreement key does not sign.
    let out = s.path("signed-by-enc.bin");
    let o = run(moto
        .keytool()
        .args(["image", "sign", "-k", &station])
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(&out));
    assert!(!o.status.success() && !out.exists(), "{}", stderr(&o));
    // A signing key is not an encryption key.
    let signing = moto.key("signing-p256");
    ok(moto
        .keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k", &signing]));
    let o = run(moto
        .keytool()
        .args(["image", "wrap", "--image"])
        .arg(&enc)
        .args(["--enc-key", &signing, "--device-key"])
        .arg(&device)
        .arg("-o")
        .arg(s.path("never.bin")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("KEY_AGREEMENT"), "{}", stderr(&o));
    assert!(!s.path("never.bin").exists());
}
