//! The provisioning flow on fake chips against the real backend (the
//! `lambda` router on SQLite, over HTTP on 127.0.0.1): keys born on the chip
//! and keys the station makes, re-runs, a fault at every step (the backend
//! never shows `active` for a chip that is open under `--lock` or whose key
//! is not its record's), forged proofs of possession, the production rules,
//! the backend over TLS (its CA only; no token in clear to another host),
//! and a batch of 50 chips.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use lambda::Wait;

use std::sync::Arc;
use std::time::Duration;

use common::{backend, backend_tls, backend_with, DATA, TOKEN};
use factory::backend::{Backend, Transport};
use factory::chips::{Chip, ChipTable};
use factory::fake::Forgery;
use factory::provision::{production_refusal, provision, Job};
use factory::target::{FakeTarget, Target};
use firmware::partition::{IMAGE_LEN, KEY_BLOCK_OFFSET};
use firmware::record::{HwId, KeyOrigin, RECORD_LEN};
use lambda::Store;

fn authority() -> Box<dyn signer::Signer> {
    let key: signer::KeyRef = format!("file:{DATA}records/authority.pem").parse().unwrap();
    signer::open_signer(&key).unwrap()
}

/// A job for `chip` with nothing optional: keys born on the chip, no
/// product, no firmware, no lock, no certificate; the chip runs at the end.
fn basic_job<'a>(
    chip: &'a Chip,
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
        key_origin: KeyOrigin::Device,
        key_timeout: Duration::from_secs(2),
        production: false,
    }
}

fn client(url: &str) -> Backend {
    let mut b = Backend::connect(url, Some(TOKEN.to_owned().into()), &Default::default()).unwrap();
    b.backoff = std::time::Duration::from_millis(5);
    b.attempts = 3;
    b
}

fn status(store: &Arc<dyn Store>, serial: u32) -> String {
    store
        .device_by_serial(serial)
        .wait()
        .unwrap()
        .map(|d| d.status.as_str().to_owned())
        .unwrap_or_default()
}

/// The public key (SEC1) of the key in the chip's key block, as the silicon
/// holds it.
fn chip_public_key(t: &FakeTarget) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let part = t.partition();
    let k = firmware::partition::key_block(&part)?;
    let sk = p256::SecretKey::from_slice(k).ok()?;
    Some(sk.public_key().to_encoded_point(false).as_bytes().to_vec())
}

/// Whether any station read touched the key region of the partition.
fn read_key_region(t: &FakeTarget, chip: &Chip) -> bool {
    let key = chip.partition + KEY_BLOCK_OFFSET as u32..chip.partition + IMAGE_LEN as u32;
    t.reads
        .iter()
        .any(|r| r.start < key.end && key.start < r.end)
}

/// The invariant a fault may never break: a device the backend has `active`
/// holds a record that verifies for it and names the key in its key block,
/// and is locked when the job locks.
fn check_invariant(
    store: &Arc<dyn Store>,
    t: &FakeTarget,
    lock: bool,
    authority: &dyn signer::Signer,
) {
    let hw = t.hw_id().unwrap();
    let Some(d) = store.device_by_hw_id(hw).wait().unwrap() else {
        return;
    };
    if d.status != lambda::model::DeviceStatus::Active {
        return;
    }
    let part = t.partition();
    let key = authority.public_key().unwrap();
    let p = firmware::record::verify_provisioning(&part, hw, &[key])
        .unwrap_or_else(|e| panic!("active device {hw} without a valid record: {e}"));
    assert_eq!(
        chip_public_key(t).as_deref(),
        Some(&p.body.device_pubkey.sec1()[..]),
        "active device {hw} whose key is not its record's"
    );
    assert_eq!(d.device_pubkey.as_ref(), Some(p.body.device_pubkey.sec1()));
    if lock {
        assert!(t.locked && t.protected, "active device {hw} left open");
    }
}

#[test]
fn the_chip_makes_its_key_and_the_station_never_reads_it() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = Job {
        product: Some("sensor-v2".into()),
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut chip_a = FakeTarget::making_keys(chip, 0x0000_0003, 0x1234_5678);
    let r = provision(&mut chip_a, &job);
    assert_eq!((r.outcome, r.serial), ("provisioned", Some(1)), "{r:?}");
    assert_eq!(r.hw_id.as_deref(), Some("1234567800000003"));
    assert_eq!(r.key_origin, Some("device"));
    assert!(!chip_a.locked);
    assert_eq!(status(&be.store, 1), "active");
    let d = be.store.device_by_serial(1).wait().unwrap().unwrap();
    assert_eq!(
        d.key_origin,
        Some(KeyOrigin::Device),
        "the backend stores the origin"
    );

    // The station never read the key region, and wrote only the record.
    assert!(!read_key_region(&chip_a, chip), "{:?}", chip_a.reads);
    let partition_writes: Vec<_> = chip_a
        .writes
        .iter()
        .filter(|w| w.start >= chip.partition && w.start < chip.partition + 0x1000)
        .collect();
    assert!(
        partition_writes
            .iter()
            .all(|w| w.end <= chip.partition + RECORD_LEN as u32),
        "the station wrote outside the record: {partition_writes:?}"
    );

    // What the chip holds verifies as the firmware would check it, for the
    // key the chip made.
    let hw = firmware::record::HwId::from_deviceid(3, 0x1234_5678);
    let key = authority.public_key().unwrap();
    let p = firmware::record::verify_provisioning(&chip_a.partition(), hw, &[key]).unwrap();
    assert_eq!((p.body.serial, p.body.key_origin), (1, KeyOrigin::Device));
    assert_eq!(
        chip_public_key(&chip_a).as_deref(),
        Some(&p.body.device_pubkey.sec1()[..])
    );

    let again = provision(&mut chip_a, &job);
    assert_eq!(
        (again.outcome, again.serial),
        ("verified", Some(1)),
        "{again:?}"
    );

    let mut chip_b = FakeTarget::making_keys(chip, 0x0000_0004, 0x1234_5678);
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

    // With --lock, activation comes after the lock is confirmed.
    let mut chip_c = FakeTarget::making_keys(chip, 0x0000_0005, 0x1234_5678);
    let r = provision(&mut chip_c, &locking);
    let steps: Vec<_> = r.steps.iter().map(|s| s.step).collect();
    assert!(
        steps.ends_with(&["lock", "confirm_lock", "backend_activate"]),
        "{steps:?}"
    );
}

#[test]
fn keys_made_by_the_station_are_injected_header_last() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = Job {
        key_origin: KeyOrigin::Station,
        ..basic_job(chip, &backend, authority.as_ref())
    };
    // A chip whose firmware cannot make keys.
    let mut t = FakeTarget::new(chip, 0x0000_0003, 0x1234_5678);
    let r = provision(&mut t, &job);
    assert_eq!(
        (r.outcome, r.key_origin),
        ("provisioned", Some("station")),
        "{r:?}"
    );
    let hw = t.hw_id().unwrap();
    let p = firmware::record::verify_provisioning(
        &t.partition(),
        hw,
        &[authority.public_key().unwrap()],
    )
    .unwrap();
    assert_eq!(p.body.key_origin, KeyOrigin::Station);
    assert_eq!(
        chip_public_key(&t).as_deref(),
        Some(&p.body.device_pubkey.sec1()[..])
    );
    let d = be.store.device_by_hw_id(hw).wait().unwrap().unwrap();
    assert_eq!(d.key_origin, Some(KeyOrigin::Station));
    assert_eq!(provision(&mut t, &job).outcome, "verified");

    // The same chip under device keys: its firmware does not answer, and
    // the error says what to do.
    let mut u = FakeTarget::new(chip, 0x0000_0009, 0x1234_5678);
    let device = Job {
        key_timeout: Duration::from_millis(200),
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let r = provision(&mut u, &device);
    assert!(
        r.error.as_deref().unwrap().contains("--key-origin station"),
        "{r:?}"
    );
}

#[test]
fn a_forged_proof_of_possession_is_refused_before_anything_is_signed() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = basic_job(chip, &backend, authority.as_ref());
    for (i, forgery) in [Forgery::OtherChip, Forgery::OtherKey]
        .into_iter()
        .enumerate()
    {
        let mut t = FakeTarget::making_keys(chip, 0x100 + i as u32, 0x1234_5678);
        t.forgery = Some(forgery);
        let r = provision(&mut t, &job);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("proof of possession does not verify"),
            "{forgery:?}: {r:?}"
        );
        assert!(
            !r.steps
                .iter()
                .any(|s| s.step == "sign_record" || s.step == "backend_provision"),
            "{forgery:?}: {r:?}"
        );
        assert!(be
            .store
            .device_by_hw_id(t.hw_id().unwrap())
            .wait()
            .unwrap()
            .is_none());
        assert!(t.partition()[..RECORD_LEN].iter().all(|&b| b == 0xff));
    }
}

#[test]
fn a_fault_at_any_step_never_leaves_an_open_or_mismatched_active_device() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let mut next_id = 0x2000u32;
    for (origin, lock) in [
        (KeyOrigin::Device, true),
        (KeyOrigin::Device, false),
        (KeyOrigin::Station, true),
    ] {
        let job = Job {
            key_origin: origin,
            lock,
            ..basic_job(chip, &backend, authority.as_ref())
        };
        let mut hit = 0;
        for fail_at in 0.. {
            next_id += 1;
            let mut t = FakeTarget::making_keys(chip, next_id, 0xfa17_0000);
            t.fail_op = Some(fail_at);
            let r = provision(&mut t, &job);
            if t.fail_op.is_some() {
                // The run ended before operation `fail_at`: every step done.
                assert_eq!(r.outcome, "provisioned", "{r:?}");
                break;
            }
            hit += 1;
            assert_eq!(r.outcome, "failed", "fault at {fail_at}: {r:?}");
            check_invariant(&be.store, &t, lock, authority.as_ref());
            // The next run recovers; a chip that got locked before its
            // activation is recovered by an erase-all first.
            let mut again = provision(&mut t, &job);
            if again
                .error
                .as_deref()
                .is_some_and(|e| e.contains("APPROTECT"))
            {
                let hw = t.hw_id().unwrap();
                let d = be.store.device_by_hw_id(hw).wait().unwrap();
                assert!(
                    d.is_none_or(|d| d.status == lambda::model::DeviceStatus::FactoryOnly),
                    "a locked chip the run could not finish stays factory_only"
                );
                t.erase_all();
                again = provision(&mut t, &job);
            }
            assert!(
                again.error.is_none(),
                "{origin:?} lock={lock}: recovery after a fault at {fail_at}: {again:?}"
            );
            check_invariant(&be.store, &t, lock, authority.as_ref());
            let hw = t.hw_id().unwrap();
            let d = be.store.device_by_hw_id(hw).wait().unwrap().unwrap();
            assert_eq!(d.status, lambda::model::DeviceStatus::Active);
            if origin == KeyOrigin::Device {
                assert!(!read_key_region(&t, chip), "fault at {fail_at}");
            }
        }
        assert!(hit > 10, "{origin:?}: only {hit} step boundaries");
    }

    // Power cut inside the chip's own key block write, at every byte: the
    // block is damaged (never a valid header over part of a key), the
    // station erases the partition and the chip makes its key again.
    let job = basic_job(chip, &backend, authority.as_ref());
    for cut in 0..firmware::partition::KEY_BLOCK_LEN {
        next_id += 1;
        let mut t = FakeTarget::making_keys(chip, next_id, 0xc07_0000);
        t.cut_key_block_after = Some(cut);
        let r = provision(&mut t, &job);
        assert_eq!(r.outcome, "provisioned", "cut at {cut}: {r:?}");
        assert!(
            r.steps.iter().any(|s| s.step == "erase_partition"),
            "cut at {cut}: {r:?}"
        );
        check_invariant(&be.store, &t, false, authority.as_ref());
    }
}

#[test]
fn a_record_for_another_key_is_replaced_while_the_device_is_not_active() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = basic_job(chip, &backend, authority.as_ref());
    let mut t = FakeTarget::making_keys(chip, 0x77, 0x1234_5678);
    // A record for the right chip and serial but another key, never
    // activated (written by a run that then died).
    let hw = t.hw_id().unwrap();
    let serial = be
        .store
        .provision(hw, None, "test")
        .wait()
        .unwrap()
        .device
        .serial;
    let other = {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let sk = p256::SecretKey::from_slice(&[0x55; 32]).unwrap();
        firmware::P256PublicKey::from_sec1(sk.public_key().to_encoded_point(false).as_bytes())
            .unwrap()
    };
    let stale = signer::record::sign_record(
        &signer::record::RecordRequest {
            hw_id: hw,
            serial,
            product: [0; 16],
            device_pubkey: other,
            issued_at: 1,
            key_origin: KeyOrigin::Device,
        },
        authority.as_ref(),
    )
    .unwrap();
    t.poke(chip.partition, &stale);
    let r = provision(&mut t, &job);
    assert_eq!(
        (r.outcome, r.serial),
        ("provisioned", Some(serial)),
        "{r:?}"
    );
    assert!(r.steps.iter().any(|s| s.step == "erase_partition"), "{r:?}");
    check_invariant(&be.store, &t, false, authority.as_ref());
}

#[test]
fn production_requires_lock_device_keys_and_no_plain_http_off_this_machine() {
    let ok = "https://prov.example.com";
    assert!(production_refusal(true, KeyOrigin::Device, ok).is_none());
    for local in [
        "http://127.0.0.1:8080",
        "http://localhost:1/x",
        "http://[::1]:80",
    ] {
        assert!(
            production_refusal(true, KeyOrigin::Device, local).is_none(),
            "{local}"
        );
    }
    let e = production_refusal(false, KeyOrigin::Device, ok).unwrap();
    assert!(e.contains("--lock"), "{e}");
    let e = production_refusal(true, KeyOrigin::Station, ok).unwrap();
    assert!(e.contains("--key-origin device"), "{e}");
    let e = production_refusal(true, KeyOrigin::Device, "http://10.0.0.5:8080").unwrap();
    assert!(e.contains("http://") && e.contains("10.0.0.5"), "{e}");

    // The flow applies the same rules itself, before touching the chip.
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = Job {
        production: true,
        key_origin: KeyOrigin::Station,
        lock: true,
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut t = FakeTarget::making_keys(chip, 3, 0x1234_5678);
    let r = provision(&mut t, &job);
    assert!(
        r.error.as_deref().unwrap().contains("--key-origin device"),
        "{r:?}"
    );
    assert_eq!(t.ops, 0, "the chip was not touched");
    let job = Job {
        key_origin: KeyOrigin::Device,
        ..job
    };
    let r = provision(&mut t, &job);
    assert_eq!(r.outcome, "provisioned", "{r:?}");
    assert!(t.protected);
}

#[test]
fn faults_leave_a_clear_error_and_the_next_run_recovers() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf51822").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let job = |backend| basic_job(chip, backend, authority.as_ref());

    // Backend down: no record is written (the chip made its key).
    let down = client("http://127.0.0.1:9");
    let mut t = FakeTarget::making_keys(chip, 7, 0xabcd_0000);
    let r = provision(&mut t, &job(&down));
    assert_eq!(r.outcome, "failed");
    assert!(r.error.as_deref().unwrap().contains("unreachable"), "{r:?}");
    assert!(
        t.partition()[..RECORD_LEN].iter().all(|&b| b == 0xff),
        "no record"
    );
    let r = provision(&mut t, &job(&backend));
    assert_eq!(r.outcome, "provisioned", "{r:?}");

    // A read-back mismatch: refused; the next run activates what was written.
    let mut u = FakeTarget::making_keys(chip, 8, 0xabcd_0000);
    u.corrupt_reads_at = Some(chip.partition + 0x10);
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

    // A lock that does not take is reported, not assumed, and the device
    // stays factory_only.
    let mut w = FakeTarget::making_keys(chip, 9, 0xabcd_0000);
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
    assert_eq!(status(&be.store, r.serial.unwrap()), "factory_only");
    w.lock_ignored = false;
    let r = provision(&mut w, &locking);
    assert_eq!((r.outcome, r.error), ("provisioned", None));
    assert!(w.protected);

    // Activation refused after the lock (the backend does not know this
    // authority): the chip is locked, the device stays factory_only.
    let strict = backend_with(vec![]);
    let strict_client = client(&strict.url);
    let mut x = FakeTarget::making_keys(chip, 10, 0xabcd_0000);
    let r = provision(
        &mut x,
        &Job {
            lock: true,
            ..job(&strict_client)
        },
    );
    assert!(
        r.error.as_deref().unwrap().contains("unknown_authority"),
        "{r:?}"
    );
    assert!(x.protected);
    assert_eq!(status(&strict.store, r.serial.unwrap()), "factory_only");

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
        let mut t = FakeTarget::making_keys(chip, 0x1000 + i, 0x5555_0000);
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
    // Unsigned bytes after the TLVs ride along with nothing: refused.
    let mut smuggled = std::fs::read(&signed).unwrap();
    smuggled.extend_from_slice(b"not signed");
    let with_tail = dir.path().join("tail.bin");
    std::fs::write(&with_tail, &smuggled).unwrap();
    let e =
        factory::image_check::check_firmware(&with_tail, &keys, Some(0xC000), chip).unwrap_err();
    assert!(e.to_string().contains("after"), "{e}");
    // Erased padding is fine.
    let mut padded = std::fs::read(&signed).unwrap();
    padded.extend_from_slice(&[0xff; 64]);
    std::fs::write(&with_tail, &padded).unwrap();
    factory::image_check::check_firmware(&with_tail, &keys, Some(0xC000), chip).unwrap();
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
    let mut t = FakeTarget::making_keys(chip, 0x0000_0003, 0x1234_5678);
    let r = provision(&mut t, &job);
    assert_eq!(r.outcome, "provisioned", "{r:?}");
    assert!(r.steps.iter().any(|s| s.step == "issue_certificate"));

    let partition = t.partition();
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
    // The certified key is the key the chip made.
    let device_key = factory::partition::key_block(&partition).unwrap();
    let sk = p256::SecretKey::from_slice(device_key.as_ref()).unwrap();
    use p256::pkcs8::EncodePublicKey;
    let pem = sk
        .public_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let cert_pub = openssl(&["x509", "-noout", "-pubkey", "-in", "dev.crt"]);
    assert_eq!(cert_pub.trim(), pem.trim());
}

#[test]
fn a_key_born_on_the_chip_is_never_read_back_to_authenticate_it() {
    let be = backend();
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let backend = client(&be.url);
    let mut t = FakeTarget::making_keys(chip, 0x31, 0x1234_5678);
    let r = provision(&mut t, &basic_job(chip, &backend, authority.as_ref()));
    assert_eq!(r.outcome, "provisioned", "{r:?}");
    t.reads.clear();
    let e = factory::device_auth::authenticate(&mut t, chip, &backend).unwrap_err();
    assert!(e.to_string().contains("over its UART"), "{e}");
    assert!(!read_key_region(&t, chip), "{:?}", t.reads);

    // A chip whose key the station made: the end-of-line check reads it back.
    let job = Job {
        key_origin: KeyOrigin::Station,
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut s = FakeTarget::new(chip, 0x32, 0x1234_5678);
    let r = provision(&mut s, &job);
    let serial = factory::device_auth::authenticate(&mut s, chip, &backend).unwrap();
    assert_eq!(Some(serial), r.serial);
}

#[test]
fn over_tls_the_station_trusts_only_the_backend_s_ca_and_never_sends_a_token_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let tls = signer::testing::TlsIdentity::create(dir.path()).unwrap();
    let be = backend_tls(&tls);
    assert!(be.url.starts_with("https://localhost:"));
    let table = ChipTable::builtin().unwrap();
    let chip = table.get("nrf52840").unwrap();
    let authority = authority();
    let transport = Transport {
        ca: Some(tls.ca.clone()),
        insecure_http: false,
    };
    let mut backend = Backend::connect(&be.url, Some(TOKEN.to_owned().into()), &transport).unwrap();
    backend.backoff = Duration::from_millis(5);
    let job = Job {
        production: true,
        lock: true,
        ..basic_job(chip, &backend, authority.as_ref())
    };
    let mut t = FakeTarget::making_keys(chip, 3, 0x1234_5678);
    let r = provision(&mut t, &job);
    assert_eq!(r.outcome, "provisioned", "{r:?}");
    assert_eq!(status(&be.store, 1), "active");

    // Not that CA (the system's roots, or another CA): the server is not
    // believed, and nothing reaches it.
    let other = tempfile::tempdir().unwrap();
    let stranger = signer::testing::TlsIdentity::create(other.path()).unwrap();
    for transport in [
        Transport::default(),
        Transport {
            ca: Some(stranger.ca.clone()),
            insecure_http: false,
        },
    ] {
        let mut b = match Backend::connect(&be.url, Some(TOKEN.to_owned().into()), &transport) {
            Ok(b) => b,
            // A system without CA certificates refuses before connecting.
            Err(e) => {
                assert!(e.to_string().contains("--ca"), "{e}");
                continue;
            }
        };
        b.attempts = 1;
        let e = b
            .provision(HwId::from_deviceid(7, 0), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("certificate") || e.contains("UnknownIssuer"),
            "{e}"
        );
    }
    assert!(be.store.device_by_serial(2).wait().unwrap().is_none());

    // Plain HTTP to the TLS port gets nowhere.
    let plain = be.url.replace("https://", "http://");
    let mut b =
        Backend::connect(&plain, Some(TOKEN.to_owned().into()), &Default::default()).unwrap();
    b.attempts = 1;
    assert!(b.provision(HwId::from_deviceid(8, 0), None).is_err());

    // Plain http:// to another host is refused before any connection,
    // unless asked for; --ca makes no sense there.
    for url in [
        "http://192.0.2.7:8080",
        "http://prov.example.com/",
        "http://user@10.1.2.3",
    ] {
        let e = Backend::connect(url, None, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing plain http://"), "{url}: {e}");
        let insecure = Transport {
            ca: None,
            insecure_http: true,
        };
        assert!(Backend::connect(url, None, &insecure).is_ok(), "{url}");
    }
    let e = Backend::connect(
        &plain,
        None,
        &Transport {
            ca: Some(tls.ca.clone()),
            insecure_http: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--ca is for an https://"), "{e}");
    let e = Backend::connect("ftp://x", None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("http:// or https://"), "{e}");
}
