//! Encrypted upgrades on QEMU's nRF51, end to end: a boot stage built with
//! `--enc`, a chip that made its own key (the sample application, at its
//! first start), a station that learns the chip's public key through the key
//! mailbox (with its proof of possession), one image signed and encrypted
//! once for the station's key and rewrapped for the chip (`keytool image
//! wrap`'s code), and the boot stage decrypting it into the primary slot with
//! the chip's key. Another chip's copy and a flipped ciphertext byte are
//! refused, and the chip keeps booting its old image; with no old image, it
//! starts nothing and says why (`BOOT refused reason=enc-key`).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{build_app, free_port, imgtool_sign, run_ok, wait_for, Chip, DATA, ROOT};
use factory::chips::ChipTable;
use factory::device_key::{request_key, ChipKey};
use factory::target::{read_hw_id, GdbTarget, Target};
use signer::image::encrypt::{load_enc_private_key, load_enc_public_key, rewrap, EncPublicKey};
use signer::key_ref::KeyRef;

const PRIMARY: usize = 0x8000;
const SECONDARY: usize = 0x2_1000;
const FLASH_SIZE: usize = 0x4_0000;

/// A P-256 key pair made by openssl: `(private PEM, public PEM)`.
fn openssl_p256(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key),
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    );
    (key, public)
}

fn key_ref(path: &Path) -> KeyRef {
    format!("file:{}", path.display()).parse().unwrap()
}

/// The chip's flash once it has made its key: v1 in the primary slot, the
/// `--enc` boot stage, the key block; and its public key, as the station
/// learns it (proof of possession checked).
fn chip_with_key(v1: &Path) -> (Vec<u8>, firmware::P256PublicKey) {
    let gdb = free_port();
    let mut chip = Chip(
        Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .args(["--enc", "--release-key"])
            .arg(format!("{DATA}images/dev-key.pub.pem"))
            .arg("--image")
            .arg(v1)
            .args(["--gdb", &gdb.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(gdb, &mut chip);
    let table = ChipTable::builtin().unwrap();
    let nrf51 = table.get("nrf51822").unwrap();
    let mut target = GdbTarget::connect(&format!("127.0.0.1:{gdb}")).unwrap();
    let hw_id = read_hw_id(&mut target, nrf51).unwrap();
    let key = match request_key(&mut target, nrf51, hw_id, Duration::from_secs(120)).unwrap() {
        ChipKey::Key(key) => key,
        ChipKey::NoKey => panic!("a fresh chip made no key"),
    };
    // Halted with its answer written: the key block is in flash.
    let mut flash = vec![0u8; FLASH_SIZE];
    target.read_memory(0, &mut flash).unwrap();
    assert!(firmware::partition::key_block(&flash[0x3_F000..]).is_some());
    // Let it run on to the application's line, which ends boot.sh's run.
    target.release().unwrap();
    drop(target);
    assert!(chip.0.wait().unwrap().success());
    (flash, key)
}

/// Boot `flash` with `upgrade` pending in its secondary slot: `(exit code,
/// console)`.
fn boot_upgrade(dir: &Path, flash: &[u8], name: &str, upgrade: &[u8]) -> (i32, String) {
    let mut chip = flash.to_vec();
    chip[SECONDARY..SECONDARY + upgrade.len()].copy_from_slice(upgrade);
    let saved = dir.join(format!("{name}.flash.bin"));
    std::fs::write(&saved, &chip).unwrap();
    let out = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
        .arg("--flash")
        .arg(&saved)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn an_encrypted_upgrade_installs_only_on_its_chip() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.bin");
    build_app(&app);
    let v1 = dir.path().join("v1.bin");
    imgtool_sign(&app, &v1, &["-v", "1.0.0", "-s", "1"]);
    let (flash, chip_key) = chip_with_key(&v1);

    // Signed once, encrypted for the station's key (imgtool 2.5, the same
    // layout keytool writes), then a copy wrapped for each device.
    let (station, station_pub) = openssl_p256(dir.path(), "station");
    let released = dir.path().join("v2.enc.bin");
    imgtool_sign(
        &app,
        &released,
        &[
            "-v",
            "2.0.0",
            "-s",
            "2",
            "--pad",
            "-E",
            station_pub.to_str().unwrap(),
        ],
    );
    let released = std::fs::read(&released).unwrap();
    let station = load_enc_private_key(&key_ref(&station)).unwrap();
    let for_chip = rewrap(&released, &station, &EncPublicKey::P256(chip_key)).unwrap();
    let (_, other_pub) = openssl_p256(dir.path(), "other-chip");
    let other = load_enc_public_key(&key_ref(&other_pub)).unwrap();
    let for_other = rewrap(&released, &station, &other).unwrap();

    let (code, console) = boot_upgrade(dir.path(), &flash, "other", &for_other);
    assert_eq!(code, 0, "{console}");
    assert!(
        console.contains("UPGRADE refused reason=enc-key")
            && console.contains("BOOT ok version=1.0.0+0")
            && console.contains("APP unprovisioned version=1.0.0+0"),
        "another chip's copy:\n{console}"
    );

    // A chip whose only image is another chip's copy starts nothing, and
    // says why.
    let mut empty = flash.clone();
    empty[PRIMARY..SECONDARY].fill(0xff);
    let (code, console) = boot_upgrade(dir.path(), &empty, "only-other", &for_other);
    assert_eq!(code, 1, "{console}");
    assert!(
        console.contains("UPGRADE refused reason=enc-key")
            && console.contains("BOOT refused reason=enc-key")
            && !console.contains("APP "),
        "another chip's copy on an empty chip:\n{console}"
    );

    let mut flipped = for_chip.clone();
    flipped[0x200 + 1000] ^= 0x01;
    let (code, console) = boot_upgrade(dir.path(), &flash, "flipped", &flipped);
    assert_eq!(code, 0, "{console}");
    assert!(
        console.contains("UPGRADE refused reason=bad-hash")
            && console.contains("APP unprovisioned version=1.0.0+0"),
        "a flipped ciphertext byte:\n{console}"
    );

    let (code, console) = boot_upgrade(dir.path(), &flash, "mine", &for_chip);
    assert_eq!(code, 0, "{console}");
    assert!(
        console.contains("UPGRADE installed version=2.0.0+0 counter=2")
            && console.contains("BOOT ok version=2.0.0+0 counter=2")
            && console.contains("APP unprovisioned version=2.0.0+0"),
        "the chip's own copy:\n{console}"
    );

    // imgtool's own AES-256 encryption straight for the chip's key.
    let chip_pub = dir.path().join("chip.pub.pem");
    std::fs::write(&chip_pub, signer::public_key::to_pem(&chip_key)).unwrap();
    let direct = dir.path().join("v3.enc.bin");
    imgtool_sign(
        &app,
        &direct,
        &[
            "-v",
            "3.0.0",
            "-s",
            "3",
            "--pad",
            "--encrypt-keylen",
            "256",
            "-E",
            chip_pub.to_str().unwrap(),
        ],
    );
    let (code, console) = boot_upgrade(
        dir.path(),
        &flash,
        "aes256",
        &std::fs::read(&direct).unwrap(),
    );
    assert_eq!(code, 0, "{console}");
    assert!(
        console.contains("UPGRADE installed version=3.0.0+0 counter=3")
            && console.contains("APP unprovisioned version=3.0.0+0"),
        "imgtool's AES-256 image:\n{console}"
    );
}
