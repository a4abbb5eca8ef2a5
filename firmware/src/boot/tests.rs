//! The boot decision against a simulated NOR flash, with imgtool's images
//! (tests/data/boot, 8 KiB slots): every outcome, and a power cut at every
//! erase and write of an upgrade, torn as real flash tears.

use std::vec::Vec;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;

use super::*;
use crate::image::ImageVersion;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

const LAYOUT: Layout = Layout {
    primary: Region {
        start: 0x8000,
        len: 0x2000,
    },
    secondary: Region {
        start: 0xA000,
        len: 0x2000,
    },
    counter: CounterLog { start: 0xC000 },
    ram: Layout::MICROBIT.ram,
};
const PAGE: u32 = 0x400;
const FLASH_END: u32 = 0xC800;

/// NOR flash in memory that can lose power after a given number of erases
/// and writes. The interrupted operation is torn: a write clears only some
/// of the bits it should, an erase resets only some words of the page.
#[derive(Clone)]
struct Nor {
    mem: Vec<u8>,
    ops_left: Option<usize>,
    off: bool,
    ops: usize,
    seed: u64,
}

impl Nor {
    fn new() -> Self {
        Self {
            mem: std::vec![0xff; FLASH_END as usize],
            ops_left: None,
            off: false,
            ops: 0,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn put(&mut self, addr: u32, bytes: &[u8]) {
        self.mem[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn random(&mut self) -> u32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed as u32
    }

    /// Count the operation; `Some(torn)` when the power goes now.
    fn step(&mut self, addr: u32, op: &'static str) -> Result<bool, FlashError> {
        if self.off {
            return Err(FlashError { op, addr });
        }
        self.ops += 1;
        match &mut self.ops_left {
            Some(0) => {
                self.off = true;
                Ok(true)
            }
            Some(n) => {
                *n -= 1;
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Power back on, as a fresh boot.
    fn power_on(&mut self) {
        self.off = false;
        self.ops_left = None;
    }
}

impl Flash for Nor {
    fn page_size(&self) -> u32 {
        PAGE
    }

    fn read(&self, addr: u32, len: u32) -> &[u8] {
        &self.mem[addr as usize..(addr + len) as usize]
    }

    fn erase_page(&mut self, addr: u32) -> Result<(), FlashError> {
        assert_eq!(addr % PAGE, 0, "erase of an unaligned page");
        let torn = self.step(addr, "erase")?;
        for w in 0..PAGE / 4 {
            if !torn || self.random().is_multiple_of(2) {
                self.put(addr + 4 * w, &[0xff; 4]);
            }
        }
        if torn {
            return Err(FlashError { op: "erase", addr });
        }
        Ok(())
    }

    fn write_word(&mut self, addr: u32, word: u32) -> Result<(), FlashError> {
        assert_eq!(addr % 4, 0, "unaligned write");
        let torn = self.step(addr, "write")?;
        let old = u32::from_le_bytes(self.read(addr, 4).try_into().unwrap());
        let new = if torn {
            old & (word | self.random())
        } else {
            old & word
        };
        self.put(addr, &new.to_le_bytes());
        if torn {
            return Err(FlashError { op: "write", addr });
        }
        Ok(())
    }
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(std::format!("{DATA}{name}")).unwrap()
}

fn keys() -> [P256PublicKey; 1] {
    let pem = std::fs::read_to_string(std::format!("{DATA}images/dev-key.pub.pem")).unwrap();
    let key = p256::PublicKey::from_public_key_pem(&pem).unwrap();
    [P256PublicKey::from_sec1(key.to_encoded_point(false).as_bytes()).unwrap()]
}

/// v1 (counter 1) in the primary, `upgrade` in the secondary.
fn chip(upgrade: Option<&str>) -> Nor {
    let mut nor = Nor::new();
    nor.put(LAYOUT.primary.start, &data("boot/v1.bin"));
    if let Some(name) = upgrade {
        nor.put(LAYOUT.secondary.start, &data(&std::format!("boot/{name}")));
    }
    nor
}

fn version(d: &Decision) -> std::string::String {
    std::format!("{}", d.primary.unwrap().verified.version)
}

fn secondary_erased(nor: &Nor) -> bool {
    nor.read(LAYOUT.secondary.start, LAYOUT.secondary.len)
        .iter()
        .all(|&b| b == 0xff)
}

#[test]
fn primary_boots_and_sets_the_counter() {
    let mut nor = chip(None);
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert_eq!(d.upgrade, Upgrade::None);
    assert_eq!(version(&d), "1.0.0+0");
    assert_eq!(d.min_counter, 1);
    assert_eq!(LAYOUT.counter.read(&nor), 1);
}

#[test]
fn pending_upgrades_install_and_raise_the_counter() {
    for name in ["v2-pending.bin", "v2-confirmed.bin"] {
        let mut nor = chip(Some(name));
        let d = decide(&mut nor, &LAYOUT, &keys(), None);
        assert!(matches!(d.upgrade, Upgrade::Installed(_)), "{name}: {d:?}");
        assert_eq!(version(&d), "2.0.0+0");
        assert_eq!(d.min_counter, 2);
        assert!(secondary_erased(&nor));
        // And the next boot starts the same image, with nothing to install.
        let again = decide(&mut nor, &LAYOUT, &keys(), None);
        assert_eq!(
            (again.upgrade, version(&again)),
            (Upgrade::None, "2.0.0+0".into())
        );
    }
}

#[test]
fn an_image_without_a_pending_mark_is_left_alone() {
    let mut nor = chip(None);
    nor.put(LAYOUT.secondary.start, &data("boot/v1.bin"));
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert_eq!(d.upgrade, Upgrade::None);
    assert!(!secondary_erased(&nor));
}

#[test]
fn refused_upgrades_leave_the_primary_untouched() {
    let mut with_counter = chip(None);
    decide(&mut with_counter, &LAYOUT, &keys(), None); // counter 1
    let cases = [
        ("v0-pending.bin", Refusal::Rollback),
        ("unsigned-pending.bin", Refusal::NoSignature),
        ("other-key-pending.bin", Refusal::UnknownKey),
    ];
    for (name, refusal) in cases {
        let mut nor = with_counter.clone();
        nor.put(LAYOUT.secondary.start, &data(&std::format!("boot/{name}")));
        let before = nor.read(LAYOUT.primary.start, LAYOUT.primary.len).to_vec();
        let d = decide(&mut nor, &LAYOUT, &keys(), None);
        assert_eq!(d.upgrade, Upgrade::Refused(refusal), "{name}");
        assert_eq!(version(&d), "1.0.0+0", "{name}");
        assert_eq!(nor.read(LAYOUT.primary.start, LAYOUT.primary.len), before);
        assert!(
            !upgrade_pending(&nor, &LAYOUT),
            "{name} is no longer pending"
        );
        assert_eq!(d.min_counter, 1);
    }
}

#[test]
fn an_image_without_a_counter_counts_as_zero() {
    // Nothing stored yet: the counter is 0, so the image installs.
    let mut nor = chip(Some("nocnt-pending.bin"));
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert!(matches!(d.upgrade, Upgrade::Installed(_)), "{d:?}");
    assert_eq!((version(&d), d.min_counter), ("3.0.0+0".into(), 0));
    // Once v1 (counter 1) has booted, the same image is a rollback.
    let mut nor = chip(None);
    decide(&mut nor, &LAYOUT, &keys(), None);
    nor.put(LAYOUT.secondary.start, &data("boot/nocnt-pending.bin"));
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert_eq!(d.upgrade, Upgrade::Refused(Refusal::Rollback));
}

#[test]
fn an_image_larger_than_the_slot_is_refused() {
    let mut nor = chip(None);
    let big = data("boot/big-unpadded.bin");
    let fits = (LAYOUT.secondary.len - 16) as usize;
    nor.put(LAYOUT.secondary.start, &big[..fits]);
    nor.put(LAYOUT.secondary.end() - 16, &crate::image::BOOT_MAGIC);
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert_eq!(d.upgrade, Upgrade::Refused(Refusal::TooLarge));
    assert_eq!(version(&d), "1.0.0+0");
}

#[test]
fn primary_refusals_have_their_codes() {
    let k = keys();
    let check = |nor: &Nor| check_slot(nor, &LAYOUT, LAYOUT.primary, &k, 0).map(|_| ());
    assert_eq!(check(&Nor::new()), Err(Refusal::NoImage));
    assert_eq!(check(&chip(None)), Ok(()));
    let mut nor = chip(None);
    nor.put(LAYOUT.primary.start, &[0x3c]);
    assert_eq!(check(&nor), Err(Refusal::BadMagic));
    let mut nor = chip(None);
    nor.put(LAYOUT.primary.start + 0x220, &[0x00]);
    assert_eq!(check(&nor), Err(Refusal::BadHash));
    // No keys built in: nothing boots.
    assert_eq!(
        check_slot(&chip(None), &LAYOUT, LAYOUT.primary, &[], 0).map(|_| ()),
        Err(Refusal::UnknownKey)
    );
    // Counter 1 is below a stored 2.
    assert_eq!(
        check_slot(&chip(None), &LAYOUT, LAYOUT.primary, &k, 2).map(|_| ()),
        Err(Refusal::Rollback)
    );
}

#[test]
fn every_changed_byte_of_a_signed_image_is_refused() {
    let k = keys();
    let image = data("boot/v1.bin");
    for at in (0..image.len())
        .step_by(7)
        .chain([0x200, 0x201, 0x204, image.len() - 1])
    {
        let mut nor = chip(None);
        let mut bad = image.clone();
        bad[at] ^= 0x04;
        nor.put(LAYOUT.primary.start, &bad);
        let r = check_slot(&nor, &LAYOUT, LAYOUT.primary, &k, 0);
        assert!(r.is_err(), "byte {at:#x} changed, still accepted");
    }
}

/// Every cut point of an install (and a second cut in the boot after it):
/// the next boot always starts a verified image, v2 once the primary slot
/// was touched, and the counter never goes down.
#[test]
fn a_power_cut_anywhere_in_an_upgrade_leaves_a_chip_that_boots() {
    power_cuts_in("v2-pending.bin", None);
}

/// The same for an encrypted upgrade, decrypted as it is copied.
#[cfg(feature = "enc")]
#[test]
fn a_power_cut_anywhere_in_an_encrypted_upgrade_leaves_a_chip_that_boots() {
    power_cuts_in("v2-enc-pending.bin", Some(&device_key("device-key")));
}

fn power_cuts_in(upgrade: &str, dev: Option<&[u8; 32]>) {
    let k = keys();
    let mut base = chip(Some(upgrade));
    LAYOUT.counter.raise(&mut base, 1).unwrap();
    base.ops = 0;
    let mut whole = base.clone();
    decide(&mut whole, &LAYOUT, &k, dev);
    let total = whole.ops;
    assert!(total > 20, "an install takes {total} flash operations");
    for cut in 0..total {
        for second_cut in [None, Some(cut % 7 + 1)] {
            let mut nor = base.clone();
            nor.seed ^= cut as u64;
            nor.ops_left = Some(cut);
            decide(&mut nor, &LAYOUT, &k, dev);
            assert!(nor.off, "cut {cut} of {total} did not happen");
            let mut min = LAYOUT.counter.read(&nor);
            assert!(min >= 1, "cut {cut}: counter went down to {min}");
            if let Some(n) = second_cut {
                nor.power_on();
                nor.ops_left = Some(n);
                decide(&mut nor, &LAYOUT, &k, dev);
                min = LAYOUT.counter.read(&nor);
                assert!(min >= 1);
            }
            nor.power_on();
            let d = decide(&mut nor, &LAYOUT, &k, dev);
            let booted = d
                .primary
                .unwrap_or_else(|r| panic!("cut {cut} then {second_cut:?}: {r:?}"));
            assert_eq!(
                booted.verified.version,
                ImageVersion {
                    major: 2,
                    ..ImageVersion::default()
                },
                "cut {cut}: the primary was being replaced, so v2 must complete"
            );
            assert_eq!(d.min_counter, 2);
            assert!(!upgrade_pending(&nor, &LAYOUT));
        }
    }
}

#[test]
fn the_counter_log_survives_torn_records_and_page_switches() {
    let log = LAYOUT.counter;
    let mut nor = Nor::new();
    assert_eq!(log.read(&nor), 0);
    let mut expect = 0;
    // 300 raises: more than two pages of records, so the log switches pages.
    for v in 1..=300u32 {
        let mut cut = nor.clone();
        cut.seed ^= u64::from(v);
        cut.ops_left = Some(v as usize % 3);
        let _ = log.raise(&mut cut, v);
        let seen = log.read(&cut);
        assert!(
            seen == expect || seen == v,
            "torn raise to {v} reads {seen}"
        );
        log.raise(&mut nor, v).unwrap();
        expect = v;
        assert_eq!(log.read(&nor), v);
        // Lower values change nothing.
        log.raise(&mut nor, v / 2).unwrap();
        assert_eq!(log.read(&nor), v);
    }
    // A torn write of a record (the check word missing) reads as the old value.
    let mut nor = Nor::new();
    log.raise(&mut nor, 5).unwrap();
    nor.put(LAYOUT.counter.start + 8, &9u32.to_le_bytes());
    assert_eq!(log.read(&nor), 5);
    log.raise(&mut nor, 6).unwrap();
    assert_eq!(log.read(&nor), 6);
}

/// A chip's own P-256 private key, as its key block holds it.
#[cfg(feature = "enc")]
fn device_key(name: &str) -> [u8; 32] {
    use p256::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(std::format!("{DATA}boot/{name}.pem")).unwrap();
    p256::SecretKey::from_pkcs8_pem(&pem)
        .unwrap()
        .to_bytes()
        .into()
}

#[cfg(feature = "enc")]
#[test]
fn encrypted_upgrades_are_decrypted_into_the_primary_slot() {
    let dev = device_key("device-key");
    let plain = data("boot/v2-pending.bin");
    for name in ["v2-enc-pending.bin", "v2-enc256-pending.bin"] {
        let mut nor = chip(Some(name));
        let d = decide(&mut nor, &LAYOUT, &keys(), Some(&dev));
        assert!(matches!(d.upgrade, Upgrade::Installed(_)), "{name}: {d:?}");
        assert_eq!((version(&d), d.min_counter), ("2.0.0+0".into(), 2));
        // The payload that runs is imgtool's plaintext (the same input as
        // v2-pending.bin's), not the ciphertext.
        let payload = 0x200..0x200 + 3000;
        let primary = nor.read(LAYOUT.primary.start, LAYOUT.primary.len);
        assert_eq!(primary[payload.clone()], plain[payload.clone()], "{name}");
        assert_ne!(
            primary[payload.clone()],
            data(&std::format!("boot/{name}"))[payload],
            "{name}"
        );
        assert!(secondary_erased(&nor));
        // The installed image keeps its flags and boots as plaintext.
        let again = decide(&mut nor, &LAYOUT, &keys(), Some(&dev));
        assert_eq!(
            (again.upgrade, version(&again)),
            (Upgrade::None, "2.0.0+0".into())
        );
    }
}

#[cfg(feature = "enc")]
#[test]
fn encrypted_upgrades_for_another_chip_or_tampered_are_refused() {
    let dev = device_key("device-key");
    let enc = data("boot/v2-enc-pending.bin");
    let tail = Image::parse(&enc).unwrap();
    let payload = tail.payload_range();
    let enc_tlv = tail
        .tlvs()
        .find(|t| t.kind == crate::image::tlv::ENCEC256)
        .unwrap();
    let mut flipped_ciphertext = enc.clone();
    flipped_ciphertext[payload.start + 100] ^= 1;
    let mut flipped_vector = enc.clone();
    flipped_vector[payload.start + 4] ^= 0x10;
    let mut flipped_wrap = enc.clone();
    flipped_wrap[enc_tlv.offset + 4 + 70] ^= 1;
    let mut flipped_ephemeral = enc.clone();
    flipped_ephemeral[enc_tlv.offset + 4 + 10] ^= 1;
    let other = data("boot/v2-enc-other-pending.bin");
    type Case<'a> = (&'a str, &'a [u8], Option<&'a [u8; 32]>, Refusal);
    let cases: [Case<'_>; 7] = [
        ("another chip's copy", &other, Some(&dev), Refusal::EncKey),
        ("a chip without a key", &enc, None, Refusal::EncKey),
        (
            "a flipped ciphertext byte",
            &flipped_ciphertext,
            Some(&dev),
            Refusal::BadHash,
        ),
        (
            "a flipped vector table byte",
            &flipped_vector,
            Some(&dev),
            Refusal::BadHash,
        ),
        (
            "a flipped wrapped-key byte",
            &flipped_wrap,
            Some(&dev),
            Refusal::EncKey,
        ),
        (
            "a flipped ephemeral-key byte",
            &flipped_ephemeral,
            Some(&dev),
            Refusal::EncKey,
        ),
        // Someone else's chip key on this chip: same refusal.
        (
            "the other chip's key",
            &enc,
            Some(&device_key("other-device-key")),
            Refusal::EncKey,
        ),
    ];
    let mut booted = chip(None);
    decide(&mut booted, &LAYOUT, &keys(), Some(&dev));
    for (what, image, key, refusal) in cases {
        let mut nor = booted.clone();
        nor.put(LAYOUT.secondary.start, image);
        let before = nor.read(LAYOUT.primary.start, LAYOUT.primary.len).to_vec();
        let d = decide(&mut nor, &LAYOUT, &keys(), key);
        assert_eq!(d.upgrade, Upgrade::Refused(refusal), "{what}");
        assert_eq!(version(&d), "1.0.0+0", "{what}");
        assert_eq!(
            nor.read(LAYOUT.primary.start, LAYOUT.primary.len),
            before,
            "{what}"
        );
        assert!(!upgrade_pending(&nor, &LAYOUT), "{what}");
    }
    assert_eq!(Refusal::EncKey.code(), "enc-key");
}

/// A chip whose only image is another chip's copy: nothing starts, and the
/// boot says why.
#[cfg(feature = "enc")]
#[test]
fn with_an_empty_primary_the_refused_upgrade_is_the_reason() {
    let mut nor = Nor::new();
    nor.put(
        LAYOUT.secondary.start,
        &data("boot/v2-enc-other-pending.bin"),
    );
    let d = decide(&mut nor, &LAYOUT, &keys(), Some(&device_key("device-key")));
    assert_eq!(d.upgrade, Upgrade::Refused(Refusal::EncKey));
    assert_eq!(d.primary.map(|_| ()), Err(Refusal::EncKey));
    // The next boot has nothing pending: the slot is simply empty.
    let again = decide(&mut nor, &LAYOUT, &keys(), Some(&device_key("device-key")));
    assert_eq!(again.primary.map(|_| ()), Err(Refusal::NoImage));
}

/// An encrypted image in the primary slot is not decrypted there: only an
/// upgrade is, on its way in.
#[cfg(feature = "enc")]
#[test]
fn ciphertext_in_the_primary_slot_does_not_boot() {
    let mut nor = Nor::new();
    nor.put(LAYOUT.primary.start, &data("boot/v2-enc-pending.bin"));
    let d = decide(&mut nor, &LAYOUT, &keys(), Some(&device_key("device-key")));
    assert_eq!(d.primary.map(|_| ()), Err(Refusal::BadHash));
}

#[cfg(not(feature = "enc"))]
#[test]
fn without_enc_an_encrypted_upgrade_is_refused() {
    let mut nor = chip(Some("v2-enc-pending.bin"));
    let d = decide(&mut nor, &LAYOUT, &keys(), None);
    assert_eq!(d.upgrade, Upgrade::Refused(Refusal::BadHeader));
    assert_eq!(version(&d), "1.0.0+0");
}

proptest::proptest! {
    #[test]
    fn any_slot_contents_get_a_verdict_not_a_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
        magic in proptest::bool::ANY,
    ) {
        let mut nor = chip(None);
        let mut b = bytes;
        if magic && b.len() >= 4 {
            b[..4].copy_from_slice(&crate::image::IMAGE_MAGIC.to_le_bytes());
        }
        nor.put(LAYOUT.secondary.start, &b);
        nor.put(LAYOUT.secondary.end() - 16, &crate::image::BOOT_MAGIC);
        let d = decide(&mut nor, &LAYOUT, &keys(), None);
        proptest::prop_assert!(matches!(d.upgrade, Upgrade::Refused(_)));
        proptest::prop_assert_eq!(version(&d), "1.0.0+0");
    }
}

/// Encrypted upgrades with any bytes in their ENC TLV, payload or header
/// flags, decrypted with a chip key: a verdict, never a panic, and never an
/// install.
#[cfg(feature = "enc")]
mod encrypted_fuzz {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        #[test]
        fn any_encrypted_upgrade_gets_a_verdict_not_a_panic(
            edits in proptest::collection::vec((0usize..8192, proptest::num::u8::ANY), 1..16),
            flags in proptest::sample::select(&[4u8, 8, 12][..]),
        ) {
            let dev = device_key("device-key");
            let mut image = data("boot/v2-enc-pending.bin");
            let tlvs = Image::parse(&image).unwrap().payload_range().end;
            // Mostly in the TLV area (the ENC TLV), some anywhere, but never
            // in the pending mark (the last 16 bytes): the upgrade stays
            // pending, so it must be installed or refused.
            let end = image.len() - crate::image::BOOT_MAGIC_SIZE;
            for (i, (at, byte)) in edits.into_iter().enumerate() {
                let at = if i % 2 == 0 { tlvs + at % (end - tlvs) } else { at % end };
                image[at] = byte;
            }
            image[16] = (image[16] & !0x0c) | flags;
            let mut nor = chip(None);
            nor.put(LAYOUT.secondary.start, &image);
            let d = decide(&mut nor, &LAYOUT, &keys(), Some(&dev));
            // Installing would need a valid signature over changed bytes
            // (or changes only in the padding past the TLVs).
            if let Upgrade::Installed(_) = d.upgrade {
                proptest::prop_assert_eq!(version(&d), "2.0.0+0");
            } else {
                proptest::prop_assert!(matches!(d.upgrade, Upgrade::Refused(_)));
                proptest::prop_assert_eq!(version(&d), "1.0.0+0");
            }
        }
    }
}
