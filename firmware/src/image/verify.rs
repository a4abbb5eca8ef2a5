//! Cryptographic verification of a parsed image, in the order and with the
//! rules MCUboot's `bootutil_img_validate` applies.

use sha2::{Digest, Sha256};

use super::{tlv, Image, ImageError, ImageVersion};
use crate::keys::P256PublicKey;

/// A verified image's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// SHA-256 over header, payload and protected TLVs.
    pub digest: [u8; 32],
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

impl Image<'_> {
    /// Verify the image hash and, when `keys` is not empty, that one of them
    /// signed it; enforce `min_security_counter` when given.
    ///
    /// Unprotected TLVs outside MCUboot's allow-list are refused, as are
    /// hash, key and signature TLVs inside the protected area.
    pub fn verify(
        &self,
        keys: &[P256PublicKey],
        min_security_counter: Option<u32>,
    ) -> Result<Verified, ImageError> {
        let digest: [u8; 32] = Sha256::digest(self.hashed_region()).into();
        let mut hash_seen = false;
        let mut counter_seen = false;
        let mut current_key: Option<usize> = None;
        let mut signed_by = None;
        let mut key_matched = false;
        let mut signature_seen = false;
        let mut signature_error = None;

        for t in self.tlvs() {
            let is_sig_related = matches!(
                t.kind,
                tlv::SHA256 | tlv::KEYHASH | tlv::PUBKEY | tlv::ECDSASIG
            );
            if t.protected {
                if is_sig_related {
                    return Err(ImageError::MisplacedTlv {
                        kind: t.kind,
                        offset: t.offset,
                    });
                }
                if t.kind == tlv::SEC_CNT {
                    once(&mut counter_seen, t.kind, t.offset)?;
                    if t.value.len() != 4 {
                        return Err(ImageError::BadTlvLength {
                            kind: t.kind,
                            len: t.value.len(),
                            expected: 4,
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
                tlv::SHA256 => {
                    once(&mut hash_seen, t.kind, t.offset)?;
                    if t.value.len() != 32 {
                        return Err(ImageError::BadTlvLength {
                            kind: t.kind,
                            len: t.value.len(),
                            expected: 32,
                        });
                    }
                    if t.value != digest {
                        return Err(ImageError::HashMismatch);
                    }
                }
                tlv::KEYHASH => {
                    current_key = keys.iter().position(|k| k.key_id().as_slice() == t.value);
                }
                tlv::PUBKEY => {
                    current_key = keys.iter().position(|k| k.spki_der().as_slice() == t.value);
                }
                tlv::ECDSASIG => {
                    signature_seen = true;
                    if let Some(i) = current_key.take() {
                        key_matched = true;
                        match keys[i].verify_digest_der_padded(&digest, t.value) {
                            Ok(()) if signed_by.is_none() => signed_by = Some(i),
                            Ok(()) => {}
                            Err(e) => signature_error = Some(e),
                        }
                    }
                }
                _ => {}
            }
        }

        if !hash_seen {
            return Err(ImageError::MissingHash);
        }
        if !keys.is_empty() && signed_by.is_none() {
            return Err(match (signature_error, key_matched, signature_seen) {
                (Some(e), _, _) => ImageError::BadSignature(e),
                (None, _, false) => ImageError::Unsigned,
                _ => ImageError::KeyMismatch,
            });
        }
        let security_counter = self.security_counter();
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
