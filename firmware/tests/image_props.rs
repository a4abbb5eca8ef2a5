//! The image parser and verifier never panic, whatever the bytes, and every
//! mutation of a signed image's hashed region or signature is refused.
#![allow(clippy::unwrap_used)]

use firmware::image::{
    tlv, tlv_header, tlv_info, Image, ImageHeader, TLV_INFO_MAGIC, TLV_PROT_INFO_MAGIC,
};
use firmware::P256PublicKey;
use p256::ecdsa::{signature::hazmat::PrehashSigner, Signature, SigningKey};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn signing_key() -> (SigningKey, P256PublicKey) {
    let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let pk =
        P256PublicKey::from_sec1(sk.verifying_key().to_encoded_point(false).as_bytes()).unwrap();
    (sk, pk)
}

/// A small signed image with a security counter, built from the format's own
/// encoders (the layout itself is checked against imgtool in keytool's tests).
fn signed_image(payload: &[u8]) -> Vec<u8> {
    let (sk, pk) = signing_key();
    let mut prot = tlv_info(TLV_PROT_INFO_MAGIC, 12).to_vec();
    prot.extend_from_slice(&tlv_header(tlv::SEC_CNT, 4));
    prot.extend_from_slice(&5u32.to_le_bytes());
    let header = ImageHeader {
        load_addr: 0,
        header_size: 32,
        protected_tlv_size: 12,
        image_size: payload.len() as u32,
        flags: 0,
        version: "1.2.3".parse().unwrap(),
    };
    let mut img = header.to_bytes().to_vec();
    img.extend_from_slice(payload);
    img.extend_from_slice(&prot);
    let digest: [u8; 32] = Sha256::digest(&img).into();
    let sig: Signature = sk.sign_prehash(&digest).unwrap();
    let der = sig.to_der();
    let mut body = Vec::new();
    body.extend_from_slice(&tlv_header(tlv::SHA256, 32));
    body.extend_from_slice(&digest);
    body.extend_from_slice(&tlv_header(tlv::KEYHASH, 32));
    body.extend_from_slice(&pk.key_id());
    body.extend_from_slice(&tlv_header(tlv::ECDSASIG, der.len() as u16));
    body.extend_from_slice(der.as_bytes());
    img.extend_from_slice(&tlv_info(TLV_INFO_MAGIC, body.len() as u16 + 4));
    img.extend_from_slice(&body);
    img
}

fn check_everything(bytes: &[u8]) {
    let (_, pk) = signing_key();
    if let Ok(image) = Image::parse(bytes) {
        let _ = image.verify(&[pk], Some(1));
        let _ = image.verify::<firmware::P256PublicKey>(&[], None);
        let _ = image.tail();
        let _ = image.security_counter();
        for t in image.tlvs() {
            assert!(t.offset + 4 + t.value.len() <= bytes.len());
        }
    }
}

#[test]
fn the_reference_image_verifies() {
    let (_, pk) = signing_key();
    let img = signed_image(b"hello, nRF");
    let v = Image::parse(&img).unwrap().verify(&[pk], Some(5)).unwrap();
    assert_eq!(v.signed_by, Some(0));
    assert_eq!(v.security_counter, Some(5));
    assert_eq!(v.version.to_string(), "1.2.3+0");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_everything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300), size in 0u32..400, prot in any::<u16>()) {
        let h = ImageHeader { load_addr: 0, header_size: 32, protected_tlv_size: prot, image_size: size, flags: 0, version: Default::default() };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&tail);
        check_everything(&b);
    }

    #[test]
    fn mutations_of_a_signed_image_never_panic_and_are_refused(
        at in any::<prop::sample::Index>(), value in any::<u8>(), cut in any::<prop::sample::Index>(), truncate in any::<bool>()
    ) {
        let (_, pk) = signing_key();
        let good = signed_image(b"payload bytes of a tiny firmware");
        let mut bad = good.clone();
        let i = at.index(bad.len());
        bad[i] = value;
        if truncate {
            bad.truncate(cut.index(bad.len()));
        }
        check_everything(&bad);
        if bad != good {
            let verdict = Image::parse(&bad).and_then(|img| img.verify(&[pk], None));
            prop_assert!(verdict.is_err(), "mutation at {} to {:#x} accepted", i, value);
        }
    }
}
