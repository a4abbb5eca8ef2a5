//! RSA public keys as MCUboot embeds them (feature `rsa`, host only: the
//! arithmetic allocates), and RSASSA-PSS verification with MCUboot's fixed
//! parameters.
//!
//! MCUboot takes RSA-2048 and RSA-3072 keys. It embeds the key as its PKCS#1
//! `RSAPublicKey` DER (not a `SubjectPublicKeyInfo`), names it by the SHA-256
//! of that DER (KEYHASH), and checks PSS signatures over the image's SHA-256
//! with MGF1-SHA-256 and a 32-byte salt; the signature TLV is `RSA2048` or
//! `RSA3072` by modulus size.

use alloc::vec::Vec;

use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use super::KeyError;

/// The PSS salt length MCUboot requires (the SHA-256 output size).
pub const PSS_SALT_LEN: usize = 32;

/// An RSA-2048 or RSA-3072 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    key: rsa::RsaPublicKey,
    pkcs1: Vec<u8>,
}

impl core::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaPublicKey")
            .field("bits", &self.bits())
            .field("key_id", &super::HexBytes(&self.key_hash()))
            .finish()
    }
}

impl RsaPublicKey {
    fn new(key: rsa::RsaPublicKey) -> Result<Self, KeyError> {
        if !matches!(key.n().bits(), 2048 | 3072) {
            return Err(KeyError::NotSpki);
        }
        let pkcs1 = key
            .to_pkcs1_der()
            .map_err(|_| KeyError::NotSpki)?
            .as_bytes()
            .to_vec();
        Ok(Self { key, pkcs1 })
    }

    /// From the DER `SubjectPublicKeyInfo` (a PEM public key file's body).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::new(rsa::RsaPublicKey::from_public_key_der(der).map_err(|_| KeyError::NotSpki)?)
    }

    /// From the PKCS#1 `RSAPublicKey` DER (what MCUboot embeds and
    /// `imgtool getpub` prints).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::new(rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|_| KeyError::NotSpki)?)
    }

    /// From the modulus and public exponent, big-endian (what PKCS#11 and
    /// KMS report).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let key = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(n),
            rsa::BigUint::from_bytes_be(e),
        )
        .map_err(|_| KeyError::NotSpki)?;
        Self::new(key)
    }

    /// The modulus size in bits: 2048 or 3072.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }

    /// The signature length in bytes (the modulus size).
    pub fn signature_len(&self) -> usize {
        self.key.size()
    }

    /// The PKCS#1 `RSAPublicKey` DER.
    pub fn pkcs1_der(&self) -> &[u8] {
        &self.pkcs1
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// SHA-256 of the PKCS#1 DER: the KEYHASH TLV's value.
    pub fn key_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.pkcs1).into()
    }

    /// The underlying key, for signers that check their own signatures.
    pub fn as_rsa(&self) -> &rsa::RsaPublicKey {
        &self.key
    }

    /// Verify an RSASSA-PSS signature over a SHA-256 digest (MGF1-SHA-256,
    /// 32-byte salt), of exactly the modulus length.
    pub fn verify_pss_sha256(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), KeyError> {
        if signature.len() != self.signature_len() {
            return Err(KeyError::MalformedSignature);
        }
        self.key
            .verify(
                rsa::Pss::new_with_salt::<Sha256>(PSS_SALT_LEN),
                digest,
                signature,
            )
            .map_err(|_| KeyError::BadSignature)
    }
}
