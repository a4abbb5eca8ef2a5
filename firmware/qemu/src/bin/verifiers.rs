//! The verifiers alone, for the footprint benchmark (`bench/footprint.sh`):
//! with feature `record` it verifies the provisioning partition, with `image`
//! the image slot, against the authority keys compiled in; with neither it
//! only reads the flash it would check, the baseline. With `sign` it also
//! answers a challenge with the device signer (`firmware::auth::sign_auth`);
//! with `ed25519` or `p384` it runs one verification of that kind. Nothing is printed, so
//! the size difference to the baseline is the verifiers' code and tables and
//! nothing of a console's formatting.
#![no_std]
#![no_main]

use core::hint::black_box;

use boot_stage::exit;
use cortex_m_rt::entry;
// Linked in every variant (its panic handler), used only with the features.
use firmware as _;

include!(concat!(env!("OUT_DIR"), "/keys.rs"));

#[entry]
fn main() -> ! {
    // SAFETY: on-chip flash, mapped and readable; the address is opaque to the
    // optimiser so nothing is folded away.
    let flash: &[u8] = unsafe {
        core::slice::from_raw_parts(
            black_box(boot_stage::nrf51::PROVISIONING_PARTITION as usize) as *const u8,
            0x1000,
        )
    };
    #[allow(unused_mut)]
    let mut verdict = u32::from(flash[0]);
    #[cfg(any(feature = "record", feature = "image"))]
    {
        let mut keys = [None; 4];
        for (slot, raw) in keys.iter_mut().zip(PROV_AUTHORITIES) {
            *slot = firmware::P256PublicKey::from_sec1(raw).ok();
        }
        let Some(first) = keys[0] else {
            exit(false);
        };
        let keys = keys.map(|k| k.unwrap_or(first));
        #[cfg(feature = "record")]
        {
            let chip = firmware::record::HwId::from_deviceid(black_box(3), black_box(0x1234_5678));
            verdict += u32::from(firmware::record::verify_provisioning(flash, chip, &keys).is_ok());
        }
        #[cfg(feature = "image")]
        {
            // SAFETY: as above.
            let slot: &[u8] = unsafe {
                core::slice::from_raw_parts(black_box(0x0000_8000usize) as *const u8, 0x3_0000)
            };
            let ok = firmware::image::Image::parse(slot).and_then(|i| i.verify(&keys, None));
            verdict += u32::from(ok.is_ok());
        }
    }
    // One Ed25519 verification (feature `ed25519`) of a message in flash,
    // with a key and signature read from flash.
    #[cfg(feature = "ed25519")]
    {
        let key = firmware::keys::ed25519::Ed25519PublicKey::from_bytes(&flash[64..96]);
        let ok = key.and_then(|k| k.verify(&flash[128..1024], &flash[1024..1088]));
        verdict += u32::from(ok.is_ok());
    }
    // One ECDSA P-384 verification (feature `p384`) of a SHA-384 digest.
    #[cfg(feature = "p384")]
    {
        let digest: [u8; 48] = black_box([0x33; 48]);
        let key = firmware::keys::p384::P384PublicKey::from_sec1(&flash[256..353]);
        let ok = key.and_then(|k| k.verify_digest_der(&digest, &flash[512..616]));
        verdict += u32::from(ok.is_ok());
    }
    // An encrypted image's key unwrapped with the device's X25519 key and a
    // block of payload decrypted (feature `enc-x25519`).
    #[cfg(feature = "enc-x25519")]
    {
        use firmware::image::enc::{ctr_apply, unwrap_key, EncScheme, EncTlv};
        let secret = x25519_dalek::StaticSecret::from(black_box([0x44u8; 32]));
        let mut peer = [0u8; 32];
        peer.copy_from_slice(&flash[64..96]);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        let mut key = [0u8; 32];
        if let Ok(tlv) = EncTlv::parse(EncScheme::EciesX25519, &flash[128..208], 16) {
            verdict += u32::from(unwrap_key(&tlv, shared.as_bytes(), &mut key).is_ok());
        }
        let mut block = [0u8; 64];
        block.copy_from_slice(&flash[256..320]);
        verdict += u32::from(ctr_apply(&key[..16], black_box(16), &mut block).is_ok());
        verdict += u32::from(block[5]);
    }
    // The same with the device's P-256 key (feature `enc-p256`, ECIES-P256),
    // as the boot stage built with `enc` does it.
    #[cfg(feature = "enc-p256")]
    {
        use firmware::image::enc::{unwrap_p256, EncScheme, EncTlv};
        if let Ok(tlv) = EncTlv::parse(EncScheme::EciesP256, &flash[160..273], 16) {
            if let Ok(key) = unwrap_p256(&tlv, &black_box([0x11u8; 32])) {
                let mut block = [0u8; 64];
                block.copy_from_slice(&flash[512..576]);
                key.keystream().apply(&mut block);
                verdict += u32::from(block[5]);
            }
        }
    }
    // The device signer alone (feature `sign`): an answer to a challenge.
    #[cfg(feature = "sign")]
    {
        let scalar: [u8; 32] = black_box([0x11; 32]);
        let nonce: [u8; 32] = black_box([0x22; 32]);
        let chip = firmware::record::HwId::from_deviceid(black_box(3), black_box(0x1234_5678));
        let answer = firmware::auth::sign_auth(&scalar, &nonce, chip, black_box(7));
        verdict += answer.map_or(0, |sig| u32::from(sig[0]));
    }
    black_box(verdict);
    exit(true);
}
