//! P-256 public keys in the encodings MCUboot and our records use.
//!
//! MCUboot embeds a public key as its DER `SubjectPublicKeyInfo` and names it
//! by the SHA-256 of that DER (the KEYHASH TLV). For P-256 with an uncompressed
//! point the DER is a fixed 26-byte prefix followed by the 65-byte SEC1 point,
//! so both are computed here without allocation.

use ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// DER prefix of a P-256 `SubjectPublicKeyInfo` with an uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of the DER `SubjectPublicKeyInfo` of a P-256 key.
pub const P256_SPKI_LEN: usize = P256_SPKI_PREFIX.len() + 65;

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
    key: VerifyingKey,
}

impl core::fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("P256PublicKey")
            .field("key_id", &HexBytes(&self.key_id()))
            .finish()
    }
}

struct HexBytes<'a>(&'a [u8]);

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
        if sec1[0] != 0x04 {
            return Err(KeyError::InvalidPoint);
        }
        let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| KeyError::InvalidPoint)?;
        Ok(Self { sec1, key })
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
        let sig = Signature::from_der(der).map_err(|_| KeyError::MalformedSignature)?;
        self.verify(digest, &sig)
    }

    /// Verify a DER signature as an MCUboot ECDSASIG TLV holds it: zero bytes
    /// after the DER SEQUENCE are tolerated, as MCUboot does for signatures
    /// padded by `imgtool --pad-sig`.
    pub fn verify_digest_der_padded(&self, digest: &[u8; 32], der: &[u8]) -> Result<(), KeyError> {
        let sig = parse_der_signature(der)?;
        self.verify(digest, &sig)
    }

    /// Verify a fixed 64-byte `r ‖ s` ECDSA signature over a SHA-256 digest.
    pub fn verify_digest_raw(&self, digest: &[u8; 32], raw: &[u8; 64]) -> Result<(), KeyError> {
        let sig = Signature::from_slice(raw).map_err(|_| KeyError::MalformedSignature)?;
        self.verify(digest, &sig)
    }

    fn verify(&self, digest: &[u8; 32], sig: &Signature) -> Result<(), KeyError> {
        self.key
            .verify_prehash(digest, sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// Parse a DER ECDSA signature, allowing zero padding after the SEQUENCE.
fn parse_der_signature(der: &[u8]) -> Result<Signature, KeyError> {
    // SEQUENCE with a short-form length: P-256 signatures are at most 72 bytes.
    if der.len() < 2 || der[0] != 0x30 || der[1] & 0x80 != 0 {
        return Err(KeyError::MalformedSignature);
    }
    let end = 2 + usize::from(der[1]);
    let (body, padding) = der
        .split_at_checked(end)
        .ok_or(KeyError::MalformedSignature)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(KeyError::MalformedSignature);
    }
    Signature::from_der(body).map_err(|_| KeyError::MalformedSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{signature::hazmat::PrehashSigner, SigningKey};

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
}
