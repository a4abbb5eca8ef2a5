//! MCUboot image encryption (feature `enc`), as imgtool 2.5 writes it and
//! MCUboot's `encrypted.c` reads it.
//!
//! The payload after the header is encrypted with AES-CTR (128 or 256 bits,
//! by the header's `ENCRYPTED_AES128`/`ENCRYPTED_AES256` flag; a zero nonce,
//! the 128-bit big-endian counter starting at 0 at the first payload byte).
//! The protected TLVs stay clear, and the hash and signatures cover the
//! plaintext. The AES key travels in one unprotected TLV, wrapped for the
//! device with ECIES:
//!
//! 1. an ephemeral key pair on the device's curve (P-256 or X25519), ECDH with
//!    the device's public key: a 32-byte shared secret;
//! 2. HKDF (SHA-256, or SHA-512 for `ENC_X25519_SHA512`), no salt, info
//!    `MCUBoot_ECIES_v1`, giving the key-encryption key (the AES key's
//!    length) followed by the HMAC key (the hash's length);
//! 3. the AES key encrypted with AES-CTR under the key-encryption key (zero
//!    nonce), and an HMAC over that ciphertext.
//!
//! The TLV's value is `ephemeral public key ‖ HMAC ‖ encrypted AES key`: the
//! uncompressed 65-byte point for P-256 (`ENC_EC256`), the 32-byte key for
//! X25519 (`ENC_X25519`, `ENC_X25519_SHA512`).
//!
//! This module holds the format, the key derivation, the HMAC check, the
//! cipher and, for ECIES-P256, the ECDH with a device's P-256 private key
//! ([`unwrap_p256`], what a boot stage runs). X25519's ECDH is the host
//! tools' (`x25519-dalek`).

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use zeroize::Zeroize;

use core::ops::Range;

use super::{flags, tlv, HashAlg, Image, ImageHash, TLV_HEADER_SIZE};

/// HKDF's info string for MCUboot's ECIES.
pub const ECIES_INFO: &[u8] = b"MCUBoot_ECIES_v1";

/// The longest AES key (AES-256).
pub const MAX_AES_KEY: usize = 32;

/// The longest ENC TLV value: X25519 with HMAC-SHA512 and AES-256 is
/// 32 + 64 + 32; P-256 with AES-256 is 65 + 32 + 32.
pub const MAX_ENC_TLV: usize = 129;

/// How the AES key is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum EncScheme {
    /// ECIES over P-256 with HKDF/HMAC-SHA256 (`ENC_EC256`).
    EciesP256,
    /// ECIES over X25519 with HKDF/HMAC-SHA256 (`ENC_X25519`).
    EciesX25519,
    /// ECIES over X25519 with HKDF/HMAC-SHA512 (`ENC_X25519_SHA512`).
    EciesX25519Sha512,
}

impl EncScheme {
    /// The scheme of an ENC TLV type this module reads.
    pub fn from_tlv(kind: u16) -> Option<Self> {
        match kind {
            tlv::ENCEC256 => Some(Self::EciesP256),
            tlv::ENCX25519 => Some(Self::EciesX25519),
            tlv::ENCX25519_SHA512 => Some(Self::EciesX25519Sha512),
            _ => None,
        }
    }

    /// Its TLV type.
    pub fn tlv(self) -> u16 {
        match self {
            Self::EciesP256 => tlv::ENCEC256,
            Self::EciesX25519 => tlv::ENCX25519,
            Self::EciesX25519Sha512 => tlv::ENCX25519_SHA512,
        }
    }

    /// Length of the ephemeral public key in the TLV.
    pub fn ephemeral_len(self) -> usize {
        match self {
            Self::EciesP256 => 65,
            Self::EciesX25519 | Self::EciesX25519Sha512 => 32,
        }
    }

    /// Length of the HMAC (and of the HMAC key).
    pub fn mac_len(self) -> usize {
        match self {
            Self::EciesX25519Sha512 => 64,
            Self::EciesP256 | Self::EciesX25519 => 32,
        }
    }

    /// The TLV value's length for an AES key of `key_len` bytes.
    pub fn tlv_len(self, key_len: usize) -> usize {
        self.ephemeral_len() + self.mac_len() + key_len
    }
}

/// The AES key length an image's header flags announce, if it is encrypted.
pub fn aes_key_len(header_flags: u32) -> Option<usize> {
    if header_flags & flags::ENCRYPTED_AES256 != 0 {
        Some(32)
    } else if header_flags & flags::ENCRYPTED_AES128 != 0 {
        Some(16)
    } else {
        None
    }
}

/// Why an ENC TLV could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncError {
    /// The TLV's length is not the scheme's for this AES key length.
    #[error("ENC TLV of {len} bytes; expected {expected}")]
    BadLength {
        /// Found.
        len: usize,
        /// Expected.
        expected: usize,
    },
    /// The HMAC over the wrapped key does not verify: the key was wrapped
    /// for another device, or the TLV was changed.
    #[error("the encryption key was wrapped for another key, or changed")]
    WrongKey,
    /// An AES key of a length other than 16 or 32 bytes.
    #[error("an AES key of {0} bytes; MCUboot takes 16 or 32")]
    BadKeyLength(usize),
    /// The header does not say the image is encrypted.
    #[error("the image is not encrypted")]
    NotEncrypted,
    /// The header says encrypted, but no ENC TLV this module reads
    /// (`ENC_EC256`, `ENC_X25519`, `ENC_X25519_SHA512`) is there.
    #[error(
        "the header says encrypted but the image has no ECIES ENC TLV (ENC_EC256, ENC_X25519)"
    )]
    MissingTlv,
    /// More than one ENC TLV.
    #[error("the image carries more than one ENC TLV")]
    DuplicateTlv,
    /// The key is wrapped with a scheme other than the one asked for.
    #[error("the image's key is wrapped with {found:?}, not {wanted:?}")]
    OtherScheme {
        /// The TLV's scheme.
        found: EncScheme,
        /// The scheme of the key at hand.
        wanted: EncScheme,
    },
    /// The TLV's ephemeral key is not a point of the curve.
    #[error("the ENC TLV's ephemeral key is not a valid public key")]
    BadEphemeral,
    /// The device's private key is not a scalar of the curve.
    #[error("the device's private key is not a valid key")]
    BadPrivateKey,
}

/// An ENC TLV, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncTlv<'a> {
    /// How the key is wrapped.
    pub scheme: EncScheme,
    /// The ephemeral public key (SEC1 uncompressed for P-256, raw for X25519).
    pub ephemeral: &'a [u8],
    /// The HMAC over `cipherkey`.
    pub mac: &'a [u8],
    /// The wrapped AES key.
    pub cipherkey: &'a [u8],
}

impl<'a> EncTlv<'a> {
    /// Split an ENC TLV's value, for an image whose AES key is `key_len`
    /// bytes (from its header flags).
    pub fn parse(scheme: EncScheme, value: &'a [u8], key_len: usize) -> Result<Self, EncError> {
        check_key_len(key_len)?;
        let expected = scheme.tlv_len(key_len);
        if value.len() != expected {
            return Err(EncError::BadLength {
                len: value.len(),
                expected,
            });
        }
        let (ephemeral, rest) = value.split_at(scheme.ephemeral_len());
        let (mac, cipherkey) = rest.split_at(scheme.mac_len());
        Ok(Self {
            scheme,
            ephemeral,
            mac,
            cipherkey,
        })
    }
}

/// The image's one ENC TLV, split, with the AES key length its header
/// flags announce.
pub fn find_tlv<'a>(image: &Image<'a>) -> Result<EncTlv<'a>, EncError> {
    find_tlv_span(image).map(|(tlv, _)| tlv)
}

/// [`find_tlv`], and where the TLV's value lies in the image's bytes (what a
/// rewrap replaces).
pub fn find_tlv_span<'a>(image: &Image<'a>) -> Result<(EncTlv<'a>, Range<usize>), EncError> {
    let key_len = aes_key_len(image.header().flags).ok_or(EncError::NotEncrypted)?;
    let mut found = None;
    for t in image.tlvs().filter(|t| !t.protected) {
        if let Some(scheme) = EncScheme::from_tlv(t.kind) {
            if found.is_some() {
                return Err(EncError::DuplicateTlv);
            }
            let start = t.offset + TLV_HEADER_SIZE;
            found = Some((
                EncTlv::parse(scheme, t.value, key_len)?,
                start..start + t.value.len(),
            ));
        }
    }
    found.ok_or(EncError::MissingTlv)
}

fn check_key_len(key_len: usize) -> Result<(), EncError> {
    match key_len {
        16 | 32 => Ok(()),
        n => Err(EncError::BadKeyLength(n)),
    }
}

/// The HKDF output: the key-encryption key, then the HMAC key. Wiped on drop.
struct Derived {
    bytes: [u8; MAX_AES_KEY + 64],
    key_len: usize,
    mac_len: usize,
}

impl Drop for Derived {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl Derived {
    fn new(scheme: EncScheme, shared: &[u8], key_len: usize) -> Self {
        let mac_len = scheme.mac_len();
        let mut d = Self {
            bytes: [0; MAX_AES_KEY + 64],
            key_len,
            mac_len,
        };
        let out = &mut d.bytes[..key_len + mac_len];
        // Both lengths are far below HKDF's limit (255 hash lengths).
        let done = match scheme {
            EncScheme::EciesX25519Sha512 => {
                hkdf::Hkdf::<Sha512>::new(None, shared).expand(ECIES_INFO, out)
            }
            _ => hkdf::Hkdf::<Sha256>::new(None, shared).expand(ECIES_INFO, out),
        };
        debug_assert!(done.is_ok());
        d
    }

    fn kek(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    fn mac_key(&self) -> &[u8] {
        &self.bytes[self.key_len..self.key_len + self.mac_len]
    }

    /// An HMAC over `data` under the HMAC key, with the scheme's hash.
    fn hmac<M: Mac + hmac::digest::KeyInit>(&self, data: &[u8]) -> M {
        let mut m = <M as Mac>::new_from_slice(self.mac_key())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(data);
        m
    }

    /// The HMAC of `data` into `out` (its first `mac_len` bytes).
    fn mac(&self, scheme: EncScheme, data: &[u8], out: &mut [u8]) {
        match scheme {
            EncScheme::EciesX25519Sha512 => {
                out[..64].copy_from_slice(&self.hmac::<Hmac<Sha512>>(data).finalize().into_bytes())
            }
            _ => {
                out[..32].copy_from_slice(&self.hmac::<Hmac<Sha256>>(data).finalize().into_bytes())
            }
        }
    }

    /// Whether `tag` is the HMAC of `data` (compared in constant time).
    fn verify_mac(&self, scheme: EncScheme, data: &[u8], tag: &[u8]) -> bool {
        match scheme {
            EncScheme::EciesX25519Sha512 => self.hmac::<Hmac<Sha512>>(data).verify_slice(tag),
            _ => self.hmac::<Hmac<Sha256>>(data).verify_slice(tag),
        }
        .is_ok()
    }
}

/// XOR `data` with the AES-CTR keystream of `key` (16 or 32 bytes; zero
/// nonce, big-endian 128-bit counter) from byte `offset` of the stream: the
/// payload cipher, and the key wrap's (offset 0). Encrypts and decrypts.
pub fn ctr_apply(key: &[u8], offset: u64, data: &mut [u8]) -> Result<(), EncError> {
    let mut stream = Keystream::new(key)?;
    stream.seek(offset);
    stream.apply(data);
    Ok(())
}

/// Recover the AES key from `tlv` given the ECDH secret of the device's
/// private key and the TLV's ephemeral key; writes it to the start of
/// `out` and returns its length. The HMAC is checked (in constant time)
/// before anything is decrypted: a key wrapped for another device is
/// [`EncError::WrongKey`].
pub fn unwrap_key(tlv: &EncTlv<'_>, shared: &[u8], out: &mut [u8]) -> Result<usize, EncError> {
    let key_len = tlv.cipherkey.len();
    check_key_len(key_len)?;
    let derived = Derived::new(tlv.scheme, shared, key_len);
    if !derived.verify_mac(tlv.scheme, tlv.cipherkey, tlv.mac) {
        return Err(EncError::WrongKey);
    }
    let out = out
        .get_mut(..key_len)
        .ok_or(EncError::BadKeyLength(key_len))?;
    out.copy_from_slice(tlv.cipherkey);
    ctr_apply(derived.kek(), 0, out)?;
    Ok(key_len)
}

/// Wrap `aes_key` for the device whose ECDH with the ephemeral key
/// `ephemeral` gave `shared`: writes the ENC TLV value
/// (`ephemeral ‖ HMAC ‖ encrypted key`) into `out` and returns its length.
pub fn wrap_key(
    scheme: EncScheme,
    shared: &[u8],
    ephemeral: &[u8],
    aes_key: &[u8],
    out: &mut [u8],
) -> Result<usize, EncError> {
    let key_len = aes_key.len();
    check_key_len(key_len)?;
    let total = scheme.tlv_len(key_len);
    if ephemeral.len() != scheme.ephemeral_len() || out.len() < total {
        return Err(EncError::BadLength {
            len: out.len().min(ephemeral.len()),
            expected: total,
        });
    }
    let derived = Derived::new(scheme, shared, key_len);
    let (eph, rest) = out[..total].split_at_mut(scheme.ephemeral_len());
    eph.copy_from_slice(ephemeral);
    let (mac, cipherkey) = rest.split_at_mut(scheme.mac_len());
    cipherkey.copy_from_slice(aes_key);
    ctr_apply(derived.kek(), 0, cipherkey)?;
    derived.mac(scheme, cipherkey, mac);
    Ok(total)
}

/// An image's AES key, as recovered from its ENC TLV. Wiped on drop; never
/// printed.
pub struct AesKey {
    bytes: [u8; MAX_AES_KEY],
    len: usize,
}

impl Drop for AesKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl core::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AesKey(AES-{})", self.len * 8)
    }
}

impl AesKey {
    /// Unwrap the key of `tlv` with the ECDH secret `shared` ([`unwrap_key`]).
    pub fn unwrap(tlv: &EncTlv<'_>, shared: &[u8]) -> Result<Self, EncError> {
        let mut key = Self {
            bytes: [0; MAX_AES_KEY],
            len: 0,
        };
        key.len = unwrap_key(tlv, shared, &mut key.bytes)?;
        Ok(key)
    }

    /// The key's bytes (16 or 32).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The payload's keystream from its first byte: decrypts (and encrypts)
    /// a payload read front to back, a chunk at a time.
    pub fn keystream(&self) -> Keystream {
        // Built in place: the boot stage's stack has no room for a 1 KiB
        // keystream copied out of a `Result`.
        Keystream::of(self.as_bytes())
    }
}

/// An AES-CTR keystream over an image's payload ([`AesKey::keystream`]).
// No heap on the chip, and the variants differ by 256 bytes of round keys.
#[allow(clippy::large_enum_variant)]
pub enum Keystream {
    /// `ENCRYPTED_AES128`.
    Aes128(ctr::Ctr128BE<aes::Aes128>),
    /// `ENCRYPTED_AES256`.
    Aes256(ctr::Ctr128BE<aes::Aes256>),
}

impl core::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keystream(..)")
    }
}

impl Keystream {
    /// The AES-CTR keystream of `key` (16 or 32 bytes; zero nonce,
    /// big-endian 128-bit counter) from its first byte.
    pub fn new(key: &[u8]) -> Result<Self, EncError> {
        check_key_len(key.len())?;
        Ok(Self::of(key))
    }

    /// [`Keystream::new`] for a key known to be 16 or 32 bytes.
    fn of(key: &[u8]) -> Self {
        let iv = [0u8; 16].into();
        if key.len() == 32 {
            Self::Aes256(ctr::Ctr128BE::new(key.into(), &iv))
        } else {
            Self::Aes128(ctr::Ctr128BE::new(key.into(), &iv))
        }
    }

    /// Move to byte `offset` of the stream.
    pub fn seek(&mut self, offset: u64) {
        match self {
            Self::Aes128(c) => c.seek(offset),
            Self::Aes256(c) => c.seek(offset),
        }
    }

    /// XOR the next `data.len()` bytes of the stream into `data`.
    pub fn apply(&mut self, data: &mut [u8]) {
        match self {
            Self::Aes128(c) => c.apply_keystream(data),
            Self::Aes256(c) => c.apply_keystream(data),
        }
    }
}

/// Recover the AES key of an `ENC_EC256` TLV with the device's P-256
/// private key `secret` (a big-endian scalar): ECDH with the TLV's
/// ephemeral key, then [`unwrap_key`]. What a boot stage does with the key
/// its chip made (`docs/encryption.md`).
pub fn unwrap_p256(tlv: &EncTlv<'_>, secret: &[u8; 32]) -> Result<AesKey, EncError> {
    if tlv.scheme != EncScheme::EciesP256 {
        return Err(EncError::OtherScheme {
            found: tlv.scheme,
            wanted: EncScheme::EciesP256,
        });
    }
    let peer: &[u8; 65] = tlv
        .ephemeral
        .try_into()
        .map_err(|_| EncError::BadEphemeral)?;
    if !crate::keys::scalar_in_range(secret) {
        return Err(EncError::BadPrivateKey);
    }
    let mut shared = crate::keys::p256_ecdh(secret, peer).ok_or(EncError::BadEphemeral)?;
    let key = AesKey::unwrap(tlv, &shared);
    shared.zeroize();
    key
}

/// Bytes decrypted at a time while hashing.
const CHUNK: usize = 64;

/// The image hash of an encrypted image as its signer computed it: header,
/// decrypted payload and protected TLVs, with the hash `alg`, the payload
/// decrypted a chunk at a time (nothing but the chunk is held). `None` for a
/// hash this build leaves out.
pub fn plaintext_hash(image: &Image<'_>, alg: HashAlg, key: &AesKey) -> Option<ImageHash> {
    let region = image.hashed_region();
    let payload = image.payload_range();
    alg.hash_with(|feed| {
        feed(&region[..payload.start]);
        let mut stream = key.keystream();
        for chunk in region[payload.clone()].chunks(CHUNK) {
            let mut buf = [0u8; CHUNK];
            let buf = &mut buf[..chunk.len()];
            buf.copy_from_slice(chunk);
            stream.apply(buf);
            feed(buf);
        }
        feed(&region[payload.end..]);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap_and_a_changed_byte_is_refused() {
        for scheme in [
            EncScheme::EciesP256,
            EncScheme::EciesX25519,
            EncScheme::EciesX25519Sha512,
        ] {
            for key_len in [16, 32] {
                let shared = [7u8; 32];
                let aes: std::vec::Vec<u8> = (0..key_len as u8).collect();
                let eph = std::vec![4u8; scheme.ephemeral_len()];
                let mut buf = [0u8; MAX_ENC_TLV];
                let n = wrap_key(scheme, &shared, &eph, &aes, &mut buf).unwrap();
                assert_eq!(n, scheme.tlv_len(key_len));
                let tlv = EncTlv::parse(scheme, &buf[..n], key_len).unwrap();
                let mut out = [0u8; MAX_AES_KEY];
                assert_eq!(unwrap_key(&tlv, &shared, &mut out), Ok(key_len));
                assert_eq!(&out[..key_len], &aes[..]);
                assert_eq!(
                    unwrap_key(&tlv, &[8u8; 32], &mut out),
                    Err(EncError::WrongKey)
                );
                for i in scheme.ephemeral_len()..n {
                    let mut changed = buf;
                    changed[i] ^= 1;
                    let tlv = EncTlv::parse(scheme, &changed[..n], key_len).unwrap();
                    assert_eq!(unwrap_key(&tlv, &shared, &mut out), Err(EncError::WrongKey));
                }
                assert!(EncTlv::parse(scheme, &buf[..n - 1], key_len).is_err());
            }
        }
    }

    #[test]
    fn ctr_matches_at_any_offset() {
        let key = [3u8; 16];
        let mut whole = [0u8; 100];
        ctr_apply(&key, 0, &mut whole).unwrap();
        for start in [0usize, 1, 15, 16, 17, 50] {
            let mut part = [0u8; 30];
            ctr_apply(&key, start as u64, &mut part).unwrap();
            assert_eq!(&part[..], &whole[start..start + 30]);
        }
    }
}
