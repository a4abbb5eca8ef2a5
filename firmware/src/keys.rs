//! P-256 public keys in the encodings MCUboot and our records use; with the
//! features `ed25519` and `p384`, Ed25519 ([`ed25519`]) and P-384 ([`p384`])
//! image keys too.
//!
//! MCUboot embeds a public key as its DER `SubjectPublicKeyInfo` and names it
//! by the SHA-256 of that DER (the KEYHASH TLV). For P-256 with an uncompressed
//! point the DER is a fixed 26-byte prefix followed by the 65-byte SEC1 point,
//! so both are computed here without allocation.
//!
//! The curve arithmetic (on-curve check, ECDSA verification of range-checked
//! scalars) is two functions with two implementations: on the
//! microcontrollers (`target_os = "none"`) our small verifier
//! (`keys/compact.rs`), on hosts RustCrypto's `p256` (`keys/curve.rs`, fast).
//! Encodings, range checks and the DER parser are ours and shared.

mod der;
#[cfg(feature = "ed25519")]
pub mod ed25519;
#[cfg(feature = "p384")]
pub mod p384;
#[cfg(feature = "rsa")]
pub mod rsa;

#[cfg(any(test, target_os = "none"))]
mod compact;
#[cfg(not(target_os = "none"))]
mod curve;
#[cfg(target_os = "none")]
use compact as curve;

/// Which P-256 arithmetic this build verifies with.
#[cfg(target_os = "none")]
pub const BACKEND: &str = "compact";
/// Which P-256 arithmetic this build verifies with.
#[cfg(not(target_os = "none"))]
pub const BACKEND: &str = curve::NAME;
use sha2::{Digest, Sha256};

/// The order n of the P-256 group, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Whether a big-endian scalar is in 1..n (a valid `r` or `s`).
pub(crate) fn scalar_in_range(x: &[u8; 32]) -> bool {
    x.iter().any(|&b| b != 0) && x < &ORDER
}

/// DER prefix of a P-256 `SubjectPublicKeyInfo` with an uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of the DER `SubjectPublicKeyInfo` of a P-256 key.
pub const P256_SPKI_LEN: usize = P256_SPKI_PREFIX.len() + 65;

/// ECDH with a P-256 private key (feature `enc`): the x-coordinate of
/// `secret`·`peer`, big-endian, for a scalar in 1..n and an uncompressed
/// point on the curve; `None` otherwise. On the microcontrollers, a
/// constant-time Montgomery ladder (`keys/compact.rs`); on hosts,
/// RustCrypto's `p256`.
#[cfg(feature = "enc")]
pub fn p256_ecdh(secret: &[u8; 32], peer: &[u8; 65]) -> Option<[u8; 32]> {
    curve::ecdh_x(secret, peer)
}

/// Why a public key or signature could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not an uncompressed P-256 point on the curve.
    #[error("not a valid uncompressed P-256 public key")]
    InvalidPoint,
    /// The DER is not a P-256 `SubjectPublicKeyInfo` with an uncompressed point.
    #[error("not a DER SubjectPublicKeyInfo of a P-256 key")]
    NotP256Spki,
    /// The DER is not a `SubjectPublicKeyInfo` of the expected key type.
    #[error("not a DER SubjectPublicKeyInfo of this key type")]
    NotSpki,
    /// The signature is not DER (or r‖s) encoded ECDSA with scalars in range.
    #[error("malformed ECDSA signature encoding")]
    MalformedSignature,
    /// The signature does not verify with this key.
    #[error("ECDSA signature does not verify")]
    BadSignature,
}

/// A P-256 public key, validated to be on the curve.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P256PublicKey {
    sec1: [u8; 65],
}

impl core::fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("P256PublicKey")
            .field("key_id", &HexBytes(&self.key_id()))
            .finish()
    }
}

pub(crate) struct HexBytes<'a>(pub(crate) &'a [u8]);

impl core::fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl P256PublicKey {
    /// From a 65-byte SEC1 uncompressed point (`04 ‖ x ‖ y`).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        let sec1: [u8; 65] = bytes.try_into().map_err(|_| KeyError::InvalidPoint)?;
        if sec1[0] != 0x04 || !curve::on_curve(&sec1) {
            return Err(KeyError::InvalidPoint);
        }
        Ok(Self { sec1 })
    }

    /// From the DER `SubjectPublicKeyInfo` (the form MCUboot embeds, and the
    /// body of a `PUBLIC KEY` PEM).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if der.len() != P256_SPKI_LEN || der[..P256_SPKI_PREFIX.len()] != P256_SPKI_PREFIX {
            return Err(KeyError::NotP256Spki);
        }
        Self::from_sec1(&der[P256_SPKI_PREFIX.len()..])
    }

    /// The 65-byte SEC1 uncompressed point.
    pub fn sec1(&self) -> &[u8; 65] {
        &self.sec1
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> [u8; P256_SPKI_LEN] {
        let mut out = [0u8; P256_SPKI_LEN];
        out[..P256_SPKI_PREFIX.len()].copy_from_slice(&P256_SPKI_PREFIX);
        out[P256_SPKI_PREFIX.len()..].copy_from_slice(&self.sec1);
        out
    }

    /// SHA-256 of the DER `SubjectPublicKeyInfo`: MCUboot's KEYHASH and the key
    /// id every signed object of this product names its signer by.
    pub fn key_id(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(P256_SPKI_PREFIX)
            .chain_update(self.sec1)
            .finalize()
            .into()
    }

    /// Verify a strictly DER-encoded ECDSA signature over a SHA-256 digest.
    pub fn verify_digest_der(&self, digest: &[u8; 32], der: &[u8]) -> Result<(), KeyError> {
        let (r, s) = der::parse(der).ok_or(KeyError::MalformedSignature)?;
        self.verify(digest, &r, &s)
    }

    /// Verify a DER signature as an MCUboot ECDSASIG TLV holds it: zero bytes
    /// after the DER SEQUENCE are tolerated, as MCUboot does for signatures
    /// padded by `imgtool --pad-sig`.
    pub fn verify_digest_der_padded(&self, digest: &[u8; 32], der: &[u8]) -> Result<(), KeyError> {
        // The SEQUENCE's own length says where the signature ends.
        let end = match der {
            [0x30, len, ..] if len & 0x80 == 0 => 2 + usize::from(*len),
            _ => return Err(KeyError::MalformedSignature),
        };
        let (sig, padding) = der
            .split_at_checked(end)
            .ok_or(KeyError::MalformedSignature)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(KeyError::MalformedSignature);
        }
        self.verify_digest_der(digest, sig)
    }

    /// Verify a fixed 64-byte `r ‖ s` ECDSA signature over a SHA-256 digest.
    pub fn verify_digest_raw(&self, digest: &[u8; 32], raw: &[u8; 64]) -> Result<(), KeyError> {
        let (r, s) = raw.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return Err(KeyError::MalformedSignature);
        };
        self.verify(digest, &r, &s)
    }

    fn verify(&self, digest: &[u8; 32], r: &[u8; 32], s: &[u8; 32]) -> Result<(), KeyError> {
        if !scalar_in_range(r) || !scalar_in_range(s) {
            return Err(KeyError::MalformedSignature);
        }
        if curve::verify(&self.sec1, digest, r, s) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{signature::hazmat::PrehashSigner, Signature, SigningKey};

    fn key() -> (SigningKey, P256PublicKey) {
        let sk = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        (sk, P256PublicKey::from_sec1(point.as_bytes()).unwrap())
    }

    #[test]
    fn spki_round_trip_and_key_id() {
        let (_, pk) = key();
        let der = pk.spki_der();
        assert_eq!(P256PublicKey::from_spki_der(&der).unwrap(), pk);
        let expected: [u8; 32] = Sha256::digest(der).into();
        assert_eq!(pk.key_id(), expected);
    }

    #[test]
    fn rejects_points_off_the_curve_and_wrong_prefixes() {
        let (_, pk) = key();
        let mut bad = *pk.sec1();
        bad[64] ^= 1;
        assert_eq!(P256PublicKey::from_sec1(&bad), Err(KeyError::InvalidPoint));
        assert_eq!(
            P256PublicKey::from_sec1(&bad[..64]),
            Err(KeyError::InvalidPoint)
        );
        let mut der = pk.spki_der();
        der[5] ^= 1;
        assert_eq!(
            P256PublicKey::from_spki_der(&der),
            Err(KeyError::NotP256Spki)
        );
    }

    #[test]
    fn verifies_der_and_raw_signatures() {
        let (sk, pk) = key();
        let digest = [0x5a; 32];
        let sig: Signature = sk.sign_prehash(&digest).unwrap();
        let der = sig.to_der();
        pk.verify_digest_der(&digest, der.as_bytes()).unwrap();
        let raw: [u8; 64] = sig.to_bytes().into();
        pk.verify_digest_raw(&digest, &raw).unwrap();

        let mut padded = std::vec::Vec::from(der.as_bytes());
        padded.extend_from_slice(&[0, 0]);
        pk.verify_digest_der_padded(&digest, &padded).unwrap();
        assert_eq!(
            pk.verify_digest_der(&digest, &padded),
            Err(KeyError::MalformedSignature)
        );
        padded.push(1);
        assert_eq!(
            pk.verify_digest_der_padded(&digest, &padded),
            Err(KeyError::MalformedSignature)
        );

        let other = [0x5b; 32];
        assert_eq!(
            pk.verify_digest_raw(&other, &raw),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn scalars_outside_one_to_n_are_malformed() {
        let (_, pk) = key();
        let digest = [0x5a; 32];
        let mut raw = [0u8; 64];
        raw[63] = 1;
        assert_eq!(
            pk.verify_digest_raw(&digest, &raw),
            Err(KeyError::MalformedSignature),
            "r = 0"
        );
        raw[..32].copy_from_slice(&ORDER);
        assert_eq!(
            pk.verify_digest_raw(&digest, &raw),
            Err(KeyError::MalformedSignature),
            "r = n"
        );
        raw[31] -= 1;
        assert_eq!(
            pk.verify_digest_raw(&digest, &raw),
            Err(KeyError::BadSignature),
            "r = n - 1 is in range"
        );
    }
}
