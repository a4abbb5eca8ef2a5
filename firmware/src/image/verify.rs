//! Cryptographic verification of a parsed image, in the order and with the
//! rules MCUboot's `bootutil_img_validate` applies.

use super::keys::{HashAlg, ImageHash, ImageKey, Signed};
use super::{tlv, Image, ImageError, ImageVersion};

/// A verified image's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The image hash (its hash TLV's algorithm) over header, payload and
    /// protected TLVs.
    pub digest: ImageHash,
    /// Index into the given keys of the key whose signature verified, or
    /// `None` when no keys were given (hash-only check).
    pub signed_by: Option<usize>,
    /// Security counter, if the image carries one.
    pub security_counter: Option<u32>,
    /// Image version from the header.
    pub version: ImageVersion,
}

fn once(seen: &mut bool, kind: u16, offset: usize) -> Result<(), ImageError> {
    if core::mem::replace(seen, true) {
        return Err(ImageError::DuplicateTlv { kind, offset });
    }
    Ok(())
}

/// Hash, key and signature TLVs: MCUboot reads them from the unprotected
/// area only.
fn signature_related(kind: u16) -> bool {
    matches!(
        kind,
        tlv::SHA256
            | tlv::SHA384
            | tlv::SHA512
            | tlv::KEYHASH
            | tlv::PUBKEY
            | tlv::ECDSASIG
            | tlv::RSA2048
            | tlv::RSA3072
            | tlv::ED25519
            | tlv::SIG_PURE
    )
}

impl Image<'_> {
    /// The image's hash algorithm (its one hash TLV) and whether it is pure
    /// (`SIG_PURE`): what every signature check depends on, read first.
    #[cfg(any(feature = "ed25519", feature = "p384"))]
    fn hash_and_purity(&self) -> Result<(HashAlg, bool), ImageError> {
        let mut alg = None;
        let mut pure = false;
        for t in self.tlvs().filter(|t| !t.protected) {
            if let Some(a) = HashAlg::from_tlv(t.kind) {
                if alg.replace(a).is_some() {
                    return Err(ImageError::DuplicateTlv {
                        kind: t.kind,
                        offset: t.offset,
                    });
                }
            }
            if t.kind == tlv::SIG_PURE {
                if pure {
                    return Err(ImageError::DuplicateTlv {
                        kind: t.kind,
                        offset: t.offset,
                    });
                }
                if t.value != [1] {
                    return Err(ImageError::BadTlvLength {
                        kind: t.kind,
                        len: t.value.len(),
                        expected: 1,
                    });
                }
                pure = true;
            }
        }
        Ok((alg.ok_or(ImageError::MissingHash)?, pure))
    }

    /// A P-256-only build: SHA-256 images, never pure; the main pass refuses
    /// anything else. No first pass, so the build stays as small as before
    /// other key types existed.
    #[cfg(not(any(feature = "ed25519", feature = "p384")))]
    fn hash_and_purity(&self) -> Result<(HashAlg, bool), ImageError> {
        Ok((HashAlg::Sha256, false))
    }

    /// Verify the image hash and, when `keys` is not empty, that one of them
    /// signed it; enforce `min_security_counter` when given.
    ///
    /// The image's hash TLV (SHA-256, SHA-384 or SHA-512; exactly one) says
    /// how it is hashed; `SIG_PURE` says that signatures cover the hashed
    /// region itself. Each key only checks the signatures its type makes
    /// over that hash ([`ImageKey`]). Unprotected TLVs outside MCUboot's
    /// allow-list are refused, as are hash, key and signature TLVs inside
    /// the protected area.
    pub fn verify<K: ImageKey>(
        &self,
        keys: &[K],
        min_security_counter: Option<u32>,
    ) -> Result<Verified, ImageError> {
        let (alg, pure) = self.hash_and_purity()?;
        let digest = alg
            .hash(&[self.hashed_region()])
            .ok_or(ImageError::UnsupportedHash(alg.tlv()))?;
        self.check_tlvs(keys, min_security_counter, alg, pure, digest)
    }

    /// [`Image::verify`] for an encrypted image, as it will read once
    /// decrypted: the hash is computed over the payload decrypted with
    /// `key`, a chunk at a time, so the image is never decrypted in memory
    /// at once. A pure image (signatures over the hashed bytes themselves)
    /// is refused: those bytes are not at hand.
    #[cfg(feature = "enc")]
    pub fn verify_decrypted<K: ImageKey>(
        &self,
        keys: &[K],
        min_security_counter: Option<u32>,
        key: &super::enc::AesKey,
    ) -> Result<Verified, ImageError> {
        let (alg, pure) = self.hash_and_purity()?;
        if pure {
            return Err(ImageError::UnsupportedHash(tlv::SIG_PURE));
        }
        let digest = super::enc::plaintext_hash(self, alg, key)
            .ok_or(ImageError::UnsupportedHash(alg.tlv()))?;
        self.check_tlvs(keys, min_security_counter, alg, false, digest)
    }

    /// Everything [`Image::verify`] checks once the hash is computed.
    fn check_tlvs<K: ImageKey>(
        &self,
        keys: &[K],
        min_security_counter: Option<u32>,
        alg: HashAlg,
        pure: bool,
        digest: ImageHash,
    ) -> Result<Verified, ImageError> {
        let region = self.hashed_region();
        let mut hash_seen = false;
        let mut security_counter = None;
        let mut current_key: Option<usize> = None;
        let mut signed_by = None;
        let mut key_matched = false;
        let mut signature_seen = false;
        let mut signature_error = None;

        for t in self.tlvs() {
            if t.protected {
                if signature_related(t.kind) {
                    return Err(ImageError::MisplacedTlv {
                        kind: t.kind,
                        offset: t.offset,
                    });
                }
                if t.kind == tlv::SEC_CNT {
                    let value: [u8; 4] =
                        t.value.try_into().map_err(|_| ImageError::BadTlvLength {
                            kind: t.kind,
                            len: t.value.len(),
                            expected: 4,
                        })?;
                    if security_counter
                        .replace(u32::from_le_bytes(value))
                        .is_some()
                    {
                        return Err(ImageError::DuplicateTlv {
                            kind: t.kind,
                            offset: t.offset,
                        });
                    }
                }
                continue;
            }
            if !tlv::allowed_unprotected(t.kind) {
                return Err(ImageError::UnprotectedTlvNotAllowed {
                    kind: t.kind,
                    offset: t.offset,
                });
            }
            match t.kind {
                kind if HashAlg::built_from_tlv(kind).is_some() => {
                    once(&mut hash_seen, t.kind, t.offset)?;
                    if t.value.len() != alg.digest_len() {
                        return Err(ImageError::BadTlvLength {
                            kind: t.kind,
                            len: t.value.len(),
                            expected: alg.digest_len(),
                        });
                    }
                    if t.value != digest.as_bytes() {
                        return Err(ImageError::HashMismatch);
                    }
                }
                tlv::KEYHASH => {
                    current_key = keys.iter().position(|k| k.has_key_hash(alg, t.value));
                }
                tlv::PUBKEY => {
                    current_key = keys.iter().position(|k| k.is_public_key(t.value));
                }
                tlv::ECDSASIG | tlv::ED25519 | tlv::RSA2048 | tlv::RSA3072 => {
                    signature_seen = true;
                    let Some(i) = current_key.take() else {
                        continue;
                    };
                    let key = &keys[i];
                    if key.signature_tlv() != t.kind || !key.signs(alg, pure) {
                        continue;
                    }
                    key_matched = true;
                    let signed = if pure {
                        Signed::Pure(region)
                    } else {
                        Signed::Digest(&digest)
                    };
                    match key.verify_image(signed, t.value) {
                        Ok(()) if signed_by.is_none() => signed_by = Some(i),
                        Ok(()) => {}
                        Err(e) => signature_error = Some(e),
                    }
                }
                // Pure images need a key type this build leaves out.
                tlv::SIG_PURE if !pure => return Err(ImageError::UnsupportedHash(t.kind)),
                _ => {}
            }
        }
        if !hash_seen {
            return Err(ImageError::MissingHash);
        }

        // A signature by a known key that fails is refused even when another
        // one verifies (an image signed twice, for key rotation): it means
        // tampering or a fault, and MCUboot, which keeps the last verdict,
        // may refuse it too.
        if let Some(e) = signature_error {
            return Err(ImageError::BadSignature(e));
        }
        if !keys.is_empty() && signed_by.is_none() {
            return Err(match (key_matched, signature_seen) {
                (_, false) => ImageError::Unsigned,
                _ => ImageError::KeyMismatch,
            });
        }
        if let Some(min) = min_security_counter {
            let found = security_counter.ok_or(ImageError::MissingSecurityCounter)?;
            if found < min {
                return Err(ImageError::SecurityCounterTooLow { found, min });
            }
        }
        Ok(Verified {
            digest,
            signed_by,
            security_counter,
            version: self.header().version,
        })
    }
}
