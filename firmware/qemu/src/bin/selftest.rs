//! On-target self-test of the P-256 verifier this target builds with (the
//! `p256-cm4` backend on Cortex-M4): every Wycheproof ECDSA P-256/SHA-256
//! vector, raw `r ‖ s` and DER, through the firmware crate's public API, plus
//! the provisioning-record known answer, and one answer of the device signer
//! (`AUTHSIG`, checked on the host with OpenSSL). Built with the features
//! `ed25519` and `p384`, also every Wycheproof Ed25519 vector (RFC 8032's
//! among them) and every ECDSA P-384/SHA-384 DER vector. Run on QEMU's `mps2-an386`
//! (Cortex-M4) by `firmware/qemu/selftest.sh`; prints
//! `SELFTEST backend=… vectors=N failed=F` and exits 0 only if F is 0.
#![no_std]
#![no_main]

use boot_stage::exit;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use firmware::P256PublicKey;
use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/keys.rs"));

static VECTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vectors.bin"));
#[cfg(feature = "ed25519")]
static VECTORS_ED25519: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vectors-ed25519.bin"));
#[cfg(feature = "p384")]
static VECTORS_P384: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vectors-p384.bin"));

/// Run one list of `build.rs`'s `more_vectors` through `accepts(key,
/// message, signature)`; returns (vectors, failed).
#[cfg(any(feature = "ed25519", feature = "p384"))]
fn run_list(
    name: &str,
    mut data: &[u8],
    accepts: impl Fn(&[u8], &[u8], &[u8]) -> bool,
) -> (u32, u32) {
    let (mut vectors, mut failed) = (0u32, 0u32);
    loop {
        let key_len = u16_at(&mut data);
        if key_len == 0xffff {
            break;
        }
        let key = take(&mut data, key_len);
        for _ in 0..u16_at(&mut data) {
            let valid = take(&mut data, 1)[0] == 1;
            let (msg_len, sig_len) = (u16_at(&mut data), u16_at(&mut data));
            let msg = take(&mut data, msg_len);
            let sig = take(&mut data, sig_len);
            vectors += 1;
            if accepts(key, msg, sig) != valid {
                failed += 1;
                hprintln!("FAIL {} vector {} expected {}", name, vectors, valid);
            }
        }
    }
    (vectors, failed)
}
/// The known-answer record (tests/data/records/qemu-microbit.bin): serial 1,
/// hw_id 1234567800000003, signed by tests/data/records/authority.pem.
static RECORD: &[u8] = include_bytes!("../../../../tests/data/records/qemu-microbit.bin");

/// The fixed challenge the device signer answers (firmware/tests/qemu_boot.rs
/// repeats these to check the answer).
const AUTH_SCALAR: [u8; 32] = [0x11; 32];
const AUTH_NONCE: [u8; 32] = [0x22; 32];
const AUTH_SERIAL: u32 = 7;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn u16_at(data: &mut &[u8]) -> usize {
    let b = take(data, 2);
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

#[entry]
fn main() -> ! {
    let (mut vectors, mut failed) = (0u32, 0u32);
    let mut data = VECTORS;
    while data[0] != 0xff {
        let kind = take(&mut data, 1)[0];
        let key = P256PublicKey::from_sec1(take(&mut data, 65));
        let tests = u16_at(&mut data);
        for _ in 0..tests {
            let valid = take(&mut data, 1)[0] == 1;
            let (msg_len, sig_len) = (u16_at(&mut data), u16_at(&mut data));
            let digest: [u8; 32] = Sha256::digest(take(&mut data, msg_len)).into();
            let sig = take(&mut data, sig_len);
            let accepted = match (&key, kind) {
                (Ok(k), 0) => <&[u8; 64]>::try_from(sig)
                    .is_ok_and(|raw| k.verify_digest_raw(&digest, raw).is_ok()),
                (Ok(k), _) => k.verify_digest_der(&digest, sig).is_ok(),
                (Err(_), _) => false,
            };
            vectors += 1;
            if accepted != valid {
                failed += 1;
                hprintln!("FAIL vector {} kind {} expected {}", vectors, kind, valid);
            }
        }
    }

    #[cfg(feature = "ed25519")]
    {
        use firmware::keys::ed25519::Ed25519PublicKey;
        let (n, f) = run_list("ed25519", VECTORS_ED25519, |key, msg, sig| {
            Ed25519PublicKey::from_bytes(key).is_ok_and(|k| k.verify(msg, sig).is_ok())
        });
        hprintln!("ED25519 vectors={} failed={}", n, f);
        vectors += n;
        failed += f;
    }
    #[cfg(feature = "p384")]
    {
        use firmware::keys::p384::P384PublicKey;
        let (n, f) = run_list("p384", VECTORS_P384, |key, msg, sig| {
            let digest: [u8; 48] = sha2::Sha384::digest(msg).into();
            P384PublicKey::from_sec1(key).is_ok_and(|k| k.verify_digest_der(&digest, sig).is_ok())
        });
        hprintln!("P384 vectors={} failed={}", n, f);
        vectors += n;
        failed += f;
    }

    // The record known answer: valid for its chip, refused for another chip
    // and when one bit of it changes.
    let authorities: [P256PublicKey; 1] = match P256PublicKey::from_sec1(&PROV_AUTHORITIES[0]) {
        Ok(k) => [k],
        Err(_) => {
            hprintln!("SELFTEST no authority key");
            exit(false);
        }
    };
    let chip = firmware::record::HwId::from_deviceid(0x0000_0003, 0x1234_5678);
    let other = firmware::record::HwId::from_deviceid(0x0000_0004, 0x1234_5678);
    let mut flipped = [0u8; 208];
    flipped.copy_from_slice(&RECORD[..208]);
    flipped[40] ^= 1;
    let checks = [
        firmware::record::verify_provisioning(RECORD, chip, &authorities)
            .is_ok_and(|p| p.body.serial == 1),
        firmware::record::verify_provisioning(RECORD, other, &authorities).is_err(),
        firmware::record::verify_provisioning(&flipped, chip, &authorities).is_err(),
    ];
    for (i, ok) in checks.iter().enumerate() {
        vectors += 1;
        if !ok {
            failed += 1;
            hprintln!("FAIL record check {}", i);
        }
    }

    // The device signer as built for this core: an answer to a fixed
    // challenge, checked against its own verifier here and printed for the
    // host to check with OpenSSL (firmware/tests/qemu_boot.rs).
    match firmware::auth::sign_auth(&AUTH_SCALAR, &AUTH_NONCE, chip, AUTH_SERIAL) {
        Ok(sig) => {
            let mut text = [0u8; 128];
            for (pair, &b) in text.chunks_exact_mut(2).zip(sig.iter()) {
                pair.copy_from_slice(&firmware::text::hex_pair(b));
            }
            hprintln!("AUTHSIG {}", core::str::from_utf8(&text).unwrap_or(""));
        }
        Err(_) => {
            failed += 1;
            hprintln!("FAIL auth signature");
        }
    }

    hprintln!(
        "SELFTEST backend={} vectors={} failed={}",
        firmware::keys::BACKEND,
        vectors,
        failed
    );
    exit(failed == 0);
}
