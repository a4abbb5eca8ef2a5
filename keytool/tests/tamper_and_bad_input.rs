//! Every single-bit flip of a signed image is refused by `keytool image
//! verify`, and bad input ends with one clear line, imgtool's exit codes, and
//! no output file.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use firmware::image::Image;

#[test]
fn every_bit_flip_in_hashed_region_or_signature_is_rejected() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 48, 0);
    let img = s.path("signed.bin");
    s.sign(
        &[
            "-v",
            "1.0.0+1",
            "-H",
            "32",
            "--pad-header",
            "-S",
            "0x1000",
            "-s",
            "3",
        ],
        &fw,
        &img,
    );
    let good = read(&img);
    ok(keytool()
        .args(["image", "verify", "-k"])
        .arg(s.pubkey())
        .arg(&img));

    let image = Image::parse(&good).unwrap();
    let hashed = 0..image.hashed_region().len();
    let sig = image.find(firmware::image::tlv::ECDSASIG, false).unwrap();
    let sig_value = sig.offset + 4..sig.offset + 4 + sig.value.len();
    let bad = s.path("flipped.bin");
    let mut checked = 0;
    for byte in hashed.chain(sig_value) {
        for bit in 0..8 {
            let mut b = good.clone();
            b[byte] ^= 1 << bit;
            std::fs::write(&bad, &b).unwrap();
            let out = run(keytool()
                .args(["image", "verify", "-k"])
                .arg(s.pubkey())
                .arg(&bad));
            assert_eq!(
                out.status.code(),
                Some(1),
                "flip of bit {bit} in byte {byte:#x} was not rejected"
            );
            assert_eq!(
                stderr(&out).lines().count(),
                1,
                "one line: {}",
                stderr(&out)
            );
            checked += 1;
        }
    }
    assert!(checked > 8 * (32 + 48 + 8 + 64));
}

fn sign(
    s: &Scratch,
    key: &std::path::Path,
    extra: &[&str],
    input: &std::path::Path,
) -> (std::process::Output, std::path::PathBuf) {
    let out = s.path("out.bin");
    let _ = std::fs::remove_file(&out);
    let o = run(keytool()
        .args(["image", "sign", "-k"])
        .arg(key)
        .args(["-H", "0x200", "--pad-header", "-S", "0x4000"])
        .args(extra)
        .arg(input)
        .arg(&out));
    (o, out)
}

fn assert_refused(o: &std::process::Output, out: &std::path::Path, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "no output may be written on failure");
}

#[test]
fn bad_sign_input_is_one_line_and_writes_nothing() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 4000, 0);
    let big = s.firmware("big.bin", 0x4000, 0);

    let (o, out) = sign(&s, &s.key(), &["-v", "1.2.x"], &fw);
    assert_refused(&o, &out, 2, "invalid version");
    let (o, out) = sign(&s, &s.key(), &["-v", "256.0.0"], &fw);
    assert_refused(&o, &out, 2, "above its maximum");
    let (o, out) = sign(&s, &s.key(), &["-v", "1.0.0"], &big);
    assert_refused(&o, &out, 2, "exceeds the slot size");
    let (o, out) = sign(&s, &s.pubkey(), &["-v", "1.0.0"], &fw);
    assert_refused(&o, &out, 2, "only a public key");
    let (o, out) = sign(&s, &s.path("missing.pem"), &["-v", "1.0.0"], &fw);
    assert_refused(&o, &out, 2, "missing.pem");
    let (o, out) = sign(&s, &s.key(), &["-v", "1.0.0"], &s.path("missing.bin"));
    assert_refused(&o, &out, 2, "missing.bin");
    // An encryption key that is not there (encryption itself: encryption.rs).
    let (o, out) = sign(&s, &s.key(), &["-v", "1.0.0", "-E", "enc.pem"], &fw);
    assert_refused(&o, &out, 2, "cannot read enc.pem");
    let (o, out) = sign(&s, &s.key(), &["-v", "1.0.0", "--save-enctlv"], &fw);
    assert_refused(&o, &out, 2, "go with -E/--encrypt");
    let (o, out) = sign(
        &s,
        &s.key(),
        &["-v", "1.0.0", "--compression", "lzma2"],
        &fw,
    );
    assert_refused(&o, &out, 2, "compression is not supported");

    // Keys of types MCUboot does not verify, made by openssl.
    for (name, args, needle) in [
        (
            "rsa4096.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:4096",
            ][..],
            "MCUboot takes RSA-2048 and RSA-3072",
        ),
        (
            "p521.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-521",
            ][..],
            "is a ECDSA P-521 key",
        ),
        (
            "x25519.pem",
            &["genpkey", "-algorithm", "X25519"][..],
            "is a X25519 key",
        ),
    ] {
        let key = s.path(name);
        ok(std::process::Command::new("openssl")
            .args(args)
            .arg("-out")
            .arg(&key));
        let (o, out) = sign(&s, &key, &["-v", "1.0.0"], &fw);
        assert_refused(&o, &out, 2, needle);
    }

    // A header that is not zero and not padded in.
    let out = s.path("out.bin");
    let o = run(keytool()
        .args(["image", "sign", "-k"])
        .arg(s.key())
        .args(["-v", "1.0.0", "-H", "0x200", "-S", "0x4000"])
        .arg(&fw)
        .arg(&out));
    assert_refused(&o, &out, 2, "does not start with");

    // A failed sign leaves an existing output untouched.
    std::fs::write(&out, b"previous").unwrap();
    let o = run(keytool()
        .args(["image", "sign", "-k"])
        .arg(s.key())
        .args(["-v", "1.0.0", "-H", "0x200", "--pad-header", "-S", "0x100"])
        .arg(&fw)
        .arg(&out));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(read(&out), b"previous");
}

#[test]
fn bad_images_fail_verification_with_one_line() {
    let s = Scratch::new();
    let fw = s.firmware("fw.bin", 4000, 0);
    let img = s.path("signed.bin");
    s.sign(
        &[
            "-v",
            "1.0.0",
            "-H",
            "0x200",
            "--pad-header",
            "-S",
            "0x4000",
            "--confirm",
        ],
        &fw,
        &img,
    );
    let good = read(&img);
    let verify = |bytes: &[u8], needle: &str| {
        let p = s.path("candidate.bin");
        std::fs::write(&p, bytes).unwrap();
        let o = run(keytool()
            .args(["image", "verify", "-k"])
            .arg(s.pubkey())
            .arg(&p));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{needle}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    };
    verify(&good[..20], "truncated");
    verify(&good[..0x300], "truncated");
    verify(&[0u8; 64], "invalid image magic");
    let image = Image::parse(&good).unwrap();
    let end = image.tlv_end();
    verify(&good[..end - 1], "truncated");
    // Oversized: garbage after the trailer.
    let mut longer = good.clone();
    longer.extend_from_slice(b"junk");
    verify(&longer, "not erased padding");
    // A trailer byte changed.
    let mut t = good.clone();
    t[end + 10] = 0x00;
    verify(&t, "not erased padding");
    // An extra TLV in the unprotected area (not on MCUboot's allow-list).
    let mut extra = good[..end].to_vec();
    let info = image.unprotected_range().start;
    extra.extend_from_slice(&[0x50, 0, 4, 0, 1, 2, 3, 4]);
    let total = u16::from_le_bytes([extra[info + 2], extra[info + 3]]) + 8;
    extra[info + 2..info + 4].copy_from_slice(&total.to_le_bytes());
    verify(&extra, "not allowed in the unprotected TLV area");
    // Signed by another key.
    let other = Scratch::new();
    let o = run(keytool()
        .args(["image", "verify", "-k"])
        .arg(other.pubkey())
        .arg(&img));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not signed by the given key"),
        "{}",
        stderr(&o)
    );
    // Security counter policy.
    let o = run(keytool()
        .args(["image", "verify", "--min-security-counter", "1", "-k"])
        .arg(s.pubkey())
        .arg(&img));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no security counter"), "{}", stderr(&o));
    // JSON on failure says why, on stdout.
    let o = run(keytool()
        .args(["image", "verify", "--json", "-k"])
        .arg(other.pubkey())
        .arg(&img));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("not signed by the given key"));
}

#[test]
fn key_generate_refuses_to_overwrite() {
    let s = Scratch::new();
    let o = run(keytool()
        .args(["key", "generate", "-t", "ecdsa-p256", "-k"])
        .arg(s.key()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key files are private");
    }
}

#[test]
fn encrypted_pkcs8_keys_from_openssl_sign_with_the_passphrase() {
    let s = Scratch::new();
    let key = s.path("enc.pem");
    ok(std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
        ])
        .args(["-pass", "pass:s3cret", "-out"])
        .arg(&key));
    let pubkey = s.path("enc.pub.pem");
    ok(std::process::Command::new("openssl")
        .args(["pkey", "-passin", "pass:s3cret", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubkey));
    let fw = s.firmware("fw.bin", 2000, 0);
    let out = s.path("out.bin");
    let sign = |pass: Option<&str>| {
        let _ = std::fs::remove_file(&out);
        let mut c = keytool();
        match pass {
            Some(p) => c.env("KEYTOOL_KEY_PASSPHRASE", p),
            None => c.env_remove("KEYTOOL_KEY_PASSPHRASE"),
        };
        run(c
            .args(["image", "sign", "-k"])
            .arg(&key)
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out)
            .stdin(std::process::Stdio::null()))
    };
    let o = sign(Some("s3cret"));
    assert!(o.status.success(), "{}", stderr(&o));
    ok(imgtool().arg("verify").arg("-k").arg(&pubkey).arg(&out));
    let o = sign(Some("wrong"));
    assert_refused(&o, &out, 2, "wrong passphrase");
    assert!(
        !stderr(&o).contains("wrong\""),
        "the passphrase is not echoed"
    );
    let o = sign(None);
    assert_refused(&o, &out, 2, "KEYTOOL_KEY_PASSPHRASE");
}

#[test]
fn a_pin_value_never_appears_in_an_error() {
    for key in [
        // Refused by the URI parser (twice given), echoed by clap.
        "pkcs11:token=t;object=o?pin-value=12345678&pin-value=87654321",
        // Parsed, then refused later (no module, no token).
        "pkcs11:token=nosuch;object=o?pin-value=12345678&module-path=/nonexistent.so",
    ] {
        let out = run(keytool().args(["key", "getpub", "-k", key]));
        assert!(!out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("12345678") && !all.contains("87654321"),
            "{all}"
        );
    }
}
