//! Provisioning records: the known-answer records made by an independent
//! implementation (tests/data/records/generate.py, Python `cryptography`)
//! verify; every single-bit flip, another chip, an erased or blank partition,
//! truncation and excess are refused; the parser never panics.
#![allow(clippy::unwrap_used)]

use firmware::record::{
    verify_provisioning, HwId, ProvisioningRecord, RecordBody, RecordError, RECORD_LEN,
};
use firmware::P256PublicKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use proptest::prelude::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/records/");

fn authority() -> P256PublicKey {
    let pem = std::fs::read_to_string(format!("{DATA}authority.pub.pem")).unwrap();
    let pk = p256::PublicKey::from_public_key_pem(&pem).unwrap();
    P256PublicKey::from_sec1(pk.to_encoded_point(false).as_bytes()).unwrap()
}

fn kat(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

#[test]
fn known_answer_records_verify_and_match_our_layout() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DATA}expected.json")).unwrap())
            .unwrap();
    let auth = authority();
    for case in expected.as_array().unwrap() {
        let bytes = kat(case["file"].as_str().unwrap());
        let chip = HwId::parse_hex(case["hw_id"].as_str().unwrap()).unwrap();
        let ok = verify_provisioning(&bytes, chip, &[auth]).unwrap();
        assert_eq!(ok.body.serial as u64, case["serial"].as_u64().unwrap());
        assert_eq!(ok.body.product_name(), case["product"].as_str());
        assert_eq!(ok.body.issued_at, case["issued_at"].as_u64().unwrap());
        assert_eq!(
            hex::encode(ok.body.authority_key_id),
            case["authority_key_id"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(ok.body.device_pubkey.sec1()),
            case["device_pubkey"].as_str().unwrap()
        );
        // Our encoder produces the same signed bytes from the same fields.
        let body = RecordBody {
            hw_id: chip,
            serial: case["serial"].as_u64().unwrap() as u32,
            product: RecordBody::product_field(case["product"].as_str().unwrap()).unwrap(),
            device_pubkey: ok.body.device_pubkey,
            issued_at: case["issued_at"].as_u64().unwrap(),
            authority_key_id: auth.key_id(),
            // Records made before key origins have flags 0: station keys.
            key_origin: firmware::record::KeyOrigin::Station,
        };
        assert_eq!(ok.body.key_origin, firmware::record::KeyOrigin::Station);
        assert_eq!(body.to_signed_bytes()[..], bytes[..144]);
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    let auth = authority();
    let good = kat("qemu-microbit.bin");
    let chip = HwId::parse_hex("1234567800000003").unwrap();
    for byte in 0..RECORD_LEN {
        for bit in 0..8 {
            let mut b = good.clone();
            b[byte] ^= 1 << bit;
            assert!(
                verify_provisioning(&b, chip, &[auth]).is_err(),
                "flip of bit {bit} of byte {byte} accepted"
            );
        }
    }
}

#[test]
fn other_chips_unknown_authorities_and_blank_partitions_are_refused() {
    let auth = authority();
    let good = kat("qemu-microbit.bin");
    let other = HwId::parse_hex("1234567800000004").unwrap();
    let chip = HwId::parse_hex("1234567800000003").unwrap();
    assert!(matches!(
        verify_provisioning(&good, other, &[auth]),
        Err(RecordError::WrongChip { .. })
    ));
    let stranger = ProvisioningRecord::parse(&good).unwrap().body.device_pubkey;
    assert_eq!(
        verify_provisioning(&good, chip, &[stranger]),
        Err(RecordError::UnknownAuthority)
    );
    // A second authority (rotation): the right one is found by key id.
    assert_eq!(
        verify_provisioning(&good, chip, &[stranger, auth])
            .unwrap()
            .authority,
        1
    );
    assert_eq!(
        verify_provisioning(&[0xff; 4096], chip, &[auth]),
        Err(RecordError::Erased)
    );
    assert_eq!(
        verify_provisioning(&[0x00; 4096], chip, &[auth]),
        Err(RecordError::Erased)
    );
    assert_eq!(
        verify_provisioning(&good[..207], chip, &[auth]),
        Err(RecordError::Truncated(207))
    );
    assert_eq!(
        ProvisioningRecord::parse(&[good.clone(), vec![0]].concat()),
        Err(RecordError::Oversized(209))
    );
    // In a partition the record is followed by erased flash.
    let mut partition = good.clone();
    partition.resize(4096, 0xff);
    assert_eq!(
        verify_provisioning(&partition, chip, &[auth])
            .unwrap()
            .body
            .serial,
        1
    );
    assert_eq!(RecordError::Erased.code(), "erased");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let chip = HwId([0; 8]);
        let _ = verify_provisioning(&bytes, chip, &[authority()]);
        let _ = ProvisioningRecord::parse(&bytes);
    }

    #[test]
    fn mutated_records_never_panic_and_are_refused(at in 0..RECORD_LEN, value in any::<u8>()) {
        let good = kat("qemu-microbit.bin");
        let mut b = good.clone();
        b[at] = value;
        let chip = HwId::parse_hex("1234567800000003").unwrap();
        let verdict = verify_provisioning(&b, chip, &[authority()]);
        if b != good {
            prop_assert!(verdict.is_err());
        }
    }
}
