//! The keys an image may be signed with, as the verifier sees them: which
//! image hashes they sign, how a KEYHASH or PUBKEY TLV names them, which
//! signature TLV they check, all as imgtool writes them and MCUboot reads
//! them:
//!
//! | key | image hash | KEYHASH | signature TLV | signs |
//! |---|---|---|---|---|
//! | ECDSA P-256 | SHA-256 | SHA-256 of the DER key | `ECDSASIG` (DER) | the digest |
//! | ECDSA P-384 (`p384`) | SHA-384 | SHA-384 of the DER key | `ECDSASIG` (DER) | the digest |
//! | Ed25519 (`ed25519`) | SHA-256 or SHA-512 | that hash of the DER key | `ED25519` (64 bytes) | the digest, as the message |
//! | Ed25519, `--pure` | SHA-512 (and `SIG_PURE`) | SHA-512 of the DER key | `ED25519` | header, payload and protected TLVs |

use sha2::{Digest, Sha256};

use super::tlv;
use crate::keys::{KeyError, P256PublicKey};

/// The hash an image carries (its hash TLV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// `SHA256` TLV.
    Sha256,
    /// `SHA384` TLV.
    Sha384,
    /// `SHA512` TLV.
    Sha512,
}

impl HashAlg {
    /// The algorithm of a hash TLV type.
    pub fn from_tlv(kind: u16) -> Option<Self> {
        match kind {
            tlv::SHA256 => Some(Self::Sha256),
            tlv::SHA384 => Some(Self::Sha384),
            tlv::SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// [`HashAlg::from_tlv`] for the hashes this build computes: a
    /// P-256-only build knows SHA-256 alone (an image hashed otherwise has
    /// no hash it can check, and is refused as `MissingHash`).
    pub(crate) fn built_from_tlv(kind: u16) -> Option<Self> {
        match kind {
            tlv::SHA256 => Some(Self::Sha256),
            #[cfg(feature = "p384")]
            tlv::SHA384 => Some(Self::Sha384),
            #[cfg(feature = "ed25519")]
            tlv::SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// Its TLV type.
    pub fn tlv(self) -> u16 {
        match self {
            Self::Sha256 => tlv::SHA256,
            Self::Sha384 => tlv::SHA384,
            Self::Sha512 => tlv::SHA512,
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The hash of the concatenation of `parts`; `None` for a hash this
    /// build leaves out (SHA-384 comes with the feature `p384`, SHA-512
    /// with `ed25519`, so a P-256-only build carries SHA-256 alone).
    pub fn hash(self, parts: &[&[u8]]) -> Option<ImageHash> {
        self.hash_with(|feed| parts.iter().for_each(|p| feed(p)))
    }

    /// The hash of what `source` feeds it, in order: for data that is never
    /// in memory at once (an encrypted image, decrypted a chunk at a time).
    pub fn hash_with(self, source: impl Fn(&mut dyn FnMut(&[u8]))) -> Option<ImageHash> {
        let run = |d: &mut dyn FnMut(&[u8])| source(d);
        fn finish<D: Digest>(run: impl Fn(&mut dyn FnMut(&[u8]))) -> sha2::digest::Output<D> {
            let mut d = D::new();
            run(&mut |b| d.update(b));
            d.finalize()
        }
        // A P-256-only build: SHA-256 straight into the 32-byte hash.
        #[cfg(not(any(feature = "ed25519", feature = "p384")))]
        let hash = (self == Self::Sha256).then(|| ImageHash {
            alg: self,
            bytes: finish::<Sha256>(run).into(),
        });
        #[cfg(any(feature = "ed25519", feature = "p384"))]
        let hash = {
            let mut bytes = [0u8; MAX_DIGEST];
            match self {
                Self::Sha256 => bytes[..32].copy_from_slice(&finish::<Sha256>(run)),
                #[cfg(feature = "p384")]
                Self::Sha384 => bytes[..48].copy_from_slice(&finish::<sha2::Sha384>(run)),
                #[cfg(feature = "ed25519")]
                Self::Sha512 => bytes[..64].copy_from_slice(&finish::<sha2::Sha512>(run)),
                #[allow(unreachable_patterns)]
                _ => return None,
            }
            Some(ImageHash { alg: self, bytes })
        };
        hash
    }
}

/// The longest digest this build computes: a P-256-only build carries
/// SHA-256 alone, and its hashes stay 32 bytes.
const MAX_DIGEST: usize = if cfg!(any(feature = "ed25519", feature = "p384")) {
    64
} else {
    32
};

/// An image hash: SHA-256, SHA-384 or SHA-512 of header, payload and
/// protected TLVs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ImageHash {
    alg: HashAlg,
    bytes: [u8; MAX_DIGEST],
}

impl ImageHash {
    /// A digest computed elsewhere (a streaming hasher); `None` when its
    /// length is not `alg`'s.
    pub fn from_digest(alg: HashAlg, digest: &[u8]) -> Option<Self> {
        if digest.len() != alg.digest_len() {
            return None;
        }
        let mut bytes = [0u8; MAX_DIGEST];
        bytes.get_mut(..digest.len())?.copy_from_slice(digest);
        Some(Self { alg, bytes })
    }

    /// Which hash.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// The digest (32, 48 or 64 bytes).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..self.alg.digest_len())
            .unwrap_or(&self.bytes)
    }

    /// The digest, if it is a SHA-256 one.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        match self.alg {
            HashAlg::Sha256 => self.as_bytes().try_into().ok(),
            _ => None,
        }
    }
}

impl AsRef<[u8]> for ImageHash {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl core::fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}(", self.alg)?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// The image hash (every key type but pure Ed25519).
    Digest(&'a ImageHash),
    /// The hashed region itself (`SIG_PURE`).
    Pure(&'a [u8]),
}

/// A key an image may be signed by.
pub trait ImageKey {
    /// The TLV its signatures sit in.
    fn signature_tlv(&self) -> u16;
    /// Whether an image hashed with `alg` (pure or not) may carry its
    /// signature.
    fn signs(&self, alg: HashAlg, pure: bool) -> bool;
    /// Whether a KEYHASH TLV value names it (the image's hash of its DER).
    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool;
    /// Whether a PUBKEY TLV value is its DER.
    fn is_public_key(&self, der: &[u8]) -> bool;
    /// Check a signature TLV's value.
    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError>;
}

impl ImageKey for P256PublicKey {
    fn signature_tlv(&self) -> u16 {
        tlv::ECDSASIG
    }

    fn signs(&self, alg: HashAlg, pure: bool) -> bool {
        alg == HashAlg::Sha256 && !pure
    }

    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool {
        alg == HashAlg::Sha256 && self.key_id() == value
    }

    fn is_public_key(&self, der: &[u8]) -> bool {
        self.spki_der() == der
    }

    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError> {
        match signed {
            Signed::Digest(hash) => {
                let digest = hash.sha256().ok_or(KeyError::MalformedSignature)?;
                self.verify_digest_der_padded(&digest, signature)
            }
            Signed::Pure(_) => Err(KeyError::MalformedSignature),
        }
    }
}

#[cfg(feature = "p384")]
impl ImageKey for crate::keys::p384::P384PublicKey {
    fn signature_tlv(&self) -> u16 {
        tlv::ECDSASIG
    }

    fn signs(&self, alg: HashAlg, pure: bool) -> bool {
        alg == HashAlg::Sha384 && !pure
    }

    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool {
        alg == HashAlg::Sha384 && self.key_hash() == value
    }

    fn is_public_key(&self, der: &[u8]) -> bool {
        self.spki_der() == der
    }

    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError> {
        match signed {
            Signed::Digest(hash) => {
                let digest: [u8; 48] = hash
                    .as_bytes()
                    .try_into()
                    .map_err(|_| KeyError::MalformedSignature)?;
                self.verify_digest_der(&digest, signature)
            }
            Signed::Pure(_) => Err(KeyError::MalformedSignature),
        }
    }
}

#[cfg(feature = "ed25519")]
impl ImageKey for crate::keys::ed25519::Ed25519PublicKey {
    fn signature_tlv(&self) -> u16 {
        tlv::ED25519
    }

    fn signs(&self, alg: HashAlg, pure: bool) -> bool {
        match alg {
            HashAlg::Sha256 => !pure,
            HashAlg::Sha512 => true,
            HashAlg::Sha384 => false,
        }
    }

    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool {
        match alg {
            HashAlg::Sha256 => self.key_hash_sha256() == value,
            HashAlg::Sha512 => self.key_hash_sha512() == value,
            HashAlg::Sha384 => false,
        }
    }

    fn is_public_key(&self, der: &[u8]) -> bool {
        self.spki_der() == der
    }

    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError> {
        match signed {
            Signed::Digest(hash) => self.verify(hash.as_bytes(), signature),
            Signed::Pure(region) => self.verify(region, signature),
        }
    }
}

#[cfg(feature = "rsa")]
impl ImageKey for crate::keys::rsa::RsaPublicKey {
    fn signature_tlv(&self) -> u16 {
        if self.bits() == 3072 {
            tlv::RSA3072
        } else {
            tlv::RSA2048
        }
    }

    fn signs(&self, alg: HashAlg, pure: bool) -> bool {
        alg == HashAlg::Sha256 && !pure
    }

    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool {
        alg == HashAlg::Sha256 && self.key_hash() == value
    }

    fn is_public_key(&self, der: &[u8]) -> bool {
        self.pkcs1_der() == der
    }

    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError> {
        match signed {
            Signed::Digest(hash) => {
                let digest = hash.sha256().ok_or(KeyError::MalformedSignature)?;
                self.verify_pss_sha256(&digest, signature)
            }
            Signed::Pure(_) => Err(KeyError::MalformedSignature),
        }
    }
}

/// A key of any type this build verifies, for key tables that mix them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyImageKey {
    /// ECDSA P-256.
    P256(P256PublicKey),
    /// ECDSA P-384.
    #[cfg(feature = "p384")]
    P384(crate::keys::p384::P384PublicKey),
    /// Ed25519.
    #[cfg(feature = "ed25519")]
    Ed25519(crate::keys::ed25519::Ed25519PublicKey),
    /// RSA-2048 or RSA-3072 (PSS).
    #[cfg(feature = "rsa")]
    Rsa(crate::keys::rsa::RsaPublicKey),
}

impl AnyImageKey {
    /// A key from its DER `SubjectPublicKeyInfo`, whichever type it is (of
    /// those this build has).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = P256PublicKey::from_spki_der(der) {
            return Ok(Self::P256(k));
        }
        #[cfg(feature = "p384")]
        if let Ok(k) = crate::keys::p384::P384PublicKey::from_spki_der(der) {
            return Ok(Self::P384(k));
        }
        #[cfg(feature = "ed25519")]
        if let Ok(k) = crate::keys::ed25519::Ed25519PublicKey::from_spki_der(der) {
            return Ok(Self::Ed25519(k));
        }
        #[cfg(feature = "rsa")]
        if let Ok(k) = crate::keys::rsa::RsaPublicKey::from_spki_der(der) {
            return Ok(Self::Rsa(k));
        }
        Err(KeyError::NotSpki)
    }

    fn key(&self) -> &dyn ImageKey {
        match self {
            Self::P256(k) => k,
            #[cfg(feature = "p384")]
            Self::P384(k) => k,
            #[cfg(feature = "ed25519")]
            Self::Ed25519(k) => k,
            #[cfg(feature = "rsa")]
            Self::Rsa(k) => k,
        }
    }
}

impl From<P256PublicKey> for AnyImageKey {
    fn from(key: P256PublicKey) -> Self {
        Self::P256(key)
    }
}

impl ImageKey for AnyImageKey {
    fn signature_tlv(&self) -> u16 {
        self.key().signature_tlv()
    }

    fn signs(&self, alg: HashAlg, pure: bool) -> bool {
        self.key().signs(alg, pure)
    }

    fn has_key_hash(&self, alg: HashAlg, value: &[u8]) -> bool {
        self.key().has_key_hash(alg, value)
    }

    fn is_public_key(&self, der: &[u8]) -> bool {
        self.key().is_public_key(der)
    }

    fn verify_image(&self, signed: Signed<'_>, signature: &[u8]) -> Result<(), KeyError> {
        self.key().verify_image(signed, signature)
    }
}
