//! Interop with the real `imgtool` 2.5, in both directions, over a matrix of
//! `sign` flags:
//!
//! * our signed image passes `imgtool verify -k`;
//! * imgtool, given our signature with `--fix-sig`, produces the same file
//!   byte for byte (so everything but the signature is imgtool's layout);
//! * imgtool's own `-k` image equals ours everywhere before the signature and
//!   passes `keytool image verify -k`;
//! * unsigned images and `--vector-to-sign` outputs, which have no signature,
//!   are identical outright.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use firmware::image::Image;

/// One row of the matrix: extra flags beside `-v`, `-H`, `-S`.
struct Case {
    name: &'static str,
    flags: &'static [&'static str],
    header: &'static str,
    /// Leading zero bytes in the input (for headers not padded in).
    zeros: usize,
    hex_in: bool,
    hex_out: bool,
}

const fn case(name: &'static str, header: &'static str, flags: &'static [&'static str]) -> Case {
    Case {
        name,
        flags,
        header,
        zeros: 0,
        hex_in: false,
        hex_out: false,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("minimal", "0x20", &["--pad-header"]),
        case("big-header", "0x200", &["--pad-header"]),
        Case {
            zeros: 0x400,
            ..case("header-in-input", "0x400", &[])
        },
        case("pad", "0x200", &["--pad-header", "--pad"]),
        case("confirm", "0x200", &["--pad-header", "--confirm"]),
        case("test", "0x200", &["--pad-header", "--test"]),
        case(
            "align2",
            "0x200",
            &["--pad-header", "--pad", "--align", "2"],
        ),
        case(
            "align4",
            "0x200",
            &["--pad-header", "--confirm", "--align", "4"],
        ),
        case(
            "align8",
            "0x200",
            &["--pad-header", "--confirm", "--align", "8"],
        ),
        case(
            "align16",
            "0x200",
            &["--pad-header", "--confirm", "--align", "16"],
        ),
        case(
            "align32",
            "0x200",
            &["--pad-header", "--confirm", "--align", "32"],
        ),
        case(
            "max-align32",
            "0x200",
            &[
                "--pad-header",
                "--confirm",
                "--align",
                "4",
                "--max-align",
                "32",
            ],
        ),
        case(
            "max-sectors",
            "0x200",
            &["--pad-header", "--pad", "-M", "16"],
        ),
        case(
            "overwrite-only",
            "0x200",
            &["--pad-header", "--confirm", "--overwrite-only"],
        ),
        case(
            "erased-zero",
            "0x200",
            &["--pad-header", "--confirm", "-R", "0"],
        ),
        case("seccnt-auto", "0x200", &["--pad-header", "-s", "auto"]),
        case("seccnt-value", "0x200", &["--pad-header", "-s", "0x42"]),
        case(
            "dependencies",
            "0x200",
            &["--pad-header", "-d", "(1,2.3.4+5),(2,1.0)"],
        ),
        case(
            "custom-tlvs",
            "0x200",
            &[
                "--pad-header",
                "--custom-tlv",
                "0xa0",
                "0x0102",
                "--custom-tlv",
                "0x1234",
                "hello",
            ],
        ),
        case(
            "all-protected",
            "0x200",
            &[
                "--pad-header",
                "-s",
                "7",
                "-d",
                "(0,1.0.0)",
                "--custom-tlv",
                "0xa1",
                "0xff",
            ],
        ),
        case("load-addr", "0x200", &["--pad-header", "-L", "0x20000000"]),
        case("rom-fixed", "0x200", &["--pad-header", "-F", "0x8000"]),
        case("non-bootable", "0x200", &["--pad-header", "--non-bootable"]),
        case(
            "pubkey-full",
            "0x200",
            &["--pad-header", "--public-key-format", "full"],
        ),
        Case {
            hex_out: true,
            ..case("hex-out", "0x200", &["--pad-header", "-x", "0x10000"])
        },
        Case {
            hex_out: true,
            ..case(
                "hex-out-confirm",
                "0x200",
                &["--pad-header", "--confirm", "-x", "0xc000"],
            )
        },
        Case {
            hex_in: true,
            ..case("hex-in", "0x200", &["--pad-header"])
        },
        Case {
            hex_in: true,
            hex_out: true,
            ..case("hex-in-out", "0x200", &["--pad-header", "--test"])
        },
    ]
}

const VERSION: &str = "1.2.3+4";
const SLOT: &str = "0x40000";

fn input(s: &Scratch, c: &Case) -> std::path::PathBuf {
    let bin = s.firmware(&format!("{}.bin", c.name), 3000 + c.zeros, c.zeros);
    if !c.hex_in {
        return bin;
    }
    let text = signer::intel_hex::write(&[(0x10200, &read(&bin))]).unwrap();
    let hex = s.path(&format!("{}.in.hex", c.name));
    std::fs::write(&hex, text).unwrap();
    hex
}

fn sign_args<'a>(
    c: &'a Case,
    infile: &'a std::path::Path,
    out: &'a std::path::Path,
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec![
        "-v".into(),
        VERSION.into(),
        "-H".into(),
        c.header.into(),
        "-S".into(),
        SLOT.into(),
    ];
    a.extend(c.flags.iter().map(Into::into));
    a.push(infile.into());
    a.push(out.into());
    a
}

/// Image bytes of a file we or imgtool wrote (HEX decoded).
fn image_bytes(p: &std::path::Path) -> Vec<u8> {
    if p.extension().is_some_and(|e| e == "hex") {
        return signer::intel_hex::parse(&String::from_utf8(read(p)).unwrap())
            .unwrap()
            .data;
    }
    read(p)
}

#[test]
fn our_images_pass_imgtool_and_match_it_byte_for_byte() {
    let s = Scratch::new();
    for c in cases() {
        let ext = if c.hex_out { "hex" } else { "bin" };
        let infile = input(&s, &c);
        let ours = s.path(&format!("{}.ours.{ext}", c.name));
        let sig = s.path(&format!("{}.sig", c.name));
        ok(keytool()
            .args(["image", "sign", "-k"])
            .arg(s.key())
            .arg("--sig-out")
            .arg(&sig)
            .args(sign_args(&c, &infile, &ours)));

        let verified = ok(imgtool().arg("verify").arg("-k").arg(s.pubkey()).arg(&ours));
        assert!(
            verified.contains("Image was correctly validated"),
            "{}: {verified}",
            c.name
        );

        let theirs = s.path(&format!("{}.fixsig.{ext}", c.name));
        ok(imgtool()
            .args(["sign", "--fix-sig"])
            .arg(&sig)
            .arg("--fix-sig-pubkey")
            .arg(s.pubkey())
            .args(sign_args(&c, &infile, &theirs)));
        assert!(
            read(&ours) == read(&theirs),
            "{}: our output differs from imgtool's with the same signature",
            c.name
        );
    }
}

/// Offset of the ECDSASIG TLV header in an image.
fn signature_offset(bytes: &[u8]) -> usize {
    let image = Image::parse(bytes).unwrap();
    image
        .find(firmware::image::tlv::ECDSASIG, false)
        .unwrap()
        .offset
}

#[test]
fn imgtool_images_pass_keytool_and_match_ours_outside_the_signature() {
    let s = Scratch::new();
    for c in cases() {
        let ext = if c.hex_out { "hex" } else { "bin" };
        let infile = input(&s, &c);
        let theirs = s.path(&format!("{}.imgtool.{ext}", c.name));
        ok(imgtool()
            .args(["sign", "-k"])
            .arg(s.key())
            .args(sign_args(&c, &infile, &theirs)));
        let report = ok(keytool()
            .args(["image", "verify", "--json", "-k"])
            .arg(s.pubkey())
            .arg(&theirs));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["valid"], true, "{}", c.name);
        assert_eq!(report["version"], VERSION, "{}", c.name);

        let ours = s.path(&format!("{}.ours2.{ext}", c.name));
        ok(keytool()
            .args(["image", "sign", "-k"])
            .arg(s.key())
            .args(sign_args(&c, &infile, &ours)));
        let (a, b) = (image_bytes(&ours), image_bytes(&theirs));
        let at = signature_offset(&a);
        assert_eq!(at, signature_offset(&b), "{}", c.name);
        // The unprotected area's total length counts the signature, so it may
        // differ; everything else up to the signature TLV's length must not.
        let info = Image::parse(&a).unwrap().unprotected_range().start;
        assert!(
            a[..info + 2] == b[..info + 2],
            "{}: bytes before the TLV area differ",
            c.name
        );
        assert!(
            a[info + 4..at + 2] == b[info + 4..at + 2],
            "{}: TLVs before the signature differ",
            c.name
        );
        // Same trailer at the end of the slot (DER signatures vary in length,
        // so the padding before it may differ by a byte or two).
        let tail = 64.min(a.len() - at).min(b.len() - at);
        if c.flags
            .iter()
            .any(|f| ["--pad", "--confirm", "--test"].contains(f))
        {
            assert_eq!(
                a[a.len() - tail..],
                b[b.len() - tail..],
                "{}: trailers differ",
                c.name
            );
        }
    }
}

#[test]
fn unsigned_images_and_vectors_to_sign_are_identical() {
    let s = Scratch::new();
    let extra: [&[&str]; 4] = [
        &[],
        &["--vector-to-sign", "payload"],
        &["--vector-to-sign", "digest"],
        &["--pad"],
    ];
    for c in cases().into_iter().take(20) {
        for (i, flags) in extra.iter().enumerate() {
            let ext = if c.hex_out { "hex" } else { "bin" };
            let infile = input(&s, &c);
            let ours = s.path(&format!("{}.u{i}.ours.{ext}", c.name));
            let theirs = s.path(&format!("{}.u{i}.imgtool.{ext}", c.name));
            ok(keytool()
                .args(["image", "sign"])
                .args(*flags)
                .args(sign_args(&c, &infile, &ours)));
            ok(imgtool()
                .arg("sign")
                .args(*flags)
                .args(sign_args(&c, &infile, &theirs)));
            assert!(
                read(&ours) == read(&theirs),
                "{} {flags:?}: differs from imgtool",
                c.name
            );
        }
    }
}

#[test]
fn getpub_and_getpubhash_match_imgtool() {
    let s = Scratch::new();
    for enc in ["lang-c", "lang-rust", "pem", "raw"] {
        let ours = run(keytool()
            .args(["key", "getpub", "-e", enc, "-k"])
            .arg(s.key()));
        let theirs = run(imgtool().args(["getpub", "-e", enc, "-k"]).arg(s.key()));
        assert!(ours.status.success() && theirs.status.success());
        assert_eq!(ours.stdout, theirs.stdout, "getpub -e {enc}");
    }
    let ours = run(keytool()
        .args(["key", "getpub", "--name-suffix", "_2", "-k"])
        .arg(s.key()));
    let theirs = run(imgtool()
        .args(["getpub", "--name-suffix", "_2", "-k"])
        .arg(s.key()));
    assert_eq!(ours.stdout, theirs.stdout, "getpub --name-suffix");
    for enc in ["lang-c", "raw"] {
        let ours = run(keytool()
            .args(["key", "getpubhash", "-e", enc, "-k"])
            .arg(s.key()));
        let theirs = run(imgtool().args(["getpubhash", "-e", enc, "-k"]).arg(s.key()));
        assert_eq!(ours.stdout, theirs.stdout, "getpubhash -e {enc}");
    }
    // From the public key alone, too.
    let ours = run(keytool().args(["key", "getpub", "-k"]).arg(s.pubkey()));
    let theirs = run(imgtool().args(["getpub", "-k"]).arg(s.key()));
    assert_eq!(ours.stdout, theirs.stdout);

    // RSA, ECDSA P-384 and Ed25519 keys from imgtool keygen: the same bytes
    // in every encoding (RSA's C and raw forms are PKCS#1, its PEM is SPKI).
    for kind in ["rsa-2048", "rsa-3072", "ecdsa-p384", "ed25519"] {
        let key = s.path(&format!("getpub-{kind}.pem"));
        ok(imgtool().args(["keygen", "-t", kind, "-k"]).arg(&key));
        for enc in ["lang-c", "lang-rust", "pem", "raw"] {
            let ours = run(keytool().args(["key", "getpub", "-e", enc, "-k"]).arg(&key));
            let theirs = run(imgtool().args(["getpub", "-e", enc, "-k"]).arg(&key));
            assert!(
                ours.status.success() && theirs.status.success(),
                "{kind} {enc}"
            );
            assert_eq!(ours.stdout, theirs.stdout, "{kind}: getpub -e {enc}");
        }
        for enc in ["lang-c", "raw"] {
            let ours = run(keytool()
                .args(["key", "getpubhash", "-e", enc, "-k"])
                .arg(&key));
            let theirs = run(imgtool().args(["getpubhash", "-e", enc, "-k"]).arg(&key));
            assert_eq!(ours.stdout, theirs.stdout, "{kind}: getpubhash -e {enc}");
        }
    }
}

#[test]
fn keys_from_imgtool_keygen_sign_with_keytool() {
    let s = Scratch::new();
    let key = s.path("imgtool-key.pem");
    ok(imgtool()
        .args(["keygen", "-t", "ecdsa-p256", "-k"])
        .arg(&key));
    let fw = s.firmware("fw.bin", 1000, 0);
    let out = s.path("signed.bin");
    ok(keytool()
        .args(["image", "sign", "-k"])
        .arg(&key)
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(&out));
    ok(imgtool().arg("verify").arg("-k").arg(&key).arg(&out));
}

/// imgtool 2.5 signs with ECDSA P-384 and Ed25519 (SHA-256, SHA-512 and
/// `--pure`); `keytool image verify` and the `imgtool verify` personality
/// accept each image with its key (private or public PEM), name the key by
/// its id, and refuse it with another key of the same type.
#[test]
fn imgtool_images_of_the_other_key_types_verify_with_keytool() {
    let s = Scratch::new();
    let fw = s.firmware("fw-types.bin", 3000, 0);
    for (kind, extra, hash_len) in [
        ("rsa-2048", &[][..], 64),
        ("rsa-3072", &[][..], 64),
        ("ecdsa-p384", &[][..], 96),
        ("ed25519", &[][..], 64),
        ("ed25519", &["--sha", "512"][..], 128),
        ("ed25519", &["--pure"][..], 128),
    ] {
        let what = format!("{kind} {extra:?}");
        let key = s.path(&format!("{kind}-{}.pem", extra.len()));
        let other = s.path(&format!("{kind}-{}-other.pem", extra.len()));
        for k in [&key, &other] {
            ok(imgtool().args(["keygen", "-t", kind, "-k"]).arg(k));
        }
        let public = s.path(&format!("{kind}-{}.pub.pem", extra.len()));
        ok(std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public));
        let out = s.path(&format!("{kind}-{}.signed.bin", extra.len()));
        ok(imgtool()
            .args(["sign", "-k"])
            .arg(&key)
            .args(SMALL_IMAGE)
            .args(extra)
            .arg(&fw)
            .arg(&out));
        for k in [&key, &public] {
            let report = ok(keytool()
                .args(["image", "verify", "--json", "-k"])
                .arg(k)
                .arg(&out));
            let report: serde_json::Value = serde_json::from_str(&report).unwrap();
            assert_eq!(report["valid"], true, "{what}: {report}");
            assert_eq!(
                report["digest"].as_str().map(str::len),
                Some(hash_len),
                "{what}: {report}"
            );
            assert_eq!(
                report["signed_by"]["key_id"].as_str().map(str::len),
                Some(64),
                "{what}"
            );
        }
        // The drop-in personality: keytool run under the name imgtool.
        let dropin = s.path("bin/imgtool");
        if !dropin.exists() {
            std::fs::create_dir_all(s.path("bin")).unwrap();
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keytool"), &dropin).unwrap();
        }
        let said = ok(std::process::Command::new(&dropin)
            .args(["verify", "-k"])
            .arg(&public)
            .arg(&out));
        assert!(
            said.contains("Image was correctly validated"),
            "{what}: {said}"
        );
        let refused = run(keytool()
            .args(["image", "verify", "-k"])
            .arg(&other)
            .arg(&out));
        assert_eq!(refused.status.code(), Some(1), "{what}: another key");
    }
}

/// `keytool key generate -t` writes PKCS#8 PEM files of every type that
/// imgtool 2.5 reads: it prints the same public key and signs with them, and
/// keytool verifies what it signed.
#[test]
fn generated_key_files_of_every_type_work_with_imgtool() {
    let s = Scratch::new();
    let fw = s.firmware("fw-gen.bin", 2000, 0);
    for kind in [
        "rsa-2048",
        "rsa-3072",
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
    ] {
        let key = s.path(&format!("gen-{kind}.pem"));
        let said = ok(keytool()
            .args(["key", "generate", "--json", "-t", kind, "-k"])
            .arg(&key));
        let said: serde_json::Value = serde_json::from_str(&said).unwrap();
        assert_eq!(said["key_type"], kind);
        let ours = run(keytool()
            .args(["key", "getpub", "-e", "pem", "-k"])
            .arg(&key));
        let theirs = run(imgtool().args(["getpub", "-e", "pem", "-k"]).arg(&key));
        assert!(theirs.status.success(), "{kind}: imgtool reads the file");
        assert_eq!(ours.stdout, theirs.stdout, "{kind}: getpub");
        let out = s.path(&format!("gen-{kind}.signed.bin"));
        ok(imgtool()
            .args(["sign", "-k"])
            .arg(&key)
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out));
        let report = ok(keytool()
            .args(["image", "verify", "--json", "-k"])
            .arg(&key)
            .arg(&out));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["valid"], true, "{kind}");
        assert_eq!(report["signed_by"]["key_id"], said["key_id"], "{kind}");
        // Never replaced without --force.
        let again = run(keytool()
            .args(["key", "generate", "-t", kind, "-k"])
            .arg(&key));
        assert_eq!(again.status.code(), Some(2), "{kind}");
    }
}

/// The TLV types and lengths of an image's unprotected area, and the offset
/// of its first signature TLV.
fn tlv_layout(bytes: &[u8]) -> (Vec<(u16, usize)>, usize) {
    use firmware::image::tlv;
    let image = Image::parse(bytes).unwrap();
    let tlvs: Vec<_> = image.tlvs().filter(|t| !t.protected).collect();
    let first_sig = tlvs
        .iter()
        .find(|t| {
            matches!(
                t.kind,
                tlv::ECDSASIG | tlv::ED25519 | tlv::RSA2048 | tlv::RSA3072
            )
        })
        .unwrap()
        .offset;
    (
        tlvs.iter()
            .map(|t| {
                (
                    t.kind,
                    if t.kind == tlv::ECDSASIG {
                        0
                    } else {
                        t.value.len()
                    },
                )
            })
            .collect(),
        first_sig,
    )
}

/// keytool signs with every key type imgtool 2.5 does, with `--sha` and
/// `--pure`: imgtool verifies each image; Ed25519 images (deterministic
/// signatures) equal imgtool's byte for byte; RSA-PSS and ECDSA images
/// equal imgtool's up to the signature and have its TLV layout.
#[test]
fn keytool_signs_every_key_type_as_imgtool_does() {
    let s = Scratch::new();
    let fw = s.firmware("fw-sign.bin", 3000, 0);
    for (kind, extra) in [
        ("rsa-2048", &[][..]),
        ("rsa-3072", &[][..]),
        ("ecdsa-p256", &[][..]),
        ("ecdsa-p384", &[][..]),
        ("ecdsa-p384", &["--sha", "384"][..]),
        ("ed25519", &[][..]),
        ("ed25519", &["--sha", "512"][..]),
        ("ed25519", &["--pure"][..]),
    ] {
        let what = format!("{kind} {extra:?}");
        let key = s.path(&format!("sign-{kind}.pem"));
        if !key.exists() {
            ok(keytool()
                .args(["key", "generate", "-t", kind, "-k"])
                .arg(&key));
        }
        let flags = [
            "--pad-header",
            "-H",
            "0x200",
            "-S",
            "0x20000",
            "-v",
            "1.2.3",
        ];
        let ours = s.path("sign-ours.bin");
        let theirs = s.path("sign-theirs.bin");
        ok(keytool()
            .args(["image", "sign", "--pad", "-s", "auto", "-k"])
            .arg(&key)
            .args(flags)
            .args(extra)
            .arg(&fw)
            .arg(&ours));
        ok(imgtool()
            .args(["sign", "--pad", "-s", "auto", "-k"])
            .arg(&key)
            .args(flags)
            .args(extra)
            .arg(&fw)
            .arg(&theirs));
        let said = ok(imgtool().args(["verify", "-k"]).arg(&key).arg(&ours));
        assert!(said.contains("correctly validated"), "{what}: {said}");
        let (a, b) = (image_bytes(&ours), image_bytes(&theirs));
        if kind == "ed25519" {
            assert!(a == b, "{what}: byte-identical to imgtool");
            continue;
        }
        let (layout_a, sig_a) = tlv_layout(&a);
        let (layout_b, sig_b) = tlv_layout(&b);
        assert_eq!(layout_a, layout_b, "{what}: TLV layout");
        assert_eq!(sig_a, sig_b, "{what}");
        // The hashed region, then the unprotected TLVs before the signature
        // (the area's length differs with the DER signature's).
        let hashed = Image::parse(&a).unwrap().unprotected_range().start;
        assert!(a[..hashed] == b[..hashed], "{what}: the hashed region");
        assert!(
            a[hashed + 4..sig_a] == b[hashed + 4..sig_b],
            "{what}: the TLVs before the signature"
        );
    }
    // Refusals name the rule.
    let key = s.path("sign-ecdsa-p384.pem");
    let refused = run(keytool()
        .args(["image", "sign", "--sha", "256", "-k"])
        .arg(&key)
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(s.path("x.bin")));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be used with --sha 256"));
    let refused = run(keytool()
        .args(["image", "sign", "--pure", "-k"])
        .arg(s.path("sign-rsa-2048.pem"))
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(s.path("x.bin")));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--pure is Ed25519 only"));
    assert!(!s.path("x.bin").exists());
}

/// `-k OLD -k NEW`: one image with two KEYHASH + signature pairs, in that
/// order, that imgtool verifies with either key and keytool with either or
/// both; keys that need different image hashes are refused.
#[test]
fn two_keys_sign_one_image_for_rotation() {
    use firmware::image::tlv;
    let s = Scratch::new();
    let fw = s.firmware("fw-dual.bin", 3000, 0);
    for (old, new) in [
        ("ecdsa-p256", "ed25519"),
        ("ecdsa-p256", "ecdsa-p256"),
        ("rsa-2048", "ecdsa-p256"),
    ] {
        let what = format!("{old} + {new}");
        let (old_key, new_key) = (
            s.path(&format!("old-{old}.pem")),
            s.path(&format!("new-{new}.pem")),
        );
        for (k, t) in [(&old_key, old), (&new_key, new)] {
            if !k.exists() {
                ok(keytool().args(["key", "generate", "-t", t, "-k"]).arg(k));
            }
        }
        let out = s.path("dual.bin");
        let said = ok(keytool()
            .args(["image", "sign", "--json", "-k"])
            .arg(&old_key)
            .arg("-k")
            .arg(&new_key)
            .args(SMALL_IMAGE)
            .arg(&fw)
            .arg(&out));
        let said: serde_json::Value = serde_json::from_str(&said).unwrap();
        assert_eq!(said["signers"].as_array().map(Vec::len), Some(2), "{what}");
        for k in [&old_key, &new_key] {
            let v = ok(imgtool().args(["verify", "-k"]).arg(k).arg(&out));
            assert!(v.contains("correctly validated"), "{what}: {v}");
            let v = ok(keytool().args(["image", "verify", "-k"]).arg(k).arg(&out));
            assert!(v.contains("correctly validated"), "{what}: {v}");
        }
        // A verifier whose key table holds both generations (mixed types
        // too) accepts it; one holding neither refuses it.
        let v = ok(keytool()
            .args(["image", "verify", "-k"])
            .arg(&old_key)
            .arg("-k")
            .arg(&new_key)
            .arg(&out));
        assert!(v.contains("correctly validated"), "{what}: {v}");
        let neither = s.path("neither.pem");
        if !neither.exists() {
            ok(keytool()
                .args(["key", "generate", "-t", "ed25519", "-k"])
                .arg(&neither));
        }
        let refused = run(keytool()
            .args(["image", "verify", "-k"])
            .arg(&neither)
            .arg(&out));
        assert_eq!(refused.status.code(), Some(1), "{what}: neither key");
        let bytes = image_bytes(&out);
        let image = Image::parse(&bytes).unwrap();
        let kinds: Vec<u16> = image
            .tlvs()
            .filter(|t| !t.protected)
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            kinds.len(),
            5,
            "{what}: hash, then two key + signature pairs"
        );
        assert_eq!(kinds[0], tlv::SHA256);
        assert_eq!((kinds[1], kinds[3]), (tlv::KEYHASH, tlv::KEYHASH), "{what}");
    }
    let refused = run(keytool()
        .args(["image", "sign", "-k"])
        .arg(s.path("old-ecdsa-p256.pem"))
        .arg("-k")
        .arg({
            let k = s.path("p384-dual.pem");
            ok(keytool()
                .args(["key", "generate", "-t", "ecdsa-p384", "-k"])
                .arg(&k));
            k
        })
        .args(SMALL_IMAGE)
        .arg(&fw)
        .arg(s.path("y.bin")));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("sign different image hashes"));
}
