//! The provisioning flow on fake chips against the real backend (the
//! `lambda` router on SQLite, over HTTP on 127.0.0.1): the happy path and its
//! re-run, each fault the station must survive, and a batch of 50 chips.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{backend, DATA, TOKEN};
use factory::backend::Backend;
use factory::chips::ChipTable;
use factory::provision::{provision, Job};
use factory::target::{FakeTarget, Target};
use lambda::Store;

fn authority() -> Box<dyn signer::Signer> {
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    signer::open_signer(&key).unwrap()
}

/// A job for `chip` with nothing optional: no product, no firmware, no lock,
/// no certificate; the chip runs at the end.
fn basic_job<'a>(
    chip: &'a factory::chips::Chip,
    backend: &'a Backend,
    authority: &'a dyn signer::Signer,
) -> Job<'a> {
    Job {
        chip,
        backend,
        authority,
        product: None,
        boot_stage: None,
        firmware: None,
        lock: false,
        force: false,
        run_after: true,
        device_ca: None,
    }
}

fn client(url: &str) -> Backend {
    let mut b = Backend::new(url, TOKEN.to_owned().into());
    b.backoff = std::time::Duration::from_millis(5);
    b.attempts = 3;
    b
}

fn status(store: &Arc<dyn Store>, serial: u32) -> String {
    store
        .device_by_serial(serial)
        .unwrap()
        .map(|d| d.status.as_str().to_owned())
        .unwrap_or_default()
}

#[test]
fn provisions_then_only_verifies_on_a_rerun() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = Job {
        product: Some("sensor-v2".into()),
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut chip_a = FakeTarget::new(chip, 0x0000_0003, 0x1234_5678);
    let r = provision(&mut chip_a, &job);
    assert_eq!((r.outcome, r.serial), ("provisioned", Some(1)), "{r:?}");
    assert_eq!(r.hw_id.as_deref(), Some("1234567800000003"));
    assert!(!chip_a.locked);
    assert_eq!(status(&be.store, 1), "active");

    // What the chip holds verifies as the firmware would check it.
    let mut partition = vec![0u8; 4096];
    chip_a.read_memory(chip.partition, &mut partition).unwrap();
    let hw = firmware::record::HwId::from_deviceid(3, 0x1234_5678);
    let key = authority.public_key().unwrap();
    let p = firmware::record::verify_provisioning(&partition, hw, &[key]).unwrap();
    assert_eq!(p.body.serial, 1);
    let (device_key, _) = factory::partition::key_block(&partition).unwrap();
    let sk = p256::SecretKey::from_slice(device_key.as_ref()).unwrap();
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    assert_eq!(
        sk.public_key().to_encoded_point(false).as_bytes(),
        p.body.device_pubkey.sec1(),
        "the injected key is the record's"
    );

    let again = provision(&mut chip_a, &job);
    assert_eq!(
        (again.outcome, again.serial),
        ("verified", Some(1)),
        "{again:?}"
    );

    let mut chip_b = FakeTarget::new(chip, 0x0000_0004, 0x1234_5678);
    assert_eq!(provision(&mut chip_b, &job).serial, Some(2));

    // Locked at the end of a run: the lock word went through the NVMC, took
    // effect at the reset, and the confirmation saw debug access refused.
    let locking = Job { lock: true, ..job };
    let r = provision(&mut chip_a, &locking);
    assert_eq!((r.outcome, r.serial), ("verified", Some(1)), "{r:?}");
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert!(steps.ends_with(&["lock", "confirm_lock"]), "{steps:?}");
    assert!(chip_a.locked && chip_a.protected);
    let mut word = [0u8; 4];
    assert!(chip_a.read_memory(chip.deviceid, &mut word).is_err());
    // A locked chip cannot be provisioned again; the error says why.
    let r = provision(&mut chip_a, &locking);
    assert!(r.error.as_deref().unwrap().contains("APPROTECT"), "{r:?}");
}

#[test]
fn faults_leave_a_clear_error_and_the_next_run_recovers() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = |backend| basic_job(chip, backend, authority.as_ref());

    // Backend down: nothing is written to the chip.
    let down = client("http://127.0.0.1:9");
    let mut t = FakeTarget::new(chip, 7, 0xabcd_0000);
    let r = provision(&mut t, &job(&down));
    assert_eq!(r.outcome, "failed");
    assert!(r.error.as_deref().unwrap().contains("unreachable"), "{r:?}");
    let mut partition = [0u8; 64];
    t.read_memory(chip.partition, &mut partition).unwrap();
    assert!(partition.iter().all(|&b| b == 0xff), "nothing written");

    // A write fails mid-way: the device stays factory_only; a re-run recovers.
    t.fail_write_after = Some(100);
    let r = provision(&mut t, &job(&backend));
    assert!(
        r.error.as_deref().unwrap().contains("flash write failed"),
        "{r:?}"
    );
    let serial = r.serial.unwrap();
    assert_eq!(status(&be.store, serial), "factory_only");
    let r = provision(&mut t, &job(&backend));
    assert_eq!(
        (r.outcome, r.serial),
        ("provisioned", Some(serial)),
        "{r:?}"
    );
    assert_eq!(status(&be.store, serial), "active");

    // A read-back mismatch: refused; the next run activates what was written.
    let mut u = FakeTarget::new(chip, 8, 0xabcd_0000);
    u.corrupt_reads_at = Some(chip.partition + 0x110);
    let r = provision(&mut u, &job(&backend));
    assert!(
        r.error.as_deref().unwrap().contains("read-back mismatch"),
        "{r:?}"
    );
    let serial = r.serial.unwrap();
    assert_eq!(status(&be.store, serial), "factory_only");
    u.corrupt_reads_at = None;
    let r = provision(&mut u, &job(&backend));
    assert_eq!(
        (r.outcome, r.serial),
        ("provisioned", Some(serial)),
        "{r:?}"
    );

    // A lock that does not take is reported, not assumed.
    let mut w = FakeTarget::new(chip, 9, 0xabcd_0000);
    w.lock_ignored = true;
    let locking = Job {
        lock: true,
        ..job(&backend)
    };
    let r = provision(&mut w, &locking);
    assert_eq!(r.outcome, "failed");
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("still open after locking"),
        "{r:?}"
    );
    w.lock_ignored = false;
    let r = provision(&mut w, &locking);
    assert_eq!((r.outcome, r.error), ("verified", None));
    assert!(w.protected);

    // An erased FICR: refused before the backend is asked.
    let mut blank = FakeTarget::default();
    let r = provision(&mut blank, &job(&backend));
    assert!(r.error.as_deref().unwrap().contains("erased"), "{r:?}");
    assert!(r.serial.is_none());
}

#[test]
fn a_batch_of_fifty_chips_gets_fifty_serials_all_active() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52832").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = Job {
        product: Some("batch".into()),
        lock: true,
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut serials = std::collections::BTreeSet::new();
    for i in 0..50u32 {
        let mut t = FakeTarget::new(chip, 0x1000 + i, 0x5555_0000);
        let r = provision(&mut t, &job);
        assert_eq!(r.outcome, "provisioned", "{r:?}");
        serials.insert(r.serial.unwrap());
    }
    assert_eq!(serials, (1..=50).collect());
    for s in 1..=50 {
        assert_eq!(status(&be.store, s), "active");
    }
}

#[test]
fn firmware_is_checked_before_any_chip_is_touched() {
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let keys =
        factory::image_check::load_public_keys(&[format!("{DATA}images/dev-key.pub.pem").into()])
            .unwrap();
    let signed = std::path::PathBuf::from(format!("{DATA}images/signed.bin"));
    let fw = factory::image_check::check_firmware(&signed, &keys, Some(0xC000), chip).unwrap();
    assert_eq!(fw.addr, 0xC000);
    let e = factory::image_check::check_firmware(&signed, &keys, None, chip).unwrap_err();
    assert!(e.to_string().contains("--slot"), "{e}");
    let other = factory::image_check::load_public_keys(&[format!(
        "{DATA}records/authority.pub.pem"
    )
    .into()])
    .unwrap();
    let e = factory::image_check::check_firmware(&signed, &other, Some(0xC000), chip).unwrap_err();
    assert!(
        e.to_string().contains("refused before touching the chip"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("t.bin");
    let mut bytes = std::fs::read(&signed).unwrap();
    bytes[0x40] ^= 1;
    std::fs::write(&tampered, &bytes).unwrap();
    assert!(factory::image_check::check_firmware(&tampered, &keys, Some(0xC000), chip).is_err());
    let unsigned = std::path::PathBuf::from(format!("{DATA}images/unsigned.bin"));
    assert!(factory::image_check::check_firmware(&unsigned, &keys, Some(0xC000), chip).is_err());
}

#[test]
fn a_device_certificate_is_issued_and_written_next_to_the_record() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let path = dir.path().join(format!("{name}.pem"));
        signer::keys::generate_file_key(&path).unwrap();
        signer::open_signer(&signer::KeyRef::File(path)).unwrap()
    };
    let (root_key, ca_key) = (key("root"), key("ca"));
    let subject = |s: &str| signer::certs::parse_subject(s).unwrap();
    let root = signer::certs::root_ca(root_key.as_ref(), subject("CN=Root"), 30).unwrap();
    let ca_pem = signer::certs::intermediate_ca(
        ca_key.as_ref(),
        root_key.as_ref(),
        &root,
        subject("CN=Device CA"),
        30,
    )
    .unwrap();
    std::fs::write(dir.path().join("root.crt"), &root).unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();
    let device_ca = factory::provision::DeviceCa {
        key: ca_key,
        cert_pem: ca_pem,
        days: 365,
    };
    let job = Job {
        product: Some("sensor".into()),
        device_ca: Some(&device_ca),
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut t = FakeTarget::new(chip, 0x0000_0003, 0x1234_5678);
    let r = provision(&mut t, &job);
    assert_eq!(r.outcome, "provisioned", "{r:?}");
    assert!(r.steps.iter().any(|s| s.step == "issue_certificate"));

    let mut partition = vec![0u8; 4096];
    t.read_memory(chip.partition, &mut partition).unwrap();
    let der = factory::partition::certificate(&partition).expect("a certificate block");
    std::fs::write(dir.path().join("dev.der"), der).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    openssl(&[
        "x509", "-inform", "DER", "-in", "dev.der", "-out", "dev.crt",
    ]);
    let verified = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "ca.crt",
        "dev.crt",
    ]);
    assert_eq!(verified.trim(), "dev.crt: OK");
    let text = openssl(&["x509", "-noout", "-text", "-in", "dev.crt"]);
    assert!(text.contains("Subject: CN = 1"), "{text}");
    assert!(text.contains("URI:urn:dev:hwid:1234567800000003"), "{text}");
    // The certified key is the injected device key.
    let (device_key, _) = factory::partition::key_block(&partition).unwrap();
    let sk = p256::SecretKey::from_slice(device_key.as_ref()).unwrap();
    use p256::pkcs8::EncodePublicKey;
    let pem = sk
        .public_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let cert_pub = openssl(&["x509", "-noout", "-pubkey", "-in", "dev.crt"]);
    assert_eq!(cert_pub.trim(), pem.trim());
}
