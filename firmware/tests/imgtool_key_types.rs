//! Images imgtool 2.5 signs with ECDSA P-384 and Ed25519 keys (hashed with
//! SHA-256 or SHA-512, and `--pure`) verify with the firmware crate's image
//! verifier (features `p384`, `ed25519`), and are refused when their payload
//! changes (with or without a recomputed hash), when the key is another one,
//! or when only P-256 keys are given.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use firmware::image::{tlv, AnyImageKey, HashAlg, Image, ImageError};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn imgtool() -> Command {
    Command::new(std::env::var_os("IMGTOOL").unwrap_or_else(|| {
        panic!("IMGTOOL is not set: run the tests through scripts/test.sh, which installs imgtool 2.5 in .venv")
    }))
}

/// A new key of `kind` (imgtool's `-t`) and its public half as the verifier
/// takes it (DER from openssl).
fn keygen(dir: &Path, name: &str, kind: &str) -> (std::path::PathBuf, AnyImageKey) {
    let pem = dir.join(format!("{name}.pem"));
    run(imgtool().args(["keygen", "-t", kind, "-k"]).arg(&pem));
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&pem));
    (pem, AnyImageKey::from_spki_der(&der).unwrap())
}

fn sign(dir: &Path, key: &Path, extra: &[&str]) -> Vec<u8> {
    let payload = dir.join("payload.bin");
    let body: Vec<u8> = (0..6000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&payload, body).unwrap();
    let out = dir.join("signed.bin");
    run(imgtool()
        .args([
            "sign",
            "--header-size",
            "0x200",
            "--pad-header",
            "--align",
            "4",
        ])
        .args(["--version", "1.2.3+4"])
        .args(["--slot-size", "0x20000", "--security-counter", "9", "--key"])
        .arg(key)
        .args(extra)
        .arg(&payload)
        .arg(&out));
    run(imgtool().args(["verify", "--key"]).arg(key).arg(&out));
    std::fs::read(out).unwrap()
}

/// `bytes` with one payload byte changed and, if `rehash`, the hash TLV
/// made to match again (so only the signature can tell).
fn tampered(bytes: &[u8], rehash: bool) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let image = Image::parse(bytes).unwrap();
    b[image.payload_range().start + 100] ^= 0x40;
    if rehash {
        let (alg, offset) = {
            let t = image
                .tlvs()
                .find(|t| !t.protected && HashAlg::from_tlv(t.kind).is_some())
                .unwrap();
            (HashAlg::from_tlv(t.kind).unwrap(), t.offset + 4)
        };
        let region = Image::parse(&b).unwrap().hashed_region().to_vec();
        let digest = alg.hash(&[&region]).unwrap();
        b[offset..offset + alg.digest_len()].copy_from_slice(digest.as_bytes());
    }
    b
}

#[test]
fn imgtool_images_of_every_new_key_type_verify_and_tampering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], HashAlg, bool); 4] = [
        ("ecdsa-p384", &[], HashAlg::Sha384, false),
        ("ed25519", &[], HashAlg::Sha256, false),
        ("ed25519", &["--sha", "512"], HashAlg::Sha512, false),
        ("ed25519", &["--pure"], HashAlg::Sha512, true),
    ];
    let (_, p256) = keygen(dir.path(), "p256", "ecdsa-p256");
    for (kind, extra, alg, pure) in cases {
        let what = format!("{kind} {extra:?}");
        let (pem, key) = keygen(dir.path(), "key", kind);
        let (_, other) = keygen(dir.path(), "other", kind);
        let bytes = sign(dir.path(), &pem, extra);
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(
            image.find(tlv::SIG_PURE, false).is_some(),
            pure,
            "{what}: SIG_PURE"
        );
        let v = image
            .verify(&[other.clone(), key.clone()], None)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((v.signed_by, v.digest.alg()), (Some(1), alg), "{what}");
        assert_eq!(v.security_counter, Some(9), "{what}");
        assert_eq!(
            Image::parse(&bytes)
                .unwrap()
                .verify(std::slice::from_ref(&other), None),
            Err(ImageError::KeyMismatch),
            "{what}: another key"
        );
        assert_eq!(
            Image::parse(&bytes)
                .unwrap()
                .verify(std::slice::from_ref(&p256), None)
                .map(|v| v.signed_by),
            Err(ImageError::KeyMismatch),
            "{what}: a P-256 key"
        );
        let changed = tampered(&bytes, false);
        assert_eq!(
            Image::parse(&changed)
                .unwrap()
                .verify(std::slice::from_ref(&key), None),
            Err(ImageError::HashMismatch),
            "{what}: payload changed"
        );
        let rehashed = tampered(&bytes, true);
        assert!(
            matches!(
                Image::parse(&rehashed)
                    .unwrap()
                    .verify(std::slice::from_ref(&key), None),
                Err(ImageError::BadSignature(_))
            ),
            "{what}: payload changed and the hash made to match"
        );
    }
}
