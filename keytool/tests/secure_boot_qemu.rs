//! The boot stage on QEMU's nRF51 (`firmware/qemu/boot.sh`) with the sample
//! application (`build-app.sh`), signed by keytool and by the real imgtool
//! 2.5 with the same key: what boots, what is refused and with which code,
//! upgrades installed or refused, and the record's verdict handed to the
//! application. Power cuts during an upgrade: `factory/tests/upgrade_power_cut_qemu.rs`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{imgtool, keytool, ok};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/images/dev-key.pem"
);
const PUB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/images/dev-key.pub.pem"
);
const OTHER_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/boot/other-key.pem"
);
const RECORDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/records/");
/// How an image for the primary slot is signed (docs/boot.md).
const SLOT: [&str; 6] = ["-H", "0x200", "--pad-header", "-S", "0x19000", "--align"];

/// The work directory of this test process, and the sample application
/// built into it once.
fn work() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        ok(Command::new(format!("{ROOT}/firmware/qemu/build-app.sh"))
            .arg(dir.path().join("app.bin")));
        dir
    })
    .path()
}

fn app() -> PathBuf {
    work().join("app.bin")
}

/// Sign the sample application: `tool` is keytool or imgtool, `extra` the
/// version, counter, key and padding flags.
fn sign(mut tool: Command, name: &str, extra: &[&str]) -> PathBuf {
    let out = work().join(name);
    ok(tool
        .args(["sign"])
        .args(SLOT)
        .arg("4")
        .args(extra)
        .arg(app())
        .arg(&out));
    out
}

fn keytool_sign(name: &str, extra: &[&str]) -> PathBuf {
    let mut k = keytool();
    k.arg("image");
    sign(k, name, extra)
}

fn imgtool_sign(name: &str, extra: &[&str]) -> PathBuf {
    sign(imgtool(), name, extra)
}

/// Boot with the release key (dev-key) built in; `(exit code, console)`.
fn boot(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String) {
    boot_with(&["--release-key", PUB], args)
}

fn boot_with(keys: &[&str], args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String) {
    let mut cmd = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"));
    cmd.args(keys);
    cmd.args(args.iter().map(|a| OsString::from(a.as_ref())));
    let out = cmd.output().unwrap();
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty(),
        "boot.sh wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), console)
}

/// A refusal: exit 1, the refusal as the last line, nothing started.
fn assert_refused(result: (i32, String), code: &str) {
    let (rc, console) = result;
    assert_eq!(rc, 1, "{console}");
    assert_eq!(
        console.lines().last(),
        Some(format!("BOOT refused reason={code}").as_str()),
        "{console}"
    );
    assert!(!console.contains("APP"), "{console}");
}

#[test]
fn keytool_and_imgtool_signed_images_boot() {
    let flags = ["-v", "1.2.0+7", "-s", "3", "-k", KEY];
    let by_keytool = keytool_sign("keytool.bin", &flags);
    let by_imgtool = imgtool_sign("imgtool.bin", &flags);
    // Everything the hash covers, the hash and the key hash are the same;
    // only the signature differs (ECDSA is randomised).
    let (a, b) = (
        std::fs::read(&by_keytool).unwrap(),
        std::fs::read(&by_imgtool).unwrap(),
    );
    let payload = u32::from_le_bytes(a[12..16].try_into().unwrap()) as usize;
    let protected = usize::from(u16::from_le_bytes(a[10..12].try_into().unwrap()));
    let unprotected = 0x200 + payload + protected;
    assert_eq!(a[..unprotected], b[..unprotected]);
    let hashes = unprotected + 4..unprotected + 4 + 72;
    assert_eq!(a[hashes.clone()], b[hashes]);
    for image in [&by_keytool, &by_imgtool] {
        let (rc, console) = boot(&[&"--image", image]);
        assert_eq!(rc, 0, "{console}");
        assert_eq!(
            console.lines().collect::<Vec<_>>(),
            [
                "NOT PROVISIONED reason=no-authority hw_id=1234567800000003",
                "BOOT ok version=1.2.0+7 counter=3",
                "APP unprovisioned version=1.2.0+7 hw_id=1234567800000003",
            ],
            "{}",
            image.display()
        );
    }
}

#[test]
fn the_record_verdict_reaches_the_application() {
    let image = imgtool_sign("v1.bin", &["-v", "1.0.0", "-k", KEY]);
    let authority = format!("{RECORDS}authority.pub.pem");
    let record = format!("{RECORDS}qemu-microbit.bin");
    let (rc, console) = boot(&[
        &"--image",
        &image,
        &"--authority",
        &authority,
        &"--record",
        &record,
    ]);
    assert_eq!(rc, 0, "{console}");
    assert_eq!(
        console.lines().collect::<Vec<_>>(),
        [
            "PROVISIONED serial=1 hw_id=1234567800000003 product=microbit-demo key_origin=station",
            "BOOT ok version=1.0.0+0 counter=0",
            "APP version=1.0.0+0 serial=1 hw_id=1234567800000003",
        ]
    );

    let mut bytes = std::fs::read(&record).unwrap();
    bytes[16] ^= 0x01; // serial 1 -> 0: the signature no longer covers it
    let tampered = work().join("tampered-record.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let max_serial = format!("{RECORDS}max-serial.bin");
    let device = format!("{RECORDS}device.pub.pem");
    let cases: [(&str, Option<&dyn AsRef<std::ffi::OsStr>>, &str); 4] = [
        (authority.as_str(), Some(&tampered), "bad-signature"),
        (authority.as_str(), Some(&max_serial), "wrong-chip"),
        (authority.as_str(), None, "erased"),
        (device.as_str(), Some(&record), "unknown-authority"),
    ];
    for (authority, record, reason) in cases {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"--image", &image, &"--authority", &authority];
        if let Some(r) = record {
            args.extend([&"--record" as &dyn AsRef<std::ffi::OsStr>, r]);
        }
        let (rc, console) = boot(&args);
        // The application still starts, as an unprovisioned device.
        assert_eq!(rc, 0, "{console}");
        assert_eq!(
            console.lines().collect::<Vec<_>>(),
            [
                format!("NOT PROVISIONED reason={reason} hw_id=1234567800000003").as_str(),
                "BOOT ok version=1.0.0+0 counter=0",
                "APP unprovisioned version=1.0.0+0 hw_id=1234567800000003",
            ]
        );
    }
}

#[test]
fn unsigned_unknown_key_and_rolled_back_images_are_refused() {
    let unsigned = imgtool_sign("unsigned.bin", &["-v", "1.0.0", "-s", "3"]);
    assert_refused(boot(&[&"--image", &unsigned]), "no-signature");
    let other = imgtool_sign("other.bin", &["-v", "1.0.0", "-s", "3", "-k", OTHER_KEY]);
    assert_refused(boot(&[&"--image", &other]), "unknown-key");
    let v3 = keytool_sign("v3.bin", &["-v", "1.0.0", "-s", "3", "-k", KEY]);
    assert_refused(boot(&[&"--image", &v3, &"--min-counter", &"4"]), "rollback");
    let (rc, console) = boot(&[&"--image", &v3, &"--min-counter", &"3"]);
    assert_eq!(rc, 0, "{console}");
    assert_refused(boot(&[]), "no-image");
    assert_refused(boot(&[&"--image", &app()]), "bad-magic");
    // A boot stage built without release keys starts nothing.
    assert_refused(boot_with(&[], &[&"--image", &v3]), "unknown-key");
    // A header that claims more than the slot holds.
    let mut bytes = std::fs::read(&v3).unwrap();
    bytes[12..16].copy_from_slice(&0x0001_8f00u32.to_le_bytes());
    let big = work().join("too-large.bin");
    std::fs::write(&big, &bytes).unwrap();
    assert_refused(boot(&[&"--image", &big]), "too-large");
}

/// Every single-byte change in the header (all 32 bytes), the header's
/// padding, the payload, the protected and the unprotected TLVs.
#[test]
fn any_changed_byte_of_a_signed_image_is_refused() {
    let image = imgtool_sign("v1-sampled.bin", &["-v", "1.0.0", "-s", "3", "-k", KEY]);
    let bytes = std::fs::read(&image).unwrap();
    let payload_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let protected = 0x200 + payload_len;
    let prot_len = usize::from(u16::from_le_bytes(bytes[10..12].try_into().unwrap()));
    let unprotected = protected + prot_len;
    let mut positions: Vec<usize> = (0..32).collect();
    positions.extend([0x20, 0x100, 0x1ff]);
    positions.extend((0x200..protected).step_by(payload_len / 6 + 1));
    positions.extend(protected..unprotected);
    positions.extend((unprotected..bytes.len()).step_by(5));
    positions.push(bytes.len() - 1);
    let mut codes = std::collections::BTreeSet::new();
    let cases: Vec<(usize, PathBuf)> = positions
        .iter()
        .map(|&at| {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            let path = work().join(format!("flip-{at:x}.bin"));
            std::fs::write(&path, &b).unwrap();
            (at, path)
        })
        .collect();
    let verdicts: Vec<(usize, i32, String)> = std::thread::scope(|s| {
        let chunks: Vec<_> = cases.chunks(cases.len().div_ceil(3)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(at, path)| {
                            let (rc, console) = boot(&[&"--image", path]);
                            (*at, rc, console)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (at, rc, console) in verdicts {
        assert_eq!(rc, 1, "byte {at:#x} changed, still booted:\n{console}");
        let last = console.lines().last().unwrap_or_default();
        let code = last
            .strip_prefix("BOOT refused reason=")
            .unwrap_or_else(|| panic!("byte {at:#x}: {console}"));
        codes.insert(code.to_owned());
    }
    // The regions fail for their own reasons.
    for code in ["bad-magic", "bad-hash", "bad-signature", "unknown-key"] {
        assert!(codes.contains(code), "no {code} among {codes:?}");
    }
}

#[test]
fn upgrades_install_or_are_refused() {
    let v1 = imgtool_sign("up-v1.bin", &["-v", "1.0.0", "-s", "3", "-k", KEY]);
    let v2 = keytool_sign("up-v2.bin", &["-v", "2.0.0", "-s", "4", "--pad", "-k", KEY]);
    let v2c = imgtool_sign(
        "up-v2c.bin",
        &["-v", "2.0.0", "-s", "4", "--pad", "--confirm", "-k", KEY],
    );
    for upgrade in [&v2, &v2c] {
        let (rc, console) = boot(&[&"--image", &v1, &"--upgrade", upgrade]);
        assert_eq!(rc, 0, "{console}");
        assert_eq!(
            console.lines().collect::<Vec<_>>(),
            [
                "UPGRADE installed version=2.0.0+0 counter=4",
                "NOT PROVISIONED reason=no-authority hw_id=1234567800000003",
                "BOOT ok version=2.0.0+0 counter=4",
                "APP unprovisioned version=2.0.0+0 hw_id=1234567800000003",
            ]
        );
    }
    // Into an empty primary slot, too.
    let (rc, console) = boot(&[&"--upgrade", &v2]);
    assert!(
        rc == 0 && console.contains("APP unprovisioned version=2.0.0+0"),
        "{console}"
    );

    let lower = imgtool_sign("up-v0.bin", &["-v", "2.1.0", "-s", "2", "--pad", "-k", KEY]);
    let unsigned = imgtool_sign("up-unsigned.bin", &["-v", "2.0.0", "-s", "4", "--pad"]);
    for (upgrade, code) in [(&lower, "rollback"), (&unsigned, "no-signature")] {
        let (rc, console) = boot(&[
            &"--image",
            &v1,
            &"--upgrade",
            upgrade,
            &"--min-counter",
            &"3",
        ]);
        assert_eq!(rc, 0, "{console}");
        assert_eq!(
            console.lines().collect::<Vec<_>>(),
            [
                format!("UPGRADE refused reason={code}").as_str(),
                "NOT PROVISIONED reason=no-authority hw_id=1234567800000003",
                "BOOT ok version=1.0.0+0 counter=3",
                "APP unprovisioned version=1.0.0+0 hw_id=1234567800000003",
            ]
        );
    }
    // Not marked pending (signed without --pad): left alone.
    let (rc, console) = boot(&[&"--image", &v1, &"--upgrade", &v1]);
    assert!(rc == 0 && !console.contains("UPGRADE"), "{console}");
}

/// Key rotation: an image signed by the old and the new release key
/// (`-k OLD -k NEW`) boots on a stage built with only the old key, only the
/// new one, or both, and is refused by a stage with neither; a stage with
/// both refuses an image whose second signature was damaged.
#[test]
fn images_signed_by_two_key_generations_boot_on_either_table() {
    let other_pub = work().join("other-key.pub.pem");
    std::fs::write(
        &other_pub,
        ok(keytool().args(["key", "getpub", "-e", "pem", "-k", OTHER_KEY])),
    )
    .unwrap();
    let other_pub = other_pub.to_str().unwrap();
    let third = work().join("third-key.pem");
    ok(keytool()
        .args(["key", "generate", "--force", "-t", "ecdsa-p256", "-k"])
        .arg(&third));
    let third_pub = work().join("third-key.pub.pem");
    std::fs::write(
        &third_pub,
        ok(keytool()
            .args(["key", "getpub", "-e", "pem", "-k"])
            .arg(&third)),
    )
    .unwrap();
    let third_pub = third_pub.to_str().unwrap();
    let dual = keytool_sign(
        "dual.bin",
        &["-v", "2.0.0", "-s", "5", "-k", KEY, "-k", OTHER_KEY],
    );
    for table in [
        vec!["--release-key", PUB],
        vec!["--release-key", other_pub],
        vec!["--release-key", PUB, "--release-key", other_pub],
    ] {
        let (rc, console) = boot_with(&table, &[&"--image", &dual]);
        assert_eq!(rc, 0, "{table:?}: {console}");
        assert!(
            console.contains("BOOT ok version=2.0.0+0 counter=5"),
            "{table:?}: {console}"
        );
    }
    assert_refused(
        boot_with(&["--release-key", third_pub], &[&"--image", &dual]),
        "unknown-key",
    );
    // The last byte of the second signature changed: a known key's
    // signature that fails is refused, even though the first one verifies.
    let mut bytes = std::fs::read(&dual).unwrap();
    let image = firmware::image::Image::parse(&bytes).unwrap();
    let last_sig = image
        .tlvs()
        .filter(|t| t.kind == firmware::image::tlv::ECDSASIG)
        .last()
        .unwrap();
    let at = last_sig.offset + 4 + last_sig.value.len() - 1;
    bytes[at] ^= 1;
    let damaged = work().join("dual-damaged.bin");
    std::fs::write(&damaged, &bytes).unwrap();
    assert_refused(
        boot_with(
            &["--release-key", PUB, "--release-key", other_pub],
            &[&"--image", &damaged],
        ),
        "bad-signature",
    );
}
