//! keytool invoked through a link named `imgtool` takes imgtool's command
//! lines and answers as imgtool does, with HSM keys too.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

/// A directory holding `imgtool -> keytool`.
fn dropin(s: &Scratch) -> std::path::PathBuf {
    let link = s.path("bin/imgtool");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keytool"), &link).unwrap();
    link
}

#[test]
fn imgtool_command_lines_give_imgtools_answers() {
    let s = Scratch::new();
    let ours = dropin(&s);
    let fake = || Command::new(&ours);

    assert_eq!(ok(fake().arg("version")).trim(), "2.5.0");
    let key = s.path("dropin-key.pem");
    ok(fake().args(["keygen", "-t", "ecdsa-p256", "-k"]).arg(&key));
    for args in [
        &["getpub"][..],
        &["getpub", "-e", "pem"],
        &["getpub", "-l", "rust"],
        &["getpubhash"],
    ] {
        let a = run(fake().args(args).arg("-k").arg(&key));
        let b = run(imgtool().args(args).arg("-k").arg(&key));
        assert_eq!(a.stdout, b.stdout, "{args:?}");
    }

    let fw = s.firmware("fw.bin", 3000, 0);
    let signed = s.path("signed.bin");
    // `create` is imgtool's alias of `sign`.
    ok(fake()
        .args(["create", "--key"])
        .arg(&key)
        .args([
            "--version",
            "1.4.0",
            "--header-size",
            "0x200",
            "--pad-header",
            "--slot-size",
            "0x8000",
            "--confirm",
        ])
        .arg(&fw)
        .arg(&signed));
    let a = ok(fake().arg("verify").arg("-k").arg(&key).arg(&signed));
    let b = ok(imgtool().arg("verify").arg("-k").arg(&key).arg(&signed));
    assert_eq!(a, b, "verify output");
    let bad = run(fake().arg("verify").arg("-k").arg(s.pubkey()).arg(&signed));
    assert_eq!(bad.status.code(), Some(1));

    let info: serde_json::Value =
        serde_json::from_str(&ok(fake().args(["dumpinfo", "-f", "json"]).arg(&signed))).unwrap();
    assert_eq!(info["header"]["version"], "1.4.0+0");
    assert_eq!(run(fake().arg("frobnicate")).status.code(), Some(2));
}

#[test]
fn imgtool_sign_takes_hsm_keys() {
    let h = SoftHsm::new("release");
    ok(h.keytool().args([
        "key",
        "generate",
        "-t",
        "ecdsa-p256",
        "-k",
        "pkcs11:token=release;object=zephyr",
    ]));
    let s = Scratch::new();
    let ours = dropin(&s);
    let pem = s.path("hsm.pem");
    std::fs::write(
        &pem,
        ok(h.cmd(&ours).args([
            "getpub",
            "-e",
            "pem",
            "-k",
            "pkcs11:token=release;object=zephyr",
        ])),
    )
    .unwrap();
    let fw = s.firmware("zephyr.bin", 8000, 0);
    let signed = s.path("zephyr.signed.hex");
    // The command line Zephyr's west sign passes to imgtool, with a URI as the key.
    ok(h.cmd(&ours)
        .args([
            "sign",
            "--version",
            "0.0.0+0",
            "--align",
            "4",
            "--header-size",
            "0x200",
            "--slot-size",
            "0x67000",
        ])
        .args([
            "--pad-header",
            "--key",
            "pkcs11:token=release;object=zephyr",
            "--hex-addr",
            "0xc000",
        ])
        .arg(&fw)
        .arg(&signed));
    ok(imgtool().arg("verify").arg("-k").arg(&pem).arg(&signed));
}

#[test]
fn dumpinfo_prints_what_imgtool_prints() {
    let s = Scratch::new();
    let ours = dropin(&s);
    let fw = s.firmware("fw.bin", 2500, 0);
    let variants: [&[&str]; 5] = [
        &[],
        &[
            "--confirm",
            "--align",
            "8",
            "--max-align",
            "32",
            "-s",
            "auto",
        ],
        &[
            "--pad",
            "-L",
            "0x20000000",
            "--non-bootable",
            "--custom-tlv",
            "0xa0",
            "0x0102030405060708090a",
        ],
        &["-d", "(1,1.2.3+4)", "--overwrite-only", "--test"],
        &["--public-key-format", "full", "-x", "0x8000"],
    ];
    for (i, flags) in variants.iter().enumerate() {
        let ext = if flags.contains(&"-x") { "hex" } else { "bin" };
        let img = s.path(&format!("v{i}.{ext}"));
        s.sign(
            &[
                &[
                    "-v",
                    "2.0.1+7",
                    "-H",
                    "0x200",
                    "--pad-header",
                    "-S",
                    "0x10000",
                ][..],
                flags,
            ]
            .concat(),
            &fw,
            &img,
        );
        for format in [&[][..], &["-f", "json"], &["-f", "human"]] {
            let a = run(Command::new(&ours).arg("dumpinfo").args(format).arg(&img));
            let b = run(imgtool().arg("dumpinfo").args(format).arg(&img));
            assert!(
                a.status.success() && b.status.success(),
                "{flags:?} {format:?}"
            );
            assert_eq!(
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&b.stdout),
                "dumpinfo {format:?} of an image signed with {flags:?}"
            );
        }
    }
}
