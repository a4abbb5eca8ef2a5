//! Encrypted releases and their per-device copies (`docs/encryption.md`,
//! "The backend"). A release is one signed, encrypted MCUboot image whose AES
//! key is wrapped for the station's encryption key; a device's copy is the
//! same bytes with another ENC TLV value, the AES key wrapped for that
//! device's key. The backend keeps the release once and, per device, only the
//! ENC TLV value (public data: only the device can unwrap it); it serves a
//! copy by putting that value back. It never holds a private key and cannot
//! unwrap anything, so a wrong value can only make the device refuse the
//! upgrade (`enc-key`), never run other code: the signature covers the
//! plaintext.

use std::ops::Range;

use firmware::image::enc::{self, EncScheme};
use firmware::image::Image;

/// The largest release the backend keeps: one DynamoDB item holds at most
/// 400 KB, with room left for the other attributes.
pub const MAX_RELEASE: usize = 350 * 1024;

/// Why an image or a copy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// Not an MCUboot image.
    #[error("not an MCUboot image: {0}")]
    NotAnImage(String),
    /// Not encrypted, or not for P-256 keys.
    #[error("{0}")]
    NotEncrypted(String),
    /// Larger than the store keeps.
    #[error("the image is {0} bytes; the backend keeps releases of up to {MAX_RELEASE}")]
    TooLarge(usize),
    /// The copy differs from the release outside its ENC TLV value.
    #[error(
        "not a copy of this release: it differs outside the ENC TLV (another image, or changed)"
    )]
    NotACopy,
    /// A stored wrapped key of the wrong length.
    #[error("a wrapped key of {found} bytes; this release's ENC TLV holds {expected}")]
    WrappedKeyLength {
        /// Found.
        found: usize,
        /// Expected.
        expected: usize,
    },
}

impl ReleaseError {
    /// The API's reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnImage(_) => "bad_image",
            Self::NotEncrypted(_) => "not_encrypted",
            Self::TooLarge(_) => "release_too_large",
            Self::NotACopy => "not_a_copy",
            Self::WrappedKeyLength { .. } => "bad_wrapped_key",
        }
    }
}

/// Where a release's ENC TLV value lies: an encrypted image with one
/// `ENC_EC256` TLV (devices' keys are P-256), at most [`MAX_RELEASE`]
/// bytes.
pub fn enc_tlv_span(image: &[u8]) -> Result<Range<usize>, ReleaseError> {
    if image.len() > MAX_RELEASE {
        return Err(ReleaseError::TooLarge(image.len()));
    }
    let parsed = Image::parse(image).map_err(|e| ReleaseError::NotAnImage(e.to_string()))?;
    let (tlv, span) =
        enc::find_tlv_span(&parsed).map_err(|e| ReleaseError::NotEncrypted(e.to_string()))?;
    if tlv.scheme != EncScheme::EciesP256 {
        return Err(ReleaseError::NotEncrypted(format!(
            "the AES key is wrapped with {:?}; devices' keys are P-256 (ENC_EC256)",
            tlv.scheme
        )));
    }
    Ok(span)
}

/// The ENC TLV value of `copy`, a copy of `release` for one device: the
/// same length and the same bytes but for that value.
pub fn wrapped_key_of(release: &[u8], copy: &[u8]) -> Result<Vec<u8>, ReleaseError> {
    let span = enc_tlv_span(release)?;
    if copy.len() != release.len()
        || copy[..span.start] != release[..span.start]
        || copy[span.end..] != release[span.end..]
    {
        return Err(ReleaseError::NotACopy);
    }
    Ok(copy[span].to_vec())
}

/// A device's copy of `release`: its ENC TLV value replaced by `wrapped`.
pub fn copy_for(release: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, ReleaseError> {
    let span = enc_tlv_span(release)?;
    if wrapped.len() != span.len() {
        return Err(ReleaseError::WrappedKeyLength {
            found: wrapped.len(),
            expected: span.len(),
        });
    }
    let mut copy = release.to_vec();
    copy[span].copy_from_slice(wrapped);
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/boot/");

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DATA}{name}")).unwrap()
    }

    #[test]
    fn a_copy_round_trips_and_other_images_are_not_copies() {
        let release = read("v2-enc-pending.bin");
        let span = enc_tlv_span(&release).unwrap();
        assert_eq!(span.len(), 65 + 32 + 16);
        let mut copy = release.clone();
        copy[span.start + 3] ^= 0x55;
        let wrapped = wrapped_key_of(&release, &copy).unwrap();
        assert_eq!(copy_for(&release, &wrapped).unwrap(), copy);
        // Another image, encrypted under its own AES key: not a copy.
        let other = read("v2-enc-other-pending.bin");
        assert_eq!(
            wrapped_key_of(&release, &other),
            Err(ReleaseError::NotACopy)
        );
        // A changed byte outside the value: not a copy.
        let mut changed = copy.clone();
        changed[0x300] ^= 1;
        assert_eq!(
            wrapped_key_of(&release, &changed),
            Err(ReleaseError::NotACopy)
        );
        assert_eq!(
            wrapped_key_of(&release, &copy[..copy.len() - 1]),
            Err(ReleaseError::NotACopy)
        );
        assert!(matches!(
            copy_for(&release, &wrapped[1..]),
            Err(ReleaseError::WrappedKeyLength { .. })
        ));
        // Clear images are not releases.
        assert!(matches!(
            enc_tlv_span(&read("v2-pending.bin")),
            Err(ReleaseError::NotEncrypted(_))
        ));
    }

    proptest::proptest! {
        /// Any bytes, as a release or as a copy, get an answer, not a panic.
        #[test]
        fn any_bytes_get_an_answer(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048), at in 0usize..8192) {
            let release = read("v2-enc-pending.bin");
            let _ = enc_tlv_span(&bytes);
            let _ = wrapped_key_of(&release, &bytes);
            let _ = copy_for(&release, &bytes);
            let _ = wrapped_key_of(&bytes, &release);
            let mut spliced = release.clone();
            let at = at % spliced.len();
            let end = (at + bytes.len()).min(spliced.len());
            spliced[at..end].copy_from_slice(&bytes[..end - at]);
            let _ = enc_tlv_span(&spliced);
            let _ = wrapped_key_of(&release, &spliced);
        }
    }
}
